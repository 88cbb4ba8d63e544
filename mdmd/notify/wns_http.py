"""
HTTPS for the WNS transport: one POST, one answer, on Twisted's own client.

L{AgentClient} keeps a pool of persistent connections (one host, WNS, takes
nearly every request, so reusing connections saves a TLS handshake per
notification), verifies the server against the system's trust roots (or
the ones given, in tests and for private endpoints), gives each request a
time-out, and can go through an HTTP proxy with CONNECT (L{TunnelEndpoint}:
Twisted's C{ProxyAgent} only forwards plain HTTP). Everything it answers is
an L{HttpAnswer} (header names lower-cased) or an L{HttpFailed}.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol as TypingProtocol
from urllib.parse import urlsplit

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, ResponseFailed, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IAgentEndpointFactory, IBodyProducer, IPolicyForHTTPS
from zope.interface import implementer

__all__ = ["AgentClient", "HttpAnswer", "HttpClient", "HttpFailed", "TunnelEndpoint", "BytesProducer"]


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    #: lower-case names, the first value of each
    headers: Mapping[str, str]
    body: bytes


class HttpFailed(Exception):
    """
    No answer: the connection, TLS or the proxy failed, or the time ran out.
    """


class HttpClient(TypingProtocol):
    """
    What the WNS transport needs of HTTPS.
    """

    def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Deferred[HttpAnswer]: ...


@implementer(IBodyProducer)
class BytesProducer:
    """
    A request body known in full (so it goes with a Content-Length).
    """

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class AgentClient:
    """
    POSTs over C{twisted.web.client.Agent}.

    @param tls: how servers are verified: a C{BrowserLikePolicyForHTTPS}
        (by default, with the platform's trust roots).
    @param proxy: C{http://HOST:PORT} of a proxy that takes CONNECT, or "".
    @param connections: persistent connections kept per host (the most
        requests the transport has in flight at once).
    """

    def __init__(
        self,
        reactor: Any,
        *,
        tls: IPolicyForHTTPS | None = None,
        proxy: str = "",
        connections: int = 10,
        timeout: float = 30.0,
        persistent: bool = True,
    ) -> None:
        self._reactor = reactor
        self._timeout = timeout
        self.pool = HTTPConnectionPool(reactor, persistent=persistent)
        self.pool.maxPersistentPerHost = connections
        policy = tls if tls is not None else BrowserLikePolicyForHTTPS()
        proxy_endpoint = None
        if proxy:
            parts = urlsplit(proxy)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"expected an http://HOST:PORT proxy, got {proxy!r}")
            proxy_endpoint = HostnameEndpoint(reactor, parts.hostname, parts.port or 8080, timeout=timeout)
        self.agent: IAgent = Agent.usingEndpointFactory(
            reactor, _Endpoints(reactor, policy, timeout, proxy_endpoint), pool=self.pool
        )

    def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Deferred[HttpAnswer]:
        """
        POST C{body}; the answer, read whole, within the time-out.

        @raise HttpFailed: (in the Deferred) if no answer came, in time or at
            all. Cancelling the Deferred cancels the request: it then fails
            with CancelledError, however the request ended.
        """
        exchange = Deferred.fromCoroutine(self._exchange(url, headers, body))
        ended = {"timed out": False, "cancelled": False}

        def time_out() -> None:
            ended["timed out"] = True
            exchange.cancel()

        def cancel(answer: Deferred[HttpAnswer]) -> None:
            ended["cancelled"] = True
            exchange.cancel()

        timer = self._reactor.callLater(self._timeout, time_out)
        answer: Deferred[HttpAnswer] = Deferred(cancel)

        def settle(result: HttpAnswer | Failure) -> None:
            if timer.active():
                timer.cancel()
            if not isinstance(result, Failure):
                answer.callback(result)
            elif ended["cancelled"]:
                answer.errback(CancelledError())
            elif ended["timed out"]:
                answer.errback(HttpFailed(f"{urlsplit(url).netloc}: no answer within {self._timeout:g} s"))
            elif result.check(HttpFailed):
                answer.errback(result)
            else:
                answer.errback(HttpFailed(f"{urlsplit(url).netloc}: {_reason(result)}"))

        exchange.addBoth(settle)
        return answer

    async def _exchange(self, url: str, headers: Mapping[str, str], body: bytes) -> HttpAnswer:
        response = await self.agent.request(
            b"POST",
            url.encode("ascii"),
            Headers({k.encode("ascii"): [v.encode("latin-1")] for k, v in headers.items()}),
            BytesProducer(body),
        )
        names = {
            name.decode("latin-1").lower(): values[0].decode("latin-1")
            for name, values in response.headers.getAllRawHeaders()
            if values
        }
        return HttpAnswer(response.code, names, await readBody(response))

    def close(self) -> Deferred[None]:
        """
        Close the connections kept open.
        """
        return self.pool.closeCachedConnections()


def _reason(failure: Failure) -> str:
    """
    What went wrong, in words (a failed response says why each part failed).
    """
    error = failure.value
    if isinstance(error, ResponseFailed) and error.reasons:
        return "; ".join(r.getErrorMessage() or type(r.value).__name__ for r in error.reasons)
    return failure.getErrorMessage() or type(error).__name__


# -- HTTPS through a proxy ------------------------------------------------------------------------


@implementer(IAgentEndpointFactory)
class _Endpoints:
    """
    The endpoint of each HTTPS host, made once and reused: the Agent asks
    for one per request, kept-alive or not, and making it (a TLS connection
    creator: cipher selection; the host name's IDNA form) costs more than
    sending a notification over an open connection. Directly, or through a
    CONNECT tunnel when there is a proxy.
    """

    SIZE = 64

    def __init__(
        self, reactor: Any, policy: IPolicyForHTTPS, timeout: float, proxy: IStreamClientEndpoint | None
    ) -> None:
        self._reactor = reactor
        self._policy = policy
        self._timeout = timeout
        self._proxy = proxy
        self._endpoints: OrderedDict[tuple[bytes, int], IStreamClientEndpoint] = OrderedDict()

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        if uri.scheme != b"https":
            raise ValueError(f"only HTTPS: {uri.toBytes()!r}")
        key = (uri.host, uri.port)
        endpoint = self._endpoints.get(key)
        if endpoint is not None:
            self._endpoints.move_to_end(key)
            return endpoint
        creator = self._policy.creatorForNetloc(uri.host, uri.port)
        if self._proxy is not None:
            endpoint = TunnelEndpoint(self._proxy, uri.host, uri.port, creator)
        else:
            host = uri.host.decode("ascii")
            endpoint = wrapClientTLS(creator, HostnameEndpoint(self._reactor, host, uri.port, timeout=self._timeout))
        self._endpoints[key] = endpoint
        if len(self._endpoints) > self.SIZE:
            self._endpoints.popitem(last=False)
        return endpoint


@implementer(IStreamClientEndpoint)
class TunnelEndpoint:
    """
    A TLS connection to C{host}:C{port} inside a CONNECT tunnel through the
    proxy that C{proxy} reaches; the server is verified by C{creator} (an
    C{IOpenSSLClientConnectionCreator} for C{host}) as if connected directly.
    """

    def __init__(self, proxy: IStreamClientEndpoint, host: bytes, port: int, creator: Any) -> None:
        self._proxy = proxy
        self._host = host
        self._port = port
        self._creator = creator

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        tunnelled: Deferred[IProtocol] = Deferred()
        creator = self._creator
        factory = Factory.forProtocol(lambda: _Tunnel(self._host, self._port, creator, protocolFactory, tunnelled))

        def failed(failure: Failure) -> None:
            if not tunnelled.called:
                tunnelled.errback(failure)

        self._proxy.connect(factory).addErrback(failed)
        return tunnelled


class _Tunnel(Protocol):
    """
    Asks the proxy for a tunnel; once it is up, hands the connection to the
    protocol it was made for, with TLS started under it.
    """

    MAX_HEADER = 16384

    def __init__(
        self, host: bytes, port: int, creator: Any, factory: IProtocolFactory, tunnelled: Deferred[IProtocol]
    ) -> None:
        self._target = b"%s:%d" % (host, port)
        self._creator = creator
        self._factory = factory
        self._tunnelled = tunnelled
        self._buffer = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (self._target, self._target))

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        head, found, rest = self._buffer.partition(b"\r\n\r\n")
        if not found:
            if len(self._buffer) > self.MAX_HEADER:
                self._fail("the proxy's answer to CONNECT is too long")
            return
        line = head.split(b"\r\n", 1)[0]
        status = line.split(b" ", 2)
        if len(status) < 2 or not status[1].startswith(b"2"):
            self._fail(f"the proxy refused CONNECT {self._target.decode()}: {line.decode('latin-1')}")
            return
        # a TCP transport: its protocol can be replaced, and it can start TLS
        transport: Any = self.transport
        protocol = self._factory.buildProtocol(transport.getPeer())
        if protocol is None:
            self._fail("no protocol for the tunnel")
            return
        # TLS wraps whatever protocol the transport has when it starts (the
        # real one), and leaves connecting it to us; its writes then go
        # through TLS, since the transport knows it has started.
        transport.protocol = protocol
        transport.startTLS(self._creator)
        protocol.makeConnection(transport)
        if rest:
            transport.protocol.dataReceived(rest)
        self._tunnelled.callback(protocol)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        if not self._tunnelled.called:
            self._tunnelled.errback(HttpFailed(f"the proxy closed the connection: {reason.getErrorMessage()}"))

    def _fail(self, reason: str) -> None:
        if not self._tunnelled.called:
            self._tunnelled.errback(HttpFailed(reason))
        assert self.transport is not None
        self.transport.loseConnection()

