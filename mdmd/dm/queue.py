"""
Each device's ordered command queue, in the store.

Commands keep a per-device monotonic sequence number and are sent strictly in
that order within their scope: device-scoped commands in order, and
C{./User} commands in order among themselves once the enrolled user is logged
in (a waiting user command does not hold back device configuration). Every
state change is kept: when it was sent (session, message, command id), its
status codes and its results.

These functions are units of work (they take the ZODB root) or helpers the
DM check-in calls inside one. A command's state changes only in L{_move},
through the table of L{mdmd.dm.command_state}, which keeps the count of
commands by state (L{STATES}) in the same transaction.

A device's commands are listed in pages (L{command_page}), in sequence
order either way; pending ones through the queue's pending index.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

from mdmd.devices import lifecycle
from mdmd.devices.accounts import DeviceKind
from mdmd.dm import command_state
from mdmd.dm.command_state import CommandEvent, CommandState, next_state
from mdmd.dm.commands import CommandSpec, InvalidCommand
from mdmd.errors import Conflict, NotFound
from mdmd.store.counters import Family
from mdmd.store.migration import Pass
from mdmd.store.models import CommandQueue, QueuedCommand
from mdmd.store.paging import Listing, Page, PageRequest, keys_after, keys_before

__all__ = [
    "CommandInfo",
    "UnknownCommand",
    "CommandNotCancellable",
    "NotManageable",
    "UnsupportedByDevice",
    "enqueue",
    "enqueue_once",
    "list_commands",
    "cancel",
    "queue_of",
    "requeue",
    "requeue_unanswered",
    "complete_accepted",
    "close_pending",
    "MAX_ATTEMPTS",
    "FINISHED",
    "STATES",
    "LISTING",
    "command_page",
    "RECOUNT",
]

Root = MutableMapping[str, Any]

#: A command sent in this many sessions without an answer is given up.
MAX_ATTEMPTS = 5

#: The stored values of the final command states (what "results" lists).
FINISHED = tuple(state.value for state in CommandState if state in command_state.FINISHED)
_PENDING = frozenset(state.value for state in command_state.PENDING)
#: How many commands (of every device) are in each state.
STATES = Family("commands.state", tuple(state.value for state in CommandState))
#: The engine's verdict on an answered command (the state it moves to) → its event.
_VERDICTS = {
    CommandState.DONE.value: CommandEvent.SUCCEED,
    CommandState.FAILED.value: CommandEvent.FAIL,
    CommandState.ACCEPTED.value: CommandEvent.ACCEPT,
    CommandState.HALTED.value: CommandEvent.HALT,
    CommandState.NOT_EXECUTED.value: CommandEvent.SKIP,
}
#: Verbs a kind of device does not support (Windows has no Copy: MS-MDM).
_UNSUPPORTED_VERBS: Final[Mapping[str, frozenset[str]]] = {DeviceKind.WINDOWS.value: frozenset({"Copy"})}


class UnknownCommand(NotFound):
    def __str__(self) -> str:
        return f"device {self.args[0]} has no command {self.args[1]}"


class CommandNotCancellable(Conflict):
    """
    An operator asked to cancel a command that is no longer queued.
    """


class NotManageable(NotFound):
    """
    Commands were queued for a device that is unknown or no longer enrolled.
    """


class UnsupportedByDevice(InvalidCommand):
    """
    Commands were queued for a device whose kind does not support them (Copy for Windows).
    """


def _unsupported(spec: CommandSpec, kind: str) -> str | None:
    """
    Why a device of C{kind} cannot take C{spec} (a verb it lacks, anywhere in it), or None.
    """
    refused = _UNSUPPORTED_VERBS.get(kind, frozenset())
    return next((f"{kind} devices do not support {c.verb}" for c in spec.walk() if c.verb in refused), None)


@dataclass(frozen=True)
class CommandInfo:
    """
    A plain copy of a queued command's record.
    """

    device_id: str
    seq: int
    spec: dict[str, Any]
    scope: str
    state: str
    created_at: float
    updated_at: float
    attempts: int
    sent_in: tuple[str, str, str] | None
    status: int | None
    statuses: tuple[tuple[str, int], ...]
    results: tuple[dict[str, Any], ...]
    error: str | None
    note: str | None = None

    @property
    def command(self) -> CommandSpec:
        return CommandSpec.from_json(self.spec)

    def as_json(self) -> dict[str, Any]:
        value = dict(self.__dict__)
        value["sent_in"] = (
            None
            if self.sent_in is None
            else dict(zip(("session_id", "msg_id", "cmd_id"), self.sent_in))
        )
        value["statuses"] = [{"command": path, "status": code} for path, code in self.statuses]
        value["results"] = list(self.results)
        return value


def info(device_id: str, command: QueuedCommand) -> CommandInfo:
    return CommandInfo(
        device_id=device_id,
        seq=command.seq,
        spec=command.spec,
        scope=command.scope,
        state=command.state,
        created_at=command.created_at,
        updated_at=command.updated_at,
        attempts=command.attempts,
        sent_in=command.sent_in,
        status=command.status,
        statuses=command.statuses,
        results=command.results,
        error=command.error,
        note=command.note,
    )


def queue_of(root: Root, device_id: str) -> CommandQueue:
    """
    The device's queue, created on first use.
    """
    queue = root["queues"].get(device_id)
    if queue is None:
        queue = CommandQueue()
        root["queues"][device_id] = queue
    return queue


def enqueue(root: Root, device_ids: Iterable[str], spec: CommandSpec, now: float) -> list[CommandInfo]:
    """
    Append C{spec} to each device's queue; return the new records in device order.

    @raise NotManageable: (before anything is queued) if a device is unknown
        or no longer enrolled.
    @raise UnsupportedByDevice: (likewise) if a device's kind does not
        support a verb of C{spec}.
    """
    device_ids = list(dict.fromkeys(device_ids))
    for device_id in device_ids:
        device = root["devices"].get(device_id)
        if device is None:
            raise NotManageable(f"unknown device {device_id}")
        if not lifecycle.manageable(device):
            raise NotManageable(f"device {device_id} is {device.status}; nothing can be queued for it")
        refusal = _unsupported(spec, device.kind)
        if refusal is not None:
            raise UnsupportedByDevice(f"device {device_id}: {refusal}")
    queued = []
    for device_id in device_ids:
        queue = queue_of(root, device_id)
        seq = queue.next_seq
        queue.next_seq = seq + 1
        command = QueuedCommand(seq, spec.as_json(), spec.scope, now)
        queue.commands[seq] = command
        queue.pending.add(seq)
        STATES.add(root, command.state)
        queued.append(info(device_id, command))
    return queued


def enqueue_once(root: Root, device_id: str, spec: CommandSpec, now: float) -> CommandInfo | None:
    """
    Queue C{spec} for the device unless the same command is still to be sent
    or answered (the inventory Gets of a device that enrolls again); return it, or None.
    """
    queue = root["queues"].get(device_id)
    if queue is not None:
        wanted = spec.as_json()
        for command in pending_commands(queue):
            if CommandState(command.state) in command_state.IN_FLIGHT and command.spec == wanted:
                return None
    (queued,) = enqueue(root, [device_id], spec, now)
    return queued


def list_commands(
    root: Root, device_id: str, states: Iterable[str] | None = None, limit: int | None = None
) -> list[CommandInfo]:
    """
    A device's commands in sequence order, optionally only some states; the last C{limit}.
    """
    queue = root["queues"].get(device_id)
    if queue is None:
        return []
    wanted = set(states) if states is not None else None
    source = pending_commands(queue) if wanted is not None and wanted <= _PENDING else queue.commands.values()
    found = [info(device_id, c) for c in source if wanted is None or c.state in wanted]
    return found[-limit:] if limit else found


#: A device's commands, by sequence number (either way).
LISTING = Listing("commands", int, descending=True)


def command_page(
    root: Root, device_id: str, states: Iterable[str] | None, request: PageRequest
) -> Page[CommandInfo]:
    """
    One page of a device's commands (in C{states}, if given), by sequence
    number: oldest first, or newest first if the request says so. When only
    pending states are asked for, the queue's pending index is walked.

    @raise mdmd.store.paging.BadCursor: if the request's cursor is not one of this listing.
    """
    after, newest_first = LISTING.start(request)
    queue = root["queues"].get(device_id)
    if queue is None:
        return Page(())
    wanted = None if states is None else frozenset(states)
    index = queue.pending if wanted is not None and wanted <= _PENDING else queue.commands
    keys = keys_before(index, after, _previous) if newest_first else keys_after(index, after)

    def load(seq: int) -> CommandInfo | None:
        command = queue.commands.get(seq)
        if command is None or (wanted is not None and command.state not in wanted):
            return None
        return info(device_id, command)

    return LISTING.collect(keys, load, request, newest_first)


def _previous(seq: int) -> int:
    return seq - 1


def get_command(root: Root, device_id: str, seq: int) -> CommandInfo:
    queue = root["queues"].get(device_id)
    command = None if queue is None else queue.commands.get(seq)
    if command is None:
        raise UnknownCommand(device_id, seq)
    return info(device_id, command)


def cancel(root: Root, device_id: str, seq: int, now: float) -> CommandInfo:
    """
    Withdraw a command that has not been sent yet.
    """
    queue = root["queues"].get(device_id)
    command = None if queue is None else queue.commands.get(seq)
    if command is None:
        raise UnknownCommand(device_id, seq)
    if not command_state.allows(CommandState(command.state), CommandEvent.CANCEL):
        raise CommandNotCancellable(
            f"command {seq} of {device_id} is {command.state}; only queued commands can be cancelled"
        )
    _move(root, queue, command, CommandEvent.CANCEL, now)
    return info(device_id, command)


def _move(root: Root, queue: CommandQueue, command: QueuedCommand, event: CommandEvent, now: float) -> None:
    """
    The one place a command changes state (and the pending index and the
    count of commands by state with it).

    @raise command_state.IllegalCommandMove: if the table has no such move.
    """
    state = next_state(CommandState(command.state), event)
    STATES.move(root, command.state, state.value)
    command.state = state.value
    command.updated_at = now
    if state in command_state.PENDING:
        queue.pending.add(command.seq)
    else:
        queue.pending.remove(command.seq)


def pending_commands(queue: CommandQueue) -> Iterator[QueuedCommand]:
    """
    The queued, sent and accepted commands, in sequence order.
    """
    for seq in queue.pending:
        yield queue.commands[seq]


def mark_sent(root: Root, queue: CommandQueue, seq: int, sent_in: tuple[str, str, str], now: float) -> None:
    command = queue.commands[seq]
    command.sent_in = sent_in
    command.attempts += 1
    _move(root, queue, command, CommandEvent.SEND, now)


def mark_answered(
    root: Root,
    queue: CommandQueue,
    seq: int,
    state: str,
    status: int,
    statuses: tuple[tuple[str, int], ...],
    results: tuple[dict[str, Any], ...],
    now: float,
    note: str | None = None,
) -> None:
    """
    The device answered: C{state} is the engine's verdict (done, failed,
    accepted, halted, not-executed: L{command_state.answered_state});
    C{note}, if any, says how.
    """
    command = queue.commands[seq]
    command.status = status
    command.statuses = statuses
    command.results = results
    if note is not None or command.note is not None:
        command.note = note
    _move(root, queue, command, _VERDICTS[state], now)


def mark_failed(root: Root, queue: CommandQueue, seq: int, error: str, now: float) -> None:
    command = queue.commands[seq]
    command.error = error
    _move(root, queue, command, CommandEvent.FAIL, now)


def requeue(root: Root, queue: CommandQueue, seq: int, now: float) -> None:
    """
    A sent command the device refused for want of our credential goes out again.

    That attempt does not count towards L{MAX_ATTEMPTS}: the device answered it.
    """
    command = queue.commands[seq]
    command.sent_in = None
    command.attempts = max(0, command.attempts - 1)
    _move(root, queue, command, CommandEvent.REQUEUE, now)


def requeue_unanswered(root: Root, queue: CommandQueue, now: float) -> list[int]:
    """
    Commands sent in a session that is over, and never answered, go back in the queue.

    One that has already been sent L{MAX_ATTEMPTS} times fails instead, so a
    command that makes the device drop its sessions cannot block the queue.
    """
    changed = []
    for command in list(pending_commands(queue)):
        if CommandState(command.state) is not CommandState.SENT:
            continue
        command.sent_in = None
        if command.attempts >= MAX_ATTEMPTS:
            command.error = f"no answer after {command.attempts} sessions"
            _move(root, queue, command, CommandEvent.GIVE_UP, now)
        else:
            _move(root, queue, command, CommandEvent.REQUEUE, now)
        changed.append(command.seq)
    return changed


def _normalized(uri: str) -> str:
    """
    A LocURI as Windows compares it: case-insensitively, C{./Device/} the same as C{./}.
    """
    lowered = uri.strip().lower()
    return "./" + lowered[len("./device/"):] if lowered.startswith("./device/") else lowered


def _completed_by(spec: CommandSpec, source: str | None, correlator: str | None) -> bool:
    """
    Whether an alert item (its Source LocURI, its alert's Correlator) reports the outcome of C{spec}.

    The Correlator decides where the command carried one (OMA DM: the device
    echoes the Exec's); otherwise the item's Source must be the command's
    target (Windows names the node it executed: MSI DownloadInstall,
    HostedInstall).
    """
    if spec.correlator is not None:
        return correlator == spec.correlator
    return source is not None and _normalized(source) in {_normalized(t) for t in spec.targets()}


def _succeeded(data: str | None) -> bool:
    """
    A completion alert's Data: 0 (Windows' HRESULT S_OK) or a 2xx result code (OMA DM) is a success.
    """
    text = (data or "").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        return False
    code = int(text)
    return code == 0 or 200 <= code < 300


def complete_accepted(
    root: Root,
    queue: CommandQueue, alert: Mapping[str, Any], now: float
) -> int | None:
    """
    The alert item C{alert} (source, correlator, data, type...) reports the
    outcome of the oldest accepted (202) command it names: done or failed,
    the item kept with its results. Return that command's seq, or None.
    """
    for command in list(pending_commands(queue)):
        if CommandState(command.state) is not CommandState.ACCEPTED:
            continue
        if not _completed_by(CommandSpec.from_json(command.spec), alert.get("source"), alert.get("correlator")):
            continue
        command.results = tuple(command.results) + (dict(alert),)
        if _succeeded(alert.get("data")):
            _move(root, queue, command, CommandEvent.SUCCEED, now)
        else:
            command.error = f"its completion alert reports {alert.get('data')!r}"
            _move(root, queue, command, CommandEvent.FAIL, now)
        return command.seq
    return None


def close_pending(root: Root, queue: CommandQueue, reason: str, now: float) -> list[int]:
    """
    The device left: every command still waiting for it (queued, sent, accepted) is cancelled with C{reason}.
    """
    closed = []
    for command in list(pending_commands(queue)):
        command.error = reason
        _move(root, queue, command, CommandEvent.DEVICE_LEFT, now)
        closed.append(command.seq)
    return closed


def track(root: Root, queue: CommandQueue) -> None:
    """
    Count the commands of a queue that were never counted (the store upgrade's recount).
    """
    for command in queue.commands.values():
        STATES.add(root, command.state)


#: The store upgrade's pass over the queues: every command counted by state.
RECOUNT = Pass("command queues", "queues", lambda root, device_id, queue: track(root, queue), STATES.reset)
