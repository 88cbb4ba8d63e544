"""
Tests for L{mdmd.notify.jobs}: push jobs in a real ZODB (in memory), one unit of work at a time.
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd.devices.records import UnknownDevice
from mdmd.notify import jobs
from mdmd.notify.bootstrap import BootstrapPin, Sec, netwpin_key, parse_bootstrap_push
from mdmd.notify.jobs import InvalidMsisdn, NotPushable, PushSettings
from mdmd.notify.pkg0 import DEFAULT_NONCE, UIMode, parse_package0, session_id_text
from mdmd.notify.smpp_session import Address
from mdmd.notify.smpp_pdu import MessageState
from mdmd.notify.wap import IEI_CONCAT_16BIT, parse_wsp_push, reassemble, split_udh
from mdmd.notify.provisioning_doc import Characteristic, DMServer, Parm, to_wbxml
from mdmd.store.paging import PageRequest
from mdmd.testing.devices import SERVER_NONCE, SERVER_SECRET, add_device
from mdmd.testing.randomness import fixed_random
from mdmd.store import due
from mdmd.testing.store import memory_store_service

from ..store.helpers import Tripwire

from .cp import IMSI, MSISDN, add_classic_device
from .helpers import job_record

SETTINGS = PushSettings(expiry=600.0)


class StoreTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        store = memory_store_service().store
        assert store is not None
        self.store = store

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

    def test_default_nonce(self) -> None:
        """
        On request package #0 is signed with the default nonce (libdmclient's
        "0x00000000"), which becomes the device's server nonce: a device that
        accepts the package holds it from then on.
        """
        self.run_(add_device, "D1")
        (job,) = self.run_(jobs.enqueue, ["D1"], SETTINGS, 100.0, fixed_random(), True)
        _, _, datagram = reassemble([job.segments[0].short_message])
        package0 = parse_package0(parse_wsp_push(datagram).body)
        self.assertEqual(DEFAULT_NONCE, b"0x00000000")
        self.assertTrue(package0.verify(SERVER_SECRET, DEFAULT_NONCE))
        self.assertFalse(package0.verify(SERVER_SECRET, SERVER_NONCE))
        self.assertEqual(self.run_(lambda root: root["devices"]["D1"].dm_server_nonce), DEFAULT_NONCE)

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


def trap(root: Any, index: str, device_id: str, when: float) -> None:
    """
    A unit of work: a device whose push log must not be read, with one job
    filed at C{when} in the due index C{index} (and open, for push_expiry).
    """
    root["pushes"][device_id] = Tripwire()
    if index == "push_expiry":
        root["push_open"][(device_id, 1)] = True
    due.file(root[index], when, device_id, 1)


class SweepTests(StoreTestCase):
    """
    The sweeps read the due indexes: only what is due, in bounded batches.
    """

    def setUp(self) -> None:
        super().setUp()
        for device_id in ("D1", "D2", "D3"):
            self.run_(add_device, device_id)

    def entries(self, index: str) -> list[tuple[Any, ...]]:
        return self.read(lambda root: list(root[index]))

    def test_expire_reads_only_due_jobs(self) -> None:
        """
        Expiry reads the jobs whose expiry passed, not the others (reading
        one would fail), however many there are.
        """
        (job,) = self.enqueue("D1")
        for n in range(30):
            self.run_(trap, "push_expiry", f"LATER-{n:02}", 5000.0 + n)
        self.store.db.cacheMinimize()
        swept = self.run_(jobs.expire_due, 700.0)
        self.assertEqual((swept.refs, swept.cursor), ((job.ref,), None))
        self.assertEqual(len(self.entries("push_expiry")), 30)

    def test_purge_reads_only_due_jobs(self) -> None:
        """
        A purge reads the jobs that finished before its time, not the others.
        """
        (job,) = self.enqueue("D1")
        self.run_(jobs.expire, 700.0)
        for n in range(30):
            self.run_(trap, "push_finished", f"LATER-{n:02}", 5000.0 + n)
        self.store.db.cacheMinimize()
        swept = self.run_(jobs.purge_due, 800.0)
        self.assertEqual((swept.refs, swept.cursor), ((job.ref,), None))
        self.assertEqual(len(self.entries("push_finished")), 30)

    def test_batches_bounded(self) -> None:
        """
        A batch takes at most its limit of entries, and says where the next starts.
        """
        self.enqueue("D1", "D2", "D3")
        first = self.run_(jobs.expire_due, 700.0, 2)
        self.assertEqual((first.refs, first.cursor), ((("D1", 1), ("D2", 1)), (12, "D2", 1)))
        second = self.run_(jobs.expire_due, 700.0, 2, first.cursor)
        self.assertEqual((second.refs, second.cursor), ((("D3", 1),), None))
        first = self.run_(jobs.purge_due, 800.0, 2)
        second = self.run_(jobs.purge_due, 800.0, 2, first.cursor)
        self.assertEqual((len(first.refs), len(second.refs), second.cursor), (2, 1, None))
        self.assertEqual(self.read(jobs.list_pushes), [])

    def test_stale_entries_tolerated(self) -> None:
        """
        The expiry entry of a job answered meanwhile stays until it falls
        due, then goes without the job being read; one made "due at once"
        when the index was built is moved to the job's expiry.
        """
        (answered,) = self.enqueue("D1")
        assert answered.info.session_id is not None
        self.run_(jobs.answer_push, "D1", session_id_text(answered.info.session_id), 150.0)
        (waiting,) = self.enqueue("D2", now=200.0)
        self.run_(lambda root: root["push_expiry"].add((0, "D2", 1)))
        self.assertEqual(self.entries("push_expiry"), [(0, "D2", 1), (12, "D1", 1), (14, "D2", 1)])
        self.run_(lambda root: root["pushes"].__setitem__("D1", Tripwire()))
        self.store.db.cacheMinimize()
        self.assertEqual(self.run_(jobs.expire_due, 720.0).refs, ())
        self.assertEqual(self.entries("push_expiry"), [(14, "D2", 1)])
        self.assertEqual(self.run_(jobs.expire_due, 800.0).refs, (waiting.ref,))

    def test_finished_indexed_when_finished(self) -> None:
        """
        A job is filed for the purge when it finishes, at that time.
        """
        (job,) = self.enqueue("D1")
        self.assertEqual(self.entries("push_finished"), [])
        assert job.info.session_id is not None
        self.run_(jobs.answer_push, "D1", session_id_text(job.info.session_id), 150.0)
        self.assertEqual(self.entries("push_finished"), [(3, "D1", 1)])
        self.assertEqual(self.run_(jobs.purge_due, 150.0).refs, ())
        self.assertEqual(self.entries("push_finished"), [(3, "D1", 1)])


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


SERVER = DMServer("mdmd", "mdmd test", "https://mdm.example.com:8443/ManagementServer/MDM.svc")


class BootstrapTests(StoreTestCase):
    def bootstrap(self, device_id: str = "C1", pin: BootstrapPin | None = None, now: float = 100.0) -> jobs.OutgoingPush:
        return self.run_(jobs.enqueue_bootstrap, device_id, pin or BootstrapPin.network(), SERVER, SETTINGS, now)

    def test_netwpin_job(self) -> None:
        """
        A NETWPIN bootstrap of a classic device: a queued job of kind
        bootstrap, no session id, for its MSISDN, whose SMS reassemble into a
        connectivity-wbxml push (SEC 0) whose MAC verifies with the IMSI's
        key and whose document is the device's w7 account.
        """
        self.run_(add_classic_device, "C1")
        job = self.bootstrap()
        info = job.info
        self.assertEqual((info.device_id, info.seq, info.kind, info.state), ("C1", 1, jobs.BOOTSTRAP, jobs.QUEUED))
        self.assertIsNone(info.session_id)
        self.assertEqual(info.as_json()["session_id"], None)
        self.assertEqual((info.msisdn, info.expires_at), (MSISDN, 700.0))
        self.assertEqual(job.destination, Address(MSISDN[1:], 1, 1))
        self.assertEqual(info.segments, len(job.segments))
        self.assertGreater(info.segments, 1)
        _, _, datagram = reassemble([s.short_message for s in job.segments])
        push = parse_bootstrap_push(datagram)
        self.assertEqual(push.sec, Sec.NETWPIN)
        self.assertTrue(push.verify(netwpin_key(IMSI)))
        self.assertEqual(push.document, to_wbxml(self.read(jobs.bootstrap_document, "C1", SERVER)))

    def test_document_from_the_record(self) -> None:
        """
        PROVIDER-ID is the device's server id, or the configured provider id
        when it has none; APPSRV carries its server credential (named by its
        server name), CLIENT its client credential, with their nonces.
        """
        self.run_(add_classic_device, "C1", dm_server_id="operator.dm", dm_server_auth_type="HMAC")
        self.run_(add_classic_device, "C2", server_name="")
        (application,) = self.read(jobs.bootstrap_document, "C1", SERVER).characteristics
        parms = {c.name: c.value for c in application.children if isinstance(c, Parm)}
        self.assertEqual((parms["PROVIDER-ID"], parms["NAME"], parms["ADDR"]), ("operator.dm", "mdmd test", SERVER.address))
        server, client = [c for c in application.children if isinstance(c, Characteristic)]
        self.assertEqual(
            [p.value for p in server.children if isinstance(p, Parm)],
            ["APPSRV", "HMAC", "mdmd", SERVER_SECRET, base64.b64encode(SERVER_NONCE).decode()],
        )
        self.assertEqual(
            [p.value for p in client.children if isinstance(p, Parm)],
            ["CLIENT", "DIGEST", "device-name", "device-secret", base64.b64encode(b"\x01" * 16).decode()],
        )
        (application,) = self.read(jobs.bootstrap_document, "C2", SERVER).characteristics
        parms = {c.name: c.value for c in application.children if isinstance(c, Parm)}
        self.assertEqual(parms["PROVIDER-ID"], "mdmd")
        server = [c for c in application.children if isinstance(c, Characteristic)][0]
        self.assertEqual([p.value for p in server.children if isinstance(p, Parm)][2], "mdmd")
        with self.assertRaises(UnknownDevice):
            self.read(jobs.bootstrap_document, "NOPE", SERVER)

    def test_userpin_job_keeps_no_pin(self) -> None:
        """
        A USERPIN bootstrap's MAC verifies with the PIN, and is all that is
        kept of it: the PIN is in no attribute of the stored job.
        """
        self.run_(add_classic_device, "C1", imsi="")
        job = self.bootstrap(pin=BootstrapPin.user("80204711"))
        push = parse_bootstrap_push(reassemble([s.short_message for s in job.segments])[2])
        self.assertEqual(push.sec, Sec.USERPIN)
        self.assertTrue(push.verify(b"80204711"))
        record = self.read(job_record, "C1", 1)
        self.assertEqual(record["kind"], jobs.BOOTSTRAP)
        self.assertNotIn(b"80204711", repr(record).encode())
        self.assertNotIn("80204711", repr(self.read(jobs.list_pushes, "C1")))

    def test_refusals(self) -> None:
        """
        An unknown device is not found; a Windows device, a removed one, one
        without MSISDN, without (or with a bad) IMSI for NETWPIN, or without
        a DM account is refused with every reason; nothing is queued.
        """
        self.run_(add_device, "W1")
        self.run_(add_classic_device, "R1", status="removed")
        self.run_(add_classic_device, "C1", msisdn="", imsi="", dm_client_secret="")
        self.run_(add_classic_device, "C2", imsi="12ab")
        with self.assertRaises(UnknownDevice):
            self.bootstrap("NOPE")
        for device_id, pin, reasons in (
            ("W1", BootstrapPin.network(), ["is a Windows device: it gets its DM account when it enrolls"]),
            ("R1", BootstrapPin.network(), ["device R1 is removed"]),
            (
                "C1",
                BootstrapPin.network(),
                ["device C1 has no MSISDN", "device C1 has no IMSI, which a NETWPIN bootstrap needs", "device C1 has no DM account"],
            ),
            ("C2", BootstrapPin.network(), ["device C2: '12ab' is not an IMSI"]),
        ):
            with self.assertRaises(jobs.CannotBootstrap) as caught:
                self.bootstrap(device_id, pin)
            for reason in reasons:
                self.assertIn(reason, str(caught.exception))
        with self.assertRaises(jobs.CannotBootstrap) as caught:
            self.bootstrap("C1", BootstrapPin.user("1234"))
        self.assertNotIn("IMSI", str(caught.exception))
        self.assertEqual(self.read(jobs.list_pushes), [])

    def test_shares_the_sequence_and_the_machinery(self) -> None:
        """
        A bootstrap and a notification of one device take consecutive
        numbers (hence concatenation references), list with their kinds,
        and go through the same submitted/delivered moves.
        """
        self.run_(add_classic_device, "C1")
        self.enqueue("C1")
        job = self.bootstrap()
        self.assertEqual(job.info.seq, 2)
        self.assertEqual(dict(split_udh(job.segments[0].short_message)[0])[0x00][0], 2)
        listed = self.read(jobs.list_pushes, "C1")
        self.assertEqual([(i.seq, i.kind) for i in listed], [(1, jobs.NOTIFICATION), (2, jobs.BOOTSTRAP)])
        keys = [f"b{n}" for n in range(len(job.segments))]
        info = self.run_(jobs.record_submitted, job.ref, 110.0, via="smpp", message_ids=keys, keys=keys)
        self.assertEqual((info.state, info.kind), (jobs.SUBMITTED, jobs.BOOTSTRAP))
        for key in keys:
            info = self.run_(jobs.record_receipt, key, MessageState.DELIVERED, 120.0)
        self.assertEqual(info.state, jobs.DELIVERED)
        (queued,) = self.read(jobs.queued_jobs)
        self.assertEqual(queued.info.kind, jobs.NOTIFICATION)

    def test_not_answered_by_a_notification_session(self) -> None:
        """
        A session answering a push (Alert 1200) never answers a bootstrap,
        which has no session id.
        """
        self.run_(add_classic_device, "C1")
        job = self.bootstrap()
        self.run_(jobs.record_submitted, job.ref, 110.0, via="spool", spool_file="f")
        for session_id in ("0", "1", "BEEF", ""):
            self.assertIsNone(self.run_(jobs.answer_push, "C1", session_id, 120.0))
        self.assertEqual(self.read(jobs.list_pushes, "C1")[0].state, jobs.SUBMITTED)

    def test_answered_by_a_later_authenticated_session(self) -> None:
        """
        An authenticated session that began before the job was submitted
        does not answer it (nor one still queued); one that began after does,
        once; notifications are left alone.
        """
        self.run_(add_classic_device, "C1")
        job = self.bootstrap()
        (notification,) = self.enqueue("C1", now=101.0)
        self.assertEqual(self.run_(jobs.answer_session, "C1", 105.0, 106.0), [])
        self.run_(jobs.record_submitted, job.ref, 110.0, via="spool", spool_file="f")
        self.assertEqual(self.run_(jobs.answer_session, "C1", 109.0, 111.0), [])
        (answered,) = self.run_(jobs.answer_session, "C1", 110.0, 112.0)
        self.assertEqual((answered.seq, answered.state, answered.answered_at), (1, jobs.ANSWERED, 112.0))
        self.assertEqual(self.run_(jobs.answer_session, "C1", 200.0, 201.0), [])
        self.assertEqual(self.read(job_record, "C1", notification.info.seq)["state"], jobs.QUEUED)

    def test_delivered_before_acknowledged(self) -> None:
        """
        A job whose receipts came before its acknowledgement (delivered,
        never submitted) is answered by a session begun after delivery.
        """
        self.run_(add_classic_device, "C1")
        job = self.bootstrap()
        keys = [f"b{n}" for n in range(len(job.segments))]
        self.run_(jobs.record_ids, job.ref, keys, keys, 105.0)
        for key in keys:
            self.run_(jobs.record_receipt, key, MessageState.DELIVERED, 106.0)
        (answered,) = self.run_(jobs.answer_session, "C1", 107.0, 108.0)
        self.assertEqual(answered.state, jobs.ANSWERED)

    def test_old_records_are_notifications(self) -> None:
        """
        A job stored before kinds existed (no kind attribute) reads as a notification.
        """
        self.run_(add_device, "D1")
        (job,) = self.enqueue("D1")

        def forget_kind(root: Any) -> None:
            stored = root["pushes"]["D1"].jobs[1]
            del stored.kind

        self.run_(forget_kind)
        self.assertNotIn("kind", self.read(job_record, "D1", 1))
        (info,) = self.read(jobs.list_pushes, "D1")
        self.assertEqual((info.kind, info.as_json()["kind"]), (jobs.NOTIFICATION, "notification"))


class WnsJobTests(StoreTestCase):
    """
    Jobs of route "wns": one part, to the device's channel, answered by its next session.
    """

    URI = "https://db5p.notify.windows.com/w/?token=AwYAAAB"

    def setUp(self) -> None:
        super().setUp()
        self.run_(add_device, "D1")

    def test_one_part_to_the_channel(self) -> None:
        """
        A WNS job is a notification queued with the channel, no segments, no
        session id and one message id to come; old jobs read as SMS.
        """
        (job,) = self.run_(jobs.enqueue_wns, [("D1", self.URI)], SETTINGS, 100.0)
        info = job.info
        self.assertEqual(
            (info.kind, info.route, info.channel_uri, info.state, info.session_id, info.message_ids, info.expires_at),
            (jobs.NOTIFICATION, "wns", self.URI, jobs.QUEUED, None, (None,), 700.0),
        )
        self.assertEqual(job.segments, ())
        (sms,) = self.enqueue("D1")
        self.assertEqual((sms.info.route, sms.info.channel_uri, sms.info.seq), ("sms", "", 2))
        self.assertNotIn("route", self.read(job_record, "D1", 2))

    def test_expires(self) -> None:
        """
        A WNS job is filed by its expiry like any job, and expires unanswered.
        """
        (job,) = self.run_(jobs.enqueue_wns, [("D1", self.URI)], SETTINGS, 100.0)
        self.assertEqual(self.read(lambda root: list(root["push_expiry"])), [(12, "D1", 1)])
        self.assertEqual(self.run_(jobs.expire_due, 700.0).refs, (job.ref,))

    def test_submitted_with_what_wns_said(self) -> None:
        """
        WNS's acceptance records its message id and what it said of the notification and device.
        """
        (job,) = self.run_(jobs.enqueue_wns, [("D1", self.URI)], SETTINGS, 100.0)
        info = self.run_(
            jobs.record_submitted, job.ref, 101.0, via="wns", message_ids=["3F0A"], keys=[None],
            carrier=[("status", "received"), ("device", "connected")],
        )
        self.assertEqual((info.state, info.via, info.message_ids), (jobs.SUBMITTED, "wns", ("3F0A",)))
        self.assertEqual(info.as_json()["carrier"], {"status": "received", "device": "connected"})

    def test_answered_by_a_later_session(self) -> None:
        """
        The device's first authenticated session that began after the job
        was submitted answers it; an earlier session does not, nor does any
        session answer an SMS notification, nor Alert 1200 a WNS job.
        """
        (wns,) = self.run_(jobs.enqueue_wns, [("D1", self.URI)], SETTINGS, 100.0)
        (sms,) = self.enqueue("D1", now=100.0, random=fixed_random(0x20))
        self.assertEqual(self.run_(jobs.answer_session, "D1", 100.0, 101.0), [])
        self.run_(jobs.record_submitted, wns.ref, 102.0, via="wns", message_ids=["M"], keys=[None])
        self.assertEqual(self.run_(jobs.answer_session, "D1", 101.0, 110.0), [])
        self.assertIsNone(self.run_(jobs.answer_push, "D1", "0", 110.0))
        (answered,) = self.run_(jobs.answer_session, "D1", 102.0, 111.0)
        self.assertEqual((answered.seq, answered.state, answered.answered_at), (wns.info.seq, jobs.ANSWERED, 111.0))
        self.assertEqual(self.run_(jobs.answer_session, "D1", 120.0, 121.0), [])
        (still,) = self.read(jobs.list_pushes, "D1", None, [jobs.QUEUED])
        self.assertEqual(still.seq, sms.info.seq)


class CountingAndPagingTests(StoreTestCase):
    """
    Jobs counted by state as they are made, move and go, and listed in pages.
    """

    def setUp(self) -> None:
        super().setUp()
        for device_id in ("D1", "D2"):
            self.run_(add_device, device_id)
        for n in range(3):
            self.enqueue("D1", now=100.0 + 10 * n)
            self.enqueue("D2", now=105.0 + 10 * n)

    def keys(self, query: jobs.PushQuery = jobs.PushQuery(), **request: Any) -> list[list[tuple[str, int]]]:
        pages = []
        cursor = None
        while True:
            page = self.read(jobs.push_page, query, PageRequest(cursor=cursor, **request))
            pages.append([(i.device_id, i.seq) for i in page.items])
            if page.next is None:
                return pages
            cursor = page.next

    def test_counted_and_indexed(self) -> None:
        """
        Making, moving and purging jobs keeps the counts and the index of jobs kept.
        """
        self.assertEqual(self.read(jobs.push_counts)["queued"], 6)
        self.run_(jobs.record_submitted, ("D1", 1), 130.0, via="spool")
        self.run_(jobs.record_refused, ("D1", 2), 130.0, error="no", retry=False)
        self.assertEqual(self.read(jobs.STATE_COUNTS.counts),
                         {"queued": 4, "submitted": 1, "delivered": 0, "answered": 0, "failed": 1, "expired": 0})
        self.assertEqual(self.run_(jobs.purge, 200.0), 1)
        self.assertEqual(self.read(jobs.push_counts)["failed"], 0)
        self.assertEqual(self.read(lambda root: len(root["push_index"])), 5)
        self.assertNotIn(("D1", 2), [key for page in self.keys() for key in page])

    def test_pages_in_the_order_made(self) -> None:
        """
        All jobs come in the order they were made, either way; one device's by sequence number.
        """
        made = [("D1", 1), ("D2", 1), ("D1", 2), ("D2", 2), ("D1", 3), ("D2", 3)]
        self.assertEqual(self.keys(limit=4), [made[:4], made[4:]])
        self.assertEqual(self.keys(limit=4, descending=True), [made[::-1][:4], made[::-1][4:]])
        self.assertEqual(self.keys(jobs.PushQuery(device_id="D2"), limit=2, descending=True), [[("D2", 3), ("D2", 2)], [("D2", 1)]])
        self.assertEqual(self.keys(jobs.PushQuery(device_id="NOPE")), [[]])

    def test_filters(self) -> None:
        """
        State and kind filter the jobs.
        """
        self.run_(jobs.record_submitted, ("D2", 2), 130.0, via="spool")
        self.assertEqual(self.keys(jobs.PushQuery(states=frozenset({"submitted"}))), [[("D2", 2)]])
        self.assertEqual(self.keys(jobs.PushQuery(kind=jobs.BOOTSTRAP)), [[]])
        self.assertEqual(len(self.keys(jobs.PushQuery(kind=jobs.NOTIFICATION))[0]), 6)
