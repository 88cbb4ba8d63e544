"""
Tests for L{mdmd.testing.population}: a population's devices, their records and their files.
"""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm.checkin import DMSettings
from mdmd.pki.ca import CertificateAuthority
from mdmd.testing.population import (
    INVENTORY,
    DeviceRecord,
    Population,
    PopulationFiles,
    add_devices,
    in_process_post,
    run_sync,
)
from mdmd.testing.store import memory_store_service

NOW = 1_800_000_000.0
_CA_KEY = rsa.generate_private_key(65537, 2048)
_DEVICE_KEY = rsa.generate_private_key(65537, 2048)
CA = CertificateAuthority.create(
    _CA_KEY, "test CA", "mdmd", datetime.timedelta(days=3650), datetime.datetime.fromtimestamp(NOW - 10, datetime.timezone.utc)
)
POPULATION = Population(seed="test", size=10, issued_at=NOW, keys=1)
URL = "https://localhost/ManagementServer/MDM.svc"


def _der(index: int) -> bytes:
    return POPULATION.certificate(index, CA, _DEVICE_KEY.public_key()).public_bytes(serialization.Encoding.DER)


def _records(root: Any, device_id: str) -> dict[str, Any]:
    """
    Everything the store keeps about one device, as plain values.
    """

    def plain(record: Any) -> dict[str, Any]:
        return {k: v for k, v in record.__dict__.items() if not k.startswith("_p_")}

    device = root["devices"][device_id]
    queue = root["queues"][device_id]
    return {
        "device": plain(device),
        "certificate": plain(root["certs"][device.cert_serial]),
        "commands": {seq: plain(command) for seq, command in queue.commands.items()},
        "pending": list(queue.pending),
        "next_seq": queue.next_seq,
        "session": root["sessions"][device_id].state,
    }


class PopulationTests(SynchronousTestCase):
    def test_derived(self) -> None:
        """
        A device's id, serial and secrets follow from the seed and its index alone.
        """
        again = Population(seed="test", size=10, issued_at=NOW, keys=1)
        self.assertEqual(again.device_id(3), POPULATION.device_id(3))
        self.assertNotEqual(POPULATION.device_id(3), POPULATION.device_id(4))
        self.assertEqual(len(POPULATION.device_id(3)), 32)
        self.assertEqual(again.credentials(3, "mdmd"), POPULATION.credentials(3, "mdmd"))
        self.assertNotEqual(Population(seed="other", size=10, issued_at=NOW).device_id(3), POPULATION.device_id(3))
        self.assertTrue(0 < POPULATION.serial(3) < 2**159)

    def test_certificate_is_reproducible(self) -> None:
        """
        The certificate rebuilt for a device is, byte for byte, the one the CA issued it.
        """
        self.assertEqual(_der(2), _der(2))
        certificate = x509.load_der_x509_certificate(_der(2))
        self.assertEqual(certificate.serial_number, POPULATION.serial(2))
        self.assertEqual(
            certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, POPULATION.device_id(2)
        )
        certificate.verify_directly_issued_by(CA.certificate)


class AddDevicesTests(SynchronousTestCase):
    def populate(self, real_sessions: bool) -> tuple[Any, dict[int, bytes]]:
        store = memory_store_service()
        self.addCleanup(store.stopService)
        nonces = self.successResultOf(
            store.transact(
                add_devices,
                POPULATION,
                [(0, _der(0)), (1, _der(1))],
                URL,
                "mdmd",
                DMSettings(),
                [uri for uri, _ in INVENTORY],
                random=lambda size: POPULATION.next_nonce(0)[:size],
                real_sessions=real_sessions,
            )
        )
        return store, nonces

    def test_replayed_session_leaves_the_same_records(self) -> None:
        """
        A replayed first session leaves exactly the records the real one
        does (given the same server nonce): device, certificate, six
        finished and two queued commands, session.
        """
        real, _ = self.populate(real_sessions=True)
        replayed, nonces = self.populate(real_sessions=False)
        device_id = POPULATION.device_id(0)
        expected = self.successResultOf(real.read(_records, device_id))
        found = self.successResultOf(replayed.read(_records, device_id))
        self.assertEqual(found, expected)
        self.assertEqual(nonces[0], POPULATION.next_nonce(0))
        self.assertEqual([c["state"] for c in found["commands"].values()], ["done"] * 6 + ["queued"] * 2)
        self.assertEqual(found["device"]["inventory"], dict(INVENTORY))

    def test_next_session(self) -> None:
        """
        With the nonce it was left with, a populated device's emulator runs
        its next session: the two queued commands are answered.
        """
        store, nonces = self.populate(real_sessions=False)
        client = POPULATION.dm_client(1, URL, nonces[1], "mdmd")
        certificate = x509.load_der_x509_certificate(_der(1))

        def session(root: Any) -> bytes:
            post = in_process_post(root, certificate, NOW + 3600, DMSettings(), lambda size: b"\x07" * size)
            log = run_sync(client.session(post))
            self.assertEqual((log.messages, len(log.received)), (2, 2))
            return client.client_nonce

        self.assertEqual(self.successResultOf(store.transact(session)), b"\x07" * 16)
        states = self.successResultOf(
            store.read(lambda root: [c.state for c in root["queues"][POPULATION.device_id(1)].commands.values()])
        )
        self.assertEqual(states, ["done"] * 8)

    def test_run_sync_refuses_waiting(self) -> None:
        """
        A coroutine that waits on something cannot be run to its end at once.
        """

        async def waits() -> None:
            await Deferred()

        self.assertRaises(RuntimeError, run_sync, waits())


class PopulationFilesTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """
        The manifest, keys and per-device records are read back as written.
        """
        files = PopulationFiles(self.mktemp())
        self.assertFalse(files.exists())
        files.create(POPULATION, [_DEVICE_KEY])
        self.assertTrue(files.exists())
        self.assertEqual(files.population(), POPULATION)
        (key,) = files.keys()
        self.assertEqual(key.private_numbers(), _DEVICE_KEY.private_numbers())
        self.assertEqual(files.read([4]), {4: DeviceRecord(b"\x00" * 16, 0)})
        files.write({4: DeviceRecord(b"\x01" * 16, 2), 9: DeviceRecord(b"\x02" * 16, 1)})
        self.assertEqual(
            files.read([3, 4, 9]),
            {3: DeviceRecord(b"\x00" * 16, 0), 4: DeviceRecord(b"\x01" * 16, 2), 9: DeviceRecord(b"\x02" * 16, 1)},
        )
