"""
OMA DM package #0: the General Notification Initiated Session Alert.

Layout (OMA-TS-DM_Notification-V1_2 §6.2, big-endian)::

    digest(16) | version(10 bits) ui-mode(2) initiator(1) future-use(27)
               | session-id(16) | length-identifier(8) | server-id | vendor

The 8 header octets, the server identifier and the vendor part form the
I{trigger}; the digest authenticates it with the server credential the device
holds for this server::

    digest = H(B64(H(name ":" password)) ":" nonce ":" B64(H(trigger)))

The specification names the server identifier as C{name}; devices hash the
name of the server credential they hold (libdmclient: DMAcc SRVCRED
AAuthName; Windows: the w7 CLIENT credential, whose name is the PROVIDER-ID),
which is the server id by convention but need not be. So the name is a
parameter of its own, the server id by default.

B{Session id.} The device echoes it in its SyncHdr SessionID as upper-case
hexadecimal (§6.2.2.10; libdmclient, Windows); some Windows versions send
SessionIDs in decimal. L{session_ids_for} reads both.

B{Version.} The field is the version of the I{notification message}, not of
the DM protocol. The DM 1.2 notification specification requires the 10-bit
value C{0000001011} (11, read "1.1"), its own appendix example starts with
C{02 D0}, and libdmclient (a DM 1.2 client) refuses any other value. Some
servers send 12 on the reading that it means "DM 1.2"; a client that checks
strictly drops such a trigger without a word. So the default here is 11, for
DM 1.2 devices, and it stays a parameter for the device families that want
something else.

B{Default nonce.} A device whose server nonce is out of step with ours
refuses every package #0; §6.2 has it retry the digest with the default nonce
C{0x00000000}, and on success use that nonce in the session it opens.
L{DEFAULT_NONCE} is its form in libdmclient (the ten characters); a device
that wants four zero octets gets them by setting its server nonce (AAAAAA==).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import string
import struct
from dataclasses import dataclass
from typing import Final

from mdmd.errors import PeerError
from mdmd.syncml.auth import credential_hash

__all__ = [
    "DEFAULT_NONCE",
    "DEFAULT_VERSION",
    "Initiator",
    "MalformedPackage0",
    "Package0",
    "UIMode",
    "build_package0",
    "compute_digest",
    "parse_package0",
    "session_id_text",
    "session_ids_for",
]

#: The nonce a device falls back to when our digest does not match its stored
#: server nonce (OMA DM Notification §6.2), as libdmclient spells it.
DEFAULT_NONCE: Final = b"0x00000000"

#: Notification version for DM 1.2 devices (see the module docstring).
DEFAULT_VERSION = 11

_DIGEST_LEN = 16
_HEADER = struct.Struct(">Q")
_MAX_VERSION = (1 << 10) - 1


class UIMode(enum.IntEnum):
    """
    What the server recommends the device shows the user (§6.2.2.7).
    """

    NOT_SPECIFIED = 0
    BACKGROUND = 1
    INFORMATIVE = 2
    USER_INTERACTION = 3


class Initiator(enum.IntEnum):
    """
    Who asked for the session (§6.2.2.8).
    """

    CLIENT = 0
    SERVER = 1


class MalformedPackage0(PeerError):
    """
    The bytes are not a package #0 this parser can read.
    """


@dataclass(frozen=True)
class Package0:
    """
    A parsed package #0. C{trigger} is kept as received, because the digest
    covers those exact octets.
    """

    digest: bytes
    version: int
    ui_mode: UIMode
    initiator: Initiator
    session_id: int
    server_id: str
    vendor: bytes
    trigger: bytes

    def verify(self, password: str | bytes, nonce: bytes, name: str | None = None) -> bool:
        """
        Whether the digest was made with this server password and nonce (and
        credential name: the package's server id unless given).
        """
        expected = compute_digest(self.server_id if name is None else name, password, nonce, self.trigger)
        return hmac.compare_digest(expected, self.digest)


def session_id_text(session_id: int) -> str:
    """
    The SyncHdr/SessionID the device will send back for this trigger:
    upper-case hexadecimal, one to four digits, no leading zeros (§6.2.2.10).
    """
    _check_session_id(session_id)
    return format(session_id, "X")


def session_ids_for(text: str) -> tuple[int, ...]:
    """
    The package #0 session ids a SyncHdr SessionID may be echoing, most likely first.

    Hexadecimal in either case (the specification's upper case, or lower),
    then decimal; nothing for text that is neither or out of range. "12" may
    be 0x12 or 12: both are returned, hexadecimal first.
    """
    text = text.strip()
    # A 16-bit id takes at most 5 digits: a longer text is none of ours (and
    # thousands of digits would exceed what int() reads in decimal).
    if not text or len(text) > 8 or any(c not in string.hexdigits for c in text):
        return ()
    readings = (int(text, 16), int(text, 10)) if text.isdigit() else (int(text, 16),)
    return tuple(dict.fromkeys(value for value in readings if 1 <= value <= 0xFFFF))


def compute_digest(
    server_id: str | bytes, password: str | bytes, nonce: bytes, trigger: bytes
) -> bytes:
    """
    The 16 raw octets of the package #0 digest over C{trigger}.

    C{nonce} is the server nonce as octets (decoded from its base64 form).
    """
    trigger_hash = base64.b64encode(hashlib.md5(trigger).digest())
    return hashlib.md5(
        credential_hash(server_id, password) + b":" + nonce + b":" + trigger_hash
    ).digest()


def build_package0(
    *,
    server_id: str,
    password: str | bytes,
    nonce: bytes,
    session_id: int,
    name: str | None = None,
    ui_mode: UIMode = UIMode.BACKGROUND,
    initiator: Initiator = Initiator.SERVER,
    version: int = DEFAULT_VERSION,
    vendor: bytes = b"",
) -> bytes:
    """
    Build a package #0 for one device.

    @param server_id: the ServerID of the device's DM account for us.
    @param name: the server credential's name, for the digest (default
        C{server_id}; see the module docstring).
    @param password: the server credential's secret (what the device uses to
        authenticate us, not the client password).
    @param nonce: the server nonce octets the device currently holds.
    @param session_id: 1 to 0xFFFF; the device opens its session with it, so
        re-triggering the same session should reuse it.
    @param vendor: the optional vendor-specific trigger body.
    """
    _check_session_id(session_id)
    if not 0 <= version <= _MAX_VERSION:
        raise ValueError(f"version must fit in 10 bits, got {version}")
    sid = server_id.encode("utf-8")
    if not 0 < len(sid) <= 255:
        raise ValueError("server_id must be 1 to 255 octets")
    header = (
        (version << 54)
        | (UIMode(ui_mode) << 52)
        | (Initiator(initiator) << 51)
        | (session_id << 8)
        | len(sid)
    )
    trigger = _HEADER.pack(header) + sid + vendor
    return compute_digest(sid if name is None else name, password, nonce, trigger) + trigger


def parse_package0(data: bytes) -> Package0:
    """
    Read a package #0 (used by tests and to check what we send).

    Reserved bits must be zero, as the specification requires of senders.
    """
    if len(data) < _DIGEST_LEN + _HEADER.size:
        raise MalformedPackage0(f"package #0 too short: {len(data)} octets")
    trigger = data[_DIGEST_LEN:]
    (header,) = _HEADER.unpack_from(trigger)
    if (header >> 24) & ((1 << 27) - 1):
        raise MalformedPackage0("future-use bits are not zero")
    length = header & 0xFF
    server_id = trigger[_HEADER.size : _HEADER.size + length]
    if len(server_id) != length:
        raise MalformedPackage0("server identifier runs past the end")
    try:
        text = server_id.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedPackage0("server identifier is not UTF-8") from e
    return Package0(
        digest=data[:_DIGEST_LEN],
        version=header >> 54,
        ui_mode=UIMode((header >> 52) & 3),
        initiator=Initiator((header >> 51) & 1),
        session_id=(header >> 8) & 0xFFFF,
        server_id=text,
        vendor=trigger[_HEADER.size + length :],
        trigger=trigger,
    )


def _check_session_id(session_id: int) -> None:
    if not 1 <= session_id <= 0xFFFF:
        raise ValueError(f"session id must be 1..0xFFFF, got {session_id}")
