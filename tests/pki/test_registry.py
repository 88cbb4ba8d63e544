"""
Tests for L{mdmd.pki.registry}: counting certificates, indexing them by device, listing them in pages.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd.pki import registry
from mdmd.store.paging import BadCursor, Cursor, PageRequest
from mdmd.testing import fleet
from mdmd.testing.store import memory_store_service


class RegistryTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store
        ca = fleet.FleetCA()

        def certificates(root: Any) -> None:
            for device_id in ("B", "A", "C"):
                fleet.enroll(root, ca, device_id, 100.0)
            fleet.renew(root, ca, "A", 200.0)
            fleet.renew(root, ca, "A", 300.0)

        self.store.run(certificates)

    def every(self, query: registry.CertificateQuery, limit: int = 2) -> list[registry.CertificateInfo]:
        found: list[registry.CertificateInfo] = []
        cursor = None
        while True:
            page = self.store.read(registry.certificate_page, query, PageRequest(limit=limit, cursor=cursor))
            found += page.items
            if page.next is None:
                return found
            cursor = page.next

    def test_counted_by_status(self) -> None:
        """
        Issuing counts a valid certificate; revoking moves it to revoked, once.
        """
        self.assertEqual(self.store.read(registry.STATUSES.counts), {"valid": 3, "revoked": 2})
        serial = self.store.read(lambda root: root["devices"]["B"].cert_serial)
        self.store.run(registry.revoke, serial, "keyCompromise", 400.0)
        self.store.run(registry.revoke, serial, "keyCompromise", 500.0)
        self.assertEqual(self.store.read(registry.STATUSES.counts), {"valid": 2, "revoked": 3})

    def test_a_devices_certificates_oldest_first(self) -> None:
        """
        A device's certificates come from the per-device index, oldest first, in pages.
        """
        found = self.every(registry.CertificateQuery(device_id="A"))
        self.assertEqual([(c.device_id, c.issued_at, c.status) for c in found],
                         [("A", 100.0, "revoked"), ("A", 200.0, "revoked"), ("A", 300.0, "valid")])
        self.assertEqual([c.serial for c in found], [c.serial for c in self.store.read(registry.list_certificates, "A")])
        self.assertEqual(self.every(registry.CertificateQuery(device_id="A", status="valid"))[0].issued_at, 300.0)
        self.assertEqual(self.every(registry.CertificateQuery(device_id="NOPE")), [])

    def test_all_by_serial(self) -> None:
        """
        All certificates come by serial; the revoked ones from the CRL's list, the valid ones filtered.
        """
        found = self.every(registry.CertificateQuery())
        self.assertEqual([c.serial for c in found], sorted(c.serial for c in found))
        self.assertEqual(len(found), 5)
        revoked = self.every(registry.CertificateQuery(status="revoked"))
        self.assertEqual([(c.device_id, c.status) for c in revoked], [("A", "revoked")] * 2)
        self.assertEqual(len(self.every(registry.CertificateQuery(status="valid"))), 3)

    def test_cursors_keep_to_their_listing(self) -> None:
        """
        A cursor of all certificates does not continue one device's, nor the other way round.
        """
        page = self.store.read(registry.certificate_page, registry.CertificateQuery(), PageRequest(limit=1))
        assert page.next is not None
        self.assertRaises(
            BadCursor, self.store.read, registry.certificate_page, registry.CertificateQuery(device_id="A"),
            PageRequest(cursor=page.next),
        )
        self.assertRaises(
            BadCursor, self.store.read, registry.certificate_page, registry.CertificateQuery(),
            PageRequest(cursor=Cursor(registry.DEVICE_LISTING.name, ("A", 1.0, 2))),
        )
