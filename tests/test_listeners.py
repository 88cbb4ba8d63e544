"""
Tests for L{mdmd.listeners}: a busy address and a state directory another
daemon holds stop the start with one line saying so; the sources connections
are counted under, the guard's caps, and the guarded TLS endpoint over real
sockets.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import time

from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from zope.interface import implementer

from mdmd.listeners import (
    CannotListen,
    ConnectionGuard,
    ConnectionLimits,
    GuardedTLSEndpoint,
    ListeningService,
    MdmdService,
    StateDirectoryInUse,
    StateDirectoryLock,
    peer_source,
)
from mdmd.site import MdmdSite
from mdmd.testing.reactor import ThreadedMemoryReactor

from .logs import logged_events
from .pki.helpers import started_ca


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


class PeerSourceTests(SynchronousTestCase):
    def test_sources(self) -> None:
        """
        IPv4 addresses count one by one, IPv6 by /64, IPv4-mapped IPv6 as
        IPv4; a UNIX socket or nothing is "".
        """
        self.assertEqual(peer_source(IPv4Address("TCP", "192.0.2.7", 1)), "192.0.2.7")
        self.assertEqual(peer_source(IPv6Address("TCP", "2001:db8:1:2:3:4:5:6", 1)), "2001:db8:1:2::/64")
        self.assertEqual(
            peer_source(IPv6Address("TCP", "2001:db8:1:2:ffff::1", 1)),
            peer_source(IPv6Address("TCP", "2001:db8:1:2::9", 1)),
        )
        self.assertEqual(peer_source(IPv6Address("TCP", "fe80::1%eth0", 1)), "fe80::/64")
        self.assertEqual(peer_source(IPv6Address("TCP", "::ffff:192.0.2.7", 1)), "192.0.2.7")
        self.assertEqual(peer_source(UNIXAddress(b"/run/x.sock")), "")
        self.assertEqual(peer_source(None), "")


class GuardTests(SynchronousTestCase):
    """
    L{ConnectionGuard} on memory transports.
    """

    def setUp(self) -> None:
        self.guard = ConnectionGuard(Factory.forProtocol(Protocol), ConnectionLimits(total=3, per_source=2))
        self.guard.doStart()
        self.events = logged_events(self)

    def connect(self, host: str) -> Protocol | None:
        address = IPv4Address("TCP", host, 5000)
        protocol = self.guard.buildProtocol(address)
        if protocol is not None:
            protocol.makeConnection(StringTransport(peerAddress=address))
        return protocol

    def warnings(self) -> list[str]:
        found = [e for e in self.events if e["log_level"] == LogLevel.warn]
        self.events.clear()
        return [e["log_format"] for e in found]

    def test_caps(self) -> None:
        """
        A source gets at most per_source connections, everyone together at
        most total; a closed connection frees its place; refusals are counted.
        """
        a1, a2 = self.connect("192.0.2.1"), self.connect("192.0.2.1")
        self.assertIsNone(self.connect("192.0.2.1"))
        b1 = self.connect("192.0.2.2")
        self.assertIsNotNone(b1)
        self.assertIsNone(self.connect("192.0.2.3"))  # three open: the total
        self.assertEqual(self.guard.sources, {"192.0.2.1": 2, "192.0.2.2": 1})
        assert a1 is not None and a2 is not None
        a1.connectionLost(Failure(ConnectionError()))
        self.assertIsNotNone(self.connect("192.0.2.3"))
        self.assertEqual(self.guard.sources, {"192.0.2.1": 1, "192.0.2.2": 1, "192.0.2.3": 1})
        self.assertEqual(self.guard.refused, 2)

    def test_logged_once_per_episode(self) -> None:
        """
        A source reaching its cap is logged once, however many connections
        are refused, and again only after it has dropped below it.
        """
        first = self.connect("192.0.2.1")
        self.connect("192.0.2.1")
        for _ in range(5):
            self.connect("192.0.2.1")
        self.assertEqual(len(self.warnings()), 1)
        assert first is not None
        first.connectionLost(Failure(ConnectionError()))
        self.connect("192.0.2.1")
        self.connect("192.0.2.1")
        self.assertEqual(len(self.warnings()), 1)

    def test_total_logged_once(self) -> None:
        """
        The listener being full is logged once until a connection closes.
        """
        opened = [self.connect(f"192.0.2.{n}") for n in range(3)]
        for n in range(5):
            self.assertIsNone(self.connect(f"198.51.100.{n}"))
        self.assertEqual(len(self.warnings()), 1)
        assert opened[0] is not None
        opened[0].connectionLost(Failure(ConnectionError()))
        self.assertIsNotNone(self.connect("198.51.100.9"))
        self.assertIsNone(self.connect("198.51.100.10"))
        self.assertEqual(len(self.warnings()), 1)

    def test_no_cap_per_source(self) -> None:
        """
        per_source 0 leaves only the total (behind a load balancer).
        """
        guard = ConnectionGuard(Factory.forProtocol(Protocol), ConnectionLimits(total=5, per_source=0))
        guard.doStart()
        for _ in range(5):
            protocol = guard.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1))
            assert protocol is not None
            protocol.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 1)))
        self.assertIsNone(guard.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1)))


def _handshake(port: int, context: ssl.SSLContext, source: str = "127.0.0.1") -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return context.wrap_socket(raw, server_hostname="localhost")


def _read_all(connection: socket.socket) -> tuple[bytes, float]:
    """
    Everything the server sends until it closes, and how long that took.
    """
    started = time.monotonic()
    chunks = []
    while True:
        try:
            chunk = connection.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - started


class GuardedTLSTests(TestCase):
    """
    The guarded TLS endpoint on a real loopback port, with stdlib TLS clients.
    """

    def setUp(self) -> None:
        self.ca = started_ca(self)
        self.context = ssl.create_default_context(cafile=self.ca.ca_cert_path)
        endpoint = GuardedTLSEndpoint(
            TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
            self.ca.tls_options,
            ConnectionLimits(total=10, per_source=2),
        )
        site = MdmdSite(Resource(), clock=reactor, header_timeout=30)
        port = self.successResultOf(endpoint.listen(site))
        self.addCleanup(port.stopListening)
        bound = port.getHost()
        assert isinstance(bound, IPv4Address)
        self.port = bound.port
        assert endpoint.guard is not None
        self.guard = endpoint.guard

    async def test_cap_before_handshake(self) -> None:
        """
        Beyond a source's cap a connection is closed before its TLS handshake;
        another source (127.0.0.2) is served meanwhile; a closed connection frees its place.
        """
        held = [await deferToThread(_handshake, self.port, self.context) for _ in range(2)]
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            await deferToThread(_handshake, self.port, self.context)
        other = await deferToThread(_handshake, self.port, self.context, "127.0.0.2")
        self.assertEqual(self.guard.refused, 1)
        held[0].close()
        for _ in range(100):  # until the server has seen it go
            if self.guard.sources.get("127.0.0.1") == 1:
                break
            await deferToThread(time.sleep, 0.02)
        again = await deferToThread(_handshake, self.port, self.context)
        for connection in (held[1], other, again):
            connection.close()

    async def test_long_request_line_answered_over_tls(self) -> None:
        """
        Over TLS, a 20 KB request line is answered 414 at once and the
        connection closed (it used to be held, unanswered, for the idle timeout).
        """
        connection = await deferToThread(_handshake, self.port, self.context)
        self.addCleanup(connection.close)
        await deferToThread(connection.sendall, b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n")
        answer, took = await deferToThread(_read_all, connection)
        self.assertTrue(answer.startswith(b"HTTP/1.1 414 "), answer[:60])
        self.assertLess(took, 5.0)
