"""
Tests for L{mdmd.testing.crash}: the audits find each kind of disagreement
between what a device (or the SMSC) remembers and what the store holds.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm import queue as dm_queue
from mdmd.dm.commands import parse_spec
from mdmd.testing.crash import StoredCommand, audit_device, audit_pushes, stored_commands
from mdmd.testing.devices import add_device
from mdmd.testing.dmclient import Execution
from mdmd.testing.store import memory_store_service

P = "./Vendor/MSFT/Crash/"


def executed(target: str, status: int = 200, result: str | None = None, acknowledged: bool = True, session: str = "1") -> Execution:
    return Execution(session, "2", "Get", P + target, None, status, result, acknowledged)


def stored(target: str, state: str = "done", status: int | None = 200, result: str | None = None, seq: int = 1) -> StoredCommand:
    return StoredCommand(seq, "Get", P + target, state, status, result)


class AuditDeviceTests(SynchronousTestCase):
    def audit(self, journal: list[Execution], commands: list[StoredCommand], confirmed: tuple[str, ...] = ()) -> list[str]:
        return audit_device("D", journal, commands, [P + c for c in confirmed], P)

    def test_agreement(self) -> None:
        """
        One execution acknowledged, stored done with its result; one carried
        out twice because its first report was never acknowledged: no problem.
        Commands outside the prefix (inventory) are not audited.
        """
        journal = [
            executed("A", result="a"),
            executed("B", acknowledged=False),
            executed("B", session="2"),
            Execution("1", "2", "Get", "./DevDetail/SwV", None, 200, "10", True),
        ]
        commands = [stored("A", result="a"), stored("B", seq=2)]
        self.assertEqual(self.audit(journal, commands, ("A", "B")), [])

    def test_lost(self) -> None:
        """
        A confirmed command missing from the store, one stuck in sent, and one
        recorded done that the device never carried out are each lost.
        """
        problems = self.audit([], [stored("B", state="sent", status=None), stored("C")], ("A", "B"))
        self.assertEqual(
            problems,
            [
                f"D {P}A: lost (queued, but not in the store)",
                f"D {P}B: lost (seq 1 is sent)",
                f"D {P}C: recorded done, but the device never carried it out",
            ],
        )

    def test_twice_after_a_200(self) -> None:
        """
        An execution after an acknowledged one is reported.
        """
        problems = self.audit([executed("A"), executed("A", session="2")], [stored("A")], ("A",))
        self.assertEqual(problems, [f"D {P}A: carried out 2 times, again after its report got a 200 (sessions ['1', '2'])"])

    def test_acknowledged_result_missing(self) -> None:
        """
        An acknowledged status or result the store does not hold is reported.
        """
        problems = self.audit([executed("A", result="new")], [stored("A", result="old")], ("A",))
        self.assertEqual(
            problems, [f"D {P}A: acknowledged result missing (device reported 200 'new', store has 200 'old')"]
        )

    def test_queued_twice_and_unknown(self) -> None:
        """
        A target stored twice (a retried request done twice) and an execution
        of a command the store does not have are reported.
        """
        problems = self.audit([executed("A"), executed("Z")], [stored("A"), stored("A", seq=2)], ("A",))
        self.assertEqual(
            problems,
            [f"D {P}A: queued 2 times (seq [1, 2])", f"D {P}Z: carried out, but no such command is stored"],
        )

    def test_stored_commands(self) -> None:
        """
        The unit of work reads the device's commands under the prefix, with
        their state, status and first result.
        """
        service = memory_store_service()
        service.startService()
        self.addCleanup(service.stopService)
        assert service.store is not None

        def setup(root: Any) -> None:
            add_device(root, "D")
            dm_queue.enqueue(root, ["D"], parse_spec({"verb": "Get", "target": P + "A"}), 1.0)
            dm_queue.enqueue(root, ["D"], parse_spec({"verb": "Get", "target": "./DevDetail/SwV"}), 1.0)

        service.store.run(setup)
        found = service.store.read(stored_commands, "D", P)
        self.assertEqual(found, [StoredCommand(1, "Get", P + "A", "queued", None, None)])


class AuditPushesTests(SynchronousTestCase):
    def test_agreement(self) -> None:
        """
        Every segment of every job accepted once: no problem, even where two
        handsets were sent the same octets.
        """
        expected = {("D", 1): (("1", b"a1"), ("1", b"a2")), ("D", 2): (("1", b"b"),), ("E", 1): (("2", b"b"),)}
        received = [("1", b"a1"), ("1", b"b"), ("2", b"b"), ("1", b"a2")]
        self.assertEqual(audit_pushes(expected, received, [("D", 1)]), [])

    def test_problems(self) -> None:
        """
        A queued job not stored, a segment never accepted, one accepted twice
        and a message no job holds are each reported.
        """
        problems = audit_pushes(
            {("D", 1): (("1", b"a"),), ("D", 2): (("1", b"b"),)},
            [("1", b"b"), ("1", b"b"), ("2", b"a")],
            [("D", 1), ("D", 3)],
        )
        self.assertEqual(
            problems,
            [
                "push D#3: lost (queued, but not in the store)",
                "push D#1 segment 1: lost (the SMSC never accepted it)",
                "push D#2 segment 1: sent 2 times",
                "the SMSC accepted a message no job holds: to 2, 61...",
            ],
        )
