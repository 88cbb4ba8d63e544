"""
An in-process fake SMSC, for tests and benchmarks of the SMPP client.

It speaks SMPP 3.4 through mdmd's own codec and can misbehave on purpose, in
the ways real SMSCs do (the scenarios Jasmin's test simulator catalogues):
throttle every Nth submit, fail with a status, never answer, answer with
generic_nack, unbind after N submits, drop the connection with the window
full, refuse the bind, send delivery receipts as TLVs and/or text. Every PDU
it receives is recorded, across connections, in L{FakeSmscFactory.received}.
Where it behaves well it answers as the SMSCs of node-smpp and Net::SMPP do
(C{tests/testing/test_smsc.py} holds the same conversations with all three).

    factory = FakeSmscFactory(Scenario(password="secret", receipts=Receipts.TLV))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")

L{MemorySmppNetwork} connects mdmd's own L{ESMEService} to it in memory, on a
C{MemoryReactorClock}, so a test decides when bytes move and time passes;
L{ESME_CONFIG} binds with the default L{Scenario}.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test.iosim import ConnectionCompleter, IOPump

from mdmd.notify import smpp_pdu as p
from mdmd.notify.smpp_client import ESMEService, SubmitOutcome
from mdmd.notify.smpp_session import Address, SessionConfig
from mdmd.notify.wap import SmsSegment

__all__ = [
    "ESME_CONFIG",
    "HANDSET",
    "ONE_SEGMENT",
    "FakeSmsc",
    "FakeSmscFactory",
    "MemorySmppNetwork",
    "Receipts",
    "Scenario",
]

#: ESME session settings the default L{Scenario} accepts.
ESME_CONFIG = SessionConfig(
    system_id="mdmd",
    password="secret",
    system_type="WAP",
    source=Address("MDMD", 5, 0),
    response_timeout=10.0,
    enquire_link_interval=30.0,
)
#: A handset to push to.
HANDSET = Address("491701234567")
#: A WAP push that fits one SMS: its UDH (ports 2948 and 9200), then a payload.
ONE_SEGMENT = (SmsSegment(b"\x06\x05\x04\x0b\x84\x23\xf0hello"),)


class Receipts(enum.Enum):
    NONE = "none"
    TLV = "tlv"  # receipted_message_id + message_state, no text
    TEXT = "text"  # id:… stat:… text only
    BOTH = "both"


@dataclass(frozen=True)
class Scenario:
    """
    How the fake SMSC behaves. Counts are per factory (across connections).
    """

    system_id: str = "mdmd"
    password: str = "secret"
    smsc_system_id: str = "FAKESMSC"
    #: Every Nth submit_sm gets ESME_RTHROTTLED (0: never).
    throttle_every: int = 0
    #: Every Nth submit_sm gets C{fail_status} (0: never).
    fail_every: int = 0
    fail_status: int = p.Status.ESME_RSYSERR
    #: False: submit_sm is never answered.
    respond: bool = True
    #: Answer submit_sm with generic_nack of this status instead (None: don't).
    nack_status: int | None = None
    #: Send unbind right after answering the Nth submit_sm (0: never).
    unbind_after: int = 0
    #: Drop the connection, unanswered, when the Nth submit_sm arrives (0: never).
    disconnect_after: int = 0
    receipts: Receipts = Receipts.NONE
    receipt_stat: str = "DELIVRD"
    #: message ids are the submit count in hex ("1F") or decimal ("31").
    hex_message_ids: bool = True
    #: Text receipts spell the id in decimal, as many SMSCs do.
    decimal_text_ids: bool = True


#: The answer to each bind.
_BIND_RESPONSE = {
    p.BindReceiver: p.BindReceiverResp,
    p.BindTransmitter: p.BindTransmitterResp,
    p.BindTransceiver: p.BindTransceiverResp,
}


@dataclass
class _Counters:
    submits: itertools.count = field(default_factory=lambda: itertools.count(1))
    message_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    sequence: itertools.count = field(default_factory=lambda: itertools.count(1))


class FakeSmsc(Protocol):
    """
    One ESME connection to the fake SMSC.
    """

    factory: FakeSmscFactory

    def __init__(self, factory: FakeSmscFactory) -> None:
        self.factory = factory
        self._decoder = p.PduDecoder()
        self.bound = False

    def connectionMade(self) -> None:
        self.factory.connections.append(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.factory.lost += 1

    def dataReceived(self, data: bytes) -> None:
        self._decoder.feed(data)
        while self.transport is not None and not getattr(self.transport, "disconnecting", False):
            try:
                pdu = self._decoder.next_pdu()
            except p.PduError as e:
                self.send(
                    p.GenericNack(
                        sequence_number=e.sequence_number, command_status=e.command_status
                    )
                )
                if e.fatal:
                    self.transport.loseConnection()
                continue
            if pdu is None:
                return
            self.factory.received.append(pdu)
            self._on_pdu(pdu)

    # -- what the tests can make the SMSC do -----------------------------------

    def send(self, pdu: p.Pdu) -> None:
        assert self.transport is not None, "not connected"
        self.transport.write(p.encode(pdu))

    def hang_up(self) -> None:
        assert self.transport is not None, "not connected"
        self.transport.loseConnection()

    def next_sequence(self) -> int:
        return next(self.factory.counters.sequence)

    def send_unbind(self) -> None:
        self.send(p.Unbind(sequence_number=self.next_sequence()))

    def send_enquire_link(self) -> None:
        self.send(p.EnquireLink(sequence_number=self.next_sequence()))

    def send_receipt(self, message_id: str, submit: p.SubmitSm, style: Receipts) -> None:
        scenario = self.factory.scenario
        tlvs: tuple[p.Tlv, ...] = ()
        text = b""
        if style in (Receipts.TLV, Receipts.BOTH):
            state = p.STAT_STATES.get(scenario.receipt_stat, p.MessageState.UNKNOWN)
            tlvs = (
                p.Tlv(p.Tag.RECEIPTED_MESSAGE_ID, message_id.encode() + b"\0"),
                p.Tlv(p.Tag.MESSAGE_STATE, bytes([state])),
            )
        if style in (Receipts.TEXT, Receipts.BOTH):
            text_id = message_id
            if scenario.decimal_text_ids and scenario.hex_message_ids:
                text_id = str(int(message_id, 16))
            text = (
                f"id:{text_id} sub:001 dlvrd:001 submit date:2611220101 "
                f"done date:2611220102 stat:{scenario.receipt_stat} err:000 text:"
            ).encode()
        self.send(
            p.DeliverSm(
                sequence_number=self.next_sequence(),
                source_addr_ton=submit.dest_addr_ton,
                source_addr_npi=submit.dest_addr_npi,
                source_addr=submit.destination_addr,
                dest_addr_ton=submit.source_addr_ton,
                dest_addr_npi=submit.source_addr_npi,
                destination_addr=submit.source_addr,
                esm_class=0x04,
                short_message=text,
                tlvs=tlvs,
            )
        )

    # -- the behaviour ----------------------------------------------------------

    def _on_pdu(self, pdu: p.Pdu) -> None:
        scenario = self.factory.scenario
        if isinstance(pdu, (p.BindTransmitter, p.BindTransceiver, p.BindReceiver)):
            status = p.Status.ESME_ROK
            if pdu.system_id != scenario.system_id:
                status = p.Status.ESME_RINVSYSID
            elif pdu.password != scenario.password:
                status = p.Status.ESME_RINVPASWD
            elif self.bound:
                status = p.Status.ESME_RALYBND
            self.bound = status == p.Status.ESME_ROK
            self.send(
                _BIND_RESPONSE[type(pdu)](
                    sequence_number=pdu.sequence_number,
                    command_status=status,
                    system_id=scenario.smsc_system_id,
                )
            )
        elif isinstance(pdu, p.SubmitSm):
            self._on_submit(pdu)
        elif isinstance(pdu, p.EnquireLink):
            self.send(p.EnquireLinkResp(sequence_number=pdu.sequence_number))
        elif isinstance(pdu, p.Unbind):
            self.send(p.UnbindResp(sequence_number=pdu.sequence_number))
            self.hang_up()
        elif isinstance(pdu, p.UnbindResp):
            self.hang_up()
        elif not pdu.is_response:
            self.send(
                p.GenericNack(
                    sequence_number=pdu.sequence_number, command_status=p.Status.ESME_RINVCMDID
                )
            )

    def _on_submit(self, pdu: p.SubmitSm) -> None:
        scenario = self.factory.scenario
        n = next(self.factory.counters.submits)
        if not self.bound:
            self.send(
                p.SubmitSmResp(
                    sequence_number=pdu.sequence_number, command_status=p.Status.ESME_RINVBNDSTS
                )
            )
            return
        if scenario.disconnect_after and n % scenario.disconnect_after == 0:
            self.hang_up()
            return
        if not scenario.respond:
            return
        if scenario.nack_status is not None:
            self.send(
                p.GenericNack(
                    sequence_number=pdu.sequence_number, command_status=scenario.nack_status
                )
            )
            return
        status: int = p.Status.ESME_ROK
        if scenario.throttle_every and n % scenario.throttle_every == 0:
            status = p.Status.ESME_RTHROTTLED
        elif scenario.fail_every and n % scenario.fail_every == 0:
            status = scenario.fail_status
        if status != p.Status.ESME_ROK:
            self.send(p.SubmitSmResp(sequence_number=pdu.sequence_number, command_status=status))
        else:
            number = next(self.factory.counters.message_ids)
            message_id = format(number, "X") if scenario.hex_message_ids else str(number)
            self.factory.accepted.append((message_id, pdu))
            self.send(p.SubmitSmResp(sequence_number=pdu.sequence_number, message_id=message_id))
            if scenario.receipts is not Receipts.NONE:
                self.send_receipt(message_id, pdu, scenario.receipts)
        if scenario.unbind_after and n % scenario.unbind_after == 0:
            self.send_unbind()


class FakeSmscFactory(Factory[FakeSmsc]):
    """
    Builds L{FakeSmsc} connections sharing one scenario and one record.

    @ivar received: every PDU received, in order, from every connection.
    @ivar accepted: (message_id, submit_sm) for every submit answered with OK.
    @ivar connections: every connection made, the latest last.
    """

    def __init__(self, scenario: Scenario = Scenario()) -> None:
        self.scenario = scenario
        self.received: list[p.Pdu] = []
        self.accepted: list[tuple[str, p.SubmitSm]] = []
        self.connections: list[FakeSmsc] = []
        self.lost = 0
        self.counters = _Counters()

    def buildProtocol(self, addr: IAddress | None) -> FakeSmsc:
        return FakeSmsc(self)

    @property
    def submits(self) -> list[p.SubmitSm]:
        return [pdu for pdu in self.received if isinstance(pdu, p.SubmitSm)]


class MemorySmppNetwork:
    """
    An L{ESMEService} and a fake SMSC on one memory reactor.

    The service's reconnection delays are recorded in C{delays}, its state
    and receipt events in C{states} and C{receipts}; C{connect} completes the
    pending connection attempt, C{flush} moves the bytes both ways.
    """

    def __init__(self, scenario: Scenario = Scenario(), **config: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.smsc = FakeSmscFactory(scenario)
        self.reactor.listenTCP(2775, self.smsc, interface="127.0.0.1")
        self.completer = ConnectionCompleter(self.reactor)
        self.delays: list[float] = []
        self.service = ESMEService(
            TCP4ClientEndpoint(self.reactor, "127.0.0.1", 2775),
            replace(ESME_CONFIG, **config),
            clock=self.reactor,
            retry_policy=self._policy,
        )
        self.states: list[object] = []
        self.receipts: list[object] = []
        self.service.add_state_observer(self.states.append)
        self.service.add_receipt_observer(self.receipts.append)
        self.pump: IOPump | None = None

    def _policy(self, attempt: int) -> float:
        delay = 2.0**attempt
        self.delays.append(delay)
        return delay

    def start(self) -> None:
        self.service.startService()
        self.connect()

    def connect(self) -> None:
        pump = self.completer.succeedOnce()
        assert pump is not None, "no connection attempt pending"
        self.pump = pump
        pump.flush()

    def flush(self) -> None:
        assert self.pump is not None
        self.pump.flush()

    def advance(self, seconds: float) -> None:
        self.reactor.advance(seconds)
        self.flush()

    def submit(
        self,
        ref: Hashable,
        segments: Sequence[SmsSegment] = ONE_SEGMENT,
        message_ids: Sequence[str | None] | None = None,
    ) -> list[SubmitOutcome | Failure]:
        """
        Submit to L{HANDSET} and move the bytes; what the submission fired with, if it did.
        """
        results: list[SubmitOutcome | Failure] = []
        d: Deferred[SubmitOutcome] = self.service.submit(ref, HANDSET, segments, message_ids)
        d.addBoth(results.append)
        if self.pump is not None:
            self.flush()
        return results
