"""
OMA Client Provisioning bootstrap over WAP Push: the MAC that authenticates a
provisioning document, and the push that carries it (OMA-WAP-ProvBoot,
WAP-230 WSP).

The document (WBXML, L{mdmd.notify.provisioning_doc}) goes in a
connectionless WSP push whose content type carries two parameters::

    01 06 2F                      TID, Push, headers length 47
    1F 2D                         content type in its general form, 45 octets:
      B6                          application/vnd.wap.connectivity-wbxml (0x36)
      91 80|SEC                   SEC: how the MAC's key was made
      92 <40 hex digits> 00       MAC: HMAC-SHA1(key, document), upper-case hex
    <the WBXML document>

The SEC values are NETWPIN 0 (the key comes from the handset's IMSI, which
the network knows and the SIM holds), USERPIN 1 (a PIN given to the user out
of band, typed in on receipt), USERNETWPIN 2 and USERPINMAC 3; mdmd sends
NETWPIN and USERPIN. The NETWPIN key is the IMSI in the semi-octet form of
3GPP TS 24.008's mobile identity, as the SIM's EF_IMSI holds it: the digits
after a parity nibble (9 for an odd number of digits, 1 for even), two per
octet, low nibble first, an even-length IMSI padded with F; a 15-digit IMSI
gives 8 octets. The USERPIN key is the PIN's digits as ASCII. There is no
application id header: the handset dispatches on the content type. What
goes on the air is then wrapped in WDP over SMS like package #0
(L{mdmd.notify.wap}: port 2948, concatenated as needed).

This module is pure: values in, bytes out.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass, field

from mdmd.errors import PeerError
from mdmd.notify.wap import (
    DATA_CODING_8BIT,
    IEI_CONCAT_8BIT,
    PDU_TYPE_PUSH,
    MalformedPush,
    SmsSegment,
    decode_uintvar,
    encode_uintvar,
    wdp_segments,
)

__all__ = [
    "BootstrapPin",
    "BootstrapPush",
    "CONTENT_TYPE_CONNECTIVITY_WBXML",
    "InvalidImsi",
    "InvalidPin",
    "Sec",
    "bootstrap_pdu",
    "bootstrap_segments",
    "compute_mac",
    "content_type",
    "netwpin_key",
    "parse_bootstrap_push",
    "parse_imsi",
]

#: WSP well-known content type application/vnd.wap.connectivity-wbxml.
CONTENT_TYPE_CONNECTIVITY_WBXML = 0x36
#: WSP well-known parameters (encoding version 1.4).
PARAMETER_SEC = 0x11
PARAMETER_MAC = 0x12
_LENGTH_QUOTE = 0x1F
_SHORT_LENGTH_MAX = 30
_MAC_HEX_DIGITS = 40

_IMSI = re.compile(r"[0-9]{6,15}")
_USERPIN = re.compile(r"[0-9]{4,16}")


class Sec(enum.IntEnum):
    """
    The SEC parameter: what the MAC's key was made from (ProvBoot).
    """

    NETWPIN = 0
    USERPIN = 1
    USERNETWPIN = 2
    USERPINMAC = 3


class InvalidPin(PeerError):
    """
    Not a USERPIN we can authenticate a bootstrap with. (The message never
    repeats the PIN.)
    """


class InvalidImsi(PeerError):
    """
    Not an IMSI: 6 to 15 decimal digits.
    """


def parse_imsi(text: str) -> str:
    """
    An IMSI as digits (blanks dropped).

    @raise InvalidImsi: unless it is 6 to 15 decimal digits.
    """
    value = "".join(text.split())
    if not _IMSI.fullmatch(value):
        raise InvalidImsi(f"{text.strip()!r} is not an IMSI (6 to 15 decimal digits)")
    return value


def netwpin_key(imsi: str) -> bytes:
    """
    The NETWPIN key of an IMSI: its semi-octet form with the parity nibble
    (see the module docstring).

    @raise InvalidImsi: if C{imsi} is not one.
    """
    digits = parse_imsi(imsi)
    nibbles = ("9" + digits) if len(digits) % 2 else ("1" + digits + "F")
    return bytes(int(nibbles[i + 1] + nibbles[i], 16) for i in range(0, len(nibbles), 2))


def compute_mac(key: bytes, document: bytes) -> str:
    """
    The MAC parameter: HMAC-SHA1 of the document, as 40 upper-case hex digits.
    """
    return hmac.new(key, document, hashlib.sha1).hexdigest().upper()


@dataclass(frozen=True)
class BootstrapPin:
    """
    How a bootstrap is authenticated: NETWPIN, or USERPIN with the PIN.

    The PIN lives only as long as this value: it never appears in its repr,
    nor in any message of ours, and only the MAC it made is kept.
    """

    sec: Sec
    userpin: str = field(default="", repr=False)

    @classmethod
    def network(cls) -> BootstrapPin:
        return cls(Sec.NETWPIN)

    @classmethod
    def user(cls, pin: str) -> BootstrapPin:
        """
        @raise InvalidPin: unless C{pin} is 4 to 16 decimal digits (what a
            handset keypad can enter).
        """
        if not isinstance(pin, str) or not _USERPIN.fullmatch(pin):
            raise InvalidPin("a USERPIN is 4 to 16 decimal digits")
        return cls(Sec.USERPIN, pin)

    def key(self, imsi: str) -> bytes:
        """
        The MAC key: from the IMSI for NETWPIN, the PIN's digits for USERPIN.

        @raise InvalidImsi: for NETWPIN, if C{imsi} is not one.
        """
        if self.sec is Sec.NETWPIN:
            return netwpin_key(imsi)
        if self.sec is Sec.USERPIN:
            return self.userpin.encode("ascii")
        raise ValueError(f"mdmd does not send {self.sec.name} bootstraps")


def content_type(sec: Sec, mac: str) -> bytes:
    """
    The WSP Content-Type of a bootstrap: connectivity-wbxml with SEC and MAC.
    """
    if len(mac) != _MAC_HEX_DIGITS or not all(c in "0123456789ABCDEFabcdef" for c in mac):
        raise ValueError("the MAC is 40 hexadecimal digits")
    value = bytes(
        [0x80 | CONTENT_TYPE_CONNECTIVITY_WBXML, 0x80 | PARAMETER_SEC, 0x80 | int(sec), 0x80 | PARAMETER_MAC]
    ) + mac.encode("ascii") + b"\x00"
    if len(value) <= _SHORT_LENGTH_MAX:
        return bytes([len(value)]) + value
    return bytes([_LENGTH_QUOTE]) + encode_uintvar(len(value)) + value


def bootstrap_pdu(document: bytes, sec: Sec, mac: str, *, transaction_id: int = 1) -> bytes:
    """
    The connectionless WSP push of a provisioning document.
    """
    if not 0 <= transaction_id <= 0xFF:
        raise ValueError("transaction id is one octet")
    headers = content_type(sec, mac)
    return bytes([transaction_id, PDU_TYPE_PUSH]) + encode_uintvar(len(headers)) + headers + document


def bootstrap_segments(
    document: bytes,
    pin: BootstrapPin,
    imsi: str,
    *,
    concat_ref: int,
    concat_iei: int = IEI_CONCAT_8BIT,
    data_coding: int = DATA_CODING_8BIT,
) -> tuple[SmsSegment, ...]:
    """
    The SMS that carry a provisioning document, authenticated with C{pin}
    (C{imsi} is used for NETWPIN only).

    @raise InvalidImsi: for NETWPIN, if C{imsi} is not one.
    """
    mac = compute_mac(pin.key(imsi), document)
    return wdp_segments(
        bootstrap_pdu(document, pin.sec, mac),
        concat_ref=concat_ref,
        concat_iei=concat_iei,
        data_coding=data_coding,
    )


@dataclass(frozen=True)
class BootstrapPush:
    """
    A parsed bootstrap push (what a handset reads; for tests and checks).
    """

    transaction_id: int
    sec: Sec
    mac: str
    document: bytes

    def verify(self, key: bytes) -> bool:
        """
        Whether the MAC was made with C{key}, as the handset checks it.
        """
        return hmac.compare_digest(compute_mac(key, self.document), self.mac.upper())


def parse_bootstrap_push(datagram: bytes) -> BootstrapPush:
    """
    Read back a push of the shape L{bootstrap_pdu} writes: connectivity-wbxml
    in the general form, SEC and MAC in either order.

    @raise MalformedPush: for anything else.
    """
    if len(datagram) < 3 or datagram[1] != PDU_TYPE_PUSH:
        raise MalformedPush("not a connectionless WSP Push PDU")
    headers_len, offset = decode_uintvar(datagram, 2)
    headers = datagram[offset : offset + headers_len]
    if len(headers) != headers_len or not headers:
        raise MalformedPush("push headers missing")
    if headers[0] == _LENGTH_QUOTE:
        length, start = decode_uintvar(headers, 1)
    elif headers[0] <= _SHORT_LENGTH_MAX:
        length, start = headers[0], 1
    else:
        raise MalformedPush("content type not in its general form")
    value = headers[start : start + length]
    if len(value) != length or not value or value[0] != 0x80 | CONTENT_TYPE_CONNECTIVITY_WBXML:
        raise MalformedPush("content type is not application/vnd.wap.connectivity-wbxml")
    sec: Sec | None = None
    mac: str | None = None
    i = 1
    while i < len(value):
        parameter = value[i]
        if parameter == 0x80 | PARAMETER_SEC and i + 1 < len(value) and value[i + 1] & 0x80:
            try:
                sec = Sec(value[i + 1] & 0x7F)
            except ValueError:
                raise MalformedPush("unknown SEC value") from None
            i += 2
        elif parameter == 0x80 | PARAMETER_MAC:
            end = value.find(b"\x00", i + 1)
            if end < 0:
                raise MalformedPush("MAC not terminated")
            mac = value[i + 1 : end].decode("ascii", "replace")
            i = end + 1
        else:
            raise MalformedPush(f"unexpected content-type parameter {parameter:#04x}")
    if sec is None or mac is None:
        raise MalformedPush("SEC or MAC missing")
    return BootstrapPush(datagram[0], sec, mac, datagram[offset + headers_len :])
