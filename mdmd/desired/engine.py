"""
The reconciliation engine, sans-IO: desired profiles, what a device has of
them and its answers in; commands to queue and state changes out.

Two steps, both pure (no store, no clock: C{now} is passed in):

  - L{reconcile} compares the profiles a device should have (L{Desired}:
    name and latest version) with its records (L{Applied}) and the commands
    of ours still in flight for it (L{Ticket}s), and plans: the steps of a
    new or newer version to apply (each followed by Gets that read its values
    back), the reversal of a profile no longer desired, the re-application of
    a drifted step, a retry of a failed version, and, with C{verify}, the
    periodic read-back of every verified value.
  - L{observe} takes what became of those commands (L{Answer}: sent, done,
    failed, with the device's status and results) and moves each record:
    a step's phase, then the profile's state through the one table of
    L{mdmd.desired.convergence}.

A step is sent once per version: it goes again only after it failed (a retry
at the next verification) or after the device changed it (drift). A record
keeps what identifies a step across versions (its digest), so a newer
version sends only the steps that changed. What a step is for this device
(its command with variables expanded, its read-backs, its reversal) comes
from the caller's C{plans}, so records stay small.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from mdmd.desired.convergence import ASSIGNED, ProfileEvent, ProfileState, allows, next_state
from mdmd.desired.profiles import PlannedStep, describe
from mdmd.desired.values import same_value
from mdmd.dm.commands import CommandSpec, ItemSpec

__all__ = [
    "Role",
    "Phase",
    "Ticket",
    "StepRecord",
    "Applied",
    "Desired",
    "Answer",
    "ToQueue",
    "Plan",
    "Plans",
    "reconcile",
    "observe",
    "KEEP_EVENTS",
]

#: How many events (drift, retries, a reversal that failed) a record keeps.
KEEP_EVENTS: Final = 10

_S = ProfileState
_E = ProfileEvent


class Role(enum.Enum):
    """
    What a command of ours does for a profile.
    """

    #: a step's own command
    APPLY = "apply"
    #: a Get right after its step, reading one of its values back
    CHECK = "check"
    #: a Get of the periodic verification
    VERIFY = "verify"
    #: a Delete that undoes a setting
    REVERT = "revert"


class Phase(enum.Enum):
    """
    Where one step of a profile stands on the device.
    """

    #: its command is to go (or is queued)
    QUEUED = "queued"
    SENT = "sent"
    #: its command succeeded; its values are being read back
    APPLIED = "applied"
    VERIFIED = "verified"
    FAILED = "failed"
    #: a periodic read-back found another value: it goes again
    DRIFTED = "drifted"


# The phases' stored values, spelled once for the hot paths (an enum member's .value is a property call).
_QUEUED: Final = Phase.QUEUED.value
_SENT: Final = Phase.SENT.value
_APPLIED: Final = Phase.APPLIED.value
_VERIFIED: Final = Phase.VERIFIED.value
_FAILED: Final = Phase.FAILED.value
_DRIFTED: Final = Phase.DRIFTED.value

#: Phases in which the device may hold what the step set (so a removal undoes it).
_WROTE: Final = frozenset({Phase.SENT.value, Phase.APPLIED.value, Phase.VERIFIED.value, Phase.DRIFTED.value})


@dataclass(frozen=True, order=True)
class Ticket:
    """
    Why a command of ours is in a device's queue: for which profile version,
    in which role, for which step (or reversal) and read-back.
    """

    profile: str
    version: int
    role: str
    index: int
    part: int = 0

    def as_tuple(self) -> tuple[str, int, str, int, int]:
        return (self.profile, self.version, self.role, self.index, self.part)

    @classmethod
    def of(cls, value: Sequence[Any]) -> Ticket:
        return cls(value[0], value[1], value[2], value[3], value[4])


@dataclass(frozen=True)
class StepRecord:
    """
    One step's standing: its phase, the digest of the command it sent, the
    read-backs still outstanding, and what went wrong.
    """

    phase: str
    digest: str = ""
    #: read-backs (by part) not answered yet
    left: tuple[int, ...] = ()
    #: whether the device accepted the step's command (something may be set)
    wrote: bool = False
    #: when it failed: the device's status (None: not a status, e.g. a value read back differs),
    #: the command that failed and why
    status: int | None = None
    command: str | None = None
    error: str | None = None

    def as_list(self) -> list[Any]:
        return [self.phase, self.digest, list(self.left), self.wrote, self.status, self.command, self.error]

    @classmethod
    def of(cls, value: Sequence[Any]) -> StepRecord:
        return cls(value[0], value[1], tuple(value[2]), value[3], value[4], value[5], value[6])


@dataclass(frozen=True)
class Applied:
    """
    What a device has of one profile: its state, version and steps; while
    it is removed, its reversal; and what happened lately.
    """

    profile: str
    version: int
    state: str
    steps: tuple[StepRecord, ...] = ()
    #: a periodic read-back found a changed value and it has not been verified since
    drifted: bool = False
    #: the first failure: {"command", "status", "error", "step"}
    failure: dict[str, Any] | None = None
    #: while removing: (target, phase) per Delete: queued, sent, done or failed
    reverts: tuple[tuple[str, str], ...] = ()
    #: what stays on the device after its removal, and why
    retained: tuple[str, ...] = ()
    events: tuple[dict[str, Any], ...] = ()
    updated_at: float = 0.0
    verified_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """
        The record as plain builtins (what the store keeps).
        """
        return {
            "profile": self.profile,
            "version": self.version,
            "state": self.state,
            "steps": [s.as_list() for s in self.steps],
            "drifted": self.drifted,
            "failure": self.failure,
            "reverts": [list(r) for r in self.reverts],
            "retained": list(self.retained),
            "events": list(self.events),
            "updated_at": self.updated_at,
            "verified_at": self.verified_at,
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Applied:
        return cls(
            profile=value["profile"],
            version=value["version"],
            state=value["state"],
            steps=tuple(StepRecord.of(s) for s in value["steps"]),
            drifted=value["drifted"],
            failure=value["failure"],
            reverts=tuple((t, p) for t, p in value["reverts"]),
            retained=tuple(value["retained"]),
            events=tuple(value["events"]),
            updated_at=value["updated_at"],
            verified_at=value["verified_at"],
        )

    def as_json(self) -> dict[str, Any]:
        """
        The record for an operator: the steps by phase, not as stored.
        """
        value = self.as_dict()
        value["steps"] = [
            {"phase": s.phase, "status": s.status, "command": s.command, "error": s.error} for s in self.steps
        ]
        value["reverts"] = [{"target": t, "phase": p} for t, p in self.reverts]
        return value


@dataclass(frozen=True)
class Desired:
    """
    A profile the device is to have, at its latest version.
    """

    profile: str
    version: int


@dataclass(frozen=True)
class Answer:
    """
    What became of a command of ours (its queue state, read after the message that moved it).

    C{state}: C{sent}, C{done} or C{failed} (as the queue says; other
    states are read as pending by the caller and not passed).
    """

    ticket: Ticket
    state: str
    status: int | None = None
    statuses: tuple[tuple[str, int], ...] = ()
    results: tuple[Mapping[str, Any], ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class ToQueue:
    ticket: Ticket
    spec: CommandSpec


@dataclass
class Plan:
    """
    What the engine decided: records changed (None: the record goes),
    commands to queue, in-flight commands to withdraw (those still queued),
    and lines for the log. C{reconcile}: a drift was found, the caller
    reconciles to apply it again.
    """

    records: dict[str, Applied | None] = field(default_factory=dict)
    queue: list[ToQueue] = field(default_factory=list)
    cancel: list[Ticket] = field(default_factory=list)
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    reconcile: bool = False


#: C{plans(profile, version)}: the version's steps as this device gets them (None: the version is gone).
Plans = Callable[[str, int], "tuple[PlannedStep, ...] | None"]


# -- helpers ------------------------------------------------------------------------------------


def _event(record: Applied, now: float, event: str, **fields: Any) -> Applied:
    entry = {"time": now, "event": event, **fields}
    return replace(record, events=(record.events + (entry,))[-KEEP_EVENTS:])


def _move(record: Applied | None, event: ProfileEvent, profile: str, version: int, now: float) -> Applied | None:
    """
    Move a record through the table (creating it, or None when it goes).
    """
    state = next_state(None if record is None else ProfileState(record.state), event)
    if state is None:
        return None
    if record is None:
        return Applied(profile, version, state.value, updated_at=now)
    return replace(record, state=state.value, updated_at=now)


def _aggregate(record: Applied) -> ProfileState:
    phases = [s.phase for s in record.steps]
    if _FAILED in phases:
        return _S.FAILED
    if all(p == _VERIFIED for p in phases):
        return _S.VERIFIED
    if record.drifted and ProfileState(record.state) in (_S.VERIFIED, _S.DRIFTED):
        return _S.DRIFTED
    if all(p in (_APPLIED, _VERIFIED) for p in phases):
        return _S.VERIFYING
    if any(p in (_SENT, _APPLIED, _VERIFIED) for p in phases):
        return _S.SENT
    return _S.PENDING


#: The event that moves an assigned record to the state its steps add up to.
_EVENT_TO: Final[Mapping[ProfileState, ProfileEvent]] = {
    _S.SENT: _E.SEND,
    _S.VERIFYING: _E.APPLIED,
    _S.VERIFIED: _E.VERIFY,
    _S.FAILED: _E.FAIL,
    _S.DRIFTED: _E.DRIFT,
}


def _settle(record: Applied, now: float) -> Applied:
    """
    Move an assigned record to the state its steps add up to (through the table).

    A record whose state does not lead there (one older code left, or
    damaged) starts over from pending first, through the table too.
    """
    current = ProfileState(record.state)
    if current not in ASSIGNED:
        return record
    target = _aggregate(record)
    if target is current:
        return record
    if target is _S.PENDING or not allows(current, _EVENT_TO[target]):
        restarted = _move(record, _E.ASSIGN, record.profile, record.version, now)
        assert restarted is not None
        record = replace(restarted, drifted=False)
        target = _aggregate(record)
        if target is _S.PENDING:
            return record
    moved = _move(record, _EVENT_TO[target], record.profile, record.version, now)
    assert moved is not None
    if target is _S.VERIFIED:
        moved = replace(moved, drifted=False, failure=None, verified_at=now)
    elif target is _S.FAILED and moved.failure is None:
        moved = replace(moved, failure=_failure(moved))
    return moved


def _failure(record: Applied) -> dict[str, Any] | None:
    for index, step in enumerate(record.steps):
        if step.phase == _FAILED:
            return {"step": index, "command": step.command, "status": step.status, "error": step.error}
    return None


def _set_step(record: Applied, index: int, step: StepRecord) -> Applied:
    """
    The record with one step changed (built directly: a check-in changes
    every step of a profile twice, and dataclasses.replace is slow).
    """
    steps = record.steps[:index] + (step,) + record.steps[index + 1 :]
    return Applied(
        record.profile, record.version, record.state, steps, record.drifted, record.failure, record.reverts,
        record.retained, record.events, record.updated_at, record.verified_at,
    )


def _step(step: StepRecord, phase: str, left: tuple[int, ...] | None = None, wrote: bool | None = None) -> StepRecord:
    """
    C{step} in another phase (and with other read-backs outstanding, or written).
    """
    return StepRecord(
        phase, step.digest, step.left if left is None else left, step.wrote if wrote is None else wrote,
        step.status, step.command, step.error,
    )


def _get(target: str) -> CommandSpec:
    return CommandSpec("Get", items=(ItemSpec(target),))


def _apply_commands(profile: str, version: int, index: int, step: PlannedStep) -> list[ToQueue]:
    """
    A step's command followed by a Get per read-back.
    """
    assert step.command is not None
    queued = [ToQueue(Ticket(profile, version, Role.APPLY.value, index), step.command)]
    for part, readback in enumerate(step.readbacks):
        queued.append(ToQueue(Ticket(profile, version, Role.CHECK.value, index, part), _get(readback.target)))
    return queued


def _fresh_step(planned: PlannedStep) -> StepRecord:
    if planned.command is None:
        return StepRecord(_FAILED, error=planned.error)
    return StepRecord(_QUEUED, planned.digest)


# -- reconcile ------------------------------------------------------------------------------------


def reconcile(
    desired: Mapping[str, Desired],
    applied: Mapping[str, Applied],
    inflight: Collection[Ticket],
    plans: Plans,
    now: float,
    *,
    verify: bool = False,
) -> Plan:
    """
    Plan what brings the device's records to C{desired}.

    @param inflight: the tickets of the commands of ours still in the
        device's queue (queued or sent).
    @param verify: the periodic verification is due: read back every
        verified value, and retry failed versions.
    """
    plan = Plan()
    flying = set(inflight)
    for name in sorted(set(desired) | set(applied)):
        record = applied.get(name)
        wanted = desired.get(name)
        if wanted is None:
            if record is not None:
                _unwanted(plan, record, flying, plans, now)
        elif record is None or ProfileState(record.state) not in ASSIGNED or record.version != wanted.version:
            _assign(plan, record, wanted, flying, plans, now)
        else:
            _maintain(plan, record, flying, plans, now, verify)
    return plan


def _cancel_profile(plan: Plan, flying: set[Ticket], profile: str, roles: Collection[str]) -> None:
    for ticket in sorted(flying):
        if ticket.profile == profile and ticket.role in roles:
            plan.cancel.append(ticket)
            flying.discard(ticket)


_SETTING_ROLES: Final = (Role.APPLY.value, Role.CHECK.value, Role.VERIFY.value)
_ASSIGNED_VALUES: Final = frozenset(state.value for state in ASSIGNED)


def _assign(plan: Plan, record: Applied | None, wanted: Desired, flying: set[Ticket], plans: Plans, now: float) -> None:
    """
    A version to apply: new, newer than the record's, or assigned again while being removed.
    """
    name = wanted.profile
    steps = plans(name, wanted.version)
    if steps is None:
        plan.notes.append(("{device_id}: profile {profile} v{version} is gone", {"profile": name, "version": wanted.version}))
        return
    _cancel_profile(plan, flying, name, (*_SETTING_ROLES, Role.REVERT.value))
    carried: dict[str, StepRecord] = {}
    old_plan: tuple[PlannedStep, ...] | None = None
    if record is not None and ProfileState(record.state) in ASSIGNED:
        carried = {s.digest: s for s in record.steps if s.phase == _VERIFIED and s.digest}
        old_plan = plans(name, record.version)
    moved = _move(record, _E.ASSIGN, name, wanted.version, now)
    assert moved is not None
    fresh = []
    for index, planned in enumerate(steps):
        kept = carried.get(planned.digest) if planned.command is not None else None
        if kept is not None:
            fresh.append(kept)
            continue
        fresh.append(_fresh_step(planned))
    new = replace(moved, version=wanted.version, steps=tuple(fresh), drifted=False, failure=None, reverts=(), retained=())
    if record is not None:
        new = _event(new, now, "assigned", version=wanted.version, previous=record.version if record.version != wanted.version else None)
    # what the previous version set and this one does not: undone first
    if record is not None and old_plan is not None and ProfileState(record.state) in ASSIGNED:
        kept_digests = {p.digest for p in steps}
        new_targets = {i.target for p in steps if p.command is not None for c in p.command.walk() for i in c.items}
        index = 0
        for old_step, old_planned in reversed(list(zip(record.steps, old_plan))):
            if old_planned.digest in kept_digests or (not old_step.wrote and old_step.phase not in _WROTE):
                continue
            for reversal in old_planned.reversals:
                if reversal.delete and reversal.target not in new_targets:
                    ticket = Ticket(name, record.version, Role.REVERT.value, index)
                    plan.queue.append(ToQueue(ticket, CommandSpec("Delete", items=(ItemSpec(reversal.target),))))
                    index += 1
    for index, (step, planned) in enumerate(zip(new.steps, steps)):
        if step.phase == _QUEUED:
            plan.queue.extend(_apply_commands(name, wanted.version, index, planned))
    plan.records[name] = _settle(new, now)


def _maintain(plan: Plan, record: Applied, flying: set[Ticket], plans: Plans, now: float, verify: bool) -> None:
    """
    The record is at the desired version: send what is missing, re-apply
    drifted steps, and (when due) retry a failure and read back what is verified.
    """
    name, version = record.profile, record.version
    steps = plans(name, version)
    if steps is None:
        return
    changed = record
    if verify and ProfileState(record.state) is _S.FAILED:
        moved = _move(record, _E.ASSIGN, name, version, now)
        assert moved is not None
        changed = replace(_event(moved, now, "retry", failure=record.failure), failure=None, drifted=False)
        fresh = []
        for step, planned in zip(changed.steps, steps):
            fresh.append(_fresh_step(planned) if step.phase == _FAILED else step)
        changed = replace(changed, steps=tuple(fresh))
    tickets = {(t.role, t.index, t.part) for t in flying if t.profile == name and t.version == version}
    for index, (step, planned) in enumerate(zip(changed.steps, steps)):
        phase = Phase(step.phase)
        if phase is Phase.DRIFTED or (phase in (Phase.QUEUED, Phase.SENT) and (Role.APPLY.value, index, 0) not in tickets):
            if planned.command is None:
                changed = _set_step(changed, index, _fresh_step(planned))
                continue
            changed = _set_step(changed, index, replace(step, phase=_QUEUED, left=(), digest=planned.digest))
            plan.queue.extend(_apply_commands(name, version, index, planned))
        elif phase is Phase.APPLIED:
            if not step.left:
                # nothing outstanding recorded: read every value back again
                step = replace(step, left=tuple(range(len(planned.readbacks))), phase=_APPLIED if planned.readbacks else _VERIFIED)
                changed = _set_step(changed, index, step)
            for part in step.left:
                if (Role.CHECK.value, index, part) not in tickets and part < len(planned.readbacks):
                    ticket = Ticket(name, version, Role.CHECK.value, index, part)
                    plan.queue.append(ToQueue(ticket, _get(planned.readbacks[part].target)))
        elif phase is Phase.VERIFIED and verify and ProfileState(changed.state) is _S.VERIFIED:
            for part, readback in enumerate(planned.readbacks):
                if (Role.VERIFY.value, index, part) not in tickets:
                    ticket = Ticket(name, version, Role.VERIFY.value, index, part)
                    plan.queue.append(ToQueue(ticket, _get(readback.target)))
    settled = _settle(changed, now)
    if settled != record:
        plan.records[name] = settled


def _unwanted(plan: Plan, record: Applied, flying: set[Ticket], plans: Plans, now: float) -> None:
    """
    A profile the device is no longer to have: undo what it set (or finish doing so).
    """
    name = record.profile
    state = ProfileState(record.state)
    if state is _S.RETAINED:
        return
    if state is _S.REMOVING:
        pending = {t.index for t in flying if t.profile == name and t.role == Role.REVERT.value and t.version == record.version}
        for index, (target, phase) in enumerate(record.reverts):
            if phase in ("queued", "sent") and index not in pending:
                ticket = Ticket(name, record.version, Role.REVERT.value, index)
                plan.queue.append(ToQueue(ticket, CommandSpec("Delete", items=(ItemSpec(target),))))
        finished = _finish_removal(record, now)
        if finished is not record:
            plan.records[name] = finished
        return
    _cancel_profile(plan, flying, name, _SETTING_ROLES)
    steps = plans(name, record.version)
    reverts: list[str] = []
    retained: list[str] = []
    if steps is None:
        if any(s.wrote or s.phase in _WROTE for s in record.steps):
            retained.append(f"version {record.version} of the profile is gone: what it set is left as it is")
    else:
        for step, planned in reversed(list(zip(record.steps, steps))):
            if not (step.wrote or step.phase in _WROTE):
                continue
            for reversal in planned.reversals:
                if reversal.delete:
                    if reversal.target not in reverts:
                        reverts.append(reversal.target)
                else:
                    retained.append(f"{reversal.target}: {reversal.reason}")
    moved = _move(record, _E.UNASSIGN, name, record.version, now)
    assert moved is not None
    moved = replace(moved, reverts=tuple((t, "queued") for t in reverts), retained=tuple(retained))
    for index, target in enumerate(reverts):
        ticket = Ticket(name, record.version, Role.REVERT.value, index)
        plan.queue.append(ToQueue(ticket, CommandSpec("Delete", items=(ItemSpec(target),))))
    plan.records[name] = _finish_removal(moved, now)


def _finish_removal(record: Applied, now: float) -> Applied | None:
    """
    Once every Delete of a removal is answered: the record goes, or stays as retained.
    """
    if any(phase in ("queued", "sent") for _, phase in record.reverts):
        return record
    if record.retained:
        return _move(record, _E.RETAIN, record.profile, record.version, now)
    return _move(record, _E.REMOVE, record.profile, record.version, now)


# -- observe ------------------------------------------------------------------------------------


def observe(applied: Mapping[str, Applied], answers: Sequence[Answer], plans: Plans, now: float) -> Plan:
    """
    Move the records by what became of their commands (answers in queue order).
    """
    plan = Plan()
    records = dict(applied)
    for answer in answers:
        ticket = answer.ticket
        record = records.get(ticket.profile)
        if record is None:
            continue
        updated = _OBSERVERS[ticket.role](plan, record, answer, plans, now)
        if updated is not record:
            records[ticket.profile] = updated
            plan.records[ticket.profile] = updated
    # each changed record moves once, to where its steps (or its removal) now stand
    for name, record in list(plan.records.items()):
        assert record is not None
        if ProfileState(record.state) is _S.REMOVING:
            plan.records[name] = _finish_removal(record, now)
        else:
            plan.records[name] = _settle(record, now)
    return plan


def _current(record: Applied, ticket: Ticket) -> bool:
    """
    Whether an answer is about the record as it is (not a version since replaced, nor a profile being removed).
    """
    return ticket.version == record.version and record.state in _ASSIGNED_VALUES and ticket.index < len(record.steps)


def _failing_member(spec: CommandSpec, statuses: tuple[tuple[str, int], ...]) -> str:
    """
    The command (or member of a group) the device refused, for the record.
    """
    for path, code in statuses:
        if not 200 <= code < 300 and path:
            node = spec
            try:
                for part in path.split("."):
                    node = node.commands[int(part) - 1]
            except (ValueError, IndexError):
                break
            return describe(node)
    return describe(spec)


#: Statuses with which a command did what a profile wants although it is not 2xx: Add of a node that exists (418).
_AS_GOOD_AS_DONE: Final = frozenset({418})


def _observe_apply(plan: Plan, record: Applied, answer: Answer, plans: Plans, now: float) -> Applied:
    ticket = answer.ticket
    if not _current(record, ticket):
        return record
    step = record.steps[ticket.index]
    if step.phase not in (_QUEUED, _SENT):
        return record
    planned = _planned(plans, ticket)
    if answer.state == "sent":
        if step.phase == _SENT:
            return record
        updated = _step(step, _SENT)
    elif answer.state == "done" or (answer.status in _AS_GOOD_AS_DONE and planned is not None and planned.readbacks):
        if planned is not None and planned.readbacks:
            updated = _step(step, _APPLIED, tuple(range(len(planned.readbacks))), True)
        else:
            updated = _step(step, _VERIFIED, (), True)
    else:
        what = _failing_member(planned.command, answer.statuses) if planned is not None and planned.command else "the command"
        reason = f"answered {answer.status}" if answer.status is not None else (answer.error or "not sent")
        updated = replace(step, phase=_FAILED, status=answer.status, command=what, error=f"{what}: {reason}")
        plan.notes.append(("{device_id}: profile {profile} v{version}: {what} {reason}",
                           {"profile": record.profile, "version": record.version, "what": what, "reason": reason}))
    return _set_step(record, ticket.index, updated)


def _planned(plans: Plans, ticket: Ticket) -> PlannedStep | None:
    steps = plans(ticket.profile, ticket.version)
    if steps is None or ticket.index >= len(steps):
        return None
    return steps[ticket.index]


def _read(answer: Answer, target: str) -> tuple[str | None, str | None]:
    """
    The value (and its encoding) a Get answered for C{target}.
    """
    for result in answer.results:
        if result.get("source") in (target, None):
            return result.get("data"), result.get("encoding")
    if answer.results:
        first = answer.results[0]
        return first.get("data"), first.get("encoding")
    return None, None


def _matches(planned: PlannedStep, part: int, answer: Answer) -> tuple[bool, str]:
    readback = planned.readbacks[part]
    found, encoding = _read(answer, readback.target)
    if answer.state == "done" and same_value(readback.format, readback.data, found, encoding):
        return True, ""
    if answer.state != "done":
        return False, f"Get {readback.target} answered {answer.status}"
    shown = "nothing" if found is None else repr(found[:80])
    return False, f"Get {readback.target} read {shown}, expected {readback.data[:80]!r}"


def _observe_check(plan: Plan, record: Applied, answer: Answer, plans: Plans, now: float) -> Applied:
    ticket = answer.ticket
    if answer.state == "sent" or not _current(record, ticket):
        return record
    step = record.steps[ticket.index]
    planned = _planned(plans, ticket)
    if step.phase != _APPLIED or ticket.part not in step.left or planned is None or ticket.part >= len(planned.readbacks):
        return record
    good, why = _matches(planned, ticket.part, answer)
    if good:
        left = tuple(p for p in step.left if p != ticket.part)
        updated = _step(step, _APPLIED if left else _VERIFIED, left)
    else:
        status = answer.status if answer.state != "done" else None
        command = f"Get {planned.readbacks[ticket.part].target}"
        updated = replace(step, phase=_FAILED, left=(), status=status, command=command, error=why)
        plan.notes.append(("{device_id}: profile {profile} v{version} not verified: {why}",
                           {"profile": record.profile, "version": record.version, "why": why}))
    return _set_step(record, ticket.index, updated)


#: Read-back statuses that say the value is gone (it drifted), not that reading failed.
_GONE: Final = frozenset({404})


def _observe_verify(plan: Plan, record: Applied, answer: Answer, plans: Plans, now: float) -> Applied:
    ticket = answer.ticket
    if answer.state == "sent" or not _current(record, ticket):
        return record
    step = record.steps[ticket.index]
    planned = _planned(plans, ticket)
    if step.phase != _VERIFIED or planned is None or ticket.part >= len(planned.readbacks):
        return record
    good, why = _matches(planned, ticket.part, answer)
    if good:
        return replace(record, verified_at=now)
    if answer.state != "done" and answer.status not in _GONE:
        return _event(record, now, "unverified", detail=why)
    plan.reconcile = True
    plan.notes.append(("{device_id}: profile {profile} v{version} drifted: {why}; applied again",
                       {"profile": record.profile, "version": record.version, "why": why}))
    drifted = _event(record, now, "drift", detail=why)
    return replace(_set_step(drifted, ticket.index, replace(step, phase=_DRIFTED)), drifted=True)


def _observe_revert(plan: Plan, record: Applied, answer: Answer, plans: Plans, now: float) -> Applied:
    ticket = answer.ticket
    removing = ProfileState(record.state) is _S.REMOVING and ticket.version == record.version
    if not removing:
        # a setting an earlier version made, undone when a newer one was applied
        if answer.state == "failed" and answer.status not in _GONE:
            return _event(record, now, "not undone", version=ticket.version, status=answer.status, error=answer.error)
        return record
    if ticket.index >= len(record.reverts):
        return record
    target, phase = record.reverts[ticket.index]
    if phase not in ("queued", "sent"):
        return record
    if answer.state == "sent":
        new_phase = "sent"
    elif answer.state == "done" or answer.status in _GONE:
        new_phase = "done"
    else:
        new_phase = "failed"
    reverts = record.reverts[: ticket.index] + ((target, new_phase),) + record.reverts[ticket.index + 1 :]
    updated = replace(record, reverts=reverts)
    if new_phase == "failed":
        why = f"answered {answer.status}" if answer.status is not None else (answer.error or "not sent")
        updated = replace(updated, retained=updated.retained + (f"{target}: its Delete {why}",))
    return updated


#: What an answer does, by the role (its stored value) of its command.
_OBSERVERS: Final[Mapping[str, Callable[[Plan, Applied, Answer, Plans, float], Applied]]] = {
    Role.APPLY.value: _observe_apply,
    Role.CHECK.value: _observe_check,
    Role.VERIFY.value: _observe_verify,
    Role.REVERT.value: _observe_revert,
}
