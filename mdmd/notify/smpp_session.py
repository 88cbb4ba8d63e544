"""
The ESME side of an SMPP 3.4 session, without I/O.

L{EsmeSession} is one connection's state machine in the h11 style: the states,
the inputs that move between them and the PDUs served in each state are the
tables just below; everything else is bookkeeping. It never reads a clock or
touches a socket. Every input method takes C{now} (seconds, any epoch, never
going backwards) and returns an L{Output}: the bytes to write, the events that
happened, the time to call L{EsmeSession.tick} next, and whether to close the
transport after writing.

What it does, and why:

 - B{bind} as transmitter or transceiver (transceiver is the default: the
   delivery receipts come back on the same connection) and report a refusal
   with the SMSC's status name;
 - B{enquire_link} both ways: answer the SMSC's; send ours after
   C{enquire_link_interval} without receiving anything, and call the link
   broken if that goes unanswered for C{response_timeout};
 - B{unbind} both ways: answer the SMSC's and stop; L{EsmeSession.close}
   stops sending, waits for the submits in flight, then unbinds;
 - B{garbage} from the SMSC is answered with generic_nack (or the request's
   own response carrying the error, when only the body was bad); a bad
   command_length cannot be resynchronised, so it also ends the session;
 - B{submit_sm} with esm_class UDHI and registered_delivery, at most
   C{window} unacknowledged at once, and at most C{throughput} per second;
 - ESME_RTHROTTLED and ESME_RMSGQFUL pause all sending for C{throttle_pause}
   and resend the same segment first (Kannel pauses 1 s); other temporary
   statuses retry after C{temporary_retry_delay}, a limited number of times
   (Jasmin's retry map); anything else fails the job for good;
 - a submit without response for C{response_timeout} is sent again (a late
   acceptance still counts, and the resend is then ignored); after
   C{max_timeouts} timeouts in a row the link is considered broken;
 - deliver_sm/data_sm receipts are acknowledged and reported with the
   reference of the job whose segment they are about, when we still know it.

A I{job} is one WAP push: all of its segments must be accepted for
L{SubmitAccepted}, which carries one message id per segment; each id is also
reported alone, as L{SegmentAccepted}, the moment it arrives. When the
session ends, jobs not finished come back in L{JobsReturned} with the message
ids accepted so far, so that the next session sends only what is missing and
nothing the SMSC acknowledged is sent twice. (A submit whose response was
lost in a timeout may still reach the handset twice; a repeated package #0
with the same session id makes the device start one session, so that is
harmless.)

Throughput is paced on due times: the next submit is due one interval after
the previous one was due, so a timer that fires up to half an interval late
does not lower the rate; beyond that (an idle period) no credit is banked.
At most C{rate·W + 1.5} submits leave in any window of W seconds, and the
long-run rate is the configured one.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections import OrderedDict, deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Union

from mdmd.notify.smpp_pdu import (
    RESPONSE_CLASS,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    DataSm,
    DeliverSm,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    MessageIdBase,
    MessageState,
    Pdu,
    PduDecoder,
    PduError,
    Receipt,
    Status,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Unbind,
    UnbindResp,
    encode,
    is_temporary,
    message_id_key,
    parse_receipt,
    status_name,
)
from mdmd.notify.wap import SmsSegment

__all__ = [
    "Address",
    "BindFailed",
    "BindType",
    "Bound",
    "DeliveryReceipt",
    "EsmeSession",
    "Event",
    "Ignored",
    "JobProgress",
    "JobsReturned",
    "LinkBroken",
    "LocalProtocolError",
    "Output",
    "ProtocolViolation",
    "SegmentAccepted",
    "SessionConfig",
    "State",
    "SubmitAccepted",
    "SubmitFailed",
    "Unbound",
    "submit_templates",
]


class BindType(enum.Enum):
    TRANSMITTER = "transmitter"
    TRANSCEIVER = "transceiver"


@dataclass(frozen=True)
class Address:
    """
    An SMPP address with its type of number and numbering plan.
    """

    addr: str
    ton: int = 1
    npi: int = 1


@dataclass(frozen=True, kw_only=True)
class SessionConfig:
    """
    Everything one SMPP session needs; defaults follow Kannel and Jasmin.
    """

    system_id: str
    password: str
    system_type: str = ""
    bind_type: BindType = BindType.TRANSCEIVER
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""
    source: Address = Address("", 0, 0)
    service_type: str = ""
    #: 0x01: an SMSC receipt on success or failure.
    registered_delivery: int = 0x01
    #: "" lets the SMSC choose; a relative time such as "000001000000000R" for 1 h.
    validity_period: str = ""
    window: int = 10
    #: Submits per second, or None for as fast as the window allows.
    throughput: float | None = None
    enquire_link_interval: float = 30.0
    response_timeout: float = 30.0
    max_timeouts: int = 3
    throttle_pause: float = 1.0
    max_throttle_retries: int = 20
    temporary_retry_delay: float = 10.0
    max_temporary_retries: int = 3
    submit_id_base: MessageIdBase = MessageIdBase.TEXT
    receipt_id_base: MessageIdBase = MessageIdBase.TEXT
    #: How many accepted message ids to remember for matching receipts.
    receipt_memory: int = 10000

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("window must be at least 1")
        if self.throughput is not None and self.throughput <= 0:
            raise ValueError("throughput must be positive (or None for unlimited)")
        for name in ("enquire_link_interval", "response_timeout", "throttle_pause"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_timeouts < 1:
            raise ValueError("max_timeouts must be at least 1")


# -- events -------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    system_id: str
    interface_version: int | None


@dataclass(frozen=True)
class BindFailed:
    """
    The SMSC refused the bind (C{status}) or did not answer (C{status} None).
    """

    status: int | None
    reason: str


@dataclass(frozen=True)
class SegmentAccepted:
    """
    The SMSC accepted segment C{index} of job C{ref}. Comes before the job's
    L{SubmitAccepted}, so that a caller can keep each id as soon as it exists
    (a job of several segments may be cut short by a disconnect or a restart).
    """

    ref: Hashable
    index: int
    message_id: str


@dataclass(frozen=True)
class SubmitAccepted:
    ref: Hashable
    message_ids: tuple[str, ...]


@dataclass(frozen=True)
class SubmitFailed:
    """
    The job will not be sent. C{message_ids} holds the segments the SMSC had
    accepted anyway (None for the others).
    """

    ref: Hashable
    status: int
    temporary: bool
    message_ids: tuple[str | None, ...]

    @property
    def status_name(self) -> str:
        return status_name(self.status)


@dataclass(frozen=True)
class DeliveryReceipt:
    """
    A receipt for C{message_id}; C{key} is its canonical form (see
    L{mdmd.notify.smpp_pdu.message_id_key}), C{ref} the job it belongs to if
    this session still remembers it.
    """

    message_id: str
    key: str
    state: MessageState
    ref: Hashable | None
    receipt: Receipt


@dataclass(frozen=True)
class Unbound:
    by_peer: bool


@dataclass(frozen=True)
class LinkBroken:
    reason: str


@dataclass(frozen=True)
class ProtocolViolation:
    description: str
    status: int | None
    fatal: bool


@dataclass(frozen=True)
class Ignored:
    description: str


@dataclass(frozen=True)
class JobProgress:
    ref: Hashable
    message_ids: tuple[str | None, ...]


@dataclass(frozen=True)
class JobsReturned:
    """
    The session ended with these jobs unfinished; resubmit them with their
    C{message_ids} so that accepted segments are not sent again.
    """

    jobs: tuple[JobProgress, ...]


Event = Union[
    Bound,
    BindFailed,
    SegmentAccepted,
    SubmitAccepted,
    SubmitFailed,
    DeliveryReceipt,
    Unbound,
    LinkBroken,
    ProtocolViolation,
    Ignored,
    JobsReturned,
]


@dataclass(frozen=True)
class Output:
    """
    What the caller must do after an input: write C{data}, handle C{events},
    call C{tick} at C{deadline} (if not None), close after writing if
    C{disconnect}.
    """

    data: bytes
    events: tuple[Event, ...]
    deadline: float | None
    disconnect: bool


class LocalProtocolError(Exception):
    """
    The caller used the session in a way its state does not allow.
    """


# -- the tables ---------------------------------------------------------------


class State(enum.Enum):
    IDLE = "idle"  # no transport yet
    BINDING = "binding"  # bind sent
    BOUND = "bound"
    DRAINING = "draining"  # close() asked: nothing new goes out, waiting for responses
    UNBINDING = "unbinding"  # our unbind sent
    CLOSED = "closed"


class _Input(enum.Enum):
    CONNECTED = "connected"
    BIND_OK = "bind ok"
    BIND_REFUSED = "bind refused"
    CLOSE = "close"
    DRAINED = "drained"
    UNBIND_RESP = "unbind_resp"
    PEER_UNBIND = "peer unbind"
    BROKEN = "broken"


_S = State
_I = _Input
_LIVE: Final = (_S.BINDING, _S.BOUND, _S.DRAINING, _S.UNBINDING)

#: (state, input) → next state. Anything missing is a bug in this module.
_TRANSITIONS: Final[dict[tuple[State, _Input], State]] = {
    (_S.IDLE, _I.CONNECTED): _S.BINDING,
    (_S.IDLE, _I.CLOSE): _S.CLOSED,
    (_S.IDLE, _I.BROKEN): _S.CLOSED,
    (_S.BINDING, _I.BIND_OK): _S.BOUND,
    (_S.BINDING, _I.BIND_REFUSED): _S.CLOSED,
    (_S.BINDING, _I.CLOSE): _S.CLOSED,  # nothing to unbind yet
    (_S.BOUND, _I.CLOSE): _S.DRAINING,
    (_S.DRAINING, _I.CLOSE): _S.DRAINING,
    (_S.DRAINING, _I.DRAINED): _S.UNBINDING,
    (_S.UNBINDING, _I.CLOSE): _S.UNBINDING,
    (_S.UNBINDING, _I.UNBIND_RESP): _S.CLOSED,
    (_S.CLOSED, _I.CLOSE): _S.CLOSED,
    (_S.CLOSED, _I.BROKEN): _S.CLOSED,
    **{(s, _I.PEER_UNBIND): _S.CLOSED for s in _LIVE},
    **{(s, _I.BROKEN): _S.CLOSED for s in _LIVE},
}

#: Requests the SMSC may send us, and the states in which we serve them.
#: Receipts are taken on a transmitter bind too: rare, but harmless to accept.
_SERVED_IN: Final[dict[type[Pdu], frozenset[State]]] = {
    EnquireLink: frozenset(_LIVE),
    Unbind: frozenset(_LIVE),
    DeliverSm: frozenset({_S.BOUND, _S.DRAINING, _S.UNBINDING}),
    DataSm: frozenset({_S.BOUND, _S.DRAINING, _S.UNBINDING}),
}

#: Where our own enquire_link keeps the link checked.
_KEEPALIVE_IN: Final = frozenset({_S.BOUND, _S.DRAINING})

_REQUEST_BY_ID: Final[dict[int, type[Pdu]]] = {cls.command_id: cls for cls in RESPONSE_CLASS}
_RESPONSE_IDS: Final = frozenset(cls.command_id for cls in RESPONSE_CLASS.values())
_PAUSE_STATUSES: Final = frozenset({Status.ESME_RTHROTTLED, Status.ESME_RMSGQFUL})
_MAX_SEQUENCE: Final = 0x7FFFFFFF


# -- bookkeeping --------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    ref: Hashable
    templates: tuple[SubmitSm, ...]
    message_ids: list[str | None]
    throttled: list[int]
    retried: list[int]
    finished: bool = False

    def progress(self) -> JobProgress:
        return JobProgress(self.ref, tuple(self.message_ids))


@dataclass
class _Outstanding:
    request: type[Pdu]
    deadline: float
    job: _Job | None = None
    index: int = -1


@dataclass
class _Pending:
    """
    What accumulates while one input is handled.
    """

    data: list[bytes] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    disconnect: bool = False


def submit_templates(
    config: SessionConfig, destination: Address, segments: Sequence[SmsSegment]
) -> tuple[SubmitSm, ...]:
    """
    The submit_sm of each segment, sequence number left at 0.

    Raises L{ValueError} for what could never be sent (no segments, an
    address or message too long), so that callers can refuse a job at once.
    """
    if not segments:
        raise ValueError("a job needs at least one segment")
    templates = tuple(
        SubmitSm(
            sequence_number=0,
            service_type=config.service_type,
            source_addr_ton=config.source.ton,
            source_addr_npi=config.source.npi,
            source_addr=config.source.addr,
            dest_addr_ton=destination.ton,
            dest_addr_npi=destination.npi,
            destination_addr=destination.addr,
            esm_class=segment.esm_class,
            registered_delivery=config.registered_delivery,
            validity_period=config.validity_period,
            data_coding=segment.data_coding,
            short_message=segment.short_message,
        )
        for segment in segments
    )
    for template in templates:
        encode(template)
    return templates


class EsmeSession:
    """
    One SMPP connection, from bind to unbind, seen from the ESME.
    """

    def __init__(
        self, config: SessionConfig, receipt_refs: OrderedDict[str, Hashable] | None = None
    ) -> None:
        """
        @param receipt_refs: where to remember which job each accepted
            message id belongs to (bounded by C{config.receipt_memory}); pass
            the same mapping to successive sessions so that a receipt arriving
            after a reconnect still finds its job.
        """
        self._config = config
        self._state = State.IDLE
        self._decoder = PduDecoder()
        self._sequence = 0
        self._outstanding: dict[int, _Outstanding] = {}
        self._in_flight = 0
        self._enquiring = False
        self._last_received = 0.0
        self._jobs: dict[Hashable, _Job] = {}
        self._ready: deque[tuple[_Job, int]] = deque()
        self._delayed: list[tuple[float, int, _Job, int]] = []
        self._delay_order = itertools.count()
        self._late: dict[int, tuple[_Job, int]] = {}
        self._timeouts = 0
        self._paused_until = 0.0
        self._next_slot = 0.0
        self._receipt_refs = receipt_refs if receipt_refs is not None else OrderedDict()
        self._pending = _Pending()

    # -- public inputs -----------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def in_flight(self) -> int:
        """
        Submits sent and not yet answered.
        """
        return self._in_flight

    def connection_made(self, now: float) -> Output:
        """
        The transport is up: bind.
        """
        self._move(_I.CONNECTED)
        self._last_received = now
        c = self._config
        bind = BindTransceiver if c.bind_type is BindType.TRANSCEIVER else BindTransmitter
        self._request(
            bind(
                sequence_number=self._next_sequence(),
                system_id=c.system_id,
                password=c.password,
                system_type=c.system_type,
                addr_ton=c.addr_ton,
                addr_npi=c.addr_npi,
                address_range=c.address_range,
            ),
            now,
        )
        return self._finish(now)

    def receive_data(self, data: bytes, now: float) -> Output:
        """
        Bytes from the SMSC.
        """
        if self._state is State.CLOSED:
            return self._finish(now)
        self._decoder.feed(data)
        while self.state is not State.CLOSED:  # read afresh: the handlers may close it
            try:
                pdu = self._decoder.next_pdu()
            except PduError as e:
                self._last_received = now
                self._on_garbage(e, now)
                continue
            if pdu is None:
                break
            self._last_received = now
            self._on_pdu(pdu, now)
        return self._finish(now)

    def submit(
        self,
        ref: Hashable,
        destination: Address,
        segments: Sequence[SmsSegment],
        now: float,
        message_ids: Sequence[str | None] | None = None,
    ) -> Output:
        """
        Queue one job: the segments of one push to C{destination}.

        @param message_ids: the ids of segments an earlier session already got
            accepted (from L{JobsReturned}); those are not sent again.
        """
        if self._state not in (State.IDLE, State.BINDING, State.BOUND):
            raise LocalProtocolError(f"cannot submit while {self._state.value}")
        if ref in self._jobs:
            raise LocalProtocolError(f"job {ref!r} is already queued")
        ids: list[str | None] = (
            list(message_ids) if message_ids is not None else [None] * len(segments)
        )
        if len(ids) != len(segments):
            raise ValueError("one message id (or None) per segment")
        templates = submit_templates(self._config, destination, segments)
        job = _Job(ref, templates, ids, [0] * len(ids), [0] * len(ids))
        self._jobs[ref] = job
        self._ready.extend((job, i) for i, mid in enumerate(ids) if mid is None)
        self._check_accepted(job)
        return self._finish(now)

    def tick(self, now: float) -> Output:
        """
        Time passed: expire responses, keep the link alive, send what is due.
        """
        if self._state is State.CLOSED:
            return self._finish(now)
        for sequence, entry in sorted(self._outstanding.items(), key=lambda i: i[1].deadline):
            if entry.deadline <= now and sequence in self._outstanding:
                del self._outstanding[sequence]
                self._on_timeout(sequence, entry, now)
        if (
            self._state in _KEEPALIVE_IN
            and not self._enquiring
            and now >= self._last_received + self._config.enquire_link_interval
        ):
            self._enquiring = True
            self._request(EnquireLink(sequence_number=self._next_sequence()), now)
        return self._finish(now)

    def close(self, now: float) -> Output:
        """
        Stop: finish the submits in flight, then unbind (or just disconnect if
        the bind is not through yet). Queued jobs come back in L{JobsReturned}.
        """
        self._move(_I.CLOSE)
        self._maybe_drained(now)
        return self._finish(now)

    def connection_lost(self, now: float) -> Output:
        """
        The transport went away.
        """
        if self._state is not State.CLOSED:
            self._break("connection lost")
        return self._finish(now)

    # -- dispatch ------------------------------------------------------------

    def _on_pdu(self, pdu: Pdu, now: float) -> None:
        if pdu.is_response:
            self._on_response(pdu, now)
            return
        kind = type(pdu)
        served = _SERVED_IN.get(kind)
        if served is None:
            self._violation(f"{kind.__name__} is not for an ESME", Status.ESME_RINVCMDID)
            self._send(
                GenericNack(
                    sequence_number=pdu.sequence_number, command_status=Status.ESME_RINVCMDID
                )
            )
            return
        if self._state not in served:
            self._violation(f"{kind.__name__} while {self._state.value}", Status.ESME_RINVBNDSTS)
            self._send(
                RESPONSE_CLASS[kind](
                    sequence_number=pdu.sequence_number, command_status=Status.ESME_RINVBNDSTS
                )
            )
            return
        if isinstance(pdu, EnquireLink):
            self._send(EnquireLinkResp(sequence_number=pdu.sequence_number))
        elif isinstance(pdu, Unbind):
            self._send(UnbindResp(sequence_number=pdu.sequence_number))
            self._pending.events.append(Unbound(by_peer=True))
            self._move(_I.PEER_UNBIND)
        elif isinstance(pdu, (DeliverSm, DataSm)):
            self._send(RESPONSE_CLASS[kind](sequence_number=pdu.sequence_number))
            self._on_deliver(pdu)

    def _on_garbage(self, error: PduError, now: float) -> None:
        self._violation(str(error), error.command_status, fatal=error.fatal)
        request = None
        if error.command_id is not None and not error.fatal:
            request = _REQUEST_BY_ID.get(error.command_id)
        if request is not None:
            # The header was fine, the body was not: say so in its response.
            self._send(
                RESPONSE_CLASS[request](
                    sequence_number=error.sequence_number, command_status=error.command_status
                )
            )
        elif error.command_id not in _RESPONSE_IDS:  # a response is never answered
            self._send(
                GenericNack(
                    sequence_number=error.sequence_number, command_status=error.command_status
                )
            )
        if error.fatal:
            self._break(f"unreadable data from the SMSC: {error}")

    def _on_response(self, pdu: Pdu, now: float) -> None:
        entry = self._outstanding.pop(pdu.sequence_number, None)
        if entry is None:
            late = self._late.pop(pdu.sequence_number, None)
            if late is not None and isinstance(pdu, (SubmitSmResp, GenericNack)):
                self._on_submit_response(late[0], late[1], pdu, now)
            else:
                self._violation(
                    f"{type(pdu).__name__} #{pdu.sequence_number} answers nothing we sent", None
                )
            return
        if not isinstance(pdu, (GenericNack, RESPONSE_CLASS[entry.request])):
            self._outstanding[pdu.sequence_number] = entry
            self._violation(
                f"{type(pdu).__name__} #{pdu.sequence_number} answers a {entry.request.__name__}",
                None,
            )
            return
        if entry.request in (BindTransceiver, BindTransmitter):
            self._on_bind_response(pdu)
        elif entry.request is SubmitSm:
            self._in_flight -= 1
            assert entry.job is not None
            self._on_submit_response(entry.job, entry.index, pdu, now)
            self._maybe_drained(now)
        elif entry.request is EnquireLink:
            self._enquiring = False
        elif entry.request is Unbind:
            self._pending.events.append(Unbound(by_peer=False))
            self._move(_I.UNBIND_RESP)

    def _on_bind_response(self, pdu: Pdu) -> None:
        if pdu.command_status == Status.ESME_ROK and isinstance(
            pdu, (BindTransceiverResp, BindTransmitterResp)
        ):
            version = pdu.tlv(Tag.SC_INTERFACE_VERSION)
            self._pending.events.append(
                Bound(pdu.system_id, version[0] if version and len(version) == 1 else None)
            )
            self._move(_I.BIND_OK)
            return
        status = pdu.command_status or Status.ESME_RBINDFAIL
        self._pending.events.append(BindFailed(status, f"bind refused: {status_name(status)}"))
        self._move(_I.BIND_REFUSED)

    def _on_submit_response(self, job: _Job, index: int, pdu: Pdu, now: float) -> None:
        self._timeouts = 0
        if job.finished or job.message_ids[index] is not None:
            return  # the answer to a resend after a late acceptance, or to a dead job
        status = pdu.command_status
        if isinstance(pdu, GenericNack) and status == Status.ESME_ROK:
            status = Status.ESME_RUNKNOWNERR
        if status == Status.ESME_ROK:
            assert isinstance(pdu, SubmitSmResp)
            job.message_ids[index] = pdu.message_id
            self._pending.events.append(SegmentAccepted(job.ref, index, pdu.message_id))
            if pdu.message_id:
                self._remember(message_id_key(pdu.message_id, self._config.submit_id_base), job.ref)
            self._check_accepted(job)
        elif status in _PAUSE_STATUSES:
            job.throttled[index] += 1
            if job.throttled[index] > self._config.max_throttle_retries:
                self._fail(job, status, temporary=True)
            else:
                self._paused_until = max(self._paused_until, now + self._config.throttle_pause)
                self._ready.appendleft((job, index))
        elif is_temporary(status):
            job.retried[index] += 1
            if job.retried[index] > self._config.max_temporary_retries:
                self._fail(job, status, temporary=True)
            else:
                due = now + self._config.temporary_retry_delay
                heapq.heappush(self._delayed, (due, next(self._delay_order), job, index))
        else:
            self._fail(job, status, temporary=False)

    def _on_timeout(self, sequence: int, entry: _Outstanding, now: float) -> None:
        waited = self._config.response_timeout
        if entry.request in (BindTransceiver, BindTransmitter):
            self._pending.events.append(BindFailed(None, f"no bind response within {waited:g} s"))
            self._break("bind timed out")
        elif entry.request is EnquireLink:
            self._break(f"enquire_link unanswered for {waited:g} s")
        elif entry.request is Unbind:
            self._break(f"unbind unanswered for {waited:g} s")
        else:
            assert entry.job is not None
            self._in_flight -= 1
            self._late[sequence] = (entry.job, entry.index)
            self._ready.appendleft((entry.job, entry.index))
            self._timeouts += 1
            if self._timeouts >= self._config.max_timeouts:
                self._break(f"{self._timeouts} submits in a row unanswered")
            else:
                self._maybe_drained(now)

    def _on_deliver(self, pdu: DeliverSm | DataSm) -> None:
        receipt = parse_receipt(pdu)
        if receipt is None:
            self._pending.events.append(
                Ignored(f"{type(pdu).__name__} from {pdu.source_addr!r} is not a receipt")
            )
            return
        if receipt.unreadable:
            self._violation(
                f"{type(pdu).__name__} #{pdu.sequence_number}: receipt field(s) "
                f"{', '.join(receipt.unreadable)} unreadable; the rest is used",
                None,
            )
        base = self._config.submit_id_base if receipt.id_from_tlv else self._config.receipt_id_base
        key = message_id_key(receipt.message_id, base)
        self._pending.events.append(
            DeliveryReceipt(
                message_id=receipt.message_id,
                key=key,
                state=receipt.state,
                ref=self._receipt_refs.get(key),
                receipt=receipt,
            )
        )

    # -- helpers ----------------------------------------------------------------

    def _move(self, event: _Input) -> None:
        try:
            new = _TRANSITIONS[(self._state, event)]
        except KeyError:
            raise LocalProtocolError(
                f"{event.value} is not allowed while {self._state.value}"
            ) from None
        if new is State.CLOSED and self._state is not State.CLOSED:
            self._closed()
        self._state = new

    def _closed(self) -> None:
        unfinished = tuple(job.progress() for job in self._jobs.values() if not job.finished)
        if unfinished:
            self._pending.events.append(JobsReturned(unfinished))
        self._jobs.clear()
        self._ready.clear()
        self._delayed.clear()
        self._late.clear()
        self._outstanding.clear()
        self._in_flight = 0
        self._pending.disconnect = True

    def _break(self, reason: str) -> None:
        if self._state is not State.CLOSED:
            self._pending.events.append(LinkBroken(reason))
        self._move(_I.BROKEN)

    def _maybe_drained(self, now: float) -> None:
        if self._state is State.DRAINING and self._in_flight == 0:
            self._move(_I.DRAINED)
            self._request(Unbind(sequence_number=self._next_sequence()), now)

    def _check_accepted(self, job: _Job) -> None:
        if all(mid is not None for mid in job.message_ids):
            job.finished = True
            del self._jobs[job.ref]
            ids = tuple(mid for mid in job.message_ids if mid is not None)
            self._pending.events.append(SubmitAccepted(job.ref, ids))

    def _fail(self, job: _Job, status: int, temporary: bool) -> None:
        job.finished = True
        del self._jobs[job.ref]
        self._late = {seq: late for seq, late in self._late.items() if late[0] is not job}
        self._pending.events.append(
            SubmitFailed(job.ref, status, temporary, tuple(job.message_ids))
        )

    def _remember(self, key: str, ref: Hashable) -> None:
        self._receipt_refs[key] = ref
        self._receipt_refs.move_to_end(key)
        while len(self._receipt_refs) > self._config.receipt_memory:
            self._receipt_refs.popitem(last=False)

    def _violation(self, description: str, status: int | None, fatal: bool = False) -> None:
        self._pending.events.append(ProtocolViolation(description, status, fatal))

    def _next_sequence(self) -> int:
        while True:
            self._sequence = self._sequence % _MAX_SEQUENCE + 1
            if self._sequence not in self._outstanding and self._sequence not in self._late:
                return self._sequence

    def _send(self, pdu: Pdu) -> None:
        self._pending.data.append(encode(pdu))

    def _request(self, pdu: Pdu, now: float, job: _Job | None = None, index: int = -1) -> None:
        self._outstanding[pdu.sequence_number] = _Outstanding(
            type(pdu), now + self._config.response_timeout, job, index
        )
        self._send(pdu)

    def _pump(self, now: float) -> None:
        """
        Send the queued segments that the window, the pause and the pace allow.
        """
        if self._state is not State.BOUND:
            return
        due = []
        while self._delayed and self._delayed[0][0] <= now:
            _, _, job, index = heapq.heappop(self._delayed)
            due.append((job, index))
        self._ready.extendleft(reversed(due))
        if now < self._paused_until:
            return
        interval = 1.0 / self._config.throughput if self._config.throughput else 0.0
        while self._ready and self._in_flight < self._config.window:
            if interval and now < self._next_slot:
                return
            job, index = self._ready.popleft()
            if job.finished or job.message_ids[index] is not None:
                continue
            pdu = replace(job.templates[index], sequence_number=self._next_sequence())
            self._request(pdu, now, job, index)
            self._in_flight += 1
            if interval:
                self._next_slot = max(self._next_slot, now - interval / 2) + interval

    def _deadline(self) -> float | None:
        times = [entry.deadline for entry in self._outstanding.values()]
        if self._state in _KEEPALIVE_IN and not self._enquiring:
            times.append(self._last_received + self._config.enquire_link_interval)
        if self._state is State.BOUND:
            if self._delayed:
                times.append(self._delayed[0][0])
            if self._ready and self._in_flight < self._config.window:
                times.append(max(self._paused_until, self._next_slot))
        return min(times) if times else None

    def _finish(self, now: float) -> Output:
        self._pump(now)
        pending, self._pending = self._pending, _Pending()
        return Output(
            data=b"".join(pending.data),
            events=tuple(pending.events),
            deadline=None if self._state is State.CLOSED else self._deadline(),
            disconnect=pending.disconnect,
        )
