"""
C{twistd mdmd}: command-line options and the service tree.

This is the only module that touches the global reactor. L{Options} loads and
validates the whole configuration before anything starts; L{build} only wires
objects together; nothing listens or writes until the tree is started.
"""

from __future__ import annotations

import datetime
import gc
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.application.internet import backoffPolicy
from twisted.application.service import IService
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint, TCP6ServerEndpoint, UNIXServerEndpoint
from twisted.internet.interfaces import IReactorCore, IStreamServerEndpoint
from twisted.python import usage
from twisted.web.resource import Resource

from mdmd import config as mdmd_config
from mdmd.admin.api import AdminAPI, AdminToken
from mdmd.config import Config, ListenAddress
from mdmd.dm.checkin import DMSettings
from mdmd.dm.resource import ManagementResource
from mdmd.dm.sweeper import DMService
from mdmd.dm.effects import Settings
from mdmd.enroll.resource import enrollment_resource
from mdmd.enroll.operations import EnrollmentService, EnrollmentSettings
from mdmd.enroll.users import StoreUserChecker
from mdmd.listeners import CannotListen, ListeningService, MdmdService, clear_stale_socket
from mdmd.manhole import ManholePasswordDB, manhole_factory, namespace
from mdmd.notify.smpp_client import ESMEService, smsc_endpoint
from mdmd.notify.jobs import PushSettings
from mdmd.notify.notifier import Notifier
from mdmd.notify.smpp_transport import SmppTransport
from mdmd.notify.spool import SpoolTransport
from mdmd.notify.transport import IPushTransport
from mdmd.notify.pkg0 import UIMode
from mdmd.notify.smpp_session import Address, BindType, SessionConfig
from mdmd.notify.smpp_pdu import MessageIdBase
from mdmd.pki.resource import pki_resource
from mdmd.pki.authority import CAService, CASettings
from mdmd.site import MdmdSite
from mdmd.store.runner import StoreService

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



@dataclass(frozen=True)
class _LocalListener:
    """
    A listener on a UNIX socket (mode 0600) or a TCP port: the admin API, the manhole.
    """

    reactor: IReactorCore
    address: ListenAddress

    def endpoint(self) -> IStreamServerEndpoint:
        address = self.address
        if address.kind == "unix":
            return UNIXServerEndpoint(self.reactor, address.path, mode=0o600, wantPID=False)  # type: ignore[arg-type]
        endpoint = TCP6ServerEndpoint if ":" in address.host else TCP4ServerEndpoint
        return endpoint(self.reactor, address.port, interface=address.host)  # type: ignore[arg-type]

    def prepare(self) -> None:
        if self.address.kind == "unix":
            clear_stale_socket(self.address.path)


def push_settings(config: Config) -> PushSettings:
    push = config.push
    return PushSettings(
        version=push.version,
        ui_mode=UIMode[push.ui_mode.upper().replace("-", "_")],
        data_coding=int(push.data_coding, 16),
        concat_iei=int(push.concat_iei, 16),
        expiry=float(push.expiry),
        local_ton=push.local_ton,
        local_npi=push.local_npi,
    )


def session_config(config: Config) -> SessionConfig:
    smpp = config.smpp
    return SessionConfig(
        system_id=smpp.system_id,
        password=smpp.password,
        system_type=smpp.system_type,
        bind_type=BindType(smpp.bind_type),
        source=Address(smpp.source_addr, smpp.source_ton, smpp.source_npi),
        service_type=smpp.service_type,
        registered_delivery=0x01 if smpp.registered_delivery else 0x00,
        validity_period=smpp.validity_period,
        window=smpp.window,
        throughput=smpp.throughput or None,
        enquire_link_interval=float(smpp.enquire_link_interval),
        response_timeout=float(smpp.response_timeout),
        max_timeouts=smpp.max_timeouts,
        throttle_pause=smpp.throttle_pause,
        max_throttle_retries=smpp.max_throttle_retries,
        temporary_retry_delay=float(smpp.temporary_retry_delay),
        max_temporary_retries=smpp.max_temporary_retries,
        submit_id_base=MessageIdBase(smpp.submit_id_base),
        receipt_id_base=MessageIdBase(smpp.receipt_id_base),
    )


def _smsc_service(config: Config, reactor: IReactorCore) -> ESMEService:
    smpp = config.smpp
    authorities: list[bytes] = []
    if smpp.tls and smpp.ca_file:
        with open(smpp.ca_file, "rb") as f:
            authorities = [
                c.public_bytes(serialization.Encoding.PEM)
                for c in x509.load_pem_x509_certificates(f.read())
            ]
    endpoint = smsc_endpoint(
        reactor, smpp.host, smpp.port, tls=smpp.tls, ca_certificates=authorities,
        timeout=float(smpp.connect_timeout),
    )
    return ESMEService(
        endpoint,
        session_config(config),
        clock=reactor,  # type: ignore[arg-type]
        retry_policy=backoffPolicy(maxDelay=float(smpp.reconnect_max_delay)),
    )


def _push_transport(config: Config, reactor: IReactorCore) -> IPushTransport:
    """
    SMS through the SMSC when one is configured, else the spool directory.
    """
    smpp = config.smpp
    if not smpp.host:
        return SpoolTransport(config.push.spool_dir)
    host = f"[{smpp.host}]" if ":" in smpp.host else smpp.host
    return SmppTransport(
        _smsc_service(config, reactor), f"{'tls' if smpp.tls else 'tcp'}:{host}:{smpp.port}"
    )


def build(config: Config, reactor: IReactorCore) -> MdmdService:
    """
    The service tree, started in this order: C{store}, C{ca}, C{enroll}, C{dm},
    C{notify}, C{smpp} (when an SMSC is configured), C{https}, C{admin},
    C{manhole} (when enabled).
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

    transport = _push_transport(config, reactor)
    notifier = Notifier(
        store,
        push_settings(config),
        reactor,  # type: ignore[arg-type]
        transport=transport,
        retry_delay=float(config.push.retry_delay),
        keep_seconds=config.push.keep_days * 86400.0,
    )
    notifier.setServiceParent(root)
    if transport.service is not None:
        transport.service.setServiceParent(root)
    https.setServiceParent(root)

    token = AdminToken(config.admin_token_file)
    api = AdminAPI(
        token,
        store,
        ca,
        reactor,  # type: ignore[arg-type]
        reactor,  # type: ignore[arg-type]
        status_extra=lambda: {"hostname": config.server.hostname, "listening": root.addresses()},
        notifier=notifier,
    )
    admin_site = MdmdSite(api, clock=reactor, max_body=256 * 1024, name="admin")  # type: ignore[arg-type]
    admin = _LocalListener(reactor, config.admin.listen)

    def prepare_admin() -> None:
        token.ensure()
        admin.prepare()

    ListeningService(
        "admin", admin.endpoint, admin_site, description=str(admin.address), prepare=prepare_admin
    ).setServiceParent(root)

    if config.manhole.enabled:
        passwords = config.manhole_password_file
        checker = ManholePasswordDB(passwords, reactor, reactor)  # type: ignore[arg-type]
        shell = _LocalListener(reactor, config.manhole.listen)

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
            manhole_factory(checker, lambda name: namespace(root, config, reactor, name)),
            description=str(shell.address),
            prepare=prepare_manhole,
        ).setServiceParent(root)
    return root
