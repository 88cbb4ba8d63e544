"""
A small telnet client for tests of the manhole, on Twisted's own telnet
implementation (RFC 854 option negotiation by the Q method).

    client = await TelnetClient.connect(reactor, UNIXClientEndpoint(reactor, path))
    await client.expect(b"Username: ")
    client.send_line(b"alice")
"""

from __future__ import annotations

import re
from typing import Any

from twisted.conch.telnet import TelnetProtocol, TelnetTransport
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

__all__ = ["TelnetClient"]

#: Terminal control sequences the manhole's line editor writes.
_ESCAPES = re.compile(rb"\x1b(\[[0-9;?]*[A-Za-z]|[()][A-Za-z0-9]|[A-Za-z=>])")


class TelnetClient(TelnetProtocol):
    """
    Agrees to every option the server proposes, collects what it receives
    (terminal escapes removed), and waits for expected text.
    """

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[None] = Deferred()
        self._waiting: list[tuple[bytes, Deferred[bytes]]] = []

    @classmethod
    async def connect(cls, endpoint: IStreamClientEndpoint) -> TelnetClient:
        transport = await endpoint.connect(Factory.forProtocol(lambda: TelnetTransport(cls)))
        assert isinstance(transport, TelnetTransport)
        client = transport.protocol
        assert isinstance(client, cls)
        return client

    def enableLocal(self, option: bytes) -> bool:
        return True

    def enableRemote(self, option: bytes) -> bool:
        return True

    def dataReceived(self, data: bytes) -> None:
        self.received += _ESCAPES.sub(b"", data)
        for wanted, d in list(self._waiting):
            if wanted in self.received:
                self._waiting.remove((wanted, d))
                d.callback(self.received)

    def connectionLost(self, reason: Failure | None = None) -> None:
        waiting, self._waiting = self._waiting, []
        for wanted, d in waiting:
            d.errback(ConnectionError(f"closed before {wanted!r} arrived; got {self.received!r}"))
        self.closed.callback(None)

    def expect(self, wanted: bytes, clock: IReactorTime | None = None, timeout: float = 30.0) -> Deferred[bytes]:
        """
        Fire with everything received so far once it contains C{wanted}.
        """
        d: Deferred[bytes] = Deferred()
        if wanted in self.received:
            d.callback(self.received)
        else:
            self._waiting.append((wanted, d))
            if clock is not None:
                d.addTimeout(timeout, clock)
        return d

    def send_line(self, text: bytes) -> None:
        """
        A login answer: the line and CR LF (the telnet layer turns LF into CR LF).
        """
        assert self.transport is not None, "not connected"
        self.transport.write(text + b"\n")

    def type_line(self, text: bytes) -> None:
        """
        A line typed into the shell: the keys, then Enter (CR NUL).
        """
        assert self.transport is not None, "not connected"
        self.transport.write(text + b"\r\0")

    def clear(self) -> None:
        self.received = b""

    def close(self) -> Any:
        if self.transport is not None:
            self.transport.loseConnection()
        return self.closed
