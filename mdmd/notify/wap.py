"""
WAP Push over SMS: a connectionless WSP push PDU carried in WDP datagrams,
one or more 8-bit SMS, each with a user-data header.

What goes on the air for a package #0 (OMA DM Notification §6.3, WAP-230 WSP,
WAP-259 WDP, 3GPP TS 23.040 §9.2.3.24)::

    UDH   06 05 04 0B 84 23 F0            16-bit ports: to 2948 from 9200
          (0B 05 04 0B 84 23 F0 00 03 rr tt ss when concatenated)
    WSP   01 06 03 C4 AF 87               TID, Push, headers length,
                                          application/vnd.syncml.notification,
                                          X-WAP-Application-Id: syncml.dm
    body  the package #0 octets

The UDH counts against the 140 octets of TP-User-Data, so one SMS holds 133
octets of datagram, or 128 per segment with 8-bit concatenation (127 with
16-bit references). Every segment repeats the port element, as Kannel does and
handsets expect. The source port is 9200 (the WSP connectionless service)
rather than the spec appendix's C0 02; no device we know of checks it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mdmd.errors import PeerError

__all__ = [
    "DATA_CODING_8BIT",
    "DATA_CODING_8BIT_CLASS1",
    "ESM_CLASS_UDHI",
    "IEI_CONCAT_16BIT",
    "IEI_CONCAT_8BIT",
    "MalformedPush",
    "SmsSegment",
    "WspPush",
    "decode_uintvar",
    "encode_uintvar",
    "parse_wsp_push",
    "reassemble",
    "split_udh",
    "wap_push_segments",
    "wdp_segments",
    "wsp_push_pdu",
]

#: WSP PDU type Push (0x07 would be ConfirmedPush, which needs a session).
PDU_TYPE_PUSH = 0x06
#: Well-known content type application/vnd.syncml.notification.
CONTENT_TYPE_SYNCML_NOTIFICATION = 0x44
#: WSP header field X-Wap-Application-Id.
HEADER_X_WAP_APPLICATION_ID = 0x2F
#: Registered application id x-wap-application:syncml.dm.
APP_ID_SYNCML_DM = 0x07

PORT_WAP_PUSH = 2948
PORT_WSP_CONNECTIONLESS = 9200

IEI_CONCAT_8BIT = 0x00
IEI_PORTS_16BIT = 0x05
IEI_CONCAT_16BIT = 0x08

#: SMPP esm_class bit saying short_message starts with a UDH.
ESM_CLASS_UDHI = 0x40
#: SMPP data_coding "octet unspecified": 8-bit data, no message class.
DATA_CODING_8BIT = 0x04
#: GSM DCS 8-bit data, class 1 (ME-specific); some networks want this for WAP push.
DATA_CODING_8BIT_CLASS1 = 0xF5

_TP_UD_OCTETS = 140
# 0x04, or GSM "data coding/message class" with 8-bit data (classes 0 to 3).
_BINARY_DATA_CODINGS = frozenset({0x04, 0xF4, 0xF5, 0xF6, 0xF7})


class MalformedPush(PeerError):
    """
    The bytes are not a WAP push of the shape this module writes.
    """


@dataclass(frozen=True)
class SmsSegment:
    """
    One SMS ready for submit_sm: C{short_message} is UDH + payload.
    """

    short_message: bytes
    esm_class: int = ESM_CLASS_UDHI
    data_coding: int = DATA_CODING_8BIT


@dataclass(frozen=True)
class WspPush:
    """
    A parsed connectionless WSP push PDU.
    """

    transaction_id: int
    content_type: int
    headers: bytes
    body: bytes


def encode_uintvar(value: int) -> bytes:
    """
    WSP variable-length unsigned integer: 7 bits per octet, high bit = more.
    """
    if value < 0:
        raise ValueError("uintvar cannot be negative")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def decode_uintvar(data: bytes, offset: int) -> tuple[int, int]:
    """
    Read a uintvar at C{offset}; return the value and the offset after it.
    """
    value = 0
    for count in range(5):
        if offset >= len(data):
            break
        octet = data[offset]
        offset += 1
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            return value, offset
        if count == 4:
            break
    raise MalformedPush("truncated or overlong uintvar")


def wsp_push_pdu(
    body: bytes,
    *,
    transaction_id: int = 1,
    content_type: int = CONTENT_TYPE_SYNCML_NOTIFICATION,
    application_id: int = APP_ID_SYNCML_DM,
) -> bytes:
    """
    A connectionless WSP Push PDU with binary content type and application id.

    Both codes must be well-known short integers (below 0x80), as the DM
    notification spec requires the binary forms.
    """
    if not 0 <= transaction_id <= 0xFF:
        raise ValueError("transaction id is one octet")
    if not (0 <= content_type < 0x80 and 0 <= application_id < 0x80):
        raise ValueError("content type and application id must be short integers")
    headers = bytes(
        [0x80 | content_type, 0x80 | HEADER_X_WAP_APPLICATION_ID, 0x80 | application_id]
    )
    return bytes([transaction_id, PDU_TYPE_PUSH]) + encode_uintvar(len(headers)) + headers + body


def parse_wsp_push(datagram: bytes) -> WspPush:
    """
    Read back a connectionless push PDU whose content type is a short integer.
    """
    if len(datagram) < 3 or datagram[1] != PDU_TYPE_PUSH:
        raise MalformedPush("not a connectionless WSP Push PDU")
    headers_len, offset = decode_uintvar(datagram, 2)
    headers = datagram[offset : offset + headers_len]
    if len(headers) != headers_len or not headers or not headers[0] & 0x80:
        raise MalformedPush("push headers missing or content type not a short integer")
    return WspPush(
        transaction_id=datagram[0],
        content_type=headers[0] & 0x7F,
        headers=headers[1:],
        body=datagram[offset + headers_len :],
    )


def wdp_segments(
    datagram: bytes,
    *,
    concat_ref: int,
    dest_port: int = PORT_WAP_PUSH,
    src_port: int = PORT_WSP_CONNECTIONLESS,
    concat_iei: int = IEI_CONCAT_8BIT,
    data_coding: int = DATA_CODING_8BIT,
) -> tuple[SmsSegment, ...]:
    """
    Split a WDP datagram into SMS segments with 16-bit port addressing.

    @param concat_ref: the concatenation reference, used only when the
        datagram needs more than one SMS. It must differ between concurrent
        multi-part messages to the same handset (0-255 for IEI 0x00, 0-65535
        for IEI 0x08); the caller owns the counter so this stays pure.
    @param concat_iei: L{IEI_CONCAT_8BIT} (default) or L{IEI_CONCAT_16BIT}.
    @param data_coding: L{DATA_CODING_8BIT} (default) or an 8-bit GSM class
        value such as L{DATA_CODING_8BIT_CLASS1}.
    """
    if data_coding not in _BINARY_DATA_CODINGS:
        raise ValueError(f"data_coding {data_coding:#04x} does not mean 8-bit data")
    ports = bytes([IEI_PORTS_16BIT, 4]) + struct.pack(">HH", dest_port, src_port)
    if 1 + len(ports) + len(datagram) <= _TP_UD_OCTETS:
        return (_segment(ports, datagram, data_coding),)
    if concat_iei == IEI_CONCAT_8BIT:
        ref_octets, ref_max = 1, 0xFF
    elif concat_iei == IEI_CONCAT_16BIT:
        ref_octets, ref_max = 2, 0xFFFF
    else:
        raise ValueError(f"unknown concatenation IEI {concat_iei:#04x}")
    if not 0 <= concat_ref <= ref_max:
        raise ValueError(f"concatenation reference {concat_ref} out of range")
    capacity = _TP_UD_OCTETS - 1 - len(ports) - (2 + ref_octets + 2)
    chunks = [datagram[i : i + capacity] for i in range(0, len(datagram), capacity)]
    if len(chunks) > 255:
        raise ValueError("datagram needs more than 255 SMS")
    ref = concat_ref.to_bytes(ref_octets, "big")
    return tuple(
        _segment(
            ports + bytes([concat_iei, ref_octets + 2]) + ref + bytes([len(chunks), n]),
            chunk,
            data_coding,
        )
        for n, chunk in enumerate(chunks, start=1)
    )


def wap_push_segments(
    pkg0: bytes,
    *,
    concat_ref: int,
    transaction_id: int = 1,
    concat_iei: int = IEI_CONCAT_8BIT,
    data_coding: int = DATA_CODING_8BIT,
) -> tuple[SmsSegment, ...]:
    """
    The whole wrapping for a package #0: WSP push, then WDP over SMS to 2948.
    """
    return wdp_segments(
        wsp_push_pdu(pkg0, transaction_id=transaction_id),
        concat_ref=concat_ref,
        concat_iei=concat_iei,
        data_coding=data_coding,
    )


def split_udh(short_message: bytes) -> tuple[tuple[tuple[int, bytes], ...], bytes]:
    """
    Split UDH + payload into its information elements and the payload.
    """
    if not short_message:
        raise MalformedPush("empty short message")
    udhl = short_message[0]
    udh = short_message[1 : 1 + udhl]
    if len(udh) != udhl:
        raise MalformedPush("UDH runs past the end of the message")
    elements = []
    i = 0
    while i < udhl:
        if i + 2 > udhl or i + 2 + udh[i + 1] > udhl:
            raise MalformedPush("information element runs past the UDH")
        elements.append((udh[i], bytes(udh[i + 2 : i + 2 + udh[i + 1]])))
        i += 2 + udh[i + 1]
    return tuple(elements), short_message[1 + udhl :]


def reassemble(messages: list[bytes]) -> tuple[int, int, bytes]:
    """
    Put segments (UDH + payload, any order) back together.

    @return: destination port, source port and the datagram.
    """
    ports: tuple[int, int] | None = None
    parts: dict[int, bytes] = {}
    refs = set()
    for message in messages:
        elements, payload = split_udh(message)
        fields = dict(elements)
        if IEI_PORTS_16BIT not in fields or len(fields[IEI_PORTS_16BIT]) != 4:
            raise MalformedPush("segment without 16-bit port addressing")
        seg_ports = struct.unpack(">HH", fields[IEI_PORTS_16BIT])
        if ports not in (None, seg_ports):
            raise MalformedPush("segments disagree on ports")
        ports = seg_ports
        concat = fields.get(IEI_CONCAT_8BIT) or fields.get(IEI_CONCAT_16BIT)
        if concat is None:
            if len(messages) != 1:
                raise MalformedPush("several segments but one is not concatenated")
            return seg_ports[0], seg_ports[1], payload
        refs.add((concat[:-2], concat[-2]))
        parts[concat[-1]] = payload
    if ports is None or len(refs) != 1:
        raise MalformedPush("segments from different messages")
    ((_, total),) = refs
    if sorted(parts) != list(range(1, total + 1)):
        raise MalformedPush("missing or duplicate segments")
    return ports[0], ports[1], b"".join(parts[n] for n in range(1, total + 1))


def _segment(elements: bytes, payload: bytes, data_coding: int) -> SmsSegment:
    return SmsSegment(
        short_message=bytes([len(elements)]) + elements + payload,
        esm_class=ESM_CLASS_UDHI,
        data_coding=data_coding,
    )
