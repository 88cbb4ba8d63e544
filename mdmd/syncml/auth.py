"""
OMA DM application-layer credentials: Basic, MD5 digest, HMAC, nonces (and package #0's hashes).

Everything here works on bytes and values. Nonces travel base64-encoded but
their decoded octets are what goes into the hash (OMA DM Security 5.1.3.2;
Windows w7 APPAUTH "octal form of the binary data"). A server may keep only
the credential hash C{B64(H(name:password))} instead of the password; every
check accepts either (C{password=} or C{stored_hash=}).

A bad credential is a value (C{False}); a credential that cannot even be
read (broken base64, a malformed header) raises L{AuthError}, a
L{PeerError}. Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from typing import Callable

from mdmd.errors import SOAP_AUTHENTICATION, PeerError

__all__ = [
    "AUTH_BASIC",
    "AUTH_MD5",
    "AUTH_MAC",
    "NONCE_SIZE",
    "AuthError",
    "credential_hash",
    "md5_digest",
    "md5_cred_data",
    "verify_md5",
    "basic_cred_data",
    "parse_basic",
    "verify_basic",
    "new_nonce",
    "encode_nonce",
    "decode_nonce",
    "HMACHeader",
    "parse_hmac_header",
    "format_hmac_header",
    "hmac_mac",
    "verify_hmac",
]

#: Meta Type of Cred/Chal per scheme (Format is always C{b64}).
AUTH_BASIC = "syncml:auth-basic"
AUTH_MD5 = "syncml:auth-md5"
AUTH_MAC = "syncml:auth-MAC"

#: Nonce length we issue: 128 bits, as OMA DM Security recommends.
NONCE_SIZE = 16


class AuthError(PeerError):
    """
    The peer's credential or HMAC header cannot be read at all.
    """

    http_status = 401
    syncml_status = 401
    soap_subcode = SOAP_AUTHENTICATION


def _utf8(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _b64decode(text: str | bytes, what: str) -> bytes:
    try:
        return base64.b64decode(_utf8(text).strip(), validate=True)
    except (binascii.Error, ValueError):
        raise AuthError(f"{what} is not base64") from None


def credential_hash(name: str | bytes, password: str | bytes) -> bytes:
    """
    C{B64(H(name ":" password))}: what a DM peer may store instead of the password.
    """
    return base64.b64encode(hashlib.md5(_utf8(name) + b":" + _utf8(password)).digest())


def _secret(name: str | bytes, password: str | bytes | None, stored_hash: bytes | None) -> bytes:
    if password is not None and stored_hash is None:
        return credential_hash(name, password)
    if stored_hash is not None and password is None:
        return stored_hash
    raise TypeError("give exactly one of password and stored_hash")


def md5_digest(name: str | bytes, password: str | bytes, nonce: bytes) -> bytes:
    """
    The raw 16-byte C{H(B64(H(name:password)) ":" nonce)} of C{syncml:auth-md5}.
    """
    return _digest(credential_hash(name, password), nonce)


def _digest(stored_hash: bytes, nonce: bytes) -> bytes:
    return hashlib.md5(stored_hash + b":" + nonce).digest()


def md5_cred_data(
    name: str | bytes,
    nonce: bytes,
    *,
    password: str | bytes | None = None,
    stored_hash: bytes | None = None,
) -> str:
    """
    The C{Cred/Data} text of an auth-md5 credential (base64 of the digest).
    """
    return base64.b64encode(_digest(_secret(name, password, stored_hash), nonce)).decode("ascii")


def verify_md5(
    cred_data: str | bytes,
    name: str | bytes,
    nonce: bytes,
    *,
    password: str | bytes | None = None,
    stored_hash: bytes | None = None,
) -> bool:
    """
    Whether an auth-md5 C{Cred/Data} matches C{name}'s secret and C{nonce} (the raw octets).

    @raise AuthError: if C{cred_data} is not base64.
    """
    received = _b64decode(cred_data, "MD5 credential")
    expected = _digest(_secret(name, password, stored_hash), nonce)
    return hmac.compare_digest(received, expected)


def basic_cred_data(name: str, password: str) -> str:
    """
    The C{Cred/Data} text of an auth-basic credential: C{B64(name ":" password)}.
    """
    return base64.b64encode(f"{name}:{password}".encode("utf-8")).decode("ascii")


def parse_basic(cred_data: str | bytes) -> tuple[str, str]:
    """
    The name and password of an auth-basic C{Cred/Data}.

    @raise AuthError: if it is not base64 of UTF-8 C{name:password}.
    """
    raw = _b64decode(cred_data, "Basic credential")
    name, colon, password = raw.partition(b":")
    if not colon:
        raise AuthError("Basic credential has no ':' between name and password")
    try:
        return name.decode("utf-8"), password.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthError("Basic credential is not UTF-8") from None


def verify_basic(cred_data: str | bytes, name: str, password: str) -> bool:
    """
    Whether an auth-basic C{Cred/Data} carries C{name} and C{password}.

    @raise AuthError: if it cannot be read.
    """
    got_name, got_password = parse_basic(cred_data)
    same_name = hmac.compare_digest(got_name.encode("utf-8"), name.encode("utf-8"))
    same_password = hmac.compare_digest(got_password.encode("utf-8"), password.encode("utf-8"))
    return same_name and same_password


def new_nonce(random: Callable[[int], bytes] = os.urandom) -> bytes:
    """
    A fresh nonce of L{NONCE_SIZE} octets from C{random} (a test may pass its own source).
    """
    nonce = random(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"random source gave {len(nonce)} bytes, not {NONCE_SIZE}")
    return nonce


def encode_nonce(nonce: bytes) -> str:
    """
    The C{NextNonce} text (Format C{b64}) for raw nonce octets.
    """
    return base64.b64encode(nonce).decode("ascii")


def decode_nonce(text: str | bytes) -> bytes:
    """
    The raw octets of a received C{NextNonce}: these, not the text, go into digests.

    @raise AuthError: if C{text} is not base64.
    """
    return _b64decode(text, "NextNonce")


@dataclass(frozen=True)
class HMACHeader:
    """
    The parsed C{x-syncml-hmac} HTTP header.
    """

    username: str
    mac: str
    algorithm: str = "MD5"


# name = token / quoted-string, comma separated (OMA DM Security 5.1.4.2).
_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]*)\s*(?:,|\Z)')


def parse_hmac_header(value: str | bytes) -> HMACHeader:
    """
    Parse C{algorithm=MD5, username="...", mac=...} (algorithm optional, names case-insensitive).

    @raise AuthError: if the header is malformed, lacks username or mac, or names another algorithm.
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(value):
        match = _PARAM.match(value, pos)
        if match is None or match.end() == pos:
            raise AuthError(f"malformed x-syncml-hmac header: {value[:80]!r}")
        name, raw = match.group(1).lower(), match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[name] = raw
        pos = match.end()
    for required in ("username", "mac"):
        if not params.get(required):
            raise AuthError(f"x-syncml-hmac header has no {required}")
    algorithm = params.get("algorithm", "MD5")
    if algorithm.upper() != "MD5":
        raise AuthError(f"x-syncml-hmac algorithm {algorithm!r} is not supported")
    return HMACHeader(username=params["username"], mac=params["mac"], algorithm="MD5")


def format_hmac_header(username: str, mac: str) -> str:
    """
    The C{x-syncml-hmac} header value for our own messages.
    """
    quoted = username.replace("\\", "\\\\").replace('"', '\\"')
    return f'algorithm=MD5, username="{quoted}", mac={mac}'


def hmac_mac(
    name: str | bytes,
    nonce: bytes,
    body: bytes,
    *,
    password: str | bytes | None = None,
    stored_hash: bytes | None = None,
) -> str:
    """
    C{B64(H(B64(H(name:password)) ":" nonce ":" B64(H(body))))} over the exact body bytes.
    """
    body_hash = base64.b64encode(hashlib.md5(body).digest())
    secret = _secret(name, password, stored_hash)
    return base64.b64encode(hashlib.md5(secret + b":" + nonce + b":" + body_hash).digest()).decode(
        "ascii"
    )


def verify_hmac(
    header: HMACHeader,
    nonce: bytes,
    body: bytes,
    *,
    password: str | bytes | None = None,
    stored_hash: bytes | None = None,
) -> bool:
    """
    Whether C{header}'s MAC is the MAC of C{body} for C{header.username}'s secret and C{nonce}.
    """
    expected = hmac_mac(header.username, nonce, body, password=password, stored_hash=stored_hash)
    return hmac.compare_digest(header.mac.encode("ascii", "replace"), expected.encode("ascii"))
