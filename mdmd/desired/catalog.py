"""
Profiles, groups and assignments in the store: the operator's units of work.

None of them walks devices. What devices are to have changes through the
desired-state revision (a conflict-free counter): assigning, unassigning,
editing or removing a profile, and making or removing a rule group move it,
and each device reconciles against it at its next check-in
(L{mdmd.desired.reconciler}). Adding or removing members of a static group
marks just those devices (the operator named them). Counts (devices per
profile and state, members per group) are kept by L{mdmd.desired.tally} in
the same transactions.

Groups: the built-in C{all} (every managed device), C{windows} and C{omadm}
(by device kind) have no record; static groups list their members; rule
groups match inventory facts (L{mdmd.desired.rules}) and keep the members
found so far (a device is evaluated when it checks in after the rule was
made, and whenever its inventory changes).
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

from mdmd.desired import tally
from mdmd.desired.convergence import COUNTED
from mdmd.desired.profiles import Step, valid_name
from mdmd.desired.rules import parse_rule
from mdmd.devices import lifecycle
from mdmd.errors import Conflict, NotFound
from mdmd.store.models import DesiredState, DeviceGroup, Profile, ProfileVersion

__all__ = [
    "BUILTIN_GROUPS",
    "UnknownProfile",
    "UnknownGroup",
    "ProfileExists",
    "GroupExists",
    "GroupNotStatic",
    "BuiltinGroup",
    "ProfileInfo",
    "GroupInfo",
    "revision",
    "bump",
    "add_profile",
    "edit_profile",
    "remove_profile",
    "profile_info",
    "profile_record",
    "profile_counts",
    "show_profile",
    "list_profiles",
    "assign",
    "unassign",
    "add_group",
    "remove_group",
    "add_members",
    "remove_members",
    "list_groups",
    "show_group",
    "member_page",
    "mark_stale",
    "profile_key",
    "group_key",
]

Root = MutableMapping[str, Any]

#: The built-in groups: name → the device kind it holds (None: every kind).
BUILTIN_GROUPS: Final[dict[str, str | None]] = {"all": None, "windows": "windows", "omadm": "omadm"}
#: The count of rule groups (a device's inventory matters only when there is one).
RULE_GROUPS: Final = ("rule-groups",)


class UnknownProfile(NotFound):
    def __str__(self) -> str:
        return f"no profile {self.args[0]!r}"


class UnknownGroup(NotFound):
    def __str__(self) -> str:
        return f"no group {self.args[0]!r}"


class ProfileExists(Conflict):
    def __str__(self) -> str:
        return f"profile {self.args[0]!r} exists (edit it to make a new version)"


class GroupExists(Conflict):
    def __str__(self) -> str:
        return f"group {self.args[0]!r} exists"


class GroupNotStatic(Conflict):
    """
    Members were named for a rule group (its rule decides them) or a built-in group.
    """


class BuiltinGroup(Conflict):
    """
    A built-in group cannot be made or removed.
    """


def profile_key(name: str, state: str | None) -> tuple[str, ...]:
    return ("profile", name, state or "")


def group_key(name: str) -> tuple[str, ...]:
    return ("group", name)


def revision(root: Root) -> int:
    """
    The desired-state revision (it moves whenever what devices are to have changes).
    """
    return int(root["desired_revision"]())


def bump(root: Root) -> None:
    root["desired_revision"].change(1)


# -- profiles -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileInfo:
    name: str
    latest: int
    description: str
    groups: tuple[str, ...]
    created_at: float
    updated_at: float
    removed_at: float | None
    #: devices per state (of every version)
    counts: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        value = dict(self.__dict__)
        value["groups"] = list(self.groups)
        return value


def profile_record(root: Root, name: str) -> Profile:
    profile: Profile | None = root["profiles"].get(name)
    if profile is None or profile.removed_at is not None:
        raise UnknownProfile(name)
    return profile


def profile_counts(root: Root, name: str) -> dict[str, int]:
    found = tally.read(root, [profile_key(name, state.value) for state in COUNTED])
    return {key[2]: count for key, count in found.items()}


def profile_info(root: Root, profile: Profile) -> ProfileInfo:
    return ProfileInfo(
        name=profile.name,
        latest=profile.latest,
        description=profile.description,
        groups=tuple(profile.groups),
        created_at=profile.created_at,
        updated_at=profile.updated_at,
        removed_at=profile.removed_at,
        counts=profile_counts(root, profile.name),
    )


def _new_version(profile: Profile, steps: Iterable[Step], source: str, now: float) -> int:
    version = profile.latest + 1
    profile.versions[version] = ProfileVersion(version, tuple(s.as_json() for s in steps), source, now)
    profile.latest = version
    profile.updated_at = now
    return version


def add_profile(root: Root, name: str, steps: tuple[Step, ...], source: str, description: str, now: float) -> ProfileInfo:
    """
    A new profile at version 1 (or a removed one brought back, at its next version).

    @raise ProfileExists: if a profile of that name is in use.
    """
    valid_name(name)
    profile: Profile | None = root["profiles"].get(name)
    if profile is not None and profile.removed_at is None:
        raise ProfileExists(name)
    if profile is None:
        profile = root["profiles"][name] = Profile(name, now)
        tally.ensure(root, [profile_key(name, state.value) for state in COUNTED])
    profile.removed_at = None
    profile.description = description
    _new_version(profile, steps, source, now)
    return profile_info(root, profile)


def edit_profile(root: Root, name: str, steps: tuple[Step, ...], source: str, description: str | None, now: float) -> ProfileInfo:
    """
    A new version of a profile: the devices it is assigned to converge on it.
    """
    profile = profile_record(root, name)
    if description is not None:
        profile.description = description
    _new_version(profile, steps, source, now)
    if profile.groups:
        bump(root)
    return profile_info(root, profile)


def remove_profile(root: Root, name: str, now: float) -> ProfileInfo:
    """
    Unassign a profile everywhere and keep it as a tombstone: devices undo it at their next check-in.
    """
    profile = profile_record(root, name)
    for group in profile.groups:
        _drop_assignment(root, group, name)
    profile.groups = ()
    profile.removed_at = now
    profile.updated_at = now
    bump(root)
    return profile_info(root, profile)


def show_profile(root: Root, name: str, version: int | None = None) -> dict[str, Any]:
    """
    A profile with one version's source and steps (the latest by default).
    """
    profile = profile_record(root, name)
    number = profile.latest if version is None else version
    found: ProfileVersion | None = profile.versions.get(number)
    if found is None:
        raise NotFound(f"profile {name!r} has no version {number}")
    value = profile_info(root, profile).as_json()
    value["versions"] = [{"version": v.version, "created_at": v.created_at} for v in profile.versions.values()]
    value["version"] = {
        "version": found.version,
        "created_at": found.created_at,
        "source": found.source,
        "steps": list(found.steps),
    }
    return value


def list_profiles(root: Root) -> list[ProfileInfo]:
    """
    Every profile in use, by name (an operator's catalogue: it does not grow with devices).
    """
    return [profile_info(root, p) for p in root["profiles"].values() if p.removed_at is None]


# -- assignments --------------------------------------------------------------------------------


def _group_exists(root: Root, group: str) -> None:
    if group not in BUILTIN_GROUPS and group not in root["groups"]:
        raise UnknownGroup(group)


def _drop_assignment(root: Root, group: str, name: str) -> None:
    assigned = tuple(p for p in root["assignments"].get(group, ()) if p != name)
    if assigned:
        root["assignments"][group] = assigned
    else:
        root["assignments"].pop(group, None)


def assign(root: Root, name: str, group: str, now: float) -> ProfileInfo:
    """
    Record that the devices of C{group} are to have the profile (O(1): they reconcile at check-in).
    """
    profile = profile_record(root, name)
    _group_exists(root, group)
    if group not in profile.groups:
        profile.groups = tuple(profile.groups) + (group,)
        root["assignments"][group] = tuple(root["assignments"].get(group, ())) + (name,)
        profile.updated_at = now
        bump(root)
    return profile_info(root, profile)


def unassign(root: Root, name: str, group: str, now: float) -> ProfileInfo:
    """
    The devices of C{group} no longer get the profile from it; they undo it at check-in
    (unless another of their groups has it).
    """
    profile = profile_record(root, name)
    if group not in profile.groups:
        raise NotFound(f"profile {name!r} is not assigned to group {group!r}")
    profile.groups = tuple(g for g in profile.groups if g != group)
    _drop_assignment(root, group, name)
    profile.updated_at = now
    bump(root)
    return profile_info(root, profile)


# -- groups ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupInfo:
    name: str
    #: built-in, static or rule
    kind: str
    rule: str
    description: str
    #: members found (None for a built-in group: every device of its kind)
    members: int | None
    profiles: tuple[str, ...]
    created_at: float | None

    def as_json(self) -> dict[str, Any]:
        value = dict(self.__dict__)
        value["profiles"] = list(self.profiles)
        return value


def _group_info(root: Root, name: str) -> GroupInfo:
    profiles = tuple(root["assignments"].get(name, ()))
    if name in BUILTIN_GROUPS:
        kind = BUILTIN_GROUPS[name]
        text = f"every managed {kind} device" if kind else "every managed device"
        return GroupInfo(name, "built-in", "", text, None, profiles, None)
    group: DeviceGroup = root["groups"][name]
    members = tally.read(root, [group_key(name)])[group_key(name)]
    return GroupInfo(name, "rule" if group.rule else "static", group.rule, group.description, members, profiles, group.created_at)


def _static(root: Root, name: str) -> DeviceGroup:
    if name in BUILTIN_GROUPS:
        raise GroupNotStatic(f"{name} is a built-in group: its members are {BUILTIN_GROUPS[name] or 'every'} device(s)")
    group: DeviceGroup | None = root["groups"].get(name)
    if group is None:
        raise UnknownGroup(name)
    if group.rule:
        raise GroupNotStatic(f"group {name!r} is a rule group ({group.rule}): its rule decides its members")
    return group


def mark_stale(root: Root, device_id: str) -> None:
    """
    The device reconciles at its next message (its groups changed).
    """
    state: DesiredState | None = root["desired"].get(device_id)
    if state is None:
        state = root["desired"][device_id] = DesiredState()
    elif state.revision == -1:
        return
    state.revision = -1


def _known_devices(root: Root, device_ids: Iterable[str]) -> list[str]:
    ids = list(dict.fromkeys(device_ids))
    unknown = [d for d in ids if d not in root["devices"]]
    if unknown:
        raise NotFound(f"unknown device(s): {', '.join(unknown)}")
    return ids


def add_group(root: Root, name: str, rule: str | None, description: str, devices: Iterable[str], now: float) -> GroupInfo:
    """
    A static group (with C{devices} as its first members) or a rule group.
    """
    valid_name(name, "group")
    if name in BUILTIN_GROUPS:
        raise BuiltinGroup(f"{name} is a built-in group")
    if name in root["groups"]:
        raise GroupExists(name)
    text = parse_rule(rule).text if rule is not None else ""
    ids = _known_devices(root, devices)
    if text and ids:
        raise GroupNotStatic("a rule group's members come from its rule: name no devices")
    group = root["groups"][name] = DeviceGroup(name, now, text)
    group.description = description
    tally.ensure(root, [group_key(name)])
    if text:
        tally.incr(root, RULE_GROUPS, 1)
        bump(root)
    for device_id in ids:
        _join(root, group, device_id)
    return _group_info(root, name)


def _join(root: Root, group: DeviceGroup, device_id: str) -> bool:
    if group.members.insert(device_id):
        tally.incr(root, group_key(group.name), 1)
        mark_stale(root, device_id)
        return True
    return False


def _leave(root: Root, group: DeviceGroup, device_id: str) -> bool:
    if device_id in group.members:
        group.members.remove(device_id)
        tally.incr(root, group_key(group.name), -1)
        mark_stale(root, device_id)
        return True
    return False


def add_members(root: Root, name: str, devices: Iterable[str]) -> tuple[GroupInfo, int]:
    """
    Add devices to a static group; return the group and how many were not members yet.
    """
    group = _static(root, name)
    added = sum(_join(root, group, d) for d in _known_devices(root, devices))
    return _group_info(root, name), added


def remove_members(root: Root, name: str, devices: Iterable[str]) -> tuple[GroupInfo, int]:
    """
    Remove devices from a static group; return the group and how many were members.
    """
    group = _static(root, name)
    removed = sum(_leave(root, group, d) for d in dict.fromkeys(devices))
    return _group_info(root, name), removed


def remove_group(root: Root, name: str, now: float) -> GroupInfo:
    """
    Remove a group and its assignments; its members undo what it gave them at their next check-in.
    """
    if name in BUILTIN_GROUPS:
        raise BuiltinGroup(f"{name} is a built-in group")
    group: DeviceGroup | None = root["groups"].get(name)
    if group is None:
        raise UnknownGroup(name)
    info = _group_info(root, name)
    for profile_name in root["assignments"].get(name, ()):
        profile: Profile | None = root["profiles"].get(profile_name)
        if profile is not None:
            profile.groups = tuple(g for g in profile.groups if g != name)
    root["assignments"].pop(name, None)
    del root["groups"][name]
    tally.drop(root, [group_key(name)])
    if group.rule:
        tally.incr(root, RULE_GROUPS, -1)
    bump(root)
    return info


def list_groups(root: Root) -> list[GroupInfo]:
    """
    The built-in groups, then every group an operator made, by name.
    """
    return [_group_info(root, name) for name in (*BUILTIN_GROUPS, *root["groups"].keys())]


def show_group(root: Root, name: str, after: str | None = None, limit: int = 100) -> dict[str, Any]:
    """
    A group and a page of its members (for a built-in group, of the devices of its kind).
    """
    _group_exists(root, name)
    value = _group_info(root, name).as_json()
    members, following = member_page(root, name, after, limit, pushable=False)
    value["member_page"] = {"devices": members, "next": following}
    return value


def member_page(
    root: Root, name: str, after: str | None, limit: int, pushable: bool = True
) -> tuple[list[str], str | None]:
    """
    Up to C{limit} members of a group after the device id C{after}, and
    where the next page starts (None: this was the last). C{pushable}: only
    managed devices with a number to push to.

    A built-in group pages through the devices themselves: meant for the
    store's threads, a page at a time (waking a group), never for a request.
    """
    _group_exists(root, name)
    builtin = name in BUILTIN_GROUPS
    kind = BUILTIN_GROUPS.get(name)
    if builtin:
        keys: Iterable[str] = root["devices"].keys(min=after, excludemin=after is not None)
    else:
        keys = root["groups"][name].members.keys(min=after, excludemin=after is not None)
    found: list[str] = []
    last: str | None = None
    scanned = 0
    for device_id in keys:
        scanned += 1
        last = device_id
        device = root["devices"].get(device_id)
        if device is not None and (not builtin or kind is None or device.kind == kind):
            if not pushable or (lifecycle.manageable(device) and device.msisdn):
                found.append(device_id)
        if len(found) >= limit or scanned >= 10 * limit:
            return found, last
    return found, None
