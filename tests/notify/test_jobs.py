"""
Tests for L{mdmd.notify.jobs}: push jobs in a real ZODB (in memory), one unit of work at a time.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd.notify import jobs
from mdmd.notify.jobs import InvalidMsisdn, NotPushable, PushSettings
from mdmd.notify.pkg0 import UIMode, parse_package0, session_id_text
from mdmd.notify.smpp_session import Address
from mdmd.notify.smpp_pdu import MessageState
from mdmd.notify.wap import IEI_CONCAT_16BIT, parse_wsp_push, reassemble, split_udh
from mdmd.testing.devices import SERVER_NONCE, SERVER_SECRET, add_device
from mdmd.testing.randomness import fixed_random
from mdmd.testing.store import memory_store_service

from .helpers import job_record

SETTINGS = PushSettings(expiry=600.0)


class StoreTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = memory_store_service().store
        assert self.store is not None

    def run_(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.store.run(fn, *args, **kwargs)

    def read(self, fn: Any, *args: Any) -> Any:
        return self.store.read(fn, *args)

    def enqueue(self, *device_ids: str, settings: PushSettings = SETTINGS, now: float = 100.0, random: Any = None) -> list[jobs.OutgoingPush]:
        return self.run_(jobs.enqueue, device_ids, settings, now, random or fixed_random())


class MsisdnTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """
        Separators go; a leading + stays; 3 to 15 digits.
        """
        self.assertEqual(jobs.parse_msisdn(" +49 170 123-45.67 "), "+491701234567")
        self.assertEqual(jobs.parse_msisdn("(0170) 1234567"), "01701234567")
        self.assertEqual(jobs.parse_msisdn("123"), "123")

    def test_refused(self) -> None:
        """
        Letters, a + before 0, too few or too many digits are refused, by name.
        """
        for text in ("", "+", "12", "+0123456", "phone", "+49170x", "1" * 16, "++49170", "+49+170"):
            with self.assertRaises(InvalidMsisdn) as caught:
                jobs.parse_msisdn(text)
            self.assertIn("not a phone number", str(caught.exception))

    def test_ton_npi(self) -> None:
        """
        + numbers go out international/ISDN without the +; others with the local TON/NPI.
        """
        self.assertEqual(jobs.destination_of("+491701234567", SETTINGS), Address("491701234567", 1, 1))
        local = PushSettings(local_ton=2, local_npi=1)
        self.assertEqual(jobs.destination_of("01701234567", local), Address("01701234567", 2, 1))
        self.assertEqual(jobs.destination_of("01701234567", SETTINGS), Address("01701234567", 0, 1))


class EnqueueTests(StoreTestCase):
    def test_package0_for_the_device(self) -> None:
        """
        A queued job carries one SMS to port 2948 with the WSP push prefix and a
        package #0 for the device's server id whose digest verifies with its
        server secret and nonce, with the job's session id, version 11, background.
        """
        self.run_(add_device, "D1")
        (job,) = self.enqueue("D1", random=fixed_random(0x1A2B))
        self.assertEqual(job.info.state, jobs.QUEUED)
        self.assertEqual((job.info.device_id, job.info.seq, job.info.session_id), ("D1", 1, 0x1A2B))
        self.assertEqual(job.destination, Address("491701234567", 1, 1))
        self.assertEqual(job.info.expires_at, 700.0)
        (segment,) = job.segments
        self.assertEqual((segment.esm_class, segment.data_coding), (0x40, 0x04))
        self.assertEqual(segment.short_message[:7].hex(), "0605040b8423f0")
        self.assertEqual(segment.short_message[7:13].hex(), "010603c4af87")
        dst, src, datagram = reassemble([segment.short_message])
        package0 = parse_package0(parse_wsp_push(datagram).body)
        self.assertTrue(package0.verify(SERVER_SECRET, SERVER_NONCE))
        self.assertFalse(package0.verify(SERVER_SECRET, b"\x00" * 16))
        self.assertEqual(
            (package0.server_id, package0.session_id, package0.version, package0.ui_mode),
            ("mdmd", 0x1A2B, 11, UIMode.BACKGROUND),
        )
        self.assertEqual(job.info.as_json()["session_id"], "1A2B")

    def test_settings(self) -> None:
        """
        Version, ui-mode, data coding 0xF5 and 16-bit concatenation come from the settings.
        """
        self.run_(add_device, "D1", server_name="s" * 150)
        settings = PushSettings(version=12, ui_mode=UIMode.USER_INTERACTION, data_coding=0xF5, concat_iei=IEI_CONCAT_16BIT)
        (job,) = self.enqueue("D1", settings=settings)
        self.assertEqual(len(job.segments), 2)
        self.assertEqual({s.data_coding for s in job.segments}, {0xF5})
        elements, _ = split_udh(job.segments[0].short_message)
        self.assertEqual(dict(elements)[0x08], bytes([0, 1, 2, 1]))
        package0 = parse_package0(parse_wsp_push(reassemble([s.short_message for s in job.segments])[2]).body)
        self.assertEqual((package0.version, package0.ui_mode), (12, UIMode.USER_INTERACTION))

    def test_concat_reference_varies(self) -> None:
        """
        Two multi-segment pushes to one handset use different concatenation references.
        """
        self.run_(add_device, "D1", server_name="s" * 150)
        first, second = self.enqueue("D1")[0], self.enqueue("D1")[0]
        refs = [dict(split_udh(j.segments[0].short_message)[0])[0x00][0] for j in (first, second)]
        self.assertEqual(refs, [1, 2])

    def test_session_ids_unique_among_open_jobs(self) -> None:
        """
        A drawn session id already held by an open job of the device (or 0) is
        drawn again; another device, or a finished job, may reuse it.
        """
        self.run_(add_device, "D1")
        self.run_(add_device, "D2")
        (a,) = self.enqueue("D1", random=fixed_random(7))
        (b,) = self.enqueue("D1", random=fixed_random(7, 0, 7, 9))
        (c,) = self.enqueue("D2", random=fixed_random(7))
        self.assertEqual((a.info.session_id, b.info.session_id, c.info.session_id), (7, 9, 7))
        self.run_(jobs.answer_push, "D1", "7", 200.0)
        (d,) = self.enqueue("D1", random=fixed_random(7))
        self.assertEqual(d.info.session_id, 7)

    def test_classic_device_server_id_and_credential(self) -> None:
        """
        A classic device's package #0 names its own server id and is signed with its
        server credential's name (which need not be the server id), secret and nonce.
        """
        self.run_(add_device, "C1", kind="omadm", server_id="acme-dm", server_name="srvcred")
        (job,) = self.enqueue("C1", random=fixed_random(0x1234))
        package0 = parse_package0(parse_wsp_push(reassemble([s.short_message for s in job.segments])[2]).body)
        self.assertEqual((package0.server_id, package0.session_id), ("acme-dm", 0x1234))
        self.assertTrue(package0.verify(SERVER_SECRET, SERVER_NONCE, name="srvcred"))
        self.assertFalse(package0.verify(SERVER_SECRET, SERVER_NONCE))

    def test_provider_id_when_no_server_id(self) -> None:
        """
        A device without a server id of its own (as Windows enrollment leaves it) gets
        the configured provider id; the digest is still over its server credential.
        """
        self.run_(add_device, "W1", server_id="", server_name="mdmd")
        (job,) = self.enqueue("W1", settings=PushSettings(provider_id="acme"))
        package0 = parse_package0(parse_wsp_push(reassemble([s.short_message for s in job.segments])[2]).body)
        self.assertEqual(package0.server_id, "acme")
        self.assertTrue(package0.verify(SERVER_SECRET, SERVER_NONCE, name="mdmd"))
        self.run_(add_device, "W2", server_id="", server_name="mdmd")
        with self.assertRaises(NotPushable) as caught:
            self.enqueue("W2", settings=PushSettings(provider_id="p" * 256))
        self.assertIn("the server id of device W2 is longer than 255 octets", str(caught.exception))

    def test_refusals(self) -> None:
        """
        Unknown, not enrolled and number-less devices are all named, and nothing is queued.
        """
        self.run_(add_device, "ok")
        self.run_(add_device, "gone", status="removed")
        self.run_(add_device, "mute", msisdn="")
        with self.assertRaises(NotPushable) as caught:
            self.enqueue("ok", "gone", "mute", "ghost")
        message = str(caught.exception)
        for expected in ("device gone is removed", "device mute has no MSISDN", "no device 'ghost'"):
            self.assertIn(expected, message)
        self.assertEqual(self.read(jobs.list_pushes), [])

    def test_msisdn_from_enrollment(self) -> None:
        """
        Without an operator-set number, an MSISDN item of the enrollment's
        AdditionalContext is used; an operator's number wins.
        """
        self.run_(add_device, "D1", msisdn="", context=(("MSISDN", "+44 7700 900123"),))
        self.assertEqual(self.read(jobs.push_facts, "D1")["msisdn_source"], "enrollment")
        (job,) = self.enqueue("D1")
        self.assertEqual(job.destination, Address("447700900123", 1, 1))
        facts = self.run_(jobs.set_msisdn, "D1", "0170 1234567")
        self.assertEqual((facts["msisdn"], facts["msisdn_source"]), ("01701234567", "operator"))
        with self.assertRaises(InvalidMsisdn):
            self.run_(jobs.set_msisdn, "D1", "call me")
        cleared = self.run_(jobs.set_msisdn, "D1", None)
        self.assertEqual(cleared["msisdn"], "+447700900123")


class JobTestCase(StoreTestCase):
    """
    One queued job of two segments (D1, session id BEEF).
    """

    def setUp(self) -> None:
        super().setUp()
        self.run_(add_device, "D1", server_name="s" * 150)
        (self.job,) = self.enqueue("D1", random=fixed_random(0xBEEF))
        self.ref = self.job.ref

    def record(self, *keys: str) -> None:
        self.run_(jobs.record_submitted, self.ref, 110.0, via="smpp", message_ids=keys, keys=keys)


class StateTests(JobTestCase):
    def test_ids_kept_as_they_come(self) -> None:
        """
        An acknowledged segment's id is kept while the job stays queued; a
        second acknowledgement of the same segment does not replace it; the
        queued job is offered again with the id it has.
        """
        self.run_(jobs.record_ids, self.ref, ["m1", None], ["m1", None], 105.0)
        self.run_(jobs.record_ids, self.ref, ["other", None], ["other", None], 106.0)
        (queued,) = self.read(jobs.queued_jobs)
        self.assertEqual(queued.info.message_ids, ("m1", None))
        self.assertEqual(queued.info.state, jobs.QUEUED)
        self.assertEqual(queued.segments, self.job.segments)

    def test_delivered_then_answered(self) -> None:
        """
        submitted → delivered once every segment's receipt says so → answered by
        the session id in any case of hex with leading zeros; then not queued nor open.
        """
        self.record("m1", "m2")
        info = self.run_(jobs.record_receipt, "m1", MessageState.DELIVERED, 120.0)
        self.assertEqual(info.state, jobs.SUBMITTED)
        self.assertEqual(self.run_(jobs.record_receipt, "m2", MessageState.ENROUTE, 121.0).state, jobs.SUBMITTED)
        info = self.run_(jobs.record_receipt, "m2", MessageState.DELIVERED, 122.0)
        self.assertEqual((info.state, info.delivered_at, info.receipts), (jobs.DELIVERED, 122.0, ("DELIVERED", "DELIVERED")))
        self.assertIsNone(self.run_(jobs.answer_push, "D1", "BEEE", 130.0))
        self.assertIsNone(self.run_(jobs.answer_push, "D1", "not hex", 130.0))
        info = self.run_(jobs.answer_push, "D1", "0beef", 131.0)
        self.assertEqual((info.state, info.answered_at, info.finished_at), (jobs.ANSWERED, 131.0, 131.0))
        self.assertEqual(self.read(jobs.queued_jobs), [])
        self.assertIsNone(self.run_(jobs.answer_push, "D1", "BEEF", 132.0))

    def test_answered_however_the_id_is_echoed(self) -> None:
        """
        The device's SessionID matches the job in upper-case hex, lower-case hex or
        decimal; where both readings name an open job, hex (the specification's) wins.
        """
        self.run_(add_device, "D2")
        for echoed, drawn in (("1A2B", 0x1A2B), ("1a2b", 0x1A2B), ("4660", 4660)):
            (job,) = self.enqueue("D2", random=fixed_random(drawn))
            info = self.run_(jobs.answer_push, "D2", echoed, 150.0)
            self.assertEqual((info.seq, info.state), (job.info.seq, jobs.ANSWERED), echoed)
        (dec,) = self.enqueue("D2", random=fixed_random(12))
        (hexa,) = self.enqueue("D2", random=fixed_random(0x12))
        self.assertEqual(self.run_(jobs.answer_push, "D2", "12", 151.0).seq, hexa.info.seq)
        self.assertEqual(self.run_(jobs.answer_push, "D2", "12", 152.0).seq, dec.info.seq)

    def test_undelivered_fails(self) -> None:
        """
        One undeliverable segment fails the job, with the reason.
        """
        self.record("m1", "m2")
        info = self.run_(jobs.record_receipt, "m2", MessageState.UNDELIVERABLE, 120.0)
        self.assertEqual((info.state, info.error), (jobs.FAILED, "segment 2 of 2: undeliverable"))
        self.assertIsNone(self.run_(jobs.record_receipt, "unknown", MessageState.DELIVERED, 121.0))

    def test_refused(self) -> None:
        """
        A temporary refusal keeps the job queued (with its ids); a permanent one fails it.
        """
        info = self.run_(jobs.record_refused, self.ref, 110.0, error="SMSC refused: ESME_RTHROTTLED", retry=True, message_ids=["m1", None], keys=["m1", None])
        self.assertEqual((info.state, info.attempts, info.message_ids), (jobs.QUEUED, 1, ("m1", None)))
        info = self.run_(jobs.record_refused, self.ref, 111.0, error="SMSC refused: ESME_RINVDSTADR", retry=False)
        self.assertEqual((info.state, info.error, info.finished_at), (jobs.FAILED, "SMSC refused: ESME_RINVDSTADR", 111.0))

    def test_expiry_and_purge(self) -> None:
        """
        An open job past its expiry is expired (once); finished jobs are forgotten
        after their time, with their message id index.
        """
        self.record("m1", "m2")
        self.assertEqual(self.run_(jobs.expire, 699.0), [])
        self.assertEqual(self.run_(jobs.expire, 700.0), [self.ref])
        self.assertEqual(self.run_(jobs.expire, 800.0), [])
        (info,) = self.read(jobs.list_pushes, "D1")
        self.assertEqual((info.state, info.error), (jobs.EXPIRED, "not answered in time"))
        self.assertEqual(self.read(jobs.push_counts)["expired"], 1)
        self.assertEqual(self.run_(jobs.purge, 700.0), 0)
        self.assertEqual(self.run_(jobs.purge, 700.5), 1)
        self.assertEqual(self.read(jobs.list_pushes), [])
        self.assertIsNone(self.run_(jobs.record_receipt, "m1", MessageState.DELIVERED, 900.0))

    def test_answered_before_acknowledged(self) -> None:
        """
        A device may answer before the SMSC's acknowledgement is recorded: the
        job stays answered and still gets its ids.
        """
        self.run_(jobs.answer_push, "D1", session_id_text(0xBEEF), 105.0)
        self.record("m1", "m2")
        record = self.read(job_record, "D1", 1)
        self.assertEqual((record["state"], record["message_ids"]), (jobs.ANSWERED, ("m1", "m2")))

    def test_listing(self) -> None:
        """
        Jobs list oldest first, by device, by state, the newest N.
        """
        self.run_(add_device, "D2")
        self.enqueue("D2", now=200.0)
        self.enqueue("D1", now=300.0)
        self.assertEqual([(i.device_id, i.seq) for i in self.read(jobs.list_pushes)], [("D1", 1), ("D2", 1), ("D1", 2)])
        self.assertEqual([i.seq for i in self.read(jobs.list_pushes, "D1")], [1, 2])
        self.assertEqual([(i.device_id, i.seq) for i in self.read(jobs.list_pushes, None, 1)], [("D1", 2)])
        self.assertEqual(self.read(jobs.list_pushes, None, None, ["submitted"]), [])
        self.assertEqual(self.read(jobs.push_counts)["queued"], 3)
        self.assertEqual(self.read(jobs.push_facts, "D1")["jobs"], {"queued": 2})


S, E = jobs.PushState, jobs.PushEvent
_FINISHED = (S.ANSWERED, S.FAILED, S.EXPIRED)

#: The moves of the table, written out.
MOVES = {
    (S.QUEUED, E.SUBMIT): S.SUBMITTED,
    (S.QUEUED, E.REFUSE): S.FAILED,
    (S.QUEUED, E.DELIVER): S.DELIVERED,
    (S.QUEUED, E.UNDELIVERED): S.FAILED,
    (S.QUEUED, E.ANSWER): S.ANSWERED,
    (S.QUEUED, E.EXPIRE): S.EXPIRED,
    (S.SUBMITTED, E.DELIVER): S.DELIVERED,
    (S.SUBMITTED, E.UNDELIVERED): S.FAILED,
    (S.SUBMITTED, E.ANSWER): S.ANSWERED,
    (S.SUBMITTED, E.EXPIRE): S.EXPIRED,
    (S.DELIVERED, E.ANSWER): S.ANSWERED,
    (S.DELIVERED, E.EXPIRE): S.EXPIRED,
}
#: What the SMSC may report after the job moved on: the job stays where it is.
LATE = (
    {(state, event) for state in (S.SUBMITTED, S.DELIVERED, *_FINISHED) for event in (E.SUBMIT, E.REFUSE)}
    | {(state, event) for state in (S.DELIVERED, *_FINISHED) for event in (E.DELIVER, E.UNDELIVERED)}
)


class TransitionTests(SynchronousTestCase):
    def test_every_pair(self) -> None:
        """
        The table is the documented moves plus the late reports that keep a
        job where it is; every other (state, event) raises IllegalPushMove.
        """
        self.assertEqual(jobs.TRANSITIONS, {**MOVES, **{key: key[0] for key in LATE}})
        for state in S:
            for event in E:
                if (state, event) in MOVES:
                    self.assertIs(jobs.next_state(state, event), MOVES[(state, event)])
                elif (state, event) in LATE:
                    self.assertIs(jobs.next_state(state, event), state)
                else:
                    with self.assertRaises(jobs.IllegalPushMove) as caught:
                        jobs.next_state(state, event)
                    self.assertEqual((caught.exception.state, caught.exception.event), (state, event))
                    self.assertIn(f"from {state.value} on {event.value}", str(caught.exception))

    def test_finished_jobs_stay_finished(self) -> None:
        """
        Nothing moves a job out of answered, failed or expired; a finished job
        cannot be answered or expired again.
        """
        for (state, event), target in jobs.TRANSITIONS.items():
            if state in _FINISHED:
                self.assertIs(target, state, (state, event))
        for state in _FINISHED:
            for event in (E.ANSWER, E.EXPIRE):
                self.assertRaises(jobs.IllegalPushMove, jobs.next_state, state, event)

    def test_stored_values(self) -> None:
        """
        The module's state names are the stored string values.
        """
        self.assertEqual(jobs.STATES, ("queued", "submitted", "delivered", "answered", "failed", "expired"))
        self.assertEqual(jobs.OPEN, ("queued", "submitted", "delivered"))
        self.assertEqual((jobs.QUEUED, jobs.ANSWERED), ("queued", "answered"))


class LateReportTests(JobTestCase):
    def test_reports_after_expiry(self) -> None:
        """
        An acknowledgement, a refusal and receipts that come after the job
        expired keep it expired (and its finish time), but their facts are kept.
        """
        self.assertEqual(self.run_(jobs.expire, 700.0), [self.ref])
        info = self.run_(jobs.record_submitted, self.ref, 710.0, via="smpp", message_ids=["m1", "m2"], keys=["m1", "m2"])
        self.assertEqual((info.state, info.submitted_at, info.message_ids, info.finished_at), (jobs.EXPIRED, None, ("m1", "m2"), 700.0))
        info = self.run_(jobs.record_refused, self.ref, 711.0, error="SMSC refused: ESME_RINVDSTADR", retry=False)
        self.assertEqual((info.state, info.finished_at), (jobs.EXPIRED, 700.0))
        info = self.run_(jobs.record_receipt, "m1", MessageState.UNDELIVERABLE, 720.0)
        self.assertEqual((info.state, info.receipts[0]), (jobs.EXPIRED, "UNDELIVERABLE"))
        self.assertEqual(info.error, "SMSC refused: ESME_RINVDSTADR")

    def test_receipts_after_delivery(self) -> None:
        """
        A duplicate or contradicting receipt for a delivered job leaves it delivered.
        """
        self.record("m1", "m2")
        self.run_(jobs.record_receipt, "m1", MessageState.DELIVERED, 120.0)
        self.run_(jobs.record_receipt, "m2", MessageState.DELIVERED, 121.0)
        info = self.run_(jobs.record_receipt, "m2", MessageState.REJECTED, 122.0)
        self.assertEqual((info.state, info.delivered_at, info.error), (jobs.DELIVERED, 121.0, None))
