"""
Tests for L{mdmd.dm.queue}: the per-device queue in the store.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.devices.lifecycle import DeviceStatus
from mdmd.dm import queue as q
from mdmd.dm.command_state import IllegalCommandMove
from mdmd.dm.commands import parse_spec
from mdmd.errors import Conflict
from mdmd.store.models import Device
from mdmd.testing.store import memory_store_service

GET = parse_spec({"verb": "Get", "target": "./DevDetail/SwV"})


class QueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = memory_store_service()
        self.addCleanup(self.store.stopService)

        def devices(root):
            for name in ("A", "B"):
                device = Device(name, 1.0)
                device.status = DeviceStatus.ENROLLED.value
                root["devices"][name] = device
            gone = Device("GONE", 1.0)
            gone.status = DeviceStatus.REMOVED.value
            root["devices"]["GONE"] = gone

        self.store.store.run(devices)

    def unit(self, fn, *args):
        return self.store.store.run(fn, *args)

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

        def send_and_lose(root):
            queue = q.queue_of(root, "A")
            q.mark_sent(queue, 1, ("S@1", "1", "2"), 2.0)
            return q.requeue_unanswered(queue, 3.0)

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

        def answer(root):
            queue = q.queue_of(root, "A")
            q.mark_sent(queue, 1, ("S@1", "1", "2"), 2.0)
            q.mark_answered(queue, 1, "done", 200, (("", 200),), ({"source": "./DevDetail/SwV", "data": "1.0"},), 3.0)

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
        self.unit(lambda root: q.mark_sent(q.queue_of(root, "A"), 1, ("S@1", "1", "2"), 2.0))
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

        def queue(root):
            return q.queue_of(root, "A")

        self.assertRaises(
            IllegalCommandMove, self.unit, lambda root: q.mark_answered(queue(root), 1, "done", 200, (), (), 2.0)
        )
        self.unit(lambda root: q.mark_sent(queue(root), 1, ("S@1", "1", "2"), 2.0))
        self.assertRaises(IllegalCommandMove, self.unit, lambda root: q.mark_sent(queue(root), 1, ("S@1", "1", "3"), 3.0))
        self.unit(lambda root: q.mark_answered(queue(root), 1, "done", 200, (), (), 4.0))
        self.assertRaises(IllegalCommandMove, self.unit, lambda root: q.mark_failed(queue(root), 1, "late", 5.0))
        (command,) = self.unit(q.list_commands, "A")
        self.assertEqual((command.state, command.attempts, command.sent_in, command.error), ("done", 1, ("S@1", "1", "2"), None))

    def test_failed_before_sending(self) -> None:
        """
        A command that cannot be sent at all fails from the queue and leaves the pending index.
        """
        self.unit(q.enqueue, ["A"], GET, 1.0)
        self.unit(lambda root: q.mark_failed(q.queue_of(root, "A"), 1, "too large", 2.0))
        (command,) = self.unit(q.list_commands, "A", q.FINISHED)
        self.assertEqual((command.state, command.error, command.attempts), ("failed", "too large", 0))
        self.assertEqual(self.unit(lambda root: list(q.queue_of(root, "A").pending)), [])
