"""
Tests for L{mdmd.devices.records}: device records read and removed as units of work.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd.devices import lifecycle, records
from mdmd.pki import registry
from mdmd.testing.store import memory_store_service

from .helpers import issued


class RecordTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store

        def devices(root: Any) -> None:
            for device_id in ("B", "A", "C"):
                lifecycle.enroll(root, device_id, issued(root, device_id), 100.0)
            lifecycle.unenroll(root, root["devices"]["C"], 200.0)

        self.store.run(devices)

    def test_counts_every_status(self) -> None:
        """
        Every status is counted, those with no device as 0.
        """
        self.assertEqual(self.store.read(records.device_counts), {"enrolled": 2, "unenrolled": 1, "removed": 0})

    def test_lookup_and_list(self) -> None:
        """
        Records come out as plain values, listed by DeviceID; an unknown id is None.
        """
        self.assertEqual([d.device_id for d in self.store.read(records.list_devices)], ["A", "B", "C"])
        left = self.store.read(records.lookup_device, "C")
        self.assertEqual((left.status, left.unenrolled_at, left.as_json()["unenrolled_at"]), ("unenrolled", 200.0, 200.0))
        self.assertIsNone(self.store.read(records.lookup_device, "NOPE"))

    def test_remove(self) -> None:
        """
        An operator's removal goes through the lifecycle: status, removed_at, certificate revoked.
        """
        removed = self.store.run(records.remove, "A", 300.0)
        self.assertEqual((removed.status, removed.removed_at, removed.unenrolled_at), ("removed", 300.0, None))
        self.assertEqual(self.store.read(registry.lookup, removed.cert_serial).status, "revoked")
        self.assertEqual(self.store.read(records.device_counts)["removed"], 1)

    def test_unknown(self) -> None:
        """
        Removing, or finding the record of, an unknown device raises UnknownDevice naming it.
        """
        with self.assertRaises(records.UnknownDevice) as caught:
            self.store.run(records.remove, "NOPE", 300.0)
        self.assertEqual(str(caught.exception), "no device 'NOPE'")
        self.assertRaises(records.UnknownDevice, self.store.read, records.device_record, "NOPE")
