"""
Tests for L{mdmd.notify.notifier}: the notifier with a fake transport
(L{mdmd.testing.push}), then with each real one: the SMPP transport against
the fake SMSC of L{mdmd.testing.smsc}, in memory on a MemoryReactorClock, and
the spool; always with the real store (in memory, run synchronously).
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mdmd.notify import jobs
from mdmd.notify import smpp_pdu as p
from mdmd.notify.jobs import NotPushable, PushSettings
from mdmd.notify.bootstrap import BootstrapPin, Sec, netwpin_key, parse_bootstrap_push
from mdmd.notify.notifier import BootstrapUnavailable, Notifier
from mdmd.notify.provisioning_doc import DMServer
from mdmd.notify.smpp_transport import SmppTransport
from mdmd.notify.spool import SPOOL_FORMAT, SpoolTransport, spool_document, spool_name
from mdmd.notify.pkg0 import parse_package0
from mdmd.notify.smpp_pdu import MessageState
from mdmd.notify.transport import Abandoned, IPushListener, IPushTransport, Refused, Sent
from mdmd.notify.wap import parse_wsp_push, reassemble
from mdmd.testing.push import FakePushTransport
from mdmd.testing.devices import SERVER_NONCE, SERVER_SECRET, add_device
from mdmd.testing.randomness import fixed_random
from mdmd.testing.smsc import FakeSmscFactory, Receipts, Scenario
from mdmd.testing.smsc import MemorySmppNetwork as Net
from mdmd.testing.store import SynchronousStoreService, memory_store_service

from ..logs import logged_events
from .cp import IMSI, add_classic_device
from .helpers import LONG_ID, job_record

SETTINGS = PushSettings(expiry=600.0)
SERVER = DMServer("mdmd", "mdmd test", "https://mdm.example.com/ManagementServer/MDM.svc")


class Rig:
    """
    A notifier over a store, with the SMPP client and fake SMSC of
    L{mdmd.testing.smsc.MemorySmppNetwork} on its memory reactor (or, with no
    scenario, a spool directory).
    """

    def __init__(
        self,
        scenario: Scenario | None = Scenario(),
        store: SynchronousStoreService | None = None,
        spool_dir: str = "",
        **config: Any,
    ) -> None:
        self.net = Net(scenario, **config) if scenario is not None else None
        self.reactor = self.net.reactor if self.net is not None else MemoryReactorClock()
        self.esme = self.net.service if self.net is not None else None
        self.store = store or memory_store_service()
        self.notifier = Notifier(
            self.store,
            SETTINGS,
            self.reactor,
            transport=(
                SmppTransport(self.esme, "tcp:127.0.0.1:2775")
                if self.esme is not None
                else SpoolTransport(spool_dir)
            ),
            retry_delay=30.0,
            keep_seconds=3600.0,
            random=fixed_random(0x1234, 0x2345, 0x3456),
            dm_server=lambda: SERVER,
        )

    @property
    def smsc(self) -> FakeSmscFactory:
        assert self.net is not None
        return self.net.smsc

    def add(self, device_id: str = "D1", **kwargs: Any) -> None:
        assert self.store.store is not None
        self.store.store.run(add_device, device_id, **kwargs)

    def record(self, device_id: str = "D1", seq: int = 1) -> dict[str, Any]:
        assert self.store.store is not None
        return self.store.store.read(job_record, device_id, seq)

    def start(self, connect: bool = True) -> None:
        self.notifier.startService()
        if self.net is not None:
            self.net.service.startService()
            if connect:
                self.connect()
        self.advance(0)

    def connect(self) -> None:
        assert self.net is not None
        self.net.connect()

    def disconnect(self) -> None:
        """
        The SMSC drops the connection.
        """
        assert self.net is not None
        transport = self.smsc.connections[-1].transport
        assert transport is not None
        transport.loseConnection()
        self.flush()
        self.net.pump = None

    def flush(self) -> None:
        if self.net is not None and self.net.pump is not None:
            self.net.flush()

    def advance(self, seconds: float) -> None:
        self.reactor.advance(seconds)
        self.flush()

    def push(self, *device_ids: str) -> Any:
        results: list[Any] = []
        self.notifier.push(list(device_ids)).addBoth(results.append)
        self.flush()
        return results[0]

    def stop(self) -> None:
        stopped: list[Any] = []
        if self.esme is not None:
            self.esme.stopService().addCallback(stopped.append)
            self.flush()
            self.advance(20.0)
        self.notifier.stopService().addCallback(stopped.append)
        assert len(stopped) == (2 if self.esme is not None else 1)


class FakeRig:
    """
    A notifier over a store, with a fake transport on a Clock.
    """

    def __init__(self, transport: FakePushTransport | None = None) -> None:
        self.clock = Clock()
        self.transport = transport or FakePushTransport()
        self.store = memory_store_service()
        self.notifier = Notifier(
            self.store,
            SETTINGS,
            self.clock,
            transport=self.transport,
            retry_delay=30.0,
            keep_seconds=3600.0,
            random=fixed_random(0x1234, 0x2345, 0x3456),
            dm_server=lambda: SERVER,
        )

    def add(self, device_id: str = "D1", **kwargs: Any) -> None:
        assert self.store.store is not None
        self.store.store.run(add_device, device_id, **kwargs)

    def record(self, device_id: str = "D1", seq: int = 1) -> dict[str, Any]:
        assert self.store.store is not None
        return self.store.store.read(job_record, device_id, seq)

    def start(self) -> None:
        self.notifier.startService()
        self.clock.advance(0)

    def push(self, *device_ids: str) -> Any:
        results: list[Any] = []
        self.notifier.push(list(device_ids)).addBoth(results.append)
        return results[0]


class NotifierTests(SynchronousTestCase):
    """
    The notifier with a transport it knows only by its interface.
    """

    def test_interfaces(self) -> None:
        """
        The fake transport is a verified IPushTransport; the notifier is the
        IPushListener it attaches to it.
        """
        rig = FakeRig()
        self.assertTrue(verifyObject(IPushTransport, rig.transport))
        self.assertTrue(verifyObject(IPushListener, rig.notifier))
        self.assertIs(rig.transport.listener, rig.notifier)

    def test_sent(self) -> None:
        """
        A push hands the job to the transport and answers it queued; once
        the transport has sent it, the job is submitted via the transport's
        name, with its message ids; a delivery report under an id's key then
        delivers it.
        """
        rig = FakeRig()
        rig.add()
        rig.start()
        (info,) = rig.push("D1")
        self.assertEqual((info.state, info.session_id), (jobs.QUEUED, 0x1234))
        (job,) = rig.transport.sent
        self.assertEqual((job.ref, job.destination.addr), (("D1", 1), "491701234567"))
        rig.transport.settle(job.ref, Sent(("m-1",), ("k-1",), detail="sent"))
        record = rig.record()
        self.assertEqual(
            (record["state"], record["via"], record["message_ids"], record["spool_file"]),
            (jobs.SUBMITTED, "fake", ("m-1",), None),
        )
        rig.transport.report("m-1", MessageState.DELIVERED, key="k-1")
        self.assertEqual(rig.record()["state"], jobs.DELIVERED)

    def test_settled_at_once_answers_the_record(self) -> None:
        """
        A transport that settles a job before send returns (as the spool
        does) has the push answered with the job as recorded after that.
        """
        rig = FakeRig(FakePushTransport("now", at_once=lambda job: Sent(location="/there")))
        rig.add()
        rig.start()
        (info,) = rig.push("D1")
        self.assertEqual((info.state, info.via, info.spool_file), (jobs.SUBMITTED, "now", "/there"))

    def test_refused_for_now_is_sent_again(self) -> None:
        """
        A job refused for now stays queued with the error and the parts
        accepted so far, and is handed over again after retry_delay, with those ids.
        """
        rig = FakeRig()
        rig.add(server_name=LONG_ID)
        rig.start()
        rig.push("D1")
        rig.transport.settle(("D1", 1), Refused("busy", True, ("m-1", None, None), ("k-1", None, None)))
        record = rig.record()
        self.assertEqual(
            (record["state"], record["error"], record["attempts"], record["message_ids"]),
            (jobs.QUEUED, "busy", 1, ("m-1", None, None)),
        )
        rig.clock.advance(29.0)
        self.assertEqual(len(rig.transport.sent), 1)
        rig.clock.advance(1.0)
        self.assertEqual(len(rig.transport.sent), 2)
        self.assertEqual(rig.transport.sent[1].info.message_ids, ("m-1", None, None))

    def test_refused_for_good_fails(self) -> None:
        """
        A job refused for good fails with the error and is not sent again.
        """
        rig = FakeRig()
        rig.add()
        rig.start()
        rig.push("D1")
        rig.transport.settle(("D1", 1), Refused("no such number", False))
        rig.clock.advance(100.0)
        record = rig.record()
        self.assertEqual((record["state"], record["error"]), (jobs.FAILED, "no such number"))
        self.assertEqual(len(rig.transport.sent), 1)

    def test_abandoned_keeps_the_ids_and_the_job_queued(self) -> None:
        """
        An abandoned job stays queued with the ids accepted before the stop,
        and is handed over again (with them) by the next start.
        """
        rig = FakeRig()
        rig.add(server_name=LONG_ID)
        rig.start()
        rig.push("D1")
        rig.transport.settle(("D1", 1), Abandoned(("m-1", None, None), ("k-1", None, None)))
        rig.notifier.stopService()
        record = rig.record()
        self.assertEqual((record["state"], record["message_ids"]), (jobs.QUEUED, ("m-1", None, None)))
        self.assertEqual(record["attempts"], 0)
        rig.start()
        self.assertEqual(rig.transport.sent[-1].info.message_ids, ("m-1", None, None))

    def test_parts_recorded_as_they_come(self) -> None:
        """
        Each part of a job in flight is recorded when the transport reports
        it; a part of a one-part job, or of a job not in flight, is not.
        """
        rig = FakeRig()
        rig.add(server_name=LONG_ID)
        rig.add("D2")
        rig.start()
        rig.push("D1", "D2")
        rig.transport.accept_part(("D1", 1), 1, 3, "m-2")
        self.assertEqual(rig.record()["message_ids"], (None, "m-2", None))
        rig.transport.accept_part(("D2", 1), 0, 1, "m-9")
        rig.transport.accept_part(("D3", 1), 0, 3, "m-8")
        self.assertEqual(rig.record("D2")["message_ids"], (None,))

    def test_expiry_cancels_the_flight(self) -> None:
        """
        A job that expires while the transport has it is withdrawn from the transport.
        """
        rig = FakeRig()
        rig.add()
        rig.start()
        rig.push("D1")
        rig.clock.advance(660.0)
        self.assertEqual(rig.record()["state"], jobs.EXPIRED)
        self.assertEqual((rig.transport.cancelled, rig.transport.pending), ([("D1", 1)], {}))

    def test_handed_over_once_and_only_while_running(self) -> None:
        """
        A push before the start waits, queued, until the start hands it
        over; a job already in flight when the start's resume finds it still
        queued is not handed over again.
        """
        rig = FakeRig()
        rig.add()
        (info,) = rig.push("D1")
        self.assertEqual((info.state, rig.transport.sent), (jobs.QUEUED, []))
        rig.notifier.startService()
        rig.push("D1")
        rig.clock.advance(0)
        self.assertEqual(sorted(job.ref for job in rig.transport.sent), [("D1", 1), ("D1", 2)])

    def test_transport_failure_logged(self) -> None:
        """
        A transport whose outcome fails (its own bug) has the failure logged;
        the job stays queued.
        """
        rig = FakeRig()
        rig.add()
        rig.start()
        rig.transport.send = lambda job: fail(RuntimeError("bug"))  # type: ignore[method-assign]  # a send that fails, for this test only
        (info,) = rig.push("D1")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual((info.state, rig.record()["state"]), (jobs.QUEUED, jobs.QUEUED))

    def test_link_is_the_transports(self) -> None:
        """
        The link in the status output is what the transport describes.
        """
        rig = FakeRig()
        rig.transport.link = {"state": "bound", "peer": "somewhere"}
        status = self.successResultOf(rig.notifier.status())
        self.assertEqual(status["link"], {"state": "bound", "peer": "somewhere"})
        self.assertEqual(rig.notifier.link, {"state": "bound", "peer": "somewhere"})


class SmppTests(SynchronousTestCase):
    def test_submitted_then_delivered(self) -> None:
        """
        queued → submitted with the SMSC's message id → delivered by its receipt;
        the SMSC received our package #0 for the device's number.
        """
        rig = Rig(Scenario(receipts=Receipts.TLV))
        rig.add()
        rig.start()
        self.assertEqual(rig.notifier.link["state"], "bound")
        (info,) = rig.push("D1")
        self.assertEqual((info.state, info.session_id), (jobs.QUEUED, 0x1234))
        record = rig.record()
        self.assertEqual(
            (record["state"], record["via"], record["message_ids"], record["receipts"]),
            (jobs.DELIVERED, "smpp", ("1",), ("DELIVERED",)),
        )
        (submit,) = rig.smsc.submits
        self.assertEqual((submit.destination_addr, submit.dest_addr_ton, submit.esm_class), ("491701234567", 1, 0x40))
        package0 = parse_package0(parse_wsp_push(reassemble([submit.short_message])[2]).body)
        self.assertTrue(package0.verify(SERVER_SECRET, SERVER_NONCE))
        self.assertEqual(package0.session_id, 0x1234)

    def test_refused_for_now_is_retried(self) -> None:
        """
        A job the SMSC keeps throttling stays queued with the error and is
        submitted again after retry_delay.
        """
        rig = Rig(Scenario(throttle_every=1), max_throttle_retries=0)
        rig.add()
        rig.start()
        rig.push("D1")
        record = rig.record()
        self.assertEqual((record["state"], record["error"], record["attempts"]), (jobs.QUEUED, "SMSC refused: ESME_RTHROTTLED", 1))
        rig.smsc.scenario = Scenario()
        rig.advance(29.0)
        self.assertEqual(len(rig.smsc.submits), 1)
        rig.advance(1.0)
        record = rig.record()
        self.assertEqual((record["state"], record["error"], record["attempts"]), (jobs.SUBMITTED, None, 2))
        self.assertEqual(len(rig.smsc.submits), 2)

    def test_refused_for_good_fails(self) -> None:
        """
        A permanent refusal fails the job with the status name; it is not retried.
        """
        rig = Rig(Scenario(fail_every=1, fail_status=p.Status.ESME_RINVDSTADR))
        rig.add()
        rig.start()
        rig.push("D1")
        rig.advance(100.0)
        record = rig.record()
        self.assertEqual((record["state"], record["error"]), (jobs.FAILED, "SMSC refused: ESME_RINVDSTADR"))
        self.assertEqual(len(rig.smsc.submits), 1)

    def test_outage(self) -> None:
        """
        While the SMSC is unreachable the job waits, queued, and the link says
        disconnected; once bound it goes out.
        """
        rig = Rig()
        rig.add()
        rig.start(connect=False)
        (info,) = rig.push("D1")
        rig.advance(120.0)
        self.assertEqual((rig.record()["state"], rig.notifier.link["state"]), (jobs.QUEUED, "disconnected"))
        rig.connect()
        self.assertEqual(rig.record()["state"], jobs.SUBMITTED)
        self.assertEqual(rig.notifier.link["state"], "bound")

    def test_link_state_follows_the_session(self) -> None:
        """
        A refused bind and a broken link are shown with their reason.
        """
        rig = Rig(Scenario(password="other"))
        rig.start()
        self.assertEqual(rig.notifier.link["detail"], "bind refused: ESME_RINVPASWD")
        self.assertEqual(rig.notifier.link["state"], "disconnected")
        self.assertEqual(rig.notifier.link["smsc"], "tcp:127.0.0.1:2775")

    def test_restart_resubmits_only_what_was_not_acknowledged(self) -> None:
        """
        A three-segment job: the SMSC acknowledges the first segment, then the
        daemon dies. The id was already in the store; a new daemon on the same
        store sends segments two and three only, and the job ends with all ids.
        """
        rig = Rig(Scenario(disconnect_after=2), window=1)
        rig.add(server_name=LONG_ID)
        rig.start()
        rig.push("D1")
        record = rig.record()
        self.assertEqual(len(record["segments"]), 3)
        self.assertEqual((record["state"], record["message_ids"]), (jobs.QUEUED, ("1", None, None)))
        first_run = [s.short_message for s in rig.smsc.submits]

        again = Rig(store=rig.store, window=1)
        for _ in range(10):
            next(again.smsc.counters.message_ids)  # another SMSC numbers on
        again.start()
        self.assertEqual(
            [s.short_message for s in again.smsc.submits],
            [segment for _, _, segment in record["segments"][1:]],
        )
        self.assertEqual(first_run[0], record["segments"][0][2])
        record = again.record()
        self.assertEqual((record["state"], record["message_ids"]), (jobs.SUBMITTED, ("1", "B", "C")))

    def test_stop_keeps_queued_jobs(self) -> None:
        """
        A job still waiting for the SMSC when the daemon stops stays queued
        and is sent by the next start.
        """
        rig = Rig()
        rig.add()
        rig.start(connect=False)
        rig.push("D1")
        rig.stop()
        self.assertEqual(rig.record()["state"], jobs.QUEUED)
        again = Rig(store=rig.store)
        again.start()
        self.assertEqual(len(again.smsc.submits), 1)
        self.assertEqual(again.record()["state"], jobs.SUBMITTED)

    def test_expiry(self) -> None:
        """
        Jobs not answered in time expire: one submitted, one still waiting for
        the SMSC (which then is never sent).
        """
        rig = Rig()
        rig.add("D1")
        rig.add("D2")
        rig.start()
        rig.push("D1")
        rig.disconnect()
        rig.push("D2")
        rig.advance(599.0)
        self.assertEqual((rig.record("D1")["state"], rig.record("D2")["state"]), (jobs.SUBMITTED, jobs.QUEUED))
        rig.advance(61.0)
        self.assertEqual((rig.record("D1")["state"], rig.record("D2")["state"]), (jobs.EXPIRED, jobs.EXPIRED))
        rig.connect()
        self.assertEqual(len(rig.smsc.submits), 1)

    def test_finished_jobs_forgotten(self) -> None:
        """
        Finished jobs are kept for keep_seconds, then forgotten by the hourly purge.
        """
        rig = Rig()
        rig.add()
        rig.start()
        rig.push("D1")
        rig.advance(660.0)
        assert rig.store.store is not None
        (info,) = rig.store.store.read(jobs.list_pushes)
        self.assertEqual(info.state, jobs.EXPIRED)
        rig.advance(3600.0)
        self.assertEqual(len(rig.store.store.read(jobs.list_pushes)), 1)
        rig.advance(3600.0)
        self.assertEqual(rig.store.store.read(jobs.list_pushes), [])

    def test_sweeps_in_batches(self) -> None:
        """
        Expiry and purge go a batch per transaction until nothing more is due.
        """
        self.patch(jobs, "SWEEP_BATCH", 1)
        rig = Rig()
        for device_id in ("D1", "D2", "D3"):
            rig.add(device_id)
        rig.start()
        rig.push("D1", "D2", "D3")
        rig.advance(660.0)
        assert rig.store.store is not None
        self.assertEqual({i.state for i in rig.store.store.read(jobs.list_pushes)}, {jobs.EXPIRED})
        rig.advance(7200.0)
        self.assertEqual(rig.store.store.read(jobs.list_pushes), [])

    def test_refusal_names_devices(self) -> None:
        """
        A push for a device without a number fails with NotPushable; nothing is sent.
        """
        rig = Rig()
        rig.add(msisdn="")
        rig.start()
        failure = rig.push("D1")
        self.assertIsInstance(failure.value, NotPushable)
        self.assertEqual(rig.smsc.submits, [])

    def test_status(self) -> None:
        """
        status() gives the link and the counts per state.
        """
        rig = Rig()
        rig.add()
        rig.start()
        rig.push("D1")
        status: list[Any] = []
        rig.notifier.status().addCallback(status.append)
        self.assertEqual(status[0]["link"]["state"], "bound")
        self.assertEqual(status[0]["counts"]["submitted"], 1)


class SpoolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.spool = os.path.abspath(self.mktemp())

    def test_file_per_job(self) -> None:
        """
        Without an SMSC a push is written to the spool as one JSON file: the
        destination with TON/NPI, the session id and each segment's esm_class,
        data_coding and hex; the job is submitted via the spool.
        """
        rig = Rig(scenario=None, spool_dir=self.spool)
        rig.add(server_name=LONG_ID)
        rig.start()
        self.assertEqual(rig.notifier.link, {"state": "not configured", "smsc": None, "spool_dir": self.spool})
        (info,) = rig.push("D1")
        self.assertEqual((info.state, info.via), (jobs.SUBMITTED, "spool"))
        self.assertEqual(os.listdir(self.spool), [os.path.basename(info.spool_file)])
        with open(info.spool_file) as f:
            document = json.load(f)
        self.assertEqual(document["format"], SPOOL_FORMAT)
        self.assertEqual(
            (document["device_id"], document["seq"], document["session_id"], document["msisdn"]),
            ("D1", 1, "1234", "+491701234567"),
        )
        self.assertEqual(document["destination"], {"address": "491701234567", "ton": 1, "npi": 1})
        record = rig.record()
        self.assertEqual(
            [(s["esm_class"], s["data_coding"], bytes.fromhex(s["short_message"])) for s in document["segments"]],
            [tuple(s) for s in record["segments"]],
        )
        self.assertEqual(len(document["segments"]), 3)
        package0 = parse_package0(
            parse_wsp_push(reassemble([bytes.fromhex(s["short_message"]) for s in document["segments"]])[2]).body
        )
        self.assertTrue(package0.verify(SERVER_SECRET, SERVER_NONCE))

    def test_queued_jobs_spooled_at_start(self) -> None:
        """
        A job left queued (the daemon died before writing it) is written at the
        next start, under the same stable name.
        """
        rig = Rig(scenario=None, spool_dir=self.spool)
        rig.add("odd/device id")
        assert rig.store.store is not None
        (job,) = rig.store.store.run(jobs.enqueue, ["odd/device id"], SETTINGS, 1.0)
        rig.start()
        record = rig.record("odd/device id")
        self.assertEqual(record["state"], jobs.SUBMITTED)
        self.assertEqual(record["spool_file"], os.path.join(self.spool, spool_name(job.ref)))
        self.assertTrue(spool_name(job.ref).startswith("push-odd_device_id-"))
        with open(record["spool_file"]) as f:
            self.assertEqual(json.load(f), spool_document(job))
        self.assertEqual([n for n in os.listdir(self.spool) if n.startswith(".")], [])

    def test_spool_unwritable(self) -> None:
        """
        A spool that cannot be written keeps the job queued with the reason,
        and it is written once the spool works again.
        """
        with open(self.spool, "w"):
            pass  # a file where the directory should be
        rig = Rig(scenario=None, spool_dir=self.spool)
        rig.add()
        rig.start()
        (info,) = rig.push("D1")
        self.assertEqual(info.state, jobs.QUEUED)
        self.assertIn("cannot write to the spool", info.error)
        os.unlink(self.spool)
        rig.advance(30.0)
        record = rig.record()
        self.assertEqual((record["state"], record["error"]), (jobs.SUBMITTED, None))
        self.assertTrue(os.path.exists(record["spool_file"]))


class BootstrapTests(SynchronousTestCase):
    """
    Bootstrap jobs through the notifier: queued, handed over, recorded like pushes.
    """

    def bootstrap(self, notifier: Notifier, device_id: str, pin: BootstrapPin) -> Any:
        results: list[Any] = []
        notifier.bootstrap(device_id, pin).addBoth(results.append)
        return results[0]

    def test_handed_to_the_transport(self) -> None:
        """
        A bootstrap hands one job of kind bootstrap to the transport and
        answers it queued; the log line names the PIN type and the number of
        SMS, never a USERPIN; the outcome is recorded as for a push.
        """
        rig = FakeRig()
        assert rig.store.store is not None
        rig.store.store.run(add_classic_device, "C1")
        rig.start()
        logged = logged_events(self)
        info = self.bootstrap(rig.notifier, "C1", BootstrapPin.user("55667788"))
        self.assertEqual((info.kind, info.state, info.session_id), (jobs.BOOTSTRAP, jobs.QUEUED, None))
        (job,) = rig.transport.sent
        self.assertEqual(job.ref, ("C1", 1))
        push = parse_bootstrap_push(reassemble([s.short_message for s in job.segments])[2])
        self.assertTrue(push.verify(b"55667788"))
        texts = [formatEvent(event) for event in logged]
        self.assertIn(f"bootstrap C1#1 queued: USERPIN, {info.segments} SMS to +491701234567", texts)
        self.assertFalse([t for t in texts if "55667788" in t])
        rig.transport.settle(job.ref, Sent(("m-1",), ("k-1",), detail="sent"))
        self.assertEqual((rig.record("C1")["state"], rig.record("C1")["kind"]), (jobs.SUBMITTED, jobs.BOOTSTRAP))

    def test_refused_and_unavailable(self) -> None:
        """
        A device that cannot be bootstrapped fails the Deferred with the
        reason and queues nothing; a notifier without a DM server cannot
        bootstrap at all.
        """
        rig = FakeRig()
        rig.add("W1")
        rig.start()
        failure = self.bootstrap(rig.notifier, "W1", BootstrapPin.network())
        self.assertTrue(failure.check(jobs.CannotBootstrap))
        self.assertEqual(rig.transport.sent, [])
        bare = Notifier(rig.store, SETTINGS, rig.clock, transport=FakePushTransport())
        self.assertTrue(self.bootstrap(bare, "W1", BootstrapPin.network()).check(BootstrapUnavailable))

    def test_through_the_smsc(self) -> None:
        """
        The fake SMSC receives the bootstrap's SMS for the device's number;
        reassembled, they are a NETWPIN push whose MAC verifies with the
        IMSI; its receipts deliver the job.
        """
        rig = Rig(Scenario(receipts=Receipts.TLV))
        assert rig.store.store is not None
        rig.store.store.run(add_classic_device, "C1")
        rig.start()
        results: list[Any] = []
        rig.notifier.bootstrap("C1", BootstrapPin.network()).addBoth(results.append)
        rig.flush()
        self.assertEqual(results[0].kind, jobs.BOOTSTRAP)
        submits = rig.smsc.submits
        self.assertGreater(len(submits), 1)
        self.assertEqual({(s.destination_addr, s.esm_class, s.data_coding) for s in submits}, {("491701234567", 0x40, 0x04)})
        push = parse_bootstrap_push(reassemble([s.short_message for s in submits])[2])
        self.assertEqual(push.sec, Sec.NETWPIN)
        self.assertTrue(push.verify(netwpin_key(IMSI)))
        record = rig.record("C1")
        self.assertEqual((record["state"], record["via"], len(record["message_ids"])), (jobs.DELIVERED, "smpp", len(submits)))

    def test_to_the_spool(self) -> None:
        """
        In the spool a bootstrap is a file like a push's, without a session id.
        """
        spool = os.path.abspath(self.mktemp())
        rig = Rig(scenario=None, spool_dir=spool)
        assert rig.store.store is not None
        rig.store.store.run(add_classic_device, "C1")
        rig.start()
        results: list[Any] = []
        rig.notifier.bootstrap("C1", BootstrapPin.network()).addBoth(results.append)
        (info,) = results
        self.assertEqual((info.state, info.via), (jobs.SUBMITTED, "spool"))
        with open(info.spool_file) as f:
            document = json.load(f)
        self.assertEqual((document["device_id"], document["seq"], document["session_id"]), ("C1", 1, None))
        segments = [bytes.fromhex(s["short_message"]) for s in document["segments"]]
        self.assertTrue(parse_bootstrap_push(reassemble(segments)[2]).verify(netwpin_key(IMSI)))


class RoutesRig:
    """
    A notifier with two fake transports: SMS and WNS.
    """

    URI = "https://db5p.notify.windows.com/w/?token=AwYAAAB"

    def __init__(self) -> None:
        from mdmd.notify.routes import PushRoutes, Route

        self.clock = Clock()
        self.sms = FakePushTransport("smpp")
        self.wns = FakePushTransport("wns")
        self.store = memory_store_service()
        self.notifier = Notifier(
            self.store,
            SETTINGS,
            self.clock,
            routes=PushRoutes({Route.SMS: self.sms, Route.WNS: self.wns}),
            retry_delay=30.0,
            random=fixed_random(0x1234, 0x2345, 0x3456),
        )

    def add(self, device_id: str = "D1", channel: bool = True, **kwargs: Any) -> None:
        from mdmd.notify.channels import Channel

        assert self.store.store is not None
        self.store.store.run(add_device, device_id, **kwargs)
        if channel:
            plain = Channel(uri=self.URI, status=0, since=0.0).as_plain()
            self.store.store.run(lambda root: setattr(root["devices"][device_id], "wns_channel", plain))

    def read(self, fn: Any, *args: Any) -> Any:
        assert self.store.store is not None
        return self.store.store.read(fn, *args)

    def start(self) -> None:
        self.notifier.startService()
        self.clock.advance(0)

    def push(self, *device_ids: str, via: Any = None) -> Any:
        from mdmd.notify.routes import Via

        results: list[Any] = []
        self.notifier.push(list(device_ids), via=via or Via.AUTO).addBoth(results.append)
        return results[0]


class RoutesTests(SynchronousTestCase):
    """
    The notifier with a transport per route: each job to its route's transport.
    """

    def test_each_job_to_its_route(self) -> None:
        """
        auto sends a device with a channel to WNS, one without to SMS; each
        job is submitted via its own transport's name, with what it said.
        """
        rig = RoutesRig()
        rig.add("W1")
        rig.add("S1", channel=False)
        rig.start()
        wns, sms = rig.push("W1", "S1")
        self.assertEqual(([j.ref for j in rig.wns.sent], [j.ref for j in rig.sms.sent]), ([("W1", 1)], [("S1", 1)]))
        self.assertEqual((wns.route, sms.route), ("wns", "sms"))
        rig.wns.settle(("W1", 1), Sent(("M1",), (None,), carrier=(("status", "received"),)))
        rig.sms.settle(("S1", 1), Sent(("m-1",), ("k-1",)))
        (w,) = rig.read(jobs.list_pushes, "W1")
        (s,) = rig.read(jobs.list_pushes, "S1")
        self.assertEqual((w.state, w.via, w.message_ids, w.carrier), (jobs.SUBMITTED, "wns", ("M1",), (("status", "received"),)))
        self.assertEqual((s.state, s.via), (jobs.SUBMITTED, "smpp"))

    def test_both(self) -> None:
        """
        Asked for both, a device gets one job on each route.
        """
        from mdmd.notify.routes import Via

        rig = RoutesRig()
        rig.add()
        rig.start()
        created = rig.push("D1", via=Via.BOTH)
        self.assertEqual(sorted(j.route for j in created), ["sms", "wns"])
        self.assertEqual((len(rig.wns.sent), len(rig.sms.sent)), (1, 1))

    def test_gone_falls_back_to_sms(self) -> None:
        """
        A WNS job whose channel is gone fails, and an SMS job that names it
        takes its place at once.
        """
        rig = RoutesRig()
        rig.add()
        rig.start()
        rig.push("D1")
        rig.wns.settle(("D1", 1), Refused("WNS answered 410: gone", retry=False, reroute=True))
        first, second = rig.read(jobs.list_pushes, "D1")
        self.assertEqual((first.state, first.error), (jobs.FAILED, "WNS answered 410: gone"))
        self.assertEqual((second.route, second.fallback_of, second.state), ("sms", 1, jobs.QUEUED))
        self.assertEqual([j.ref for j in rig.sms.sent], [("D1", 2)])

    def test_no_fallback_without_a_number(self) -> None:
        """
        Without an MSISDN the device cannot be reached otherwise: the job just fails.
        """
        rig = RoutesRig()
        rig.add(msisdn="")
        rig.start()
        rig.push("D1")
        rig.wns.settle(("D1", 1), Refused("WNS answered 410: gone", retry=False, reroute=True))
        (only,) = rig.read(jobs.list_pushes, "D1")
        self.assertEqual(only.state, jobs.FAILED)
        self.assertEqual(rig.sms.sent, [])

    def test_resumed_by_route(self) -> None:
        """
        Jobs left queued go back to their own route's transport at the next start.
        """
        rig = RoutesRig()
        rig.add("W1")
        rig.add("S1", channel=False)
        rig.start()
        rig.push("W1", "S1")
        rig.notifier.stopService()
        restarted = RoutesRig()
        restarted.store = rig.store
        restarted.notifier.store = rig.store
        restarted.start()
        self.assertEqual(([j.ref for j in restarted.wns.sent], [j.ref for j in restarted.sms.sent]), ([("W1", 1)], [("S1", 1)]))

    def test_status_has_every_link(self) -> None:
        """
        status() gives the SMS link as before and every route's link.
        """
        rig = RoutesRig()
        rig.start()
        status: list[Any] = []
        rig.notifier.status().addCallback(status.append)
        self.assertEqual(set(status[0]["links"]), {"sms", "wns"})
        self.assertEqual(status[0]["link"], rig.sms.describe())
