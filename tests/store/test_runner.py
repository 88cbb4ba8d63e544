"""
Tests for L{mdmd.store.runner}.
"""

import os
import stat
from typing import Any

from BTrees.OOBTree import OOBTree
from twisted.internet import reactor
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from ZODB.fsIndex import fsIndex
from ZODB.POSException import ConflictError

from mdmd.store.db import open_db
from mdmd.store.models import ROOT_CONTAINERS, SCHEMA_VERSION, User
from mdmd.store.runner import ConflictRetriesExhausted, Root, Store, StoreService
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
        older.run(
            lambda root: [
                setattr(root["schema"], "version", SCHEMA_VERSION - 1),
                root["users"].__setitem__("a", User("a", "h", 1.0)),
            ]
        )
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
