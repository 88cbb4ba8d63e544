"""
What an SMSC sends an ESME, as PDU streams for the SMPP seeds.
"""

from __future__ import annotations

from mdmd.notify import smpp_pdu as p

__all__ = ["streams"]


def _receipt(sequence: int, text: bytes, tlvs: tuple[p.Tlv, ...] = (), data_sm: bool = False) -> p.Pdu:
    """
    A receipt from the handset's number to ours: deliver_sm with C{text}, or data_sm with it as payload.
    """
    if data_sm:
        return p.DataSm(
            sequence_number=sequence,
            source_addr="491701234567",
            destination_addr="MDMD",
            esm_class=0x04,
            tlvs=tlvs + (p.Tlv(p.Tag.MESSAGE_PAYLOAD, text),),
        )
    return p.DeliverSm(
        sequence_number=sequence,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="491701234567",
        dest_addr_ton=5,
        destination_addr="MDMD",
        esm_class=0x04,
        short_message=text,
        tlvs=tlvs,
    )


def _encode(*pdus: p.Pdu) -> bytes:
    return b"".join(p.encode(pdu) for pdu in pdus)


_TEXT = (
    b"id:1 sub:001 dlvrd:001 submit date:2611220101 done date:2611220102 stat:DELIVRD err:000 text:"
)
_TLVS = (
    p.Tlv(p.Tag.RECEIPTED_MESSAGE_ID, b"1\0"),
    p.Tlv(p.Tag.MESSAGE_STATE, bytes([p.MessageState.DELIVERED])),
    p.Tlv(p.Tag.NETWORK_ERROR_CODE, b"\x03\x00\x00"),
)


def streams() -> dict[str, bytes]:
    """
    PDU streams as an SMSC sends them after the bind (our submit_sm is sequence 2).
    """
    return {
        "submit-resp-and-text-receipt": _encode(
            p.SubmitSmResp(sequence_number=2, message_id="1"), _receipt(100, _TEXT)
        ),
        "tlv-receipt": _encode(p.SubmitSmResp(sequence_number=2, message_id="1"), _receipt(101, b"", _TLVS)),
        "both-receipt-12-digit-dates": _encode(
            _receipt(102, _TEXT.replace(b"2611220101", b"261122010159"), _TLVS)
        ),
        "undeliverable-receipt": _encode(_receipt(103, _TEXT.replace(b"DELIVRD", b"UNDELIV"))),
        "data-sm-receipt": _encode(_receipt(104, _TEXT, data_sm=True)),
        "mo-message": _encode(
            p.DeliverSm(sequence_number=105, source_addr="491701234567", short_message=b"hello")
        ),
        "enquire-link": _encode(p.EnquireLink(sequence_number=106), p.EnquireLinkResp(sequence_number=3)),
        "throttled-then-accepted": _encode(
            p.SubmitSmResp(sequence_number=2, command_status=p.Status.ESME_RTHROTTLED),
            p.GenericNack(sequence_number=7, command_status=p.Status.ESME_RINVCMDID),
        ),
        "unbind": _encode(p.Unbind(sequence_number=107)),
        "bind-resp-with-version": _encode(
            p.BindTransceiverResp(
                sequence_number=1, system_id="SMSC", tlvs=(p.Tlv(p.Tag.SC_INTERFACE_VERSION, b"\x34"),)
            )
        ),
    }
