"""
End-to-end OMA CP bootstrap: the real daemon as a subprocess sends a classic
OMA DM device its DM account when mdmctl asks. The fake SMSC
(L{mdmd.testing.smsc}, in this process, over TCP) or the spool receives the
SMS; reassembled they are a WSP push whose MAC verifies with the device's
IMSI (NETWPIN) or the USERPIN and whose document libwbxml decodes to the w7
account. The device then runs a DM session with the credentials the
document gave it (the CLIENT APPAUTH), which ends the bootstrap job.The device is registered with C{mdmctl device add --kind omadm}.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from mdmd.notify.bootstrap import BootstrapPush, Sec, netwpin_key, parse_bootstrap_push
from mdmd.notify.provisioning_doc import Characteristic, Parm, ProvisioningDoc
from mdmd.notify.wap import reassemble
from mdmd.testing.daemon import DaemonProcess
from mdmd.testing.dmclient import DMClient
from mdmd.testing.smsc import FakeSmscFactory, Receipts, Scenario
from tests.httpclient import client_context, fetch
from tests.servers import serve
from tests.notify.cp import IMSI, MSISDN, NO_LIBWBXML, decoded_by_libwbxml

DEVICE = "IMEI:490154203237518"
def _parms(characteristic: Characteristic) -> dict[str, str | None]:
    return {c.name: c.value for c in characteristic.children if isinstance(c, Parm)}


class BootstrapEndToEndTests(TestCase):
    timeout = 240

    if NO_LIBWBXML:
        skip = NO_LIBWBXML

    async def start(self, config: str = "") -> DaemonProcess:
        """
        A daemon with the classic device registered (mdmctl device add, its secrets generated).
        """
        daemon = DaemonProcess(config=config)
        self.addCleanup(daemon.cleanup)
        await deferToThread(daemon.start)
        await self.ok(daemon, "device", "add", DEVICE, "--kind", "omadm", "--msisdn", MSISDN, "--imsi", IMSI)
        return daemon

    async def ok(self, daemon: DaemonProcess, *args: str, stdin: str = "") -> str:
        result = await deferToThread(daemon.mdmctl, *args, stdin=stdin)
        self.assertEqual(result.returncode, 0, result.stderr + daemon.log())
        return result.stdout

    async def job_state(self, daemon: DaemonProcess, wanted: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = json.loads(await self.ok(daemon, "push", "status", DEVICE, "--json"))
            if found and found[-1]["state"] == wanted:
                return found[-1]
            if time.monotonic() > deadline:
                self.fail(f"the bootstrap never became {wanted}: {found}\n{daemon.log()}")
            await deferLater(reactor, 0.2, lambda: None)

    def check_push(self, short_messages: list[bytes], daemon: DaemonProcess) -> tuple[BootstrapPush, ProvisioningDoc]:
        """
        The SMS are WDP to port 2948 from 9200 carrying a connectivity-wbxml
        push whose document libwbxml decodes to the device's w7 account.
        """
        dst, src, datagram = reassemble(short_messages)
        self.assertEqual((dst, src), (2948, 9200))
        push = parse_bootstrap_push(datagram)
        document = decoded_by_libwbxml(push.document)
        (application,) = document.characteristics
        self.assertEqual(application.type, "APPLICATION")
        self.assertEqual(
            {k: v for k, v in _parms(application).items() if k != "NAME"},
            {
                "APPID": "w7",
                "PROVIDER-ID": "mdmd",
                "ADDR": f"https://localhost:{daemon.https_port}/ManagementServer/MDM.svc",
                "INIT": None,
            },
        )
        levels = [_parms(c)["AAUTHLEVEL"] for c in application.children if isinstance(c, Characteristic)]
        self.assertEqual(levels, ["APPSRV", "CLIENT"])
        return push, document

    async def session_as_bootstrapped(self, daemon: DaemonProcess, document: ProvisioningDoc) -> None:
        """
        The device takes its account from the document (the CLIENT APPAUTH
        is its own credential) and runs a DM session at ADDR: the server
        accepts it (212) and the job is answered.
        """
        (application,) = document.characteristics
        client = _parms([c for c in application.children if isinstance(c, Characteristic)][1])
        address = _parms(application)["ADDR"]
        assert address is not None and client["AAUTHNAME"] and client["AAUTHSECRET"] and client["AAUTHDATA"]
        context = client_context(daemon.ca_cert_path)

        async def post(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            (reply,) = await deferToThread(
                fetch, daemon.https_port, "/ManagementServer/MDM.svc", context, "POST", body,
                {"Content-Type": content_type, **headers},
            )
            return reply.status, reply.headers, reply.body

        device = DMClient(
            device_id=DEVICE,
            server_url=address,
            client_name=client["AAUTHNAME"],
            client_secret=client["AAUTHSECRET"],
            client_nonce=base64.b64decode(client["AAUTHDATA"]),
        )
        log = await device.session(post)
        self.assertEqual(log.header_statuses[0], "212")
        await self.job_state(daemon, "answered")

    async def test_netwpin_through_the_fake_smsc(self) -> None:
        """
        mdmctl device bootstrap --netwpin: the fake SMSC receives the SMS
        for the device's number; the push is NETWPIN with a MAC that
        verifies with the IMSI; receipts deliver the job; the device's
        session with its new account answers it.
        """
        factory = FakeSmscFactory(Scenario(receipts=Receipts.TLV))
        port = serve(self, factory)
        daemon = await self.start(
            f"[smpp]\nhost = 127.0.0.1\nport = {port}\nsystem_id = mdmd\npassword = secret\n"
        )
        out = await self.ok(daemon, "device", "bootstrap", DEVICE, "--netwpin")
        self.assertRegex(out, rf"^bootstrap #1 for {DEVICE} \(NETWPIN, \d SMS to \{MSISDN}\): queued")
        job = await self.job_state(daemon, "delivered")
        self.assertEqual((job["kind"], job["session_id"]), ("bootstrap", None))
        submits = factory.submits
        self.assertEqual(len(submits), job["segments"])
        self.assertEqual({(s.destination_addr, s.esm_class) for s in submits}, {(MSISDN[1:], 0x40)})
        push, document = self.check_push([s.short_message for s in submits], daemon)
        self.assertEqual(push.sec, Sec.NETWPIN)
        self.assertTrue(push.verify(netwpin_key(IMSI)))
        await self.session_as_bootstrapped(daemon, document)
        code = await deferToThread(daemon.stop)
        log = daemon.log()
        self.assertIn(code, (0, -15), log)
        self.assertNotIn("Traceback", log)
        self.assertIn(f"bootstrap {DEVICE}#1 queued: NETWPIN", log)
        self.assertIn("authenticated session ends bootstrap #1", log)

    async def test_userpin_to_the_spool(self) -> None:
        """
        mdmctl device bootstrap with the USERPIN on stdin: the spool file
        holds a USERPIN push whose MAC verifies with that PIN, and the PIN
        is nowhere in the daemon's log or state directory.
        """
        daemon = await self.start()
        out = await self.ok(daemon, "device", "bootstrap", DEVICE, stdin="73914682\n")
        path = out.strip().rsplit("written to ", 1)[1]
        with open(path) as f:
            spooled = json.load(f)
        self.assertEqual((spooled["device_id"], spooled["session_id"], spooled["msisdn"]), (DEVICE, None, MSISDN))
        push, document = self.check_push([bytes.fromhex(s["short_message"]) for s in spooled["segments"]], daemon)
        self.assertEqual(push.sec, Sec.USERPIN)
        self.assertTrue(push.verify(b"73914682"))
        self.assertFalse(push.verify(netwpin_key(IMSI)))
        await self.session_as_bootstrapped(daemon, document)
        await deferToThread(daemon.stop)
        for directory, _, names in os.walk(daemon.state_dir):
            for name in names:
                with open(os.path.join(directory, name), "rb") as f:
                    self.assertNotIn(b"73914682", f.read(), name)
