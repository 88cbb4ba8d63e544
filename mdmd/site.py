"""
The HTTPS front door: a twisted.web Site whose requests have a bounded body,
whose responses always carry Content-Length, and which logs one line per
request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from mdmd.errors import AnsweredError, InternalError, PeerError, answer_text

__all__ = ["MdmdRequest", "mdmd_request", "MdmdSite", "respond", "Response", "AsyncResource"]

log = Logger()

#: Bodies twisted.web decodes into request.args.
_FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")


class MdmdRequest(Request):
    """
    A request whose body may not exceed the site's C{max_body}.

    An oversized body is refused with 413 as soon as its declared length (or
    the bytes received so far, for chunked uploads) exceeds the cap; nothing
    more of it is buffered and the connection is closed.
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
        # Twisted parses every POST's Content-Type with the email package (a
        # measurable share of a SOAP or SyncML request's cost) only to find
        # out whether it is a form; look at the prefix instead.
        content_type = self.requestHeaders.getRawHeaders(b"content-type", [b""])[0]
        if not content_type.lstrip().lower().startswith(_FORM_TYPES):
            self._parsePOSTFormSubmission = False
        super().requestReceived(command, path, version)

    def _refuse_oversized(self, size: int) -> None:
        self._refused = True
        transport = self.channel.transport
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
    """

    requestFactory = MdmdRequest
    displayTracebacks = False
    noisy = False

    def __init__(
        self,
        resource: Resource,
        clock: IReactorTime,
        max_body: int = 1 << 20,
        timeout: float = 60,
        name: str = "https",
        **kwargs: Any,
    ) -> None:
        super().__init__(resource, timeout=timeout, **kwargs)
        self.clock = clock
        self.max_body = max_body
        self.name = name

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
