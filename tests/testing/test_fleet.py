"""
Tests for L{mdmd.testing.fleet}: fleets made by the real units of work, and the slow recount.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from twisted.trial.unittest import SynchronousTestCase

from mdmd.pki import registry
from mdmd.testing import fleet
from mdmd.testing.store import memory_store_service


class FleetTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store
        self.ca = fleet.FleetCA()

    def test_enrolled_as_the_endpoint_enrolls(self) -> None:
        """
        An enrolled device has a certificate issued by the fleet CA for its
        DeviceID and recorded; a renewal replaces it; a registered device is classic.
        """

        def made(root: Any) -> tuple[int, int]:
            enrolled = fleet.enroll(root, self.ca, "W1", 100.0)
            renewed = fleet.renew(root, self.ca, "W1", 200.0)
            fleet.register(root, "C1", 100.0, inventory=("./DevInfo/Man",))
            enrolled.certificate.verify_directly_issued_by(self.ca.authority.certificate)
            name = enrolled.certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
            assert name == "W1"
            return enrolled.certificate.serial_number, renewed.certificate.serial_number

        first, second = self.store.run(made)
        found = [self.store.read(registry.lookup, serial) for serial in (first, second)]
        self.assertEqual([None if info is None else info.status for info in found], ["revoked", "valid"])
        self.assertEqual(self.store.read(lambda root: root["devices"]["C1"].kind), "omadm")

    def test_recount_agrees_with_the_counters(self) -> None:
        """
        The slow recount and what the counters say agree, as do the indexes; zeros are left out.
        """

        def made(root: Any) -> None:
            fleet.enroll(root, self.ca, "W1", 100.0)
            seq = fleet.queue_get(root, "W1", 110.0)
            fleet.send_and_answer(root, "W1", seq, 120.0, status=404)

        self.store.run(made)
        counted = self.store.read(fleet.recount)
        self.assertEqual(counted["commands.state"], {"failed": 1})
        self.assertEqual(self.store.read(fleet.kept_counts), counted)
        self.assertEqual(self.store.read(fleet.kept_indexes), self.store.read(fleet.indexes))
