"""
End-to-end push: the real daemon as a subprocess wakes an emulated Windows
device through a real SMSC written by others (node-smpp, C{tests/peers/smsc.js}),
or through the spool directory; the device answers with a DM session carrying
Alert 1200 and the announced session id; mdmctl shows the job answered. The
manhole refuses a wrong password over its UNIX socket and, once logged in,
pushes through the same SMSC.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from mdmd.notify.pkg0 import Package0, parse_package0, session_id_text
from mdmd.notify.wap import parse_wsp_push, reassemble
from mdmd.testing.daemon import DaemonProcess
from mdmd.testing.dmclient import windows_dm_client, windows_post
from mdmd.testing.telnet import TelnetClient
from mdmd.testing.windows.device import WindowsDevice
from tests.notify.peers import Peer, node_or_skip, node_short_message, perl_or_skip, start_peer

MSISDN = "+491701234567"
#: The daemon's configuration for an SMSC on loopback (both test peers take these credentials).
SMSC_CONFIG = """
    [smpp]
    host = 127.0.0.1
    port = {port}
    system_id = mdmd
    password = secret
    source_addr = MDMD
    source_ton = 5
    {extra}
"""
WSP_PUSH = bytes.fromhex("010603C4AF87")


class _PushTestCase(TestCase):
    timeout = 240

    async def start_daemon(self, config: str) -> DaemonProcess:
        daemon = DaemonProcess(config=config)
        self.addCleanup(daemon.cleanup)
        await deferToThread(daemon.start)
        return daemon

    async def ok(self, daemon: DaemonProcess, *args: str, stdin: str = "") -> str:
        result = await deferToThread(daemon.mdmctl, *args, stdin=stdin)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    async def enrolled_device(self, daemon: DaemonProcess) -> WindowsDevice:
        root = daemon.ca_certificate()
        await self.ok(daemon, "user", "add", "bob@example.com", stdin="pw-of-bob\n")
        device = WindowsDevice(
            reactor,
            daemon.discovery_url,
            [root],
            user="bob@example.com",
            password="pw-of-bob",
        )
        self.addCleanup(device.close)
        await device.enroll()
        await self.ok(daemon, "device", "set", device.device_id, "--msisdn", MSISDN)
        return device

    async def job_state(self, daemon: DaemonProcess, device_id: str, wanted: str, timeout: float = 30.0) -> dict[str, Any]:
        """
        Poll mdmctl push status until the device's latest job is in C{wanted}.
        """
        deadline = time.monotonic() + timeout
        while True:
            jobs = json.loads(await self.ok(daemon, "push", "status", device_id, "--json"))
            if jobs and jobs[-1]["state"] == wanted:
                return jobs[-1]
            if time.monotonic() > deadline:
                self.fail(f"push of {device_id} never became {wanted}: {jobs}\n{daemon.log()}")
            await deferLater(reactor, 0.2, lambda: None)

    async def stop_cleanly(self, daemon: DaemonProcess) -> str:
        """
        Stop the daemon as systemd does; nothing may have gone wrong on the way.
        """
        code = await deferToThread(daemon.stop)
        log = daemon.log()
        self.assertIn(code, (0, -15), log)
        self.assertNotIn("Traceback", log)
        return log

    def check_package0(self, short_messages: list[bytes], device: WindowsDevice) -> Package0:
        """
        The SMS carry WDP to port 2948 from 9200, the WSP push prefix, and a
        package #0 that verifies with the server credential the device got in
        its provisioning document (w7 APPAUTH CLIENT).
        """
        dst, src, datagram = reassemble(short_messages)
        self.assertEqual((dst, src), (2948, 9200))
        self.assertEqual(datagram[:6], WSP_PUSH)
        package0 = parse_package0(parse_wsp_push(datagram).body)
        credential = device.server_auth
        self.assertEqual(credential.level, "CLIENT")
        self.assertTrue(package0.verify(credential.secret, credential.nonce))
        self.assertEqual((package0.server_id, package0.version), ("mdmd", 11))
        return package0

    async def answer(self, daemon: DaemonProcess, device: WindowsDevice, package0: Package0) -> None:
        """
        The device opens the session the notification asked for: Alert 1200 with its session id.
        """
        client = windows_dm_client(device)
        log = await client.session(windows_post(device), alert="1200", session_id=session_id_text(package0.session_id))
        self.assertEqual(log.header_statuses[0], "212")
        job = await self.job_state(daemon, device.device_id, "answered", timeout=10.0)
        self.assertEqual(job["session_id"], session_id_text(package0.session_id))


class SmscEndToEndTests(_PushTestCase):
    def setUp(self) -> None:
        self.node = node_or_skip()

    async def smsc(self) -> tuple[Peer, int]:
        peer = start_peer(self, self.node, [self.node, "smsc.js", "--receipts", "both"])
        return peer, await peer.port

    def smsc_config(self, port: int, extra: str = "") -> str:
        return SMSC_CONFIG.format(port=port, extra=extra)

    async def test_push_through_the_smsc(self) -> None:
        """
        mdmctl push: the SMSC receives our submit_sm (UDHI, 8-bit, the device's
        number, UDH ports 2948/9200, the WSP push, a package #0 that verifies);
        its receipt makes the job delivered; the device's Alert 1200 session
        with that session id makes it answered; mdmctl status shows the link bound.
        """
        peer, port = await self.smsc()
        daemon = await self.start_daemon(self.smsc_config(port))
        device = await self.enrolled_device(daemon)
        out = await self.ok(daemon, "push", device.device_id)
        self.assertIn(f"push #1 for {device.device_id}", out)
        self.assertIn(f"to {MSISDN}): queued", out)

        await peer.wait_for(lambda lines: any(l["command"] == "submit_sm" for l in lines))
        (submit,) = peer.received("submit_sm")
        fields = submit["fields"]
        self.assertEqual(
            (fields["esm_class"], fields["data_coding"], fields["destination_addr"], fields["dest_addr_ton"], fields["source_addr"]),
            (0x40, 0x04, MSISDN[1:], 1, "MDMD"),
        )
        raw = bytes.fromhex(submit["hex"])
        self.assertIn(bytes.fromhex("0605040B8423F0") + WSP_PUSH, raw)
        package0 = self.check_package0([node_short_message(submit)], device)

        job = await self.job_state(daemon, device.device_id, "delivered")
        self.assertEqual((job["via"], job["message_ids"], job["receipts"]), ("smpp", ["1"], ["DELIVERED"]))
        status = await self.ok(daemon, "status")
        self.assertIn(f"SMPP:       bound to tcp:127.0.0.1:{port}", status)
        self.assertIn("pushes:     1 delivered", status)

        await self.answer(daemon, device, package0)
        table = await self.ok(daemon, "push", "status")
        self.assertIn("answered", table)
        log = await self.stop_cleanly(daemon)
        self.assertIn("answers push #1", log)
        self.assertIn("SMPP bound to NODESMSC", log)

    async def test_outage_and_restarts(self) -> None:
        """
        A push made while the SMSC is unreachable stays queued through a
        daemon restart and goes out once an SMSC answers; a later restart does
        not send the acknowledged job again.
        """
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            dead_port = probe.getsockname()[1]
        daemon = await self.start_daemon(self.smsc_config(dead_port))
        device = await self.enrolled_device(daemon)
        await self.ok(daemon, "push", device.device_id)
        status = await self.ok(daemon, "status")
        self.assertIn(f"SMPP:       disconnected from tcp:127.0.0.1:{dead_port}", status)
        self.assertIn("pushes:     1 queued", status)
        await deferToThread(daemon.stop)

        peer, port = await self.smsc()
        daemon.config = self.smsc_config(port)
        await deferToThread(daemon.start)
        job = await self.job_state(daemon, device.device_id, "delivered")
        self.assertEqual(job["seq"], 1)
        self.assertEqual(len(peer.received("submit_sm")), 1)

        await deferToThread(daemon.stop)
        await deferToThread(daemon.start)
        await peer.wait_for(lambda lines: len(peer.received("bind_transceiver")) == 2)
        await deferLater(reactor, 1.0, lambda: None)
        self.assertEqual(len(peer.received("submit_sm")), 1)
        await self.stop_cleanly(daemon)

    async def test_manhole(self) -> None:
        """
        The manhole (a UNIX socket) refuses a wrong password and logs it; after
        logging in, push() reaches the SMSC and its Deferred reports the job.
        """
        peer, port = await self.smsc()
        passwords = "manhole.passwd"
        daemon = DaemonProcess(config=self.smsc_config(port, "\n[manhole]\nenabled = yes\n"))
        self.addCleanup(daemon.cleanup)
        daemon.write_config()
        await self.ok(daemon, "manhole-password", "ops", stdin="open sesame\n")
        self.assertTrue(os.path.exists(os.path.join(daemon.state_dir, passwords)))
        await deferToThread(daemon.start)
        device = await self.enrolled_device(daemon)
        address = daemon.addresses["manhole"]
        self.assertTrue(address.startswith("unix:"))
        self.assertEqual(os.stat(address[5:]).st_mode & 0o777, 0o600)

        client = await TelnetClient.connect(UNIXClientEndpoint(reactor, address[5:]))
        self.addCleanup(client.close)
        await client.expect(b"Username: ", reactor)
        client.send_line(b"ops")
        await client.expect(b"Password: ", reactor)
        client.clear()
        client.send_line(b"sesame")
        await client.expect(b"Authentication failed", reactor)
        await client.expect(b"Username: ", reactor)
        client.send_line(b"ops")
        await client.expect(b"Password: ", reactor)
        client.send_line(b"open sesame")
        await client.expect(b"logged in as ops", reactor)
        client.clear()
        client.type_line(f"push({device.device_id!r})".encode())
        text = await client.expect(b"called back", reactor)
        self.assertIn(b"'state': 'queued'", text)

        await peer.wait_for(lambda lines: any(l["command"] == "submit_sm" for l in lines))
        (submit,) = peer.received("submit_sm")
        self.check_package0([node_short_message(submit)], device)
        await client.close()
        log = await self.stop_cleanly(daemon)
        self.assertIn("manhole logout by ops", log)
        self.assertIn("manhole login refused for 'ops' from unix socket (uid", log)
        self.assertIn("manhole login by ops from unix socket (uid", log)


class PerlSmscEndToEndTests(_PushTestCase):
    async def test_push_through_net_smpp(self) -> None:
        """
        The same wake-up through Net::SMPP, a second SMSC written by others
        (text receipts only): submitted, delivered, answered.
        """
        perl = perl_or_skip()
        peer = start_peer(self, perl, [perl, "smsc.pl", "--receipts"])
        daemon = await self.start_daemon(SMSC_CONFIG.format(port=await peer.port, extra=""))
        device = await self.enrolled_device(daemon)
        await self.ok(daemon, "push", device.device_id)
        await peer.wait_for(lambda lines: any(l["command"] == "submit_sm" for l in lines))
        (submit,) = peer.received("submit_sm")
        self.assertEqual((submit["fields"]["esm_class"], submit["fields"]["data_coding"]), (0x40, 0x04))
        package0 = self.check_package0([bytes.fromhex(submit["fields"]["short_message"])], device)
        await self.job_state(daemon, device.device_id, "delivered")
        await self.answer(daemon, device, package0)
        await self.stop_cleanly(daemon)


class SpoolEndToEndTests(_PushTestCase):
    async def test_push_to_the_spool(self) -> None:
        """
        With no SMSC, mdmctl push says which file it wrote; the file holds the
        destination and the segments of a package #0 that verifies; the device
        answers and the job is answered.
        """
        daemon = await self.start_daemon("")
        device = await self.enrolled_device(daemon)
        status = await self.ok(daemon, "status")
        spool = os.path.join(daemon.state_dir, "spool")
        self.assertIn(f"SMPP:       not configured (pushes are written to {spool})", status)
        out = await self.ok(daemon, "push", device.device_id)
        path = out.strip().rsplit("written to ", 1)[1]
        self.assertEqual(os.path.dirname(path), spool)
        with open(path) as f:
            document = json.load(f)
        self.assertEqual(document["destination"], {"address": MSISDN[1:], "ton": 1, "npi": 1})
        self.assertEqual({(s["esm_class"], s["data_coding"]) for s in document["segments"]}, {(0x40, 0x04)})
        package0 = self.check_package0([bytes.fromhex(s["short_message"]) for s in document["segments"]], device)
        self.assertEqual(document["session_id"], session_id_text(package0.session_id))
        await self.answer(daemon, device, package0)
        await self.stop_cleanly(daemon)
