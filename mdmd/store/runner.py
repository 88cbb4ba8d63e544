"""
Units of work on the ZODB, and the service that runs them off the reactor thread.

One unit of work is a function C{fn(root, *args)} that reads and changes
persistent objects and returns plain values. L{Store.run} gives it a fresh
connection with its own transaction manager, commits, and retries it on a
write conflict. L{StoreService} runs units on a dedicated thread pool no
larger than the database's connection pool, so the reactor never blocks on
storage and no persistent object ever crosses threads.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
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

__all__ = ["Root", "Store", "StoreService", "ConflictRetriesExhausted"]

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
                result = fn(connection.root(), *args, **kwargs)
                if isinstance(result, Persistent):
                    raise TypeError(
                        f"{getattr(fn, '__name__', fn)!r} returned a persistent "
                        "object; return plain values"
                    )
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

    def startService(self) -> None:
        db = open_db(self.uri, self.pool_size, self.cache_size)
        self.store = Store(db, self.retries)
        self.store.initialize()
        if self.schema is not None:
            upgrade(self.store, self.schema)
        self._pool = ThreadPool(minthreads=1, maxthreads=self.pool_size, name="mdmd-store")
        self._pool.start()
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
        report = upkeep.pack(store.db, days, now)
        store.run(_record_pack, report.as_json())
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


def _record_pack(root: Root, report: dict[str, Any]) -> None:
    root["upkeep"]["packed_at"] = report["started_at"]
    root["upkeep"]["last_pack"] = report
