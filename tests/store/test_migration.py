"""
Tests for L{mdmd.store.migration}: the store upgrade's machinery, with toy steps.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from mdmd.store import migration
from mdmd.store.counters import Family
from mdmd.store.db import open_db
from mdmd.store.migration import NoUpgradePath, Pass, Schema, Step, StoreTooNew, store_version, upgrade
from mdmd.store.models import SCHEMA_VERSION, User
from mdmd.store.runner import Store

from ..logs import logged_events

#: The layout before this mdmd's: the upgrade tests' stores run the last step alone.
PREVIOUS = SCHEMA_VERSION - 1

USERS = Family("test.users", ("enabled", "disabled"))


def _count_user(root: Any, key: str, user: User) -> None:
    USERS.add(root, "enabled" if user.enabled else "disabled")


def _old_store(users: int, version: int | None = None) -> Store:
    """
    A store as an older mdmd left it: containers, users, and no layout
    version (version 1), or C{version}.
    """
    store = Store(open_db("memory:"), sleep=lambda seconds: None)
    store.initialize()

    def older(root: Any) -> None:
        if version is None:
            del root["schema"]
        else:
            root["schema"].version = version
        for n in range(users):
            root["users"][f"u{n:03}"] = User(f"u{n:03}", "h", 1.0)

    store.run(older)
    store.initialize()
    return store


def schema(visit: Any = _count_user, *, version: int = SCHEMA_VERSION) -> Schema:
    passes = (Pass("users", "users", visit, USERS.reset),)
    return Schema(families=(USERS,), steps=tuple(Step(v, f"step {v}", passes if v == version else ()) for v in range(2, version + 1)))


class VersionTests(SynchronousTestCase):
    def test_new_store_is_current(self) -> None:
        """
        A new store starts at this mdmd's layout: there is nothing to upgrade.
        """
        store = Store(open_db("memory:"))
        store.initialize()
        self.assertEqual(store.read(store_version), SCHEMA_VERSION)
        self.assertEqual(upgrade(store, schema()), 0)

    def test_store_without_version_is_version_1(self) -> None:
        """
        A store made before versions were recorded reads as version 1.
        """
        self.assertEqual(_old_store(0).read(store_version), 1)

    def test_newer_store_refused(self) -> None:
        """
        A store a newer mdmd wrote is refused, naming both versions.
        """
        store = Store(open_db("memory:"))
        store.initialize()
        store.run(lambda root: setattr(root["schema"], "version", SCHEMA_VERSION + 1))
        with self.assertRaises(StoreTooNew) as caught:
            upgrade(store, schema())
        self.assertIn(f"version {SCHEMA_VERSION + 1}, newer than this mdmd's ({SCHEMA_VERSION})", str(caught.exception))

    def test_missing_step(self) -> None:
        """
        An older store with no step to bring it up is refused before anything changes.
        """
        store = _old_store(3)
        with self.assertRaises(NoUpgradePath):
            upgrade(store, Schema(families=(USERS,)))
        self.assertEqual(store.read(store_version), 1)


class UpgradeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.logged = logged_events(self)

    def test_batches_visit_every_record_once(self) -> None:
        """
        Every record is visited once, in batches of the given size (one
        transaction each); the store ends at the new version, counted.
        """
        store = _old_store(25, PREVIOUS)
        transactions = []
        run = store.run

        def counting(fn: Any, *args: Any) -> Any:
            transactions.append(fn)
            return run(fn, *args)

        store.run = counting  # type: ignore[method-assign]
        self.assertEqual(upgrade(store, schema(), batch=10), 25)
        self.assertEqual(store.read(USERS.counts), {"enabled": 25, "disabled": 0})
        self.assertEqual(store.read(store_version), SCHEMA_VERSION)
        self.assertIsNone(store.read(lambda root: root["schema"].upgrading))
        # start the pass, 10 + 10 + 5 records, end the step, create the counters
        self.assertEqual(len(transactions), 6)
        self.assertEqual(upgrade(store, schema(), batch=10), 0)

    def test_resumes_after_a_crash(self) -> None:
        """
        An upgrade stopped halfway resumes after the last batch that
        committed: nothing is counted twice, nothing missed.
        """
        store = _old_store(25, PREVIOUS)
        visited: list[str] = []

        def failing(root: Any, key: str, user: User) -> None:
            if key == "u013" and "u013" not in visited:
                visited.append(key)
                raise RuntimeError("killed")
            _count_user(root, key, user)

        self.assertRaises(RuntimeError, upgrade, store, schema(failing), batch=5)
        self.assertEqual(store.read(USERS.counts)["enabled"], 10)
        self.assertEqual(store.read(lambda root: root["schema"].upgrading), (SCHEMA_VERSION, 0, True, "u009"))
        self.assertEqual(upgrade(store, schema(failing), batch=5), 15)
        self.assertEqual(store.read(USERS.counts)["enabled"], 25)

    def test_progress_logged(self) -> None:
        """
        The upgrade says what it does, each pass's count and time, and the total.
        """
        store = _old_store(12, PREVIOUS)
        ticks = iter(range(0, 1000, 3))
        upgrade(store, schema(), batch=5, clock=lambda: float(next(ticks)))
        lines = [formatEvent(e) for e in self.logged if e.get("log_namespace") == migration.__name__]
        self.assertEqual(lines[0], f"store upgrade to layout {SCHEMA_VERSION} (step {SCHEMA_VERSION}): users")
        self.assertTrue(any("so far" in line for line in lines), lines)
        self.assertRegex(lines[-2], r"^store upgrade to layout \d+: 12 users in [\d.]+ s$")
        self.assertRegex(lines[-1], r"^store upgraded to layout \d+: 12 records in [\d.]+ s$")

