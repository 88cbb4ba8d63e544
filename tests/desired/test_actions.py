"""
Tests for L{mdmd.desired.actions}: wipe, lock, reboot queued and tracked like commands.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd.desired import actions
from mdmd.devices.records import UnknownDevice
from mdmd.dm import queue as dm_queue
from mdmd.dm.commands import parse_spec
from mdmd.dm.csp import LAWMO_STATE, DeviceAction, UnsupportedAction
from mdmd.testing.store import memory_store_service

from .helpers import Fleet


def with_inventory(root: Any, device_id: str, **values: str) -> None:
    device = root["devices"][device_id]
    device.inventory = {**(device.inventory or {}), **values}


class ActionTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store
        self.fleet = Fleet(self.store)

    def test_wipe_tracked(self) -> None:
        """
        A wipe is an Exec of RemoteWipe/doWipe, queued, then sent and done
        with the device's status; the device carried it out.
        """
        client = self.fleet.add("D1")
        info = self.store.run(actions.request, "D1", DeviceAction.WIPE, 5.0)
        self.assertEqual((info.action, info.node, info.state), ("wipe", "./Device/Vendor/MSFT/RemoteWipe/doWipe", "queued"))
        self.fleet.session("D1")
        (done,) = self.store.read(actions.list_actions, "D1")
        self.assertEqual((done.seq, done.state, done.status), (info.seq, "done", 200))
        self.assertEqual(client.settings.executed, ["./Device/Vendor/MSFT/RemoteWipe/doWipe"])  # type: ignore[union-attr]

    def test_reboot_and_lock_refused_without_pin(self) -> None:
        """
        Reboot and lock (which needs a known Windows build) go out; a lock the
        device refuses (no PIN: 405) shows failed with that status. Newest first.
        """
        client = self.fleet.add("D1")
        client.settings.pin_set = False  # type: ignore[union-attr]
        self.store.run(with_inventory, "D1", **{"./DevDetail/SwV": "10.0.26100.2314"})
        self.store.run(actions.request, "D1", DeviceAction.REBOOT, 5.0)
        self.store.run(actions.request, "D1", DeviceAction.LOCK, 6.0)
        self.fleet.session("D1")
        lock, reboot = self.store.read(actions.list_actions, "D1")
        self.assertEqual((lock.action, lock.state, lock.status), ("lock", "failed", 405))
        self.assertEqual((reboot.action, reboot.state, reboot.status), ("reboot", "done", 200))

    def test_refused_before_queued(self) -> None:
        """
        What a device cannot do is refused and nothing is queued; an unknown device too.
        """
        self.fleet.add("D1")
        self.assertRaises(UnsupportedAction, self.store.run, actions.request, "D1", DeviceAction.UNLOCK, 5.0)
        self.assertRaises(UnsupportedAction, self.store.run, actions.request, "D1", DeviceAction.REBOOT, 5.0)
        self.assertEqual(self.store.read(actions.list_actions, "D1"), [])
        self.assertRaises(UnknownDevice, self.store.run, actions.request, "nobody", DeviceAction.WIPE, 5.0)

    def test_classic_device_lawmo(self) -> None:
        """
        A classic device is locked with LAWMO once it reported the object (a
        value of ./LAWMO/State kept in its inventory), not before.
        """
        client = self.fleet.add("C1", kind="omadm")
        client.settings.set(LAWMO_STATE, "30", "int")  # type: ignore[union-attr]
        self.assertRaises(UnsupportedAction, self.store.run, actions.request, "C1", DeviceAction.LOCK, 5.0)
        self.store.run(dm_queue.enqueue, ["C1"], parse_spec({"verb": "Get", "target": LAWMO_STATE}), 5.0)
        self.fleet.session("C1")
        info = self.store.run(actions.request, "C1", DeviceAction.LOCK, 5.0)
        self.assertEqual(info.node, "./LAWMO/Operations/FullyLock")
