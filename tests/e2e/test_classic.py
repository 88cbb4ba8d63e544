"""
End-to-end with a classic OMA DM device: the real daemon as a subprocess and
the emulated device of L{mdmd.testing.omadm} (libdmclient's behaviour) over
server-authenticated TLS, in XML and WBXML with the SyncML DS media types it
sends. The device checks the server's credential in every message that
carries one; commands queued with mdmctl are executed and their results
stored; both nonces are renewed over three sessions; a stale server nonce is
recovered; a package #0 from mdmd (spool transport) opens the session that
answers the push.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from mdmd.notify.wap import parse_wsp_push, reassemble
from mdmd.syncml.codec import DS_WBXML_CODEC, DS_XML_CODEC, Codec
from mdmd.testing.daemon import DaemonProcess
from mdmd.testing.devices import CLIENT_NONCE, CLIENT_SECRET, SERVER_NONCE, SERVER_SECRET
from mdmd.testing.omadm import AccountCredential, DMAccount, HTTPSPoster, OMADMDevice, Package0Refused, run_session

DEVICE = "IMEI:490154203237518"
MSISDN = "+491701234567"
#: Classic devices authenticate with their DM credentials alone (no TLS client
#: certificate: the default for kind omadm); no inventory, so that the results
#: are the commands the test queues.
CONFIG = """
    [dm]
    inventory_omadm =
"""


class ClassicDeviceEndToEndTests(TestCase):
    timeout = 240
    codec: Codec = DS_XML_CODEC

    def setUp(self) -> None:
        self.daemon = DaemonProcess(config=CONFIG)
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()
        secrets = os.path.abspath(self.mktemp())
        os.makedirs(secrets)
        for name, value in (("client", CLIENT_SECRET), ("server", SERVER_SECRET)):
            with open(os.path.join(secrets, name), "w") as f:
                f.write(value + "\n")
        registered = self.daemon.mdmctl(
            "device", "add", DEVICE, "--kind", "omadm", "--msisdn", MSISDN, "--server-id", "mdmd",
            "--client-name", DEVICE, "--server-name", "mdmd",
            "--client-nonce", base64.b64encode(CLIENT_NONCE).decode(),
            "--server-nonce", base64.b64encode(SERVER_NONCE).decode(),
            "--client-secret-file", os.path.join(secrets, "client"),
            "--server-secret-file", os.path.join(secrets, "server"),
        )
        self.assertEqual(registered.returncode, 0, registered.stderr)
        account = DMAccount(
            server_id="mdmd",
            server_uri=self.url,
            client=AccountCredential("DIGEST", DEVICE, CLIENT_SECRET, CLIENT_NONCE),
            server=AccountCredential("DIGEST", "mdmd", SERVER_SECRET, SERVER_NONCE),
        )
        calls = itertools.count(1)
        self.device = OMADMDevice(DEVICE, account, codec=self.codec, random=lambda n: bytes([next(calls)]) * n)
        self.post = HTTPSPoster(reactor, self.url, [self.daemon.ca_certificate()])
        self.addCleanup(self.post.close)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.daemon.https_port}/ManagementServer/MDM.svc"

    async def ok(self, *args: str) -> str:
        result = await deferToThread(self.daemon.mdmctl, *args)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    async def session(self) -> Any:
        """
        A client-initiated session; libdmclient's SessionID is always 1.
        """
        return await run_session(self.device, self.post, self.device.start(1))

    async def test_managed_with_md5_both_ways(self) -> None:
        """
        Three sessions: each time the device accepts our first reply's Cred (212), the
        daemon its Cred, both nonces are new, the queued Get/Replace/Exec are executed
        and their results stored. Then a stale server nonce: refused once (shown by
        device show), the commands go out again and are executed. Without our Cred
        (send_server_credential emptied) the device answers 0: recorded and shown.
        """
        await self.ok("cmd", DEVICE, "get", "./DevDetail/SwV")
        await self.ok("cmd", DEVICE, "replace", "./Vendor/memory/setting", "--data", "on", "--format", "chr")
        await self.ok("cmd", DEVICE, "exec", "./test/execute")
        nonces = []
        for n, queued in enumerate(((), ("get", "./DevInfo/Mod"), ("delete", "./Vendor/memory/setting"))):
            if queued:
                await self.ok("cmd", DEVICE, *queued)
            log = await self.session()
            self.assertEqual(log.checks, [True], n)
            self.assertEqual((log.verdicts[0], log.header_statuses[0]), ("212", "212"), n)
            self.assertEqual({code for _, _, code in log.executed}, {200}, n)
            self.assertEqual(set(log.content_types), {self.codec.content_type}, n)
            server = self.device.account.server
            assert server is not None
            nonces.append((self.device.account.client.nonce, server.nonce))
        self.assertEqual(len({c for c, _ in nonces} | {CLIENT_NONCE}), 4)
        self.assertEqual(len({s for _, s in nonces} | {SERVER_NONCE}), 4)
        self.assertNotIn("./Vendor/memory/setting", self.device.tree)

        results = json.loads(await self.ok("results", DEVICE, "--json"))
        self.assertEqual([(c["spec"]["verb"], c["state"], c["status"]) for c in results], [
            ("Get", "done", 200), ("Replace", "done", 200), ("Exec", "done", 200), ("Get", "done", 200), ("Delete", "done", 200),
        ])
        self.assertEqual(results[0]["results"][0]["data"], "2.4.1")
        self.assertEqual(results[3]["results"][0]["data"], "classic-emulator")
        shown = json.loads(await self.ok("device", "show", DEVICE, "--json"))
        self.assertEqual(shown["dm"]["devinfo"]["./DevInfo/DevId"], DEVICE)
        self.assertEqual([(a["type"], a["source"]) for a in shown["dm"]["alerts"]], [("urn:test", "./test/execute")])
        self.assertEqual(shown["dm"]["header_events"], [])

        # a stale server nonce: refused once, recovered in the same session
        server = self.device.account.server
        assert server is not None
        server.nonce = b"stale"
        await self.ok("cmd", DEVICE, "get", "./DevDetail/FwV")
        log = await self.session()
        self.assertEqual((log.checks, log.verdicts[:2]), ([False, True], ["401", "212"]))
        self.assertEqual([code for _, _, code in log.executed], [401, 200])
        results = json.loads(await self.ok("results", DEVICE, "--json"))
        self.assertEqual((results[-1]["state"], results[-1]["status"], results[-1]["results"][0]["data"]), ("done", 200, "1.0"))
        shown = await self.ok("device", "show", DEVICE)
        self.assertIn("our SyncHdr answered:  '401' (refused) in session 1", shown)

        # without our credential, libdmclient's 0 is recorded and shown
        self.daemon.port = self.daemon.https_port
        await deferToThread(self.daemon.stop)
        self.daemon.config = CONFIG + "\n    send_server_credential =\n"
        await deferToThread(self.daemon.start)
        await self.post.close()
        await self.ok("cmd", DEVICE, "get", "./DevDetail/HwV")
        log = await self.session()
        self.assertEqual((log.checks, log.verdicts), ([], ["0", "0"]))
        table = await self.ok("results", DEVICE)
        self.assertRegex(table, r"\./DevDetail/HwV +0 ")
        shown = await self.ok("device", "show", DEVICE)
        self.assertIn("'0' (invalid) in session 1", shown)
        self.assertIn("not a status code", self.daemon.log())
        self.assertNotIn("Traceback", self.daemon.log())

    async def test_push_answered(self) -> None:
        """
        mdmctl push writes package #0 to the spool; the device's parser accepts it
        (its digest over the device's server credential, its server id), opens the
        session with Alert 1200 and the session id in hex, and the push is answered.
        """
        await self.ok("cmd", DEVICE, "get", "./DevDetail/SwV")
        out = await self.ok("push", DEVICE)
        with open(out.strip().rsplit("written to ", 1)[1]) as f:
            document = json.load(f)
        _, _, datagram = reassemble([bytes.fromhex(s["short_message"]) for s in document["segments"]])
        first = self.device.start_from_package0(parse_wsp_push(datagram).body)
        self.assertEqual(self.device.session_id_text, document["session_id"])
        log = await run_session(self.device, self.post, first)
        self.assertEqual((log.checks, log.executed), ([True], [("Get", "./DevDetail/SwV", 200)]))
        jobs = json.loads(await self.ok("push", "status", DEVICE, "--json"))
        self.assertEqual((jobs[-1]["state"], jobs[-1]["session_id"]), ("answered", document["session_id"]))
        self.assertIn(f"session {document['session_id']} answers push #1", self.daemon.log())


    async def test_push_after_the_nonces_went_out_of_step(self) -> None:
        """
        The device holds another server nonce than ours: it refuses package #0
        signed with ours; mdmctl push --default-nonce signs it with 0x00000000,
        which the device accepts; the session it opens authenticates both ways
        (the device's Cred made with the default nonce is challenged once),
        runs the queued Get, and answers the push.
        """
        server = self.device.account.server
        assert server is not None
        server.nonce = b"out of step"
        await self.ok("cmd", DEVICE, "get", "./DevDetail/SwV")

        def package0(out: str) -> bytes:
            with open(out.strip().rsplit("written to ", 1)[1]) as f:
                document = json.load(f)
            _, _, datagram = reassemble([bytes.fromhex(s["short_message"]) for s in document["segments"]])
            return parse_wsp_push(datagram).body

        with self.assertRaises(Package0Refused):
            self.device.start_from_package0(package0(await self.ok("push", DEVICE)))
        first = self.device.start_from_package0(package0(await self.ok("push", DEVICE, "--default-nonce")))
        log = await run_session(self.device, self.post, first)
        self.assertIn(True, log.checks)
        self.assertEqual(log.executed, [("Get", "./DevDetail/SwV", 200)])
        jobs = json.loads(await self.ok("push", "status", DEVICE, "--json"))
        self.assertEqual([job["state"] for job in jobs], ["submitted", "answered"])


class ClassicDeviceWBXMLEndToEndTests(ClassicDeviceEndToEndTests):
    """
    The same in WBXML (application/vnd.syncml+wbxml).
    """

    codec = DS_WBXML_CODEC

