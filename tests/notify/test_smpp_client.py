"""
Tests for L{mdmd.notify.smpp_client}: the protocol and the service against the fake
SMSC of L{mdmd.testing.smsc}, in memory (iosim pumps on a MemoryReactorClock).
"""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from OpenSSL.crypto import X509, PKey
from twisted.internet.defer import Deferred
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mdmd.notify import smpp_pdu as p
from mdmd.notify.smpp_client import ESMEProtocol, ESMEService, SubmitAbandoned, SubmitOutcome
from mdmd.notify.smpp_session import BindFailed, Bound, DeliveryReceipt, Event, LinkBroken, SegmentAccepted, State, Unbound
from mdmd.notify.wap import SmsSegment, reassemble, wdp_segments
from mdmd.testing.smsc import ESME_CONFIG as CONFIG
from mdmd.testing.smsc import HANDSET as DEVICE
from mdmd.testing.smsc import ONE_SEGMENT as ONE
from mdmd.testing.smsc import FakeSmscFactory, Receipts, Scenario
from mdmd.testing.smsc import MemorySmppNetwork as Net

from ..logs import logged_events
from ..narrowing import narrowed
from ..servers import serve

THREE = wdp_segments(bytes(range(256)) + bytes(44), concat_ref=77)


def receipts(net: Net) -> list[DeliveryReceipt]:
    """
    The receipts the network's service reported.
    """
    return [narrowed(DeliveryReceipt, r) for r in net.receipts]


class ServiceTests(SynchronousTestCase):
    def test_multi_segment_push(self) -> None:
        """
        A three-segment job over a bound session: the SMSC receives our exact
        segments as submit_sm with UDHI and the job's outcome carries the
        three message ids.
        """
        net = Net()
        net.start()
        self.assertTrue(net.service.bound)
        self.assertEqual(net.states, [Bound("FAKESMSC", None)])
        (outcome,) = net.submit("push-1", THREE)
        self.assertEqual(outcome, SubmitOutcome("push-1", True, ("1", "2", "3")))
        self.assertEqual(
            [s.short_message for s in net.smsc.submits], [s.short_message for s in THREE]
        )
        self.assertTrue(
            all(
                s.esm_class == 0x40 and s.destination_addr == "491701234567"
                for s in net.smsc.submits
            )
        )
        self.assertEqual(
            reassemble([s.short_message for s in net.smsc.submits])[2],
            bytes(range(256)) + bytes(44),
        )
        bind = net.smsc.received[0]
        assert isinstance(bind, p.BindTransceiver)
        self.assertEqual(
            (type(bind), bind.system_id, bind.password), (p.BindTransceiver, "mdmd", "secret")
        )

    def test_segment_observers(self) -> None:
        """
        Segment observers hear of each accepted segment before the job's
        outcome fires; a cancelled job's segments are not reported.
        """
        net = Net()
        heard: list[object] = []
        net.service.add_segment_observer(heard.append)
        net.start()
        results = []
        net.service.submit("push", DEVICE, THREE).addCallback(
            lambda outcome: results.append((len(heard), outcome))
        )
        net.flush()
        self.assertEqual(
            heard,
            [SegmentAccepted("push", 0, "1"), SegmentAccepted("push", 1, "2"), SegmentAccepted("push", 2, "3")],
        )
        self.assertEqual(results, [(3, SubmitOutcome("push", True, ("1", "2", "3")))])
        net.smsc.scenario = Scenario(respond=False)
        d = net.service.submit("gone", DEVICE, ONE)
        d.addErrback(lambda f: None)
        net.flush()
        d.cancel()
        (pending,) = [s for s in net.smsc.submits if s.short_message == ONE[0].short_message]
        net.smsc.connections[-1].send(p.SubmitSmResp(sequence_number=pending.sequence_number, message_id="9"))
        net.flush()
        self.assertEqual(len(heard), 3)

    def test_submit_waits_for_bind(self) -> None:
        """
        A job submitted before there is any connection is sent once bound.
        """
        net = Net()
        net.service.startService()
        results = net.submit("early")
        self.assertEqual(results, [])
        net.connect()
        self.assertEqual(results, [SubmitOutcome("early", True, ("1",))])

    def test_throttled(self) -> None:
        """
        With every second submit throttled, all jobs still get through, after
        the pauses.
        """
        net = Net(Scenario(throttle_every=2), window=1)
        net.start()
        results = [net.submit(n) for n in range(3)]
        for _ in range(10):
            net.advance(1.0)
        self.assertEqual([narrowed(SubmitOutcome, r[0]).accepted for r in results], [True, True, True])
        self.assertEqual(len(net.smsc.submits), 5)

    def test_permanent_failure(self) -> None:
        """
        generic_nack answers fail the job with that status.
        """
        net = Net(Scenario(nack_status=p.Status.ESME_RINVCMDID))
        net.start()
        (outcome,) = net.submit("x")
        assert isinstance(outcome, SubmitOutcome)
        self.assertEqual(
            (outcome.accepted, outcome.status_name, outcome.temporary),
            (False, "ESME_RINVCMDID", False),
        )

    def test_wrong_password_backs_off(self) -> None:
        """
        A refused bind is reported with its status; the service keeps trying
        with growing delays although every TCP connect succeeds.
        """
        net = Net(Scenario(password="other"))
        net.start()
        self.assertEqual(
            net.states, [BindFailed(p.Status.ESME_RINVPASWD, "bind refused: ESME_RINVPASWD")]
        )
        self.assertFalse(net.service.bound)
        net.advance(2.0)
        net.connect()
        net.advance(4.0)
        net.connect()
        self.assertEqual(net.delays, [2.0, 4.0, 8.0])
        self.assertEqual(len([s for s in net.states if isinstance(s, BindFailed)]), 3)

    def test_backoff_resets_after_bind(self) -> None:
        """
        Once a bind succeeds the next outage starts again from the first delay.
        """
        net = Net(Scenario(password="other"))
        net.start()
        net.advance(2.0)
        net.smsc.scenario = Scenario()
        net.connect()
        self.assertTrue(net.service.bound)
        net.smsc.connections[-1].send_unbind()
        net.flush()
        self.assertEqual(net.delays, [2.0, 2.0])

    def test_smsc_unbinds_mid_job(self) -> None:
        """
        The SMSC unbinds after the first segment: the service reconnects and
        sends only the two missing segments; the job ends with all three ids.
        """
        net = Net(Scenario(unbind_after=1), window=1)
        net.start()
        results = net.submit("push", THREE)
        self.assertEqual(results, [])
        self.assertIn(Unbound(by_peer=True), net.states)
        net.smsc.scenario = Scenario()
        net.advance(2.0)
        net.connect()
        self.assertEqual(results, [SubmitOutcome("push", True, ("1", "2", "3"))])
        self.assertEqual(
            [s.short_message for s in net.smsc.submits], [s.short_message for s in THREE]
        )

    def test_disconnect_with_full_window(self) -> None:
        """
        The SMSC stops answering and drops the connection with the window
        full: nothing is lost, and everything is sent again on reconnect.
        """
        net = Net(Scenario(respond=False, disconnect_after=3), window=3)
        net.start()
        results = [net.submit(n) for n in range(5)]
        self.assertEqual(net.service.bound, False)
        self.assertTrue(any(isinstance(s, LinkBroken) for s in net.states))
        net.smsc.scenario = Scenario()
        net.advance(2.0)
        net.connect()
        self.assertEqual([narrowed(SubmitOutcome, r[0]).accepted for r in results], [True] * 5)

    def test_no_response_breaks_link(self) -> None:
        """
        Submits never answered: after three response timeouts the link is
        broken and the job goes out again on the next connection.
        """
        net = Net(Scenario(respond=False))
        net.start()
        results = net.submit("a")
        for _ in range(3):
            net.advance(10.0)
        self.assertEqual(
            [s for s in net.states if isinstance(s, LinkBroken)],
            [LinkBroken("3 submits in a row unanswered")],
        )
        net.smsc.scenario = Scenario()
        net.advance(2.0)
        net.connect()
        self.assertEqual(narrowed(SubmitOutcome, results[0]).accepted, True)

    def test_receipts(self) -> None:
        """
        Receipts in TLV and text form reach the receipt observer with the
        job's reference, and are acknowledged.
        """
        for style, config in (
            (Receipts.TLV, {}),
            (
                Receipts.TEXT,
                {"submit_id_base": p.MessageIdBase.HEX, "receipt_id_base": p.MessageIdBase.DEC},
            ),
        ):
            net = Net(Scenario(receipts=style, hex_message_ids=True), **config)
            net.start()
            for n in range(11):
                net.submit(f"job-{n}")
            self.assertEqual(len(net.receipts), 11)
            last = receipts(net)[-1]
            self.assertEqual((last.ref, last.state), ("job-10", p.MessageState.DELIVERED))
            self.assertEqual(
                len([r for r in net.smsc.received if isinstance(r, p.DeliverSmResp)]), 11
            )

    def test_fuzz_malformed_receipts_keep_the_link(self) -> None:
        """
        Issue 12, defect 2 (abuse): the SMSC sends 16 receipts whose date holds
        "²" interleaved with 16 good ones. Every deliver_sm is answered, each bad
        one is logged once, all good receipts reach the observer with their
        jobs, and the link stays up on its one bind.
        """
        net = Net(Scenario(hex_message_ids=True))
        net.start()
        for n in range(16):
            net.submit(f"job-{n}")
        smsc = net.smsc.connections[-1]
        events = logged_events(self)
        for n, (message_id, submit_sm) in enumerate(net.smsc.accepted):
            bad = f"id:{900 + n} sub:001 dlvrd:001 submit date:26112201²1 done date:2611220102 stat:DELIVRD"
            smsc.send(
                p.DeliverSm(sequence_number=1000 + n, esm_class=0x04, short_message=bad.encode("latin-1"))
            )
            smsc.send_receipt(message_id, submit_sm, Receipts.TLV)
            net.flush()
        answers = [r for r in net.smsc.received if isinstance(r, p.DeliverSmResp)]
        self.assertEqual(len(answers), 32)
        self.assertEqual({r.command_status for r in answers}, {p.Status.ESME_ROK})
        good = [(r.ref, r.state) for r in receipts(net) if r.ref is not None]
        self.assertEqual(good, [(f"job-{n}", p.MessageState.DELIVERED) for n in range(16)])
        logged = [text for text in map(formatEvent, events) if "unreadable" in text]
        self.assertEqual(len(logged), 16)
        self.assertEqual(len([r for r in net.smsc.received if isinstance(r, p.BindTransceiver)]), 1)
        self.assertEqual((len(net.smsc.connections), net.smsc.lost), (1, 0))
        self.assertTrue(net.service.bound)

    def test_fuzz_malformed_pdus_never_stop_the_link(self) -> None:
        """
        Issue 12 (abuse): PDUs the ESME cannot use, between good receipts: an
        unknown command, a deliver_sm whose short message runs past the PDU,
        a data_sm whose TLV does, a deliver_sm_resp answering nothing. Each
        request is answered with the status that says what is wrong, the good
        receipts are recorded, and the link stays up on its one bind.
        """
        net = Net(Scenario(hex_message_ids=True))
        net.start()
        for n in range(4):
            net.submit(f"job-{n}")
        smsc = net.smsc.connections[-1]
        assert smsc.transport is not None
        short = bytearray(p.encode(p.DeliverSm(sequence_number=500, esm_class=4, short_message=b"id:1")))
        short[-1 - 4] = 200  # sm_length past the end (4 octets of text follow it)
        tlv = bytearray(p.encode(p.DataSm(sequence_number=501, tlvs=(p.Tlv(p.Tag.MESSAGE_PAYLOAD, b"x"),))))
        tlv[-3:-1] = b"\x00\x09"  # the TLV's length runs past the PDU
        garbage = (
            bytes.fromhex("00000010" "00000777" "00000000" "000001f6"),  # unknown command_id, sequence 502
            bytes(short),
            bytes(tlv),
            p.encode(p.DeliverSmResp(sequence_number=503)),
        )
        for (message_id, submit_sm), bad in zip(net.smsc.accepted, garbage):
            smsc.transport.write(bad)
            smsc.send_receipt(message_id, submit_sm, Receipts.TLV)
            net.flush()
        answers = {
            r.sequence_number: (type(r), r.command_status)
            for r in net.smsc.received
            if isinstance(r, (p.GenericNack, p.DeliverSmResp, p.DataSmResp)) and r.sequence_number >= 500
        }
        self.assertEqual(
            answers,
            {
                500: (p.DeliverSmResp, p.Status.ESME_RINVMSGLEN),
                501: (p.DataSmResp, p.Status.ESME_RINVOPTPARSTREAM),
                502: (p.GenericNack, p.Status.ESME_RINVCMDID),
            },
        )
        self.assertEqual([r.ref for r in receipts(net)], [f"job-{n}" for n in range(4)])
        self.assertEqual(len([r for r in net.smsc.received if isinstance(r, p.BindTransceiver)]), 1)
        self.assertEqual((len(net.smsc.connections), net.smsc.lost), (1, 0))
        self.assertTrue(net.service.bound)

    def test_receipt_after_reconnect(self) -> None:
        """
        A receipt that arrives on the next connection still names its job.
        """
        net = Net()
        net.start()
        net.submit("before")
        message_id, submit_sm = net.smsc.accepted[0]
        net.smsc.connections[-1].send_unbind()
        net.flush()
        net.advance(2.0)
        net.connect()
        net.smsc.connections[-1].send_receipt(message_id, submit_sm, Receipts.TLV)
        net.flush()
        self.assertEqual([(r.message_id, r.ref) for r in receipts(net)], [("1", "before")])

    def test_enquire_link_both_ways(self) -> None:
        """
        The SMSC's enquire_link is answered; ours goes out after 30 s of silence.
        """
        net = Net()
        net.start()
        net.smsc.connections[-1].send_enquire_link()
        net.flush()
        self.assertEqual(net.smsc.received[-1], p.EnquireLinkResp(sequence_number=1))
        net.advance(30.0)
        self.assertIsInstance(net.smsc.received[-1], p.EnquireLink)
        self.assertTrue(net.service.bound)

    def test_stop_drains_and_unbinds(self) -> None:
        """
        stopService lets the submit in flight finish, unbinds, and fails the
        jobs that never went out with SubmitAbandoned.
        """
        net = Net(Scenario(respond=False), window=1)
        net.start()
        first = net.submit("first")
        second = net.submit("second")
        stopped: list = []
        net.service.stopService().addCallback(stopped.append)
        net.flush()
        self.assertEqual(stopped, [])
        self.assertNotIsInstance(net.smsc.received[-1], p.Unbind)
        sm = net.smsc.submits[0]
        net.smsc.connections[-1].send(
            p.SubmitSmResp(sequence_number=sm.sequence_number, message_id="42")
        )
        net.flush()
        self.assertIsInstance(net.smsc.received[-1], p.Unbind)
        self.assertEqual(stopped, [None])
        self.assertEqual(first, [SubmitOutcome("first", True, ("42",))])
        self.assertIsInstance(narrowed(Failure, second[0]).value, SubmitAbandoned)
        self.assertEqual(net.reactor.getDelayedCalls(), [])

    def test_stop_timeout_aborts(self) -> None:
        """
        If draining takes longer than stop_timeout the connection is cut.
        """
        net = Net(Scenario(respond=False), response_timeout=1000.0, enquire_link_interval=1000.0)
        net.start()
        net.submit("a")
        stopped: list = []
        net.service.stopService().addCallback(stopped.append)
        net.advance(15.0)
        self.assertEqual(stopped, [None])

    def test_cancel_waiting_job(self) -> None:
        """
        Cancelling a job not yet sent removes it.
        """
        net = Net()
        net.service.startService()
        d = net.service.submit("gone", DEVICE, ONE)
        d.addErrback(lambda f: None)
        d.cancel()
        net.connect()
        self.assertEqual(net.smsc.submits, [])

    def test_refuses_unsendable_and_duplicates(self) -> None:
        """
        A segment too long for short_message or a duplicate reference is
        refused at once.
        """
        net = Net()
        self.assertRaises(ValueError, net.service.submit, "x", DEVICE, [SmsSegment(bytes(255))])
        net.service.submit("y", DEVICE, ONE)
        self.assertRaises(ValueError, net.service.submit, "y", DEVICE, ONE)


class ProtocolTimerTests(SynchronousTestCase):
    def test_one_timer_at_the_deadline(self) -> None:
        """
        The protocol keeps one delayed call, never later than the session's
        deadline, and closes the transport when the session says so.
        """
        clock = Clock()
        events: list = []
        protocol = ESMEProtocol(CONFIG, clock, lambda proto, event: events.append(event))
        transport = StringTransport()
        protocol.makeConnection(transport)
        bind = p.decode(transport.value())
        transport.clear()
        (call,) = clock.getDelayedCalls()
        self.assertEqual(call.getTime(), 10.0)
        protocol.dataReceived(p.encode(p.BindTransceiverResp(sequence_number=bind.sequence_number)))
        (call,) = clock.getDelayedCalls()
        self.assertEqual(call.getTime(), 10.0)  # early: the bind timeout's timer is kept
        clock.advance(10.0)
        self.assertEqual(transport.value(), b"")
        (call,) = clock.getDelayedCalls()
        self.assertEqual(call.getTime(), 30.0)
        clock.advance(20.0)
        self.assertIsInstance(p.decode(transport.value()), p.EnquireLink)
        clock.advance(10.0)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(protocol.session.state, State.CLOSED)
        protocol.connectionLost(None)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertIsInstance(events[-1], LinkBroken)

    def test_handler_errors_are_contained(self) -> None:
        """
        An exception in an event handler is logged, not raised into the reactor.
        """
        clock = Clock()

        def broken(proto: ESMEProtocol, event: Event) -> None:
            raise RuntimeError("boom")

        protocol = ESMEProtocol(CONFIG, clock, broken)
        transport = StringTransport()
        protocol.makeConnection(transport)
        bind = p.decode(transport.value())
        protocol.dataReceived(p.encode(p.BindTransceiverResp(sequence_number=bind.sequence_number)))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(protocol.session.state, State.BOUND)


def _certificates(common_name: str) -> tuple[bytes, CertificateOptions]:
    """
    A throw-away CA (PEM) and TLS server options for 127.0.0.1 with a
    certificate it signed. Built from cryptography objects, which pyOpenSSL 26
    takes without deprecation warnings.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    options = CertificateOptions(privateKey=PKey.from_cryptography_key(key), certificate=X509.from_cryptography(cert))
    return ca.public_bytes(serialization.Encoding.PEM), options


class EndpointTests(SynchronousTestCase):
    def test_tcp_and_tls(self) -> None:
        """
        Plain config gives a HostnameEndpoint; tls=True wraps it in TLS.
        """
        from twisted.internet.endpoints import HostnameEndpoint
        from twisted.internet.interfaces import IStreamClientEndpoint

        from mdmd.notify.smpp_client import smsc_endpoint

        reactor = MemoryReactorClock()
        self.assertIsInstance(smsc_endpoint(reactor, "smsc.example", 2775), HostnameEndpoint)
        ca, _ = _certificates("x")
        tls = smsc_endpoint(reactor, "smsc.example", 3550, tls=True, ca_certificates=[ca])
        self.assertNotIsInstance(tls, HostnameEndpoint)
        self.assertTrue(IStreamClientEndpoint.providedBy(tls))


class TLSLoopbackTests(TestCase):
    """
    Real sockets on 127.0.0.1 port 0: the SMSC's certificate is verified.
    """

    def listen(self) -> tuple[int, FakeSmscFactory, bytes]:
        ca, server = _certificates("smsc")
        smsc = FakeSmscFactory()
        return serve(self, smsc, server), smsc, ca

    def service(self, port: int, ca: bytes) -> tuple[ESMEService, list]:
        from twisted.internet import reactor

        from mdmd.notify.smpp_client import smsc_endpoint

        service = ESMEService(
            smsc_endpoint(reactor, "127.0.0.1", port, tls=True, ca_certificates=[ca]),
            CONFIG,
            clock=reactor,
            retry_policy=lambda attempt: 60.0,
        )
        states: list = []
        service.add_state_observer(states.append)
        service.startService()
        self.addCleanup(service.stopService)
        return service, states

    async def test_verified_smsc(self) -> None:
        """
        With the SMSC's CA configured, TLS connects, binds and submits.
        """
        port, smsc, ca = self.listen()
        service, states = self.service(port, ca)
        outcome = await service.submit("tls-1", DEVICE, ONE)
        self.assertTrue(outcome.accepted)
        self.assertIsInstance(states[0], Bound)
        self.assertEqual(smsc.submits[0].short_message, ONE[0].short_message)

    async def test_unknown_ca_refused(self) -> None:
        """
        Against a certificate from another CA the handshake fails: nothing
        reaches the SMSC and the link is reported broken, not bound.
        """
        port, smsc, _ = self.listen()
        other_ca, _ = _certificates("impostor")
        broken: Deferred = Deferred()
        service, states = self.service(port, other_ca)

        def on_state(event: object) -> None:
            if not broken.called:
                broken.callback(event)

        service.add_state_observer(on_state)
        event = await broken
        self.assertIsInstance(event, LinkBroken)
        self.assertEqual(smsc.received, [])
        self.assertFalse(service.bound)
