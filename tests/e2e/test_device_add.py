"""
End-to-end: a classic OMA DM device registered with mdmctl device add, then
managed by the real daemon. The emulated DM client acts as the device: no
client certificate (server-authenticated TLS from the standard library's ssl),
MD5 digest credentials from the account mdmctl wrote, XML then WBXML.
"""

from __future__ import annotations

import base64
import csv
import json
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from mdmd.syncml.codec import WBXML_CODEC
from mdmd.testing.daemon import DaemonProcess
from mdmd.testing.dmclient import DMClient, DMSessionFailed, Post

from ..httpclient import client_context, fetch

DEVICE_ID = "IMEI:490154203237518"

#: The device's tree: every node of the default classic inventory.
TREE = {
    "./DevInfo/Man": "Acme",
    "./DevInfo/Mod": "Modem 7",
    "./DevInfo/DmV": "1.2",
    "./DevInfo/Lang": "en",
    "./DevDetail/DevTyp": "modem",
    "./DevDetail/OEM": "Acme",
    "./DevDetail/FwV": "7.1.2",
    "./DevDetail/SwV": "7.1",
    "./DevDetail/HwV": "B",
    "./DevDetail/LrgObj": "false",
    "./DevDetail/URI/MaxDepth": "0",
    "./DevDetail/URI/MaxTotLen": "0",
    "./DevDetail/URI/MaxSegLen": "0",
    "./Vendor/Acme/Reporting": "60",
}


class ClassicDeviceTests(TestCase):
    timeout = 240

    def setUp(self) -> None:
        self.daemon = DaemonProcess()
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()

    async def ok(self, *args: str) -> str:
        result = await deferToThread(self.daemon.mdmctl, *args)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def post(self) -> Post:
        """
        POST over TLS that verifies the server and presents no client certificate.
        """
        context = client_context(self.daemon.ca_cert_path)
        port = self.daemon.https_port

        async def post(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            (reply,) = await deferToThread(
                fetch, port, "/ManagementServer/MDM.svc", context, "POST", body, {"Content-Type": content_type, **headers}
            )
            return reply.status, reply.headers, reply.body

        return post

    async def test_registered_device_is_managed(self) -> None:
        """
        mdmctl device add registers the device and writes its account; the
        device's first session (no client certificate, MD5 digest) reads its
        inventory; queued Replace, Get and Exec are executed with their
        results in mdmctl results; WBXML is answered in kind; requiring a
        client certificate of it then refuses its sessions.
        """
        account_file = os.path.join(self.daemon.state_dir, "classic.csv")
        await self.ok("device", "add", DEVICE_ID, "--msisdn", "+491701234567", "--secrets-file", account_file)
        with open(account_file, newline="") as f:
            (account,) = list(csv.DictReader(f))
        self.assertEqual((account["kind"], account["server_name"], account["client_name"]), ("omadm", "mdmd", DEVICE_ID))
        client = DMClient(
            device_id=DEVICE_ID,
            server_url=f"https://localhost:{self.daemon.https_port}/ManagementServer/MDM.svc",
            client_name=account["client_name"],
            client_secret=account["client_secret"],
            client_nonce=base64.b64decode(account["client_nonce"]),
            tree=dict(TREE),
            clock=reactor.seconds,
        )
        post = self.post()

        log = await client.session(post)
        self.assertEqual(log.header_statuses[0], "212")
        inventory = json.loads(await self.ok("results", DEVICE_ID, "--json"))
        self.assertEqual(len(inventory), 14)
        self.assertEqual({c["state"] for c in inventory}, {"done"})
        shown = json.loads(await self.ok("device", "show", DEVICE_ID, "--json"))
        self.assertEqual(shown["kind"], "omadm")
        self.assertEqual(shown["dm"]["inventory"]["./DevDetail/FwV"], "7.1.2")
        self.assertEqual(shown["dm"]["inventory"]["./DevInfo/DevId"], DEVICE_ID)
        self.assertEqual(shown["account"]["client_secret"], "set")
        self.assertNotIn(account["client_secret"], json.dumps(shown))

        await self.ok("cmd", DEVICE_ID, "replace", "./Vendor/Acme/Reporting", "--data", "15", "--format", "int")
        await self.ok("cmd", DEVICE_ID, "get", "./Vendor/Acme/Reporting")
        await self.ok("cmd", DEVICE_ID, "exec", "./Vendor/Acme/Reboot")
        client.codec = WBXML_CODEC
        log = await client.session(post)
        self.assertEqual([type(c).__name__ for c in log.received], ["Replace", "Get", "Exec"])
        results = json.loads(await self.ok("results", DEVICE_ID, "--json"))[14:]
        self.assertEqual([(c["spec"]["verb"], c["state"], c["status"]) for c in results],
                         [("Replace", "done", 200), ("Get", "done", 200), ("Exec", "done", 200)])
        self.assertEqual(results[1]["results"][0]["data"], "15")
        table = await self.ok("results", DEVICE_ID)
        self.assertIn("./Vendor/Acme/Reboot", table)

        await self.ok("device", "set", DEVICE_ID, "--client-certificate", "required")
        with self.assertRaises(DMSessionFailed) as caught:
            await client.session(post)
        self.assertIn("HTTP 403", str(caught.exception))
        self.assertIn("a client certificate is required", str(caught.exception))

    async def test_import_then_manage(self) -> None:
        """
        A device imported from CSV (its secret from the file) runs a session with that secret.
        """
        source = os.path.join(self.daemon.state_dir, "fleet.csv")
        nonce = base64.b64encode(b"n" * 16).decode()
        with open(source, "w") as f:
            f.write(f"device_id,client_secret,server_secret,client_nonce\nMODEM-1,modem-secret,server-secret,{nonce}\n")
        out = await self.ok("device", "import", source)
        self.assertIn("1 device(s) registered", out)
        client = DMClient(
            device_id="MODEM-1",
            server_url=f"https://localhost:{self.daemon.https_port}/ManagementServer/MDM.svc",
            client_name="MODEM-1",
            client_secret="modem-secret",
            client_nonce=b"n" * 16,
            tree=dict(TREE),
        )
        log: Any = await client.session(self.post())
        self.assertEqual(log.header_statuses[0], "212")
