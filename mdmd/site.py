"""
The HTTPS front door: a twisted.web Site whose requests have a bounded head
and body that must arrive in time, whose responses always carry
Content-Length, and which logs one line per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ISSLTransport, ITCPTransport
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from mdmd.errors import AnsweredError, InternalError, PeerError, answer_text

__all__ = [
    "MdmdChannel",
    "MdmdRequest",
    "mdmd_request",
    "MdmdSite",
    "respond",
    "Response",
    "AsyncResource",
]

log = Logger()

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Request Entity Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}


class MdmdChannel(http.HTTPChannel):
    """
    HTTP/1.1 whose requests a stranger cannot stretch.

    Twisted's channel closes a request line or header line longer than
    C{MAX_LENGTH} without a word (and, over TLS, leaves the connection open
    until its idle timeout, waiting for the peer's close_notify), answers
    400 when all the header lines together pass C{totalHeadersSize}, and
    resets its idle timeout on every byte, so a client dripping its
    headers holds a connection for ever. Here:

      - a request line over 16 KiB is answered 414, a header line or all of
        them over 16 KiB 431, at once, and the connection closed;
      - a request's head (request line and headers) must arrive within the
        site's C{header_timeout} of its first byte (for a new connection, of
        the connection: that covers the TLS handshake), its body within
        C{body_timeout} of the head; otherwise 408 and close;
      - between requests, the idle timeout is Twisted's (the site's C{timeout}).

    Every refusal closes the connection: the answer is sent, the connection
    half-closed, and the socket aborted C{linger} seconds later if the peer
    does not let it go (L{_close}).
    """

    site: MdmdSite
    #: seconds a refused connection is given to close its side before it is aborted
    linger = 2.0
    _deadline: IDelayedCall | None = None
    _aborting: IDelayedCall | None = None
    #: some bytes of the request now arriving have come
    _request_started = False
    refused = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start_deadline(self.site.header_timeout, "head")

    def dataReceived(self, data: bytes) -> None:
        if self.refused:
            return
        if not self._handlingRequest and self._deadline is None:
            self._start_deadline(self.site.header_timeout, "head")
        self._request_started = True
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> bool | None:
        # Twisted counts the head's bytes per request (reset when one is complete).
        first = self._receivedHeaderSize == 0
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            return self._refuse_long_head(first)
        super().lineReceived(line)
        return self.refused or None

    def lineLengthExceeded(self, line: bytes) -> bool:
        return self._refuse_long_head(self._receivedHeaderSize == 0)

    def _refuse_long_head(self, first: bool) -> bool:
        if first:
            self.refuse(414, b"request line too long")
        else:
            self.refuse(431, b"request header fields too large")
        return True

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Twisted's answer to a malformed request (or one with more than
        # maxHeaders headers: 431) writes a bare 400 and waits for the peer's
        # close_notify; close as every other refusal does.
        if self._receivedHeaderCount > self.maxHeaders:
            self.refuse(431, b"too many request header fields")
        else:
            self.refuse(400, b"malformed request")

    def allHeadersReceived(self) -> None:
        self._stop_deadline()
        super().allHeadersReceived()
        if self.length != 0 and not self.refused:
            self._start_deadline(self.site.body_timeout, "body")

    def allContentReceived(self) -> None:
        self._stop_deadline()
        self._request_started = False
        super().allContentReceived()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]  # HTTPChannel's is untyped
        self._stop_deadline()
        if self._aborting is not None and self._aborting.active():
            self._aborting.cancel()
        self._aborting = None
        super().connectionLost(reason)

    def refuse(self, status: int, reason: bytes) -> None:
        """
        Answer C{status} with C{reason} (once), and close the connection.
        """
        if self.refused:
            return
        self.refused = True
        self._stop_deadline()
        self.setTimeout(None)
        transport = self.transport
        assert transport is not None  # refusals come from receiving
        body = reason + b"\r\n"
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, _REASONS.get(status, b"Refused"), len(body), body)
        )
        self._close()
        log.info(
            "refused a request from {peer}: {status} {reason}",
            peer=str(transport.getPeer()),
            status=status,
            reason=reason.decode("ascii", "replace"),
        )

    def _close(self) -> None:
        """
        Close the connection once what we wrote is sent, without waiting on the peer.

        Over TLS, Twisted's layer sends close_notify and then waits for the
        peer's before it closes the socket: a peer that never sends one (a
        slow client, an attacker) would keep its connection, and its place
        under the connection caps. Closing the socket outright while the peer
        is still sending (a 100 KB header) would reset the connection and
        could destroy our answer before the peer reads it. So, as HTTP
        servers do, the TCP connection is half-closed after our answer (and
        close_notify: TLS does not require waiting for the peer's), what
        still comes is read and dropped, and the socket is aborted
        C{linger} seconds later if the peer has not closed its side by then.
        """
        tls = ISSLTransport.providedBy(self.transport)
        if tls:
            self.loseConnection()  # our close_notify
        below = getattr(self.transport, "transport", None) if tls else self.transport
        if ITCPTransport.providedBy(below):
            ITCPTransport(below).loseWriteConnection()
        elif not tls:  # a UNIX socket (the admin API): close it plainly
            self.loseConnection()
        self._aborting = self.callLater(self.linger, self._abort)

    def _abort(self) -> None:
        self._aborting = None
        if ITCPTransport.providedBy(self.transport):
            ITCPTransport(self.transport).abortConnection()

    def _start_deadline(self, seconds: float, part: str) -> None:
        self._stop_deadline()
        self._deadline = self.callLater(seconds, lambda: self._too_slow(seconds, part))

    def _stop_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _too_slow(self, seconds: float, part: str) -> None:
        self._deadline = None
        if part == "head" and not self._request_started:
            # nothing of a request came (an idle new connection, or a TLS
            # handshake that never finished): nothing to answer
            log.info(
                "closing a connection from {peer}: no request within {seconds:.0f} s",
                peer=str(self.transport.getPeer()) if self.transport is not None else "?",
                seconds=seconds,
            )
            self.refused = True
            self.setTimeout(None)
            self._close()
            return
        self.refuse(408, f"request {part} not received within {seconds:.0f} s".encode("ascii"))


class MdmdRequest(Request):
    """
    A request whose body may not exceed the site's C{max_body}.

    An oversized body is refused with 413 as soon as its declared length (or
    the bytes received so far, for chunked uploads) exceeds the cap; nothing
    more of it is buffered and the connection is closed.

    No body is ever decoded into C{request.args} (twisted.web decodes form
    bodies, url-encoded or multipart, on every endpoint, before any
    authentication: a 1 MiB body of many parts costs a stranger nothing and
    us most of a second). Only the query string fills C{args}; the one page
    that takes a form reads its own body (L{mdmd.enroll.resource}).
    """

    #: Set by resources once they know which device is talking (for the access log).
    device_id: str | None = None
    #: The user an enrollment request speaks for (claimed, then authenticated).
    enroll_user: str | None = None
    #: An enrollment SOAP exchange's trace id, and the MessageID its answer relates to.
    activity_id: str | None = None
    relates_to: str = ""
    #: The body: twisted.web has buffered all of it before a resource renders
    #: the request (it is None only before the headers are read).
    content: BinaryIO

    def __init__(self, channel: http.HTTPChannel, *args: Any, **kwargs: Any) -> None:
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(channel, *args, **kwargs)
        site = getattr(channel, "site", None)
        self._max_body: int = getattr(site, "max_body", 1 << 20)
        clock = getattr(site, "clock", None)
        self.started: float = clock.seconds() if clock is not None else 0.0
        self._received = 0
        self._refused = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self._max_body:
            self._refuse_oversized(length)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self._max_body:
            self._refuse_oversized(self._received)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:
            return
        super().requestReceived(command, path, version)

    def _refuse_oversized(self, size: int) -> None:
        self._refused = True
        channel = self.channel
        if isinstance(channel, MdmdChannel):
            channel.refuse(413, b"request body too large")
        else:  # another site's channel: answer and close it the plain way
            transport = channel.transport
            assert transport is not None  # the channel is connected: it is receiving this body
            transport.write(
                b"HTTP/1.1 413 Request Entity Too Large\r\n"
                b"Content-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: 24\r\nConnection: close\r\n\r\n"
                b"request body too large\r\n"
            )
            transport.loseConnection()
        log.info(
            "refused {size} byte request body from {peer} (limit {limit})",
            size=size,
            peer=str(self.getClientAddress()),
            limit=self._max_body,
        )


def mdmd_request(request: IRequest) -> MdmdRequest:
    """
    C{request} as the L{MdmdRequest} every L{MdmdSite} makes, with its typed attributes.

    @raise TypeError: when a resource of ours is served by another kind of site.
    """
    if not isinstance(request, MdmdRequest):
        raise TypeError(f"{request!r} is not an MdmdRequest: serve mdmd resources with an MdmdSite")
    return request


def respond(request: Request, body: bytes, content_type: bytes, code: int = 200) -> None:
    """
    Finish an asynchronous response with an explicit Content-Length.

    Twisted chunks any HTTP/1.1 response written without one, and Windows'
    enrollment and DM clients do not accept chunked responses.
    """
    if request.finished or request._disconnected:
        return
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", content_type)
    request.setHeader(b"Content-Length", b"%d" % len(body))
    if request.method != b"HEAD":
        request.write(body)
    request.finish()


class MdmdSite(Site):
    """
    The Site for mdmd's HTTPS listener (and, with another root, the admin API).

    HTTP/1.1 only, on L{MdmdChannel}s: C{timeout} is the idle timeout
    between requests, C{header_timeout} and C{body_timeout} bound how long a
    request may take to arrive.
    """

    requestFactory = MdmdRequest
    protocol = MdmdChannel  # type: ignore[assignment]  # a channel class, where HTTPFactory has a factory function
    displayTracebacks = False
    noisy = False

    def __init__(
        self,
        resource: Resource,
        clock: IReactorTime,
        max_body: int = 1 << 20,
        timeout: float = 60,
        name: str = "https",
        header_timeout: float = 20,
        body_timeout: float = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(resource, timeout=timeout, reactor=clock, **kwargs)
        self.clock = clock
        self.max_body = max_body
        self.name = name
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout

    def acceptableProtocols(self) -> list[bytes]:
        """
        HTTP/1.1 only, what L{MdmdChannel} speaks (were h2 installed, Twisted would offer it).
        """
        return [b"http/1.1"]

    def log(self, request: http.Request) -> None:
        duration = self.clock.seconds() - getattr(request, "started", self.clock.seconds())
        device_id = request.device_id if isinstance(request, MdmdRequest) else None
        log.info(
            "{listener} {method} {path} {status} {bytes}B {duration_ms:.1f}ms{device}",
            listener=self.name,
            method=request.method.decode("ascii", "replace"),
            path=request.uri.decode("ascii", "replace"),
            status=request.code,
            bytes=request.sentLength,
            duration_ms=duration * 1000,
            device=f" device={device_id}" if device_id else "",
            device_id=device_id,
            peer=str(request.getClientAddress()),
        )


@dataclass(frozen=True)
class Response:
    """
    What an L{AsyncResource} handler returns: the whole body, sent with its length.
    """

    body: bytes
    content_type: bytes = b"text/plain; charset=utf-8"
    code: int = 200
    headers: tuple[tuple[bytes, bytes], ...] = ()


class AsyncResource(Resource):
    """
    A leaf resource whose C{handle_<METHOD>} coroutines return a L{Response}.

    It is the one place that turns errors into answers (L{answer_error}): an
    L{AnsweredError} is answered with the HTTP status and Retry-After its class
    declares (a peer's mistake logged at info, a condition of ours such as
    L{Busy} as a warning without traceback); anything else is logged with its
    traceback and answered as L{InternalError}, a bare 500. Subclasses choose
    only how an error's body is written (L{error_body}) and how the line that
    logs it reads, never which status an error gets. HEAD is answered by
    C{handle_GET} without the body.
    """

    isLeaf = True

    #: An envelope protocol (SOAP) answers every error with this HTTP status
    #: and carries the error's meaning in the body; an error that asks to be
    #: retried (C{retry_after}) keeps its own status. None: each error's own.
    fault_status: ClassVar[int | None] = None

    def render(self, request: Request) -> int | bytes:
        request = mdmd_request(request)
        method = request.method.decode("ascii", "replace")
        handler = getattr(self, f"handle_{'GET' if method == 'HEAD' else method}", None)
        if handler is None:
            allowed = sorted(
                name[len("handle_") :] for name in dir(self) if name.startswith("handle_")
            )
            request.setHeader(b"Allow", ", ".join(allowed).encode("ascii"))
            request.setResponseCode(405)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"method not allowed\n"
        d = Deferred.fromCoroutine(handler(request))
        d.addErrback(self._failed, request)
        d.addCallback(self._send, request)
        d.addErrback(lambda f: log.failure("while sending a response", f))
        return NOT_DONE_YET

    def _failed(self, failure: Failure, request: MdmdRequest) -> Response:
        error = failure.value
        if isinstance(error, AnsweredError):
            level = LogLevel.info if isinstance(error, PeerError) else LogLevel.warn
            self.log_answered(request, error, level)
            return self.answer_error(request, error)
        self.log_failed(request, failure)
        return self.answer_error(request, InternalError())

    def _send(self, response: Response, request: MdmdRequest) -> None:
        for name, value in response.headers:
            request.setHeader(name, value)
        respond(request, response.body, response.content_type, response.code)

    def answer_error(self, request: MdmdRequest, error: AnsweredError) -> Response:
        """
        The response to C{error}: its declared status and Retry-After, the body in our protocol.
        """
        status = self._status(error)
        headers: tuple[tuple[bytes, bytes], ...] = ()
        if error.retry_after is not None:
            headers = ((b"Retry-After", b"%d" % error.retry_after),)
        body, content_type = self.error_body(request, error, answer_text(error))
        return Response(body, content_type=content_type, code=status, headers=headers)

    def _status(self, error: AnsweredError) -> int:
        if self.fault_status is not None and error.retry_after is None:
            return self.fault_status
        return error.http_status

    def error_body(
        self, request: MdmdRequest, error: AnsweredError, message: str
    ) -> tuple[bytes, bytes]:
        """
        The body and content type that tell the peer C{message}; subclasses speak their protocol.
        """
        return f"{message}\n".encode("utf-8"), b"text/plain; charset=utf-8"

    def log_answered(self, request: MdmdRequest, error: AnsweredError, level: LogLevel) -> None:
        """
        One line, without traceback, for an error answered as declared.
        """
        device_id = request.device_id
        log.emit(
            level,
            "{method} {path} answered {status} ({error}): {reason}{device}",
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("ascii", "replace"),
            status=self._status(error),
            error=type(error).__name__,
            reason=str(error),
            device=f" device={device_id}" if device_id else "",
            device_id=device_id,
            peer=str(request.getClientAddress()),
        )

    def log_failed(self, request: MdmdRequest, failure: Failure) -> None:
        """
        Our own failure, with its traceback (the peer gets none of it).
        """
        log.failure(
            "{method} {path} failed",
            failure,
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("ascii", "replace"),
            device_id=request.device_id,
        )
