"""
Tests for L{mdmd.testing.devices}: a device added to the store is one mdmd
can wake and authenticate as it would an enrolled one.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.notify import jobs
from mdmd.notify.pkg0 import parse_package0
from mdmd.notify.wap import parse_wsp_push, reassemble
from mdmd.testing.devices import SERVER_NONCE, SERVER_SECRET, add_device
from mdmd.testing.randomness import fixed_random
from mdmd.testing.store import memory_store_service


class AddDeviceTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store

    def test_record(self) -> None:
        """
        The device is stored enrolled, with its MSISDN, context and both DM credentials.
        """
        self.store.run(add_device, "D1", "+491709999999", context=(("OSVersion", "10"),))
        record = self.store.read(
            lambda root: (
                (d := root["devices"]["D1"]).status,
                d.msisdn,
                d.context,
                (d.dm_client_name, d.dm_client_secret, d.dm_client_nonce),
                (d.dm_server_name, d.dm_server_secret, d.dm_server_nonce),
            )
        )
        self.assertEqual(
            record,
            (
                "enrolled",
                "+491709999999",
                (("OSVersion", "10"),),
                ("device-name", "device-secret", b"\x01" * 16),
                ("mdmd", SERVER_SECRET, SERVER_NONCE),
            ),
        )

    def test_can_be_woken(self) -> None:
        """
        mdmd pushes to it: the package #0 is from its server name and signed
        with L{SERVER_SECRET} over L{SERVER_NONCE}.
        """
        self.store.run(add_device, "D1", server_name="srv")
        (job,) = self.store.run(jobs.enqueue, ["D1"], jobs.PushSettings(), 10.0, fixed_random(0xD))
        _, _, datagram = reassemble([segment.short_message for segment in job.segments])
        package0 = parse_package0(parse_wsp_push(datagram).body)
        self.assertEqual((package0.server_id, package0.session_id), ("srv", 0xD))
        self.assertTrue(package0.verify(SERVER_SECRET, SERVER_NONCE))

    def test_status(self) -> None:
        """
        A device in another status is refused a push as mdmd refuses any such device.
        """
        self.store.run(add_device, "D1", status="removed")
        with self.assertRaises(jobs.NotPushable):
            self.store.run(jobs.enqueue, ["D1"], jobs.PushSettings(), 10.0, fixed_random())
