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
from typing import Any, ParamSpec, TypeVar

import transaction
import ZODB
from persistent import Persistent
from transaction.interfaces import TransientError
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from mdmd.errors import Busy
from mdmd.store.db import describe, file_storage_path, open_db, restrict_modes
from mdmd.store.migration import Schema, upgrade
from mdmd.store.models import ensure_root

__all__ = ["Root", "Store", "StoreService", "ConflictRetriesExhausted"]

P = ParamSpec("P")
T = TypeVar("T")

#: What a unit of work is given: the database root (container name → container).
Root = MutableMapping[str, Any]

log = Logger()


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
    closes it on stop, and runs units of work on its own thread pool.
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
    ) -> None:
        self.uri = uri
        self.schema = schema
        self.pool_size = pool_size
        self.cache_size = cache_size
        self.retries = retries
        self._reactor = reactor
        self.store: Store | None = None
        self._pool: ThreadPool | None = None

    def startService(self) -> None:
        db = open_db(self.uri, self.pool_size, self.cache_size)
        self.store = Store(db, self.retries)
        self.store.initialize()
        if self.schema is not None:
            upgrade(self.store, self.schema)
        self._pool = ThreadPool(minthreads=1, maxthreads=self.pool_size, name="mdmd-store")
        self._pool.start()
        log.info("store open: {uri}", uri=describe(self.uri))
        super().startService()

    def stopService(self) -> None:
        super().stopService()
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
