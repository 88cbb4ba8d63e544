"""
mdmd's configuration: one INI file, validated whole before anything listens.

The schema is declared once, as frozen dataclasses whose fields carry their
parser and help text; the loader, C{etc/mdmd.conf} (checked by a test) and the
documentation all follow from it. Every problem in a file is reported at once,
so an operator fixes them in one pass. A loaded L{Config} holds the options
as written (checked, canonically spelled, paths made absolute);
L{mdmd.settings} turns it into what the daemon runs with.
"""

from __future__ import annotations

import configparser
import dataclasses
import decimal
import ipaddress
import math
import os
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from mdmd.dm.commands import InvalidCommand, normalize_uri

__all__ = [
    "Config",
    "ConfigErrors",
    "IniParser",
    "ListenAddress",
    "PollSchedule",
    "load",
    "iter_options",
]


class ConfigErrors(Exception):
    """
    Everything wrong with a configuration file, one problem per entry.
    """

    def __init__(self, errors: list[str]) -> None:
        super().__init__(errors)
        self.errors = errors

    def __str__(self) -> str:
        return "invalid configuration:\n" + "\n".join(f"  - {e}" for e in self.errors)


@dataclass(frozen=True)
class ListenAddress:
    """
    Where a listener binds: a TCP host and port, or a UNIX socket path.
    """

    kind: str  # "tcp" or "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.kind == "unix":
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


# --- value parsers: str -> value, raising ValueError with a short reason ---------


def _str(raw: str) -> str:
    return raw.strip()


def _int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip(), 0)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw.strip()!r}") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum}")
        return value

    return parse


#: The most days of history a pack may keep (ten years): further back is before any store.
MAX_PACK_KEEP_DAYS = 3650.0


def _float(minimum: float | None = None, maximum: float | None = None) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {raw.strip()!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {raw.strip()!r}")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum}")
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"expected yes or no, got {raw.strip()!r}")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return parse


def _hex_choice(*choices: int) -> Callable[[str], str]:
    """
    One of a few octet values, written in any base; kept in its canonical 0xNN spelling.
    """

    def parse(raw: str) -> str:
        try:
            value = int(raw.strip(), 0)
        except ValueError:
            value = -1
        if value not in choices:
            spelled = ", ".join(f"0x{c:02X}" for c in choices)
            raise ValueError(f"expected one of {spelled}, got {raw.strip()!r}")
        return f"0x{value:02X}"

    return parse


def _list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.replace("\n", ",").split(",") if part.strip())


def _subset(*choices: str) -> Callable[[str], tuple[str, ...]]:
    """
    A comma-separated list of some of C{choices}.
    """

    def parse(raw: str) -> tuple[str, ...]:
        values = _list(raw)
        unknown = [v for v in values if v not in choices]
        if unknown:
            raise ValueError(f"expected some of {', '.join(choices)}, got {', '.join(map(repr, unknown))}")
        return values

    return parse


def _regex(raw: str) -> str:
    value = raw.strip()
    try:
        re.compile(value)
    except re.error as e:
        raise ValueError(f"not a regular expression: {e}") from None
    return value


def _tcp_address(raw: str) -> ListenAddress:
    value = raw.strip()
    host, sep, port = value.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]")
    if not host:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return ListenAddress("tcp", host=host, port=_int(0, 65535)(port))


def _listen(raw: str) -> ListenAddress:
    value = raw.strip()
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if not path:
            raise ValueError("unix: needs a socket path")
        return ListenAddress("unix", path=path)
    if value.startswith("tcp:"):
        value = value[len("tcp:") :]
    return _tcp_address(value)


def _ciphers(raw: str) -> str:
    """
    An OpenSSL cipher string that selects at least one TLS 1.2 cipher suite.
    """
    value = raw.strip()
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(value)
    except ssl.SSLError:
        raise ValueError(f"no TLS 1.2 cipher suite matches {value!r}") from None
    return value


def _store_uri(raw: str) -> str:
    value = raw.strip()
    if not value:
        return ""
    scheme = urlsplit(value).scheme
    if scheme not in ("file", "zeo", "postgresql", "postgres", "memory"):
        raise ValueError(
            f"unsupported store URI scheme {scheme!r} "
            "(expected file://PATH, zeo://HOST:PORT or postgresql://...)"
        )
    return value


def _decimal_version(raw: str) -> str:
    value = raw.strip()
    try:
        number = decimal.Decimal(value)
    except decimal.InvalidOperation:
        raise ValueError(f"expected a version number such as 3.0, got {value!r}") from None
    if not number.is_finite() or number < 1 or number > 100:
        raise ValueError(f"expected a version number between 1.0 and 100, got {value!r}")
    return value


@dataclass(frozen=True)
class PollSchedule:
    """
    When an enrolled device polls: C{first_count} times every C{first_interval} minutes,
    then C{second_count} times every C{second_interval}, then every
    C{remaining_interval} minutes (C{remaining_count} times; 0 means for ever).
    """

    first_interval: int
    first_count: int
    second_interval: int
    second_count: int
    remaining_interval: int
    remaining_count: int = 0

    def __str__(self) -> str:
        last = f"{self.remaining_interval}"
        if self.remaining_count:
            last += f"x{self.remaining_count}"
        return (
            f"{self.first_interval}x{self.first_count}, "
            f"{self.second_interval}x{self.second_count}, {last}"
        )


def _poll_schedule(raw: str) -> PollSchedule:
    parts = [part.strip().lower() for part in raw.split(",")]
    if len(parts) != 3 or not all(parts):
        raise ValueError(
            f"expected MINUTESxCOUNT, MINUTESxCOUNT, MINUTES[xCOUNT], got {raw.strip()!r}"
        )
    numbers: list[int] = []
    for index, part in enumerate(parts):
        interval, sep, count = part.partition("x")
        if not sep and index < 2:
            raise ValueError(f"{part!r}: expected MINUTESxCOUNT")
        try:
            numbers += [int(interval), int(count) if sep else 0]
        except ValueError:
            raise ValueError(f"{part!r}: expected whole numbers") from None
    schedule = PollSchedule(*numbers)
    if min(schedule.first_interval, schedule.second_interval, schedule.remaining_interval) < 1:
        raise ValueError("poll intervals are at least 1 minute")
    if min(schedule.first_count, schedule.second_count) < 1 or schedule.remaining_count < 0:
        raise ValueError(
            "the first two retry counts must be at least 1 (0 would mean polling at that "
            "interval for ever)"
        )
    return schedule


_T = TypeVar("_T")


def _option(
    default: _T, parse: Callable[[str], _T], help: str, example: str = "", former: str = ""
) -> _T:
    """
    An option of the schema: its default, the parser of its INI text (of the same type), its help.

    C{former} is the name the option had before it was renamed; a file may
    still use it (but not both names).
    """
    if former:
        help += f" Its former name, {former}, is still read."
    return field(default=default, metadata={"parse": parse, "help": help, "example": example, "former": former})


# --- the schema --------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSection:
    """[server]: who we are and where state lives."""

    hostname: str = _option(
        "localhost",
        _str,
        "Public host name devices use to reach this server. It goes into the enrollment "
        "URLs and the generated server certificate. Empty means this machine's fully "
        "qualified domain name (hostname --fqdn).",
    )
    extra_hostnames: tuple[str, ...] = _option(
        (), _list, "More names (or IP addresses) for the generated server certificate, comma-separated."
    )
    state_dir: str = _option(
        "var",
        _str,
        "Directory holding the store, the CA, the TLS key and the admin token. "
        "Relative paths are taken from the working directory.",
    )
    public_port: int = _option(
        0,
        _int(0, 65535),
        "Port devices use to reach the HTTPS listener (set it when a load balancer or NAT "
        "forwards another port). 0 means the port the listener actually bound. The port is "
        "left out of the URLs handed to devices when it is 443.",
    )


@dataclass(frozen=True)
class HttpsSection:
    """[https]: the one HTTPS listener for enrollment and management."""

    listen: ListenAddress = _option(
        ListenAddress("tcp", "127.0.0.1", 8443),
        _tcp_address,
        "Address and port to listen on (HOST:PORT; port 0 picks a free port).",
    )
    max_body: int = _option(
        1048576, _int(1024), "Largest request body accepted, in bytes; larger requests get 413."
    )
    idle_timeout: int = _option(
        60, _int(1), "Seconds an idle keep-alive connection is kept open."
    )
    cert_file: str = _option(
        "",
        _str,
        "PEM server certificate to use instead of one generated by the built-in CA "
        "(key_file must be set too).",
    )
    key_file: str = _option("", _str, "PEM private key of cert_file.")
    chain_file: str = _option(
        "", _str, "PEM intermediate certificates sent after cert_file (optional)."
    )
    device_ca_file: str = _option(
        "",
        _str,
        "PEM file of the CAs of an existing device PKI, whose client certificates TLS accepts "
        "besides those of mdmd's CA: for classic OMA DM devices only, and each must name its "
        "device (subject CN, or a SAN URI or DNS name, equal to the DeviceID). List the CA "
        "that signs the device certificates (with its intermediates and root). Empty: mdmd's "
        "CA only.",
    )
    ciphers: str = _option(
        "ECDHE+AESGCM:ECDHE+CHACHA20",
        _ciphers,
        "TLS 1.2 cipher suites, in OpenSSL's notation. The default allows only ECDHE key "
        "exchange with AES-GCM or ChaCha20-Poly1305 (forward secret; no static RSA key "
        "exchange, no CBC, no SHA-1), which Windows 10 and 11 and current TLS stacks support "
        "(docs/operations.md); TLS 1.3 keeps its own suites.",
    )
    header_timeout: int = _option(
        20,
        _int(1),
        "Seconds a client has to send a request's line and headers, from its first byte (on a "
        "new connection, from the connection: the TLS handshake included); a slower one gets "
        "408 and its connection is closed.",
    )
    body_timeout: int = _option(
        60,
        _int(1),
        "Seconds a client has to send a request's body once its headers are in; a slower one "
        "gets 408 and its connection is closed.",
    )
    max_connections: int = _option(
        1000,
        _int(1),
        "Connections held open at once; more are closed as soon as they are accepted. Keep it "
        "below the daemon's file descriptor limit.",
    )
    max_connections_per_source: int = _option(
        100,
        _int(0),
        "Connections held open at once from one address (IPv6: one /64); 0 for no limit. "
        "Behind a load balancer or proxy that does not keep the client's address, every "
        "connection comes from its address: raise this or set it to 0.",
    )


@dataclass(frozen=True)
class StoreSection:
    """[store]: the ZODB database."""

    uri: str = _option(
        "",
        _store_uri,
        "Where the ZODB lives: file:///path/Data.fs (embedded FileStorage), zeo://host:port "
        "(ZEO server, needs mdmd[zeo]) or postgresql://user:password@host/dbname (RelStorage, "
        "history-free, needs mdmd[postgresql]). Empty means STATE_DIR/Data.fs.",
    )
    pool_size: int = _option(
        7, _int(1, 64), "Database connections, and threads doing store work."
    )
    conflict_retries: int = _option(
        5, _int(0, 100), "How often a unit of work is retried after a write conflict."
    )
    cache_size: int = _option(
        10000,
        _int(100, 10_000_000),
        "Objects each database connection keeps in memory (about 6 per active device: its "
        "record, certificate, queue, session and pending commands).",
    )
    pack_interval: int = _option(
        86400,
        _int(0),
        "Seconds between packs of the embedded FileStorage, which drop the history older "
        "than pack_keep_days and the objects nothing refers to any more, while the daemon "
        "serves; 0 packs only on demand (mdmctl store pack). A ZEO or RelStorage store is "
        "packed by its server, not by mdmd.",
    )
    pack_keep_days: float = _option(
        1.0,
        _float(0, MAX_PACK_KEEP_DAYS),
        "Days of history a pack keeps (older revisions of changed records go); fractions "
        "are fine (0.25: six hours). Each day of history costs disk: about what a day of "
        "check-ins writes.",
    )
    index_save_interval: int = _option(
        300,
        _int(0),
        "Seconds between saves of the FileStorage index (Data.fs.index), so that a start "
        "after a crash reads only what was written since the last save instead of the whole "
        "file; 0 saves it only when the daemon stops cleanly.",
    )


@dataclass(frozen=True)
class CASection:
    """[ca]: the built-in certificate authority."""

    key_size: int = _option(3072, _int(2048, 8192), "RSA key size of the generated root CA.")
    server_key_size: int = _option(
        2048, _int(2048, 8192), "RSA key size of the generated TLS server key."
    )
    root_lifetime_days: int = _option(3650, _int(30), "Validity of the generated root CA.")
    server_cert_lifetime_days: int = _option(
        397, _int(1, 3650), "Validity of the generated TLS server certificate."
    )
    client_cert_lifetime_days: int = _option(
        365, _int(1, 3650), "Validity of client certificates issued to devices."
    )
    crl_lifetime_hours: int = _option(
        168, _int(1, 8760), "How long a published CRL stays valid (its nextUpdate)."
    )
    organization: str = _option(
        "mdmd", _str, "Organization name in the generated CA and server certificates."
    )


@dataclass(frozen=True)
class AdminSection:
    """[admin]: the JSON admin API that mdmctl talks to."""

    listen: ListenAddress = _option(
        ListenAddress("unix", path="admin.sock"),
        _listen,
        "unix:PATH or tcp:HOST:PORT; TCP must be a loopback address. A relative socket "
        "path is taken inside state_dir.",
    )
    token_file: str = _option(
        "",
        _str,
        "File holding the bearer token (written 0600 on first start). Empty means "
        "STATE_DIR/admin.token.",
    )
    idempotency_keep: int = _option(
        86400,
        _int(60, 30 * 86400),
        "Seconds the answer to a request carrying an Idempotency-Key is kept: the same "
        "request sent again with that key within this time is answered again, not carried "
        "out again (mdmctl retries with one when an answer is lost).",
    )
    user_names: tuple[str, ...] = _option(
        ("email", "domain", "plain"),
        _subset("email", "domain", "plain"),
        "The forms a new user's name may take (mdmctl user add): email (user@example.com, "
        "as Windows enrolls with a work account), domain (DOMAIN\\user) and plain (a name "
        "matching user_name_pattern); comma-separated.",
    )
    user_name_pattern: str = _option(
        "[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
        _regex,
        "The regular expression a plain user name must match whole.",
    )
    min_password_length: int = _option(
        8, _int(1, 1024), "The fewest characters of a user's password (mdmctl user add and password)."
    )


@dataclass(frozen=True)
class EnrollmentSection:
    """[enrollment]: how Windows devices enroll (MS-MDE2) and the DM account they get."""

    auth_policy: str = _option(
        "OnPremise",
        _choice("OnPremise", "Federated", "Certificate"),
        "How enrolling devices authenticate: OnPremise (user name and password in the SOAP "
        "messages), Federated (the user signs in on mdmd's web page and the device presents "
        "the token it got there) or Certificate (a client certificate from a provisioning "
        "package signs the requests).",
    )
    provider_id: str = _option(
        "mdmd",
        _str,
        "The DM server's identifier on devices (w7 PROVIDER-ID, DMClient provider and the "
        "server name in DM authentication). Changing it orphans enrolled devices.",
    )
    display_name: str = _option(
        "mdmd", _str, "The name devices show for this management server (w7 NAME)."
    )
    enrollment_version: str = _option(
        "3.0",
        _decimal_version,
        "The highest EnrollmentVersion answered to Discover; a device gets the lower of this "
        "and its own RequestVersion. Every RequestVersion is accepted.",
    )
    min_key_length: int = _option(
        2048,
        _int(1024, 16384),
        "Smallest RSA key accepted in a certificate request (XCEP minimalKeyLength).",
    )
    renewal_period_days: int = _option(
        60,
        _int(1, 1000),
        "Devices renew their certificate this many days before it expires (XCEP "
        "renewalPeriodSeconds, CertificateStore RenewPeriod); renewal requests are accepted "
        "from then on. The validity itself is [ca] client_cert_lifetime_days.",
    )
    renewal_retry_days: int = _option(
        4,
        _int(1, 1000),
        "Days between a device's renewal attempts (CertificateStore RetryInterval).",
    )
    default_encoding: str = _option(
        "application/vnd.syncml.dm+xml",
        _choice("application/vnd.syncml.dm+xml", "application/vnd.syncml.dm+wbxml"),
        "The encoding devices use for DM sessions (w7 DEFAULTENCODING).",
    )
    device_auth_type: str = _option(
        "DIGEST",
        _choice("DIGEST", "BASIC"),
        "How devices authenticate to the DM server (w7 APPSRV AAUTHTYPE): DIGEST "
        "(syncml:auth-md5) or BASIC. The server always authenticates to devices with DIGEST.",
    )
    poll_schedule: PollSchedule = _option(
        PollSchedule(3, 5, 15, 8, 480),
        _poll_schedule,
        "When devices poll the DM server, in minutes: every 3 minutes 5 times, every 15 "
        "minutes 8 times, then every 480 minutes for ever (an optional xCOUNT on the last "
        "interval limits it).",
    )
    poll_on_login: bool = _option(True, _bool, "Whether devices also poll when a user signs in.")
    connection_retries: int = _option(
        6, _int(0, 100), "How often a device retries a failed DM connection (w7 CONNRETRYFREQ)."
    )
    initial_backoff_ms: int = _option(
        30000,
        _int(1000, 86400000),
        "Milliseconds a device waits before its first connection retry; the wait doubles "
        "each time (w7 INITIALBACKOFFTIME).",
    )
    max_backoff_ms: int = _option(
        120000,
        _int(1000, 86400000),
        "Longest wait between connection retries, in milliseconds (w7 MAXBACKOFFTIME).",
    )
    federated_token_lifetime: int = _option(
        900,
        _int(60, 86400),
        "Seconds the token from the Federated sign-in page stays valid for GetPolicies and "
        "RequestSecurityToken.",
    )
    certificate_ca_file: str = _option(
        "",
        _str,
        "PEM file of the CAs whose client certificates may enroll devices under the "
        "Certificate policy; empty means certificates from mdmd's own CA only.",
    )


@dataclass(frozen=True)
class DMSection:
    """[dm]: OMA DM management sessions."""

    session_timeout: int = _option(
        1800,
        _int(30, 86400),
        "Seconds a DM session may stay idle between two messages before a new message "
        "starts a new session (and unanswered commands are sent again).",
    )
    max_message_size: int = _option(
        524288,
        _int(1024, 16 * 1024 * 1024),
        "Largest message sent to a device that announces no MaxMsgSize, in encoded bytes.",
    )
    max_object_size: int = _option(
        4194304,
        _int(1024, 64 * 1024 * 1024),
        "Largest object (one node value, possibly sent in chunks) accepted from a device; "
        "announced as MaxObjSize.",
    )
    max_auth_failures: int = _option(
        3,
        _int(1, 100),
        "Failed authentications of one device answered with a new challenge, counted across "
        "its sessions whatever their SessionID; the next failure ends the session and refuses "
        "the device for auth_lockout seconds. Every failure is logged and kept on the device "
        "record (mdmctl device show); a successful authentication clears the count.",
    )
    auth_lockout: int = _option(
        900,
        _int(1, 86400),
        "Seconds a device that failed authentication more than max_auth_failures times is "
        "refused (SyncML 417 Retry later, no challenge, its right credentials too). After as "
        "long without a failure its count starts afresh.",
    )
    require_client_certificate_windows: bool = _option(
        True,
        _bool,
        "Whether DM sessions of Windows devices need the TLS client certificate issued at "
        "their enrollment (Windows devices always present it). A device's own setting "
        "(mdmctl device set --client-certificate) comes first.",
        former="require_client_certificate",
    )
    send_server_credential: tuple[str, ...] = _option(
        ("omadm",),
        _subset("windows", "omadm"),
        "Device kinds mdmd authenticates itself to in its first reply of every session "
        "(its MD5, Basic or HMAC credential, until the device answers 212), as OMA DM "
        "devices require before they execute anything; comma-separated, empty for none. "
        "Other kinds get it once they ask (401/407). Windows authenticates the server by "
        "TLS and does not ask.",
    )
    require_client_certificate_omadm: bool = _option(
        False,
        _bool,
        "Whether DM sessions of classic OMA DM devices need a TLS client certificate (from "
        "mdmd's CA, or from a CA of [https] device_ca_file). Most have none: they "
        "authenticate with their DM credentials over server-authenticated TLS. A device's "
        "own setting comes first.",
    )
    inventory_windows: tuple[str, ...] = _option(
        (
            "./DevDetail/SwV",
            "./DevDetail/OEM",
            "./DevDetail/DevTyp",
            "./DevDetail/FwV",
            "./DevDetail/HwV",
            "./DevDetail/Ext/Microsoft/OSPlatform",
        ),
        _list,
        "Nodes read with Get after every enrollment of a Windows device (one Get each, "
        "comma-separated); the values are kept as the device's inventory. Empty disables it.",
        former="inventory",
    )
    inventory_omadm: tuple[str, ...] = _option(
        (
            "./DevInfo/DevId",
            "./DevInfo/Man",
            "./DevInfo/Mod",
            "./DevInfo/DmV",
            "./DevInfo/Lang",
            "./DevDetail/DevTyp",
            "./DevDetail/OEM",
            "./DevDetail/FwV",
            "./DevDetail/SwV",
            "./DevDetail/HwV",
            "./DevDetail/LrgObj",
            "./DevDetail/URI/MaxDepth",
            "./DevDetail/URI/MaxTotLen",
            "./DevDetail/URI/MaxSegLen",
        ),
        _list,
        "Nodes read with Get when a classic OMA DM device is registered (one Get each, "
        "comma-separated, in its first session): by default the standard DevInfo and "
        "DevDetail nodes of OMA DM 1.2. Empty disables it.",
    )


@dataclass(frozen=True)
class PushSection:
    """[push]: waking devices with OMA DM package #0 as WAP push SMS."""

    version: int = _option(
        11,
        _int(0, 1023),
        "The notification version written in package #0. 11 (\"1.1\") is what the OMA DM "
        "1.2 notification specification requires and what DM 1.2 clients accept; some "
        "device families want 12.",
    )
    ui_mode: str = _option(
        "background",
        _choice("not-specified", "background", "informative", "user-interaction"),
        "What the device is asked to show the user when the notification arrives.",
    )
    data_coding: str = _option(
        "0x04",
        _hex_choice(0x04, 0xF5),
        "SMS data coding: 0x04 (8-bit data) or 0xF5 (8-bit data, message class 1), which "
        "some networks and handsets want for WAP push.",
    )
    concat_iei: str = _option(
        "0x00",
        _hex_choice(0x00, 0x08),
        "How a notification too long for one SMS is concatenated: 0x00 (8-bit reference) "
        "or 0x08 (16-bit reference).",
    )
    expiry: int = _option(
        86400,
        _int(60),
        "Seconds after which a push the device has not answered (by opening the session it "
        "announced) is marked expired.",
    )
    retry_delay: int = _option(
        60,
        _int(1),
        "Seconds before a push the SMSC refused for now (throttled, queue full, system "
        "error, after the SMPP client's own retries) is submitted again.",
    )
    keep_days: int = _option(
        30, _int(0), "Days finished pushes (answered, failed, expired) are kept; 0 keeps them for ever."
    )
    spool_dir: str = _option(
        "spool",
        _str,
        "Without an SMSC ([smpp] host empty), each push is written to this directory as one "
        "JSON file (destination, session id, and each SMS segment's esm_class, data_coding and "
        "hex) for a gateway to pick up. A relative path is taken inside state_dir.",
    )
    local_ton: int = _option(
        0,
        _int(0, 6),
        "SMPP type of number for MSISDNs written without a leading + (0 unknown, 2 national). "
        "Numbers with + are sent as international (TON 1, NPI 1).",
    )
    local_npi: int = _option(
        1, _int(0, 18), "SMPP numbering plan for MSISDNs written without a leading + (1 ISDN/E.164)."
    )


@dataclass(frozen=True)
class SmppSection:
    """[smpp]: the operator's SMSC, reached as an SMPP 3.4 ESME."""

    host: str = _option(
        "",
        _str,
        "Host name or address of the SMSC. Empty means no SMSC: pushes go to [push] spool_dir.",
    )
    port: int = _option(2775, _int(1, 65535), "TCP port of the SMSC.")
    tls: bool = _option(
        False, _bool, "Whether to speak TLS to the SMSC (its certificate and host name are verified)."
    )
    ca_file: str = _option(
        "",
        _str,
        "PEM file of the CAs that may sign the SMSC's TLS certificate; empty means the system's "
        "trust store.",
    )
    connect_timeout: int = _option(30, _int(1), "Seconds a TCP (and TLS) connection attempt may take.")
    reconnect_max_delay: int = _option(
        60,
        _int(1),
        "Longest wait between reconnection attempts, in seconds (the wait starts at 1 s and "
        "grows by half each time).",
    )
    bind_type: str = _option(
        "transceiver",
        _choice("transceiver", "transmitter"),
        "transceiver receives the delivery receipts on the same connection; transmitter only "
        "submits (no receipts).",
    )
    system_id: str = _option("", _str, "The ESME's system_id (at most 15 characters).")
    password: str = _option("", _str, "The ESME's password (at most 8 characters).")
    system_type: str = _option("", _str, "system_type sent in the bind (often empty).")
    source_addr: str = _option(
        "", _str, "Source address of the SMS (a number or an alphanumeric sender; empty lets the SMSC choose)."
    )
    source_ton: int = _option(
        0, _int(0, 6), "Type of number of source_addr (0 unknown, 1 international, 5 alphanumeric)."
    )
    source_npi: int = _option(0, _int(0, 18), "Numbering plan of source_addr (0 unknown, 1 ISDN/E.164).")
    service_type: str = _option("", _str, "service_type of each submit_sm (e.g. WAP; usually empty).")
    registered_delivery: bool = _option(
        True, _bool, "Whether to ask the SMSC for delivery receipts (success or failure)."
    )
    validity_period: str = _option(
        "",
        _str,
        "SMS validity period in SMPP time format (e.g. 000001000000000R for one day); empty "
        "lets the SMSC choose.",
    )
    window: int = _option(10, _int(1, 1000), "Submits that may await their response at once.")
    throughput: float = _option(
        0.0, _float(0), "Most submits per second (0: as fast as the window allows)."
    )
    enquire_link_interval: int = _option(
        30, _int(1), "Seconds of silence after which the link is checked with enquire_link."
    )
    response_timeout: int = _option(
        30, _int(1), "Seconds to wait for any response before resending (submits) or reconnecting."
    )
    max_timeouts: int = _option(
        3, _int(1, 100), "Submits in a row without response after which the link is considered broken."
    )
    throttle_pause: float = _option(
        1.0, _float(0.001), "Seconds all sending pauses after ESME_RTHROTTLED or ESME_RMSGQFUL."
    )
    max_throttle_retries: int = _option(
        20, _int(0, 1000), "How often one segment is resent after throttling before the push is retried later."
    )
    temporary_retry_delay: int = _option(
        10, _int(1), "Seconds before resending a segment after another temporary error (e.g. ESME_RSYSERR)."
    )
    max_temporary_retries: int = _option(
        3, _int(0, 100), "How often a segment is resent after temporary errors before the push is retried later."
    )
    submit_id_base: str = _option(
        "text",
        _choice("text", "hex", "dec"),
        "How the SMSC spells message ids in submit_sm_resp (and receipted_message_id), for "
        "matching receipts: text (compared as is), hex or dec.",
    )
    receipt_id_base: str = _option(
        "text",
        _choice("text", "hex", "dec"),
        "How the SMSC spells the id in the text of delivery receipts (id:...); many SMSCs use "
        "dec there and hex in submit_sm_resp.",
    )


def _https_url(raw: str) -> str:
    value = raw.strip()
    if value and (urlsplit(value).scheme != "https" or not urlsplit(value).hostname):
        raise ValueError(f"expected an https:// URL, got {value!r}")
    return value


def _proxy_url(raw: str) -> str:
    value = raw.strip()
    if value and (urlsplit(value).scheme != "http" or not urlsplit(value).hostname):
        raise ValueError(f"expected http://HOST:PORT (a proxy that takes CONNECT), got {value!r}")
    return value


@dataclass(frozen=True)
class WnsSection:
    """[wns]: waking Windows devices through the Windows Notification Service (WNS)."""

    enabled: bool = _option(
        False,
        _bool,
        "Whether Windows devices get a WNS push channel and are woken through WNS. It needs the "
        "push application registered with Microsoft (see docs/operations.md).",
    )
    pfn: str = _option(
        "",
        _str,
        "The package family name of the push application (Partner Center), set on every Windows "
        "device (DMClient Provider/PROVIDER/Push/PFN).",
    )
    pfn_delivery: str = _option(
        "enrollment",
        _choice("enrollment", "session"),
        "How a device gets the PFN: in the provisioning document of its enrollment (and, for devices "
        "enrolled before, in their next DM session), or only in a DM session (Replace) after enrolling. "
        "Microsoft's DMClient description says the Push node is not configurable in WAP provisioning: "
        "choose session if enrollments fail with the PFN in the document.",
    )
    token_flow: str = _option(
        "classic",
        _choice("classic", "entra"),
        "How the access token is obtained: classic (package SID and client secret from Partner Center, "
        "against the Live token endpoint) or entra (an Entra ID app registration's client id and secret, "
        "client credentials for https://wns.windows.com/.default).",
    )
    package_sid: str = _option(
        "", _str, "classic: the application's package SID (ms-app://s-1-15-2-...)."
    )
    tenant_id: str = _option("", _str, "entra: the directory (tenant) id of the app registration.")
    client_id: str = _option("", _str, "entra: the application (client) id of the app registration.")
    secret_file: str = _option(
        "",
        _str,
        "File holding the client secret on its first line (mode 0600, owned by the daemon's user): "
        "the classic flow's client secret or the Entra app's. Checked when the daemon starts.",
    )
    token_url: str = _option(
        "",
        _https_url,
        "The token endpoint; empty means the flow's own: https://login.live.com/accesstoken.srf "
        "(classic) or https://login.microsoftonline.com/TENANT/oauth2/v2.0/token (entra).",
    )
    notify_url: str = _option(
        "",
        _https_url,
        "An https://HOST[:PORT] that notifications go to instead of each channel URI's host (the "
        "channel's path and query are kept): a private relay, or a test endpoint. Empty: the channel URI.",
    )
    channel_hosts: tuple[str, ...] = _option(
        ("notify.windows.com",),
        _list,
        "Hosts (and their subdomains) a channel URI may name; our access token is sent there, so a "
        "channel elsewhere is not used.",
    )
    ca_file: str = _option(
        "",
        _str,
        "PEM file of the CAs trusted for the token and notification endpoints; empty means the "
        "system's trust store.",
    )
    proxy: str = _option(
        "", _proxy_url, "An HTTP proxy (http://HOST:PORT) reached with CONNECT; empty connects directly."
    )
    concurrency: int = _option(
        50, _int(1, 10000), "Notifications in flight at once (and connections kept open to WNS)."
    )
    timeout: int = _option(30, _int(1, 600), "Seconds a request to WNS or the token endpoint may take.")
    max_attempts: int = _option(
        5,
        _int(1, 100),
        "Notifications sent for one push while WNS throttles it (406, 429) or fails (5xx, no answer), "
        "with a back-off doubling from 1 s; then it is tried again after [push] retry_delay, until it expires.",
    )
    refresh_days: int = _option(
        7,
        _int(1, 29),
        "Days between two reads of a device's Push/ChannelURI and Push/Status (WNS channels live 30 "
        "days; Windows renews them on its own).",
    )
    poll_interval: int = _option(
        1440,
        _int(0, 1000000),
        "With WNS enabled, the long-term poll interval in minutes handed to devices at enrollment "
        "(replacing the last interval of [enrollment] poll_schedule; Microsoft recommends more than "
        "24 hours with push). 0 keeps [enrollment] poll_schedule as it is.",
    )


@dataclass(frozen=True)
class ManholeSection:
    """[manhole]: a Python shell inside the running daemon, over telnet, for debugging."""

    enabled: bool = _option(
        False,
        _bool,
        "Whether to offer the manhole. Whoever logs in can read every secret the daemon holds "
        "(the CA key, device credentials).",
    )
    listen: ListenAddress = _option(
        ListenAddress("unix", path="manhole.sock"),
        _listen,
        "unix:PATH (socket mode 0600) or tcp:HOST:PORT on a loopback address; anything else "
        "is refused. A relative socket path is taken inside state_dir.",
    )
    password_file: str = _option(
        "",
        _str,
        "Logins, one NAME:HASH per line, the hash as written by mdmctl manhole-password "
        "(scrypt). Empty means STATE_DIR/manhole.passwd.",
    )


@dataclass(frozen=True)
class LimitsSection:
    """[limits]: what strangers can make mdmd do: password guessing, counted per node in memory."""

    password_failures_per_user: int = _option(
        5,
        _int(1, 1000),
        "Failed password checks of one user name (enrollment, the Federated sign-in page) "
        "after which each further check must wait 1, 2, 4, ... seconds, its answer held as long.",
    )
    password_failures_per_source: int = _option(
        20,
        _int(1, 100000),
        "The same for failed checks from one address (IPv6: one /64), whatever the user names.",
    )
    password_max_delay: int = _option(
        16,
        _int(1, 3600),
        "Longest wait between two checks, in seconds; a failure that would make a user name or "
        "address wait longer locks it out.",
    )
    password_lockout: int = _option(
        900,
        _int(1, 86400),
        "Seconds a locked-out user name or address is refused, the right password too (one "
        "warning is logged when it begins). After as long without a failure, its count starts "
        "afresh.",
    )
    password_tracked: int = _option(
        10000,
        _int(100, 10_000_000),
        "User names and addresses whose failures are remembered; the least recently used are "
        "forgotten first.",
    )
    password_checks: int = _option(
        1,
        _int(1, 64),
        "Password hashings (scrypt: about 0.1 s of a processor and 32 MiB of memory each) run "
        "at once. Keep it below the number of processors, so that hashing (a burst of "
        "guesses, a rush of new users) leaves a processor to everything else; a check of "
        "credentials seen in the last minutes needs none.",
    )
    password_queue: int = _option(
        128,
        _int(0, 10000),
        "Password checks that may wait for a turn; beyond that enrollment answers busy (SOAP "
        "s:EnrollmentServer, HTTP 503 with Retry-After).",
    )


@dataclass(frozen=True)
class ProfilesSection:
    """[profiles]: desired state: profiles assigned to groups, applied, verified and kept."""

    verify_interval: int = _option(
        86400,
        _int(1, 366 * 86400),
        "Seconds between two read-backs of a device's verified profile values, done in its "
        "first session after that: a value changed on the device is applied again (and the "
        "drift recorded), a failed profile version is tried again.",
    )
    push_batch: int = _option(
        500,
        _int(1, 10000),
        "How many devices one unit of work wakes when an assignment asks for a push "
        "(mdmctl profile assign --push): the group's members are read and pushed in pages of "
        "this size on the store's threads, after the assignment was answered.",
    )


@dataclass(frozen=True)
class Config:
    """
    A whole, validated configuration. Paths are absolute.
    """

    server: ServerSection = field(default_factory=ServerSection)
    https: HttpsSection = field(default_factory=HttpsSection)
    store: StoreSection = field(default_factory=StoreSection)
    ca: CASection = field(default_factory=CASection)
    admin: AdminSection = field(default_factory=AdminSection)
    enrollment: EnrollmentSection = field(default_factory=EnrollmentSection)
    dm: DMSection = field(default_factory=DMSection)
    push: PushSection = field(default_factory=PushSection)
    smpp: SmppSection = field(default_factory=SmppSection)
    wns: WnsSection = field(default_factory=WnsSection)
    manhole: ManholeSection = field(default_factory=ManholeSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    profiles: ProfilesSection = field(default_factory=ProfilesSection)

    @property
    def state_dir(self) -> str:
        return self.server.state_dir

    @property
    def store_uri(self) -> str:
        return self.store.uri or "file://" + os.path.join(self.state_dir, "Data.fs")

    @property
    def admin_token_file(self) -> str:
        return self.admin.token_file or os.path.join(self.state_dir, "admin.token")

    @property
    def manhole_password_file(self) -> str:
        return self.manhole.password_file or os.path.join(self.state_dir, "manhole.passwd")

    @property
    def listening_file(self) -> str:
        """
        Where the running daemon records the addresses it actually bound.
        """
        return os.path.join(self.state_dir, "listening.json")


def iter_options() -> Iterator[tuple[str, dataclasses.Field[Any]]]:
    """
    Every (section name, option field) of the schema, in declaration order.
    """
    for section in dataclasses.fields(Config):
        for option in dataclasses.fields(_section_type(section.name)):
            yield section.name, option


def _section_type(name: str) -> type:
    return type(getattr(Config(), name))


def format_default(option: dataclasses.Field[Any]) -> str:
    """
    The INI spelling of an option's default value.
    """
    value = option.default
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return ", ".join(value)
    if isinstance(value, PollSchedule):
        return str(value)
    if isinstance(value, ListenAddress):
        if value.kind == "unix":
            return str(value)
        return f"{value.host}:{value.port}"
    return str(value)


class IniParser(configparser.ConfigParser):
    """
    The INI syntax of mdmd's configuration files.
    """

    def optionxform(self, optionstr: str) -> str:
        """
        Option names are case-sensitive, like section names: keep them as
        written (configparser lower-cases them by default).
        """
        return optionstr


def load(path: str | None, base_dir: str | None = None) -> Config:
    """
    Load and validate the INI file at C{path}, or the development defaults when C{path} is None.

    Relative paths in the file (and the default C{state_dir}) are resolved
    against C{base_dir}, the working directory by default.

    @raise ConfigErrors: listing every problem found.
    """
    base = os.path.abspath(base_dir or os.getcwd())
    parser = IniParser(interpolation=None, empty_lines_in_values=False)
    errors: list[str] = []
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                parser.read_file(f, source=path)
        except OSError as e:
            raise ConfigErrors([f"cannot read {path}: {e.strerror}"]) from None
        except (configparser.Error, UnicodeDecodeError) as e:
            raise ConfigErrors([f"{path}: {e}".replace("\n", " ")]) from None

    known = {f.name: f for f in dataclasses.fields(Config)}
    for name in parser.sections():
        if name not in known:
            errors.append(f"[{name}]: unknown section (known: {', '.join(known)})")

    sections: dict[str, Any] = {}
    for name in known:
        section_type = _section_type(name)
        values: dict[str, Any] = {}
        options = {f.name: f for f in dataclasses.fields(section_type)}
        formers = {f.metadata["former"]: f for f in options.values() if f.metadata["former"]}
        if parser.has_section(name):
            for key, raw in parser.items(name):
                option = options.get(key) or formers.get(key)
                if option is None:
                    errors.append(f"[{name}] {key}: unknown option")
                    continue
                if option.name != key and parser.has_option(name, option.name):
                    errors.append(
                        f"[{name}] {key}: the former name of {option.name}; set only one of them"
                    )
                    continue
                try:
                    values[option.name] = option.metadata["parse"](raw)
                except ValueError as e:
                    errors.append(f"[{name}] {key}: {e}")
        sections[name] = section_type(**values)

    config = Config(**sections)
    config = _resolve_paths(config, base)
    if not config.server.hostname:
        config = dataclasses.replace(
            config, server=dataclasses.replace(config.server, hostname=socket.getfqdn())
        )
    errors.extend(_cross_checks(config))
    if errors:
        raise ConfigErrors(errors)
    return config


def _resolve_paths(config: Config, base: str) -> Config:
    state_dir = os.path.normpath(os.path.join(base, config.server.state_dir))

    def absolute(path: str, relative_to: str = base) -> str:
        return os.path.normpath(os.path.join(relative_to, path)) if path else ""

    def socket(address: ListenAddress) -> ListenAddress:
        if address.kind == "unix":
            return ListenAddress("unix", path=absolute(address.path, state_dir))
        return address

    store_uri = config.store.uri
    if store_uri.startswith("file://"):
        store_uri = "file://" + absolute(store_uri[len("file://") :])
    return dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, state_dir=state_dir),
        https=dataclasses.replace(
            config.https,
            cert_file=absolute(config.https.cert_file),
            key_file=absolute(config.https.key_file),
            chain_file=absolute(config.https.chain_file),
            device_ca_file=absolute(config.https.device_ca_file),
        ),
        store=dataclasses.replace(config.store, uri=store_uri),
        admin=dataclasses.replace(
            config.admin, listen=socket(config.admin.listen), token_file=absolute(config.admin.token_file)
        ),
        push=dataclasses.replace(config.push, spool_dir=absolute(config.push.spool_dir, state_dir)),
        smpp=dataclasses.replace(config.smpp, ca_file=absolute(config.smpp.ca_file)),
        wns=dataclasses.replace(
            config.wns, secret_file=absolute(config.wns.secret_file), ca_file=absolute(config.wns.ca_file)
        ),
        manhole=dataclasses.replace(
            config.manhole,
            listen=socket(config.manhole.listen),
            password_file=absolute(config.manhole.password_file),
        ),
        enrollment=dataclasses.replace(
            config.enrollment, certificate_ca_file=absolute(config.enrollment.certificate_ca_file)
        ),
    )


def _cross_checks(config: Config) -> list[str]:
    errors = []
    if not config.server.hostname:
        errors.append("[server] hostname: must not be empty")
    if bool(config.https.cert_file) != bool(config.https.key_file):
        errors.append("[https] cert_file and key_file: set both or neither")
    for option in ("cert_file", "key_file", "chain_file", "device_ca_file"):
        path = getattr(config.https, option)
        if path and not os.path.isfile(path):
            errors.append(f"[https] {option}: {path} does not exist")
    if not config.admin.listen.is_loopback:
        errors.append(
            f"[admin] listen: {config.admin.listen.host} is not a loopback address; "
            "the admin API listens on loopback or a UNIX socket only"
        )
    if config.store.uri.startswith("file://") and config.store.uri == "file://":
        errors.append("[store] uri: file:// needs a path")
    enrollment = config.enrollment
    if not enrollment.provider_id or any(c in enrollment.provider_id for c in "/\\\"<>&"):
        errors.append("[enrollment] provider_id: must be non-empty, without / \\ \" < > &")
    if not enrollment.display_name:
        errors.append("[enrollment] display_name: must not be empty")
    if enrollment.renewal_retry_days > enrollment.renewal_period_days:
        errors.append("[enrollment] renewal_retry_days: must not exceed renewal_period_days")
    if enrollment.renewal_period_days > config.ca.client_cert_lifetime_days:
        errors.append(
            "[enrollment] renewal_period_days: must not exceed [ca] client_cert_lifetime_days"
        )
    if enrollment.initial_backoff_ms > enrollment.max_backoff_ms:
        errors.append("[enrollment] initial_backoff_ms: must not exceed max_backoff_ms")
    if enrollment.certificate_ca_file and not os.path.isfile(enrollment.certificate_ca_file):
        errors.append(
            f"[enrollment] certificate_ca_file: {enrollment.certificate_ca_file} does not exist"
        )
    for option in ("inventory_windows", "inventory_omadm"):
        for uri in getattr(config.dm, option):
            try:
                normalize_uri(uri)
            except InvalidCommand as e:
                errors.append(f"[dm] {option}: {e}")
    errors.extend(_smpp_checks(config.smpp))
    errors.extend(_wns_checks(config.wns))
    if not config.push.spool_dir:
        errors.append("[push] spool_dir: must not be empty")
    manhole = config.manhole
    if not manhole.listen.is_loopback:
        errors.append(
            f"[manhole] listen: {manhole.listen.host} is not a loopback address; "
            "the manhole listens on loopback or a UNIX socket only"
        )
    return errors


#: SMPP 3.4 C-Octet String sizes, without the terminating NUL.
_SMPP_LIMITS = {
    "system_id": 15,
    "password": 8,
    "system_type": 12,
    "source_addr": 20,
    "service_type": 5,
    "validity_period": 16,
}


def _smpp_checks(smpp: SmppSection) -> list[str]:
    errors = []
    if smpp.host and not smpp.system_id:
        errors.append("[smpp] system_id: must be set when host is")
    for option, limit in _SMPP_LIMITS.items():
        value = getattr(smpp, option)
        if len(value.encode("utf-8")) > limit or not value.isascii():
            errors.append(f"[smpp] {option}: at most {limit} ASCII characters")
    if smpp.validity_period and len(smpp.validity_period) != 16:
        errors.append("[smpp] validity_period: expected 16 characters (YYMMDDhhmmsstnnp), or empty")
    if smpp.ca_file and not os.path.isfile(smpp.ca_file):
        errors.append(f"[smpp] ca_file: {smpp.ca_file} does not exist")
    return errors


def _wns_checks(wns: WnsSection) -> list[str]:
    """
    Only with C{enabled}: what the chosen flow needs. (The secret file is
    read when the daemon starts: mdmctl need not be able to read it.)
    """
    if not wns.enabled:
        return []
    errors = []
    needed = {"classic": ("package_sid",), "entra": ("tenant_id", "client_id")}[wns.token_flow]
    for option in ("pfn", "secret_file", *needed):
        if not getattr(wns, option):
            errors.append(f"[wns] {option}: must be set when WNS is enabled (token_flow {wns.token_flow})")
    if wns.ca_file and not os.path.isfile(wns.ca_file):
        errors.append(f"[wns] ca_file: {wns.ca_file} does not exist")
    if not wns.channel_hosts:
        errors.append("[wns] channel_hosts: must name at least one host")
    return errors


def render_example() -> str:
    """
    The text of C{etc/mdmd.conf}: every section and option, commented, with its default.
    """
    import textwrap

    lines = [
        "# mdmd configuration. Every option is listed with its default, commented out;",
        "# uncomment and change what you need. Start the daemon with",
        "#   twistd --nodaemon --pidfile= mdmd --config /path/to/mdmd.conf",
        "# Relative paths are taken from the daemon's working directory.",
    ]
    for section in dataclasses.fields(Config):
        section_type = _section_type(section.name)
        lines += ["", f"[{section.name}]"]
        doc = (section_type.__doc__ or "").strip()
        if doc:
            summary = doc.split(":", 1)[-1].strip()
            lines.append(f"# {summary[:1].upper()}{summary[1:]}")
        for option in dataclasses.fields(section_type):
            lines.append("")
            for text in textwrap.wrap(option.metadata["help"], width=86, break_on_hyphens=False):
                lines.append(f"# {text}")
            lines.append(f"#{option.name} = {format_default(option)}".rstrip())
    return "\n".join(lines) + "\n"


def render_reference() -> str:
    """
    The configuration reference as Markdown (kept in README.md, checked by a test).
    """
    lines = []
    for section in dataclasses.fields(Config):
        section_type = _section_type(section.name)
        summary = (section_type.__doc__ or "").strip().split(":", 1)[-1].strip()
        lines += [f"**[{section.name}]**: {summary}", "", "| option | default | meaning |", "|---|---|---|"]
        for option in dataclasses.fields(section_type):
            default = format_default(option) or "(empty)"
            text = option.metadata["help"].replace("|", "\\|")
            lines.append(f"| `{option.name}` | `{default}` | {text} |")
        lines.append("")
    return "\n".join(lines)
