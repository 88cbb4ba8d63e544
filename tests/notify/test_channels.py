"""
Tests for L{mdmd.notify.channels}: each Windows device's WNS channel, on a
real store in memory.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm import queue as dm_queue
from mdmd.notify import channels
from mdmd.notify.channels import CHANNEL_LIFETIME, Channel, ChannelSettings
from mdmd.testing.devices import add_device
from mdmd.testing.store import memory_store_service

PFN = "Contoso.MDMPush_8wekyb3d8bbwe"
SETTINGS = ChannelSettings(pfn=PFN, provider_id="MS DM Server", refresh=7 * 86400.0)
BASE = "./Vendor/MSFT/DMClient/Provider/MS%20DM%20Server/Push/"
URI = "https://db5p.notify.windows.com/w/?token=AwYAAAB"
DAY = 86400.0


def channel(root: Any, device_id: str = "D1") -> Channel:
    return channels.channel_of(root["devices"][device_id])


def set_channel(root: Any, device_id: str = "D1", **values: Any) -> None:
    root["devices"][device_id].wns_channel = Channel(**values).as_plain()


def plan(root: Any, now: float, device_id: str = "D1") -> list[str]:
    device = root["devices"][device_id]
    return channels.plan(root, device, dm_queue.queue_of(root, device_id), SETTINGS, now)


def pending(root: Any, device_id: str = "D1") -> list[tuple[str, str, str | None]]:
    return [
        (c.spec["verb"], c.spec["items"][0]["target"], c.spec["items"][0].get("data"))
        for c in dm_queue.pending_commands(dm_queue.queue_of(root, device_id))
    ]


def answer(root: Any, seq: int, state: str, status: int, results: tuple[dict[str, Any], ...], now: float) -> bool:
    device = root["devices"]["D1"]
    spec = dm_queue.queue_of(root, "D1").commands[seq].spec
    return channels.record_answer(device, spec, state, status, results, now)


class PlanTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store
        self.store.run(add_device, "D1", server_id="MS DM Server")

    def test_first_session(self) -> None:
        """
        A device without the PFN gets a Replace of Push/PFN, then Gets of
        ChannelURI and Status (our provider id percent-encoded); a second new
        session queues nothing while they are pending.
        """
        queued = self.store.run(plan, 100.0)
        self.assertEqual(queued, [BASE + "PFN", BASE + "ChannelURI", BASE + "Status"])
        self.assertEqual(
            self.store.read(pending),
            [("Replace", BASE + "PFN", PFN), ("Get", BASE + "ChannelURI", None), ("Get", BASE + "Status", None)],
        )
        self.assertEqual(self.store.run(plan, 200.0), [])
        self.assertEqual((self.store.read(channel).pfn_at, self.store.read(channel).asked_at), (100.0, 100.0))

    def test_pfn_from_the_enrollment(self) -> None:
        """
        A device whose provisioning document set the PFN only gets the reads.
        """

        def enrolled(root: Any) -> None:
            channels.provisioned(root["devices"]["D1"], PFN, 50.0)

        self.store.run(enrolled)
        self.assertEqual(self.store.run(plan, 100.0), [BASE + "ChannelURI", BASE + "Status"])
        self.assertEqual((self.store.read(channel).pfn, self.store.read(channel).pfn_via), (PFN, "enrollment"))

    def test_refresh(self) -> None:
        """
        Reads are queued again once the refresh interval has passed since the
        last ones were queued; a changed PFN is set again at once.
        """
        self.store.run(set_channel, pfn=PFN, pfn_at=0.0, provider="MS DM Server", uri=URI, status=0, asked_at=0.0)
        self.assertEqual(self.store.run(plan, 7 * DAY - 1), [])
        self.assertEqual(self.store.run(plan, 7 * DAY), [BASE + "ChannelURI", BASE + "Status"])
        self.store.run(set_channel, pfn="Old.Push_1", pfn_at=7 * DAY, provider="MS DM Server", asked_at=7 * DAY)
        self.assertEqual(self.store.run(plan, 7 * DAY + 10), [BASE + "PFN"])

    def test_refused_pfn_asked_again_later(self) -> None:
        """
        A PFN the device refused is asked for again only after the refresh interval.
        """
        self.store.run(set_channel, pfn_error="the device answered 405", pfn_at=0.0, provider="MS DM Server", asked_at=0.0)
        self.assertEqual(self.store.run(plan, DAY), [])
        self.assertIn(BASE + "PFN", self.store.run(plan, 7 * DAY))

    def test_gone_channel_read_every_session(self) -> None:
        """
        While WNS says the channel is gone, every new session reads it again
        (once the earlier reads are answered).
        """
        self.store.run(set_channel, pfn=PFN, provider="MS DM Server", uri=URI, asked_at=100.0, expired_at=50.0)
        self.assertEqual(self.store.run(plan, 200.0), [BASE + "ChannelURI", BASE + "Status"])

    def test_only_windows(self) -> None:
        """
        A classic OMA DM device has no DMClient CSP: nothing is queued.
        """
        self.store.run(lambda root: setattr(root["devices"]["D1"], "kind", "omadm"))
        self.assertEqual(self.store.run(plan, 100.0), [])

    def test_device_server_id(self) -> None:
        """
        A device is asked under its own server id; one without, under the configured provider id.
        """
        self.store.run(lambda root: setattr(root["devices"]["D1"], "dm_server_id", "Contoso"))
        self.assertIn("./Vendor/MSFT/DMClient/Provider/Contoso/Push/ChannelURI", self.store.run(plan, 1.0))
        self.store.run(add_device, "D2", server_id="")
        self.assertIn(BASE + "ChannelURI", self.store.run(plan, 1.0, "D2"))


class AnswerTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store
        self.store.run(add_device, "D1", server_id="MS DM Server")
        self.store.run(plan, 100.0)  # 1 Replace PFN, 2 Get ChannelURI, 3 Get Status

    def test_channel_read(self) -> None:
        """
        The PFN taken, the ChannelURI and Status results are kept, with when
        the URI was read and first seen.
        """
        self.assertTrue(self.store.run(answer, 1, "done", 200, (), 110.0))
        results = ({"source": BASE + "ChannelURI", "data": URI},)
        self.assertTrue(self.store.run(answer, 2, "done", 200, results, 111.0))
        self.assertTrue(self.store.run(answer, 3, "done", 200, ({"source": BASE + "Status", "data": "0"},), 111.0))
        found = self.store.read(channel)
        self.assertEqual(
            (found.pfn, found.pfn_via, found.uri, found.status, found.read_at, found.since),
            (PFN, "session", URI, 0, 111.0, 111.0),
        )
        self.assertIsNone(self.store.read(lambda root: channels.problem(channel(root), 112.0)))
        self.assertTrue(self.store.run(answer, 2, "done", 200, results, 200.0))
        self.assertEqual((self.store.read(channel).read_at, self.store.read(channel).since), (200.0, 111.0))

    def test_pfn_refused(self) -> None:
        """
        A Replace of the PFN the device refuses is kept as the PFN's error.
        """
        self.store.run(answer, 1, "failed", 405, (), 110.0)
        found = self.store.read(channel)
        self.assertEqual((found.pfn, found.pfn_error), ("", "the device answered 405"))

    def test_new_uri_after_gone(self) -> None:
        """
        A channel WNS said is gone stays unusable until the device reports another URI.
        """
        self.store.run(answer, 2, "done", 200, ({"source": BASE + "ChannelURI", "data": URI},), 110.0)
        self.assertTrue(self.store.run(channels.mark_gone, "D1", URI, 120.0))
        self.assertFalse(self.store.run(channels.mark_gone, "D1", URI, 130.0))
        self.assertIn("reported gone", self.store.read(lambda root: channels.problem(channel(root), 121.0)))
        self.store.run(answer, 2, "done", 200, ({"source": BASE + "ChannelURI", "data": URI},), 140.0)
        self.assertEqual(self.store.read(channel).expired_at, 120.0)
        self.store.run(answer, 2, "done", 200, ({"source": BASE + "ChannelURI", "data": URI + "2"},), 150.0)
        found = self.store.read(channel)
        self.assertEqual((found.uri, found.since, found.expired_at), (URI + "2", 150.0, None))

    def test_other_nodes_and_providers(self) -> None:
        """
        Results of other nodes, or of another provider's Push node, say nothing of our channel.
        """
        other = "./Device/Vendor/MSFT/DMClient/Provider/Intune/Push/ChannelURI"
        self.assertFalse(self.store.run(answer, 2, "done", 200, ({"source": other, "data": "https://x"},), 110.0))
        self.assertFalse(self.store.run(answer, 2, "done", 200, ({"source": "./DevDetail/SwV", "data": "10"},), 110.0))
        device_form = "./Device/Vendor/MSFT/DMClient/Provider/MS%20DM%20Server/Push/ChannelURI"
        self.assertTrue(self.store.run(answer, 2, "done", 200, ({"source": device_form, "data": URI},), 110.0))


class ProblemTests(SynchronousTestCase):
    def test_reasons(self) -> None:
        """
        A channel is usable only with a URI on a WNS host, no failed status,
        not reported gone, younger than 30 days.
        """
        usable = Channel(uri=URI, status=0, since=0.0)
        self.assertIsNone(channels.problem(usable, 10.0))
        cases = [
            (Channel(), "has no WNS channel yet"),
            (Channel(status=1), "Push/Status 1: invalid PFN"),
            (Channel(uri=URI, status=5, since=0.0), "Push/Status 5: the channel URI has expired"),
            (Channel(uri=URI, since=0.0, expired_at=5.0), "reported gone"),
            (Channel(uri=URI, since=0.0), None),
            (Channel(uri="https://evil.example/w/?token=1", since=0.0), "not a WNS host"),
            (Channel(uri="http://db5p.notify.windows.com/w", since=0.0), "not a WNS host"),
        ]
        for found, reason in cases:
            problem = channels.problem(found, 10.0)
            if reason is None:
                self.assertIsNone(problem)
            else:
                self.assertIn(reason, problem or "")
        self.assertIn("older than 30 days", channels.problem(usable, CHANNEL_LIFETIME) or "")
        self.assertIsNone(channels.problem(Channel(uri="https://127.0.0.1/w", since=0.0), 1.0, hosts=("127.0.0.1",)))

    def test_facts(self) -> None:
        """
        What mdmctl device show reads: the channel, its status's meaning, age, expiry and problem.
        """
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        service.store.run(add_device, "D1")
        service.store.run(set_channel, uri=URI, status=5, since=100.0, read_at=100.0)
        facts = service.store.read(channels.channel_facts, "D1", 100.0 + DAY)
        assert facts is not None
        self.assertEqual(
            (facts["uri"], facts["status_meaning"], facts["age_seconds"], facts["expires_at"]),
            (URI, "the channel URI has expired", DAY, 100.0 + CHANNEL_LIFETIME),
        )
        self.assertIn("failed WNS channel", facts["problem"])
        self.assertIsNone(service.store.read(channels.channel_facts, "NOPE", 0.0))
