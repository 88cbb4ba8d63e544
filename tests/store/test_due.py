"""
Tests for L{mdmd.store.due}: indexes of what falls due.
"""

from __future__ import annotations

from BTrees.OOBTree import OOTreeSet
from twisted.trial.unittest import SynchronousTestCase

from mdmd.store import due


class Record:
    """
    A record that remembers where it is filed (what L{due.keep_filed} takes).
    """

    def __init__(self) -> None:
        self.due_slot: int | None = None


class SlotTests(SynchronousTestCase):
    def test_slot_rounds_up(self) -> None:
        """
        A time's slot is its minute rounded up: an entry never falls due before its time.
        """
        self.assertEqual([due.slot_of(t) for t in (0.0, 1.0, 59.9, 60.0, 60.1)], [0, 1, 1, 1, 2])


class FilingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.index = OOTreeSet()

    def test_file_and_refile(self) -> None:
        """
        An entry is filed at its time's slot and moved to another slot, or left where it is.
        """
        self.assertEqual(due.file(self.index, 100.0, "D1"), 2)
        self.assertEqual(due.refile(self.index, (2, "D1"), 110.0), 2)
        self.assertEqual(list(self.index), [(2, "D1")])
        self.assertEqual(due.refile(self.index, (2, "D1"), 200.0), 4)
        self.assertEqual(list(self.index), [(4, "D1")])

    def test_keep_filed_writes_once(self) -> None:
        """
        A record filed at or before its new time is left alone (no write);
        one whose time moved earlier is filed again, and its old entry goes.
        """
        record = Record()
        due.keep_filed(self.index, record, 100.0, "D1")
        self.assertEqual((record.due_slot, list(self.index)), (2, [(2, "D1")]))
        due.keep_filed(self.index, record, 1000.0, "D1")
        self.assertEqual((record.due_slot, list(self.index)), (2, [(2, "D1")]))
        due.keep_filed(self.index, record, 30.0, "D1")
        self.assertEqual((record.due_slot, list(self.index)), (1, [(1, "D1")]))


class DueEntriesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.index = OOTreeSet()
        for minute, name in ((1, "a"), (1, "b"), (2, "c"), (3, "d"), (9, "e")):
            self.index.add((minute, name))

    def test_only_begun_slots(self) -> None:
        """
        The entries whose slot has begun, the current minute's included, in order.
        """
        entries, cursor = due.due_entries(self.index, 121.0)
        self.assertEqual(entries, [(1, "a"), (1, "b"), (2, "c"), (3, "d")])
        self.assertIsNone(cursor)
        self.assertEqual(due.due_entries(self.index, 60.0), ([(1, "a"), (1, "b")], None))

    def test_batches(self) -> None:
        """
        A limit makes batches: each from just after the cursor of the one
        before, the last with no cursor.
        """
        first, cursor = due.due_entries(self.index, 200.0, limit=2)
        self.assertEqual((first, cursor), ([(1, "a"), (1, "b")], (1, "b")))
        second, cursor = due.due_entries(self.index, 200.0, limit=2, after=cursor)
        self.assertEqual((second, cursor), ([(2, "c"), (3, "d")], (3, "d")))
        self.assertEqual(due.due_entries(self.index, 200.0, limit=2, after=cursor), ([], None))
