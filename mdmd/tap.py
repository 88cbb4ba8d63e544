"""
C{twistd mdmd}: command-line options and the service tree.

This is the only module that touches the global reactor. L{Options} loads and
validates the whole configuration before anything starts; L{build} only wires
objects together; nothing listens or writes until the tree is started.
"""

from __future__ import annotations

import datetime
import gc

from twisted.application.service import IService
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint, TCP6ServerEndpoint, UNIXServerEndpoint
from twisted.internet.interfaces import IReactorCore, IStreamServerEndpoint
from twisted.python import usage
from twisted.web.resource import Resource

from mdmd import config as mdmd_config
from mdmd.admin.api import AdminAPI, AdminToken
from mdmd.config import Config, ListenAddress
from mdmd.dm.resource import DMSettings, ManagementResource
from mdmd.dm.service import DMService
from mdmd.dm.session import Settings
from mdmd.enroll.resource import enrollment_resource
from mdmd.enroll.service import EnrollmentService, EnrollmentSettings
from mdmd.enroll.users import StoreUserChecker
from mdmd.listeners import ListeningService, MdmdService, clear_stale_socket
from mdmd.pki.resource import pki_resource
from mdmd.pki.service import CAService, CASettings
from mdmd.site import MdmdSite
from mdmd.store.service import StoreService

__all__ = ["Options", "makeService", "build"]


class Options(usage.Options):
    synopsis = "[--config FILE]"
    longdesc = (
        "Run mdmd, the Windows and OMA DM device-management server. Without --config "
        "the development settings are used: state in ./var, HTTPS on 127.0.0.1:8443, "
        "public host name localhost, admin API on ./var/admin.sock."
    )
    optParameters = [
        ["config", "c", None, "INI configuration file (see etc/mdmd.conf for every option)."],
    ]

    config: Config

    def postOptions(self) -> None:
        try:
            self.config = mdmd_config.load(self["config"])
        except mdmd_config.ConfigErrors as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    # Once started, move everything that lives as long as the process (modules,
    # the service tree, keys) out of the garbage collector's way: full
    # collections then scan only what requests create, which halves their pauses.
    reactor.callWhenRunning(_freeze_startup_objects)
    return build(options.config, reactor)


def _freeze_startup_objects() -> None:
    gc.collect()
    gc.freeze()


def _tcp_endpoint(reactor: IReactorCore, address: ListenAddress) -> IStreamServerEndpoint:
    endpoint = TCP6ServerEndpoint if ":" in address.host else TCP4ServerEndpoint
    return endpoint(reactor, address.port, interface=address.host)  # type: ignore[arg-type]


def build(config: Config, reactor: IReactorCore) -> MdmdService:
    """
    The service tree: C{store}, C{ca}, C{enroll}, C{dm}, C{https}, C{admin}, started in that order.
    """
    root = MdmdService(config.state_dir, reactor)

    store = StoreService(
        config.store_uri,
        reactor,  # type: ignore[arg-type]
        pool_size=config.store.pool_size,
        retries=config.store.conflict_retries,
        cache_size=config.store.cache_size,
    )
    store.setServiceParent(root)

    hostnames = [config.server.hostname, *config.server.extra_hostnames]
    ca = CAService(
        CASettings(
            state_dir=config.state_dir,
            hostnames=hostnames,
            organization=config.ca.organization,
            key_size=config.ca.key_size,
            server_key_size=config.ca.server_key_size,
            root_lifetime=datetime.timedelta(days=config.ca.root_lifetime_days),
            server_lifetime=datetime.timedelta(days=config.ca.server_cert_lifetime_days),
            client_lifetime=datetime.timedelta(days=config.ca.client_cert_lifetime_days),
            crl_lifetime=datetime.timedelta(hours=config.ca.crl_lifetime_hours),
            server_cert_file=config.https.cert_file,
            server_key_file=config.https.key_file,
            server_chain_file=config.https.chain_file,
        ),
        store,
        reactor,  # type: ignore[arg-type]
    )
    ca.setServiceParent(root)

    web_root = Resource()
    web_root.putChild(b"pki", pki_resource(ca))
    site = MdmdSite(
        web_root,
        clock=reactor,  # type: ignore[arg-type]
        max_body=config.https.max_body,
        timeout=config.https.idle_timeout,
        name="https",
    )
    https_address = config.https.listen
    https = ListeningService(
        "https",
        lambda: SSL4ServerEndpoint(
            reactor,  # type: ignore[arg-type]
            https_address.port,
            ca.tls_options,
            interface=https_address.host,
        ),
        site,
        description=str(https_address),
    )

    def https_port() -> int:
        if https.port is None:
            return https_address.port
        return int(https.port.getHost().port)  # type: ignore[attr-defined]

    enroll = EnrollmentService(
        EnrollmentSettings.from_config(config),
        store,
        ca,
        StoreUserChecker(store, reactor, reactor),  # type: ignore[arg-type]
        reactor,  # type: ignore[arg-type]
        https_port,
    )
    enroll.setServiceParent(root)
    web_root.putChild(b"EnrollmentServer", enrollment_resource(enroll))

    dm = DMService(
        DMSettings(
            session=Settings(
                session_timeout=config.dm.session_timeout,
                default_max_msg_size=config.dm.max_message_size,
                max_obj_size=config.dm.max_object_size,
                max_auth_failures=config.dm.max_auth_failures,
            ),
            require_client_certificate=config.dm.require_client_certificate,
        ),
        store,
        reactor,  # type: ignore[arg-type]
    )
    dm.setServiceParent(root)
    management = Resource()
    management.putChild(b"MDM.svc", ManagementResource(store, reactor, dm.settings))  # type: ignore[arg-type]
    web_root.putChild(b"ManagementServer", management)
    https.setServiceParent(root)

    token = AdminToken(config.admin_token_file)
    api = AdminAPI(
        token,
        store,
        ca,
        reactor,  # type: ignore[arg-type]
        reactor,  # type: ignore[arg-type]
        status_extra=lambda: {"hostname": config.server.hostname, "listening": root.addresses()},
    )
    admin_site = MdmdSite(api, clock=reactor, max_body=256 * 1024, name="admin")  # type: ignore[arg-type]
    admin_address = config.admin.listen

    def prepare_admin() -> None:
        token.ensure()
        if admin_address.kind == "unix":
            clear_stale_socket(admin_address.path)

    def admin_endpoint() -> IStreamServerEndpoint:
        if admin_address.kind == "unix":
            return UNIXServerEndpoint(reactor, admin_address.path, mode=0o600, wantPID=False)  # type: ignore[arg-type]
        return _tcp_endpoint(reactor, admin_address)

    ListeningService(
        "admin", admin_endpoint, admin_site, description=str(admin_address), prepare=prepare_admin
    ).setServiceParent(root)
    return root
