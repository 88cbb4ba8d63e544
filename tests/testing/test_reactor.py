"""
Tests for L{mdmd.testing.reactor}: a memory reactor whose threads run work at once.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mdmd.testing.reactor import SynchronousThreadPool, ThreadedMemoryReactor

from ..logs import logged_events


class ThreadedMemoryReactorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = ThreadedMemoryReactor()

    def test_provides_threads(self) -> None:
        """
        It provides IReactorThreads, with its memory reactor's members still there.
        """
        self.assertTrue(verifyObject(IReactorThreads, self.reactor))
        self.reactor.advance(5)
        self.assertEqual(self.reactor.seconds(), 5)

    def test_deferred_to_the_pool(self) -> None:
        """
        Work handed to the pool as the store and the password checkers do
        (C{deferToThreadPool}) has its result at once, through C{callFromThread}.
        """
        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(), lambda a, b: a + b, 2, 3)
        self.assertEqual(self.successResultOf(d), 5)
        self.assertEqual(self.reactor.calls_from_threads, 1)

    def test_failure_from_the_pool(self) -> None:
        """
        Work that raises fails the Deferred with its exception.
        """
        d = deferToThreadPool(self.reactor, self.reactor.getThreadPool(), lambda: 1 // 0)
        self.failureResultOf(d, ZeroDivisionError)

    def test_call_in_thread(self) -> None:
        """
        C{callInThread} runs the call before returning.
        """
        calls: list[int] = []
        self.reactor.callInThread(calls.append, 1)
        self.assertEqual(calls, [1])


class SynchronousThreadPoolTests(SynchronousTestCase):
    def test_failure_without_callback_logged(self) -> None:
        """
        A call that fails with nobody to tell is logged, as Twisted's pool does.
        """
        events = logged_events(self)
        SynchronousThreadPool().callInThread(lambda: 1 // 0)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(
            [e["log_format"] for e in events if e.get("log_failure") is not None],
            ["a call in the synchronous thread pool failed"],
        )

    def test_result_to_callback(self) -> None:
        """
        C{onResult} gets (True, result) or (False, a Failure).
        """
        outcomes: list[tuple[bool, object]] = []
        pool = SynchronousThreadPool()
        pool.callInThreadWithCallback(lambda ok, result: outcomes.append((ok, result)), lambda: "x")
        pool.callInThreadWithCallback(lambda ok, result: outcomes.append((ok, result)), lambda: 1 // 0)
        self.assertEqual(outcomes[0], (True, "x"))
        ok, failure = outcomes[1]
        assert isinstance(failure, Failure)
        self.assertEqual((ok, failure.check(ZeroDivisionError)), (False, ZeroDivisionError))
