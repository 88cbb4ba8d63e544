"""
SMPP PDUs from an SMSC (L{mdmd.notify.smpp_pdu}): framing, decoding, and
the delivery receipts read from deliver_sm and data_sm. A PDU that cannot
be used is a L{PduError}: answered with generic_nack or an error response.
"""

from __future__ import annotations

from mdmd.notify import smpp_pdu as p
from tests.fuzz import mutate
from tests.fuzz.engine import Target
from tests.fuzz.targets._smpp import streams

__all__ = ["target", "generate_seeds"]


def run(data: bytes) -> None:
    decoder = p.PduDecoder()
    decoder.feed(data)
    refused: p.PduError | None = None
    while True:
        try:
            pdu = decoder.next_pdu()
        except p.PduError as e:
            refused = e
            if e.fatal:
                break
            continue
        if pdu is None:
            break
        if isinstance(pdu, (p.DeliverSm, p.DataSm)):
            receipt = p.parse_receipt(pdu)
            if receipt is not None:
                for base in p.MessageIdBase:
                    p.message_id_key(receipt.message_id, base)
    if refused is not None:
        raise refused


def target() -> Target:
    return Target("smpp_pdu", run, (p.PduError,), mutate.SMPP, bounded_inputs=5000)


def generate_seeds() -> dict[str, bytes]:
    return streams()
