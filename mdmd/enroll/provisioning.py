"""
The C{wap-provisioningdoc} a device receives when it enrolls or renews: the
certificates it installs and the DM account (w7 APPLICATION, DMClient) that
points its DM client at mdmd.

The shape follows Microsoft's enrollment sample, with the lessons of devices
in the field: exactly three top-level characteristics (CertificateStore,
APPLICATION, DMClient; an extra one fails with 0x83750005); upper-case w7
names; both APPAUTH levels, each with a random binary nonce (a literal
placeholder fails on recent builds with 0x80070057); a poll schedule that
backs off; a search criteria string that selects exactly our certificate.
The parser is the device's side, used by the emulator and the tests.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from mdmd.config import PollSchedule
from mdmd.enroll.soap import children, escape, local
from mdmd.pki.ca import thumbprint
from mdmd.xmlparser import parse

__all__ = [
    "DMAccount",
    "DMCredentials",
    "Characteristic",
    "certificate_store",
    "search_criteria",
    "enrollment_document",
    "renewal_document",
    "parse_document",
    "NONCE_BYTES",
]

#: Bytes of each random nonce (OMA DM Security recommends at least 128 bits).
NONCE_BYTES = 16


@dataclass(frozen=True)
class DMAccount:
    """
    The DM account settings every device gets (from the configuration).
    """

    provider_id: str
    name: str
    dm_url: str
    connection_retries: int
    initial_backoff_ms: int
    max_backoff_ms: int
    default_encoding: str
    poll: PollSchedule
    poll_on_login: bool
    renew_period_days: int
    renew_retry_days: int
    #: the package family name of our WNS push application (DMClient Push/PFN), or ""
    push_pfn: str = ""


@dataclass(frozen=True)
class DMCredentials:
    """
    One device's DM credentials, as handed out in w7 APPAUTH and kept in its record.

    C{client_*} (APPSRV level) is how the device authenticates to us; its
    nonce is the one we expect in the device's next digest. C{server_*}
    (CLIENT level) is how we authenticate to the device and sign package #0;
    its nonce is the one the device expects from us next. Nonces are raw bytes.
    """

    client_name: str
    client_secret: str
    client_auth_type: str
    client_nonce: bytes
    server_name: str
    server_secret: str
    server_nonce: bytes

    @classmethod
    def generate(
        cls,
        client_name: str,
        server_name: str,
        client_auth_type: str,
        random_bytes: Callable[[int], bytes],
    ) -> DMCredentials:
        """
        Fresh per-device secrets and nonces from C{random_bytes} (C{os.urandom} in production).
        """
        return cls(
            client_name=client_name,
            client_secret=_secret(random_bytes),
            client_auth_type=client_auth_type,
            client_nonce=random_bytes(NONCE_BYTES),
            server_name=server_name,
            server_secret=_secret(random_bytes),
            server_nonce=random_bytes(NONCE_BYTES),
        )


def _secret(random_bytes: Callable[[int], bytes]) -> str:
    return base64.urlsafe_b64encode(random_bytes(24)).decode("ascii")


def certificate_store(enrollment_type: str) -> str:
    """
    Where the device keeps its MDM certificate: C{System} for device-scoped enrollments.
    """
    return "System" if enrollment_type.strip().lower() == "device" else "User"


def search_criteria(subject: str, store: str) -> str:
    """
    The w7 SSLCLIENTCERTSEARCHCRITERIA selecting a certificate by subject in C{My/store}.

    Values are URI-escaped with %20 for spaces (Windows does not read C{+}).
    """
    stores = quote("My\\" + store, safe="")
    return f"Subject={quote(subject, safe='')}&Stores={stores}"


def _parm(name: str, value: str | int | None = None, datatype: str | None = None) -> str:
    if value is None:
        return f'<parm name="{name}"/>'
    if isinstance(value, bool):
        value = "true" if value else "false"
    kind = f' datatype="{datatype}"' if datatype else ""
    return f'<parm name="{name}" value="{escape(str(value))}"{kind}/>'


def _certificate(der: bytes, extra: str = "") -> str:
    return (
        f'<characteristic type="{thumbprint(der)}">'
        f'{_parm("EncodedCertificate", base64.b64encode(der).decode("ascii"))}{extra}'
        "</characteristic>"
    )


def _certificate_store(roots: Sequence[bytes], store: str, client: str) -> list[str]:
    """
    The opening of CertificateStore: the roots in Root/System (ours first),
    then My/<store> holding C{client} (left open for what follows it).
    """
    return [
        '<characteristic type="CertificateStore">',
        '<characteristic type="Root"><characteristic type="System">',
        *(_certificate(der) for der in roots),
        "</characteristic></characteristic>",
        f'<characteristic type="My"><characteristic type="{store}">',
        client,
    ]


def _app_auth(level: str, auth_type: str, name: str, secret: str, nonce: bytes) -> str:
    """
    One w7 APPAUTH credential (no AAUTHNAME for CLIENT, as in Microsoft's sample).
    """
    return "".join(
        [
            '<characteristic type="APPAUTH">',
            _parm("AAUTHLEVEL", level),
            _parm("AAUTHTYPE", auth_type),
            _parm("AAUTHNAME", name) if name else "",
            _parm("AAUTHSECRET", secret),
            _parm("AAUTHDATA", base64.b64encode(nonce).decode("ascii")),
            "</characteristic>",
        ]
    )


def enrollment_document(
    *,
    root_der: bytes,
    client_der: bytes,
    store: str,
    device_id: str,
    device_name: str,
    upn: str,
    credentials: DMCredentials,
    account: DMAccount,
    extra_roots: Sequence[bytes] = (),
) -> bytes:
    """
    The provisioning document answering a new enrollment.

    @param root_der: our CA, which issued C{client_der}.
    @param extra_roots: other roots the device must trust: the root of an
        operator-supplied TLS server certificate's chain.
    """
    poll = account.poll
    parts = [
        '<wap-provisioningdoc version="1.1">',
        *_certificate_store((root_der, *extra_roots), store, _certificate(client_der)),
        '<characteristic type="PrivateKeyContainer"/>',
        "</characteristic>",
        '<characteristic type="WSTEP"><characteristic type="Renew">',
        _parm("ROBOSupport", True, "boolean"),
        _parm("RenewPeriod", account.renew_period_days, "integer"),
        _parm("RetryInterval", account.renew_retry_days, "integer"),
        "</characteristic></characteristic>",
        "</characteristic></characteristic>",
        '<characteristic type="APPLICATION">',
        _parm("APPID", "w7"),
        _parm("PROVIDER-ID", account.provider_id),
        _parm("NAME", account.name),
        _parm("ADDR", account.dm_url),
        _parm("CONNRETRYFREQ", account.connection_retries),
        _parm("INITIALBACKOFFTIME", account.initial_backoff_ms),
        _parm("MAXBACKOFFTIME", account.max_backoff_ms),
        _parm("BACKCOMPATRETRYDISABLED"),
        _parm("DEFAULTENCODING", account.default_encoding),
        _parm("SSLCLIENTCERTSEARCHCRITERIA", search_criteria(f"CN={device_id}", store)),
        _app_auth("CLIENT", "DIGEST", "", credentials.server_secret, credentials.server_nonce),
        _app_auth(
            "APPSRV",
            credentials.client_auth_type,
            credentials.client_name,
            credentials.client_secret,
            credentials.client_nonce,
        ),
        "</characteristic>",
        '<characteristic type="DMClient"><characteristic type="Provider">',
        f'<characteristic type="{escape(account.provider_id)}">',
        _parm("EntDMID", device_id, "string"),
    ]
    if device_name:
        parts.append(_parm("EntDeviceName", device_name, "string"))
    if upn:
        parts.append(_parm("UPN", upn, "string"))
    parts += [
        '<characteristic type="Poll">',
        _parm("NumberOfFirstRetries", poll.first_count, "integer"),
        _parm("IntervalForFirstSetOfRetries", poll.first_interval, "integer"),
        _parm("NumberOfSecondRetries", poll.second_count, "integer"),
        _parm("IntervalForSecondSetOfRetries", poll.second_interval, "integer"),
        _parm("NumberOfRemainingScheduledRetries", poll.remaining_count, "integer"),
        _parm("IntervalForRemainingScheduledRetries", poll.remaining_interval, "integer"),
        _parm("PollOnLogin", account.poll_on_login, "boolean"),
        "</characteristic>",
    ]
    if account.push_pfn:
        parts += ['<characteristic type="Push">', _parm("PFN", account.push_pfn, "string"), "</characteristic>"]
    parts += [
        "</characteristic></characteristic></characteristic>",
        "</wap-provisioningdoc>",
    ]
    return "".join(parts).encode("utf-8")


def renewal_document(
    *, root_der: bytes, client_der: bytes, store: str, provider_id: str, extra_roots: Sequence[bytes] = ()
) -> bytes:
    """
    The provisioning document answering a renewal: the new certificate, and
    the provider it belongs to (Microsoft's renewal sample); roots as for an enrollment.
    """
    return "".join(
        [
            '<wap-provisioningdoc version="1.1">',
            *_certificate_store(
                (root_der, *extra_roots), store, _certificate(client_der, '<characteristic type="PrivateKeyContainer"/>')
            ),
            "</characteristic></characteristic>",
            "</characteristic>",
            '<characteristic type="APPLICATION">',
            _parm("PROVIDER-ID", provider_id),
            "</characteristic>",
            "</wap-provisioningdoc>",
        ]
    ).encode("utf-8")


# --- the device's side ---------------------------------------------------------------------


@dataclass(frozen=True)
class Characteristic:
    """
    One C{characteristic} of a provisioning document, with its parms in order.
    """

    type: str
    parms: tuple[tuple[str, str | None, str | None], ...]
    children: tuple[Characteristic, ...]

    def get(self, *path: str) -> Characteristic | None:
        """
        The descendant reached through C{path} (first match at each step), or None.
        """
        node: Characteristic | None = self
        for step in path:
            if node is None:
                return None
            node = next((c for c in node.children if c.type == step), None)
        return node

    def all(self, type: str) -> Iterator[Characteristic]:
        """
        The direct children of type C{type}.
        """
        return (c for c in self.children if c.type == type)

    def parm(self, name: str) -> str | None:
        """
        The value of the first parm called C{name} ("" for a valueless parm, None if absent).
        """
        for found, value, _ in self.parms:
            if found == name:
                return "" if value is None else value
        return None

    def has_parm(self, name: str) -> bool:
        return any(found == name for found, _, _ in self.parms)


def parse_document(data: bytes) -> Characteristic:
    """
    Read a C{wap-provisioningdoc} into a tree whose root has type C{wap-provisioningdoc}.

    @raise ValueError: if it is not one.
    """
    root = parse(data)
    if local(root) != "wap-provisioningdoc":
        raise ValueError(f"expected wap-provisioningdoc, got {local(root)}")
    return _characteristic(root, "wap-provisioningdoc")


def _characteristic(element: object, type_: str) -> Characteristic:
    parms = tuple(
        (p.get("name", ""), p.get("value"), p.get("datatype"))
        for p in children(element, "parm")
    )
    kids = tuple(
        _characteristic(c, c.get("type", ""))
        for c in children(element, "characteristic")
    )
    return Characteristic(type_, parms, kids)
