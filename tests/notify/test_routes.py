"""
Tests for L{mdmd.notify.routes}: the selection table, and the unit of work
that queues a push's jobs by route, on a real store in memory.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd.notify import jobs, routes
from mdmd.notify.channels import Channel
from mdmd.notify.jobs import NotPushable, PushSettings
from mdmd.notify.routes import InvalidVia, PushRoutes, Reach, Route, Via, choose, parse_via
from mdmd.testing.devices import add_device
from mdmd.testing.push import FakePushTransport
from mdmd.testing.randomness import fixed_random
from mdmd.testing.store import memory_store_service

URI = "https://db5p.notify.windows.com/w/?token=AwYAAAB"
BOTH = frozenset({Route.SMS, Route.WNS})


class ChooseTests(SynchronousTestCase):
    def test_table(self) -> None:
        """
        auto: WNS if it reaches the device, else SMS; wns and sms: only that
        route; both: every route that reaches it; routes not configured are
        never chosen.
        """
        everything = Reach({Route.WNS: None, Route.SMS: None})
        only_sms = Reach({Route.WNS: "has no WNS channel yet", Route.SMS: None})
        only_wns = Reach({Route.WNS: None, Route.SMS: "has no MSISDN"})
        no_wns = Reach({Route.SMS: None})
        cases = [
            (Via.AUTO, everything, (Route.WNS,)),
            (Via.AUTO, only_sms, (Route.SMS,)),
            (Via.AUTO, only_wns, (Route.WNS,)),
            (Via.AUTO, no_wns, (Route.SMS,)),
            (Via.WNS, only_sms, ()),
            (Via.WNS, no_wns, ()),
            (Via.SMS, only_wns, ()),
            (Via.SMS, everything, (Route.SMS,)),
            (Via.BOTH, everything, (Route.WNS, Route.SMS)),
            (Via.BOTH, only_sms, (Route.SMS,)),
        ]
        for via, reach, expected in cases:
            self.assertEqual(choose(via, reach), expected, (via, reach))

    def test_parse_via(self) -> None:
        """
        auto, wns, sms, both in any case; None is auto; anything else is the peer's mistake.
        """
        self.assertEqual([parse_via(t) for t in (None, "WNS", " sms ", "both")], [Via.AUTO, Via.WNS, Via.SMS, Via.BOTH])
        with self.assertRaises(InvalidVia) as caught:
            parse_via("pigeon")
        self.assertEqual(caught.exception.http_status, 400)

    def test_push_routes(self) -> None:
        """
        A job's route names its transport (a job from before routes is an
        SMS job); SMS is always there.
        """
        sms, wns = FakePushTransport("smpp"), FakePushTransport("wns")
        pushing = PushRoutes({Route.SMS: sms, Route.WNS: wns})
        self.assertEqual((pushing.transport_for("wns"), pushing.transport_for("sms"), pushing.transport_for("")), (wns, sms, sms))
        self.assertEqual(pushing.configured, BOTH)
        self.assertEqual(set(pushing.describe()), {"sms", "wns"})
        with self.assertRaises(ValueError):
            PushRoutes({Route.WNS: wns})


def with_channel(root: Any, device_id: str, **values: Any) -> None:
    root["devices"][device_id].wns_channel = Channel(**{"uri": URI, "status": 0, "since": 0.0, **values}).as_plain()


class EnqueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store
        self.store.run(add_device, "W1")
        self.store.run(with_channel, "W1")
        self.store.run(add_device, "S1")
        self.store.run(add_device, "N1", msisdn="")

    def enqueue(self, *ids: str, via: Via = Via.AUTO, configured: frozenset[Route] = BOTH, **kwargs: Any) -> Any:
        return self.store.run(
            routes.enqueue, list(ids), PushSettings(), 10.0, fixed_random(0x1234, 0x2345, 0x3456),
            via=via, routes=configured, **kwargs,
        )

    def test_auto(self) -> None:
        """
        auto sends a device with a usable channel by WNS (a job of one part to
        its channel, no segments), one without by SMS, in the order asked.
        """
        wns, sms = self.enqueue("W1", "S1")
        self.assertEqual((wns.info.device_id, wns.info.route, wns.info.channel_uri, wns.segments), ("W1", "wns", URI, ()))
        self.assertEqual((wns.info.message_ids, wns.info.msisdn, wns.info.session_id), ((None,), "", None))
        self.assertEqual((sms.info.device_id, sms.info.route, len(sms.segments)), ("S1", "sms", 1))

    def test_both(self) -> None:
        """
        both makes a WNS job and an SMS job for a device that has both.
        """
        created = self.enqueue("W1", via=Via.BOTH)
        self.assertEqual([(j.info.seq, j.info.route) for j in created], [(1, "sms"), (2, "wns")])

    def test_not_pushable(self) -> None:
        """
        Every device that cannot be woken as asked is named with why; then nothing is queued.
        """
        with self.assertRaises(NotPushable) as caught:
            self.enqueue("W1", "S1", "N1", "NOPE", via=Via.WNS)
        self.assertEqual(
            str(caught.exception),
            "device S1 has no WNS channel yet (it is read in the device's next DM session); "
            "device N1 has no WNS channel yet (it is read in the device's next DM session); no device 'NOPE'",
        )
        with self.assertRaises(NotPushable) as caught:
            self.enqueue("N1")
        self.assertEqual(
            str(caught.exception),
            "device N1 has no WNS channel yet (it is read in the device's next DM session) and has no MSISDN "
            "(mdmctl device set N1 --msisdn +...)",
        )
        self.assertEqual(self.store.read(jobs.list_pushes), [])

    def test_without_wns(self) -> None:
        """
        Without WNS configured, a push is as it always was: SMS, and the same
        words for a device without a number; asking for WNS says it is not configured.
        """
        (job,) = self.enqueue("W1", configured=frozenset({Route.SMS}))
        self.assertEqual(job.info.route, "sms")
        with self.assertRaises(NotPushable) as caught:
            self.enqueue("N1", configured=frozenset({Route.SMS}))
        self.assertEqual(str(caught.exception), "device N1 has no MSISDN (mdmctl device set N1 --msisdn +...)")
        with self.assertRaises(NotPushable) as caught:
            self.enqueue("W1", via=Via.WNS, configured=frozenset({Route.SMS}))
        self.assertEqual(str(caught.exception), "device W1 cannot be woken by wns: it is not configured")

    def test_sms_problems_are_jobs(self) -> None:
        """
        What only the SMS jobs check (the DM server credential) is reported in their words.
        """
        self.store.run(lambda root: setattr(root["devices"]["S1"], "dm_server_secret", ""))
        with self.assertRaises(NotPushable) as caught:
            self.enqueue("S1", "W1")
        self.assertEqual(str(caught.exception), "device S1 has no DM server credentials")
        self.assertEqual(self.store.read(jobs.list_pushes), [])

    def test_unusable_channels(self) -> None:
        """
        A channel WNS reported gone, or one not on a WNS host, sends auto by
        SMS; configured hosts are honoured.
        """
        self.store.run(with_channel, "W1", expired_at=5.0)
        (job,) = self.enqueue("W1")
        self.assertEqual(job.info.route, "sms")
        self.store.run(with_channel, "S1", uri="https://127.0.0.1:9443/w/?token=x")
        (job,) = self.enqueue("S1")
        self.assertEqual(job.info.route, "sms")
        (job,) = self.enqueue("S1", hosts=("127.0.0.1",))
        self.assertEqual(job.info.route, "wns")

    def test_not_windows(self) -> None:
        """
        A classic OMA DM device is never woken by WNS.
        """
        self.store.run(lambda root: setattr(root["devices"]["W1"], "kind", "omadm"))
        with self.assertRaises(NotPushable) as caught:
            self.enqueue("W1", via=Via.WNS)
        self.assertIn("is not a Windows device", str(caught.exception))

    def test_fallback_recorded(self) -> None:
        """
        A job made as a fall-back names the job it replaces.
        """
        (job,) = self.enqueue("S1", via=Via.SMS, fallback_of=7)
        self.assertEqual(job.info.fallback_of, 7)
        (stored,) = self.store.read(jobs.list_pushes, "S1")
        self.assertEqual(stored.fallback_of, 7)
