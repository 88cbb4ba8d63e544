"""
Tests for L{mdmd.notify.smpp_session}: the ESME session engine, driven by hand with
PDUs and times, no sockets.
"""

from __future__ import annotations

import struct
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mdmd.notify import smpp_pdu as p
from mdmd.notify.smpp_session import (
    BindFailed,
    BindType,
    Bound,
    DeliveryReceipt,
    EsmeSession,
    Ignored,
    JobProgress,
    JobsReturned,
    LinkBroken,
    LocalProtocolError,
    Output,
    ProtocolViolation,
    SegmentAccepted,
    State,
    SubmitAccepted,
    SubmitFailed,
    Unbound,
)
from mdmd.notify.wap import SmsSegment, wdp_segments
from mdmd.testing.smsc import ESME_CONFIG as CONFIG
from mdmd.testing.smsc import HANDSET as DEVICE
from mdmd.testing.smsc import ONE_SEGMENT as ONE

from ..narrowing import narrowed

E = TypeVar("E")
THREE = wdp_segments(bytes(300), concat_ref=5)


def pdus(data: bytes) -> list[p.Pdu]:
    decoder = p.PduDecoder()
    decoder.feed(data)
    out = []
    while (pdu := decoder.next_pdu()) is not None:
        out.append(pdu)
    return out


def of_type(events: Iterable[object], cls: type[E] | tuple[type[E], ...]) -> list[E]:
    return [e for e in events if isinstance(e, cls)]


class Harness:
    """
    A session plus the SMSC side of the conversation, kept by hand.
    """

    def __init__(self, test: SynchronousTestCase, **config: Any) -> None:
        self.test = test
        self.session = EsmeSession(replace(CONFIG, **config))
        self.now = 0.0
        self.sent: list[p.Pdu] = []
        self.events: list[object] = []
        self._last: Output | None = None

    @property
    def last(self) -> Output:
        """
        What the session answered last (there is nothing before the first input).
        """
        assert self._last is not None, "no input yet"
        return self._last

    def take(self, out: Output) -> list[p.Pdu]:
        new = pdus(out.data)
        self.sent.extend(new)
        self.events.extend(out.events)
        self._last = out
        return new

    def connect(self) -> p.Pdu:
        (bind,) = self.take(self.session.connection_made(self.now))
        return bind

    def feed(self, *answers: p.Pdu) -> list[p.Pdu]:
        return self.take(self.session.receive_data(b"".join(map(p.encode, answers)), self.now))

    def bind(self) -> None:
        bind = self.connect()
        self.feed(p.BindTransceiverResp(sequence_number=bind.sequence_number, system_id="SMSC"))

    def submit(
        self, ref: Hashable, segments: Sequence[SmsSegment] = ONE, message_ids: Sequence[str | None] | None = None
    ) -> list[p.Pdu]:
        return self.take(self.session.submit(ref, DEVICE, segments, self.now, message_ids))

    def tick(self, now: float) -> list[p.Pdu]:
        self.now = now
        return self.take(self.session.tick(now))

    def accept(self, pdu: p.Pdu, message_id: str) -> list[p.Pdu]:
        return self.feed(p.SubmitSmResp(sequence_number=pdu.sequence_number, message_id=message_id))

    def refuse(self, pdu: p.Pdu, status: int) -> list[p.Pdu]:
        return self.feed(p.SubmitSmResp(sequence_number=pdu.sequence_number, command_status=status))


class BindTests(SynchronousTestCase):
    def test_bind_transceiver(self) -> None:
        """
        The first thing sent is bind_transceiver with the configured
        credentials; its response gives Bound and an enquire_link deadline.
        """
        h = Harness(self)
        bind = h.connect()
        self.assertEqual(
            bind,
            p.BindTransceiver(
                sequence_number=bind.sequence_number,
                system_id="mdmd",
                password="secret",
                system_type="WAP",
            ),
        )
        self.assertEqual(h.last.deadline, 10.0)
        h.feed(
            p.BindTransceiverResp(
                sequence_number=bind.sequence_number,
                system_id="SMSC",
                tlvs=(p.Tlv(p.Tag.SC_INTERFACE_VERSION, b"\x34"),),
            )
        )
        self.assertEqual(h.events, [Bound("SMSC", 0x34)])
        self.assertEqual(h.session.state, State.BOUND)
        self.assertEqual(h.last.deadline, 30.0)

    def test_bind_transmitter(self) -> None:
        """
        bind_type TRANSMITTER sends bind_transmitter and expects its response.
        """
        h = Harness(self, bind_type=BindType.TRANSMITTER, addr_ton=1, addr_npi=1)
        bind = h.connect()
        self.assertIsInstance(bind, p.BindTransmitter)
        assert isinstance(bind, p.BindTransmitter)
        self.assertEqual((bind.addr_ton, bind.addr_npi), (1, 1))
        h.feed(p.BindTransceiverResp(sequence_number=bind.sequence_number))
        self.assertEqual(h.session.state, State.BINDING)
        self.assertTrue(of_type(h.events, ProtocolViolation))
        h.feed(p.BindTransmitterResp(sequence_number=bind.sequence_number, system_id="S"))
        self.assertEqual(h.session.state, State.BOUND)

    def test_bind_refused(self) -> None:
        """
        ESME_RINVPASWD: BindFailed names the status, the transport is to be
        closed, and a job queued meanwhile comes back untouched.
        """
        h = Harness(self)
        bind = h.connect()
        h.submit("job")
        h.feed(
            p.BindTransceiverResp(
                sequence_number=bind.sequence_number, command_status=p.Status.ESME_RINVPASWD
            )
        )
        (failed,) = of_type(h.events, BindFailed)
        self.assertEqual(failed.status, 0x0E)
        self.assertIn("ESME_RINVPASWD", failed.reason)
        self.assertTrue(h.last.disconnect)
        self.assertEqual(
            of_type(h.events, JobsReturned), [JobsReturned((JobProgress("job", (None,)),))]
        )
        self.assertEqual(h.session.state, State.CLOSED)

    def test_bind_nacked(self) -> None:
        """
        A generic_nack to the bind is a refusal with its status.
        """
        h = Harness(self)
        bind = h.connect()
        h.feed(
            p.GenericNack(
                sequence_number=bind.sequence_number, command_status=p.Status.ESME_RINVCMDID
            )
        )
        self.assertEqual(of_type(h.events, BindFailed)[0].status, p.Status.ESME_RINVCMDID)

    def test_bind_timeout(self) -> None:
        """
        No bind response within the response timeout: BindFailed without status.
        """
        h = Harness(self)
        h.connect()
        h.tick(9.9)
        self.assertEqual(h.events, [])
        h.tick(10.0)
        self.assertEqual(of_type(h.events, BindFailed)[0].status, None)
        self.assertTrue(h.last.disconnect)

    def test_nothing_sent_before_bound(self) -> None:
        """
        Submits wait for the bind response.
        """
        h = Harness(self)
        bind = h.connect()
        self.assertEqual(h.submit("a"), [])
        self.assertEqual(
            len(h.feed(p.BindTransceiverResp(sequence_number=bind.sequence_number))), 1
        )


class SubmitTests(SynchronousTestCase):
    def test_submit_fields(self) -> None:
        """
        submit_sm carries UDHI, the receipt request, the segment's coding and
        bytes, and the configured source and the destination with their TON/NPI.
        """
        h = Harness(
            self, registered_delivery=0x11, service_type="WAP", validity_period="000001000000000R"
        )
        h.bind()
        (sm,) = h.submit("a", (SmsSegment(b"\x06\x05\x04\x0b\x84\x23\xf0x", data_coding=0xF5),))
        self.assertEqual(
            sm,
            p.SubmitSm(
                sequence_number=sm.sequence_number,
                service_type="WAP",
                source_addr_ton=5,
                source_addr_npi=0,
                source_addr="MDMD",
                dest_addr_ton=1,
                dest_addr_npi=1,
                destination_addr="491701234567",
                esm_class=0x40,
                validity_period="000001000000000R",
                registered_delivery=0x11,
                data_coding=0xF5,
                short_message=b"\x06\x05\x04\x0b\x84\x23\xf0x",
            ),
        )
        h.accept(sm, "m1")
        self.assertEqual(of_type(h.events, SubmitAccepted), [SubmitAccepted("a", ("m1",))])

    def test_job_needs_every_segment(self) -> None:
        """
        A three-segment job is accepted once all three are, with the ids in
        segment order whatever the order of the responses.
        """
        h = Harness(self)
        h.bind()
        sms = h.submit("push", THREE)
        self.assertEqual([narrowed(p.SubmitSm, s).short_message for s in sms], [s.short_message for s in THREE])
        h.accept(sms[2], "c")
        h.accept(sms[0], "a")
        self.assertEqual(of_type(h.events, SubmitAccepted), [])
        h.accept(sms[1], "b")
        self.assertEqual(
            of_type(h.events, SubmitAccepted), [SubmitAccepted("push", ("a", "b", "c"))]
        )

    def test_each_segment_reported_as_it_comes(self) -> None:
        """
        Every acknowledged segment is reported at once with its index, before
        the job's acceptance.
        """
        h = Harness(self)
        h.bind()
        sms = h.submit("push", THREE)
        h.accept(sms[1], "b")
        self.assertEqual(h.events[-1], SegmentAccepted("push", 1, "b"))
        h.accept(sms[0], "a")
        h.accept(sms[2], "c")
        accepted = of_type(h.events, (SegmentAccepted, SubmitAccepted))
        self.assertEqual(
            accepted,
            [
                SegmentAccepted("push", 1, "b"),
                SegmentAccepted("push", 0, "a"),
                SegmentAccepted("push", 2, "c"),
                SubmitAccepted("push", ("a", "b", "c")),
            ],
        )

    def test_window(self) -> None:
        """
        With window 10 only ten submits are unanswered at once; each answer
        lets one more go.
        """
        h = Harness(self)
        h.bind()
        sent = []
        for n in range(25):
            sent += h.submit(n)
        self.assertEqual(len(sent), 10)
        self.assertEqual(h.session.in_flight, 10)
        more = h.accept(sent[0], "x")
        self.assertEqual(len(more), 1)
        self.assertEqual(h.session.in_flight, 10)

    def test_window_one(self) -> None:
        """
        Window 1 is stop-and-wait.
        """
        h = Harness(self, window=1)
        h.bind()
        self.assertEqual(len(h.submit("a", THREE)), 1)

    def test_throughput_spacing(self) -> None:
        """
        At 50/s submits leave 20 ms apart: one now, the next at the deadline.
        """
        h = Harness(self, throughput=50.0, window=100)
        h.bind()
        for n in range(5):
            h.submit(n)
        self.assertEqual(len([s for s in h.sent if isinstance(s, p.SubmitSm)]), 1)
        self.assertAlmostEqual(h.last.deadline, 0.02)
        self.assertEqual(h.tick(0.019), [])
        self.assertEqual(len(h.tick(0.02)), 1)

    def test_throughput_held_despite_late_timers(self) -> None:
        """
        Woken up 5 ms late every time, the pace still gives 50 submits per
        second over ten seconds (the late timer does not stretch the interval).
        """
        h = Harness(
            self,
            throughput=50.0,
            window=10**6,
            enquire_link_interval=1000.0,
            response_timeout=1000.0,
        )
        h.bind()
        for n in range(1000):
            h.submit(n)
        while h.last.deadline is not None and h.last.deadline < 10.0:
            h.tick(h.last.deadline + 0.005)
        sent = [s for s in h.sent if isinstance(s, p.SubmitSm)]
        self.assertIn(len(sent), (500, 501))

    def test_no_burst_after_idle(self) -> None:
        """
        After an idle period the first submit leaves at once and the second
        half an interval later, not back to back.
        """
        h = Harness(self, throughput=10.0, window=100, enquire_link_interval=1000.0)
        h.bind()
        (warm_up,) = h.submit("warm-up")
        h.accept(warm_up, "w")
        h.tick(100.0)
        self.assertEqual(len(h.submit("a")), 1)
        self.assertEqual(h.submit("b"), [])
        self.assertAlmostEqual(h.last.deadline, 100.05)

    def test_throttled_pauses_and_resends_same(self) -> None:
        """
        ESME_RTHROTTLED: nothing goes out for throttle_pause, then the same
        segment is sent first, with a new sequence number.
        """
        h = Harness(self, window=1)
        h.bind()
        (first,) = h.submit("a")
        h.submit("b")
        self.assertEqual(h.refuse(first, p.Status.ESME_RTHROTTLED), [])
        self.assertEqual(h.last.deadline, 1.0)
        self.assertEqual(h.tick(0.5), [])
        (again,) = h.tick(1.0)
        assert isinstance(again, p.SubmitSm) and isinstance(first, p.SubmitSm)
        self.assertEqual(again.short_message, first.short_message)
        self.assertEqual(again.destination_addr, first.destination_addr)
        self.assertNotEqual(again.sequence_number, first.sequence_number)
        h.accept(again, "ok")
        self.assertEqual(of_type(h.events, SubmitAccepted), [SubmitAccepted("a", ("ok",))])

    def test_queue_full_pauses(self) -> None:
        """
        ESME_RMSGQFUL is handled like throttling.
        """
        h = Harness(self, throttle_pause=5.0)
        h.bind()
        (first,) = h.submit("a")
        h.refuse(first, p.Status.ESME_RMSGQFUL)
        self.assertEqual(h.tick(4.0), [])
        self.assertEqual(len(h.tick(5.0)), 1)

    def test_throttling_gives_up_eventually(self) -> None:
        """
        Past max_throttle_retries the job fails as temporary.
        """
        h = Harness(self, max_throttle_retries=2)
        h.bind()
        (sm,) = h.submit("a")
        for n in range(1, 3):
            h.refuse(sm, p.Status.ESME_RTHROTTLED)
            (sm,) = h.tick(float(n))
        h.refuse(sm, p.Status.ESME_RTHROTTLED)
        (failed,) = of_type(h.events, SubmitFailed)
        self.assertEqual((failed.status_name, failed.temporary), ("ESME_RTHROTTLED", True))

    def test_temporary_error_retried_later(self) -> None:
        """
        ESME_RSYSERR: resent after temporary_retry_delay, up to
        max_temporary_retries times, then failed as temporary.
        """
        h = Harness(
            self, temporary_retry_delay=10.0, max_temporary_retries=1, response_timeout=100.0
        )
        h.bind()
        (sm,) = h.submit("a")
        h.refuse(sm, p.Status.ESME_RSYSERR)
        self.assertEqual(h.last.deadline, 10.0)
        self.assertEqual(h.tick(9.0), [])
        (sm,) = h.tick(10.0)
        h.refuse(sm, p.Status.ESME_RSYSERR)
        (failed,) = of_type(h.events, SubmitFailed)
        self.assertEqual((failed.ref, failed.status, failed.temporary), ("a", 0x08, True))

    def test_other_jobs_overtake_delayed_retry(self) -> None:
        """
        A job waiting for a temporary retry does not hold the queue.
        """
        h = Harness(self, window=1)
        h.bind()
        (sm,) = h.submit("a")
        h.submit("b", (SmsSegment(b"\x00b"),))
        (nxt,) = h.refuse(sm, p.Status.ESME_RX_T_APPN)
        assert isinstance(nxt, p.SubmitSm)
        self.assertEqual(nxt.short_message, b"\x00b")
        h.accept(nxt, "b1")
        self.assertEqual(of_type(h.events, SubmitAccepted), [SubmitAccepted("b", ("b1",))])

    def test_permanent_error_fails_job(self) -> None:
        """
        ESME_RINVDSTADR fails the job at once; its remaining segments are not
        sent, and the ids already accepted are reported.
        """
        h = Harness(self, window=2)
        h.bind()
        first, second = h.submit("push", THREE)
        h.accept(first, "m1")
        self.assertEqual(h.refuse(second, p.Status.ESME_RINVDSTADR), [])
        (failed,) = of_type(h.events, SubmitFailed)
        self.assertEqual(
            (failed.ref, failed.status_name, failed.temporary, failed.message_ids),
            ("push", "ESME_RINVDSTADR", False, ("m1", None, None)),
        )

    def test_generic_nack_to_submit(self) -> None:
        """
        A generic_nack answering a submit is that submit's failure.
        """
        h = Harness(self)
        h.bind()
        (sm,) = h.submit("a")
        h.feed(
            p.GenericNack(
                sequence_number=sm.sequence_number, command_status=p.Status.ESME_RINVCMDLEN
            )
        )
        self.assertEqual(of_type(h.events, SubmitFailed)[0].status, p.Status.ESME_RINVCMDLEN)

    def test_resubmit_skips_accepted_segments(self) -> None:
        """
        Given the ids an earlier session got, only the missing segment is sent.
        """
        h = Harness(self)
        h.bind()
        (sm,) = h.submit("push", THREE, message_ids=["a", None, "c"])
        assert isinstance(sm, p.SubmitSm)
        self.assertEqual(sm.short_message, THREE[1].short_message)
        h.accept(sm, "b")
        self.assertEqual(
            of_type(h.events, SubmitAccepted), [SubmitAccepted("push", ("a", "b", "c"))]
        )

    def test_all_accepted_already(self) -> None:
        """
        A job whose segments were all accepted is reported at once, nothing sent.
        """
        h = Harness(self)
        h.bind()
        self.assertEqual(h.submit("push", ONE, message_ids=["z"]), [])
        self.assertEqual(of_type(h.events, SubmitAccepted), [SubmitAccepted("push", ("z",))])

    def test_misuse(self) -> None:
        """
        A duplicate reference, an empty job, a mismatched id list, or a
        submit while closing are the caller's mistakes.
        """
        h = Harness(self)
        h.bind()
        h.submit("a")
        self.assertRaises(LocalProtocolError, h.submit, "a")
        self.assertRaises(ValueError, h.submit, "b", ())
        self.assertRaises(ValueError, h.submit, "c", THREE, ["x"])
        self.assertRaises(ValueError, h.submit, "d", (SmsSegment(bytes(255)),))
        h.take(h.session.close(h.now))
        self.assertRaises(LocalProtocolError, h.submit, "e")


class TimeoutTests(SynchronousTestCase):
    def test_timeout_resends(self) -> None:
        """
        A submit unanswered for response_timeout is sent again.
        """
        h = Harness(self)
        h.bind()
        (sm,) = h.submit("a")
        self.assertEqual(h.last.deadline, 10.0)
        (again,) = h.tick(10.0)
        assert isinstance(again, p.SubmitSm) and isinstance(sm, p.SubmitSm)
        self.assertEqual(again.short_message, sm.short_message)
        self.assertNotEqual(again.sequence_number, sm.sequence_number)

    def test_late_acceptance_counts_once(self) -> None:
        """
        If the first submit's response arrives after all, it is the one that
        counts, and the answer to the resend changes nothing.
        """
        h = Harness(self)
        h.bind()
        (sm,) = h.submit("a")
        (again,) = h.tick(10.0)
        h.accept(sm, "first")
        h.accept(again, "second")
        self.assertEqual(of_type(h.events, SubmitAccepted), [SubmitAccepted("a", ("first",))])
        self.assertEqual(of_type(h.events, ProtocolViolation), [])

    def test_late_acceptance_before_resend(self) -> None:
        """
        A late acceptance while the resend still waits for its turn cancels it.
        """
        h = Harness(self, throughput=0.05)  # one submit per 20 s
        h.bind()
        (sm,) = h.submit("a")
        h.submit("b", (SmsSegment(b"\x00b"),))
        self.assertEqual(h.tick(10.0), [])  # "a" timed out, queued again behind the pace
        h.accept(sm, "late")
        (nxt,) = h.tick(20.0)
        assert isinstance(nxt, p.SubmitSm)
        self.assertEqual(nxt.short_message, b"\x00b")
        h.accept(nxt, "b1")
        self.assertEqual(
            of_type(h.events, SubmitAccepted),
            [SubmitAccepted("a", ("late",)), SubmitAccepted("b", ("b1",))],
        )

    def test_repeated_timeouts_break_the_link(self) -> None:
        """
        After max_timeouts submits in a row go unanswered the link is broken
        and the job comes back for the next session.
        """
        h = Harness(self, max_timeouts=3)
        h.bind()
        h.submit("a")
        h.tick(10.0)
        h.tick(20.0)
        self.assertEqual(of_type(h.events, LinkBroken), [])
        h.tick(30.0)
        self.assertEqual(len(of_type(h.events, LinkBroken)), 1)
        self.assertTrue(h.last.disconnect)
        self.assertEqual(
            of_type(h.events, JobsReturned), [JobsReturned((JobProgress("a", (None,)),))]
        )


class KeepAliveTests(SynchronousTestCase):
    def test_answers_enquire_link(self) -> None:
        """
        The SMSC's enquire_link gets enquire_link_resp with its sequence number.
        """
        h = Harness(self)
        h.bind()
        self.assertEqual(
            h.feed(p.EnquireLink(sequence_number=777)), [p.EnquireLinkResp(sequence_number=777)]
        )

    def test_sends_enquire_link_when_idle(self) -> None:
        """
        After enquire_link_interval without traffic we ask; silence for the
        response timeout then breaks the link.
        """
        h = Harness(self)
        h.bind()
        h.now = 20.0
        h.feed(p.EnquireLink(sequence_number=1))
        self.assertEqual(h.last.deadline, 50.0)
        (enquire,) = h.tick(50.0)
        self.assertIsInstance(enquire, p.EnquireLink)
        h.feed(p.EnquireLinkResp(sequence_number=enquire.sequence_number))
        self.assertEqual(h.last.deadline, 80.0)
        (enquire,) = h.tick(80.0)
        h.tick(90.0)
        self.assertEqual(
            of_type(h.events, LinkBroken)[0].reason, "enquire_link unanswered for 10 s"
        )


class UnbindTests(SynchronousTestCase):
    def test_smsc_unbinds(self) -> None:
        """
        The SMSC's unbind is answered; unanswered submits come back.
        """
        h = Harness(self)
        h.bind()
        h.submit("a")
        self.assertEqual(h.feed(p.Unbind(sequence_number=50)), [p.UnbindResp(sequence_number=50)])
        self.assertIn(Unbound(by_peer=True), h.events)
        self.assertTrue(h.last.disconnect)
        self.assertEqual(of_type(h.events, JobsReturned)[0].jobs, (JobProgress("a", (None,)),))

    def test_close_drains_then_unbinds(self) -> None:
        """
        close() sends nothing new, waits for the submits in flight, unbinds,
        and returns the jobs never sent.
        """
        h = Harness(self, window=1)
        h.bind()
        (sm,) = h.submit("a")
        h.submit("b")
        self.assertEqual(h.take(h.session.close(h.now)), [])
        self.assertEqual(h.session.state, State.DRAINING)
        (unbind,) = h.accept(sm, "m")
        self.assertIsInstance(unbind, p.Unbind)
        h.feed(p.UnbindResp(sequence_number=unbind.sequence_number))
        self.assertIn(Unbound(by_peer=False), h.events)
        self.assertEqual(of_type(h.events, SubmitAccepted), [SubmitAccepted("a", ("m",))])
        self.assertEqual(of_type(h.events, JobsReturned)[0].jobs, (JobProgress("b", (None,)),))
        self.assertTrue(h.last.disconnect)

    def test_close_idle_unbinds_now(self) -> None:
        """
        With nothing in flight close() unbinds at once; a missing unbind_resp
        ends the session after the response timeout.
        """
        h = Harness(self)
        h.bind()
        (unbind,) = h.take(h.session.close(h.now))
        self.assertIsInstance(unbind, p.Unbind)
        h.tick(10.0)
        self.assertTrue(h.last.disconnect)
        self.assertEqual(h.session.state, State.CLOSED)

    def test_close_while_binding(self) -> None:
        """
        Before the bind is through there is nothing to unbind: just disconnect.
        """
        h = Harness(self)
        h.connect()
        self.assertEqual(h.take(h.session.close(h.now)), [])
        self.assertTrue(h.last.disconnect)

    def test_connection_lost(self) -> None:
        """
        Losing the transport while bound breaks the link and returns the jobs.
        """
        h = Harness(self)
        h.bind()
        h.submit("a")
        h.take(h.session.connection_lost(1.0))
        self.assertEqual(of_type(h.events, LinkBroken)[0].reason, "connection lost")
        self.assertEqual(len(of_type(h.events, JobsReturned)), 1)
        self.assertEqual(
            h.take(h.session.receive_data(p.encode(p.EnquireLink(sequence_number=3)), 2.0)), []
        )


class GarbageTests(SynchronousTestCase):
    def test_unknown_command(self) -> None:
        """
        An unknown command_id is answered with generic_nack ESME_RINVCMDID
        carrying its sequence number, and the session goes on.
        """
        h = Harness(self)
        h.bind()
        raw = struct.pack(">IIII", 16, 0x00000777, 0, 31)
        answers = h.take(
            h.session.receive_data(raw + p.encode(p.EnquireLink(sequence_number=32)), 0.0)
        )
        self.assertEqual(
            answers,
            [
                p.GenericNack(sequence_number=31, command_status=p.Status.ESME_RINVCMDID),
                p.EnquireLinkResp(sequence_number=32),
            ],
        )
        self.assertEqual(h.session.state, State.BOUND)
        self.assertEqual(of_type(h.events, ProtocolViolation)[0].status, p.Status.ESME_RINVCMDID)

    def test_bad_length(self) -> None:
        """
        A command_length that cannot be true: generic_nack ESME_RINVCMDLEN and
        the session ends.
        """
        h = Harness(self)
        h.bind()
        answers = h.take(h.session.receive_data(struct.pack(">IIII", 4, 4, 0, 9), 0.0))
        self.assertEqual(
            answers, [p.GenericNack(sequence_number=9, command_status=p.Status.ESME_RINVCMDLEN)]
        )
        self.assertTrue(h.last.disconnect)
        self.assertTrue(of_type(h.events, ProtocolViolation)[0].fatal)
        self.assertEqual(len(of_type(h.events, LinkBroken)), 1)

    def test_bad_body_answered_in_its_response(self) -> None:
        """
        A deliver_sm whose sm_length overruns gets deliver_sm_resp with
        ESME_RINVMSGLEN, not a generic_nack.
        """
        h = Harness(self)
        h.bind()
        raw = bytearray(p.encode(p.DeliverSm(sequence_number=12, short_message=b"abc")))
        raw[-4] = 99
        answers = h.take(h.session.receive_data(bytes(raw), 0.0))
        self.assertEqual(
            answers, [p.DeliverSmResp(sequence_number=12, command_status=p.Status.ESME_RINVMSGLEN)]
        )

    def test_requests_not_for_an_esme(self) -> None:
        """
        A submit_sm or bind from the SMSC is nacked.
        """
        h = Harness(self)
        h.bind()
        answers = h.feed(p.SubmitSm(sequence_number=5))
        self.assertEqual(
            answers, [p.GenericNack(sequence_number=5, command_status=p.Status.ESME_RINVCMDID)]
        )

    def test_deliver_before_bound(self) -> None:
        """
        deliver_sm before the bind response: ESME_RINVBNDSTS in its response.
        """
        h = Harness(self)
        h.connect()
        answers = h.feed(
            p.DeliverSm(sequence_number=3, esm_class=4, short_message=b"id:1 stat:DELIVRD")
        )
        self.assertEqual(
            answers, [p.DeliverSmResp(sequence_number=3, command_status=p.Status.ESME_RINVBNDSTS)]
        )
        self.assertEqual(of_type(h.events, DeliveryReceipt), [])

    def test_stray_responses(self) -> None:
        """
        A response to nothing we sent is noted, never answered.
        """
        h = Harness(self)
        h.bind()
        self.assertEqual(h.feed(p.SubmitSmResp(sequence_number=999, message_id="x")), [])
        self.assertEqual(len(of_type(h.events, ProtocolViolation)), 1)


class ReceiptTests(SynchronousTestCase):
    def test_tlv_receipt_matched(self) -> None:
        """
        A TLV receipt is acknowledged and reported with the job's reference.
        """
        h = Harness(self)
        h.bind()
        (sm,) = h.submit("job-1")
        h.accept(sm, "A1B2")
        answers = h.feed(
            p.DeliverSm(
                sequence_number=70,
                esm_class=0x04,
                tlvs=(
                    p.Tlv(p.Tag.RECEIPTED_MESSAGE_ID, b"a1b2\x00"),
                    p.Tlv(p.Tag.MESSAGE_STATE, b"\x02"),
                ),
            )
        )
        self.assertEqual(answers, [p.DeliverSmResp(sequence_number=70)])
        (receipt,) = of_type(h.events, DeliveryReceipt)
        self.assertEqual(
            (receipt.message_id, receipt.state, receipt.ref),
            ("a1b2", p.MessageState.DELIVERED, "job-1"),
        )

    def test_text_receipt_in_other_base(self) -> None:
        """
        submit_sm_resp ids in hex, text receipt ids in decimal: matched when
        configured so.
        """
        h = Harness(self, submit_id_base=p.MessageIdBase.HEX, receipt_id_base=p.MessageIdBase.DEC)
        h.bind()
        (sm,) = h.submit("job-2")
        h.accept(sm, "1F")
        h.feed(
            p.DeliverSm(
                sequence_number=71,
                esm_class=0x04,
                short_message=b"id:0000000031 stat:UNDELIV err:001",
            )
        )
        (receipt,) = of_type(h.events, DeliveryReceipt)
        self.assertEqual(
            (receipt.ref, receipt.state, receipt.key),
            ("job-2", p.MessageState.UNDELIVERABLE, "#31"),
        )

    def test_fuzz_unreadable_receipt_date(self) -> None:
        """
        Issue 12, defect 2: a receipt whose date holds "²" is acknowledged,
        reported with its job, noted once as a violation, and the link stays bound.
        """
        h = Harness(self)
        h.bind()
        (sm,) = h.submit("job-3")
        h.accept(sm, "9")
        text = "id:9 sub:001 dlvrd:001 submit date:2611220101 done date:26112201²2 stat:DELIVRD err:000"
        answers = h.feed(p.DeliverSm(sequence_number=74, esm_class=0x04, short_message=text.encode("latin-1")))
        self.assertEqual(answers, [p.DeliverSmResp(sequence_number=74)])
        (receipt,) = of_type(h.events, DeliveryReceipt)
        self.assertEqual((receipt.ref, receipt.state), ("job-3", p.MessageState.DELIVERED))
        (violation,) = of_type(h.events, ProtocolViolation)
        self.assertIn("done date unreadable", violation.description)
        self.assertFalse(violation.fatal)
        self.assertEqual(h.session.state, State.BOUND)

    def test_unknown_receipt(self) -> None:
        """
        A receipt for an id this session never saw is still reported, without ref.
        """
        h = Harness(self)
        h.bind()
        h.feed(p.DeliverSm(sequence_number=72, esm_class=0x04, short_message=b"id:zz stat:DELIVRD"))
        self.assertEqual(of_type(h.events, DeliveryReceipt)[0].ref, None)

    def test_mobile_originated_ignored(self) -> None:
        """
        A deliver_sm that is not a receipt is acknowledged and noted.
        """
        h = Harness(self)
        h.bind()
        answers = h.feed(p.DeliverSm(sequence_number=73, source_addr="4917", short_message=b"hi"))
        self.assertEqual(answers, [p.DeliverSmResp(sequence_number=73)])
        self.assertEqual(len(of_type(h.events, Ignored)), 1)

    def test_data_sm_receipt(self) -> None:
        """
        data_sm receipts are answered with data_sm_resp.
        """
        h = Harness(self)
        h.bind()
        answers = h.feed(
            p.DataSm(
                sequence_number=74, esm_class=4, tlvs=(p.Tlv(p.Tag.RECEIPTED_MESSAGE_ID, b"9\x00"),)
            )
        )
        self.assertEqual(answers, [p.DataSmResp(sequence_number=74)])
        self.assertEqual(of_type(h.events, DeliveryReceipt)[0].message_id, "9")

    def test_receipt_memory_bounded(self) -> None:
        """
        Only the last receipt_memory ids are remembered.
        """
        h = Harness(self, receipt_memory=1)
        h.bind()
        for ref, mid in (("old", "1"), ("new", "2")):
            (sm,) = h.submit(ref)
            h.accept(sm, mid)
        for raw_id in (b"1", b"2"):
            h.feed(
                p.DeliverSm(
                    sequence_number=80, esm_class=4, short_message=b"id:" + raw_id + b" stat:DELIVRD"
                )
            )
        self.assertEqual([r.ref for r in of_type(h.events, DeliveryReceipt)], [None, "new"])


_SMSC_PDUS = st.one_of(
    st.builds(p.EnquireLink, sequence_number=st.integers(1, 20)),
    st.builds(p.EnquireLinkResp, sequence_number=st.integers(1, 20)),
    st.builds(p.Unbind, sequence_number=st.integers(1, 20)),
    st.builds(p.UnbindResp, sequence_number=st.integers(1, 20)),
    st.builds(
        p.GenericNack, sequence_number=st.integers(0, 20), command_status=st.integers(0, 0x100)
    ),
    st.builds(
        p.BindTransceiverResp,
        sequence_number=st.integers(1, 3),
        command_status=st.sampled_from([0, 0x0E]),
    ),
    st.builds(
        p.SubmitSmResp,
        sequence_number=st.integers(1, 20),
        command_status=st.sampled_from([0, 0x08, 0x14, 0x58, 0x0B]),
        message_id=st.text("0123456789", max_size=4),
    ),
    st.builds(
        p.DeliverSm,
        sequence_number=st.integers(1, 20),
        esm_class=st.sampled_from([0, 4]),
        short_message=st.sampled_from([b"", b"id:1 stat:DELIVRD", b"hi"]),
    ),
)
_INPUTS = st.lists(
    st.one_of(
        st.tuples(st.just("pdu"), _SMSC_PDUS),
        st.tuples(st.just("raw"), st.binary(max_size=24)),
        st.tuples(st.just("tick"), st.floats(0, 40)),
        st.tuples(st.just("submit"), st.integers(1, 3)),
        st.tuples(st.just("close"), st.none()),
        st.tuples(st.just("lost"), st.none()),
    ),
    max_size=25,
)


class StateMachineTests(SynchronousTestCase):
    @given(_INPUTS)
    def test_any_conversation(self, inputs: list[tuple[str, Any]]) -> None:
        """
        Whatever the SMSC sends and whenever: no exception escapes but
        LocalProtocolError for a submit while closing, the window holds,
        everything we write is a well-formed PDU, nothing is written once
        closed, and every job ends exactly once (accepted, failed or returned).
        """
        session = EsmeSession(replace(CONFIG, window=2))
        now = 0.0
        outputs = [session.connection_made(now)]
        submitted, ended = set(), []
        for n, (kind, arg) in enumerate(inputs):
            closed_before = session.state is State.CLOSED
            if kind == "pdu":
                out = session.receive_data(p.encode(arg), now)
            elif kind == "raw":
                out = session.receive_data(arg, now)
            elif kind == "tick":
                now += arg
                out = session.tick(now)
            elif kind == "submit":
                try:
                    out = session.submit(n, DEVICE, THREE[:arg], now)
                except LocalProtocolError:
                    self.assertIn(session.state, (State.DRAINING, State.UNBINDING, State.CLOSED))
                    continue
                submitted.add(n)
            elif kind == "close":
                out = session.close(now)
            else:
                out = session.connection_lost(now)
            outputs.append(out)
            self.assertLessEqual(session.in_flight, 2)
            if closed_before:
                self.assertEqual(out.data, b"")
            for event in out.events:
                if isinstance(event, (SubmitAccepted, SubmitFailed)):
                    ended.append(event.ref)
                elif isinstance(event, JobsReturned):
                    ended.extend(j.ref for j in event.jobs)
        for out in outputs:
            decoder = p.PduDecoder()
            decoder.feed(out.data)
            while decoder.next_pdu() is not None:
                pass
        self.assertEqual(len(ended), len(set(ended)))
        self.assertLessEqual(set(ended), submitted)
        if session.state is State.CLOSED:
            self.assertEqual(set(ended), submitted)
