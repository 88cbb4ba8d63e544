"""
What the daemon runs with: the configuration file, validated and normalised once.

L{mdmd.config} declares the INI schema and validates a file into a L{Config}
(the options as the operator wrote them, checked and in their canonical
spelling). This module turns that, in one place, into a frozen tree of typed
L{Settings}: every value in the type its consumer takes (enums, octets,
seconds as floats, lifetimes as timedeltas, absolute paths, the components'
own settings objects), so that C{mdmd.tap} only reads values and no
component parses a configuration string again. (C{mdmctl} needs none of the
components: it reads the validated L{Config} for its addresses and files, and
so does not import the daemon's modules, which keeps each command quick.)
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass

from cryptography import x509

from mdmd import config as mdmd_config
from mdmd.admin.idempotency import IdempotencySettings
from mdmd.config import Config, ConfigErrors, ListenAddress
from mdmd.desired.reconciler import ProfileSettings
from mdmd.devices.accounts import DeviceKind
from mdmd.devices.registration import RegistrationSettings
from mdmd.dm import effects as dm_effects
from mdmd.dm.checkin import DMSettings
from mdmd.enroll.operations import EnrollmentSettings
from mdmd.enroll.provisioning import DMAccount
from mdmd.enroll.throttle import GuessLimits
from mdmd.enroll.users import PasswordLimits, UserPolicy
from mdmd.enroll.xcep import CertificatePolicy
from mdmd.listeners import ConnectionLimits
from mdmd.notify.channels import ChannelSettings
from mdmd.notify.jobs import PushSettings
from mdmd.notify.pkg0 import UIMode
from mdmd.notify.smpp_pdu import MessageIdBase
from mdmd.notify.smpp_session import Address, BindType, SessionConfig
from mdmd.notify.wns import WnsSettings
from mdmd.notify.wns_protocol import RetryPolicy, TokenFlow, token_url_for
from mdmd.pki.authority import CASettings
from mdmd.store.upkeep import UpkeepSettings

__all__ = [
    "AdminSettings",
    "HttpsSettings",
    "ManholeSettings",
    "NotifierSettings",
    "ServerSettings",
    "Settings",
    "SmscSettings",
    "StoreSettings",
    "from_config",
    "load",
    "poll_warnings",
]

_DAY = 86400.0
#: Microsoft's advice: with push, the long-term poll interval is more than a day.
_PUSH_POLL_MINUTES = 1440


@dataclass(frozen=True)
class ServerSettings:
    """[server]: who we are and where state lives."""

    hostname: str
    #: every name of the TLS server certificate: C{hostname} first, then C{extra_hostnames}
    hostnames: tuple[str, ...]
    state_dir: str
    #: the port in the URLs handed to devices; 0 means the one HTTPS bound
    public_port: int
    #: where the running daemon records the addresses it bound (mdmctl reads it)
    listening_file: str


@dataclass(frozen=True)
class StoreSettings:
    """[store]: the ZODB database."""

    #: the URI to open, C{STATE_DIR/Data.fs} when the file names none
    uri: str
    pool_size: int
    conflict_retries: int
    cache_size: int
    #: packing and index saving (the embedded FileStorage)
    upkeep: UpkeepSettings


@dataclass(frozen=True)
class HttpsSettings:
    """[https]: the listener (its certificate files are the CA's: L{CASettings})."""

    listen: ListenAddress
    max_body: int
    idle_timeout: float
    #: seconds for a request's head, and then its body, to arrive
    header_timeout: float = 20.0
    body_timeout: float = 60.0
    connections: ConnectionLimits = ConnectionLimits()


@dataclass(frozen=True)
class NotifierSettings:
    """[push]: how pushes are built (C{jobs}) and what the notifier does with them."""

    jobs: PushSettings
    #: where pushes are written when no SMSC is configured
    spool_dir: str
    retry_delay: float
    #: how long finished pushes are kept; 0 keeps them for ever
    keep_seconds: float


@dataclass(frozen=True)
class SmscSettings:
    """[smpp] with a host: the SMSC, how to reach it, and the SMPP session."""

    host: str
    port: int
    tls: bool
    #: PEM file of the CAs that may sign the SMSC's certificate; empty: the system's
    ca_file: str
    connect_timeout: float
    reconnect_max_delay: float
    session: SessionConfig

    @property
    def address(self) -> str:
        """
        C{tcp:HOST:PORT} or C{tls:HOST:PORT}, as status and logs name the SMSC.
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'tls' if self.tls else 'tcp'}:{host}:{self.port}"


@dataclass(frozen=True)
class AdminSettings:
    """[admin]: the admin API mdmctl talks to."""

    listen: ListenAddress
    token_file: str
    idempotency: IdempotencySettings
    #: what names and passwords users may be given
    users: UserPolicy


@dataclass(frozen=True)
class ManholeSettings:
    """[manhole]: the debugging shell."""

    enabled: bool
    listen: ListenAddress
    #: mdmctl manhole-password writes it whether or not the manhole is enabled
    password_file: str


@dataclass(frozen=True)
class Settings:
    """
    Everything the daemon and mdmctl take from the configuration, in final form.
    """

    server: ServerSettings
    store: StoreSettings
    https: HttpsSettings
    ca: CASettings
    enrollment: EnrollmentSettings
    #: registering classic OMA DM devices (the admin API, the manhole)
    registration: RegistrationSettings
    dm: DMSettings
    push: NotifierSettings
    #: None without an SMSC: pushes go to C{push.spool_dir}
    smpp: SmscSettings | None
    admin: AdminSettings
    manhole: ManholeSettings
    #: what a password check may cost: [limits]
    passwords: PasswordLimits = PasswordLimits()
    #: None unless [wns] enabled; its channel side is C{dm.push_channel}
    wns: WnsSettings | None = None
    #: what to warn about at start (the poll schedule against the push transports)
    warnings: tuple[str, ...] = ()


def load(path: str | None, base_dir: str | None = None) -> Settings:
    """
    Load, validate and normalise the INI file at C{path} (the development
    defaults when None); see L{mdmd.config.load}.

    @raise mdmd.config.ConfigErrors: listing every problem found.
    """
    return from_config(mdmd_config.load(path, base_dir))


def from_config(config: Config) -> Settings:
    """
    The settings of a validated configuration: the one translation from
    options to what components take.
    """
    server = ServerSettings(
        hostname=config.server.hostname,
        hostnames=(config.server.hostname, *config.server.extra_hostnames),
        state_dir=config.state_dir,
        public_port=config.server.public_port,
        listening_file=config.listening_file,
    )
    device_cas = _device_cas(config.https.device_ca_file)
    dm = _dm(config, device_cas)
    settings = Settings(
        server=server,
        store=StoreSettings(
            uri=config.store_uri,
            pool_size=config.store.pool_size,
            conflict_retries=config.store.conflict_retries,
            cache_size=config.store.cache_size,
            upkeep=UpkeepSettings(
                pack_interval=float(config.store.pack_interval),
                pack_keep_days=config.store.pack_keep_days,
                index_save_interval=float(config.store.index_save_interval),
            ),
        ),
        https=HttpsSettings(
            listen=config.https.listen,
            max_body=config.https.max_body,
            idle_timeout=float(config.https.idle_timeout),
            header_timeout=float(config.https.header_timeout),
            body_timeout=float(config.https.body_timeout),
            connections=ConnectionLimits(
                total=config.https.max_connections,
                per_source=config.https.max_connections_per_source,
            ),
        ),
        ca=_ca(config, server, device_cas),
        enrollment=_enrollment(config),
        registration=RegistrationSettings(
            server_id=config.enrollment.provider_id,
            inventory=config.dm.inventory_omadm,
            certificate_defaults=dm.certificate_defaults,
        ),
        dm=dm,
        push=_notifier(config),
        smpp=_smsc(config) if config.smpp.host else None,
        admin=AdminSettings(
            listen=config.admin.listen,
            token_file=config.admin_token_file,
            idempotency=IdempotencySettings(keep=float(config.admin.idempotency_keep)),
            users=UserPolicy(
                forms=config.admin.user_names,
                plain_pattern=config.admin.user_name_pattern,
                min_password=config.admin.min_password_length,
            ),
        ),
        manhole=ManholeSettings(
            enabled=config.manhole.enabled,
            listen=config.manhole.listen,
            password_file=config.manhole_password_file,
        ),
        passwords=_passwords(config),
        wns=_wns(config) if config.wns.enabled else None,
    )
    return dataclasses.replace(settings, warnings=poll_warnings(settings))


def _passwords(config: Config) -> PasswordLimits:
    limits = config.limits
    return PasswordLimits(
        guesses=GuessLimits(
            user_failures=limits.password_failures_per_user,
            source_failures=limits.password_failures_per_source,
            max_delay=float(limits.password_max_delay),
            lockout=float(limits.password_lockout),
            tracked=limits.password_tracked,
        ),
        concurrent=limits.password_checks,
        queued=limits.password_queue,
    )


def poll_warnings(settings: Settings) -> tuple[str, ...]:
    """
    What is off between the poll schedule devices get and what can wake them.
    """
    minutes = settings.enrollment.account.poll.remaining_interval
    if settings.wns is not None and minutes < _PUSH_POLL_MINUTES:
        return (
            f"devices poll every {minutes} minutes although WNS wakes them: Microsoft recommends a "
            f"long-term poll of at least {_PUSH_POLL_MINUTES} minutes with push ([wns] poll_interval)",
        )
    if settings.wns is None and settings.smpp is None and minutes > _PUSH_POLL_MINUTES:
        return (
            f"devices poll only every {minutes} minutes and neither WNS nor an SMSC can wake them "
            f"(pushes only go to the spool): commands may wait that long ([enrollment] poll_schedule)",
        )
    return ()


def _device_cas(path: str) -> tuple[x509.Certificate, ...]:
    """
    The certificates of C{[https] device_ca_file} (none when it is empty).

    @raise ConfigErrors: if the file holds no PEM certificate, or one that is not a CA's.
    """
    if not path:
        return ()
    with open(path, "rb") as f:
        data = f.read()
    try:
        found = tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        found = ()
    if not found:
        raise ConfigErrors([f"[https] device_ca_file: {path} holds no PEM certificate"])
    for certificate in found:
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise ConfigErrors(
                [f"[https] device_ca_file: {certificate.subject.rfc4514_string()} in {path} is not a CA certificate"]
            )
    return found


def _ca(config: Config, server: ServerSettings, device_cas: tuple[x509.Certificate, ...]) -> CASettings:
    ca = config.ca
    return CASettings(
        state_dir=server.state_dir,
        hostnames=server.hostnames,
        organization=ca.organization,
        key_size=ca.key_size,
        server_key_size=ca.server_key_size,
        root_lifetime=datetime.timedelta(days=ca.root_lifetime_days),
        server_lifetime=datetime.timedelta(days=ca.server_cert_lifetime_days),
        client_lifetime=datetime.timedelta(days=ca.client_cert_lifetime_days),
        crl_lifetime=datetime.timedelta(hours=ca.crl_lifetime_hours),
        server_cert_file=config.https.cert_file,
        server_key_file=config.https.key_file,
        server_chain_file=config.https.chain_file,
        device_cas=device_cas,
        tls_ciphers=config.https.ciphers,
    )


def _enrollment(config: Config) -> EnrollmentSettings:
    enrollment = config.enrollment
    return EnrollmentSettings(
        state_dir=config.state_dir,
        hostname=config.server.hostname,
        public_port=config.server.public_port,
        auth_policy=enrollment.auth_policy,
        max_enrollment_version=enrollment.enrollment_version,
        policy=CertificatePolicy(
            name=f"{enrollment.display_name} device",
            min_key_length=enrollment.min_key_length,
            validity_seconds=config.ca.client_cert_lifetime_days * 86400,
            renewal_seconds=enrollment.renewal_period_days * 86400,
        ),
        account=DMAccount(
            provider_id=enrollment.provider_id,
            name=enrollment.display_name,
            dm_url="",
            connection_retries=enrollment.connection_retries,
            initial_backoff_ms=enrollment.initial_backoff_ms,
            max_backoff_ms=enrollment.max_backoff_ms,
            default_encoding=enrollment.default_encoding,
            poll=_poll_schedule(config),
            poll_on_login=enrollment.poll_on_login,
            renew_period_days=enrollment.renewal_period_days,
            renew_retry_days=enrollment.renewal_retry_days,
            push_pfn=config.wns.pfn if config.wns.enabled and config.wns.pfn_delivery == "enrollment" else "",
        ),
        device_auth_type=enrollment.device_auth_type,
        federated_token_lifetime=float(enrollment.federated_token_lifetime),
        certificate_ca_file=enrollment.certificate_ca_file,
        inventory=config.dm.inventory_windows,
        # One at a time with the embedded store (run together, enrollments
        # conflict on the same BTree buckets); a shared store, one per connection.
        issuing_concurrency=(
            1 if config.store_uri.startswith(("file:", "memory:")) else config.store.pool_size
        ),
    )


def _poll_schedule(config: Config) -> mdmd_config.PollSchedule:
    """
    [enrollment] poll_schedule, its long-term interval [wns] poll_interval when WNS wakes devices.
    """
    schedule = config.enrollment.poll_schedule
    if config.wns.enabled and config.wns.poll_interval:
        return dataclasses.replace(schedule, remaining_interval=config.wns.poll_interval)
    return schedule


def _dm(config: Config, device_cas: tuple[x509.Certificate, ...]) -> DMSettings:
    dm = config.dm
    wns = config.wns
    return DMSettings(
        session=dm_effects.Settings(
            session_timeout=float(dm.session_timeout),
            default_max_msg_size=dm.max_message_size,
            max_obj_size=dm.max_object_size,
            max_auth_failures=dm.max_auth_failures,
            auth_lockout=float(dm.auth_lockout),
        ),
        require_client_certificate=dm.require_client_certificate_windows,
        require_client_certificate_omadm=dm.require_client_certificate_omadm,
        device_cas=device_cas,
        send_server_credential=frozenset(DeviceKind(kind) for kind in dm.send_server_credential),
        push_channel=(
            ChannelSettings(
                pfn=wns.pfn,
                provider_id=config.enrollment.provider_id,
                refresh=wns.refresh_days * _DAY,
                hosts=wns.channel_hosts,
                pfn_at_enrollment=wns.pfn_delivery == "enrollment",
            )
            if wns.enabled
            else None
        ),
        profiles=ProfileSettings(
            verify_interval=float(config.profiles.verify_interval),
            server_id=config.enrollment.provider_id,
            push_batch=config.profiles.push_batch,
        ),
    )


def _notifier(config: Config) -> NotifierSettings:
    push = config.push
    return NotifierSettings(
        jobs=PushSettings(
            version=push.version,
            ui_mode=UIMode[push.ui_mode.upper().replace("-", "_")],
            data_coding=int(push.data_coding, 16),
            concat_iei=int(push.concat_iei, 16),
            expiry=float(push.expiry),
            local_ton=push.local_ton,
            local_npi=push.local_npi,
            provider_id=config.enrollment.provider_id,
        ),
        spool_dir=push.spool_dir,
        retry_delay=float(push.retry_delay),
        keep_seconds=push.keep_days * _DAY,
    )


def _wns(config: Config) -> WnsSettings:
    wns = config.wns
    flow = TokenFlow(wns.token_flow)
    return WnsSettings(
        flow=flow,
        client_id=wns.package_sid if flow is TokenFlow.CLASSIC else wns.client_id,
        secret_file=wns.secret_file,
        token_url=token_url_for(flow, wns.tenant_id, wns.token_url),
        notify_url=wns.notify_url,
        ca_file=wns.ca_file,
        proxy=wns.proxy,
        concurrency=wns.concurrency,
        timeout=float(wns.timeout),
        retry=RetryPolicy(attempts=wns.max_attempts),
    )


def _smsc(config: Config) -> SmscSettings:
    smpp = config.smpp
    return SmscSettings(
        host=smpp.host,
        port=smpp.port,
        tls=smpp.tls,
        ca_file=smpp.ca_file,
        connect_timeout=float(smpp.connect_timeout),
        reconnect_max_delay=float(smpp.reconnect_max_delay),
        session=SessionConfig(
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
        ),
    )
