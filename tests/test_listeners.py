"""
Tests for L{mdmd.listeners}: a busy address and a state directory another
daemon holds stop the start with one line saying so.
"""

from __future__ import annotations

import errno
import os
import socket

from twisted.internet.defer import Deferred, fail
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from mdmd.listeners import CannotListen, ListeningService, MdmdService, StateDirectoryInUse, StateDirectoryLock
from mdmd.testing.reactor import ThreadedMemoryReactor


@implementer(IStreamServerEndpoint)
class _Busy:
    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        return fail(CannotListenError("127.0.0.1", 8443, socket.error(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))))


class ListeningServiceTests(SynchronousTestCase):
    def test_busy_port(self) -> None:
        """
        A port in use is one line naming the listener and its address.
        """
        service = ListeningService("https", _Busy, Factory.forProtocol(Protocol), description="tcp:127.0.0.1:8443")
        with self.assertRaises(CannotListen) as caught:
            service.startService()
        self.assertEqual(
            str(caught.exception),
            "cannot listen on https tcp:127.0.0.1:8443: address already in use (by another program, or another mdmd)",
        )


class StateDirectoryLockTests(SynchronousTestCase):
    def test_one_holder(self) -> None:
        """
        While one lock holds the directory another is refused, naming the
        directory and the holder's pid; once released it can be taken.
        """
        state_dir = os.path.abspath(self.mktemp())
        os.makedirs(state_dir)
        first, second = StateDirectoryLock(state_dir), StateDirectoryLock(state_dir)
        first.acquire()
        self.addCleanup(first.release)
        with self.assertRaises(StateDirectoryInUse) as caught:
            second.acquire()
        self.assertEqual(str(caught.exception), f"another mdmd is running on {os.path.relpath(state_dir)}/ (pid {os.getpid()})")
        self.assertEqual(os.stat(first.path).st_mode & 0o777, 0o600)
        first.release()
        second.acquire()
        second.release()

    def test_second_daemon_refused(self) -> None:
        """
        A second service tree on the same state directory stops before
        starting anything; the first one runs on.
        """
        state_dir = os.path.abspath(self.mktemp())
        reactor = ThreadedMemoryReactor()
        first, second = MdmdService(state_dir, reactor), MdmdService(state_dir, reactor)
        started: list[str] = []
        child = ListeningService("https", _Busy, Factory.forProtocol(Protocol), description="x", prepare=lambda: started.append("x"))
        child.setServiceParent(second)
        first.startService()
        self.addCleanup(first.stopService)
        self.assertRaises(StateDirectoryInUse, second.startService)
        self.assertEqual((started, bool(first.running), bool(second.running)), ([], True, False))
