"""
End-to-end desired state: the real daemon as a subprocess, emulated Windows
devices that enroll over TLS and keep a Windows-like settings tree, and
mdmctl: a profile assigned to a group reaches verified on every member, a
device that reads back another value shows failed, a value changed on the
device is applied again at the next verification, unassigning sends the
Delete and the status leaves the report, and wipe and reboot are tracked.
"""

from __future__ import annotations

import json
import os

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from mdmd.testing.daemon import DaemonProcess
from mdmd.testing.dmclient import DMClient, windows_dm_client, windows_post
from mdmd.testing.windows.device import WindowsDevice
from mdmd.testing.windows.tree import SettingsTree

CAMERA = "./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera"
HOURS = "./Device/Vendor/MSFT/Policy/Config/Update/ActiveHoursStart"
PROFILE = f"""<?xml version="1.0" encoding="UTF-8"?>
<Replace>
  <CmdID>1</CmdID>
  <Item>
    <Target><LocURI>{CAMERA}</LocURI></Target>
    <Meta><Format xmlns="syncml:metinf">int</Format></Meta>
    <Data>0</Data>
  </Item>
</Replace>
<Replace>
  <CmdID>2</CmdID>
  <Item>
    <Target><LocURI>{HOURS}</LocURI></Target>
    <Meta><Format xmlns="syncml:metinf">int</Format></Meta>
    <Data>8</Data>
  </Item>
</Replace>
"""
#: seconds between two verifications in these tests
VERIFY = 2


class ProfilesEndToEndTests(TestCase):
    timeout = 300

    def setUp(self) -> None:
        self.daemon = DaemonProcess(config=f"[profiles]\nverify_interval = {VERIFY}\n")
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()
        self.root = self.daemon.ca_certificate()

    async def ok(self, *args: str, stdin: str = "") -> str:
        result = await deferToThread(self.daemon.mdmctl, *args, stdin=stdin)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    async def enrolled(self, count: int) -> list[tuple[WindowsDevice, DMClient]]:
        await self.ok("user", "add", "bob@example.com", stdin="pw-of-bob\n")
        found = []
        for _ in range(count):
            device = WindowsDevice(reactor, self.daemon.discovery_url, [self.root], user="bob@example.com", password="pw-of-bob")
            self.addCleanup(device.close)
            await device.enroll()
            client = windows_dm_client(device, clock=reactor.seconds, settings=SettingsTree())
            await client.session(windows_post(device))  # the inventory Gets after enrollment
            found.append((device, client))
        return found

    async def session(self, pair: tuple[WindowsDevice, DMClient]) -> list[str]:
        log = await pair[1].session(windows_post(pair[0]))
        return [type(c).__name__ for c in log.received]

    async def state(self, device_id: str, profile: str = "camera") -> str | None:
        found = json.loads(await self.ok("report", "--device", device_id, "--json"))["profiles"]
        return next((p["state"] for p in found if p["profile"] == profile), None)

    async def test_profile_converges_fails_drifts_and_goes(self) -> None:
        """
        Two members of a static group converge to verified (each setting
        written once, then read back); a third device that reads back another
        value shows failed with the command; a value changed on a device is
        applied again after the verification interval; unassigning deletes
        the policies and the report no longer counts them.
        """
        first, second, odd = await self.enrolled(3)
        path = os.path.join(self.daemon.state_dir, "camera.xml")
        with open(path, "w") as f:
            f.write(PROFILE)
        await self.ok("profile", "add", "camera", path, "--description", "camera off, active hours from 8")
        await self.ok("group", "add", "lab", first[0].device_id, second[0].device_id, odd[0].device_id)
        await self.ok("profile", "assign", "camera", "--group", "lab")
        odd[1].settings.reads[CAMERA] = "1"  # type: ignore[union-attr]

        for pair in (first, second):
            self.assertEqual(await self.session(pair), ["Replace", "Get", "Replace", "Get"])
            self.assertEqual(pair[1].settings.value(CAMERA), "0")  # type: ignore[union-attr]
            self.assertEqual(await self.state(pair[0].device_id), "verified")
        await self.session(odd)
        status = json.loads(await self.ok("profile", "status", "camera", "--state", "failed", "--json"))
        (failed,) = status["devices"]
        self.assertEqual((failed["device_id"], failed["failure"]["command"]), (odd[0].device_id, f"Get {CAMERA}"))
        self.assertIn("expected '0'", failed["failure"]["error"])
        self.assertEqual((status["counts"]["verified"], status["counts"]["failed"]), (2, 1))
        report = json.loads(await self.ok("report", "--json"))
        self.assertEqual(report["not_verified"], [{"device_id": odd[0].device_id, "profile": "camera", "state": "failed"}])

        # a user changes a setting: read back at the next verification, applied again
        first[1].settings.set(CAMERA, "1", "int")  # type: ignore[union-attr]
        await deferLater(reactor, VERIFY + 0.5, lambda: None)
        self.assertEqual(await self.session(first), ["Get", "Get"])
        self.assertEqual(await self.state(first[0].device_id), "drifted")
        self.assertEqual(await self.session(first), ["Replace", "Get"])
        self.assertEqual(first[1].settings.value(CAMERA), "0")  # type: ignore[union-attr]
        shown = json.loads(await self.ok("report", "--device", first[0].device_id, "--json"))["profiles"][0]
        self.assertEqual((shown["state"], shown["events"][0]["event"]), ("verified", "drift"))

        # unassigned: the Deletes go, the records go, the report counts nothing
        await self.ok("profile", "unassign", "camera", "--group", "lab")
        for pair in (first, second):
            self.assertEqual(await self.session(pair), ["Delete", "Delete"])
            self.assertIsNone(pair[1].settings.value(CAMERA))  # type: ignore[union-attr]
            self.assertIsNone(await self.state(pair[0].device_id))
        counts = json.loads(await self.ok("profile", "status", "camera", "--json"))["counts"]
        self.assertEqual((counts["verified"], counts["removing"]), (0, 0))

    async def test_wipe_and_reboot_tracked(self) -> None:
        """
        A reboot and a wipe are queued, carried out by the device at its next
        session and tracked to done with the device's status.
        """
        ((device, client),) = await self.enrolled(1)
        await self.ok("device", "reboot", device.device_id)
        await self.ok("device", "wipe", device.device_id, "--yes")
        queued = json.loads(await self.ok("device", "actions", device.device_id, "--json"))
        self.assertEqual([(a["action"], a["state"]) for a in queued], [("wipe", "queued"), ("reboot", "queued")])
        self.assertEqual(await self.session((device, client)), ["Exec", "Exec"])
        done = json.loads(await self.ok("device", "actions", device.device_id, "--json"))
        self.assertEqual([(a["action"], a["state"], a["status"]) for a in done], [("wipe", "done", 200), ("reboot", "done", 200)])
        self.assertEqual(client.settings.executed,  # type: ignore[union-attr]
                         ["./Device/Vendor/MSFT/Reboot/RebootNow", "./Device/Vendor/MSFT/RemoteWipe/doWipe"])

