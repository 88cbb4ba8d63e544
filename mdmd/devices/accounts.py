"""
Device kinds and DM accounts: who a device is to mdmd, and how each side proves it.

A device is of one L{DeviceKind}: C{windows} (created by its MS-MDE2
enrollment, which also hands it its account) or C{omadm} (a classic OMA DM
device whose account an operator registers). Its L{DeviceAccount} is one
frozen value: the server id it knows us by, the credential it proves itself
with (APPSRV: scheme, name, secret, nonce), the one we prove ourselves with
(CLIENT, which also signs package #0), its MSISDN and IMSI, and whether its
TLS connection must carry a client certificate.

What an operator gives (on the command line, in the admin API's JSON, in a
CSV row) is parsed by L{parse_fields} into L{AccountFields}, every field
optional, and then either L{complete}d into a new account (defaults filled
in, secrets and nonces generated) or applied to an existing one
(L{edited}). Every problem of one input is reported at once, in one
L{InvalidAccount}, naming fields and never echoing a secret. The operator's
spelling of a value (C{digest}, base64 nonces, C{default}) and the stored
one (C{DIGEST}, raw nonce octets, C{""}) are translated here only:
L{account_of} reads a record, L{store_account} writes one.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from mdmd.dm.authentication import AuthScheme, Credentials
from mdmd.errors import PeerError
from mdmd.store.models import Device
from mdmd.syncml import auth

__all__ = [
    "DeviceKind",
    "ClientCertificate",
    "InvalidAccount",
    "AccountFields",
    "DeviceAccount",
    "FIELDS",
    "SECRETS",
    "NONCES",
    "CLEARABLE",
    "MAX_NONCE",
    "parse_fields",
    "complete",
    "edited",
    "account_of",
    "store_account",
    "public_json",
    "as_row",
    "generate_secret",
    "requires_certificate",
    "valid_server_id",
]


class DeviceKind(enum.Enum):
    """
    What made a device and speaks for it; stored as C{Device.kind}.
    """

    #: enrolled by MS-MDE2, which hands out its account and certificate
    WINDOWS = "windows"
    #: a classic OMA DM device (handset, modem, IoT), registered by an operator
    OMADM = "omadm"


class ClientCertificate(enum.Enum):
    """
    Whether a device's DM sessions need a TLS client certificate; stored as C{Device.client_certificate}.
    """

    #: the default of the device's kind ([dm] require_client_certificate_windows / _omadm)
    DEFAULT = ""
    REQUIRED = "required"
    OPTIONAL = "optional"


class InvalidAccount(PeerError):
    """
    Fields of a DM account are not acceptable; the message names each problem.
    """

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


#: The account's fields, as operators name them (options, JSON keys, CSV columns).
FIELDS: Final = (
    "server_id",
    "client_auth",
    "client_name",
    "client_secret",
    "client_nonce",
    "server_auth",
    "server_name",
    "server_secret",
    "server_nonce",
    "msisdn",
    "imsi",
    "client_certificate",
)
#: Never shown once stored: only whether they are set.
SECRETS: Final = ("client_secret", "server_secret")
#: Travel base64-encoded, are kept as raw octets; public on the wire, so shown.
NONCES: Final = ("client_nonce", "server_nonce")
#: An edit may clear these with "" (back to the default, or none).
CLEARABLE: Final = ("server_id", "msisdn", "imsi", "client_certificate")
#: The longest nonce accepted, in octets (we issue 16).
MAX_NONCE: Final = 64
#: The longest name or secret accepted, in characters.
MAX_TEXT: Final = 255

_IMSI = re.compile(r"[0-9]{6,15}")
_SERVER_ID_FORBIDDEN = frozenset('/\\"<>&')
_T = TypeVar("_T")
#: Octets of randomness in a generated secret (192 bits; 32 characters of URL-safe base64).
_SECRET_BYTES = 24


@dataclass(frozen=True)
class AccountFields:
    """
    What an operator gave for an account; None: not given (keep, or use the default).

    C{""} in a L{CLEARABLE} field clears it (C{server_id}: the configured
    provider id again; C{client_certificate}: L{ClientCertificate.DEFAULT}).
    """

    server_id: str | None = None
    client_auth: AuthScheme | None = None
    client_name: str | None = None
    client_secret: str | None = None
    client_nonce: bytes | None = None
    server_auth: AuthScheme | None = None
    server_name: str | None = None
    server_secret: str | None = None
    server_nonce: bytes | None = None
    msisdn: str | None = None
    imsi: str | None = None
    client_certificate: ClientCertificate | None = None

    def given(self) -> dict[str, Any]:
        """
        The fields that were given, by name.
        """
        return {f: getattr(self, f) for f in FIELDS if getattr(self, f) is not None}


@dataclass(frozen=True)
class DeviceAccount:
    """
    A device's whole DM account, as L{store_account} keeps it.

    C{client} (w7 APPSRV) is how the device proves itself to us, with
    C{client_auth}; C{server} (w7 CLIENT) is how we prove ourselves to the
    device, with C{server_auth}; each nonce is the one the verifier expects
    next. An empty C{server_id} means the configured C{[enrollment]
    provider_id}.
    """

    server_id: str
    client_auth: AuthScheme
    client: Credentials
    server_auth: AuthScheme
    server: Credentials
    msisdn: str = ""
    imsi: str = ""
    client_certificate: ClientCertificate = ClientCertificate.DEFAULT

    def value(self, name: str) -> Any:
        """
        The field C{name} of L{FIELDS}, in its L{AccountFields} type.
        """
        credential, _, part = name.partition("_")
        if part in ("name", "secret", "nonce"):
            return getattr(self.client if credential == "client" else self.server, part)
        return getattr(self, name)


# -- parsing what an operator gave ------------------------------------------------------------


def _plain(value: str) -> str:
    """
    A name or secret as given (the reason never repeats the value: it may be a secret).
    """
    if len(value) > MAX_TEXT:
        raise ValueError(f"at most {MAX_TEXT} characters")
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    if value != value.strip():
        raise ValueError("must not start or end with blanks")
    return value


def _scheme(value: str) -> AuthScheme:
    try:
        return AuthScheme(value.strip().lower())
    except ValueError:
        choices = ", ".join(s.value for s in AuthScheme)
        raise ValueError(f"expected one of {choices}, got {value.strip()!r}") from None


def _nonce(value: str) -> bytes:
    try:
        octets = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if not octets:
        raise ValueError("must not be empty")
    if len(octets) > MAX_NONCE:
        raise ValueError(f"at most {MAX_NONCE} octets")
    return octets


def valid_server_id(value: str) -> bool:
    """
    Whether C{value} may be a server id (the rule of C{[enrollment] provider_id}).
    """
    return bool(value) and len(value) <= MAX_TEXT and value.isprintable() and not (
        _SERVER_ID_FORBIDDEN & set(value)
    )


def _server_id(value: str) -> str:
    value = value.strip()
    if value and not valid_server_id(value):
        raise ValueError("must be printable, without / \\ \" < > &")
    return value


def _msisdn(value: str) -> str:
    if not value.strip():
        return ""
    # notify.jobs imports the device lifecycle, which may come to need this
    # module: importing it here, when a number is parsed, keeps that possible.
    from mdmd.notify.jobs import InvalidMsisdn, parse_msisdn

    try:
        return parse_msisdn(value)
    except InvalidMsisdn as e:
        raise ValueError(str(e)) from None


def _imsi(value: str) -> str:
    value = value.strip()
    if value and not _IMSI.fullmatch(value):
        raise ValueError(f"expected 6 to 15 digits, got {value!r}")
    return value


def _certificate(value: str) -> ClientCertificate:
    value = value.strip().lower()
    if value in ("", "default"):
        return ClientCertificate.DEFAULT
    try:
        return ClientCertificate(value)
    except ValueError:
        raise ValueError(f"expected required, optional or default, got {value!r}") from None


#: field → parser of its text (ValueError with a short reason).
_PARSERS: Final[Mapping[str, Callable[[str], Any]]] = {
    "server_id": _server_id,
    "client_auth": _scheme,
    "client_name": _plain,
    "client_secret": _plain,
    "client_nonce": _nonce,
    "server_auth": _scheme,
    "server_name": _plain,
    "server_secret": _plain,
    "server_nonce": _nonce,
    "msisdn": _msisdn,
    "imsi": _imsi,
    "client_certificate": _certificate,
}


def parse_fields(raw: Mapping[str, object], *, clearing: bool = False) -> AccountFields:
    """
    Parse what an operator gave (text values by field name; None: not given).

    For a new account (C{clearing} false) an empty value is "not given", as
    an empty CSV cell is. For an edit (C{clearing} true) it clears a
    L{CLEARABLE} field and is refused for any other.

    @raise InvalidAccount: naming every field that is unknown or not acceptable.
    """
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name in raw:
        if name not in _PARSERS:
            problems.append(f"unknown field {name!r} (fields: {', '.join(FIELDS)})")
    for name, parse in _PARSERS.items():
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            problems.append(f"{name}: must be a string or null")
            continue
        if not value.strip() and not (clearing and name in CLEARABLE):
            if clearing:
                problems.append(f"{name}: must not be empty")
            continue
        try:
            values[name] = parse(value)
        except ValueError as e:
            problems.append(f"{name}: {e}")
    if problems:
        raise InvalidAccount(problems)
    return AccountFields(**values)


# -- whole accounts ---------------------------------------------------------------------------


def generate_secret(random: Callable[[int], bytes]) -> str:
    """
    A strong random secret (192 bits as 32 characters of URL-safe base64).
    """
    return base64.urlsafe_b64encode(random(_SECRET_BYTES)).decode("ascii")


def _check(account: DeviceAccount) -> None:
    """
    What each scheme needs of its credential's name.

    @raise InvalidAccount: naming every problem.
    """
    problems = []
    for side, scheme, credential in (
        ("client", account.client_auth, account.client),
        ("server", account.server_auth, account.server),
    ):
        if scheme is AuthScheme.BASIC and ":" in credential.name:
            problems.append(f"{side}_name: a Basic credential's name cannot contain ':'")
        if scheme is AuthScheme.HMAC and '"' in credential.name:
            problems.append(f"{side}_name: an HMAC credential's name cannot contain '\"'")
    if problems:
        raise InvalidAccount(problems)


def complete(
    fields: AccountFields, device_id: str, default_server_id: str, random: Callable[[int], bytes]
) -> tuple[DeviceAccount, tuple[str, ...]]:
    """
    A new account from what was given; return it and the names of the secrets generated.

    Not given: the schemes are digest, the client name is the device id, the
    server name is the server id (C{default_server_id} when none is given),
    secrets are generated with L{generate_secret} and nonces are fresh.

    @raise InvalidAccount: if a name does not suit its scheme.
    """
    generated = tuple(name for name in SECRETS if getattr(fields, name) is None)
    server_id = fields.server_id or ""
    account = DeviceAccount(
        server_id=server_id,
        client_auth=fields.client_auth or AuthScheme.DIGEST,
        client=Credentials(
            fields.client_name or device_id,
            fields.client_secret or generate_secret(random),
            fields.client_nonce or auth.new_nonce(random),
        ),
        server_auth=fields.server_auth or AuthScheme.DIGEST,
        server=Credentials(
            fields.server_name or server_id or default_server_id,
            fields.server_secret or generate_secret(random),
            fields.server_nonce or auth.new_nonce(random),
        ),
        msisdn=fields.msisdn or "",
        imsi=fields.imsi or "",
        client_certificate=fields.client_certificate or ClientCertificate.DEFAULT,
    )
    _check(account)
    return account, generated


def edited(account: DeviceAccount, fields: AccountFields) -> DeviceAccount:
    """
    C{account} with the fields that were given replaced.

    @raise InvalidAccount: if a name does not suit its scheme.
    """

    def pick(given: _T | None, current: _T) -> _T:
        return current if given is None else given

    changed = DeviceAccount(
        server_id=pick(fields.server_id, account.server_id),
        client_auth=pick(fields.client_auth, account.client_auth),
        client=Credentials(
            pick(fields.client_name, account.client.name),
            pick(fields.client_secret, account.client.secret),
            pick(fields.client_nonce, account.client.nonce),
        ),
        server_auth=pick(fields.server_auth, account.server_auth),
        server=Credentials(
            pick(fields.server_name, account.server.name),
            pick(fields.server_secret, account.server.secret),
            pick(fields.server_nonce, account.server.nonce),
        ),
        msisdn=pick(fields.msisdn, account.msisdn),
        imsi=pick(fields.imsi, account.imsi),
        client_certificate=pick(fields.client_certificate, account.client_certificate),
    )
    _check(changed)
    return changed


def _stored_scheme(value: str) -> AuthScheme:
    """
    The scheme a record names by its w7 AAUTHTYPE (C{DIGEST}, C{BASIC}, C{HMAC}).
    """
    return AuthScheme[value.upper()]


def account_of(device: Device) -> DeviceAccount:
    """
    The account a record holds.
    """
    return DeviceAccount(
        server_id=device.dm_server_id,
        client_auth=_stored_scheme(device.dm_client_auth_type),
        client=Credentials(device.dm_client_name, device.dm_client_secret, device.dm_client_nonce),
        server_auth=_stored_scheme(device.dm_server_auth_type),
        server=Credentials(device.dm_server_name, device.dm_server_secret, device.dm_server_nonce),
        msisdn=device.msisdn,
        imsi=device.imsi,
        client_certificate=ClientCertificate(device.client_certificate or ""),
    )


def store_account(device: Device, account: DeviceAccount) -> None:
    """
    Keep C{account} in the record, as plain values (schemes as their w7
    AAUTHTYPE names, nonces as raw octets); an unchanged attribute is not
    written again.
    """
    values = {
        "dm_server_id": account.server_id,
        "dm_client_auth_type": account.client_auth.name,
        "dm_client_name": account.client.name,
        "dm_client_secret": account.client.secret,
        "dm_client_nonce": account.client.nonce,
        "dm_server_auth_type": account.server_auth.name,
        "dm_server_name": account.server.name,
        "dm_server_secret": account.server.secret,
        "dm_server_nonce": account.server.nonce,
        "msisdn": account.msisdn,
        "imsi": account.imsi,
        "client_certificate": account.client_certificate.value,
    }
    for attribute, value in values.items():
        if getattr(device, attribute) != value:
            setattr(device, attribute, value)


def _spelled(name: str, value: Any) -> str:
    """
    The operator's spelling of a field's value.
    """
    if isinstance(value, AuthScheme):
        return value.value
    if isinstance(value, ClientCertificate):
        return value.value or "default"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def public_json(account: DeviceAccount) -> dict[str, str]:
    """
    The account as operators see it: every field, secrets only as "set" or "not set".
    """
    return {
        name: ("set" if account.value(name) else "not set") if name in SECRETS else _spelled(name, account.value(name))
        for name in FIELDS
    }


def as_row(account: DeviceAccount) -> dict[str, str]:
    """
    Every field of the account, secrets included, as an import row spells it
    (C{client_certificate} "" for the kind's default).
    """
    row = {name: _spelled(name, account.value(name)) for name in FIELDS}
    row["client_certificate"] = account.client_certificate.value
    return row


def requires_certificate(requirement: str, kind: str, kind_defaults: Mapping[DeviceKind, bool]) -> bool:
    """
    Whether a device's DM sessions need a TLS client certificate: its own
    setting (C{Device.client_certificate}, or as L{public_json} spells it),
    else its kind's default.
    """
    setting = _certificate(requirement)
    if setting is ClientCertificate.DEFAULT:
        return kind_defaults[DeviceKind(kind)]
    return setting is ClientCertificate.REQUIRED
