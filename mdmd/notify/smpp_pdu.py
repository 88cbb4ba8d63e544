"""
SMPP 3.4 PDUs: frozen dataclasses, an encoder, a streaming decoder, and the
delivery-receipt reader.

Only what an ESME sending WAP push needs, in both directions so that the fake
SMSC in L{mdmd.testing.smsc} can speak it too: bind_transmitter/receiver/
transceiver (+resp), submit_sm, deliver_sm, data_sm (+resp), enquire_link,
unbind (+resp), generic_nack.

Every PDU is a 16-octet header (command_length including itself, command_id,
command_status, sequence_number, all big-endian) and a body of mandatory
fields followed by optional TLVs. C-octet strings are NUL-terminated; their
maximum sizes (NUL included) are enforced when we encode. When we decode we
are liberal where real SMSCs are known to differ from the letter of the spec:

 - error responses may carry no body, a lone NUL, or a full body
   (SMPP 5.0 clarified "no body"; several 3.4 SMSCs send the NUL);
 - over-long C-octet strings are accepted, and in responses so is a last
   string without its NUL (a 70-character or unterminated message_id must
   not make us lose track of an accepted submit);
 - fewer than four trailing octets after the TLVs are taken as padding;
 - header-only PDUs with a stray body are accepted and the body ignored.

What cannot be read is a L{PduError} (a L{mdmd.errors.PeerError}) carrying
the command_status to answer with, and whether the byte stream can still be
followed (a bad command_length cannot be resynchronised; an unknown
command_id with a sane length can be skipped).
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Union

from mdmd.errors import PeerError

__all__ = [
    "BindReceiver",
    "BindReceiverResp",
    "BindTransceiver",
    "BindTransceiverResp",
    "BindTransmitter",
    "BindTransmitterResp",
    "CommandId",
    "DataSm",
    "DataSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "EnquireLink",
    "EnquireLinkResp",
    "GenericNack",
    "MessageIdBase",
    "MessageState",
    "Pdu",
    "PduDecoder",
    "PduError",
    "Receipt",
    "STAT_STATES",
    "Status",
    "SubmitSm",
    "SubmitSmResp",
    "Tag",
    "Tlv",
    "Unbind",
    "UnbindResp",
    "decode",
    "encode",
    "is_temporary",
    "message_id_key",
    "parse_receipt",
    "status_name",
]

HEADER = struct.Struct(">IIII")
HEADER_LEN = HEADER.size
#: Largest PDU we accept: a full 64 KiB message_payload plus the fixed fields.
DEFAULT_MAX_LENGTH = 0x10000 + 1024
INTERFACE_VERSION_34 = 0x34
RESPONSE_BIT = 0x80000000


class CommandId(enum.IntEnum):
    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


class Status(enum.IntEnum):
    """
    SMPP 3.4 command_status values (§5.1.3).
    """

    ESME_ROK = 0x00
    ESME_RINVMSGLEN = 0x01
    ESME_RINVCMDLEN = 0x02
    ESME_RINVCMDID = 0x03
    ESME_RINVBNDSTS = 0x04
    ESME_RALYBND = 0x05
    ESME_RINVPRTFLG = 0x06
    ESME_RINVREGDLVFLG = 0x07
    ESME_RSYSERR = 0x08
    ESME_RINVSRCADR = 0x0A
    ESME_RINVDSTADR = 0x0B
    ESME_RINVMSGID = 0x0C
    ESME_RBINDFAIL = 0x0D
    ESME_RINVPASWD = 0x0E
    ESME_RINVSYSID = 0x0F
    ESME_RCANCELFAIL = 0x11
    ESME_RREPLACEFAIL = 0x13
    ESME_RMSGQFUL = 0x14
    ESME_RINVSERTYP = 0x15
    ESME_RINVNUMDESTS = 0x33
    ESME_RINVDLNAME = 0x34
    ESME_RINVDESTFLAG = 0x40
    ESME_RINVSUBREP = 0x42
    ESME_RINVESMCLASS = 0x43
    ESME_RCNTSUBDL = 0x44
    ESME_RSUBMITFAIL = 0x45
    ESME_RINVSRCTON = 0x48
    ESME_RINVSRCNPI = 0x49
    ESME_RINVDSTTON = 0x50
    ESME_RINVDSTNPI = 0x51
    ESME_RINVSYSTYP = 0x53
    ESME_RINVREPFLAG = 0x54
    ESME_RINVNUMMSGS = 0x55
    ESME_RTHROTTLED = 0x58
    ESME_RINVSCHED = 0x61
    ESME_RINVEXPIRY = 0x62
    ESME_RINVDFTMSGID = 0x63
    ESME_RX_T_APPN = 0x64
    ESME_RX_P_APPN = 0x65
    ESME_RX_R_APPN = 0x66
    ESME_RQUERYFAIL = 0x67
    ESME_RINVOPTPARSTREAM = 0xC0
    ESME_ROPTPARNOTALLWD = 0xC1
    ESME_RINVPARLEN = 0xC2
    ESME_RMISSINGOPTPARAM = 0xC3
    ESME_RINVOPTPARAMVAL = 0xC4
    ESME_RDELIVERYFAILURE = 0xFE
    ESME_RUNKNOWNERR = 0xFF


#: Worth trying again later (Kannel's smpp_status_to_smscconn_failure_reason).
TEMPORARY_STATUSES = frozenset(
    {Status.ESME_RSYSERR, Status.ESME_RMSGQFUL, Status.ESME_RTHROTTLED, Status.ESME_RX_T_APPN}
)


def status_name(status: int) -> str:
    """
    The SMPP name of a command_status, or its hex for vendor-specific codes.
    """
    try:
        return Status(status).name
    except ValueError:
        return f"0x{status:08X}"


def is_temporary(status: int) -> bool:
    return status in TEMPORARY_STATUSES


class Tag(enum.IntEnum):
    """
    The optional parameter tags mdmd reads or writes.
    """

    PAYLOAD_TYPE = 0x0019
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D
    RECEIPTED_MESSAGE_ID = 0x001E
    USER_MESSAGE_REFERENCE = 0x0204
    SOURCE_PORT = 0x020A
    DESTINATION_PORT = 0x020B
    SAR_MSG_REF_NUM = 0x020C
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    DELIVERY_FAILURE_REASON = 0x0425
    MESSAGE_STATE = 0x0427


class MessageState(enum.IntEnum):
    """
    SMPP 3.4 message_state (§5.2.28), also what the text receipt's stat maps to.
    """

    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8

    @property
    def final(self) -> bool:
        return self is not MessageState.ENROUTE


class PduError(PeerError):
    """
    Bytes from the peer that are not a PDU we can use.

    @ivar command_status: what to answer with (in a generic_nack or, for a
        known request with a bad body, in its response): the class declares
        the usual one (C{smpp_status}), an instance may name a precise one.
    @ivar sequence_number: the offending PDU's, or 0 when it was not readable.
    @ivar command_id: the offending PDU's, or None when it was not readable.
    @ivar fatal: the stream cannot be followed any further.
    """

    smpp_status = Status.ESME_RINVCMDLEN

    def __init__(
        self,
        message: str,
        command_status: int | None = None,
        *,
        sequence_number: int = 0,
        command_id: int | None = None,
        fatal: bool = False,
    ) -> None:
        super().__init__(message)
        self.command_status = self.smpp_status if command_status is None else command_status
        self.sequence_number = sequence_number
        self.command_id = command_id
        self.fatal = fatal


class _BodyError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Tlv:
    tag: int
    value: bytes


# -- field kinds ------------------------------------------------------------


class _CString:
    """
    A NUL-terminated string of at most C{size} octets including the NUL.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def encode(self, name: str, value: str) -> bytes:
        raw = value.encode("latin-1")
        if b"\0" in raw or len(raw) + 1 > self.size:
            raise ValueError(f"{name} must be at most {self.size - 1} octets without NUL")
        return raw + b"\0"

    def decode(self, data: bytes, offset: int, lenient: bool) -> tuple[str, int]:
        end = data.find(b"\0", offset)
        if end < 0:
            if not lenient:
                raise _BodyError("unterminated C-octet string", Status.ESME_RINVCMDLEN)
            end = len(data)
        return data[offset:end].decode("latin-1"), end + 1


class _Int8:
    size = 1

    def encode(self, name: str, value: int) -> bytes:
        if not 0 <= value <= 0xFF:
            raise ValueError(f"{name} must be one octet")
        return bytes([value])

    def decode(self, data: bytes, offset: int, lenient: bool) -> tuple[int, int]:
        if offset >= len(data):
            raise _BodyError("body too short", Status.ESME_RINVCMDLEN)
        return data[offset], offset + 1


class _ShortMessage:
    """
    sm_length (one octet) followed by that many octets.
    """

    def encode(self, name: str, value: bytes) -> bytes:
        if len(value) > 254:
            raise ValueError("short_message holds at most 254 octets; use message_payload")
        return bytes([len(value)]) + value

    def decode(self, data: bytes, offset: int, lenient: bool) -> tuple[bytes, int]:
        if offset >= len(data):
            raise _BodyError("body too short", Status.ESME_RINVCMDLEN)
        end = offset + 1 + data[offset]
        if end > len(data):
            raise _BodyError("sm_length runs past the PDU", Status.ESME_RINVMSGLEN)
        return bytes(data[offset + 1 : end]), end


_U8 = _Int8()
_SM = _ShortMessage()
_Field = Union[_CString, _Int8, _ShortMessage]


# -- PDUs -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Pdu:
    """
    Base of every PDU: the header fields and the optional parameters.
    """

    command_id: ClassVar[CommandId]
    body: ClassVar[tuple[tuple[str, _Field], ...]] = ()

    sequence_number: int
    command_status: int = 0
    tlvs: tuple[Tlv, ...] = ()

    def tlv(self, tag: int) -> bytes | None:
        """
        The value of the first optional parameter with this tag, if any.
        """
        for tlv in self.tlvs:
            if tlv.tag == tag:
                return tlv.value
        return None

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)


@dataclass(frozen=True, kw_only=True)
class _Bind(Pdu):
    body = (
        ("system_id", _CString(16)),
        ("password", _CString(9)),
        ("system_type", _CString(13)),
        ("interface_version", _U8),
        ("addr_ton", _U8),
        ("addr_npi", _U8),
        ("address_range", _CString(41)),
    )
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = INTERFACE_VERSION_34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


@dataclass(frozen=True, kw_only=True)
class _BindResp(Pdu):
    body = (("system_id", _CString(16)),)
    system_id: str = ""


class BindReceiver(_Bind):
    command_id = CommandId.BIND_RECEIVER


class BindTransmitter(_Bind):
    command_id = CommandId.BIND_TRANSMITTER


class BindTransceiver(_Bind):
    command_id = CommandId.BIND_TRANSCEIVER


class BindReceiverResp(_BindResp):
    command_id = CommandId.BIND_RECEIVER_RESP


class BindTransmitterResp(_BindResp):
    command_id = CommandId.BIND_TRANSMITTER_RESP


class BindTransceiverResp(_BindResp):
    command_id = CommandId.BIND_TRANSCEIVER_RESP


@dataclass(frozen=True, kw_only=True)
class _ShortMessagePdu(Pdu):
    body = (
        ("service_type", _CString(6)),
        ("source_addr_ton", _U8),
        ("source_addr_npi", _U8),
        ("source_addr", _CString(21)),
        ("dest_addr_ton", _U8),
        ("dest_addr_npi", _U8),
        ("destination_addr", _CString(21)),
        ("esm_class", _U8),
        ("protocol_id", _U8),
        ("priority_flag", _U8),
        ("schedule_delivery_time", _CString(17)),
        ("validity_period", _CString(17)),
        ("registered_delivery", _U8),
        ("replace_if_present_flag", _U8),
        ("data_coding", _U8),
        ("sm_default_msg_id", _U8),
        ("short_message", _SM),
    )
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""


class SubmitSm(_ShortMessagePdu):
    command_id = CommandId.SUBMIT_SM


class DeliverSm(_ShortMessagePdu):
    command_id = CommandId.DELIVER_SM


@dataclass(frozen=True, kw_only=True)
class DataSm(Pdu):
    command_id = CommandId.DATA_SM
    body = (
        ("service_type", _CString(6)),
        ("source_addr_ton", _U8),
        ("source_addr_npi", _U8),
        ("source_addr", _CString(65)),
        ("dest_addr_ton", _U8),
        ("dest_addr_npi", _U8),
        ("destination_addr", _CString(65)),
        ("esm_class", _U8),
        ("registered_delivery", _U8),
        ("data_coding", _U8),
    )
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0


@dataclass(frozen=True, kw_only=True)
class _MessageIdResp(Pdu):
    body = (("message_id", _CString(65)),)
    message_id: str = ""


class SubmitSmResp(_MessageIdResp):
    command_id = CommandId.SUBMIT_SM_RESP


class DeliverSmResp(_MessageIdResp):
    command_id = CommandId.DELIVER_SM_RESP


class DataSmResp(_MessageIdResp):
    command_id = CommandId.DATA_SM_RESP


class EnquireLink(Pdu):
    command_id = CommandId.ENQUIRE_LINK


class EnquireLinkResp(Pdu):
    command_id = CommandId.ENQUIRE_LINK_RESP


class Unbind(Pdu):
    command_id = CommandId.UNBIND


class UnbindResp(Pdu):
    command_id = CommandId.UNBIND_RESP


class GenericNack(Pdu):
    command_id = CommandId.GENERIC_NACK


_CLASSES: dict[int, type[Pdu]] = {
    cls.command_id: cls
    for cls in (
        BindReceiver,
        BindReceiverResp,
        BindTransmitter,
        BindTransmitterResp,
        BindTransceiver,
        BindTransceiverResp,
        SubmitSm,
        SubmitSmResp,
        DeliverSm,
        DeliverSmResp,
        DataSm,
        DataSmResp,
        EnquireLink,
        EnquireLinkResp,
        Unbind,
        UnbindResp,
        GenericNack,
    )
}

#: The response class for each request class we know.
RESPONSE_CLASS: dict[type[Pdu], type[Pdu]] = {
    cls: _CLASSES[cls.command_id | RESPONSE_BIT]
    for cls in _CLASSES.values()
    if not cls.command_id & RESPONSE_BIT
}


# -- encoding ---------------------------------------------------------------


def encode(pdu: Pdu) -> bytes:
    """
    The wire bytes of C{pdu}. Error responses are sent without a body.
    """
    if not 0 <= pdu.sequence_number <= 0xFFFFFFFF:
        raise ValueError("sequence_number must fit in 32 bits")
    if pdu.is_response and pdu.command_status:
        body = b""
    else:
        parts = [kind.encode(name, getattr(pdu, name)) for name, kind in pdu.body]
        for tlv in pdu.tlvs:
            if len(tlv.value) > 0xFFFF:
                raise ValueError("TLV value longer than 65535 octets")
            parts.append(struct.pack(">HH", tlv.tag, len(tlv.value)) + tlv.value)
        body = b"".join(parts)
    return (
        HEADER.pack(HEADER_LEN + len(body), pdu.command_id, pdu.command_status, pdu.sequence_number)
        + body
    )


def decode(frame: bytes) -> Pdu:
    """
    Decode exactly one complete PDU (C{command_length} must match C{len(frame)}).
    """
    if len(frame) < HEADER_LEN:
        raise PduError("PDU shorter than its header", Status.ESME_RINVCMDLEN, fatal=True)
    length, command_id, status, sequence = HEADER.unpack_from(frame)
    if length != len(frame):
        raise PduError(
            f"command_length {length} but {len(frame)} octets",
            Status.ESME_RINVCMDLEN,
            sequence_number=sequence,
            fatal=True,
        )
    cls = _CLASSES.get(command_id)
    if cls is None:
        raise PduError(
            f"unknown command_id 0x{command_id:08X}",
            Status.ESME_RINVCMDID,
            sequence_number=sequence,
            command_id=command_id,
        )
    values: dict[str, Any] = {}  # each field as its kind decodes it (cls.body)
    body = frame[HEADER_LEN:]
    try:
        offset = 0
        lenient = bool(cls.command_id & RESPONSE_BIT)
        for name, kind in cls.body:
            if lenient and offset >= len(body):
                break  # error responses, or a 3.4 SMSC's abbreviated body
            values[name], offset = kind.decode(body, offset, lenient)
        if cls.body:
            values["tlvs"] = _decode_tlvs(body, offset)
    except _BodyError as e:
        raise PduError(
            f"{cls.__name__}: {e}",
            e.status,
            sequence_number=sequence,
            command_id=command_id,
        ) from e
    return cls(sequence_number=sequence, command_status=status, **values)


def _decode_tlvs(body: bytes, offset: int) -> tuple[Tlv, ...]:
    tlvs = []
    while len(body) - offset >= 4:
        tag, length = struct.unpack_from(">HH", body, offset)
        offset += 4
        if offset + length > len(body):
            raise _BodyError("TLV runs past the PDU", Status.ESME_RINVOPTPARSTREAM)
        tlvs.append(Tlv(tag, bytes(body[offset : offset + length])))
        offset += length
    return tuple(tlvs)


class PduDecoder:
    """
    Frames PDUs out of a byte stream.

    Feed it what the transport delivers and call L{next_pdu} until it returns
    None. A L{PduError} for one PDU leaves the decoder usable unless the
    error is C{fatal}, after which everything is discarded.
    """

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self._buffer = bytearray()
        self._max_length = max_length
        self._broken = False

    def feed(self, data: bytes) -> None:
        if not self._broken:
            self._buffer += data

    def next_pdu(self) -> Pdu | None:
        buffer = self._buffer
        if self._broken or len(buffer) < 4:
            return None
        (length,) = struct.unpack_from(">I", buffer)
        if not HEADER_LEN <= length <= self._max_length:
            sequence = struct.unpack_from(">I", buffer, 12)[0] if len(buffer) >= 16 else 0
            self._broken = True
            self._buffer = bytearray()
            raise PduError(
                f"command_length {length} out of range",
                Status.ESME_RINVCMDLEN,
                sequence_number=sequence,
                fatal=True,
            )
        if len(buffer) < length:
            return None
        frame = bytes(buffer[:length])
        del buffer[:length]
        return decode(frame)


# -- delivery receipts ------------------------------------------------------


class MessageIdBase(enum.Enum):
    """
    How an SMSC spells its message ids, for matching receipts to submits.

    SMSCs disagree (SMPP 3.3 receipts often give the id in decimal while
    submit_sm_resp gave it in hex, or the other way round), so the base is
    configured per SMSC for the submit_sm_resp ids and for the ids in text
    receipts separately, as Jasmin's C{dlr_msg_id_bases} does.
    """

    TEXT = "text"
    HEX = "hex"
    DEC = "dec"


def message_id_key(message_id: str, base: MessageIdBase = MessageIdBase.TEXT) -> str:
    """
    A canonical form of C{message_id}: equal keys mean the same message.

    Numeric bases become the decimal value (so "00FF" in hex and "255" in
    decimal meet); text is compared without case or surrounding blanks. An
    id that does not parse in its declared base falls back to text.
    """
    text = message_id.strip()
    if base is not MessageIdBase.TEXT and text:
        digits = _HEX_DIGITS if base is MessageIdBase.HEX else _DIGITS
        if digits.fullmatch(text):
            return "#" + str(int(text, 16 if base is MessageIdBase.HEX else 10))
    return text.lower()


@dataclass(frozen=True)
class Receipt:
    """
    A delivery receipt, from TLVs where present and from the text otherwise.

    @ivar id_from_tlv: C{message_id} came from C{receipted_message_id}, which
        SMPP 3.4 spells like submit_sm_resp; a text id may use another base.
    """

    message_id: str
    state: MessageState
    id_from_tlv: bool
    stat: str | None = None
    error: str | None = None
    submitted: int | None = None
    delivered: int | None = None
    submit_date: datetime | None = None
    done_date: datetime | None = None
    text: str | None = None
    network_error_code: bytes | None = None
    #: the text fields that were there but could not be read (kept as None above)
    unreadable: tuple[str, ...] = ()


#: The stat words of text receipts.
STAT_STATES = {
    "DELIVRD": MessageState.DELIVERED,
    "DELIVERED": MessageState.DELIVERED,
    "EXPIRED": MessageState.EXPIRED,
    "DELETED": MessageState.DELETED,
    "UNDELIV": MessageState.UNDELIVERABLE,
    "ACCEPTD": MessageState.ACCEPTED,
    "UNKNOWN": MessageState.UNKNOWN,
    "REJECTD": MessageState.REJECTED,
    "ENROUTE": MessageState.ENROUTE,
}
_RECEIPT_KEYS = re.compile(
    r"\b(?P<key>id|sub|dlvrd|submit date|done date|stat|err|text):", re.IGNORECASE
)
#: esm_class message types that carry a receipt: SMSC receipt, intermediate notification.
_RECEIPT_TYPES = (0x04, 0x20)


def parse_receipt(pdu: DeliverSm | DataSm) -> Receipt | None:
    """
    Read a delivery receipt, or return None if C{pdu} is not one.

    TLVs come first (C{receipted_message_id}, C{message_state},
    C{network_error_code}); the text form
    C{id:… sub:… dlvrd:… submit date:… done date:… stat:… err:… text:…}
    fills in the rest, with 10- or 12-digit dates.
    """
    tlv_id = pdu.tlv(Tag.RECEIPTED_MESSAGE_ID)
    if (pdu.esm_class & 0x3C) not in _RECEIPT_TYPES and tlv_id is None:
        return None
    raw = pdu.short_message if isinstance(pdu, DeliverSm) else b""
    raw = raw or pdu.tlv(Tag.MESSAGE_PAYLOAD) or b""
    fields_ = _receipt_fields(raw.decode("latin-1"))
    message_id = tlv_id.rstrip(b"\0").decode("latin-1") if tlv_id is not None else None
    id_from_tlv = bool(message_id)
    if not message_id:
        message_id = fields_.get("id")
    if not message_id:
        return None
    stat = fields_.get("stat")
    state_tlv = pdu.tlv(Tag.MESSAGE_STATE)
    try:
        state = MessageState(state_tlv[0]) if state_tlv and len(state_tlv) == 1 else None
    except ValueError:
        state = None
    if state is None:
        state = STAT_STATES.get((stat or "").upper(), MessageState.UNKNOWN)
    submitted = _int_or_none(fields_.get("sub"))
    delivered = _int_or_none(fields_.get("dlvrd"))
    submit_date = _receipt_date(fields_.get("submit date"))
    done_date = _receipt_date(fields_.get("done date"))
    read = (("sub", submitted), ("dlvrd", delivered), ("submit date", submit_date), ("done date", done_date))
    return Receipt(
        message_id=message_id,
        state=state,
        id_from_tlv=id_from_tlv,
        stat=stat,
        error=fields_.get("err"),
        submitted=submitted,
        delivered=delivered,
        submit_date=submit_date,
        done_date=done_date,
        text=fields_.get("text"),
        network_error_code=pdu.tlv(Tag.NETWORK_ERROR_CODE),
        unreadable=tuple(key for key, value in read if value is None and fields_.get(key)),
    )


def _receipt_fields(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for match in _RECEIPT_KEYS.finditer(text):
        key = match.group("key").lower()
        if key == "text":
            # Free text runs to the end and may itself contain "key:" words.
            found.setdefault(key, text[match.end() :])
            break
        value = text[match.end() :].split(None, 1)
        found.setdefault(key, value[0] if value and not _RECEIPT_KEYS.match(value[0]) else "")
    return found


#: Numbers as SMPP writes them: ASCII digits, as many as a message id has
#: at most. Not C{str.isdigit}, which also takes "²" and other digits that
#: C{int} refuses (or reads: "٣" is 3), so that a receipt date with one in
#: it escaped as a ValueError and dropped the link; nor C{int} alone, which
#: takes signs, blanks and underscores and refuses over 4300 digits.
_DIGITS = re.compile("[0-9]{1,65}")
_HEX_DIGITS = re.compile("[0-9A-Fa-f]{1,65}")


def _int_or_none(value: str | None) -> int | None:
    if value is None or not _DIGITS.fullmatch(value):
        return None
    return int(value)


def _receipt_date(value: str | None) -> datetime | None:
    if value is None or not _DIGITS.fullmatch(value) or len(value) not in (10, 12):
        return None
    parts = [int(value[i : i + 2]) for i in range(0, len(value), 2)]
    year, month, day, hour, minute, second = (parts + [0])[:6]  # YYMMDDhhmm[ss]
    try:
        return datetime(2000 + year, month, day, hour, minute, second)
    except ValueError:
        return None

