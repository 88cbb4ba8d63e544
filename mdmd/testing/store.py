"""
A store for unit tests: the real ZODB on a MappingStorage, run synchronously.

L{SynchronousStoreService} keeps the contract of L{StoreService} (the same
L{Store} runs each unit of work: its own transaction, committed, retried on
conflict, no persistent object returned) but runs it at once in the calling
thread, so a test needs no reactor and no thread pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from mdmd.store.db import open_db
from mdmd.store.runner import GroupCommit, GroupedUnit, Store, StoreService
from mdmd.testing.reactor import ThreadedMemoryReactor

__all__ = ["SynchronousStoreService", "memory_store_service"]

T = TypeVar("T")


class SynchronousStoreService(StoreService):
    """
    A L{StoreService} whose units of work run at once, in the calling thread.

    The returned Deferreds have already fired, so a test needs no reactor
    turn; the ZODB, the transactions and the conflict handling are the real ones.
    """

    def __init__(self, uri: str, pool_size: int = 7, retries: int = 5, cache_size: int = 10000) -> None:
        # No unit of work goes to a thread: the reactor is never asked for one,
        # and upkeep (a pack) runs in its synchronous pool.
        reactor = ThreadedMemoryReactor()
        super().__init__(uri, reactor, pool_size, retries, cache_size, upkeep_pool=reactor.pool)
        self._group: GroupCommit | None = None

    def startService(self) -> None:
        self.store = Store(open_db(self.uri, self.pool_size + 1, self.cache_size), self.retries)
        self.store.initialize()
        self._group = GroupCommit(self.store)
        self.running = 1

    def stopService(self) -> None:
        self.running = 0
        if self._group is not None:
            self._group.close()
            self._group = None
        if self.store is not None:
            self.store.db.close()
            self.store = None

    def _call(self, runner: Callable[..., T], fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        try:
            return succeed(runner(fn, *args, **kwargs))
        except BaseException:
            return fail()

    def transact(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        if self.store is None:
            raise RuntimeError("the store service is not running")
        return self._call(self.store.run, fn, *args, **kwargs)

    def transact_grouped(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """
        The unit runs as a group of its own, through the real L{GroupCommit}.
        """
        if self._group is None:
            raise RuntimeError("the store service is not running")
        outcomes: list[Any] = []
        self._group.run([GroupedUnit(fn, args, kwargs, outcomes.append)])
        (outcome,) = outcomes
        return fail(outcome) if isinstance(outcome, Failure) else succeed(outcome)

    def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        if self.store is None:
            raise RuntimeError("the store service is not running")
        return self._call(self.store.read, fn, *args, **kwargs)


def memory_store_service(uri: str = "memory:") -> SynchronousStoreService:
    """
    A started synchronous store on a fresh in-memory database.
    """
    service = SynchronousStoreService(uri, pool_size=2)
    service.startService()
    return service
