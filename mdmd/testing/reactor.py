"""
A memory reactor with threads, for tests of code that defers work to threads.

Twisted's C{MemoryReactorClock} has no thread methods, so code that takes a
reactor providing L{IReactorThreads} (a L{mdmd.tap.Reactor}, the password
checkers, the store service) could not be given one. L{ThreadedMemoryReactor}
adds them, and runs the work at once in the calling thread: a test needs no
real thread, and what a thread would have computed is there when the call
returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorThreads
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

__all__ = ["SynchronousThreadPool", "ThreadedMemoryReactor"]

log = Logger()


class SynchronousThreadPool(ThreadPool):
    """
    A thread pool that runs each call at once, in the calling thread.

    As with Twisted's pool, C{onResult} gets C{(True, result)} or C{(False,
    failure)}, and a failure nobody is told of is logged.
    """

    def __init__(self) -> None:
        super().__init__(minthreads=0, maxthreads=1, name="synchronous")

    def callInThreadWithCallback(
        self,
        onResult: Callable[[bool, Any], object] | None,
        func: Callable[..., object],
        *args: Any,
        **kw: Any,
    ) -> None:
        try:
            result = func(*args, **kw)
        except BaseException:
            failure = Failure()
            if onResult is None:
                log.failure("a call in the synchronous thread pool failed", failure)
            else:
                onResult(False, failure)
            return
        if onResult is not None:
            onResult(True, result)


@implementer(IReactorThreads)
class ThreadedMemoryReactor(MemoryReactorClock):
    """
    A C{MemoryReactorClock} whose thread pool runs each call at once (L{SynchronousThreadPool}).

    @ivar calls_from_threads: how many calls were handed to C{callFromThread}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pool = SynchronousThreadPool()
        self.calls_from_threads = 0

    def getThreadPool(self) -> ThreadPool:
        return self.pool

    def suggestThreadPoolSize(self, size: int) -> None:
        pass

    def callInThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        self.pool.callInThread(callable, *args, **kwargs)

    def callFromThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        self.calls_from_threads += 1
        callable(*args, **kwargs)
