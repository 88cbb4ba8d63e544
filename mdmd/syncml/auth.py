"""
OMA DM application-layer credentials: the hashes behind auth-md5, HMAC and package #0.

Everything here works on bytes. Nonces travel base64-encoded but their
decoded octets are what goes into the hash (OMA DM Security 5.1.3.2; Windows
w7 APPAUTH "octal form of the binary data").
"""

from __future__ import annotations

import base64
import hashlib


def _utf8(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def credential_hash(name: str | bytes, password: str | bytes) -> bytes:
    """
    C{B64(H(name ":" password))}: what a DM peer may store instead of the password.
    """
    return base64.b64encode(hashlib.md5(_utf8(name) + b":" + _utf8(password)).digest())


def md5_digest(name: str | bytes, password: str | bytes, nonce: bytes) -> bytes:
    """
    The raw 16-byte C{H(B64(H(name:password)) ":" nonce)} of C{syncml:auth-md5}.
    """
    return hashlib.md5(credential_hash(name, password) + b":" + nonce).digest()
