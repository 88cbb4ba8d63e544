"""
Tests for L{mdmd.dm.sweeper}: stale DM sessions found through the deadline index.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm import queue as dm_queue
from mdmd.dm import sweeper
from mdmd.dm.checkin import DMSettings
from mdmd.dm.commands import parse_spec
from mdmd.dm.state import SessionState
from mdmd.dm.sweeper import DMService, expire_sessions
from mdmd.store import due
from mdmd.store.models import DMSession
from mdmd.testing.devices import add_device
from mdmd.testing.store import memory_store_service

from ..store.helpers import Tripwire

TIMEOUT = 600.0


def open_session(root: Any, device_id: str, started: float, filed: float | None = None) -> None:
    """
    A unit of work: a session begun at C{started} (deadline C{started +
    TIMEOUT}), filed at C{filed} (its deadline by default), as a check-in files it.
    """
    state = SessionState.start("1", started, TIMEOUT)
    record = root["sessions"][device_id] = DMSession(state.to_dict())
    due.keep_filed(root["session_deadlines"], record, state.deadline if filed is None else filed, device_id)


def trap(root: Any, device_id: str, deadline: float) -> None:
    """
    A unit of work: a session that must not be read, filed at C{deadline}.
    """
    root["sessions"][device_id] = Tripwire()
    due.file(root["session_deadlines"], deadline, device_id)


def sent_command(root: Any, device_id: str) -> None:
    """
    A unit of work: one command of the device's queue, sent and not answered.
    """
    (info,) = dm_queue.enqueue(root, [device_id], parse_spec({"verb": "Get", "target": "./DevInfo/Man"}), 0.0)
    dm_queue.mark_sent(root, dm_queue.queue_of(root, device_id), info.seq, ("1", "1", "2"), 1.0)


class ExpireSessionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.service = memory_store_service()
        self.addCleanup(self.service.stopService)
        assert self.service.store is not None
        self.store = self.service.store

    def sessions(self) -> list[str]:
        return self.store.read(lambda root: sorted(root["sessions"].keys()))

    def entries(self) -> list[tuple[Any, ...]]:
        return self.store.read(lambda root: list(root["session_deadlines"]))

    def test_only_due_sessions_read(self) -> None:
        """
        Sessions past their deadline are dropped and their unanswered
        commands requeued; sessions not due are never read (loading one
        would fail), however many there are.
        """
        self.store.run(add_device, "D1")
        self.store.run(open_session, "D1", 0.0)
        self.store.run(sent_command, "D1")
        for n in range(50):
            self.store.run(trap, f"LATER-{n:02}", 5000.0 + n)
        self.store.db.cacheMinimize()
        swept = self.store.run(expire_sessions, 700.0)
        self.assertEqual((swept.dropped, swept.requeued, swept.cursor), (1, 1, None))
        self.assertEqual(len(self.sessions()), 50)
        self.assertNotIn("D1", self.sessions())
        self.assertEqual(len(self.entries()), 50)

    def test_batches_bounded(self) -> None:
        """
        A batch takes at most its limit of entries, and says where the next starts.
        """
        for n in range(5):
            self.store.run(open_session, f"D{n}", float(n))
        dropped = []
        cursor = None
        while True:
            swept = self.store.run(expire_sessions, 700.0, 2, cursor)
            dropped.append(swept.dropped)
            if swept.cursor is None:
                break
            cursor = swept.cursor
        self.assertEqual(dropped, [2, 2, 1])
        self.assertEqual(self.sessions(), [])

    def test_stale_entries_tolerated(self) -> None:
        """
        An entry earlier than its session's deadline (the deadline moved on)
        is moved there, the session kept; an entry whose session is gone, or
        is filed elsewhere, is dropped.
        """
        self.store.run(open_session, "MOVED-ON", 1000.0, filed=600.0)
        self.store.run(open_session, "ELSEWHERE", 0.0, filed=5000.0)
        self.store.run(lambda root: root["session_deadlines"].add((1, "ELSEWHERE")))
        self.store.run(lambda root: root["session_deadlines"].add((1, "GONE")))
        swept = self.store.run(expire_sessions, 700.0)
        self.assertEqual(swept.dropped, 0)
        self.assertEqual(self.sessions(), ["ELSEWHERE", "MOVED-ON"])
        slot = due.slot_of(1600.0)
        self.assertEqual(self.entries(), [(slot, "MOVED-ON"), (due.slot_of(5000.0), "ELSEWHERE")])
        self.assertEqual(self.store.read(lambda root: root["sessions"]["MOVED-ON"].due_slot), slot)
        self.assertEqual(self.store.run(expire_sessions, 1601.0).dropped, 1)
        self.assertEqual(self.sessions(), ["ELSEWHERE"])

    def test_not_yet_due_in_this_minute(self) -> None:
        """
        A session whose deadline is later in the current minute stays, and its entry too.
        """
        self.store.run(open_session, "D1", 130.0)
        self.assertEqual(self.store.run(expire_sessions, 720.0).dropped, 0)
        self.assertEqual(self.entries(), [(13, "D1")])
        self.assertEqual(self.store.run(expire_sessions, 731.0).dropped, 1)

    def test_index_built_for_an_older_store(self) -> None:
        """
        A session filed "due at once" when the index was built (no slot of
        its own yet) is moved to its deadline, then filed there.
        """
        self.store.run(lambda root: root["sessions"].__setitem__("OLD", DMSession(SessionState.start("1", 500.0, TIMEOUT).to_dict())))
        self.store.run(lambda root: root["session_deadlines"].add((0, "OLD")))
        self.assertEqual(self.store.run(expire_sessions, 700.0).dropped, 0)
        self.assertEqual(self.entries(), [(due.slot_of(1100.0), "OLD")])
        self.assertEqual(self.store.read(lambda root: root["sessions"]["OLD"].due_slot), due.slot_of(1100.0))


class DMServiceTests(SynchronousTestCase):
    def test_sweep_in_batches(self) -> None:
        """
        Every ten minutes the service sweeps, a batch per transaction, until nothing more is due.
        """
        self.patch(sweeper, "SWEEP_BATCH", 1)
        store = memory_store_service()
        self.addCleanup(store.stopService)
        assert store.store is not None
        for n in range(3):
            store.store.run(open_session, f"D{n}", -100.0)
        calls = []
        transact = store.transact

        def counting(fn: Any, *args: Any) -> Any:
            calls.append(args)
            return transact(fn, *args)

        self.patch(store, "transact", counting)
        clock = Clock()
        service = DMService(DMSettings(), store, clock)
        service.startService()
        self.addCleanup(service.stopService)
        clock.advance(sweeper.SWEEP_INTERVAL)
        self.assertEqual(store.store.read(lambda root: len(root["sessions"])), 0)
        self.assertEqual(len(calls), 4)
        self.assertEqual([limit for _, limit, _ in calls], [1, 1, 1, 1])
