"""
Listening sockets as services that bind when started and fail loudly if they can't.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from twisted.application.service import MultiService, Service
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IOpenSSLContextFactory,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorCore,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = [
    "CannotStart",
    "ListeningService",
    "CannotListen",
    "ConnectionGuard",
    "ConnectionLimits",
    "GuardedTLSEndpoint",
    "MdmdService",
    "ListeningFile",
    "StateDirectoryLock",
    "StateDirectoryInUse",
    "clear_stale_socket",
    "peer_source",
]

log = Logger()


def peer_source(address: object) -> str:
    """
    The source a peer's connections (and password guesses) are counted
    under: its IPv4 address, or the /64 of its IPv6 address (one site's
    network: a single host can use any address in it); an IPv4-mapped IPv6
    address is its IPv4 address. "" for other addresses (UNIX sockets).
    """
    if not isinstance(address, (IPv4Address, IPv6Address)):
        return ""
    host = address.host.partition("%")[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True)
class ConnectionLimits:
    """
    Connections a listener holds at most: in all, and from one source (0: no limit per source).
    """

    total: int = 1000
    per_source: int = 100


class ConnectionGuard(WrappingFactory):
    """
    Refuse a connection beyond C{limits.total} at once, or beyond
    C{limits.per_source} from one source (L{peer_source}).

    A refused connection is closed as soon as it is accepted (C{buildProtocol}
    returns None), before any TLS handshake: refusing costs an accept and a
    close. Each time a source (or the listener) reaches its cap, one line is
    logged; it is logged again only after it has dropped below.

    Twisted's C{LimitConnectionsByPeer} is the same idea for peers, but it
    reads the peer's address as a tuple (an C{IPv4Address} is not one), and
    it has no total.
    """

    protocol = ProtocolWrapper

    def __init__(self, wrappedFactory: IProtocolFactory, limits: ConnectionLimits) -> None:
        super().__init__(wrappedFactory)
        self.limits = limits
        #: open connections per source
        self.sources: dict[str, int] = {}
        #: connections refused so far
        self.refused = 0
        self._capped: set[str] = set()
        self._full = False

    def buildProtocol(self, addr: IAddress | None) -> ProtocolWrapper | None:  # type: ignore[override]  # None refuses
        source = peer_source(addr)
        if len(self.protocols) >= self.limits.total:
            self.refused += 1
            if not self._full:
                self._full = True
                log.warn(
                    "{total} connections open: refusing more until some close (the last from {source})",
                    total=len(self.protocols),
                    source=source,
                )
            return None
        per_source = self.limits.per_source
        if per_source and self.sources.get(source, 0) >= per_source:
            self.refused += 1
            if source not in self._capped:
                self._capped.add(source)
                log.warn(
                    "{source} holds {count} connections, the most one source may: refusing more",
                    source=source,
                    count=self.sources[source],
                )
            return None
        return super().buildProtocol(addr)

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        super().registerProtocol(p)
        source = peer_source(p.getPeer())
        self.sources[source] = self.sources.get(source, 0) + 1

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        super().unregisterProtocol(p)
        source = peer_source(p.getPeer())
        count = self.sources.get(source, 0) - 1
        if count > 0:
            self.sources[source] = count
        else:
            self.sources.pop(source, None)
        if count < self.limits.per_source:
            self._capped.discard(source)
        if len(self.protocols) < self.limits.total:
            self._full = False


@implementer(IStreamServerEndpoint)
class GuardedTLSEndpoint:
    """
    TLS over a TCP server endpoint, behind a L{ConnectionGuard}: connections
    beyond the limits are closed before their TLS handshake (what
    C{SSL4ServerEndpoint} does, with the guard outside the TLS layer).
    """

    def __init__(
        self,
        tcp: IStreamServerEndpoint,
        context: IOpenSSLServerConnectionCreator | IOpenSSLContextFactory,
        limits: ConnectionLimits,
    ) -> None:
        self._tcp = tcp
        self._context = context
        self.limits = limits
        #: the guard of the last listen (for tests and status)
        self.guard: ConnectionGuard | None = None

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        self.guard = ConnectionGuard(
            TLSMemoryBIOFactory(self._context, False, protocolFactory), self.limits
        )
        return self._tcp.listen(self.guard)


class CannotStart(Exception):
    """
    The daemon cannot start, for a reason its message says in one line (an
    operator's to fix, not our bug: no traceback).
    """


class CannotListen(CannotStart):
    """
    A listener could not bind its address; the daemon does not start.
    """


class StateDirectoryInUse(CannotStart):
    """
    Another daemon runs on the same state directory.
    """


class ListeningService(Service):
    """
    Bind C{factory} to the endpoint C{make_endpoint()} returns, on start.

    The endpoint is made at start, not at construction, because it may need
    material other services produce when they start (the TLS key). TCP, TLS
    and UNIX endpoints bind synchronously, so a failure raises from
    C{startService} and stops the daemon before it runs.
    """

    name: str  # always named, by the constructor

    def __init__(
        self,
        name: str,
        make_endpoint: Callable[[], IStreamServerEndpoint],
        factory: IProtocolFactory,
        description: str,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        self.setName(name)
        self._make_endpoint = make_endpoint
        self._factory = factory
        self.description = description
        self._prepare = prepare
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        if self._prepare is not None:
            self._prepare()
        outcome: list[IListeningPort | Failure] = []
        self._make_endpoint().listen(self._factory).addBoth(outcome.append)
        if not outcome:
            raise CannotListen(f"{self.name}: {self.description} did not bind synchronously")
        result = outcome[0]
        if isinstance(result, Failure):
            error = result.value
            socket_error = getattr(error, "socketError", None)  # CannotListenError's cause
            reason = getattr(socket_error, "strerror", None) or result.getErrorMessage()
            if getattr(socket_error, "errno", None) == errno.EADDRINUSE:
                reason = f"{reason.lower()} (by another program, or another mdmd)"
            raise CannotListen(f"cannot listen on {self.name} {self.description}: {reason}")
        self.port = result
        log.info("{listener} listening on {address}", listener=self.name, address=self.address)
        super().startService()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None

    @property
    def address(self) -> str:
        """
        The bound address: C{tcp:HOST:PORT} or C{unix:PATH}.
        """
        if self.port is None:
            return self.description
        host = self.port.getHost()
        if isinstance(host, (IPv4Address, IPv6Address)):
            name = f"[{host.host}]" if ":" in host.host else host.host
            return f"tcp:{name}:{host.port}"
        if isinstance(host, UNIXAddress) and host.name is not None:
            return f"unix:{host.name.decode()}"
        return self.description


def clear_stale_socket(path: str) -> None:
    """
    Remove a UNIX socket left behind by a daemon that is gone; refuse to
    steal one that still answers.
    """
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
            os.unlink(path)
            return
        raise
    else:
        raise CannotListen(f"{path} is in use by another process")
    finally:
        probe.close()


class StateDirectoryLock:
    """
    An exclusive lock on C{STATE_DIR/mdmd.lock}, held while the daemon runs
    (the kernel releases it when the process ends, however it ends), so that
    a second daemon on the same directory stops at once, saying which
    process has it.
    """

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, "mdmd.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """
        @raise StateDirectoryInUse: naming the directory and the other daemon's pid.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateDirectoryInUse(f"another mdmd is running on {_shown(self.state_dir)}/ (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _shown(path: str) -> str:
    """
    C{path} as an operator wrote it: relative to the working directory when below it.
    """
    relative = os.path.relpath(path)
    return path if relative == "." or relative.startswith("..") else relative


class ListeningFile:
    """
    C{listening.json}: the addresses the running daemon bound, for mdmctl and tests.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, addresses: dict[str, str]) -> None:
        temporary = f"{self.path}.{os.getpid()}.tmp"
        with open(temporary, "w") as f:
            json.dump({"pid": os.getpid(), **addresses}, f, sort_keys=True)
        os.replace(temporary, self.path)

    def remove(self) -> None:
        try:
            with open(self.path) as f:
                if json.load(f).get("pid") != os.getpid():
                    return
            os.unlink(self.path)
        except (OSError, ValueError):
            pass


class MdmdService(MultiService):
    """
    The root of the service tree: creates the state directory, starts the
    children in order (stopping those already started if one fails), then,
    once the reactor runs (and handles SIGTERM), records the bound addresses.
    It stops the children in reverse order, one at a time.
    """

    def __init__(self, state_dir: str, reactor: IReactorCore) -> None:
        super().__init__()
        self.state_dir = state_dir
        self._reactor = reactor
        self.listening_file = ListeningFile(os.path.join(state_dir, "listening.json"))
        self.lock = StateDirectoryLock(state_dir)

    def startService(self) -> None:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self.lock.acquire()
        Service.startService(self)
        started: list[Service] = []
        try:
            for child in self:
                child.startService()
                started.append(child)
        except BaseException:
            for child in reversed(started):
                try:
                    child.stopService()
                except Exception:
                    log.failure("while stopping {name} after a failed start", name=child.name)
            self.running = 0
            self.lock.release()
            raise
        self._reactor.callWhenRunning(self._announce)

    def _announce(self) -> None:
        if self.running:
            self.listening_file.write(self.addresses())
            log.info("mdmd ready: {addresses}", addresses=" ".join(
                f"{name}={address}" for name, address in sorted(self.addresses().items())))

    def stopService(self) -> Deferred[None]:
        """
        Stop the children one after the other, in reverse order, each once the
        one started after it has finished stopping: the SMPP client drains
        and the notifier records what it learnt while the store is still open.
        """
        self.listening_file.remove()
        Service.stopService(self)
        return Deferred.fromCoroutine(self._stop_children())

    async def _stop_children(self) -> None:
        for child in reversed(list(self)):
            try:
                await maybeDeferred(child.stopService)
            except Exception:
                log.failure("while stopping {name}", name=child.name)
        self.lock.release()

    def addresses(self) -> dict[str, str]:
        return {
            child.name: child.address for child in self if isinstance(child, ListeningService)
        }
