"""
Tests for L{mdmd.dm.csp}: device actions and how profile settings are undone.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm.commands import parse_spec
from mdmd.dm.csp import (
    LAWMO_STATE,
    DeviceAction,
    UnsupportedAction,
    action_command,
    is_policy,
    reversal_of,
    reversals,
    windows_build,
)
from mdmd.errors import Conflict


class WindowsActionTests(SynchronousTestCase):
    def test_wipes_and_reboot(self) -> None:
        """
        RemoteWipe's three nodes and Reboot/RebootNow (Format null) are Execs.
        """
        cases = {
            DeviceAction.WIPE: ("./Device/Vendor/MSFT/RemoteWipe/doWipe", None),
            DeviceAction.WIPE_PROTECTED: ("./Device/Vendor/MSFT/RemoteWipe/doWipeProtected", None),
            DeviceAction.WIPE_KEEP_PROVISIONING: ("./Device/Vendor/MSFT/RemoteWipe/doWipePersistProvisionedData", None),
            DeviceAction.REBOOT: ("./Device/Vendor/MSFT/Reboot/RebootNow", "null"),
            DeviceAction.LOCK: ("./Device/Vendor/MSFT/RemoteLock/Lock", "null"),
        }
        for action, (node, format) in cases.items():
            spec = action_command(action, "windows", windows_version="10.0.26100.2314", windows_edition="4")
            self.assertEqual((spec.verb, spec.items[0].target, spec.items[0].format), ("Exec", node, format))

    def test_too_old(self) -> None:
        """
        An action whose node is newer than the device's Windows is refused, naming both.
        """
        with self.assertRaises(UnsupportedAction) as caught:
            action_command(DeviceAction.WIPE_PROTECTED, "windows", windows_version="10.0.14393.0")
        self.assertIn("Windows 10 1703", str(caught.exception))
        self.assertIn("10.0.14393.0", str(caught.exception))
        self.assertIsInstance(caught.exception, Conflict)

    def test_version_unknown(self) -> None:
        """
        An action that needs a known build is refused while the build is unknown; doWipe needs none.
        """
        self.assertRaises(UnsupportedAction, action_command, DeviceAction.REBOOT, "windows")
        self.assertEqual(action_command(DeviceAction.WIPE, "windows").verb, "Exec")

    def test_lock_not_on_home(self) -> None:
        """
        RemoteLock is refused on the Home editions.
        """
        with self.assertRaises(UnsupportedAction) as caught:
            action_command(DeviceAction.LOCK, "windows", windows_version="10.0.26100", windows_edition="101")
        self.assertIn("Home", str(caught.exception))

    def test_no_unlock_partial_lock_factory_reset(self) -> None:
        """
        Windows has no remote unlock, no partial lock; a reset is a wipe: each refused with the reason.
        """
        for action in (DeviceAction.UNLOCK, DeviceAction.PARTIAL_LOCK, DeviceAction.FACTORY_RESET):
            with self.assertRaises(UnsupportedAction) as caught:
                action_command(action, "windows", windows_version="10.0.26100")
            self.assertIn("Windows", str(caught.exception))

    def test_build(self) -> None:
        """
        A Windows version's leading dotted numbers.
        """
        self.assertEqual(windows_build("10.0.26100.2314"), (10, 0, 26100, 2314))
        self.assertIsNone(windows_build(""))
        self.assertIsNone(windows_build("Windows"))


class LawmoTests(SynchronousTestCase):
    def test_operations(self) -> None:
        """
        A classic device that reported LAWMO gets the LAWMO operations.
        """
        for action, operation in (
            (DeviceAction.LOCK, "FullyLock"),
            (DeviceAction.PARTIAL_LOCK, "PartiallyLock"),
            (DeviceAction.UNLOCK, "UnLock"),
            (DeviceAction.WIPE, "Wipe"),
            (DeviceAction.FACTORY_RESET, "FactoryReset"),
        ):
            spec = action_command(action, "omadm", lawmo_reported=True)
            self.assertEqual(spec.items[0].target, f"./LAWMO/Operations/{operation}")

    def test_not_reported(self) -> None:
        """
        A classic device that did not report LAWMO is refused, told how to read it.
        """
        with self.assertRaises(UnsupportedAction) as caught:
            action_command(DeviceAction.LOCK, "omadm")
        self.assertIn(LAWMO_STATE, str(caught.exception))

    def test_no_reboot(self) -> None:
        """
        OMA DM has no standard reboot.
        """
        self.assertRaises(UnsupportedAction, action_command, DeviceAction.REBOOT, "omadm", lawmo_reported=True)


class ReversalTests(SynchronousTestCase):
    def test_per_case(self) -> None:
        """
        Add → Delete; Replace of a Policy CSP node → Delete; any other Replace,
        an Exec, a Delete → left, with the reason.
        """
        self.assertTrue(reversal_of("Add", "./Vendor/MSFT/X").delete)
        self.assertTrue(reversal_of("Replace", "./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera").delete)
        self.assertTrue(reversal_of("Replace", "./User/Vendor/MSFT/Policy/Config/A/B").delete)
        for verb in ("Replace", "Exec", "Delete"):
            reversal = reversal_of(verb, "./Vendor/MSFT/DMClient/X")
            self.assertFalse(reversal.delete)
            self.assertTrue(reversal.reason)
        self.assertTrue(is_policy("./vendor/msft/policy/config/a/b"))

    def test_nested_adds_deleted_once(self) -> None:
        """
        A group's items are undone last first; a node under an added one goes with it.
        """
        spec = parse_spec(
            {
                "verb": "Atomic",
                "commands": [
                    {"verb": "Add", "target": "./Vendor/MSFT/N", "format": "node"},
                    {"verb": "Add", "target": "./Vendor/MSFT/N/Leaf", "data": "1"},
                    {"verb": "Replace", "target": "./Vendor/MSFT/Policy/Config/A/B", "data": "1"},
                ],
            }
        )
        self.assertEqual([(r.target, r.delete) for r in reversals(spec)],
                         [("./Vendor/MSFT/Policy/Config/A/B", True), ("./Vendor/MSFT/N", True)])
