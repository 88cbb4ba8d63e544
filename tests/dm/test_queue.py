"""
Tests for L{mdmd.dm.queue}: the per-device queue in the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.trial.unittest import SynchronousTestCase

from mdmd.devices.lifecycle import DeviceStatus
from mdmd.dm import queue as q
from mdmd.dm.command_state import CommandState, IllegalCommandMove
from mdmd.dm.commands import parse_spec
from mdmd.errors import Conflict
from mdmd.store.models import CommandQueue, Device
from mdmd.store.paging import PageRequest
from mdmd.store.runner import Root
from mdmd.testing.store import memory_store_service

T = TypeVar("T")

GET = parse_spec({"verb": "Get", "target": "./DevDetail/SwV"})


class QueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store

        def devices(root: Root) -> None:
            for name in ("A", "B"):
                device = Device(name, 1.0)
                device.status = DeviceStatus.ENROLLED.value
                root["devices"][name] = device
            gone = Device("GONE", 1.0)
            gone.status = DeviceStatus.REMOVED.value
            root["devices"]["GONE"] = gone

        self.store.run(devices)

    def unit(self, fn: Callable[..., T], *args: Any) -> T:
        return self.store.run(fn, *args)

    def test_sequence_numbers_per_device(self) -> None:
        """
        Each device numbers its commands 1, 2, 3...; one call may queue for several devices.
        """
        first = self.unit(q.enqueue, ["A", "B"], GET, 10.0)
        second = self.unit(q.enqueue, ["A"], GET, 11.0)
        self.assertEqual([(c.device_id, c.seq) for c in first + second], [("A", 1), ("B", 1), ("A", 2)])
        self.assertEqual([c.state for c in self.unit(q.list_commands, "A")], ["queued", "queued"])

    def test_unknown_or_removed_device(self) -> None:
        """
        Nothing is queued when any device is unknown or no longer enrolled.
        """
        self.assertRaises(q.NotManageable, self.unit, q.enqueue, ["A", "NOPE"], GET, 1.0)
        self.assertRaises(q.NotManageable, self.unit, q.enqueue, ["GONE"], GET, 1.0)
        self.assertEqual(self.unit(q.list_commands, "A"), [])

    def test_cancel(self) -> None:
        """
        Only queued commands can be cancelled; cancelled ones leave the pending index.
        """
        self.unit(q.enqueue, ["A"], GET, 1.0)
        cancelled = self.unit(q.cancel, "A", 1, 2.0)
        self.assertEqual(cancelled.state, "cancelled")
        self.assertRaises(q.CommandNotCancellable, self.unit, q.cancel, "A", 1, 3.0)
        self.assertRaises(q.UnknownCommand, self.unit, q.cancel, "A", 9, 3.0)
        self.assertEqual(self.unit(q.list_commands, "A", ("queued", "sent")), [])

    def test_requeue_and_give_up(self) -> None:
        """
        A command sent in a session that ended unanswered is queued again, and fails after MAX_ATTEMPTS.
        """
        self.unit(q.enqueue, ["A"], GET, 1.0)

        def send_and_lose(root: Root) -> list[int]:
            queue = q.queue_of(root, "A")
            q.mark_sent(root, queue, 1, ("S@1", "1", "2"), 2.0)
            return q.requeue_unanswered(root, queue, 3.0)

        for attempt in range(q.MAX_ATTEMPTS):
            self.assertEqual(self.unit(send_and_lose), [1])
        (command,) = self.unit(q.list_commands, "A")
        self.assertEqual((command.state, command.attempts), ("failed", q.MAX_ATTEMPTS))
        self.assertIn("no answer after", command.error)
        self.assertEqual(self.unit(lambda root: list(q.queue_of(root, "A").pending)), [])

    def test_answered_results_kept(self) -> None:
        """
        Statuses and results are kept on the command; finished commands are listed as results.
        """
        self.unit(q.enqueue, ["A"], GET, 1.0)

        def answer(root: Root) -> None:
            queue = q.queue_of(root, "A")
            q.mark_sent(root, queue, 1, ("S@1", "1", "2"), 2.0)
            q.mark_answered(root, queue, 1, "done", 200, (("", 200),), ({"source": "./DevDetail/SwV", "data": "1.0"},), 3.0)

        self.unit(answer)
        (done,) = self.unit(q.list_commands, "A", q.FINISHED)
        self.assertEqual((done.status, done.results[0]["data"], done.sent_in), (200, "1.0", ("S@1", "1", "2")))
        self.assertEqual(done.as_json()["sent_in"], {"session_id": "S@1", "msg_id": "1", "cmd_id": "2"})
        self.assertEqual(self.unit(q.list_commands, "A", ("queued", "sent")), [])

    def test_cancel_sent_is_a_conflict(self) -> None:
        """
        Cancelling a command already sent is the operator's conflict (409), not our bug.
        """
        self.unit(q.enqueue, ["A"], GET, 1.0)
        self.unit(lambda root: q.mark_sent(root, q.queue_of(root, "A"), 1, ("S@1", "1", "2"), 2.0))
        with self.assertRaises(q.CommandNotCancellable) as caught:
            self.unit(q.cancel, "A", 1, 3.0)
        self.assertIsInstance(caught.exception, Conflict)
        self.assertEqual(caught.exception.http_status, 409)
        self.assertIn("is sent; only queued commands can be cancelled", str(caught.exception))

    def test_illegal_moves_raise(self) -> None:
        """
        A change the table forbids (answering a queued command, sending a sent
        one, failing a done one) raises IllegalCommandMove and the unit changes nothing.
        """
        self.unit(q.enqueue, ["A"], GET, 1.0)

        def queue(root: Root) -> CommandQueue:
            return q.queue_of(root, "A")

        self.assertRaises(
            IllegalCommandMove, self.unit, lambda root: q.mark_answered(root, queue(root), 1, "done", 200, (), (), 2.0)
        )
        self.unit(lambda root: q.mark_sent(root, queue(root), 1, ("S@1", "1", "2"), 2.0))
        self.assertRaises(IllegalCommandMove, self.unit, lambda root: q.mark_sent(root, queue(root), 1, ("S@1", "1", "3"), 3.0))
        self.unit(lambda root: q.mark_answered(root, queue(root), 1, "done", 200, (), (), 4.0))
        self.assertRaises(IllegalCommandMove, self.unit, lambda root: q.mark_failed(root, queue(root), 1, "late", 5.0))
        (command,) = self.unit(q.list_commands, "A")
        self.assertEqual((command.state, command.attempts, command.sent_in, command.error), ("done", 1, ("S@1", "1", "2"), None))

    def test_failed_before_sending(self) -> None:
        """
        A command that cannot be sent at all fails from the queue and leaves the pending index.
        """
        self.unit(q.enqueue, ["A"], GET, 1.0)
        self.unit(lambda root: q.mark_failed(root, q.queue_of(root, "A"), 1, "too large", 2.0))
        (command,) = self.unit(q.list_commands, "A", q.FINISHED)
        self.assertEqual((command.state, command.error, command.attempts), ("failed", "too large", 0))
        self.assertEqual(self.unit(lambda root: list(q.queue_of(root, "A").pending)), [])


class IssueTwelveQueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store

        def devices(root: Root) -> None:
            device = Device("A", 1.0)
            device.status = DeviceStatus.ENROLLED.value
            root["devices"]["A"] = device

        self.store.run(devices)

    def unit(self, fn: Callable[..., T], *args: Any) -> T:
        return self.store.run(fn, *args)

    def test_enqueue_once(self) -> None:
        """
        The same command is not queued again while one is still to be sent or answered;
        once that one is finished, it is.
        """
        queued = self.unit(q.enqueue_once, "A", GET, 1.0)
        assert queued is not None
        self.assertEqual(queued.seq, 1)
        self.assertIsNone(self.unit(q.enqueue_once, "A", GET, 2.0))
        self.unit(lambda root: q.mark_sent(root, q.queue_of(root, "A"), 1, ("S@1", "1", "2"), 3.0))
        self.assertIsNone(self.unit(q.enqueue_once, "A", GET, 4.0))
        other = parse_spec({"verb": "Get", "target": "./DevDetail/OEM"})
        queued = self.unit(q.enqueue_once, "A", other, 5.0)
        assert queued is not None
        self.assertEqual(queued.seq, 2)
        self.unit(lambda root: q.mark_answered(root, q.queue_of(root, "A"), 1, "done", 200, (), (), 6.0))
        queued = self.unit(q.enqueue_once, "A", GET, 7.0)
        assert queued is not None
        self.assertEqual(queued.seq, 3)

    def test_close_pending(self) -> None:
        """
        Queued, sent and accepted commands are cancelled with the reason; finished ones stay.
        """
        for _ in range(4):
            self.unit(q.enqueue, ["A"], GET, 1.0)

        def play(root: Root) -> list[int]:
            queue = q.queue_of(root, "A")
            for seq in (1, 2, 3):
                q.mark_sent(root, queue, seq, ("S@1", "1", str(seq)), 2.0)
            q.mark_answered(root, queue, 1, "done", 200, (), (), 3.0)
            q.mark_answered(root, queue, 2, "accepted", 202, (), (), 3.0)
            return q.close_pending(root, queue, "gone", 4.0)

        self.assertEqual(self.unit(play), [2, 3, 4])
        found = [(c.state, c.error) for c in self.unit(q.list_commands, "A")]
        self.assertEqual(found, [("done", None)] + [("cancelled", "gone")] * 3)
        self.assertEqual(self.unit(lambda root: list(q.queue_of(root, "A").pending)), [])

    def test_complete_accepted(self) -> None:
        """
        An alert item finishes the oldest accepted command it names: by Correlator where
        the Exec carried one, else by its Source (./Device/ the same as ./, any case);
        0 or a 2xx is success, anything else a failure; nothing else is touched.
        """
        specs = [
            parse_spec({"verb": "Exec", "target": "./Vendor/MSFT/A/Run"}),
            parse_spec({"verb": "Exec", "target": "./Vendor/MSFT/A/Run"}),
            parse_spec({"verb": "Exec", "target": "./Vendor/MSFT/B/Run", "correlator": "k"}),
        ]
        for spec in specs:
            self.unit(q.enqueue, ["A"], spec, 1.0)

        def accept(root: Root) -> None:
            queue = q.queue_of(root, "A")
            for seq in (1, 2, 3):
                q.mark_sent(root, queue, seq, ("S@1", "1", str(seq)), 2.0)
                q.mark_answered(root, queue, seq, "accepted", 202, (("", 202),), (), 3.0)

        self.unit(accept)

        def alert(**fields: str | None) -> int | None:
            return self.unit(lambda root: q.complete_accepted(root, q.queue_of(root, "A"), fields, 5.0))

        self.assertIsNone(alert(source="./Vendor/MSFT/B/Run", correlator=None, data="0"))  # B carried a correlator
        self.assertIsNone(alert(source="./Vendor/MSFT/C/Run", correlator="x", data="0"))
        self.assertEqual(alert(source="./DEVICE/Vendor/MSFT/a/run", correlator=None, data="0"), 1)
        self.assertEqual(alert(source="./Vendor/MSFT/A/Run", correlator=None, data="0x80070005"), 2)
        self.assertEqual(alert(source=None, correlator="k", data=" 250 "), 3)
        found = [(c.state, c.status, c.results[-1]["data"], c.error) for c in self.unit(q.list_commands, "A")]
        self.assertEqual(
            found,
            [("done", 202, "0", None), ("failed", 202, "0x80070005", "its completion alert reports '0x80070005'"), ("done", 202, " 250 ", None)],
        )


class CountingAndPagingTests(SynchronousTestCase):
    """
    Commands counted by state as they move, and listed in pages.
    """

    def setUp(self) -> None:
        service = memory_store_service()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store = service.store

        def queued(root: Root) -> None:
            for name in ("A", "B"):
                device = Device(name, 1.0)
                device.status = DeviceStatus.ENROLLED.value
                root["devices"][name] = device
            for n in range(7):
                q.enqueue(root, ["A"], GET, 10.0 + n)
            q.enqueue(root, ["B"], GET, 20.0)

        self.store.run(queued)

    def unit(self, fn: Callable[..., T], *args: Any) -> T:
        return self.store.run(fn, *args)

    def seqs(self, states: frozenset[str] | None, **request: Any) -> list[list[int]]:
        pages: list[list[int]] = []
        cursor = None
        while True:
            page = self.store.read(q.command_page, "A", states, PageRequest(cursor=cursor, **request))
            pages.append([c.seq for c in page.items])
            if page.next is None:
                return pages
            cursor = page.next

    def test_counted_by_state(self) -> None:
        """
        Queueing, sending, answering, failing, cancelling and requeueing move the counts.
        """

        def moves(root: Root) -> None:
            queue = q.queue_of(root, "A")
            q.mark_sent(root, queue, 1, ("S", "1", "1"), 30.0)
            q.mark_sent(root, queue, 2, ("S", "1", "2"), 30.0)
            q.mark_answered(root, queue, 1, "done", 200, (), (), 31.0)
            q.mark_failed(root, queue, 3, "too large", 31.0)
            q.cancel(root, "A", 4, 32.0)
            q.requeue_unanswered(root, queue, 33.0)

        self.unit(moves)
        counts = self.store.read(q.STATES.counts)
        self.assertEqual(set(counts), {state.value for state in CommandState})
        self.assertEqual({state: n for state, n in counts.items() if n}, {"queued": 5, "done": 1, "failed": 1, "cancelled": 1})

    def test_pages(self) -> None:
        """
        A device's commands come in pages by sequence number, either way, filtered by state.
        """

        def moves(root: Root) -> None:
            queue = q.queue_of(root, "A")
            for seq in (2, 5):
                q.mark_sent(root, queue, seq, ("S", "1", str(seq)), 30.0)
                q.mark_answered(root, queue, seq, "done", 200, (), (), 31.0)

        self.unit(moves)
        self.assertEqual(self.seqs(None, limit=3), [[1, 2, 3], [4, 5, 6], [7]])
        self.assertEqual(self.seqs(None, limit=3, descending=True), [[7, 6, 5], [4, 3, 2], [1]])
        self.assertEqual(self.seqs(frozenset({"queued", "sent"}), limit=3), [[1, 3, 4], [6, 7]])
        # the page after 2 finds only command 1, not done: empty, and the last
        self.assertEqual(self.seqs(frozenset({"done"}), limit=1, descending=True), [[5], [2], []])
        self.assertEqual(self.store.read(q.command_page, "NOPE", None, PageRequest()).items, ())

    def test_pending_walks_the_pending_index(self) -> None:
        """
        Queued and sent commands are found through the pending index: finished ones are never looked at.
        """

        def finish(root: Root) -> None:
            queue = q.queue_of(root, "A")
            for seq in range(1, 7):
                q.mark_failed(root, queue, seq, "too large", 30.0)

        self.unit(finish)
        self.assertEqual(self.seqs(frozenset({"queued"}), limit=5, scan_limit=1), [[7]])
