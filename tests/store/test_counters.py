"""
Tests for L{mdmd.store.counters}.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import transaction
from twisted.trial.unittest import SynchronousTestCase

from mdmd.store import counters
from mdmd.store.counters import Family
from mdmd.store.db import open_db
from mdmd.store.runner import Store

COLOURS = Family("test.colour", ("red", "green"))
SHAPES = Family("test.shape", ("round", "square"), members=True)


class FamilyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = Store(open_db("memory:"), sleep=lambda seconds: None)
        self.store.initialize()

    def test_declared_values_counted_from_zero(self) -> None:
        """
        Every declared value is counted, 0 before anything happened, in the declared order.
        """
        self.assertEqual(self.store.read(COLOURS.counts), {"red": 0, "green": 0})
        self.assertEqual(list(self.store.read(COLOURS.counts)), ["red", "green"])

    def test_ensure_creates_each_once(self) -> None:
        """
        ensure creates the counters (and member sets) that are missing, and says whether it did.
        """
        self.assertTrue(self.store.run(counters.ensure, [COLOURS, SHAPES]))
        self.assertFalse(self.store.run(counters.ensure, [COLOURS, SHAPES]))
        keys = self.store.read(lambda root: (sorted(root["counters"]), sorted(root["members"])))
        self.assertEqual(
            keys,
            (
                [("test.colour", "green"), ("test.colour", "red"), ("test.shape", "round"), ("test.shape", "square")],
                [("test.shape", "round"), ("test.shape", "square")],
            ),
        )

    def test_add_discard_move(self) -> None:
        """
        add, discard and move change the counts; moving to the same value changes nothing.
        """

        def changes(root: Any) -> None:
            COLOURS.add(root, "red")
            COLOURS.add(root, "red")
            COLOURS.move(root, "red", "green")
            COLOURS.move(root, "green", "green")
            COLOURS.move(root, None, "red")
            COLOURS.discard(root, "green")

        self.store.run(changes)
        self.assertEqual(self.store.read(COLOURS.counts), {"red": 2, "green": 0})
        self.assertEqual(self.store.read(COLOURS.total), 2)
        self.assertEqual(self.store.read(COLOURS.count, "red"), 2)

    def test_value_nobody_declared(self) -> None:
        """
        A value not declared is counted too (its counter made on the way), after the declared ones.
        """
        self.store.run(COLOURS.add, "blue")
        self.assertEqual(self.store.read(COLOURS.counts), {"red": 0, "green": 0, "blue": 1})
        self.assertEqual(self.store.read(counters.read_all), {"test.colour": {"blue": 1}})

    def test_member_sets(self) -> None:
        """
        A family with member sets keeps the keys of each value's records as they move.
        """

        def changes(root: Any) -> None:
            SHAPES.add(root, "round", "a")
            SHAPES.add(root, "round", "b")
            SHAPES.move(root, "round", "square", "a")

        self.store.run(changes)
        self.assertEqual(self.store.read(lambda root: list(SHAPES.member_set(root, "round"))), ["b"])
        self.assertEqual(self.store.read(lambda root: list(SHAPES.member_set(root, "square"))), ["a"])
        self.assertEqual(self.store.read(lambda root: list(SHAPES.member_set(root, "oval"))), [])
        self.assertRaises(TypeError, self.store.run, SHAPES.add, "round")
        self.assertRaises(TypeError, self.store.read, COLOURS.member_set, "red")

    def test_reset(self) -> None:
        """
        reset zeroes the family's counters and empties its member sets, and no other family's.
        """

        def changes(root: Any) -> None:
            SHAPES.add(root, "round", "a")
            COLOURS.add(root, "red")

        self.store.run(changes)
        self.store.run(SHAPES.reset)
        self.assertEqual(self.store.read(SHAPES.counts), {"round": 0, "square": 0})
        self.assertEqual(self.store.read(lambda root: len(SHAPES.member_set(root, "round"))), 0)
        self.assertEqual(self.store.read(COLOURS.counts)["red"], 1)

    def test_families_do_not_overlap(self) -> None:
        """
        A family whose name starts with another's is not read as part of it.
        """
        longer = Family("test.colours", ("red",))
        self.store.run(longer.add, "red")
        self.assertEqual(self.store.read(COLOURS.counts), {"red": 0, "green": 0})


class ConcurrencyTests(SynchronousTestCase):
    """
    Counters under concurrent transactions, on a FileStorage (which resolves conflicts).
    """

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="mdmd-counters-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.db = open_db(f"file://{os.path.join(directory, 'Data.fs')}")
        self.addCleanup(self.db.close)
        Store(self.db).initialize()
        Store(self.db).run(counters.ensure, [COLOURS])

    def test_concurrent_changes_resolve(self) -> None:
        """
        Two transactions that change one counter at the same time both commit, and both count.
        """
        managers = [transaction.TransactionManager(explicit=True) for _ in range(2)]
        connections = [self.db.open(transaction_manager=m) for m in managers]
        for manager, connection in zip(managers, connections):
            manager.begin()
            COLOURS.add(connection.root(), "red")
        for manager in managers:
            manager.commit()
        for connection in connections:
            connection.close()
        self.assertEqual(Store(self.db).read(COLOURS.counts)["red"], 2)
