"""
End-to-end WNS: the real daemon as a subprocess wakes an emulated Windows
device through the fake WNS of L{mdmd.testing.wns} (over loopback HTTPS,
trusted through [wns] ca_file; the real WNS is a remote service this
machine cannot reach, so the endpoints are configuration).

The device enrolls (its provisioning document sets the push PFN, so its
Push node registers with the fake and gets a channel), opens its first DM
session (the daemon reads Push/ChannelURI and Push/Status back), and from
then on mdmctl push reaches it by WNS; its next session answers the job.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from mdmd.testing.daemon import DaemonProcess
from mdmd.testing.dmclient import DMClient, windows_dm_client, windows_post
from mdmd.testing.windows.device import WindowsDevice
from mdmd.testing.windows.push import PushNode
from mdmd.testing.wns import FakeWns

PFN = "Contoso.MDMPush_8wekyb3d8bbwe"
SID = "ms-app://s-1-15-2-2411381248-444863693"
SECRET = "wns-client-secret"
MSISDN = "+491701234567"


class WnsEndToEndTests(TestCase):
    timeout = 240

    async def start(self) -> tuple[DaemonProcess, FakeWns]:
        fake = FakeWns(reactor, clients={SID: SECRET})
        fake.start()
        self.addCleanup(fake.stop)
        daemon = DaemonProcess()
        self.addCleanup(daemon.cleanup)
        secret = os.path.join(daemon.state_dir, "wns.secret")
        with open(secret, "w") as f:
            f.write(SECRET + "\n")
        os.chmod(secret, 0o600)
        daemon.config = f"""
            [wns]
            enabled = yes
            pfn = {PFN}
            package_sid = {SID}
            secret_file = {secret}
            token_url = {fake.token_url}
            notify_url = {fake.url}
            ca_file = {fake.write_ca(os.path.join(daemon.state_dir, "fake-wns-ca.pem"))}
        """
        await deferToThread(daemon.start)
        return daemon, fake

    async def ok(self, daemon: DaemonProcess, *args: str, stdin: str = "") -> str:
        result = await deferToThread(daemon.mdmctl, *args, stdin=stdin)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    async def device(self, daemon: DaemonProcess, fake: FakeWns) -> tuple[WindowsDevice, PushNode, DMClient]:
        """
        An enrolled device whose Push node got a channel from the fake, after
        its first DM session: the daemon knows the channel.
        """
        await self.ok(daemon, "user", "add", "bob@example.com", stdin="pw-bob-secret\n")
        device = WindowsDevice(
            reactor, daemon.discovery_url, [daemon.ca_certificate()], user="bob@example.com", password="pw-bob-secret"
        )
        self.addCleanup(device.close)
        await device.enroll()
        assert device.enrollment is not None
        push = PushNode.from_enrollment(device.enrollment, fake.register)
        self.assertEqual((push.pfn, push.status), (PFN, 0))
        client = windows_dm_client(device, handlers=[push])
        await self.check_in(device, client)
        shown = json.loads(await self.ok(daemon, "device", "show", device.device_id, "--json"))
        self.assertEqual(
            (shown["wns"]["pfn"], shown["wns"]["pfn_via"], shown["wns"]["uri"], shown["wns"]["status"]),
            (PFN, "enrollment", push.channel_uri, 0),
        )
        return device, push, client

    async def check_in(self, device: WindowsDevice, client: DMClient) -> None:
        log = await client.session(windows_post(device))
        self.assertEqual(log.header_statuses[0], "212")

    async def wait(self, what: str, condition: Callable[[], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = condition()
            if found:
                return found
            if time.monotonic() > deadline:
                self.fail(f"{what} never happened")
            await deferLater(reactor, 0.1, lambda: None)

    async def jobs(self, daemon: DaemonProcess, device_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = json.loads(await self.ok(daemon, "push", "status", device_id, "--json"))
        return found

    async def job_state(self, daemon: DaemonProcess, device_id: str, seq: int, wanted: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30.0
        while True:
            found = [j for j in await self.jobs(daemon, device_id) if j["seq"] == seq]
            if found and found[0]["state"] == wanted:
                return found[0]
            if time.monotonic() > deadline:
                self.fail(f"push #{seq} never became {wanted}: {found}\n{daemon.log()}")
            await deferLater(reactor, 0.2, lambda: None)

    async def stop_cleanly(self, daemon: DaemonProcess) -> str:
        code = await deferToThread(daemon.stop)
        log = daemon.log()
        self.assertIn(code, (0, -15), log)
        self.assertNotIn("Traceback", log)
        return log

    async def test_push_token_refresh_and_throttling(self) -> None:
        """
        mdmctl push: the fake WNS receives the raw notification at the
        device's channel with a bearer token it issued; the device's next
        session answers the job. Then a revoked token (401) is renewed and
        the push goes through, and a throttled one (406) is sent again;
        mdmctl status shows the token.
        """
        daemon, fake = await self.start()
        device, push, client = await self.device(daemon, fake)
        out = await self.ok(daemon, "push", device.device_id)
        self.assertIn(f"push #1 for {device.device_id}", out)
        self.assertIn("to its WNS channel", out)
        (note,) = await self.wait("the notification", lambda: fake.notifications)
        self.assertEqual(push.channel_uri.endswith(note.channel), True)
        self.assertEqual((note.headers["x-wns-type"], note.headers["content-type"]), ("wns/raw", "application/octet-stream"))
        job = await self.job_state(daemon, device.device_id, 1, "submitted")
        self.assertEqual((job["route"], job["via"], job["message_ids"]), ("wns", "wns", [note.msg_id]))
        self.assertEqual((note.body, job["session_id"]), (b"1", None))
        self.assertEqual(job["carrier"], {"status": "received", "device": "connected"})
        await self.check_in(device, client)
        await self.job_state(daemon, device.device_id, 1, "answered")

        fake.revoke_tokens()
        await self.ok(daemon, "push", device.device_id)
        await self.job_state(daemon, device.device_id, 2, "submitted")
        self.assertEqual(fake.answered[-2:], [401, 200])
        self.assertEqual([r.granted for r in fake.token_requests], [True, True])

        fake.throttle(1, 406)
        await self.ok(daemon, "push", device.device_id)
        await self.job_state(daemon, device.device_id, 3, "submitted")
        self.assertEqual(fake.answered[-2:], [406, 200])
        status = await self.ok(daemon, "status")
        self.assertIn("WNS:        token valid until", status)
        self.assertIn("1 unauthorized", status)
        log = await self.stop_cleanly(daemon)
        self.assertIn("authenticated session answers WNS push #1", log)

    async def test_gone_channel_falls_back_to_sms(self) -> None:
        """
        A channel WNS answers 410 for: the job fails, the device's channel is
        marked gone (mdmctl device show says so) and an SMS job (to the
        spool) replaces it; the device's next session reads its new channel,
        and pushes go by WNS again.
        """
        daemon, fake = await self.start()
        device, push, client = await self.device(daemon, fake)
        await self.ok(daemon, "device", "set", device.device_id, "--msisdn", MSISDN)
        fake.expire_channel(push.channel_uri)
        await self.ok(daemon, "push", device.device_id)
        failed = await self.job_state(daemon, device.device_id, 1, "failed")
        self.assertIn("WNS answered 410", failed["error"])
        fallback = await self.job_state(daemon, device.device_id, 2, "submitted")
        self.assertEqual((fallback["route"], fallback["via"], fallback["fallback_of"]), ("sms", "spool", 1))
        self.assertTrue(os.path.exists(fallback["spool_file"]))
        shown = await self.ok(daemon, "device", "show", device.device_id)
        self.assertIn("wns channel gone:", shown)

        old = push.channel_uri
        self.assertNotEqual(push.renew(), old)
        await self.check_in(device, client)
        shown = json.loads(await self.ok(daemon, "device", "show", device.device_id, "--json"))
        self.assertEqual((shown["wns"]["uri"], shown["wns"]["expired_at"]), (push.channel_uri, None))
        await self.ok(daemon, "push", device.device_id)
        job = await self.job_state(daemon, device.device_id, 3, "submitted")
        self.assertEqual(job["via"], "wns")
        await self.stop_cleanly(daemon)

    async def test_restart_loses_no_job(self) -> None:
        """
        A push WNS keeps failing (503) is in flight when the daemon stops: it
        stays queued, and the restarted daemon sends it once WNS recovers.
        """
        daemon, fake = await self.start()
        device, _, _ = await self.device(daemon, fake)
        fake.fail(1000, 503)
        await self.ok(daemon, "push", device.device_id)
        await self.wait("a 503", lambda: 503 in fake.answered)
        await self.stop_cleanly(daemon)
        fake.clear_trouble()
        await deferToThread(daemon.start)
        job = await self.job_state(daemon, device.device_id, 1, "submitted")
        self.assertEqual(job["via"], "wns")
        self.assertEqual(len(await self.jobs(daemon, device.device_id)), 1)
        self.assertEqual(len(fake.notifications), 1)
        self.assertEqual(fake.notifications[0].body, b"1")
        await self.stop_cleanly(daemon)
