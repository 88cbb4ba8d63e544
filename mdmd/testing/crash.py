"""
Crash-consistency audits: what emulated devices and the SMSC remember,
held against what the store recorded.

A crash test kills the daemon at random points while devices run DM
sessions; afterwards each device's journal (L{mdmd.testing.dmclient.Execution}:
every command it carried out, and whether the server accepted the message
that reported it) and the store's record of the same commands must agree:

  - nothing queued is lost: every command the operator was told is queued
    is in the store once, done, and was carried out by the device;
  - nothing acknowledged is missing: the outcome of every execution whose
    report got HTTP 200 (and an accepting SyncHdr status) is what the store holds;
  - nothing is carried out again after its report was acknowledged.

A command carried out twice because its first report was never
acknowledged (the daemon died before it answered) is allowed: that is
at-least-once delivery, what OMA DM promises.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from mdmd.dm import queue as dm_queue
from mdmd.testing.dmclient import Execution

__all__ = ["Message", "StoredCommand", "stored_commands", "audit_device", "audit_pushes"]


@dataclass(frozen=True)
class StoredCommand:
    """
    What the store holds of one queued command with one target.
    """

    seq: int
    verb: str
    target: str
    state: str
    status: int | None
    #: the value of its first Results item, if any
    result: str | None


def stored_commands(root: MutableMapping[str, Any], device_id: str, prefix: str) -> list[StoredCommand]:
    """
    A unit of work: the device's commands whose target starts with C{prefix}.
    """
    found = []
    for command in dm_queue.list_commands(root, device_id):
        target = command.spec.get("items", [{}])[0].get("target", "")
        if not target.startswith(prefix):
            continue
        result = command.results[0].get("data") if command.results else None
        found.append(StoredCommand(command.seq, command.spec["verb"], target, command.state, command.status, result))
    return found


def audit_device(
    device_id: str,
    journal: Sequence[Execution],
    stored: Sequence[StoredCommand],
    confirmed: Iterable[str],
    prefix: str,
) -> list[str]:
    """
    Every way the device's journal and the store disagree, one line each
    (an empty list when they agree). C{confirmed} are the targets whose
    queuing the operator saw succeed; the store may hold others (a request
    whose answer was lost), but at most once each.
    """
    problems: list[str] = []
    by_target: dict[str, list[StoredCommand]] = defaultdict(list)
    for command in stored:
        by_target[command.target].append(command)
    executions: dict[str, list[Execution]] = defaultdict(list)
    for execution in journal:
        if execution.target.startswith(prefix):
            executions[execution.target].append(execution)

    for target in sorted(set(confirmed) - set(by_target)):
        problems.append(f"{device_id} {target}: lost (queued, but not in the store)")
    for target, commands in sorted(by_target.items()):
        if len(commands) > 1:
            problems.append(f"{device_id} {target}: queued {len(commands)} times (seq {[c.seq for c in commands]})")
        command = commands[-1]
        done = executions.get(target, [])
        if command.state != "done":
            problems.append(f"{device_id} {target}: lost (seq {command.seq} is {command.state})")
        elif not done:
            problems.append(f"{device_id} {target}: recorded done, but the device never carried it out")
        acknowledged = [i for i, e in enumerate(done) if e.acknowledged]
        if acknowledged and acknowledged[0] < len(done) - 1:
            problems.append(
                f"{device_id} {target}: carried out {len(done)} times, again after its report got a 200 "
                f"(sessions {[e.session_id for e in done]})"
            )
        for execution in (done[i] for i in acknowledged):
            if (execution.status, execution.result) != (command.status, command.result):
                problems.append(
                    f"{device_id} {target}: acknowledged result missing (device reported "
                    f"{execution.status} {execution.result!r}, store has {command.status} {command.result!r})"
                )
    for target in sorted(set(executions) - set(by_target)):
        problems.append(f"{device_id} {target}: carried out, but no such command is stored")
    return problems


#: A short message as the SMSC saw it: (destination address, octets). Two
#: handsets may be sent the same octets (the same credentials and session id).
Message = tuple[str, bytes]


def audit_pushes(
    expected: Mapping[tuple[str, int], Sequence[Message]], received: Sequence[Message], keys: Iterable[tuple[str, int]]
) -> list[str]:
    """
    Every way the pushes the store holds (C{expected}: (device id, seq) → each
    of its segments; C{keys}: the jobs the operator was told are queued) and
    what the SMSC accepted (C{received}, in order) disagree: a job lost, a
    segment sent twice, a message nobody queued.
    """
    problems: list[str] = []
    counts: dict[Message, int] = defaultdict(int)
    for message in received:
        counts[message] += 1
    known = {message for segments in expected.values() for message in segments}
    for key in sorted(set(keys) - set(expected)):
        problems.append(f"push {key[0]}#{key[1]}: lost (queued, but not in the store)")
    for key, segments in sorted(expected.items()):
        for index, message in enumerate(segments, 1):
            if counts[message] == 0:
                problems.append(f"push {key[0]}#{key[1]} segment {index}: lost (the SMSC never accepted it)")
            elif counts[message] > 1:
                problems.append(f"push {key[0]}#{key[1]} segment {index}: sent {counts[message]} times")
    for message in counts:
        if message not in known:
            problems.append(f"the SMSC accepted a message no job holds: to {message[0]}, {message[1][:16].hex()}...")
    return problems
