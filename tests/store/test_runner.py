"""
Tests for L{mdmd.store.runner}.
"""

import os
import stat
import threading
from typing import Any

import ZODB
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
from twisted.internet import reactor
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from ZODB.fsIndex import fsIndex
from ZODB.MappingStorage import MappingStorage
from ZODB.POSException import ConflictError

from mdmd.store.db import open_db
from mdmd.store.models import ROOT_CONTAINERS, SCHEMA_VERSION, User
from mdmd.store.runner import (
    ConflictRetriesExhausted,
    GroupCommit,
    GroupedUnit,
    GroupStats,
    Root,
    Store,
    StoreService,
)
from mdmd.store.upkeep import PackInProgress, PackRefused, UpkeepSettings
from mdmd.testing.reactor import SynchronousThreadPool, ThreadedMemoryReactor


class StoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = Store(open_db("memory:"), retries=3, sleep=lambda seconds: None)
        self.store.initialize()

    def test_initialize_creates_containers(self) -> None:
        """
        A new database gets every top-level container.
        """
        names = self.store.read(lambda root: sorted(root.keys()))
        self.assertEqual(names, sorted(ROOT_CONTAINERS))

    def test_run_commits(self) -> None:
        """
        A unit of work's changes are visible to later units.
        """
        self.store.run(lambda root: root["users"].__setitem__("a", User("a", "h", 1.0)))
        self.assertEqual(self.store.read(lambda root: root["users"]["a"].name), "a")

    def test_exception_aborts(self) -> None:
        """
        A unit of work that raises leaves nothing behind.
        """

        def broken(root: Root) -> None:
            root["users"]["a"] = User("a", "h", 1.0)
            raise ValueError("no")

        self.assertRaises(ValueError, self.store.run, broken)
        self.assertEqual(self.store.read(lambda root: len(root["users"])), 0)

    def test_conflict_retried(self) -> None:
        """
        A conflicting unit of work is run again from the start.
        """
        attempts = []

        def flaky(root: Root) -> int:
            attempts.append(1)
            root["users"]["a"] = User("a", "h", float(len(attempts)))
            if len(attempts) < 3:
                raise ConflictError()
            return len(attempts)

        self.assertEqual(self.store.run(flaky), 3)
        self.assertEqual(self.store.read(lambda root: root["users"]["a"].created_at), 3.0)

    def test_conflict_retries_exhausted(self) -> None:
        """
        A unit of work that always conflicts is given up with a clear error.
        """

        def hopeless(root: Root) -> None:
            raise ConflictError()

        self.assertRaises(ConflictRetriesExhausted, self.store.run, hopeless)

    def test_real_conflict_between_connections(self) -> None:
        """
        Two connections writing the same object: the loser is retried and sees the winner's write.
        """
        self.store.run(lambda root: root.__setitem__("counter", OOBTree({"n": 0})))
        seen = []

        def increment(root: Root) -> None:
            value = root["counter"]["n"]
            seen.append(value)
            if len(seen) == 1:
                # a concurrent writer commits between our read and our commit
                other = Store(self.store.db, retries=0)
                other.run(lambda r: r["counter"].__setitem__("n", r["counter"]["n"] + 10))
            root["counter"]["n"] = value + 1

        self.store.run(increment)
        self.assertEqual(seen, [0, 10])
        self.assertEqual(self.store.read(lambda root: root["counter"]["n"]), 11)

    def test_persistent_result_refused(self) -> None:
        """
        Persistent objects never leave a unit of work.
        """
        self.store.run(lambda root: root["users"].__setitem__("a", User("a", "h", 1.0)))
        self.assertRaises(TypeError, self.store.run, lambda root: root["users"]["a"])


class _RecordingStorage(MappingStorage):
    """
    A storage that notes in C{events} when a transaction has been committed.
    """

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def tpc_finish(self, transaction: Any, func: Any = lambda tid: None) -> Any:
        tid = super().tpc_finish(transaction, func)
        self.events.append("commit")
        return tid


def _set(name: str, value: Any, result: Any = None) -> Any:
    """
    A unit of work that sets C{root["values"][name]} and returns C{result}.
    """

    def unit(root: Root) -> Any:
        root["values"][name] = value
        return result

    return unit


class GroupCommitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[str] = []
        self.store = Store(ZODB.DB(_RecordingStorage(self.events)), retries=3, sleep=lambda seconds: None)
        self.store.run(lambda root: root.__setitem__("values", PersistentMapping()))
        self.events.clear()
        self.group = GroupCommit(self.store)
        self.addCleanup(self.group.close)
        self.outcomes: dict[str, Any] = {}

    def unit(self, name: str, fn: Any) -> GroupedUnit:
        """
        A grouped unit whose outcome is noted under C{name} (and in the events).
        """

        def deliver(outcome: Any) -> None:
            self.events.append(f"deliver {name}")
            self.outcomes[name] = outcome

        return GroupedUnit(fn, (), {}, deliver)

    def values(self) -> dict[str, Any]:
        return self.store.read(lambda root: dict(root["values"]))

    def test_one_commit_then_every_outcome(self) -> None:
        """
        The units of a group are committed in one transaction, and their
        outcomes are delivered only after that commit.
        """
        self.group.run([self.unit(n, _set(n, i, result=i)) for i, n in enumerate("abc")])
        self.assertEqual(self.events, ["commit", "deliver a", "deliver b", "deliver c"])
        self.assertEqual(self.outcomes, {"a": 0, "b": 1, "c": 2})
        self.assertEqual(self.values(), {"a": 0, "b": 1, "c": 2})

    def test_units_see_the_units_before_them(self) -> None:
        """
        Units run in order, each seeing what the earlier units of its group changed.
        """

        def double(root: Root) -> int:
            root["values"]["n"] = root["values"]["n"] * 2
            return int(root["values"]["n"])

        self.group.run([self.unit("set", _set("n", 3)), self.unit("double", double), self.unit("again", double)])
        self.assertEqual((self.outcomes["double"], self.outcomes["again"]), (6, 12))
        self.assertEqual(self.values(), {"n": 12})

    def test_failing_unit_rolled_back_alone(self) -> None:
        """
        A unit that raises after changing things is rolled back to its
        savepoint: its error is its outcome, the others' changes commit.
        """

        def broken(root: Root) -> None:
            root["values"]["b"] = "half done"
            raise ValueError("no")

        self.group.run([self.unit("a", _set("a", 1)), self.unit("b", broken), self.unit("c", _set("c", 3))])
        self.assertIsInstance(self.outcomes["b"], Failure)
        self.assertIsInstance(self.outcomes["b"].value, ValueError)
        self.assertEqual(self.values(), {"a": 1, "c": 3})
        self.assertEqual(self.events, ["commit", "deliver a", "deliver b", "deliver c"])

    def test_failing_first_unit(self) -> None:
        """
        The first unit (run without a savepoint) failing leaves nothing of it and lets the others commit.
        """

        def broken(root: Root) -> None:
            root["values"]["a"] = "half done"
            raise ValueError("no")

        self.group.run([self.unit("a", broken), self.unit("b", _set("b", 2))])
        self.assertIsInstance(self.outcomes["a"].value, ValueError)
        self.assertEqual(self.values(), {"b": 2})
        self.assertEqual(self.group.stats.again, 0)

    def test_persistent_result_refused(self) -> None:
        """
        A unit returning a persistent object fails alone, as with L{Store.run}.
        """

        def leaky(root: Root) -> Any:
            root["values"]["b"] = 2
            return root["values"]

        self.group.run([self.unit("a", _set("a", 1)), self.unit("b", leaky)])
        self.assertIsInstance(self.outcomes["b"].value, TypeError)
        self.assertEqual(self.values(), {"a": 1})

    def test_transient_error_runs_the_unit_again_alone(self) -> None:
        """
        A unit that meets a conflict while it runs (here: in both runs of its
        group) is rolled back and run again alone, after the group committed
        and delivered.
        """
        attempts: list[int] = []

        def flaky(root: Root) -> int:
            attempts.append(1)
            root["values"]["b"] = len(attempts)
            if len(attempts) <= 2:
                raise ConflictError()
            return len(attempts)

        self.group.run([self.unit("a", _set("a", 1)), self.unit("b", flaky), self.unit("c", _set("c", 3))])
        self.assertEqual(self.outcomes["b"], 3)
        self.assertEqual(self.values(), {"a": 1, "b": 3, "c": 3})
        self.assertEqual(self.events, ["commit", "deliver a", "deliver c", "commit", "deliver b"])
        self.assertEqual((self.group.stats.again, self.group.stats.alone), (1, 1))

    def test_group_runs_again_with_savepoints(self) -> None:
        """
        A group runs without savepoints until a unit fails after others
        changed something; then it runs again from its start with them, and
        what is delivered is the outcome of that second run.
        """
        runs: list[str] = []

        def counted(name: str) -> Any:
            def unit(root: Root) -> int:
                runs.append(name)
                root["values"][name] = runs.count(name)
                if name == "b":
                    raise ValueError("no")
                return runs.count(name)

            return unit

        self.group.run([self.unit(name, counted(name)) for name in "abc"])
        self.assertEqual(runs, ["a", "b", "a", "b", "c"])
        self.assertEqual(self.outcomes["a"], 2)
        self.assertIsInstance(self.outcomes["b"].value, ValueError)
        self.assertEqual(self.values(), {"a": 2, "c": 1})
        self.assertEqual(self.group.stats, GroupStats(units=3, groups=1, alone=0, again=1))

    def test_commit_conflict_runs_every_unit_alone(self) -> None:
        """
        When the group's commit conflicts with another connection's, every
        unit runs again alone: each one's change lands once, on top of the
        other writer's, and only then is its outcome delivered.
        """
        self.store.run(_set("n", 0))
        self.events.clear()
        seen: list[int] = []

        def increment(root: Root) -> int:
            value = int(root["values"]["n"])
            seen.append(value)
            if len(seen) == 2:
                # another connection commits a change to the same object meanwhile
                Store(self.store.db, retries=0).run(lambda r: r["values"].__setitem__("n", r["values"]["n"] + 100))
            root["values"]["n"] = value + 1
            return value + 1

        self.group.run([self.unit(name, increment) for name in "abc"])
        self.assertEqual(self.values(), {"n": 103})
        self.assertEqual(self.outcomes, {"a": 101, "b": 102, "c": 103})
        # the other writer's commit, the group's (failed) attempt delivers nothing, then one commit per unit
        self.assertEqual(
            self.events, ["commit", "commit", "deliver a", "commit", "deliver b", "commit", "deliver c"]
        )
        self.assertEqual((self.group.stats.groups, self.group.stats.alone), (1, 3))

    def test_unit_that_cannot_be_stored_fails_alone(self) -> None:
        """
        A unit whose changes cannot be stored (here: not picklable) makes its
        group fail; run alone, it fails and the others commit.
        """

        def unpicklable(root: Root) -> None:
            root["values"]["b"] = lambda: None

        self.group.run([self.unit("a", _set("a", 1)), self.unit("b", unpicklable), self.unit("c", _set("c", 3))])
        self.assertIsInstance(self.outcomes["b"], Failure)
        self.assertEqual((self.outcomes["a"], self.outcomes["c"]), (None, None))
        self.assertEqual(self.values(), {"a": 1, "c": 3})
        self.assertNotIn("deliver a", self.events[: self.events.index("commit")])
        self.flushLoggedErrors()


class StoreServiceTests(TestCase):
    def test_survives_restart(self) -> Deferred[None]:
        """
        Data written through the service is there after the service (and database) restart.
        """
        path = self.mktemp()
        uri = f"file://{path}/Data.fs"
        first = StoreService(uri, IReactorFromThreads(reactor), pool_size=2)
        first.startService()

        def write(root: Root) -> None:
            root["users"]["a"] = User("a", "h", 5.0)

        d = first.transact(write)

        def restart(_: None) -> Deferred[tuple[str, float]]:
            first.stopService()
            second = StoreService(uri, IReactorFromThreads(reactor), pool_size=2)
            second.startService()
            self.addCleanup(second.stopService)
            return second.read(lambda root: (root["users"]["a"].name, root["users"]["a"].created_at))

        d.addCallback(restart)
        d.addCallback(self.assertEqual, ("a", 5.0))
        return d

    def test_work_runs_off_the_reactor_thread(self) -> Deferred[None]:
        """
        Units of work run on the store's own threads.
        """
        import threading

        service = StoreService("memory:", IReactorFromThreads(reactor), pool_size=2)
        service.startService()
        self.addCleanup(service.stopService)
        d = service.read(lambda root: threading.current_thread().name)
        return d.addCallback(lambda name: self.assertTrue("mdmd-store" in name, name))

    def test_index_owner_only_after_stop(self) -> None:
        """
        The FileStorage index, written when the store closes, is its owner's
        only whatever the umask; so are the store's other files.
        """
        directory = os.path.abspath(self.mktemp())
        path = os.path.join(directory, "Data.fs")
        previous = os.umask(0o022)
        self.addCleanup(os.umask, previous)
        service = StoreService("file://" + path, IReactorFromThreads(reactor), pool_size=1)
        service.startService()
        service.stopService()
        self.assertTrue(os.path.exists(path + ".index"))
        for suffix in ("", ".index", ".lock", ".tmp"):
            self.assertEqual(stat.S_IMODE(os.stat(path + suffix).st_mode), 0o600, suffix)

    def test_not_running(self) -> None:
        """
        Work submitted to a stopped service fails at once.
        """
        service = StoreService("memory:", IReactorFromThreads(reactor))
        self.assertRaises(RuntimeError, service.transact, lambda root: None)

    def test_grouped_units_share_commits(self) -> Deferred[None]:
        """
        Grouped units waiting together are committed as one group, and each
        Deferred fires (on the reactor thread) with its own result.
        """
        service = StoreService("memory:", IReactorFromThreads(reactor), pool_size=2)
        service.startService()
        self.addCleanup(service.stopService)
        service.transact_grouped(lambda root: root.__setitem__("values", PersistentMapping()))
        gate = threading.Event()

        def first(root: Root) -> str:
            gate.wait(10)  # the others queue up meanwhile
            return threading.current_thread().name

        waiting = [service.transact_grouped(first)]
        waiting += [service.transact_grouped(_set(str(i), i, result=i)) for i in range(10)]
        gate.set()

        def check(results: list[Any]) -> Deferred[dict[str, Any]]:
            self.assertEqual(results[0], "mdmd-group-commit")
            self.assertEqual(results[1:], list(range(10)))
            assert service._committer is not None
            self.assertLessEqual(service._committer.stats().groups, 3)
            return service.read(lambda root: dict(root["values"]))

        d = gatherResults(waiting).addCallback(check)
        d.addCallback(self.assertEqual, {str(i): i for i in range(10)})
        return d

    def test_grouped_failure(self) -> Deferred[None]:
        """
        A grouped unit's error fails its Deferred.
        """
        service = StoreService("memory:", IReactorFromThreads(reactor), pool_size=2)
        service.startService()
        self.addCleanup(service.stopService)

        def broken(root: Root) -> None:
            raise ValueError("no")

        return self.assertFailure(service.transact_grouped(broken), ValueError)

    def test_stop_runs_what_waits(self) -> None:
        """
        Stopping the service commits the grouped units still waiting before the database closes.
        """
        path = self.mktemp()
        uri = f"file://{path}/Data.fs"
        service = StoreService(uri, IReactorFromThreads(reactor), pool_size=2)
        service.startService()
        for i in range(5):
            service.transact_grouped(lambda root, i=i: root["users"].__setitem__(str(i), User(str(i), "h", 1.0)))
        service.stopService()
        store = Store(open_db(uri))
        self.addCleanup(store.db.close)
        self.assertEqual(store.read(lambda root: sorted(root["users"])), ["0", "1", "2", "3", "4"])

    def test_committer_failure_fails_the_group(self) -> Deferred[Any]:
        """
        If running a group fails outside any unit (here: the committer's
        connection is gone), every unit of it fails instead of waiting for
        ever, and the committer goes on with the next group.
        """
        service = StoreService("memory:", IReactorFromThreads(reactor), pool_size=2)
        service.startService()
        self.addCleanup(service.stopService)
        assert service._committer is not None
        group = service._committer._group
        original = group.run
        calls: list[int] = []

        def broken(units: Any) -> None:
            calls.append(len(units))
            if len(calls) == 1:
                raise RuntimeError("the storage went away")
            original(units)

        group.run = broken  # type: ignore[method-assign]  # a failure injected in the test
        first = self.assertFailure(service.transact_grouped(lambda root: 1), RuntimeError)

        def then(_: Any) -> Deferred[Any]:
            self.flushLoggedErrors(RuntimeError)
            return service.transact_grouped(lambda root: 2).addCallback(self.assertEqual, 2)

        return first.addCallback(then)

    def test_grouped_not_running(self) -> None:
        """
        Grouped work submitted to a stopped service fails at once.
        """
        service = StoreService("memory:", IReactorFromThreads(reactor))
        self.assertRaises(RuntimeError, service.transact_grouped, lambda root: None)


class StoreServiceUpgradeTests(SynchronousTestCase):
    def test_upgraded_before_serving(self) -> None:
        """
        The store service upgrades an older store with its schema as it
        starts, before any unit of work can run; the counters are made.
        """
        from mdmd.store.counters import Family
        from mdmd.store.migration import Pass, Schema, Step

        recounted = Family("test.users", ("all",))
        step = Step(SCHEMA_VERSION, "test", (Pass("users", "users", lambda root, key, user: recounted.add(root, "all")),))
        path = self.mktemp()
        uri = f"file://{path}/Data.fs"
        older = Store(open_db(uri))
        older.initialize()

        def previous_layout(root: Root) -> None:
            root["schema"].version = SCHEMA_VERSION - 1
            root["users"]["a"] = User("a", "h", 1.0)

        older.run(previous_layout)
        older.db.close()
        service = StoreService(uri, IReactorFromThreads(reactor), pool_size=1, schema=Schema((recounted,), (step,)))
        service.startService()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.assertEqual(service.store.read(recounted.counts), {"all": 1})
        self.assertEqual(service.store.read(lambda root: root["schema"].version), SCHEMA_VERSION)
class QueuedPool(SynchronousThreadPool):
    """
    A thread pool whose calls wait until the test runs them (a pack that takes its time).
    """

    def __init__(self) -> None:
        super().__init__()
        self.queued: list[tuple[Any, ...]] = []

    def callInThreadWithCallback(self, onResult: Any, func: Any, *args: Any, **kw: Any) -> None:
        self.queued.append((onResult, func, args, kw))

    def run_queued(self) -> None:
        queued, self.queued = self.queued, []
        for onResult, func, args, kw in queued:
            super().callInThreadWithCallback(onResult, func, *args, **kw)


def packed(root: Root) -> Any:
    return dict(root["upkeep"]).get("last_pack")


class StoreUpkeepTests(SynchronousTestCase):
    """
    The store service packs the FileStorage on a schedule and on demand, and
    saves its index, on its upkeep thread.
    """

    def setUp(self) -> None:
        self.uri = f"file://{os.path.abspath(self.mktemp())}/Data.fs"
        self.clock = Clock()
        self.clock.advance(1_000_000)

    def service(self, pool: SynchronousThreadPool | None = None, **settings: float) -> StoreService:
        service = StoreService(
            self.uri,
            ThreadedMemoryReactor(),
            pool_size=2,
            upkeep=UpkeepSettings(**settings),
            clock=self.clock,
            upkeep_pool=pool or SynchronousThreadPool(),
        )
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        return service

    def test_scheduled_pack(self) -> None:
        """
        A store is packed every pack_interval, counted from the last pack
        (or from the first start), across restarts.
        """
        first = self.service(pack_interval=1000.0, index_save_interval=0.0)
        self.clock.advance(600)
        stopped = first.stopService()
        assert stopped is not None
        self.successResultOf(stopped)
        second = self.service(pack_interval=1000.0, index_save_interval=0.0)
        assert second.store is not None
        self.clock.advance(399)
        self.assertIsNone(second.store.read(packed))
        self.clock.advance(1)
        report = second.store.read(packed)
        self.assertEqual((report["started_at"], report["days"]), (1_001_000.0, 1.0))
        self.clock.advance(999)
        self.assertEqual(second.store.read(packed)["started_at"], 1_001_000.0)
        self.clock.advance(1)
        self.assertEqual(second.store.read(packed)["started_at"], 1_002_000.0)

    def test_pack_on_demand(self) -> None:
        """
        A pack on demand keeps the days asked for, reports sizes, and puts the
        next scheduled pack a whole interval after it.
        """
        service = self.service(pack_interval=1000.0, index_save_interval=0.0)
        assert service.store is not None
        self.clock.advance(500)
        report = self.successResultOf(service.pack(0))
        self.assertEqual((report.days, report.started_at), (0, 1_000_500.0))
        self.assertLessEqual(report.size_after, report.size_before)
        self.clock.advance(999)
        self.assertEqual(service.store.read(packed)["started_at"], 1_000_500.0)
        self.clock.advance(1)
        self.assertEqual(service.store.read(packed)["started_at"], 1_001_500.0)

    def test_redundant_pack(self) -> None:
        """
        A pack keeping more history than the last one reached drops nothing
        and says so; it counts as a pack for the schedule, and the point the
        store was packed to stays.
        """
        service = self.service(pack_interval=0.0, index_save_interval=0.0)
        assert service.store is not None
        first = self.successResultOf(service.pack(0))
        service.store.run(lambda root: root["users"].__setitem__("b", User("b", "h", 1.0)))
        self.clock.advance(60)
        again = self.successResultOf(service.pack(1))
        self.assertEqual((again.seconds, again.size_before), (0.0, again.size_after))
        self.assertEqual(service.store.read(packed)["started_at"], again.started_at)
        self.assertEqual(service.store.read(lambda root: root["upkeep"]["packed_to"]), first.started_at)

    def test_one_pack_at_a_time(self) -> None:
        """
        A pack asked for while one runs is refused; a stop waits for the one
        under way before it closes the store.
        """
        pool = QueuedPool()
        service = self.service(pool, pack_interval=0.0, index_save_interval=0.0)
        running = service.pack()
        self.failureResultOf(service.pack(), PackInProgress)
        stopped = service.stopService()
        assert stopped is not None
        self.assertNoResult(stopped)
        self.assertIsNotNone(service.store)
        pool.run_queued()
        self.successResultOf(running)
        self.successResultOf(stopped)
        self.assertIsNone(service.store)

    def test_refused_for_shared_stores(self) -> None:
        """
        A ZEO or RelStorage store is not packed by mdmd: a pack is refused
        with who packs it, and none is scheduled.
        """
        for uri, packer in (("zeo://127.0.0.1:1", "zeopack"), ("postgresql://u@h/d", "zodbpack")):
            service = StoreService(uri, ThreadedMemoryReactor(), clock=self.clock)
            failure = self.failureResultOf(service.pack(), PackRefused)
            self.assertIn(packer, str(failure.value))

    def test_index_saved_on_schedule(self) -> None:
        """
        The FileStorage index is saved every index_save_interval, up to the last commit.
        """
        service = self.service(pack_interval=0.0, index_save_interval=100.0)
        assert service.store is not None
        service.store.run(lambda root: root["users"].__setitem__("a", User("a", "h", 1.0)))
        size = service.store.db.storage.getSize()
        index = self.uri[len("file://"):] + ".index"
        self.assertLess(fsIndex.load(index)["pos"], size)
        self.clock.advance(100)
        self.assertEqual(fsIndex.load(index)["pos"], size)
