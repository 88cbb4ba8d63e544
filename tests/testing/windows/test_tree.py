"""
Tests for L{mdmd.testing.windows.tree}: the emulated device answers as Windows does.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.testing.windows.tree import SettingsTree

POLICY = "./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera"


class SettingsTreeTests(SynchronousTestCase):
    def test_set_and_read(self) -> None:
        """
        A Replace sets a node with its format; a Get answers both; both spellings of the device scope name it.
        """
        tree = SettingsTree()
        self.assertEqual(tree.execute("Replace", [("./Vendor/MSFT/Policy/Config/Camera/AllowCamera", "0", "int")]), (200, []))
        self.assertEqual(tree.execute("Get", [(POLICY, None, None)]), (200, [(POLICY, "0", "int")]))

    def test_windows_statuses(self) -> None:
        """
        404 for a missing node (Get, Delete), 418 for an Add of one that
        exists, 405 for DevInfo/DevDetail changes and non-executable Execs.
        """
        tree = SettingsTree({"./DevDetail/SwV": "10.0"})
        self.assertEqual(tree.execute("Get", [("./Vendor/MSFT/Nowhere", None, None)])[0], 404)
        self.assertEqual(tree.execute("Delete", [("./Vendor/MSFT/Nowhere", None, None)])[0], 404)
        self.assertEqual(tree.execute("Add", [("./Vendor/MSFT/A", "a", None)])[0], 200)
        self.assertEqual(tree.execute("Add", [("./Vendor/MSFT/A", "a", None)])[0], 418)
        self.assertEqual(tree.execute("Replace", [("./DevDetail/SwV", "11", None)])[0], 405)
        self.assertEqual(tree.execute("Exec", [("./Vendor/MSFT/A", None, None)])[0], 405)

    def test_delete_subtree(self) -> None:
        """
        A Delete removes a node and everything under it.
        """
        tree = SettingsTree({"./Device/Vendor/MSFT/N/A": "1", "./Device/Vendor/MSFT/N/B": "2", "./Device/Vendor/MSFT/M": "3"})
        self.assertEqual(tree.execute("Delete", [("./Vendor/MSFT/N", None, None)])[0], 200)
        self.assertEqual(list(tree.values), ["./Device/Vendor/MSFT/M"])

    def test_actions(self) -> None:
        """
        RemoteWipe, Reboot and RemoteLock nodes execute; a lock without PIN is 405.
        """
        tree = SettingsTree(pin_set=False)
        self.assertEqual(tree.execute("Exec", [("./Device/Vendor/MSFT/Reboot/RebootNow", None, "null")])[0], 200)
        self.assertEqual(tree.execute("Exec", [("./Device/Vendor/MSFT/RemoteLock/Lock", None, "null")])[0], 405)
        self.assertEqual(tree.executed, ["./Device/Vendor/MSFT/Reboot/RebootNow"])

    def test_misbehaving(self) -> None:
        """
        reads answers another value than stored; refuse answers a status for every command.
        """
        tree = SettingsTree()
        tree.set(POLICY, "0", "int")
        tree.reads[POLICY] = "1"
        self.assertEqual(tree.execute("Get", [(POLICY, None, None)])[1], [(POLICY, "1", "int")])
        tree.refuse[POLICY] = 500
        self.assertEqual(tree.execute("Replace", [(POLICY, "0", "int")]), (500, []))
        self.assertEqual(tree.value(POLICY), "0")
