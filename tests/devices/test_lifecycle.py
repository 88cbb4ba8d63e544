"""
Tests for L{mdmd.devices.lifecycle}: the transition table, step by step, on a
real store in memory; the timestamps each step sets; the one revocation path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd.devices import lifecycle
from mdmd.devices.lifecycle import DeviceStatus, Event, IllegalTransition
from mdmd.pki import registry
from mdmd.store.models import Device
from mdmd.testing.store import memory_store_service

from .helpers import issued

ENROLLED, UNENROLLED, REMOVED = DeviceStatus.ENROLLED, DeviceStatus.UNENROLLED, DeviceStatus.REMOVED

#: The whole table, written out: every legal (status, event) and where it leads.
EXPECTED = {
    (None, Event.ENROLL): ENROLLED,
    (None, Event.REGISTER): ENROLLED,
    (REMOVED, Event.REGISTER): ENROLLED,
    (ENROLLED, Event.RE_ENROLL): ENROLLED,
    (UNENROLLED, Event.RE_ENROLL): ENROLLED,
    (REMOVED, Event.RE_ENROLL): ENROLLED,
    (ENROLLED, Event.RENEW): ENROLLED,
    (ENROLLED, Event.CONTACT): ENROLLED,
    (ENROLLED, Event.UNENROLL): UNENROLLED,
    (UNENROLLED, Event.UNENROLL): UNENROLLED,
    (ENROLLED, Event.REMOVE): REMOVED,
    (UNENROLLED, Event.REMOVE): REMOVED,
    (REMOVED, Event.REMOVE): REMOVED,
}

def device_in(root: Any, status: DeviceStatus, device_id: str) -> Device:
    """
    A record brought to C{status} through the lifecycle (enrolled at 100, moved at 200).
    """
    device = lifecycle.enroll(root, device_id, issued(root, device_id), 100.0)
    if status is UNENROLLED:
        lifecycle.unenroll(root, device, 200.0)
    elif status is REMOVED:
        lifecycle.remove(root, device, 200.0)
    return device


def taken(device: Device | None) -> Device:
    """
    The record a step takes (L{TableTests.test_every_pair} gives one to every step but the creating ones).
    """
    assert device is not None
    return device


def snapshot(root: Any, device: Device) -> tuple[str, registry.CertificateInfo | None]:
    """
    A record's status and its certificate's record, to compare before and after a step.
    """
    serial = device.cert_serial
    return device.status, None if serial is None else registry.lookup(root, serial)


#: The step function of every event, applied at time 300.
STEPS: dict[Event, Callable[[Any, str, Device | None], object]] = {
    Event.ENROLL: lambda root, device_id, device: lifecycle.enroll(root, device_id, issued(root, device_id), 300.0),
    Event.RE_ENROLL: lambda root, device_id, device: lifecycle.re_enroll(root, taken(device), issued(root, device_id), 300.0),
    Event.RENEW: lambda root, device_id, device: lifecycle.renew(root, taken(device), issued(root, device_id), 300.0),
    Event.CONTACT: lambda root, device_id, device: lifecycle.record_contact(taken(device), 300.0),
    Event.UNENROLL: lambda root, device_id, device: lifecycle.unenroll(root, taken(device), 300.0),
    Event.REMOVE: lambda root, device_id, device: lifecycle.remove(root, taken(device), 300.0),
    Event.REGISTER: lambda root, device_id, device: lifecycle.register(root, device_id, 300.0),
}

#: The events whose step creates a record (the others take one).
CREATING = (Event.ENROLL, Event.REGISTER)


class TableTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store

    def test_table(self) -> None:
        """
        The table is exactly the documented one, and every event has a step function.
        """
        self.assertEqual(lifecycle.TRANSITIONS, EXPECTED)
        self.assertEqual(set(STEPS), set(Event))

    def test_every_pair(self) -> None:
        """
        Every (status, event): a legal one moves the record where the table says;
        an illegal one raises IllegalTransition and changes nothing, not even
        the certificate.
        """
        for status in (None, *DeviceStatus):
            for event in Event:
                device_id = f"{status}-{event.name}"

                def attempt(root: Any) -> tuple[str | None, str, str | None]:
                    device = None if status is None else device_in(root, status, device_id)
                    before = None if device is None else snapshot(root, device)
                    if device is None and event not in CREATING:
                        # the other steps take a record: there is none to give them
                        return None, "no record", None
                    try:
                        STEPS[event](root, device_id, device)
                    except IllegalTransition as e:
                        after = None if device is None else snapshot(root, device)
                        self.assertEqual(after, before)
                        self.assertEqual((e.device_id, e.status, e.event), (device_id, status, event))
                        return None, "illegal", str(e)
                    return root["devices"][device_id].status, "moved", None

                moved_to, outcome, _ = self.store.run(attempt)
                expected = EXPECTED.get((status, event))
                if expected is None:
                    self.assertIn(outcome, ("illegal", "no record"), (status, event))
                    self.assertFalse(lifecycle.allows(None if status is None else _record(status), event))
                else:
                    self.assertEqual((outcome, moved_to), ("moved", expected.value), (status, event))

    def test_illegal_message(self) -> None:
        """
        The error names the device, the status and the event.
        """
        error = IllegalTransition("D-1", REMOVED, Event.CONTACT)
        self.assertEqual(str(error), "device D-1: no transition from removed on contact")
        self.assertEqual(str(IllegalTransition("D-1", None, Event.REMOVE)), "device D-1: no transition from no record on remove")

    def test_manageable(self) -> None:
        """
        Only an enrolled device may check in and be sent commands or pushes.
        """
        self.assertEqual(
            {status: lifecycle.manageable(_record(status)) for status in DeviceStatus},
            {ENROLLED: True, UNENROLLED: False, REMOVED: False},
        )

    def test_status_stored_as_plain_string(self) -> None:
        """
        The record keeps the status's string value, never the enum.
        """

        def statuses(root: Any) -> list[type]:
            return [type(device_in(root, status, f"S-{status.name}").status) for status in DeviceStatus]

        self.assertEqual(self.store.run(statuses), [str, str, str])
        self.assertEqual(self.store.read(lambda root: root["devices"]["S-REMOVED"].status), "removed")


def _record(status: DeviceStatus) -> Device:
    device = Device("X", 0.0)
    device.status = status.value
    return device


class StepTests(SynchronousTestCase):
    """
    What each step sets besides the status.
    """

    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store

    def run_(self, fn: Callable[..., Any]) -> Any:
        return self.store.run(fn)

    def fields(self, device_id: str, *names: str) -> tuple[Any, ...]:
        return self.store.read(lambda root: tuple(getattr(root["devices"][device_id], n) for n in names))

    def certificate(self, serial: int) -> tuple[str, float | None, str | None]:
        info = self.store.read(registry.lookup, serial)
        assert info is not None
        return info.status, info.revoked_at, info.revocation_reason

    def test_enroll(self) -> None:
        """
        A new record: enrolled now, once, with its certificate; nothing cleared or set besides.
        """

        def enroll(root: Any) -> int:
            certificate = issued(root, "D", not_after=5000.0)
            lifecycle.enroll(root, "D", certificate, 100.0)
            return certificate.serial

        serial = self.run_(enroll)
        self.assertEqual(
            self.fields("D", "status", "first_enrolled_at", "enrolled_at", "enrollment_count", "cert_serial", "cert_not_after"),
            ("enrolled", 100.0, 100.0, 1, serial, 5000.0),
        )
        self.assertEqual(self.fields("D", "renewed_at", "unenrolled_at", "removed_at", "last_contact"), (None,) * 4)
        self.assertEqual(self.certificate(serial), ("valid", None, None))

    def test_register(self) -> None:
        """
        A new classic device: enrolled now, of kind omadm, without a
        certificate; it never enrolled (MS-MDE2), so the count stays 0.
        """
        self.run_(lambda root: lifecycle.register(root, "OMA-1", 100.0).device_id)
        self.assertEqual(
            self.fields("OMA-1", "status", "kind", "first_enrolled_at", "enrolled_at", "enrollment_count", "cert_serial"),
            ("enrolled", "omadm", 100.0, 100.0, 0, None),
        )
        self.assertEqual(self.fields("OMA-1", "renewed_at", "unenrolled_at", "removed_at", "last_contact"), (None,) * 4)

    def test_register_a_removed_device(self) -> None:
        """
        Registering a removed Windows device makes it a classic device in
        place: its departure is cleared, its (revoked) certificate dropped,
        its history kept; re-enrolling it by MS-MDE2 makes it Windows again.
        """

        def history(root: Any) -> int:
            device = device_in(root, REMOVED, "D")
            assert device.cert_serial is not None
            return device.cert_serial

        old = self.run_(history)
        self.run_(lambda root: lifecycle.register(root, "D", 300.0).device_id)
        self.assertEqual(
            self.fields("D", "status", "kind", "enrolled_at", "removed_at", "unenrolled_at", "cert_serial", "cert_not_after"),
            ("enrolled", "omadm", 300.0, None, None, None, None),
        )
        self.assertEqual(self.fields("D", "first_enrolled_at", "enrollment_count"), (100.0, 1))
        self.assertEqual(self.certificate(old), ("revoked", 200.0, "cessationOfOperation"))
        self.run_(lambda root: lifecycle.remove(root, root["devices"]["D"], 400.0))
        self.run_(lambda root: lifecycle.re_enroll(root, root["devices"]["D"], issued(root, "D"), 500.0))
        self.assertEqual(self.fields("D", "status", "kind", "enrollment_count"), ("enrolled", "windows", 2))

    def test_enroll_makes_windows_devices(self) -> None:
        """
        An enrollment makes a Windows device.
        """
        self.run_(lambda root: device_in(root, ENROLLED, "D").device_id)
        self.assertEqual(self.fields("D", "kind"), ("windows",))

    def test_unenroll_sets_unenrolled_at(self) -> None:
        """
        The unenrollment alert sets unenrolled_at (not removed_at) and revokes
        the certificate as cessationOfOperation; a second alert keeps the first time.
        """
        serial = self.run_(lambda root: device_in(root, UNENROLLED, "D").cert_serial)
        self.assertEqual(self.fields("D", "status", "unenrolled_at", "removed_at"), ("unenrolled", 200.0, None))
        self.assertEqual(self.certificate(serial), ("revoked", 200.0, "cessationOfOperation"))
        self.run_(lambda root: lifecycle.unenroll(root, root["devices"]["D"], 250.0))
        self.assertEqual(self.fields("D", "status", "unenrolled_at", "removed_at"), ("unenrolled", 200.0, None))
        self.assertEqual(self.certificate(serial), ("revoked", 200.0, "cessationOfOperation"))

    def test_remove_sets_removed_at(self) -> None:
        """
        Operator removal sets removed_at (not unenrolled_at) and revokes the
        certificate; removing again keeps the first time.
        """
        serial = self.run_(lambda root: device_in(root, REMOVED, "D").cert_serial)
        self.assertEqual(self.fields("D", "status", "unenrolled_at", "removed_at"), ("removed", None, 200.0))
        self.assertEqual(self.certificate(serial), ("revoked", 200.0, "cessationOfOperation"))
        self.run_(lambda root: lifecycle.remove(root, root["devices"]["D"], 250.0))
        self.assertEqual(self.fields("D", "status", "removed_at"), ("removed", 200.0))

    def test_remove_after_unenrollment(self) -> None:
        """
        Removing a device that left keeps when it left and adds when it was removed.
        """
        self.run_(lambda root: device_in(root, UNENROLLED, "D").device_id)
        self.run_(lambda root: lifecycle.remove(root, root["devices"]["D"], 300.0))
        self.assertEqual(self.fields("D", "status", "unenrolled_at", "removed_at"), ("removed", 200.0, 300.0))

    def test_re_enroll_clears_the_departure(self) -> None:
        """
        Re-enrolling a device that left and was removed clears unenrolled_at and
        removed_at, counts the enrollment and takes the new certificate; the
        history (first enrollment, last renewal, last contact) stays.
        """

        def history(root: Any) -> int:
            device = device_in(root, ENROLLED, "D")
            lifecycle.renew(root, device, issued(root, "D"), 150.0)
            lifecycle.record_contact(device, 160.0)
            lifecycle.unenroll(root, device, 200.0)
            lifecycle.remove(root, device, 210.0)
            assert device.cert_serial is not None
            return device.cert_serial

        old = self.run_(history)

        def re_enroll(root: Any) -> tuple[int | None, int]:
            certificate = issued(root, "D")
            return lifecycle.re_enroll(root, root["devices"]["D"], certificate, 300.0), certificate.serial

        replaced, new = self.run_(re_enroll)
        self.assertEqual(replaced, old)
        self.assertEqual(
            self.fields("D", "status", "unenrolled_at", "removed_at", "enrolled_at", "enrollment_count", "cert_serial"),
            ("enrolled", None, None, 300.0, 2, new),
        )
        self.assertEqual(
            self.fields("D", "first_enrolled_at", "renewed_at", "last_contact"), (100.0, 150.0, 160.0)
        )
        # revoked when the device left; the re-enrollment keeps that date and reason
        self.assertEqual(self.certificate(old), ("revoked", 200.0, "cessationOfOperation"))

    def test_re_enroll_supersedes(self) -> None:
        """
        Re-enrolling an enrolled device revokes its certificate as superseded.
        """
        old = self.run_(lambda root: device_in(root, ENROLLED, "D").cert_serial)
        self.run_(lambda root: lifecycle.re_enroll(root, root["devices"]["D"], issued(root, "D"), 300.0))
        self.assertEqual(self.certificate(old), ("revoked", 300.0, "superseded"))

    def test_renew(self) -> None:
        """
        Renewal takes the new certificate, sets renewed_at and revokes the old one as superseded.
        """
        old = self.run_(lambda root: device_in(root, ENROLLED, "D").cert_serial)

        def renew(root: Any) -> tuple[int | None, int]:
            certificate = issued(root, "D", not_after=7000.0)
            return lifecycle.renew(root, root["devices"]["D"], certificate, 300.0), certificate.serial

        replaced, new = self.run_(renew)
        self.assertEqual(replaced, old)
        self.assertEqual(
            self.fields("D", "cert_serial", "cert_not_after", "renewed_at", "enrolled_at", "enrollment_count"),
            (new, 7000.0, 300.0, 100.0, 1),
        )
        self.assertEqual(self.certificate(old), ("revoked", 300.0, "superseded"))
        self.assertEqual(self.certificate(new), ("valid", None, None))

    def test_revocation_without_a_known_certificate(self) -> None:
        """
        A record without a certificate, or pointing at one we have no record
        of, leaves or is removed all the same.
        """

        def steps(root: Any) -> tuple[str, str]:
            bare = device_in(root, ENROLLED, "BARE")
            bare.cert_serial = None
            stray = device_in(root, ENROLLED, "STRAY")
            stray.cert_serial = 1
            lifecycle.unenroll(root, bare, 300.0)
            lifecycle.remove(root, stray, 300.0)
            return bare.status, stray.status

        self.assertEqual(self.run_(steps), ("unenrolled", "removed"))
        self.assertEqual(self.store.read(lambda root: list(registry.revoked(root))), [])

    def test_contact_resolution(self) -> None:
        """
        Last contact is kept to a minute: messages within it leave the record untouched.
        """
        self.run_(lambda root: device_in(root, ENROLLED, "D").device_id)
        self.run_(lambda root: lifecycle.record_contact(root["devices"]["D"], 1000.0))
        self.assertEqual(self.fields("D", "last_contact"), (1000.0,))

        def again(root: Any) -> bool:
            device = root["devices"]["D"]
            lifecycle.record_contact(device, 1000.0 + lifecycle.LAST_CONTACT_RESOLUTION - 1)
            return bool(device._p_changed)

        self.assertFalse(self.run_(again))
        self.assertEqual(self.fields("D", "last_contact"), (1000.0,))
        self.run_(lambda root: lifecycle.record_contact(root["devices"]["D"], 1060.0))
        self.assertEqual(self.fields("D", "last_contact"), (1060.0,))


class CountingTests(SynchronousTestCase):
    """
    The counters and member sets of statuses and kinds, kept by each step.
    """

    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store

    def tallies(self) -> tuple[dict[str, int], dict[str, int], dict[str, list[str]]]:
        def read(root: Any) -> tuple[dict[str, int], dict[str, int], dict[str, list[str]]]:
            members = {
                value: list(family.member_set(root, value))
                for family in (lifecycle.STATUSES, lifecycle.KINDS)
                for value in family.values
            }
            return lifecycle.STATUSES.counts(root), lifecycle.KINDS.counts(root), members

        return self.store.read(read)

    def test_each_step_files_the_record(self) -> None:
        """
        Enrolling, registering, leaving, removing, registering again and
        re-enrolling move the device between the counts and sets of its
        status and kind; repeated steps count once.
        """
        self.store.run(lambda root: lifecycle.enroll(root, "W", issued(root, "W"), 100.0).device_id)
        self.store.run(lambda root: lifecycle.register(root, "C", 100.0).device_id)
        statuses, kinds, members = self.tallies()
        self.assertEqual((statuses, kinds), ({"enrolled": 2, "unenrolled": 0, "removed": 0}, {"windows": 1, "omadm": 1}))
        self.assertEqual((members["enrolled"], members["windows"], members["omadm"]), (["C", "W"], ["W"], ["C"]))

        self.store.run(lambda root: lifecycle.unenroll(root, root["devices"]["W"], 200.0))
        self.store.run(lambda root: lifecycle.unenroll(root, root["devices"]["W"], 210.0))
        self.store.run(lambda root: lifecycle.remove(root, root["devices"]["C"], 200.0))
        self.store.run(lambda root: lifecycle.remove(root, root["devices"]["C"], 210.0))
        statuses, kinds, members = self.tallies()
        self.assertEqual(statuses, {"enrolled": 0, "unenrolled": 1, "removed": 1})
        self.assertEqual((members["unenrolled"], members["removed"], members["enrolled"]), (["W"], ["C"], []))

        self.store.run(lambda root: lifecycle.remove(root, root["devices"]["W"], 300.0))
        self.store.run(lambda root: lifecycle.register(root, "W", 400.0).device_id)
        statuses, kinds, members = self.tallies()
        self.assertEqual((statuses, kinds), ({"enrolled": 1, "unenrolled": 0, "removed": 1}, {"windows": 0, "omadm": 2}))
        self.assertEqual((members["omadm"], members["windows"]), (["C", "W"], []))

        self.store.run(lambda root: lifecycle.re_enroll(root, root["devices"]["C"], issued(root, "C"), 500.0))
        statuses, kinds, members = self.tallies()
        self.assertEqual((statuses, kinds), ({"enrolled": 2, "unenrolled": 0, "removed": 0}, {"windows": 1, "omadm": 1}))
        self.assertEqual((members["enrolled"], members["windows"]), (["C", "W"], ["C"]))

    def test_contact_and_renewal_count_nothing(self) -> None:
        """
        A contact and a renewal keep the status: the counters are not written.
        """
        self.store.run(lambda root: lifecycle.enroll(root, "W", issued(root, "W"), 100.0).device_id)

        def serials(root: Any) -> list[Any]:
            families = (lifecycle.STATUSES.name, lifecycle.KINDS.name)
            return [counter._p_serial for (name, _), counter in root["counters"].items() if name in families]

        before = self.store.read(serials)
        self.store.run(lambda root: lifecycle.record_contact(root["devices"]["W"], 200.0))
        self.store.run(lambda root: lifecycle.renew(root, root["devices"]["W"], issued(root, "W"), 300.0))
        self.assertEqual(self.store.read(serials), before)
        self.assertEqual(self.tallies()[0]["enrolled"], 1)

    def test_track(self) -> None:
        """
        track counts a record put in the store directly (the upgrade's recount, test kits).
        """

        def direct(root: Any) -> None:
            device = device_in(root, REMOVED, "D")
            lifecycle.STATUSES.reset(root)
            lifecycle.KINDS.reset(root)
            lifecycle.track(root, device)

        self.store.run(direct)
        statuses, kinds, members = self.tallies()
        self.assertEqual((statuses["removed"], kinds["windows"], members["removed"]), (1, 1, ["D"]))
