"""
The ESME session (L{mdmd.notify.smpp_session.EsmeSession}) fed an SMSC's
bytes once bound, with one push in flight: in chunks, with time passing
between them. It declares no exception: every bad PDU is answered and
reported as an event. The link may end only as declared: the SMSC unbinds,
or sends a command_length that cannot be followed.
"""

from __future__ import annotations

import zlib
from random import Random

from mdmd.notify import smpp_pdu as p
from mdmd.notify.smpp_session import EsmeSession, Event, LinkBroken, ProtocolViolation, State, Unbound
from mdmd.testing.smsc import ESME_CONFIG, HANDSET, ONE_SEGMENT
from tests.fuzz import mutate
from tests.fuzz.engine import Target
from tests.fuzz.targets._smpp import streams

__all__ = ["target", "generate_seeds", "LinkStopped"]


class LinkStopped(AssertionError):
    """
    The session ended in a way that bytes from the SMSC must not cause.
    """


_BOUND = p.encode(p.BindTransceiverResp(sequence_number=1, system_id="SMSC"))


def run(data: bytes) -> str:
    session = EsmeSession(ESME_CONFIG)
    session.connection_made(0.0)
    events: list[Event] = list(session.receive_data(_BOUND, 0.0).events)
    events += session.submit("push", HANDSET, ONE_SEGMENT, 0.0).events
    cuts = Random(zlib.crc32(data)).sample(range(len(data) + 1), min(len(data) + 1, 3))
    now = 0.0
    start = 0
    for cut in sorted(cuts) + [len(data)]:
        events += session.receive_data(data[start:cut], now).events
        now += 1.0
        events += session.tick(now).events
        start = cut
    if session.state is State.CLOSED:
        declared = any(
            (isinstance(e, LinkBroken) and e.reason.startswith("unreadable data"))
            or (isinstance(e, Unbound) and e.by_peer)
            for e in events
        )
        if not declared:
            raise LinkStopped(f"the session closed: {events!r}"[:300])
    # what happened, for the fuzzer to tell inputs apart
    return " ".join(
        sorted({e.description if isinstance(e, ProtocolViolation) else type(e).__name__ for e in events})
    )


def target() -> Target:
    return Target("smpp_session", run, (), mutate.SMPP, bounded_inputs=3000)


def generate_seeds() -> dict[str, bytes]:
    return streams()
