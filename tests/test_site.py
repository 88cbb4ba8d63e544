"""
Tests for L{mdmd.site}: bounded bodies, Content-Length, keep-alive, error answers, access log.
"""

from __future__ import annotations

import http.client
import socket
from typing import cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel
from zope.interface import alsoProvides

from mdmd.errors import NotFound, PeerError
from mdmd.site import AsyncResource, MdmdChannel, MdmdRequest, MdmdSite, Response, mdmd_request
from mdmd.store.runner import ConflictRetriesExhausted

from .logs import logged_events
from .servers import serve


class Echo(AsyncResource):
    async def handle_POST(self, request: MdmdRequest) -> Response:
        request.device_id = "DEV-7"
        body = request.content.read()
        # answer after a reactor turn, as real handlers do after store work
        d: Deferred[None] = Deferred()
        reactor.callLater(0, d.callback, None)
        await d
        return Response(b"got " + str(len(body)).encode(), content_type=b"text/plain")


class Arguments(AsyncResource):
    async def handle_POST(self, request: MdmdRequest) -> Response:
        return Response(repr((sorted(request.args), request.content.read())).encode())


class Broken(AsyncResource):
    async def handle_GET(self, request: Request) -> Response:
        raise KeyError("secret internal detail")


class Refusing(AsyncResource):
    async def handle_GET(self, request: Request) -> Response:
        raise PeerError("you sent nonsense")


class Missing(NotFound):
    """
    A lookup that found nothing, as a domain module declares one.
    """


class Looking(AsyncResource):
    async def handle_GET(self, request: Request) -> Response:
        raise Missing("no gadget 'G-1'")


class Overloaded(AsyncResource):
    async def handle_GET(self, request: Request) -> Response:
        raise ConflictRetriesExhausted("unit conflicted 6 times")


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


class SiteTests(TestCase):
    def setUp(self) -> None:
        root = Resource()
        root.putChild(b"echo", Echo())
        root.putChild(b"broken", Broken())
        root.putChild(b"arguments", Arguments())
        root.putChild(b"refusing", Refusing())
        root.putChild(b"looking", Looking())
        root.putChild(b"busy", Overloaded())
        self.site = MdmdSite(root, clock=reactor, max_body=1000)
        self.events = logged_events(self)
        self.port = serve(self, self.site)

    def requests(
        self, *requests: tuple[str, str, bytes | None], headers: dict[str, str] | None = None
    ) -> Deferred[list[tuple[int, dict[str, str], bytes]]]:
        def run() -> list[tuple[int, dict[str, str], bytes]]:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            out = []
            for method, path, body in requests:
                connection.request(method, path, body=body, headers=headers or {})
                response = connection.getresponse()
                out.append((response.status, dict((k.lower(), v) for k, v in response.getheaders()), response.read()))
            connection.close()
            return out

        return deferToThread(run)

    async def test_content_length_and_keep_alive(self) -> None:
        """
        Asynchronous answers carry Content-Length, never chunked, and one connection serves several requests.
        """
        replies = await self.requests(("POST", "/echo", b"x" * 10), ("POST", "/echo", b"y" * 20))
        self.assertEqual([r[2] for r in replies], [b"got 10", b"got 20"])
        for status, headers, body in replies:
            self.assertEqual(status, 200)
            self.assertEqual(headers["content-length"], str(len(body)))
            self.assertNotIn("transfer-encoding", headers)

    async def test_declared_oversized_body(self) -> None:
        """
        A Content-Length above the cap gets 413 at once and the connection closes.
        """
        answer = await deferToThread(
            raw_exchange,
            self.port,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"z" * 100,
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)
        self.assertIn(b"Content-Length: 24", answer)

    async def test_chunked_oversized_body(self) -> None:
        """
        A chunked body is cut off with 413 as soon as it passes the cap.
        """
        chunk = b"%x\r\n%s\r\n" % (600, b"q" * 600)
        answer = await deferToThread(
            raw_exchange,
            self.port,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n",
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)
        self.assertNotIn(b"got ", answer)

    async def test_body_at_cap_accepted(self) -> None:
        """
        A body of exactly the cap is fine.
        """
        (reply,) = await self.requests(("POST", "/echo", b"a" * 1000))
        self.assertEqual(reply[2], b"got 1000")

    async def test_internal_error_hides_traceback(self) -> None:
        """
        Our own failure is logged with its traceback; the peer sees a bare 500.
        """
        (reply,) = await self.requests(("GET", "/broken", None))
        self.assertEqual(reply[0], 500)
        self.assertNotIn(b"secret", reply[2])
        self.assertNotIn(b"Traceback", reply[2])
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    async def test_peer_error_answered(self) -> None:
        """
        A peer's protocol mistake gets a 400 naming it, and nothing is logged as an error.
        """
        (reply,) = await self.requests(("GET", "/refusing", None))
        self.assertEqual((reply[0], reply[2]), (400, b"you sent nonsense\n"))

    async def test_declared_status(self) -> None:
        """
        A peer error is answered with the status its class declares and logged
        once at info level, without traceback.
        """
        (reply,) = await self.requests(("GET", "/looking", None))
        self.assertEqual((reply[0], reply[2]), (404, b"no gadget 'G-1'\n"))
        self.assertNotIn("retry-after", reply[1])
        (line,) = [e for e in self.events if e.get("error") == "Missing"]
        self.assertEqual((line["log_level"], line.get("log_failure"), line["status"]), (LogLevel.info, None, 404))

    async def test_busy(self) -> None:
        """
        "Busy" is a 503 with Retry-After that tells nothing of our internals,
        logged as a warning without traceback.
        """
        (reply,) = await self.requests(("GET", "/busy", None))
        self.assertEqual((reply[0], reply[1]["retry-after"]), (503, "5"))
        self.assertEqual(reply[2], b"the server is busy; try again later\n")
        self.assertEqual(self.flushLoggedErrors(ConflictRetriesExhausted), [])
        (line,) = [e for e in self.events if e.get("error") == "ConflictRetriesExhausted"]
        self.assertEqual((line["log_level"], line.get("log_failure")), (LogLevel.warn, None))

    async def test_method_not_allowed(self) -> None:
        """
        Unhandled methods get 405 with an Allow header.
        """
        (reply,) = await self.requests(("DELETE", "/echo", None))
        self.assertEqual(reply[0], 405)
        self.assertEqual(reply[1]["allow"], "POST")

    async def test_access_log_line(self) -> None:
        """
        Each request logs one line with method, path, status, bytes, duration and device id.
        """
        await self.requests(("POST", "/echo?x=1", b"abc"))
        lines = [e for e in self.events if e.get("listener") == "https" and "status" in e]
        self.assertEqual(len(lines), 1)
        line = lines[0]
        self.assertEqual(
            (line["method"], line["path"], line["status"], line["bytes"], line["device_id"]),
            ("POST", "/echo?x=1", 200, 5, "DEV-7"),
        )
        self.assertGreaterEqual(line["duration_ms"], 0)

    async def test_no_body_is_parsed(self) -> None:
        """
        No body is decoded into request.args, a form's included (no endpoint
        takes one, and twisted.web would decode it before any authentication);
        the body stays readable and the query string still fills args.
        """
        for content_type, body in (
            ("application/x-www-form-urlencoded", b"a=1&b=2"),
            ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n"),
            ("application/soap+xml; charset=utf-8", b"a=1&b=2"),
        ):
            ((_, _, answer),) = await self.requests(
                ("POST", "/arguments", body), headers={"Content-Type": content_type}
            )
            self.assertEqual(answer, repr(([], body)).encode(), content_type)
        ((_, _, answer),) = await self.requests(
            ("POST", "/arguments?q=1", b"a=1"), headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        self.assertEqual(answer, repr(([b"q"], b"a=1")).encode())


class Unsendable(AsyncResource):
    async def handle_GET(self, request: Request) -> object:
        return None  # the mistake under test: not a Response


class RequestTests(SynchronousTestCase):
    """
    L{MdmdRequest} and L{mdmd_request} without a network.
    """

    def request(self) -> MdmdRequest:
        request = MdmdRequest(cast(HTTPChannel, DummyChannel()))  # a stand-in: Request only uses part of it
        request.method = b"GET"
        request.uri = request.path = b"/"
        request.clientproto = b"HTTP/1.1"
        return request

    def test_noted_attributes(self) -> None:
        """
        What resources note on a request starts unknown.
        """
        request = self.request()
        self.assertEqual(
            (request.device_id, request.enroll_user, request.activity_id, request.relates_to),
            (None, None, None, ""),
        )

    def test_accessor(self) -> None:
        """
        C{mdmd_request} gives back an MdmdRequest as it is and refuses any other request.
        """
        request = self.request()
        self.assertIs(mdmd_request(request), request)
        with self.assertRaises(TypeError):
            mdmd_request(Request(cast(HTTPChannel, DummyChannel())))

    def test_failure_to_send_logged(self) -> None:
        """
        A failure while sending an answer is logged with its traceback, under its own message.
        """
        events = logged_events(self)
        Unsendable().render(self.request())
        (failed,) = [e for e in events if e.get("log_failure") is not None]
        self.assertEqual(failed["log_format"], "while sending a response")
        self.assertEqual(len(self.flushLoggedErrors(AttributeError)), 1)


class Quick(AsyncResource):
    async def handle_POST(self, request: MdmdRequest) -> Response:
        return Response(b"got " + str(len(request.content.read())).encode())


class TCPStringTransport(StringTransport):
    """
    A memory transport standing in for TCP (under TLS, which passes TCP's interface on).
    """

    write_closed = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def loseWriteConnection(self) -> None:
        self.write_closed = True


class ChannelTests(SynchronousTestCase):
    """
    L{MdmdChannel}'s limits, on a memory transport and a clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        root = Resource()
        root.putChild(b"echo", Quick())
        self.site = MdmdSite(root, clock=self.clock, max_body=1000, timeout=60, header_timeout=5, body_timeout=10)
        self.events = logged_events(self)

    def connect(self) -> tuple[MdmdChannel, TCPStringTransport]:
        channel = self.site.buildProtocol(IPv4Address("TCP", "192.0.2.1", 40000))
        assert isinstance(channel, MdmdChannel)
        transport = TCPStringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 40000))
        alsoProvides(transport, ITCPTransport)
        channel.makeConnection(transport)
        return channel, transport

    def assertRefused(self, transport: TCPStringTransport, status: bytes) -> None:
        """
        C{transport} got the one answer C{status}, closing, and is being closed.
        """
        answer = transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:80])
        self.assertIn(b"Connection: close", answer)
        self.assertEqual(answer.count(b"HTTP/1.1"), 1)
        self.assertTrue(transport.write_closed)

    def test_long_request_line_414(self) -> None:
        """
        A request line past 16 KiB is answered 414 at once (before the line
        ends), the connection closed, and what follows ignored.
        """
        channel, transport = self.connect()
        channel.dataReceived(b"GET /" + b"a" * 20_000)
        self.assertRefused(transport, b"414")
        channel.dataReceived(b"b" * 20_000 + b" HTTP/1.1\r\n\r\n")
        self.assertEqual(transport.value().count(b"HTTP/1.1 "), 1)

    def test_long_header_line_431(self) -> None:
        """
        One header line of 100 KB is answered 431 at once.
        """
        channel, transport = self.connect()
        channel.dataReceived(b"GET / HTTP/1.1\r\nX-Big: " + b"x" * 100_000)
        self.assertRefused(transport, b"431")

    def test_many_headers_431(self) -> None:
        """
        Headers that are each short but together pass 16 KiB are answered 431 (Twisted: a bare 400).
        """
        channel, transport = self.connect()
        channel.dataReceived(b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: %s\r\n" % (n, b"v" * 100) for n in range(200)))
        self.assertRefused(transport, b"431")

    def test_malformed_and_too_many_headers(self) -> None:
        """
        A malformed request is answered 400, one with more than maxHeaders
        headers 431, through the same closing path (Twisted: a bare 400, then
        waiting for the peer).
        """
        channel, transport = self.connect()
        channel.dataReceived(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
        self.assertRefused(transport, b"400")
        channel, transport = self.connect()
        channel.dataReceived(b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % n for n in range(channel.maxHeaders + 2)))
        self.assertRefused(transport, b"431")
        self.clock.advance(channel.linger)
        self.assertTrue(transport.disconnected)

    def test_head_drip_408(self) -> None:
        """
        Headers dripped a byte at a time (each byte resetting the idle
        timeout) are cut off header_timeout after the request began: 408.
        """
        channel, transport = self.connect()
        self.clock.advance(3)  # the TLS handshake and the first bytes: within the limit
        for byte in b"GET / HTTP/1.1\r\nX-Slow: ":
            channel.dataReceived(bytes([byte]))
            self.clock.advance(0.05)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(2)
        self.assertRefused(transport, b"408")
        self.assertIn(b"request head not received within 5 s", transport.value())

    def test_body_drip_408(self) -> None:
        """
        A body slower than body_timeout after its head is cut off with 408.
        """
        channel, transport = self.connect()
        channel.dataReceived(b"POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
        self.clock.advance(9.9)
        channel.dataReceived(b"d")
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.2)
        self.assertRefused(transport, b"408")

    def test_silent_connection_closed(self) -> None:
        """
        A connection that sends nothing (or never finishes its TLS handshake)
        is closed after header_timeout, with nothing to answer; if the peer
        does not let go, it is aborted `linger` later.
        """
        channel, transport = self.connect()
        self.clock.advance(5)
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.write_closed)
        self.assertFalse(transport.disconnected)
        self.clock.advance(channel.linger)
        self.assertTrue(transport.disconnected)

    def test_refused_connection_aborted_if_held(self) -> None:
        """
        After a refusal the connection is half-closed and the socket aborted
        `linger` later if the peer holds it open (over TLS, a peer that never
        sends close_notify).
        """
        channel, transport = self.connect()
        channel.dataReceived(b"GET /" + b"a" * 20_000)
        self.clock.advance(channel.linger - 0.5)
        self.assertFalse(transport.disconnected)
        self.clock.advance(0.5)
        self.assertTrue(transport.disconnected)

    def test_keep_alive_between_requests(self) -> None:
        """
        Between requests a connection waits for the idle timeout, not the head's:
        the head clock starts with the next request's first byte.
        """
        channel, transport = self.connect()
        channel.dataReceived(b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
        self.assertIn(b"got 3", transport.value())
        transport.clear()
        self.clock.advance(30)
        self.assertFalse(transport.disconnecting)
        channel.dataReceived(b"POST /echo HTTP/1.1\r\n")
        self.clock.advance(5)
        self.assertRefused(transport, b"408")

    def test_oversized_body_413_closes(self) -> None:
        """
        A declared body over max_body is refused 413 through the same closing path.
        """
        channel, transport = self.connect()
        channel.dataReceived(b"POST /echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\n")
        self.assertRefused(transport, b"413")
        self.clock.advance(channel.linger)
        self.assertTrue(transport.disconnected)

    def test_http11_only(self) -> None:
        """
        Only HTTP/1.1 is offered over ALPN: the channel's limits are HTTP/1.1's.
        """
        self.assertEqual(self.site.acceptableProtocols(), [b"http/1.1"])
