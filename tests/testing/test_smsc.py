"""
Tests for L{mdmd.testing.smsc}: the fake SMSC answers what real SMSCs answer.

The same conversations, PDU by PDU over loopback TCP, are held with the fake
and with the SMSCs others wrote that C{tests/peers} runs (node-smpp and
Net::SMPP); each answer is reduced to what a client may rely on (command,
status, sequence number, whether an id came back, what a receipt says) and
must be the one written down here, whoever answered. Then the fake's own
misbehaviours, in memory, and L{MemorySmppNetwork}.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from typing import TYPE_CHECKING

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mdmd.notify import smpp_pdu as p
from mdmd.notify.smpp_client import SubmitOutcome
from mdmd.notify.smpp_session import Bound, submit_templates
from mdmd.testing.smsc import (
    ESME_CONFIG,
    HANDSET,
    ONE_SEGMENT,
    FakeSmsc,
    FakeSmscFactory,
    MemorySmppNetwork,
    Receipts,
    Scenario,
)
from tests.notify.peers import Peer, node_or_skip, perl_or_skip, start_peer
from tests.servers import serve

if TYPE_CHECKING:
    _MixinBase = TestCase
else:
    _MixinBase = object

#: How long a peer may take to answer one PDU.
TIMEOUT = 10.0

(SUBMIT,) = submit_templates(ESME_CONFIG, HANDSET, ONE_SEGMENT)


def bind(sequence_number: int, system_id: str = "mdmd", password: str = "secret") -> p.BindTransceiver:
    return p.BindTransceiver(sequence_number=sequence_number, system_id=system_id, password=password)


def submit(sequence_number: int) -> p.SubmitSm:
    return replace(SUBMIT, sequence_number=sequence_number)


def query_sm(sequence_number: int) -> bytes:
    """
    A query_sm (for message "1"), which neither the fake nor Net::SMPP's SMSC serves.
    """
    body = b"1\0" + b"\x00\x00" + b"\0"
    return struct.pack(">IIII", 16 + len(body), 0x00000003, 0, sequence_number) + body


Answer = tuple[object, ...]


def reduce(pdu: p.Pdu, accepted: str | None) -> Answer:
    """
    What a client may rely on in an answer: for responses the command, status
    and sequence number (and, for submit_sm_resp, whether an id came back);
    for a receipt whether it names the message accepted last, the state it
    reports, whether by TLV, and its addresses.
    """
    if isinstance(pdu, p.DeliverSm):
        receipt = p.parse_receipt(pdu)
        assert receipt is not None, pdu
        return (
            "DeliverSm",
            receipt.message_id == accepted,
            receipt.state,
            receipt.id_from_tlv,
            pdu.source_addr,
            pdu.destination_addr,
        )
    answer: Answer = (type(pdu).__name__, pdu.command_status, pdu.sequence_number)
    if isinstance(pdu, p.SubmitSmResp):
        answer += (bool(pdu.message_id),)
    return answer


class _Esme(Protocol):
    """
    A bare ESME: sends what it is given and collects every PDU it receives.
    """

    def __init__(self) -> None:
        self.decoder = p.PduDecoder()
        self.received: list[p.Pdu] = []
        self.closed: Deferred[None] = Deferred()
        self._waiting: list[tuple[int, Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.decoder.feed(data)
        while (pdu := self.decoder.next_pdu()) is not None:
            self.received.append(pdu)
        for entry in list(self._waiting):
            if len(self.received) >= entry[0]:
                self._waiting.remove(entry)
                entry[1].callback(None)

    def connectionLost(self, reason: Failure | None = None) -> None:
        waiting, self._waiting = self._waiting, []
        for count, d in waiting:
            d.errback(ConnectionError(f"closed with {len(self.received)} of {count} PDUs: {self.received}"))
        self.closed.callback(None)

    async def converse(self, steps: list[tuple[p.Pdu | bytes, int]]) -> list[list[Answer]]:
        """
        Send each step's PDU and wait for its number of answers; the answers, reduced.
        """
        out: list[list[Answer]] = []
        accepted: str | None = None
        for pdu, count in steps:
            assert self.transport is not None
            self.transport.write(pdu if isinstance(pdu, bytes) else p.encode(pdu))
            wanted = len(self.received) + count
            if len(self.received) < wanted:
                d: Deferred[None] = Deferred()
                self._waiting.append((wanted, d))
                await d.addTimeout(TIMEOUT, reactor)
            answers = self.received[wanted - count : wanted]
            for answer in answers:
                if isinstance(answer, p.SubmitSmResp) and answer.message_id:
                    accepted = answer.message_id
            out.append([reduce(answer, accepted) for answer in answers])
        return out


#: Unbound submit, two refused binds, a bind, a keep-alive, a submit (with a
#: text receipt) and an unbind, after which the SMSC hangs up.
SESSION: list[tuple[p.Pdu | bytes, int]] = [
    (submit(1), 1),
    (bind(2, system_id="nobody"), 1),
    (bind(3, password="wrong"), 1),
    (bind(4), 1),
    (p.EnquireLink(sequence_number=5), 1),
    (submit(6), 2),
    (p.Unbind(sequence_number=7), 1),
]


def session_answers(tlv: bool) -> list[list[Answer]]:
    return [
        [("SubmitSmResp", p.Status.ESME_RINVBNDSTS, 1, False)],
        [("BindTransceiverResp", p.Status.ESME_RINVSYSID, 2)],
        [("BindTransceiverResp", p.Status.ESME_RINVPASWD, 3)],
        [("BindTransceiverResp", p.Status.ESME_ROK, 4)],
        [("EnquireLinkResp", p.Status.ESME_ROK, 5)],
        [
            ("SubmitSmResp", p.Status.ESME_ROK, 6, True),
            ("DeliverSm", True, p.MessageState.DELIVERED, tlv, HANDSET.addr, ESME_CONFIG.source.addr),
        ],
        [("UnbindResp", p.Status.ESME_ROK, 7)],
    ]


class _SmscContract(_MixinBase):
    """
    Conversations every SMSC here holds alike; subclasses say how to reach one.
    """

    async def connect(self, receipts: Receipts, throttle_every: int = 0) -> _Esme:
        raise NotImplementedError

    async def esme_on(self, port: int) -> _Esme:
        esme = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), _Esme())

        def close() -> Deferred[None]:
            if not esme.closed.called and esme.transport is not None:
                esme.transport.loseConnection()
            return esme.closed

        self.addCleanup(close)
        return esme

    async def hangs_up(self, esme: _Esme) -> None:
        """
        The SMSC closes the connection, having sent nothing more.
        """
        count = len(esme.received)
        await esme.closed.addTimeout(TIMEOUT, reactor)
        self.assertEqual(esme.received[count:], [])

    async def test_session_with_text_receipt(self) -> None:
        """
        Submitting unbound, wrong system id, wrong password, bind, enquire_link,
        an accepted submit_sm with a text receipt, unbind: the answers are the
        same, and the SMSC hangs up after unbind_resp.
        """
        esme = await self.connect(Receipts.TEXT)
        self.assertEqual(await esme.converse(SESSION), session_answers(tlv=False))
        await self.hangs_up(esme)


class _NodeContract(_SmscContract):
    """
    What node-smpp's SMSC does beyond Net::SMPP's: TLV receipts, throttling.
    """

    async def test_session_with_tlv_receipt(self) -> None:
        """
        The same session, the receipt in TLVs (receipted_message_id and message_state).
        """
        esme = await self.connect(Receipts.TLV)
        self.assertEqual(await esme.converse(SESSION), session_answers(tlv=True))
        await self.hangs_up(esme)

    async def test_throttled(self) -> None:
        """
        With every second submit throttled, the second is answered
        ESME_RTHROTTLED and the third accepted again.
        """
        esme = await self.connect(Receipts.NONE, throttle_every=2)
        answers = await esme.converse(
            [(bind(1), 1), (submit(2), 1), (submit(3), 1), (submit(4), 1), (p.Unbind(sequence_number=5), 1)]
        )
        self.assertEqual(
            answers,
            [
                [("BindTransceiverResp", p.Status.ESME_ROK, 1)],
                [("SubmitSmResp", p.Status.ESME_ROK, 2, True)],
                [("SubmitSmResp", p.Status.ESME_RTHROTTLED, 3, False)],
                [("SubmitSmResp", p.Status.ESME_ROK, 4, True)],
                [("UnbindResp", p.Status.ESME_ROK, 5)],
            ],
        )


class _PerlContract(_SmscContract):
    """
    What Net::SMPP's SMSC does beyond node-smpp's: generic_nack for a command it does not serve.
    """

    async def test_unserved_command(self) -> None:
        """
        A query_sm is answered with generic_nack ESME_RINVCMDID, and the session goes on.
        """
        esme = await self.connect(Receipts.NONE)
        answers = await esme.converse(
            [(bind(1), 1), (query_sm(2), 1), (p.EnquireLink(sequence_number=3), 1), (p.Unbind(sequence_number=4), 1)]
        )
        self.assertEqual(
            answers,
            [
                [("BindTransceiverResp", p.Status.ESME_ROK, 1)],
                [("GenericNack", p.Status.ESME_RINVCMDID, 2)],
                [("EnquireLinkResp", p.Status.ESME_ROK, 3)],
                [("UnbindResp", p.Status.ESME_ROK, 4)],
            ],
        )
        await self.hangs_up(esme)


class FakeSmscContractTests(_NodeContract, _PerlContract, TestCase):
    """
    The fake, listening on loopback, holds every conversation.
    """

    async def connect(self, receipts: Receipts, throttle_every: int = 0) -> _Esme:
        factory = FakeSmscFactory(Scenario(receipts=receipts, throttle_every=throttle_every))
        return await self.esme_on(serve(self, factory))


class NodeSmscContractTests(_NodeContract, TestCase):
    """
    node-smpp 0.5.1 (C{tests/peers/smsc.js}) holds the same conversations.
    """

    def setUp(self) -> None:
        self.node = node_or_skip()

    async def connect(self, receipts: Receipts, throttle_every: int = 0) -> _Esme:
        argv = [self.node, "smsc.js", "--quiet", "--receipts", receipts.value]
        if throttle_every:
            argv += ["--throttle-every", str(throttle_every)]
        peer: Peer = start_peer(self, self.node, argv)
        return await self.esme_on(await peer.port)


class PerlSmscContractTests(_PerlContract, TestCase):
    """
    Net::SMPP (C{tests/peers/smsc.pl}) holds the same conversations.
    """

    def setUp(self) -> None:
        self.perl = perl_or_skip()

    async def connect(self, receipts: Receipts, throttle_every: int = 0) -> _Esme:
        assert receipts in (Receipts.NONE, Receipts.TEXT) and not throttle_every
        argv = [self.perl, "smsc.pl"] + (["--receipts"] if receipts is Receipts.TEXT else [])
        peer = start_peer(self, self.perl, argv)
        return await self.esme_on(await peer.port)


class ScenarioTests(SynchronousTestCase):
    """
    The fake's own misbehaviours, in memory.
    """

    def connect(self, factory: FakeSmscFactory) -> tuple[FakeSmsc, StringTransport]:
        smsc = factory.buildProtocol(None)
        transport = StringTransport()
        smsc.makeConnection(transport)
        return smsc, transport

    def answers(self, smsc: FakeSmsc, transport: StringTransport, *pdus: p.Pdu) -> list[p.Pdu]:
        for pdu in pdus:
            smsc.dataReceived(p.encode(pdu))
        decoder = p.PduDecoder()
        decoder.feed(transport.value())
        transport.clear()
        out = []
        while (decoded := decoder.next_pdu()) is not None:
            out.append(decoded)
        return out

    def bound(self, scenario: Scenario) -> tuple[FakeSmscFactory, FakeSmsc, StringTransport]:
        factory = FakeSmscFactory(scenario)
        smsc, transport = self.connect(factory)
        (answer,) = self.answers(smsc, transport, bind(1))
        self.assertEqual(answer.command_status, p.Status.ESME_ROK)
        return factory, smsc, transport

    def test_fail_every(self) -> None:
        """
        Every Nth submit_sm gets the scenario's failure status; the others an id.
        """
        _, smsc, transport = self.bound(Scenario(fail_every=2, fail_status=p.Status.ESME_RSUBMITFAIL))
        answers = self.answers(smsc, transport, submit(2), submit(3), submit(4))
        self.assertEqual(
            [(a.command_status, a.message_id) for a in answers if isinstance(a, p.SubmitSmResp)],
            [(p.Status.ESME_ROK, "1"), (p.Status.ESME_RSUBMITFAIL, ""), (p.Status.ESME_ROK, "2")],
        )

    def test_silent(self) -> None:
        """
        With C{respond=False} a submit_sm is recorded but never answered.
        """
        factory, smsc, transport = self.bound(Scenario(respond=False))
        self.assertEqual(self.answers(smsc, transport, submit(2)), [])
        self.assertEqual([s.sequence_number for s in factory.submits], [2])

    def test_generic_nack(self) -> None:
        """
        With C{nack_status} a submit_sm is answered with generic_nack of that status.
        """
        _, smsc, transport = self.bound(Scenario(nack_status=p.Status.ESME_RSYSERR))
        (answer,) = self.answers(smsc, transport, submit(2))
        self.assertEqual(
            (type(answer), answer.command_status, answer.sequence_number),
            (p.GenericNack, p.Status.ESME_RSYSERR, 2),
        )

    def test_unbind_after(self) -> None:
        """
        With C{unbind_after=N} the SMSC sends unbind right after answering the Nth submit_sm.
        """
        _, smsc, transport = self.bound(Scenario(unbind_after=1))
        answers = self.answers(smsc, transport, submit(2))
        self.assertEqual([type(a) for a in answers], [p.SubmitSmResp, p.Unbind])

    def test_disconnect_after(self) -> None:
        """
        With C{disconnect_after=N} the Nth submit_sm is dropped with the connection.
        """
        _, smsc, transport = self.bound(Scenario(disconnect_after=2))
        answers = self.answers(smsc, transport, submit(2), submit(3))
        self.assertEqual([a.sequence_number for a in answers], [2])
        self.assertTrue(transport.disconnecting)

    def test_already_bound(self) -> None:
        """
        A second bind on a bound connection is refused with ESME_RALYBND.
        """
        _, smsc, transport = self.bound(Scenario())
        (answer,) = self.answers(smsc, transport, bind(2))
        self.assertEqual(answer.command_status, p.Status.ESME_RALYBND)

    def test_hex_and_decimal_ids(self) -> None:
        """
        Message ids count in hex by default, in decimal if asked; text
        receipts spell a hex id in decimal unless told not to.
        """
        _, smsc, transport = self.bound(Scenario(receipts=Receipts.TEXT))
        for n in range(2, 12):
            answers = self.answers(smsc, transport, submit(n))
        response, receipt = answers
        assert isinstance(response, p.SubmitSmResp) and isinstance(receipt, p.DeliverSm)
        self.assertEqual(response.message_id, "A")
        self.assertIn(b"id:10 ", receipt.short_message)
        _, smsc, transport = self.bound(Scenario(receipts=Receipts.TEXT, decimal_text_ids=False))
        for n in range(2, 12):
            answers = self.answers(smsc, transport, submit(n))
        self.assertIn(b"id:A ", answers[1].short_message)  # type: ignore[attr-defined]
        _, smsc, transport = self.bound(Scenario(hex_message_ids=False))
        for n in range(2, 12):
            (response,) = self.answers(smsc, transport, submit(n))
        self.assertEqual(response.message_id, "10")  # type: ignore[attr-defined]

    def test_records_across_connections(self) -> None:
        """
        The factory records every PDU received and every submit accepted, from
        every connection, and counts lost connections.
        """
        factory = FakeSmscFactory()
        for sequence in (1, 2):
            smsc, transport = self.connect(factory)
            self.answers(smsc, transport, bind(sequence), submit(10 + sequence))
            smsc.connectionLost()
        self.assertEqual([pdu.sequence_number for pdu in factory.received], [1, 11, 2, 12])
        self.assertEqual([(mid, s.sequence_number) for mid, s in factory.accepted], [("1", 11), ("2", 12)])
        self.assertEqual((len(factory.connections), factory.lost), (2, 2))


class MemorySmppNetworkTests(SynchronousTestCase):
    def test_push_through(self) -> None:
        """
        The real ESMEService binds to the fake over the memory reactor with
        L{ESME_CONFIG}, and a submit to L{HANDSET} is accepted.
        """
        net = MemorySmppNetwork()
        net.start()
        self.assertTrue(any(isinstance(event, Bound) for event in net.states))
        (outcome,) = net.submit("job-1")
        assert isinstance(outcome, SubmitOutcome)
        self.assertTrue(outcome.accepted)
        (accepted,) = net.smsc.accepted
        self.assertEqual(accepted[1].destination_addr, HANDSET.addr)
        self.assertEqual(accepted[1].short_message, ONE_SEGMENT[0].short_message)

    def test_time_is_the_tests(self) -> None:
        """
        Nothing moves until the test says so: a refused bind is retried only
        when the memory clock passes the recorded back-off delay.
        """
        net = MemorySmppNetwork(Scenario(password="other"))
        net.start()
        self.assertEqual(net.delays, [2.0])
        self.assertEqual(len(net.smsc.connections), 1)
        net.reactor.advance(2.0)
        net.connect()
        self.assertEqual(len(net.smsc.connections), 2)
