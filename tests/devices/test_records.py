"""
Tests for L{mdmd.devices.records}: device records read and removed as units of work.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd.devices import lifecycle, records
from mdmd.pki import registry
from mdmd.store.paging import BadCursor, Cursor, Page, PageRequest
from mdmd.testing import fleet
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
        assert left is not None
        self.assertEqual((left.status, left.unenrolled_at, left.as_json()["unenrolled_at"]), ("unenrolled", 200.0, 200.0))
        self.assertIsNone(self.store.read(records.lookup_device, "NOPE"))

    def test_remove(self) -> None:
        """
        An operator's removal goes through the lifecycle: status, removed_at, certificate revoked.
        """
        removed = self.store.run(records.remove, "A", 300.0)
        self.assertEqual((removed.status, removed.removed_at, removed.unenrolled_at), ("removed", 300.0, None))
        certificate = self.store.read(registry.lookup, removed.cert_serial)
        assert certificate is not None
        self.assertEqual(certificate.status, "revoked")
        self.assertEqual(self.store.read(records.device_counts)["removed"], 1)

    def test_unknown(self) -> None:
        """
        Removing, or finding the record of, an unknown device raises UnknownDevice naming it.
        """
        with self.assertRaises(records.UnknownDevice) as caught:
            self.store.run(records.remove, "NOPE", 300.0)
        self.assertEqual(str(caught.exception), "no device 'NOPE'")
        self.assertRaises(records.UnknownDevice, self.store.read, records.device_record, "NOPE")


def _ids(page: Page[records.DeviceInfo]) -> list[str]:
    return [d.device_id for d in page.items]


class PageTests(SynchronousTestCase):
    """
    Devices listed in pages, filtered.
    """

    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store
        self.ca = fleet.FleetCA()

        def fleet_of(root: Any) -> None:
            for n in range(6):
                fleet.enroll(root, self.ca, f"W{n}", 100.0, user="alice@example.com" if n % 2 else "bob")
            for n in range(4):
                fleet.register(root, f"C{n}", 100.0)
            lifecycle.record_contact(root["devices"]["W1"], 500.0)
            lifecycle.record_contact(root["devices"]["C1"], 900.0)
            records.remove(root, "W2", 200.0)
            records.remove(root, "C2", 200.0)

        self.store.run(fleet_of)

    def page(self, query: records.DeviceQuery = records.DeviceQuery(), **request: Any) -> Page[records.DeviceInfo]:
        return self.store.read(records.device_page, query, PageRequest(**request))

    def every(self, query: records.DeviceQuery, limit: int = 2, scan_limit: int = 5000) -> list[str]:
        found: list[str] = []
        cursor = None
        while True:
            page = self.page(query, limit=limit, cursor=cursor, scan_limit=scan_limit)
            found += _ids(page)
            if page.next is None:
                return found
            cursor = page.next

    def test_pages_by_device_id(self) -> None:
        """
        Pages come in DeviceID order; following the cursors lists every device once.
        """
        first = self.page(limit=3)
        self.assertEqual(_ids(first), ["C0", "C1", "C2"])
        self.assertEqual(self.every(records.DeviceQuery()), ["C0", "C1", "C2", "C3", "W0", "W1", "W2", "W3", "W4", "W5"])

    def test_filters(self) -> None:
        """
        Status, kind, user (any case) and last contact filter, alone or together.
        """
        Q = records.DeviceQuery
        self.assertEqual(self.every(Q(status="removed")), ["C2", "W2"])
        self.assertEqual(self.every(Q(kind="omadm")), ["C0", "C1", "C2", "C3"])
        self.assertEqual(self.every(Q(status="enrolled", kind="windows")), ["W0", "W1", "W3", "W4", "W5"])
        self.assertEqual(self.every(Q(user="Alice@Example.COM")), ["W1", "W3", "W5"])
        self.assertEqual(self.every(Q(contact_after=400.0)), ["C1", "W1"])
        self.assertEqual(self.every(Q(contact_after=400.0, contact_before=600.0)), ["W1"])
        self.assertEqual(self.every(Q(contact_before=600.0, kind="omadm")), ["C0", "C2", "C3"])
        self.assertEqual(self.every(Q(status="unenrolled")), [])

    def test_indexed_filters_walk_only_their_members(self) -> None:
        """
        A status or kind filter walks that value's member set (the smaller of
        two: the two removed devices, not the four classic ones): with a scan
        limit of one record a page, two pages list them all.
        """
        pages = []
        cursor = None
        while True:
            page = self.page(records.DeviceQuery(status="removed", kind="omadm"), limit=5, cursor=cursor, scan_limit=1)
            pages.append(_ids(page))
            if page.next is None:
                break
            cursor = page.next
        self.assertEqual(pages, [["C2"], []])
        page = self.page(records.DeviceQuery(user="nobody"), limit=5, scan_limit=4)
        self.assertEqual((_ids(page), page.partial), ([], True))

    def test_stable_under_inserts(self) -> None:
        """
        Devices enrolled between two pages shift nothing: those before the
        cursor are not listed, those after it are, nothing twice.
        """
        first = self.page(limit=3)
        self.store.run(lambda root: [fleet.enroll(root, self.ca, name, 300.0) for name in ("A0", "C15", "Z9")])
        rest = []
        cursor = first.next
        while cursor is not None:
            page = self.page(limit=3, cursor=cursor)
            rest += _ids(page)
            cursor = page.next
        self.assertEqual(_ids(first) + rest, ["C0", "C1", "C2", "C3", "W0", "W1", "W2", "W3", "W4", "W5", "Z9"])

    def test_bad_cursor(self) -> None:
        """
        A cursor of another listing is refused.
        """
        self.assertRaises(
            BadCursor, self.page, cursor=Cursor("certificates", 5)
        )

    def test_kind_counts(self) -> None:
        """
        Devices are counted by kind too.
        """
        self.assertEqual(self.store.read(records.kind_counts), {"windows": 6, "omadm": 4})
