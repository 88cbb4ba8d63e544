"""
Units of work on the ZODB, and the service that runs them off the reactor thread.

One unit of work is a function C{fn(root, *args)} that reads and changes
persistent objects and returns plain values. L{Store.run} gives it a fresh
connection with its own transaction manager, commits, and retries it on a
write conflict. L{StoreService} runs units on a dedicated thread pool no
larger than the database's connection pool, so the reactor never blocks on
storage and no persistent object ever crosses threads.

Short units that come often (a DM message, an enrollment) can instead be
committed in groups (L{StoreService.transact_grouped}, L{GroupCommit}):
the units waiting when the committer thread is free run one after another
in one transaction on one connection, each behind a savepoint, and one
commit (one fsync) makes them all durable. A commit is the bulk of such a
unit's cost: FileStorage fsyncs inside its commit lock, about 3 ms on a
virtual disk, which capped the embedded store at ~300 commits a second
whatever the CPU. A unit's result is delivered only once the commit that
holds its changes has returned, so nothing is acknowledged before it is
durable.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import transaction
import ZODB
from persistent import Persistent
from transaction.interfaces import TransientError
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from ZODB.FileStorage import FileStorage

from mdmd.errors import Busy
from mdmd.store import upkeep
from mdmd.store.db import describe, file_storage_path, open_db, restrict_modes
from mdmd.store.migration import Schema, upgrade
from mdmd.store.models import ensure_root
from mdmd.store.upkeep import (
    IndexSaved,
    PackInProgress,
    PackRefused,
    PackReport,
    UpkeepSettings,
    pack_refusal,
)

__all__ = ["Root", "Store", "StoreService", "ConflictRetriesExhausted", "GroupCommit", "GroupedUnit", "GroupStats", "GROUP_LIMIT"]

P = ParamSpec("P")
T = TypeVar("T")

#: What a unit of work is given: the database root (container name → container).
Root = MutableMapping[str, Any]

log = Logger()

#: An index save holding the storage's lock this long (seconds) is logged: commits waited.
SLOW_INDEX_SAVE = 0.5


class ConflictRetriesExhausted(Busy):
    """
    A unit of work kept conflicting with concurrent writers and was given up.
    """


class Store:
    """
    Run units of work against a ZODB database, synchronously, in the calling thread.
    """

    def __init__(
        self,
        db: ZODB.DB,
        retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.db = db
        self.retries = retries
        self._sleep = sleep

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """
        Run C{fn(root, *args, **kwargs)} in its own transaction and commit it.

        A write conflict aborts and retries the whole function (up to
        C{retries} times, with a short randomized back-off), so C{fn} must
        not have side effects outside the database.
        """
        for attempt in range(self.retries + 1):
            manager = transaction.TransactionManager(explicit=True)
            connection = self.db.open(transaction_manager=manager)
            try:
                manager.begin()
                result = _plain(fn, fn(connection.root(), *args, **kwargs))
                manager.commit()
                return result
            except TransientError:
                manager.abort()
                if attempt == self.retries:
                    raise ConflictRetriesExhausted(
                        f"{getattr(fn, '__name__', fn)!r} conflicted {attempt + 1} times"
                    ) from None
                self._sleep(random.uniform(0, 0.01 * (2**attempt)))
            except BaseException:
                manager.abort()
                raise
            finally:
                connection.close()
        raise AssertionError("unreachable")

    def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """
        Run C{fn(root, ...)} and abort: for units of work that only read.
        """
        manager = transaction.TransactionManager(explicit=True)
        connection = self.db.open(transaction_manager=manager)
        try:
            manager.begin()
            return fn(connection.root(), *args, **kwargs)
        finally:
            manager.abort()
            connection.close()

    def initialize(self) -> None:
        """
        Create the top-level containers a new database lacks.
        """
        self.run(ensure_root)


def _plain(fn: Callable[..., Any], result: T) -> T:
    """
    C{result}, refused if it is a persistent object (it must not leave its connection's thread).
    """
    if isinstance(result, Persistent):
        raise TypeError(f"{getattr(fn, '__name__', fn)!r} returned a persistent object; return plain values")
    return result


#: The most units of work one group commits together: enough to amortise a
#: commit many times over, few enough that one group's transaction stays small.
GROUP_LIMIT = 64


@dataclass
class GroupedUnit:
    """
    One unit of work waiting for its group, and where its outcome goes.

    C{deliver} is called once, from the committer's thread, with the unit's
    result or a L{Failure}, after the commit holding its changes returned.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    deliver: Callable[[Any], None] = lambda outcome: None


@dataclass(frozen=True)
class GroupStats:
    """
    How grouping went.
    """

    #: units of work run
    units: int
    #: groups run
    groups: int
    #: units run again alone (a conflict, a group that could not commit)
    alone: int
    #: groups run again with savepoints (a unit failed in them)
    again: int


class GroupCommit:
    """
    Run units of work in groups: one transaction, one commit, one fsync per group.

    How a group runs (L{run}), on the one connection this object keeps (its
    cache stays warm from group to group, and a device's objects are not
    reloaded because another connection wrote them):

     1. the units run one after another, in order, so they never conflict
        with each other: each sees what the units before it did, exactly as
        if they had been committed one by one;
     2. if one raises once others before it changed something, the
        transaction is aborted and the group runs again from its start, this
        time with a savepoint before each unit: a unit that raises is rolled
        back to its savepoint, alone, and its error is its outcome (what the
        others did stays). A unit raising with nothing changed before it is
        simply aborted. (Savepoints cost about a tenth of a DM message's
        CPU, so a group takes them only once a unit has failed in it: at
        most one run again per group, whatever the peers send.)
     3. a unit that raises a transient error (a conflict noticed while it
        ran) is rolled back the same way and run again alone, after the group;
     4. one commit; only once it returned (FileStorage has fsynced) are the
        outcomes delivered, so no result is acknowledged before it is durable;
     5. if the commit fails (a conflict with a unit committed meanwhile by
        another connection, or an error storing what one unit changed), the
        transaction is aborted and every unit of the group runs again alone
        (L{Store.run}: its own transaction, retried on conflict), so the one
        that cannot commit fails alone and the others' work is not lost.
        Their errors are not delivered from the failed group either: they
        were computed on top of changes that never committed.

    Units must not act outside the store (they may run more than once, as
    with L{Store.run}), and their outcomes are those of the run that committed.

    What can go wrong: a unit that runs long holds up every unit queued
    behind it (only short, bounded units belong here: a DM message, an
    enrollment); a crash before step 4 loses the whole group, none of which
    was acknowledged; step 5 costs a transaction per unit, which a store
    with frequent conflicts from other writers would pay often.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._manager = transaction.TransactionManager(explicit=True)
        self._connection = store.db.open(transaction_manager=self._manager)
        self._stats = GroupStats(0, 0, 0, 0)

    @property
    def stats(self) -> GroupStats:
        return self._stats

    def close(self) -> None:
        self._connection.close()

    def run(self, units: Sequence[GroupedUnit]) -> None:
        """
        Run C{units} as one group (see the class) and deliver each one's outcome.
        """
        attempt = self._attempt(units, savepoints=False)
        again = attempt is None
        if attempt is None:
            attempt = self._attempt(units, savepoints=True)
            assert attempt is not None
        outcomes, alone = attempt
        stats = self._stats
        self._stats = GroupStats(
            stats.units + len(units), stats.groups + 1, stats.alone + len(alone), stats.again + again
        )
        for unit, outcome in outcomes:
            unit.deliver(outcome)
        for unit in alone:
            try:
                result: Any = self._store.run(unit.fn, *unit.args, **unit.kwargs)
            except Exception:
                result = Failure()
            unit.deliver(result)

    def _attempt(
        self, units: Sequence[GroupedUnit], savepoints: bool
    ) -> tuple[list[tuple[GroupedUnit, Any]], list[GroupedUnit]] | None:
        """
        One run of the group: the outcomes committed, and the units to run
        again alone; None if a unit failed after others changed something
        and the group must run again with savepoints.
        """
        manager = self._manager
        outcomes: list[tuple[GroupedUnit, Any]] = []
        alone: list[GroupedUnit] = []
        changed = False
        manager.begin()
        try:
            root = self._connection.root()
            for unit in units:
                savepoint = manager.savepoint() if savepoints and changed else None
                try:
                    outcome = _plain(unit.fn, unit.fn(root, *unit.args, **unit.kwargs))
                except Exception as e:
                    if savepoint is not None:
                        savepoint.rollback()
                    elif changed:
                        manager.abort()
                        return None
                    else:
                        manager.abort()
                        manager.begin()
                        root = self._connection.root()
                    if isinstance(e, TransientError):
                        alone.append(unit)
                        continue
                    outcome = Failure()
                else:
                    changed = True
                outcomes.append((unit, outcome))
            manager.commit()
        except TransientError:
            manager.abort()
            log.info("a group of {count} units of work conflicted; running each alone", count=len(units))
            return [], list(units)
        except Exception:
            manager.abort()
            log.failure("a group of {count} units of work did not commit; running each alone", count=len(units))
            return [], list(units)
        return outcomes, alone


class _Committer:
    """
    The thread that takes the grouped units waiting and runs them as groups (L{GroupCommit}).
    """

    def __init__(self, store: Store, reactor: IReactorFromThreads, limit: int = GROUP_LIMIT) -> None:
        self._reactor = reactor
        self._limit = limit
        self._group = GroupCommit(store)
        self._waiting: collections.deque[GroupedUnit] = collections.deque()
        self._wakeup = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="mdmd-group-commit", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Deferred[T]:
        result: Deferred[T] = Deferred()
        delivered = False

        def deliver(outcome: Any) -> None:
            nonlocal delivered
            if delivered:
                return
            delivered = True
            fire = result.errback if isinstance(outcome, Failure) else result.callback
            self._reactor.callFromThread(fire, outcome)

        with self._wakeup:
            if self._stopping:
                raise RuntimeError("the store service is stopping")
            self._waiting.append(GroupedUnit(fn, args, kwargs, deliver))
            self._wakeup.notify()
        return result

    def _loop(self) -> None:
        while True:
            with self._wakeup:
                while not self._waiting and not self._stopping:
                    self._wakeup.wait()
                if not self._waiting:
                    break
                units = [self._waiting.popleft() for _ in range(min(self._limit, len(self._waiting)))]
            try:
                self._group.run(units)
            except Exception:
                # our bug or a storage gone wrong: no unit may wait for ever
                failure = Failure()
                log.failure("the group committer failed", failure)
                for unit in units:
                    unit.deliver(failure)
        self._group.close()

    def stop(self) -> None:
        """
        Run what is waiting, then end the thread (and wait for it).
        """
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        self._thread.join()
        stats = self.stats()
        if stats.groups:
            log.info(
                "group commit: {units} units of work in {groups} groups ({size:.1f} a group); "
                "{again} groups run again with savepoints, {alone} units run again alone",
                units=stats.units,
                groups=stats.groups,
                size=stats.units / stats.groups,
                again=stats.again,
                alone=stats.alone,
            )

    def stats(self) -> GroupStats:
        return self._group.stats


class StoreService(Service):
    """
    The C{store} service: opens the database on start (bringing an older
    store to this mdmd's layout, with C{schema}, before anything is served),
    closes it on stop, runs units of work on its own thread pool, and keeps
    the embedded FileStorage in shape (L{mdmd.store.upkeep}): packs it every
    C{pack_interval} (and on demand, L{pack}) and saves its index every
    C{index_save_interval}, on a thread of its own.
    """

    name = "store"

    def __init__(
        self,
        uri: str,
        reactor: IReactorFromThreads,
        pool_size: int = 7,
        retries: int = 5,
        cache_size: int = 10000,
        schema: Schema | None = None,
        upkeep: UpkeepSettings = UpkeepSettings(),
        clock: IReactorTime | None = None,
        upkeep_pool: ThreadPool | None = None,
    ) -> None:
        self.uri = uri
        self.schema = schema
        self.pool_size = pool_size
        self.cache_size = cache_size
        self.retries = retries
        self.upkeep = upkeep
        self._reactor = reactor
        self._clock = clock if clock is not None else IReactorTime(reactor)
        self.store: Store | None = None
        self._pool: ThreadPool | None = None
        self._upkeep_pool = upkeep_pool
        self._own_upkeep_pool = upkeep_pool is None
        self._timers = _UpkeepTimers()
        self._packing = False
        #: fired when each piece of upkeep under way ends (a stop waits for them)
        self._upkeep_busy: set[Deferred[None]] = set()
        self._committer: _Committer | None = None

    def startService(self) -> None:
        # one more connection than threads: the group committer keeps its own
        db = open_db(self.uri, self.pool_size + 1, self.cache_size)
        self.store = Store(db, self.retries)
        self.store.initialize()
        if self.schema is not None:
            upgrade(self.store, self.schema)
        self._pool = ThreadPool(minthreads=1, maxthreads=self.pool_size, name="mdmd-store")
        self._pool.start()
        self._committer = _Committer(self.store, self._reactor)
        log.info("store open: {uri}", uri=describe(self.uri))
        self._start_upkeep(self.store)
        super().startService()

    def stopService(self) -> Deferred[None] | None:
        """
        Stop the schedules, wait for a pack (or index save) under way, then close.
        """
        super().stopService()
        self._stop_upkeep()
        busy = list(self._upkeep_busy)
        if busy:
            log.info("waiting for the store's upkeep under way (a pack) before closing")
        return DeferredList(busy).addCallback(lambda _: self._close())

    def _close(self) -> None:
        if self._upkeep_pool is not None and self._own_upkeep_pool:
            self._upkeep_pool.stop()
            self._upkeep_pool = None
        if self._committer is not None:
            self._committer.stop()
            self._committer = None
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
        if self.store is not None:
            self.store.db.close()
            self.store = None
            # the FileStorage index is written on closing: owner only, as the rest
            path = file_storage_path(self.uri)
            if path is not None:
                restrict_modes(path)
            log.info("store closed")

    def transact(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """
        Run C{fn(root, *args, **kwargs)} as a committed unit of work on the pool.
        """
        store, pool = self._running()
        return deferToThreadPool(self._reactor, pool, store.run, fn, *args, **kwargs)

    def transact_grouped(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """
        Run C{fn(root, *args, **kwargs)} as a committed unit of work, in a
        group with the others waiting (L{GroupCommit}): for short units that
        come often. It fires once the group's commit is durable, as
        L{transact} does once its own is.
        """
        if self._committer is None:
            raise RuntimeError("the store service is not running")
        return self._committer.submit(fn, args, kwargs)

    def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """
        Run a read-only C{fn(root, ...)} on the pool.
        """
        store, pool = self._running()
        return deferToThreadPool(self._reactor, pool, store.read, fn, *args, **kwargs)

    def _running(self) -> tuple[Store, ThreadPool]:
        if self.store is None or self._pool is None:
            raise RuntimeError("the store service is not running")
        return self.store, self._pool

    # -- upkeep ---------------------------------------------------------------------

    def pack(self, days: float | None = None) -> Deferred[PackReport]:
        """
        Pack the store now, keeping C{days} of history (default
        C{pack_keep_days}), on the upkeep thread; fires when it is done.

        @raise PackRefused: (in the Deferred) for a store mdmd does not pack
            (ZEO, RelStorage), saying what packs it.
        @raise PackInProgress: (in the Deferred) if a pack is running.
        """
        refusal = pack_refusal(self.uri)
        if refusal is not None:
            return fail(PackRefused(refusal))
        if self._packing:
            return fail(PackInProgress("the store is being packed already"))
        if self.store is None:
            return fail(RuntimeError("the store service is not running"))
        kept = self.upkeep.pack_keep_days if days is None else days
        self._packing = True
        log.info("packing the store (keeping {days:g} day(s) of history)", days=kept)
        packing = self._in_upkeep(self._pack, self.store, kept, self._clock.seconds())
        return packing.addBoth(self._packed)

    @staticmethod
    def _pack(store: Store, days: float, now: float) -> PackReport:
        point = upkeep.pack_point(days, now)
        packed_to = store.read(_packed_to)
        if packed_to is not None and point <= packed_to:
            # Nothing older than the last pack's point is left to drop (a
            # FileStorage would say so in its log; a memory store refuses).
            size = store.db.storage.getSize()
            log.info("the store was packed to a later point already: nothing to pack")
            report = PackReport(days, now, 0.0, size, size)
        else:
            report = upkeep.pack(store.db, days, now)
            packed_to = point
        store.run(_record_pack, report.as_json(), packed_to)
        return report

    def _packed(self, result: PackReport | Failure) -> PackReport | Failure:
        self._packing = False
        if isinstance(result, Failure):
            log.failure("packing the store failed", result)
        else:
            log.info(
                "store packed in {seconds:.1f} s: {before} → {after} bytes",
                seconds=result.seconds,
                before=result.size_before,
                after=result.size_after,
            )
        if self.running:
            self._schedule_pack(self.upkeep.pack_interval)
        return result

    def save_index(self) -> Deferred[IndexSaved]:
        """
        Save the FileStorage index now, on the upkeep thread.
        """
        store, _ = self._running()
        return self._in_upkeep(upkeep.save_index, store.db.storage)

    def _start_upkeep(self, store: Store) -> None:
        settings = self.upkeep
        if self._own_upkeep_pool:
            self._upkeep_pool = ThreadPool(minthreads=0, maxthreads=1, name="mdmd-store-upkeep")
            self._upkeep_pool.start()
        if settings.pack_interval and pack_refusal(self.uri) is None:
            now = self._clock.seconds()
            last = store.run(_pack_baseline, now)
            self._schedule_pack(max(0.0, last + settings.pack_interval - now))
        if settings.index_save_interval and isinstance(store.db.storage, FileStorage):
            loop = self._timers.index = LoopingCall(self._scheduled_index_save)
            loop.clock = self._clock
            loop.start(settings.index_save_interval, now=False)

    def _stop_upkeep(self) -> None:
        timers, self._timers = self._timers, _UpkeepTimers()
        if timers.pack is not None and timers.pack.active():
            timers.pack.cancel()
        if timers.index is not None and timers.index.running:
            timers.index.stop()

    def _schedule_pack(self, delay: float) -> None:
        if not self.upkeep.pack_interval or pack_refusal(self.uri) is not None:
            return
        if self._timers.pack is not None and self._timers.pack.active():
            self._timers.pack.cancel()
        self._timers.pack = self._clock.callLater(delay, self._scheduled_pack)

    def _scheduled_pack(self) -> None:
        self._timers.pack = None
        # A failure is logged by _packed; a pack on demand under way schedules the next when it ends.
        self.pack().addErrback(lambda _: None)

    def _scheduled_index_save(self) -> Deferred[None]:
        def saved(result: IndexSaved) -> None:
            if result.seconds >= SLOW_INDEX_SAVE:
                log.info(
                    "store index saved (up to byte {position}): the store's lock held {seconds:.2f} s",
                    position=result.position,
                    seconds=result.seconds,
                )

        return self.save_index().addCallbacks(
            saved, lambda f: log.failure("saving the store index failed", f)
        )

    def _in_upkeep(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        """
        Run C{fn(*args)} on the upkeep thread (one piece of upkeep at a time).
        """
        if self._upkeep_pool is None:
            return fail(RuntimeError("the store service is not running"))
        finished: Deferred[None] = Deferred()
        self._upkeep_busy.add(finished)

        def done(result: T | Failure) -> T | Failure:
            self._upkeep_busy.discard(finished)
            finished.callback(None)
            return result

        return deferToThreadPool(self._reactor, self._upkeep_pool, fn, *args).addBoth(done)


@dataclass
class _UpkeepTimers:
    pack: IDelayedCall | None = None
    index: LoopingCall | None = None


def _pack_baseline(root: Root, now: float) -> float:
    """
    When the store was last packed; a store never packed counts from now
    (so that a daemon restarted more often than it packs still packs).
    """
    facts = root["upkeep"]
    if "packed_at" not in facts:
        facts["packed_at"] = now
    packed_at: float = facts["packed_at"]
    return packed_at


def _packed_to(root: Root) -> float | None:
    """
    The point the store was packed to (revisions before it are gone), if it ever was.
    """
    point: float | None = root["upkeep"].get("packed_to")
    last = root["upkeep"].get("last_pack")
    if point is None and last is not None:  # recorded before packed_to was
        point = upkeep.pack_point(last["days"], last["started_at"])
    return point


def _record_pack(root: Root, report: dict[str, Any], packed_to: float) -> None:
    root["upkeep"]["packed_at"] = report["started_at"]
    root["upkeep"]["last_pack"] = report
    root["upkeep"]["packed_to"] = packed_to
