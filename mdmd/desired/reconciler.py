"""
Desired state in the DM check-in: the engine (L{mdmd.desired.engine}) run
against one device's records, inside the check-in's transaction.

L{mdmd.dm.checkin.exchange} calls three hooks:

  - L{before_message}, before the device's pending commands are read: when
    what the device is to have may have changed (the desired-state revision
    moved since it last reconciled, or its facts changed), or its periodic
    verification is due (at the start of a session), it reconciles: its
    groups are evaluated, its desired profiles compared with its records,
    and the commands that follow are queued, to go out in this very answer.
    Otherwise it costs a lookup and a comparison.
  - L{after_message}, once the engine's effects are applied: the commands of
    ours that moved (sent, answered) move the records; a drift found is
    applied again (queued now, sent with the next message or session).
  - L{facts_changed}, when the device's inventory or DevInfo changed:
    the device evaluates its rule groups at once (in this transaction).

Records, counts (L{mdmd.desired.tally}) and the (profile, state, device)
index change together, in L{_store}. Nothing here walks other devices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from mdmd.desired import catalog, tally
from mdmd.desired.catalog import RULE_GROUPS, group_key, profile_key
from mdmd.desired.convergence import ProfileState
from mdmd.desired.engine import Answer, Applied, Desired, Plan, Ticket, observe, reconcile
from mdmd.desired.profiles import PlannedStep, Step, plan_step
from mdmd.desired.rules import RECORD_FACTS, Rule, parse_rule
from mdmd.dm import queue as dm_queue
from mdmd.store.models import CommandQueue, DesiredState, Device, DeviceGroup, ProfileVersion

__all__ = [
    "ProfileSettings",
    "before_message",
    "after_message",
    "facts_changed",
    "forget",
    "records_of",
    "device_facts",
    "variable_values",
]

Root = MutableMapping[str, Any]
Note = tuple[str, dict[str, Any]]

#: Queue states of a command that is over, as its answer reads (the other
#: states are still waiting: queued, and the device's own 202 "accepted").
_DONE: Final = frozenset({"done", "halted"})
_FAILED: Final = frozenset({"failed", "not-executed", "cancelled"})


@dataclass(frozen=True)
class ProfileSettings:
    """
    [profiles]: how often verified values are read back; our server id for C{$SERVER_ID}.
    """

    verify_interval: float = 86400.0
    #: the configured provider id, for devices whose account has no server id of its own
    server_id: str = ""
    #: how many devices a wake-up of a group pushes per unit of work
    push_batch: int = 500


# -- facts --------------------------------------------------------------------------------------


def device_facts(device: Device) -> dict[str, str | None]:
    """
    What rules match: DevInfo, the inventory's nodes, and some of the record's fields.
    """
    facts: dict[str, str | None] = {}
    facts.update(device.devinfo or {})
    facts.update(device.inventory or {})
    for name in RECORD_FACTS:
        facts[name] = getattr(device, name) or None
    return facts


def variable_values(device: Device, settings: ProfileSettings) -> dict[str, str | None]:
    """
    The device's value of every profile variable (L{mdmd.desired.variables.VARIABLES}).
    """
    inventory = device.inventory or {}
    devinfo = device.devinfo or {}
    return {
        "DEVICE_ID": device.device_id,
        "ENROLLED_USER": device.user or None,
        "MSISDN": device.msisdn or None,
        "IMSI": device.imsi or None,
        "HOSTNAME": inventory.get("./DevDetail/Ext/Microsoft/DNSComputerName") or device.device_name or None,
        "DEVICE_NAME": device.device_name or None,
        "HW_DEV_ID": device.hw_dev_id or None,
        "SERVER_ID": device.dm_server_id or settings.server_id or None,
        "OS_VERSION": inventory.get("./DevDetail/SwV") or device.os_version or None,
        "MANUFACTURER": devinfo.get("./DevInfo/Man") or inventory.get("./DevInfo/Man"),
        "MODEL": devinfo.get("./DevInfo/Mod") or inventory.get("./DevInfo/Mod"),
    }


# -- one device's work ---------------------------------------------------------------------------


def _steps(version: ProfileVersion) -> tuple[Step, ...]:
    cached: tuple[Step, ...] | None = getattr(version, "_v_steps", None)
    if cached is None:
        cached = tuple(Step.from_json(s) for s in version.steps)
        version._v_steps = cached  # a volatile attribute: never stored, dropped with the object's state
    return cached


def _rule(group: DeviceGroup) -> Rule:
    cached: tuple[str, Rule] | None = getattr(group, "_v_rule", None)
    if cached is None or cached[0] != group.rule:
        cached = (group.rule, parse_rule(group.rule))
        group._v_rule = cached
    return cached[1]


@dataclass
class _Work:
    root: Root
    device: Device
    queue: CommandQueue
    now: float
    settings: ProfileSettings
    state: DesiredState
    notes: list[Note] = field(default_factory=list)
    _values: dict[str, str | None] | None = None
    _planned: dict[tuple[str, int], tuple[PlannedStep, ...] | None] = field(default_factory=dict)

    def plans(self, name: str, version: int) -> tuple[PlannedStep, ...] | None:
        """
        A version's steps as this device gets them (what the engine's C{plans} asks).
        """
        key = (name, version)
        if key in self._planned:
            return self._planned[key]
        profile = self.root["profiles"].get(name)
        found: ProfileVersion | None = None if profile is None else profile.versions.get(version)
        result: tuple[PlannedStep, ...] | None = None
        if found is not None:
            steps = _steps(found)
            if any(step.variables for step in steps):
                if self._values is None:
                    self._values = variable_values(self.device, self.settings)
                result = tuple(plan_step(step, self._values) for step in steps)
            else:
                result = getattr(found, "_v_plan", None)
                if result is None:
                    result = tuple(plan_step(step, {}) for step in steps)
                    found._v_plan = result
        self._planned[key] = result
        return result

    def records(self) -> dict[str, Applied]:
        return {name: Applied.from_dict(value) for name, value in self.state.profiles.items()}

    def tickets(self) -> set[Ticket]:
        return {Ticket.of(value) for value in self.state.inflight.values()}


def _groups_of(work: _Work) -> set[str]:
    """
    The device's groups (rule groups evaluated now, their member sets and counts kept in step).
    """
    device = work.device
    found = {"all", device.kind}
    groups = work.root["groups"]
    if not len(groups):
        return found
    facts: dict[str, str | None] | None = None
    for name, group in groups.items():
        member = device.device_id in group.members
        if group.rule:
            if facts is None:
                facts = device_facts(device)
            matches = _rule(group).matches(facts)
            if matches != member:
                if matches:
                    group.members.insert(device.device_id)
                else:
                    group.members.remove(device.device_id)
                tally.incr(work.root, group_key(name), 1 if matches else -1)
                work.notes.append(("{device_id}: {change} rule group {group}",
                                   {"change": "joins" if matches else "leaves", "group": name}))
            member = matches
        if member:
            found.add(name)
    return found


def _desired(work: _Work) -> dict[str, Desired]:
    assignments = work.root["assignments"]
    if not len(assignments):
        return {}
    names: set[str] = set()
    for group in _groups_of(work):
        names.update(assignments.get(group, ()))
    desired = {}
    for name in names:
        profile = work.root["profiles"].get(name)
        if profile is not None and profile.removed_at is None and profile.latest:
            desired[name] = Desired(name, profile.latest)
    return desired


def _store(work: _Work, name: str, record: Applied | None) -> None:
    """
    The one place a device's record of a profile changes, with its count and index entry.
    """
    old = work.state.profiles.get(name)
    old_state = None if old is None else old["state"]
    new_state = None if record is None else record.state
    device_id = work.device.device_id
    if old_state != new_state:
        if old_state is not None:
            tally.incr(work.root, profile_key(name, old_state), -1)
            work.root["desired_index"].remove((name, old_state, device_id))
        if new_state is not None:
            tally.incr(work.root, profile_key(name, new_state), 1)
            work.root["desired_index"].insert((name, new_state, device_id))
    profiles = dict(work.state.profiles)
    if record is None:
        profiles.pop(name, None)
    else:
        profiles[name] = record.as_dict()
    work.state.profiles = profiles


#: Record states whose periodic verification (a read-back, or a retry) is kept on schedule.
_SCHEDULED: Final = frozenset({ProfileState.VERIFIED.value, ProfileState.FAILED.value})


def _carry_out(work: _Work, plan: Plan, verified: bool = False) -> None:
    """
    Apply an engine plan: records, withdrawn commands, queued commands, the next verification.
    """
    for name, record in plan.records.items():
        _store(work, name, record)
    inflight = dict(work.state.inflight)
    if plan.cancel:
        withdraw = set(plan.cancel)
        for seq, value in list(inflight.items()):
            if Ticket.of(value) in withdraw:
                command = work.queue.commands.get(seq)
                if command is not None and command.state == "queued":
                    dm_queue.cancel(work.root, work.device.device_id, seq, work.now)
                    del inflight[seq]
    for item in plan.queue:
        (info,) = dm_queue.enqueue(work.root, [work.device.device_id], item.spec, work.now)
        inflight[info.seq] = item.ticket.as_tuple()
    if plan.cancel or plan.queue:
        work.state.inflight = inflight
    work.notes.extend(plan.notes)
    if plan.queue:
        work.notes.append(("{device_id}: {count} command(s) queued for its profiles", {"count": len(plan.queue)}))
    scheduled = any(value["state"] in _SCHEDULED for value in work.state.profiles.values())
    if not scheduled:
        if work.state.next_verify is not None:
            work.state.next_verify = None
    elif verified or work.state.next_verify is None:
        work.state.next_verify = work.now + work.settings.verify_interval


def _answers(work: _Work, seqs: Iterable[int]) -> list[Answer]:
    """
    What became of these commands of ours (finished ones leave the in-flight map).
    """
    answers = []
    inflight = work.state.inflight
    finished = []
    for seq in sorted(seqs):
        value = inflight.get(seq)
        command = work.queue.commands.get(seq)
        if value is None:
            continue
        ticket = Ticket.of(value)
        if command is None:
            finished.append(seq)
            answers.append(Answer(ticket, "failed", error="the command is gone"))
        elif command.state in _DONE:
            finished.append(seq)
            answers.append(Answer(ticket, "done", command.status, command.statuses, command.results))
        elif command.state in _FAILED:
            finished.append(seq)
            answers.append(Answer(ticket, "failed", command.status, command.statuses, command.results, command.error or command.state))
        elif command.state == "sent":
            answers.append(Answer(ticket, "sent"))
    if finished:
        work.state.inflight = {s: v for s, v in inflight.items() if s not in finished}
    return answers


def _observe(work: _Work, seqs: Iterable[int]) -> bool:
    """
    Move the records by what became of these commands; whether a drift asks for a reconciliation.
    """
    answers = _answers(work, seqs)
    if not answers:
        return False
    plan = observe(work.records(), answers, work.plans, work.now)
    _carry_out(work, plan)
    return plan.reconcile


def _reconcile(work: _Work, verify: bool, current: int) -> None:
    plan = reconcile(_desired(work), work.records(), work.tickets(), work.plans, work.now, verify=verify)
    _carry_out(work, plan, verified=verify)
    work.state.revision = current


# -- the hooks ----------------------------------------------------------------------------------


def before_message(
    root: Root, device: Device, queue: CommandQueue, now: float, settings: ProfileSettings, new_session: bool
) -> list[Note]:
    """
    Reconcile the device if what it is to have may have changed, or (at the
    start of a session) its verification is due; return notes for the log.
    """
    current = catalog.revision(root)
    state: DesiredState | None = root["desired"].get(device.device_id)
    if state is None:
        if current == 0:
            return []
        state = root["desired"][device.device_id] = DesiredState()
    due = new_session and state.next_verify is not None and state.next_verify <= now
    stale = state.revision != current
    catch_up = new_session and bool(state.inflight)
    if not (stale or due or catch_up):
        return []
    work = _Work(root, device, queue, now, settings, state)
    if catch_up:
        # commands given up (or finished unseen) when the session began
        _observe(work, list(state.inflight))
    if stale or due:
        _reconcile(work, due, current)
    return work.notes


def after_message(
    root: Root, device: Device, queue: CommandQueue, seqs: Sequence[int], now: float, settings: ProfileSettings
) -> list[Note]:
    """
    Move the device's records by what its message did to our commands (C{seqs}:
    those sent or answered); reconcile if a drift was found or its facts changed.
    """
    state: DesiredState | None = root["desired"].get(device.device_id)
    if state is None:
        return []
    ours = [seq for seq in seqs if seq in state.inflight]
    current = catalog.revision(root)
    if not ours and state.revision == current:
        return []
    work = _Work(root, device, queue, now, settings, state)
    drifted = _observe(work, ours) if ours else False
    if drifted or state.revision != current:
        _reconcile(work, False, current)
    return work.notes


def facts_changed(root: Root, device: Device) -> None:
    """
    The device's inventory or DevInfo changed: it evaluates its rule groups
    again before its next answer (only if there are rule groups).
    """
    if not tally.read(root, [RULE_GROUPS])[RULE_GROUPS]:
        return
    catalog.mark_stale(root, device.device_id)


def forget(root: Root, device_id: str) -> None:
    """
    The device left (unenrolled, removed): its records, counts, index
    entries and group memberships go. Its queue keeps the history.
    """
    state: DesiredState | None = root["desired"].pop(device_id, None)
    if state is not None:
        for name, value in state.profiles.items():
            tally.incr(root, profile_key(name, value["state"]), -1)
            root["desired_index"].discard((name, value["state"], device_id))
    for name, group in root["groups"].items():
        if device_id in group.members:
            group.members.remove(device_id)
            tally.incr(root, group_key(name), -1)


def records_of(root: Root, device_id: str) -> Mapping[str, Applied]:
    """
    A device's records, by profile (for reports).
    """
    state: DesiredState | None = root["desired"].get(device_id)
    if state is None:
        return {}
    return {name: Applied.from_dict(value) for name, value in state.profiles.items()}

