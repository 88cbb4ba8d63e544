"""
A CONNECT proxy on loopback, for the tests of the WNS transport's proxy support.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import ClientFactory, Protocol, ServerFactory
from twisted.python.failure import Failure


class _Connected(Protocol):
    @property
    def out(self) -> ITransport:
        assert self.transport is not None
        return self.transport


class _Upstream(_Connected):
    def __init__(self, downstream: _ProxyProtocol) -> None:
        self.downstream = downstream

    def connectionMade(self) -> None:
        self.downstream.upstream_ready(self)

    def dataReceived(self, data: bytes) -> None:
        self.downstream.out.write(data)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        self.downstream.out.loseConnection()


class _ProxyProtocol(_Connected):
    def __init__(self, proxy: ConnectProxy) -> None:
        self.proxy = proxy
        self.buffer = b""
        self.upstream: _Upstream | None = None

    def dataReceived(self, data: bytes) -> None:
        if self.upstream is not None:
            self.upstream.out.write(data)
            return
        self.buffer += data
        head, found, rest = self.buffer.partition(b"\r\n\r\n")
        if not found:
            return
        method, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
        self.proxy.requests.append(target.decode())
        if method != b"CONNECT" or self.proxy.refuse:
            self.out.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            self.out.loseConnection()
            return
        host, _, port = target.decode().rpartition(":")
        self.buffer = rest
        factory = ClientFactory.forProtocol(lambda: _Upstream(self))
        self.proxy.reactor.connectTCP(host, int(port), factory)

    def upstream_ready(self, upstream: _Upstream) -> None:
        self.upstream = upstream
        self.out.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if self.buffer:
            upstream.out.write(self.buffer)
            self.buffer = b""

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        if self.upstream is not None:
            self.upstream.out.loseConnection()


class ConnectProxy:
    """
    Relays CONNECT tunnels; C{requests} lists the targets asked for; with
    C{refuse}, answers 403.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.requests: list[str] = []
        self.refuse = False
        self.port = reactor.listenTCP(0, ServerFactory.forProtocol(lambda: _ProxyProtocol(self)), interface="127.0.0.1")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}"
