"""
Tests for L{mdmd.enroll.devices}: enrollment and renewal as units of work, with
the CA signing inside the same transaction (real ZODB, real CA).
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd.devices import lifecycle, records
from mdmd.enroll import devices
from mdmd.enroll.provisioning import DMCredentials
from mdmd.pki import registry
from mdmd.testing.store import memory_store_service

from ..pki.helpers import started_ca
from .helpers import KEY, OTHER_KEY

DEVICE_ID = "7BA748C8-703E-4DF2-A74A-92984117346A"
CONTEXT = (
    ("HWDevID", "AB" * 32),
    ("DeviceName", "DESKTOP-1"),
    ("MAC", "00:11:22:33:44:55"),
    ("MAC", "00:11:22:33:44:56"),
    ("DeviceID", DEVICE_ID),
    ("EnrollmentType", "Full"),
    ("DeviceType", "CIMClient_Windows"),
    ("OSVersion", "10.0.26100.1"),
    ("OSEdition", "48"),
    ("ApplicationVersion", "10.0.26100.1"),
)
_counter = itertools.count(1)


def credentials() -> DMCredentials:
    return DMCredentials.generate(DEVICE_ID, "mdmd", "DIGEST", lambda n: bytes([next(_counter) % 256]) * n)


def facts(user: str = "alice", device_id: str = DEVICE_ID) -> devices.EnrollmentFacts:
    return devices.EnrollmentFacts(device_id, user, "OnPremise", "User", CONTEXT)


def record_contact(root: Any, device_id: str, now: float) -> None:
    """
    A unit of work: the DM check-in's contact step, by device id.
    """
    lifecycle.record_contact(records.device_record(root, device_id), now)


def unenroll(root: Any, device_id: str, now: float) -> records.DeviceInfo:
    """
    A unit of work: the DM check-in's step for the unenrollment alert, by device id.
    """
    device = records.device_record(root, device_id)
    lifecycle.unenroll(root, device, now)
    return records.device_info(device)


class DeviceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = memory_store_service()
        self.addCleanup(self.store.stopService)
        self.ca = started_ca(self, store=self.store)
        self.now = 1000.0

    def enroll(self, f: devices.EnrollmentFacts | None = None, key: Any = KEY, creds: DMCredentials | None = None) -> devices.Enrolled:
        return self.successResultOf(
            self.ca.transact_issuing(devices.enroll, f or facts(), key.public_key(), creds or credentials(), self.now)
        )

    def read(self, fn: Any, *args: Any) -> Any:
        return self.successResultOf(self.store.read(fn, *args))

    def test_first_enrollment(self) -> None:
        """
        A new device gets a record with the reported facts, the user, its
        certificate and DM credentials; the certificate is recorded for it.
        """
        creds = credentials()
        enrolled = self.enroll(creds=creds)
        info = enrolled.device
        self.assertFalse(enrolled.known)
        self.assertEqual(
            (info.device_id, info.user, info.status, info.device_name, info.os_edition, info.hw_dev_id),
            (DEVICE_ID, "alice", "enrolled", "DESKTOP-1", "48", "AB" * 32),
        )
        self.assertEqual(info.context, CONTEXT)
        self.assertEqual(info.as_json()["mac_addresses"], ["00:11:22:33:44:55", "00:11:22:33:44:56"])
        self.assertEqual((info.enrollment_count, info.first_enrolled_at, info.enrolled_at), (1, 1000.0, 1000.0))
        self.assertEqual(info.cert_serial, enrolled.certificate.serial_number)
        record = self.read(registry.lookup, info.cert_serial)
        self.assertEqual((record.device_id, record.status), (DEVICE_ID, "valid"))
        self.assertEqual(self.read(devices.dm_credentials, DEVICE_ID), creds)

    def test_re_enrollment_updates_in_place(self) -> None:
        """
        Re-enrolling revokes the old certificate (superseded), issues a new
        one, replaces the DM credentials, and keeps the same record.
        """
        first = self.enroll()
        self.now = 2000.0
        creds = credentials()
        second = self.enroll(key=OTHER_KEY, creds=creds)
        self.assertTrue(second.known)
        self.assertEqual(second.replaced_serial, first.device.cert_serial)
        self.assertEqual(
            (second.device.enrollment_count, second.device.first_enrolled_at, second.device.enrolled_at),
            (2, 1000.0, 2000.0),
        )
        old = self.read(registry.lookup, first.device.cert_serial)
        self.assertEqual((old.status, old.revocation_reason), ("revoked", "superseded"))
        self.assertEqual(self.read(devices.dm_credentials, DEVICE_ID), creds)

        def same_object(root: Any) -> bool:
            return root["devices"][DEVICE_ID].first_enrolled_at == 1000.0 and len(root["devices"]) == 1

        self.assertTrue(self.read(same_object))

    def test_other_user_refused_without_trace(self) -> None:
        """
        Another user cannot take over an enrolled DeviceID; nothing is signed or recorded.
        """
        self.enroll()
        certificates = len(self.read(registry.list_certificates))
        failure = self.failureResultOf(
            self.ca.transact_issuing(devices.enroll, facts("mallory"), KEY.public_key(), credentials(), self.now),
            devices.DeviceOwnedByAnotherUser,
        )
        self.assertIn("enrolled by alice", str(failure.value))
        self.assertEqual(len(self.read(registry.list_certificates)), certificates)
        self.assertEqual(self.read(records.lookup_device, DEVICE_ID).user, "alice")

    def test_failure_leaves_nothing(self) -> None:
        """
        A unit that fails after signing commits neither the certificate nor the device.
        """

        def failing(root: Any, issue: Any) -> None:
            devices.enroll(root, issue, facts(), KEY.public_key(), credentials(), self.now)
            raise RuntimeError("disk full")

        self.failureResultOf(self.ca.transact_issuing(failing), RuntimeError)
        self.assertEqual(self.read(registry.list_certificates), [])
        self.assertIsNone(self.read(records.lookup_device, DEVICE_ID))

    def test_removed_device_may_enroll_again(self) -> None:
        """
        After removal (certificate revoked, status removed) the device can enroll again, for anyone.
        """
        first = self.enroll()
        removed = self.successResultOf(self.store.transact(records.remove, DEVICE_ID, 1500.0))
        self.assertEqual((removed.status, removed.removed_at), ("removed", 1500.0))
        record = self.read(registry.lookup, first.device.cert_serial)
        self.assertEqual((record.status, record.revocation_reason), ("revoked", "cessationOfOperation"))
        again = self.enroll(facts("bob"))
        self.assertEqual((again.device.status, again.device.user, again.device.removed_at), ("enrolled", "bob", None))

    def test_renew(self) -> None:
        """
        Renewal replaces the current certificate and keeps the DM credentials;
        a stale serial or a removed device is not eligible.
        """
        creds = credentials()
        first = self.enroll(creds=creds)
        serial = first.device.cert_serial
        renewed = self.successResultOf(
            self.ca.transact_issuing(devices.renew, DEVICE_ID, serial, OTHER_KEY.public_key(), 3000.0)
        )
        self.assertEqual((renewed.replaced_serial, renewed.device.renewed_at), (serial, 3000.0))
        self.assertEqual(renewed.device.cert_serial, renewed.certificate.serial_number)
        self.assertEqual(self.read(devices.dm_credentials, DEVICE_ID), creds)
        self.assertEqual(self.read(registry.lookup, serial).status, "revoked")
        for device_id, old_serial, expected in (
            (DEVICE_ID, serial, "not the current certificate"),
            ("NOPE", serial, "not enrolled here"),
        ):
            failure = self.failureResultOf(
                self.ca.transact_issuing(devices.renew, device_id, old_serial, KEY.public_key(), 3000.0),
                devices.NotEligibleToRenew,
            )
            self.assertIn(expected, str(failure.value))
        self.successResultOf(self.store.transact(records.remove, DEVICE_ID, 3100.0))
        failure = self.failureResultOf(
            self.ca.transact_issuing(devices.renew, DEVICE_ID, renewed.device.cert_serial, KEY.public_key(), 3200.0),
            devices.NotEligibleToRenew,
        )
        self.assertIn("is removed", str(failure.value))

    def test_dm_session_helpers(self) -> None:
        """
        The DM engine's helpers: nonces are replaced (raw bytes), contact is
        recorded, an unenrollment alert revokes and marks the device.
        """
        self.enroll()
        updated = self.successResultOf(
            self.store.transact(devices.update_nonces, DEVICE_ID, client_nonce=b"\x00\xff" * 8)
        )
        self.assertEqual(updated.client_nonce, b"\x00\xff" * 8)
        self.assertEqual(self.read(devices.dm_credentials, DEVICE_ID).client_nonce, b"\x00\xff" * 8)
        self.successResultOf(self.store.transact(record_contact, DEVICE_ID, 4000.0))
        self.assertEqual(self.read(records.lookup_device, DEVICE_ID).last_contact, 4000.0)
        left = self.successResultOf(self.store.transact(unenroll, DEVICE_ID, 4100.0))
        self.assertEqual(left.status, "unenrolled")
        self.assertEqual(self.read(registry.lookup, left.cert_serial).status, "revoked")
        self.assertEqual(self.read(records.device_counts), {"enrolled": 0, "unenrolled": 1, "removed": 0})
        for unit in (records.remove, unenroll, record_contact):
            self.failureResultOf(self.store.transact(unit, "NOPE", 1.0), records.UnknownDevice)
        self.failureResultOf(
            self.store.transact(devices.update_nonces, "NOPE", client_nonce=b"\x00"), records.UnknownDevice
        )
        self.assertIsNone(self.read(devices.dm_credentials, "NOPE"))

    def test_listing(self) -> None:
        """
        Devices are listed in DeviceID order and counted by status.
        """
        self.enroll(facts(device_id="B-DEVICE"))
        self.enroll(facts(device_id="A-DEVICE"))
        self.assertEqual([d.device_id for d in self.read(records.list_devices)], ["A-DEVICE", "B-DEVICE"])
        self.assertEqual(self.read(records.device_counts)["enrolled"], 2)


class ReEnrollmentInventoryTests(SynchronousTestCase):
    """
    The enrollment's unit of work queues the inventory Gets once (issue 12: Windows
    enrolls again with the same DeviceID, and they were queued again beside the unsent ones).
    """

    def setUp(self) -> None:
        self.store = memory_store_service()
        self.addCleanup(self.store.stopService)
        self.ca = started_ca(self, store=self.store)
        self.now = 1000.0

    def enroll(self) -> None:
        from mdmd.enroll.operations import _confirm_and_enroll
        from mdmd.enroll.policies import Principal

        principal = Principal("alice", "OnPremise", "alice@example.com", lambda root: "alice")
        from mdmd.dm.commands import parse_spec

        inventory = tuple(parse_spec({"verb": "Get", "target": uri}) for uri in ("./DevDetail/SwV", "./DevDetail/OEM"))
        self.successResultOf(
            self.ca.transact_issuing(
                _confirm_and_enroll, principal, facts(), KEY.public_key(), credentials(), self.now, inventory
            )
        )
        self.now += 60

    def targets(self) -> list[tuple[str, str]]:
        from mdmd.dm import queue

        found = self.successResultOf(self.store.read(queue.list_commands, DEVICE_ID))
        return [(c.spec["items"][0]["target"], c.state) for c in found]

    def test_queued_once(self) -> None:
        """
        Enrolling again while the Gets are unsent queues nothing more; once they were
        answered, a new enrollment queues them again.
        """
        self.enroll()
        self.enroll()
        self.assertEqual(self.targets(), [("./DevDetail/SwV", "queued"), ("./DevDetail/OEM", "queued")])

        def answer(root: Any) -> None:
            from mdmd.dm import queue

            dm = queue.queue_of(root, DEVICE_ID)
            for seq in (1, 2):
                queue.mark_sent(root, dm, seq, ("S", "1", str(seq)), self.now)
                queue.mark_answered(root, dm, seq, "done", 200, (), (), self.now)

        self.successResultOf(self.store.transact(answer))
        self.enroll()
        self.assertEqual([state for _, state in self.targets()], ["done", "done", "queued", "queued"])
