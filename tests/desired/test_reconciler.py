"""
Tests for L{mdmd.desired.reconciler}: desired state inside the DM check-in,
emulated Windows devices checking in through the real unit of work on a
store in memory.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd.desired import catalog, report
from mdmd.desired.profiles import parse_profile
from mdmd.devices import records
from mdmd.dm import queue as dm_queue
from mdmd.dm.commands import parse_spec
from mdmd.testing.store import memory_store_service

from .helpers import Fleet, add, replace

CAMERA = "./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera"
USER_POLICY = "./User/Vendor/MSFT/Policy/Config/Browser/AllowCookies"


def profile(root: Any, name: str, xml: str, now: float = 0.0) -> None:
    catalog.add_profile(root, name, parse_profile(xml.encode()), xml, "", now)


class ReconcilerTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store
        self.fleet = Fleet(self.store)

    def state(self, device_id: str, name: str) -> str | None:
        found = self.store.read(report.device_profiles, device_id)["profiles"]
        return next((p["state"] for p in found if p["profile"] == name), None)

    def counts(self, name: str) -> dict[str, int]:
        return self.store.read(catalog.profile_counts, name)

    def test_group_converges_in_one_session(self) -> None:
        """
        A profile assigned to the built-in group reaches every member at its
        next session: the commands go out in the answer to package 1, are read
        back, and the device is verified; the counts say so.
        """
        clients = [self.fleet.add(f"D{i}") for i in range(3)]
        self.store.run(profile, "camera", replace(CAMERA, "0", "int"))
        self.store.run(catalog.assign, "camera", "all", 0.0)
        for client in clients:
            log = self.fleet.session(client.device_id)
            self.assertEqual([type(c).__name__ for c in log.received], ["Replace", "Get"])
            self.assertEqual(client.settings.value(CAMERA), "0")  # type: ignore[union-attr]
        self.assertEqual(self.counts("camera")["verified"], 3)
        self.assertEqual(self.store.read(report.profile_status, "camera", "verified", None, 10)["devices"][0]["device_id"], "D0")

    def test_quiet_when_converged(self) -> None:
        """
        A converged device's next sessions carry nothing for its profiles.
        """
        client = self.fleet.add("D1")
        self.store.run(profile, "camera", replace(CAMERA, "0", "int"))
        self.store.run(catalog.assign, "camera", "all", 0.0)
        self.fleet.session("D1")
        self.assertEqual(self.fleet.session("D1").received, [])
        self.assertEqual(client.settings.executed, [])  # type: ignore[union-attr]

    def test_static_group(self) -> None:
        """
        Only members of a static group get its profile; a device added later
        gets it at its next session, and loses it (Delete) when removed.
        """
        for device_id in ("D1", "D2"):
            self.fleet.add(device_id)
        self.store.run(catalog.add_group, "lab", None, "", ["D1"], 0.0)
        self.store.run(profile, "camera", replace(CAMERA, "0", "int"))
        self.store.run(catalog.assign, "camera", "lab", 0.0)
        self.fleet.session("D1")
        self.fleet.session("D2")
        self.assertEqual((self.state("D1", "camera"), self.state("D2", "camera")), ("verified", None))
        self.store.run(catalog.add_members, "lab", ["D2"])
        self.fleet.session("D2")
        self.assertEqual(self.state("D2", "camera"), "verified")
        self.store.run(catalog.remove_members, "lab", ["D1"])
        log = self.fleet.session("D1")
        self.assertEqual([type(c).__name__ for c in log.received], ["Delete"])
        self.assertIsNone(self.state("D1", "camera"))
        self.assertEqual(self.counts("camera")["verified"], 1)

    def test_rule_group_by_inventory(self) -> None:
        """
        A rule group over the inventory takes a device once its inventory
        matches (evaluated in the transaction that read it; the profile's
        commands go with the device's next message, here its next session).
        """
        self.fleet.add("D1", **{"./DevDetail/SwV": "10.0.26100.1"})
        self.store.run(catalog.add_group, "win11", "DevDetail/SwV >= 10.0.22000", "", [], 0.0)
        self.store.run(profile, "camera", replace(CAMERA, "0", "int"))
        self.store.run(catalog.assign, "camera", "win11", 0.0)
        self.fleet.session("D1")
        self.assertIsNone(self.state("D1", "camera"))
        self.store.run(dm_queue.enqueue, ["D1"], parse_spec({"verb": "Get", "target": "./DevDetail/SwV"}), 0.0)
        log = self.fleet.session("D1")
        self.assertEqual([type(c).__name__ for c in log.received], ["Get"])
        self.assertEqual(self.state("D1", "camera"), "pending")
        log = self.fleet.session("D1")
        self.assertEqual([type(c).__name__ for c in log.received], ["Replace", "Get"])
        self.assertEqual(self.state("D1", "camera"), "verified")
        group = self.store.read(catalog.show_group, "win11")
        self.assertEqual((group["members"], group["member_page"]["devices"]), (1, ["D1"]))

    def test_user_settings_wait_for_login(self) -> None:
        """
        ./User settings wait until the enrolled user is logged in; the profile stays pending.
        """
        client = self.fleet.add("D1")
        client.login_status = "others"
        self.store.run(profile, "cookies", replace(USER_POLICY, "1", "int"))
        self.store.run(catalog.assign, "cookies", "all", 0.0)
        self.assertEqual(self.fleet.session("D1").received, [])
        self.assertEqual(self.state("D1", "cookies"), "pending")
        client.login_status = "user"
        self.fleet.session("D1")
        self.assertEqual(self.state("D1", "cookies"), "verified")

    def test_drift_at_the_verification(self) -> None:
        """
        Once the verification interval has passed, the next session reads the
        values back; a value changed on the device is applied again (next session).
        """
        client = self.fleet.add("D1")
        self.store.run(profile, "camera", replace(CAMERA, "0", "int"))
        self.store.run(catalog.assign, "camera", "all", 0.0)
        self.fleet.session("D1")
        client.settings.set(CAMERA, "1", "int")  # type: ignore[union-attr]
        self.fleet.now += 1800
        self.assertEqual(self.fleet.session("D1").received, [])
        self.fleet.now += 3600
        log = self.fleet.session("D1")
        self.assertEqual([type(c).__name__ for c in log.received], ["Get"])
        self.assertEqual(self.state("D1", "camera"), "drifted")
        log = self.fleet.session("D1")
        self.assertEqual([type(c).__name__ for c in log.received], ["Replace", "Get"])
        self.assertEqual((self.state("D1", "camera"), client.settings.value(CAMERA)), ("verified", "0"))  # type: ignore[union-attr]
        self.assertTrue(any("drifted" in note for note in self.fleet.notes))

    def test_failed_with_status(self) -> None:
        """
        A device that reads back another value shows failed; the report lists it.
        """
        client = self.fleet.add("D1")
        client.settings.reads[CAMERA] = "1"  # type: ignore[union-attr]
        self.store.run(profile, "camera", replace(CAMERA, "0", "int"))
        self.store.run(catalog.assign, "camera", "all", 0.0)
        self.fleet.session("D1")
        self.assertEqual(self.state("D1", "camera"), "failed")
        summary = self.store.read(report.report)
        self.assertEqual(summary["not_verified"], [{"device_id": "D1", "profile": "camera", "state": "failed"}])

    def test_new_version(self) -> None:
        """
        Editing a profile makes a new version; devices converge on it and only the change goes out.
        """
        client = self.fleet.add("D1")
        self.store.run(profile, "p", replace(CAMERA, "0", "int") + add("./Vendor/MSFT/Test/A", "a"))
        self.store.run(catalog.assign, "p", "all", 0.0)
        self.fleet.session("D1")
        xml = replace(CAMERA, "1", "int") + add("./Vendor/MSFT/Test/A", "a")
        self.store.run(catalog.edit_profile, "p", parse_profile(xml.encode()), xml, None, 0.0)
        log = self.fleet.session("D1")
        self.assertEqual([type(c).__name__ for c in log.received], ["Replace", "Get"])
        self.assertEqual(client.settings.value(CAMERA), "1")  # type: ignore[union-attr]
        self.assertEqual(self.store.read(report.device_profiles, "D1")["profiles"][0]["version"], 2)

    def test_unassign_leaves_the_report(self) -> None:
        """
        Unassigning sends the Delete; once answered the device has no record and the counts are 0.
        """
        client = self.fleet.add("D1")
        self.store.run(profile, "camera", replace(CAMERA, "0", "int"))
        self.store.run(catalog.assign, "camera", "all", 0.0)
        self.fleet.session("D1")
        self.store.run(catalog.unassign, "camera", "all", 0.0)
        log = self.fleet.session("D1")
        self.assertEqual([type(c).__name__ for c in log.received], ["Delete"])
        self.assertIsNone(client.settings.value(CAMERA))  # type: ignore[union-attr]
        self.assertEqual(set(self.counts("camera").values()), {0})
        self.assertEqual(self.store.read(report.report)["not_verified"], [])

    def test_removed_profile(self) -> None:
        """
        Removing a profile undoes it everywhere; adding the name again starts a newer version.
        """
        self.fleet.add("D1")
        self.store.run(profile, "camera", replace(CAMERA, "0", "int"))
        self.store.run(catalog.assign, "camera", "all", 0.0)
        self.fleet.session("D1")
        self.store.run(catalog.remove_profile, "camera", 0.0)
        self.assertEqual(self.store.read(catalog.list_profiles), [])
        log = self.fleet.session("D1")
        self.assertEqual([type(c).__name__ for c in log.received], ["Delete"])
        self.store.run(profile, "camera", replace(CAMERA, "1", "int"))
        (info,) = self.store.read(catalog.list_profiles)
        self.assertEqual((info.latest, info.groups), (2, ()))

    def test_forgotten_when_removed(self) -> None:
        """
        A removed device's records, counts and memberships go.
        """
        self.fleet.add("D1")
        self.store.run(catalog.add_group, "lab", None, "", ["D1"], 0.0)
        self.store.run(profile, "camera", replace(CAMERA, "0", "int"))
        self.store.run(catalog.assign, "camera", "lab", 0.0)
        self.fleet.session("D1")
        self.store.run(records.remove, "D1", 0.0)
        self.assertEqual(set(self.counts("camera").values()), {0})
        self.assertEqual(self.store.read(catalog.show_group, "lab")["members"], 0)
        self.assertEqual(self.store.read(lambda root: len(root["desired_index"])), 0)


class CatalogTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store

    def test_revision(self) -> None:
        """
        Assigning, editing an assigned profile, unassigning and rule groups move
        the revision; adding an unassigned profile and static groups do not.
        """
        rev = lambda: self.store.read(catalog.revision)  # noqa: E731
        self.store.run(profile, "p", replace(CAMERA, "0", "int"))
        self.store.run(catalog.add_group, "lab", None, "", [], 0.0)
        self.assertEqual(rev(), 0)
        self.store.run(catalog.assign, "p", "lab", 0.0)
        self.store.run(catalog.assign, "p", "lab", 0.0)
        self.assertEqual(rev(), 1)
        xml = replace(CAMERA, "1", "int")
        self.store.run(catalog.edit_profile, "p", parse_profile(xml.encode()), xml, None, 0.0)
        self.assertEqual(rev(), 2)
        self.store.run(catalog.add_group, "new", "kind = windows", "", [], 0.0)
        self.assertEqual(rev(), 3)

    def test_refusals(self) -> None:
        """
        A profile that exists, an unknown group, members of a rule or built-in
        group, a built-in group made or removed, an unknown device: each refused.
        """
        self.store.run(profile, "p", replace(CAMERA, "0", "int"))
        self.store.run(catalog.add_group, "rules", "kind = omadm", "", [], 0.0)
        self.assertRaises(catalog.ProfileExists, self.store.run, profile, "p", replace(CAMERA, "0", "int"))
        self.assertRaises(catalog.UnknownGroup, self.store.run, catalog.assign, "p", "nowhere", 0.0)
        self.assertRaises(catalog.GroupNotStatic, self.store.run, catalog.add_members, "rules", ["X"])
        self.assertRaises(catalog.GroupNotStatic, self.store.run, catalog.add_members, "all", ["X"])
        self.assertRaises(catalog.BuiltinGroup, self.store.run, catalog.add_group, "windows", None, "", [], 0.0)
        self.assertRaises(catalog.BuiltinGroup, self.store.run, catalog.remove_group, "all", 0.0)
        self.assertRaises(catalog.GroupExists, self.store.run, catalog.add_group, "rules", None, "", [], 0.0)
        self.store.run(catalog.add_group, "lab", None, "", [], 0.0)
        self.assertRaises(Exception, self.store.run, catalog.add_members, "lab", ["nobody"])
        self.assertRaises(catalog.UnknownProfile, self.store.run, catalog.assign, "q", "lab", 0.0)

    def test_groups_listed(self) -> None:
        """
        The built-in groups come first, then the operator's, with their members and profiles.
        """
        self.store.run(catalog.add_group, "rules", "DevDetail/OEM ^= Contoso", "contoso", [], 0.0)
        self.store.run(profile, "p", replace(CAMERA, "0", "int"))
        self.store.run(catalog.assign, "p", "windows", 0.0)
        found = self.store.read(catalog.list_groups)
        self.assertEqual([(g.name, g.kind) for g in found],
                         [("all", "built-in"), ("windows", "built-in"), ("omadm", "built-in"), ("rules", "rule")])
        self.assertEqual(found[1].profiles, ("p",))
        self.assertEqual(found[3].rule, "./DevDetail/OEM ^= Contoso")

    def test_group_removed(self) -> None:
        """
        Removing a group drops its assignments.
        """
        self.store.run(catalog.add_group, "lab", None, "", [], 0.0)
        self.store.run(profile, "p", replace(CAMERA, "0", "int"))
        self.store.run(catalog.assign, "p", "lab", 0.0)
        self.store.run(catalog.remove_group, "lab", 0.0)
        (info,) = self.store.read(catalog.list_profiles)
        self.assertEqual(info.groups, ())
        self.assertEqual(self.store.read(lambda root: dict(root["assignments"])), {})

    def test_show_versions(self) -> None:
        """
        A profile shows its versions and one version's source.
        """
        self.store.run(profile, "p", replace(CAMERA, "0", "int"))
        xml = replace(CAMERA, "1", "int")
        self.store.run(catalog.edit_profile, "p", parse_profile(xml.encode()), xml, "v2", 5.0)
        shown = self.store.read(catalog.show_profile, "p")
        self.assertEqual(([v["version"] for v in shown["versions"]], shown["version"]["source"], shown["description"]),
                         ([1, 2], xml, "v2"))
        self.assertIn("<Data>0</Data>", self.store.read(catalog.show_profile, "p", 1)["version"]["source"])
