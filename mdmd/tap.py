"""
C{twistd mdmd}: command-line options and the service tree.

This is the only module that touches the global reactor. L{Options} loads,
validates and normalises the whole configuration into L{Settings} before
anything starts; L{build} only wires objects together from those settings;
nothing listens or writes until the tree is started.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.application.internet import backoffPolicy
from twisted.application.service import IService
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, UNIXServerEndpoint
from twisted.internet.interfaces import (
    IConnector,
    IDelayedCall,
    IListeningPort,
    IOpenSSLContextFactory,
    IReactorCore,
    IReactorSSL,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
    IReactorUNIX,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import ClientFactory, Factory, ServerFactory
from twisted.internet.ssl import Certificate, ClientContextFactory, trustRootFromCertificates
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.threadpool import ThreadPool
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.resource import Resource
from zc.lockfile import LockError
from zope.interface import implementer

from mdmd.admin.api import MAX_BODY, AdminAPI, AdminToken
from mdmd.config import ConfigErrors, ListenAddress
from mdmd.dm.resource import ManagementResource
from mdmd.dm.sweeper import DMService
from mdmd.enroll.resource import enrollment_resource
from mdmd.enroll.operations import EnrollmentService
from mdmd.enroll.users import StoreUserChecker
from mdmd.listeners import (
    CannotListen,
    CannotStart,
    GuardedTLSEndpoint,
    ListeningService,
    MdmdService,
    clear_stale_socket,
)
from mdmd.manhole import ManholePasswordDB, manhole_factory, namespace
from mdmd.notify import channels
from mdmd.notify.smpp_client import ESMEService, smsc_endpoint
from mdmd.notify.notifier import Notifier
from mdmd.notify.provisioning_doc import DMServer
from mdmd.notify.routes import PushRoutes, Route
from mdmd.notify.smpp_transport import SmppTransport
from mdmd.notify.spool import SpoolTransport
from mdmd.notify.transport import IPushTransport
from mdmd.notify.wns import WnsSettings, WnsTransport
from mdmd.notify.wns_http import AgentClient
from mdmd.pki.resource import pki_resource
from mdmd.pki.authority import CAService
from mdmd.settings import Settings, SmscSettings
from mdmd.settings import load as load_settings
from mdmd.site import MdmdSite
from mdmd.migrations import SCHEMA
from mdmd.store.runner import StoreService

__all__ = ["Options", "Reactor", "makeService", "build"]

log = Logger()


@implementer(IReactorCore, IReactorTime, IReactorTCP, IReactorSSL, IReactorUNIX, IReactorThreads)
class Reactor(Protocol):
    """
    What the service tree needs of the reactor: its life cycle, time, TCP,
    TLS and UNIX listening, and threads.

    A Protocol, so that any reactor with these members is accepted by
    L{build}; declared as implementing the interfaces they come from, so that
    it is accepted wherever one of them is expected (the mypy-zope plugin
    checks that the members match the interfaces').
    """

    # IReactorCore
    running: bool

    def resolve(self, name: str, timeout: Sequence[int] = (1, 3, 11, 45)) -> Deferred[str]: ...

    def run(self) -> None: ...

    def stop(self) -> None: ...

    def crash(self) -> None: ...

    def iterate(self, delay: float) -> None: ...

    def fireSystemEvent(self, eventType: str) -> None: ...

    def addSystemEventTrigger(
        self, phase: str, eventType: str, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> Any: ...

    def removeSystemEventTrigger(self, triggerID: Any) -> None: ...

    def callWhenRunning(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> Any | None: ...

    # IReactorTime
    def seconds(self) -> float: ...

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kwargs: object
    ) -> IDelayedCall: ...

    def getDelayedCalls(self) -> Sequence[IDelayedCall]: ...

    # IReactorTCP
    def listenTCP(
        self, port: int, factory: ServerFactory, backlog: int = 50, interface: str = ""
    ) -> IListeningPort: ...

    def connectTCP(
        self,
        host: str,
        port: int,
        factory: ClientFactory[Any],
        timeout: float = 30.0,
        bindAddress: tuple[str, int] | None = None,
    ) -> IConnector: ...

    # IReactorSSL
    def listenSSL(
        self,
        port: int,
        factory: ServerFactory[Any],
        contextFactory: IOpenSSLContextFactory,
        backlog: int = 50,
        interface: str = "",
    ) -> IListeningPort: ...

    def connectSSL(
        self,
        host: str,
        port: int,
        factory: ClientFactory[Any],
        contextFactory: ClientContextFactory,
        timeout: float,
        bindAddress: tuple[str, int] | None,
    ) -> IConnector: ...

    # IReactorUNIX
    def listenUNIX(
        self, address: str, factory: Factory, backlog: int = 50, mode: int = 0o666, wantPID: bool = False
    ) -> IListeningPort: ...

    def connectUNIX(
        self, address: str, factory: ClientFactory, timeout: float = 30, checkPID: bool = False
    ) -> IConnector: ...

    # IReactorThreads
    def getThreadPool(self) -> ThreadPool: ...

    def suggestThreadPoolSize(self, size: int) -> None: ...

    def callInThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None: ...

    def callFromThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None: ...


class Options(usage.Options):
    """
    C{twistd mdmd}'s options: the configuration is loaded, validated (every
    problem reported in one L{usage.UsageError}) and normalised here, once.
    """

    synopsis = "[--config FILE]"
    longdesc = (
        "Run mdmd, the Windows and OMA DM device-management server. Without --config "
        "the development settings are used: state in ./var, HTTPS on 127.0.0.1:8443, "
        "public host name localhost, admin API on ./var/admin.sock."
    )
    optParameters = [
        ["config", "c", None, "INI configuration file (see etc/mdmd.conf for every option)."],
    ]

    settings: Settings
    #: set when the configuration was refused: the usage text is then left out
    _refused = False

    def postOptions(self) -> None:
        try:
            self.settings = load_settings(self["config"])
        except ConfigErrors as e:
            self._refused = True
            raise usage.UsageError(str(e)) from None

    def getUsage(self, width: int | None = None) -> str:
        """
        The options' help; when the configuration file was refused, a pointer
        to it instead, so that twistd prints the problems without pages of
        usage before them.
        """
        if self._refused:
            return f"(fix {self['config'] or 'the configuration'}; 'twistd mdmd --help' shows the options)"
        return super().getUsage(width)


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    # Everything the daemon writes holds secrets or is nobody else's business
    # (the store and its index, lock and temporary files, a log file twistd
    # opens after this, keys): owner only, as the systemd unit's UMask=0077
    # has it, however the daemon is started.
    os.umask(0o077)
    sys.excepthook = _startup_failure_hook(sys.excepthook)
    # The installed reactor provides every interface Reactor combines; its
    # static type names only the ones all reactors share.
    running = cast(Reactor, reactor)
    # Once started, move everything that lives as long as the process (modules,
    # the service tree, keys) out of the garbage collector's way: full
    # collections then scan only what requests create, which halves their pauses.
    running.callWhenRunning(_freeze_startup_objects)
    return build(options.settings, running)


def _startup_failure_hook(previous: Callable[..., Any]) -> Callable[..., Any]:
    """
    What twistd's process does with an exception nothing caught: a start that
    failed for a reason the operator fixes (a busy port, a state directory
    or store another daemon holds) is one critical log line, not a
    traceback; anything else goes to C{previous}.
    """

    def hook(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
        if isinstance(value, CannotStart):
            log.critical("mdmd cannot start: {reason}", reason=str(value))
        elif isinstance(value, LockError):
            log.critical("mdmd cannot start: {reason} (is another mdmd using this store?)", reason=str(value))
        else:
            previous(kind, value, traceback)

    return hook


def _freeze_startup_objects() -> None:
    gc.collect()
    gc.freeze()


@dataclass(frozen=True)
class _LocalListener:
    """
    A listener on a UNIX socket (mode 0600) or a TCP port: the admin API, the manhole.
    """

    reactor: Reactor
    address: ListenAddress

    def endpoint(self) -> IStreamServerEndpoint:
        address = self.address
        if address.kind == "unix":
            return UNIXServerEndpoint(self.reactor, address.path, mode=0o600, wantPID=False)
        endpoint = TCP6ServerEndpoint if ":" in address.host else TCP4ServerEndpoint
        return endpoint(self.reactor, address.port, interface=address.host)

    def prepare(self) -> None:
        if self.address.kind == "unix":
            clear_stale_socket(self.address.path)


def _smsc_service(smsc: SmscSettings, reactor: Reactor) -> ESMEService:
    authorities: list[bytes] = []
    if smsc.tls and smsc.ca_file:
        with open(smsc.ca_file, "rb") as f:
            authorities = [
                c.public_bytes(serialization.Encoding.PEM)
                for c in x509.load_pem_x509_certificates(f.read())
            ]
    endpoint = smsc_endpoint(
        reactor, smsc.host, smsc.port, tls=smsc.tls, ca_certificates=authorities,
        timeout=smsc.connect_timeout,
    )
    return ESMEService(
        endpoint,
        smsc.session,
        clock=reactor,
        retry_policy=backoffPolicy(maxDelay=smsc.reconnect_max_delay),
    )


def _push_transport(settings: Settings, reactor: Reactor) -> IPushTransport:
    """
    SMS through the SMSC when one is configured, else the spool directory.
    """
    if settings.smpp is None:
        return SpoolTransport(settings.push.spool_dir)
    return SmppTransport(_smsc_service(settings.smpp, reactor), settings.smpp.address)


def _wns_transport(wns: WnsSettings, reactor: Reactor, store: StoreService) -> WnsTransport:
    """
    WNS over Twisted's HTTPS client: the system's trust roots, or [wns] ca_file's.
    """
    trust = None
    if wns.ca_file:
        with open(wns.ca_file, "rb") as f:
            trust = trustRootFromCertificates(
                [Certificate.loadPEM(c.public_bytes(serialization.Encoding.PEM)) for c in x509.load_pem_x509_certificates(f.read())]
            )
    http = AgentClient(
        reactor,
        tls=BrowserLikePolicyForHTTPS(trustRoot=trust),
        proxy=wns.proxy,
        connections=wns.concurrency,
        timeout=wns.timeout,
    )

    def channel_gone(device_id: str, uri: str) -> Deferred[bool]:
        return store.transact(channels.mark_gone, device_id, uri, reactor.seconds())

    return WnsTransport(wns, http, reactor, channel_gone=channel_gone, close=http.close)


def _push_routes(settings: Settings, reactor: Reactor, store: StoreService) -> PushRoutes:
    """
    SMS always (the SMSC or the spool); WNS when enabled.
    """
    transports: dict[Route, IPushTransport] = {Route.SMS: _push_transport(settings, reactor)}
    if settings.wns is not None:
        transports[Route.WNS] = _wns_transport(settings.wns, reactor, store)
    channel = settings.dm.push_channel
    return PushRoutes(transports, hosts=channel.hosts if channel is not None else channels.DEFAULT_HOSTS)


def build(settings: Settings, reactor: Reactor) -> MdmdService:
    """
    The service tree, started in this order: C{store}, C{ca}, C{enroll}, C{dm},
    C{notify}, C{smpp} (when an SMSC is configured), C{wns} (when enabled),
    C{https}, C{admin}, C{manhole} (when enabled).
    """
    root = MdmdService(settings.server.state_dir, reactor)
    for warning in settings.warnings:
        log.warn("configuration: {problem}", problem=warning)

    store = StoreService(
        settings.store.uri,
        reactor,
        pool_size=settings.store.pool_size,
        retries=settings.store.conflict_retries,
        cache_size=settings.store.cache_size,
        schema=SCHEMA,
        upkeep=settings.store.upkeep,
        clock=reactor,
    )
    store.setServiceParent(root)

    ca = CAService(settings.ca, store, reactor)
    ca.setServiceParent(root)

    web_root = Resource()
    web_root.putChild(b"pki", pki_resource(ca))
    site = MdmdSite(
        web_root,
        clock=reactor,
        max_body=settings.https.max_body,
        timeout=settings.https.idle_timeout,
        name="https",
        header_timeout=settings.https.header_timeout,
        body_timeout=settings.https.body_timeout,
    )
    https_address = settings.https.listen
    https = ListeningService(
        "https",
        lambda: GuardedTLSEndpoint(
            TCP4ServerEndpoint(reactor, https_address.port, interface=https_address.host),
            ca.tls_options,
            settings.https.connections,
        ),
        site,
        description=str(https_address),
    )

    def https_port() -> int:
        if https.port is None:
            return https_address.port
        bound = https.port.getHost()
        assert isinstance(bound, (IPv4Address, IPv6Address))
        return bound.port

    enroll = EnrollmentService(
        settings.enrollment,
        store,
        ca,
        StoreUserChecker(store, reactor, reactor, limits=settings.passwords),
        reactor,
        https_port,
    )
    enroll.setServiceParent(root)
    web_root.putChild(b"EnrollmentServer", enrollment_resource(enroll))

    def announce_discovery() -> None:
        # once everything is bound (the port may have been 0): where devices go
        if root.running:
            log.info("devices enroll at {url}", url=enroll.urls.discovery)

    reactor.callWhenRunning(announce_discovery)

    dm = DMService(settings.dm, store, reactor)
    dm.setServiceParent(root)
    management = Resource()
    management.putChild(b"MDM.svc", ManagementResource(store, reactor, dm.settings))
    web_root.putChild(b"ManagementServer", management)

    routes = _push_routes(settings, reactor, store)
    notifier = Notifier(
        store,
        settings.push.jobs,
        reactor,
        routes=routes,
        retry_delay=settings.push.retry_delay,
        keep_seconds=settings.push.keep_seconds,
        dm_server=lambda: DMServer(enroll.account.provider_id, enroll.account.name, enroll.account.dm_url),
    )
    notifier.setServiceParent(root)
    for transport in routes:
        if transport.service is not None:
            transport.service.setServiceParent(root)
    https.setServiceParent(root)

    token = AdminToken(settings.admin.token_file)
    api = AdminAPI(
        token,
        store,
        ca,
        reactor,
        reactor,
        status_extra=lambda: {"hostname": settings.server.hostname, "listening": root.addresses()},
        notifier=notifier,
        registration=settings.registration,
        idempotency=settings.admin.idempotency,
        user_policy=settings.admin.users,
        profiles=settings.dm.profiles,
    )
    admin_site = MdmdSite(api, clock=reactor, max_body=MAX_BODY, name="admin")
    admin = _LocalListener(reactor, settings.admin.listen)

    def prepare_admin() -> None:
        token.ensure()
        admin.prepare()

    ListeningService(
        "admin", admin.endpoint, admin_site, description=str(admin.address), prepare=prepare_admin
    ).setServiceParent(root)

    if settings.manhole.enabled:
        passwords = settings.manhole.password_file
        checker = ManholePasswordDB(passwords, reactor, reactor)
        shell = _LocalListener(reactor, settings.manhole.listen)

        def prepare_manhole() -> None:
            # Checked at start, not at load: mdmctl manhole-password must work
            # with this configuration before the file exists.
            if not os.path.isfile(passwords):
                raise CannotListen(
                    f"[manhole] password_file: {passwords} does not exist "
                    "(create it with mdmctl manhole-password NAME)"
                )
            shell.prepare()

        ListeningService(
            "manhole",
            shell.endpoint,
            manhole_factory(checker, lambda name: namespace(root, settings, reactor, name)),
            description=str(shell.address),
            prepare=prepare_manhole,
        ).setServiceParent(root)
    return root
