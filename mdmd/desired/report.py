"""
Compliance: how many devices are in each state per profile (from the kept
counts, never by walking devices), which devices of a profile are in a
state (a page of the (profile, state, device) index), and what one device
has of its profiles.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Final

from mdmd.desired.catalog import list_profiles, profile_counts, profile_record
from mdmd.desired.convergence import COUNTED, ProfileState
from mdmd.desired.reconciler import records_of
from mdmd.devices.records import UnknownDevice
from mdmd.errors import PeerError

__all__ = ["BadStateFilter", "report", "profile_status", "device_profiles", "NOT_COMPLIANT", "STATES"]

Root = MutableMapping[str, Any]

#: Every state a device's record of a profile can be in.
STATES: Final = tuple(state.value for state in COUNTED)
#: The states of a device that does not (or not yet) have what a profile sets.
NOT_COMPLIANT: Final = tuple(
    state.value for state in COUNTED if state not in (ProfileState.VERIFIED, ProfileState.REMOVING)
)


class BadStateFilter(PeerError):
    """
    A listing filtered by a state no profile record has (a bad query argument: 400).
    """

    def __str__(self) -> str:
        return f"unknown state {self.args[0]!r} (states: {', '.join(STATES)})"


def report(root: Root, limit: int = 100) -> dict[str, Any]:
    """
    Per profile: its devices per state; then up to C{limit} (device,
    profile) pairs that are not verified (C{more}: there are others).
    """
    profiles: list[dict[str, Any]] = []
    attention: list[dict[str, Any]] = []
    more = False
    for info in list_profiles(root):
        counts = info.counts
        profiles.append(
            {
                "profile": info.name,
                "version": info.latest,
                "groups": list(info.groups),
                "counts": counts,
                "devices": sum(v for k, v in counts.items() if k not in (ProfileState.REMOVING.value,)),
            }
        )
        for state in NOT_COMPLIANT:
            if not counts.get(state):
                continue
            for _, _, device_id in _index_page(root, info.name, state, None, limit - len(attention) + 1):
                if len(attention) >= limit:
                    more = True
                    break
                attention.append({"device_id": device_id, "profile": info.name, "state": state})
    return {"profiles": profiles, "not_verified": attention, "more": more}


def _index_page(root: Root, profile: str, state: str, after: str | None, limit: int) -> list[tuple[str, str, str]]:
    index = root["desired_index"]
    low = (profile, state, after) if after is not None else (profile, state)
    found = []
    for key in index.keys(min=low, max=(profile, state + "\0"), excludemin=after is not None, excludemax=True):
        found.append(key)
        if len(found) >= limit:
            break
    return found


def profile_status(root: Root, name: str, state: str | None, after: str | None, limit: int) -> dict[str, Any]:
    """
    A profile's counts and a page of its devices with their records: those
    in C{state} after the device id C{after} (C{next}: where the next page
    starts), or, without a state, the first C{limit} of every state.
    """
    profile = profile_record(root, name)
    if state is not None and state not in STATES:
        raise BadStateFilter(state)
    keys: list[tuple[str, str, str]] = []
    for current in [state] if state is not None else list(STATES):
        keys += _index_page(root, name, current, after if state is not None else None, limit + 1 - len(keys))
        if len(keys) > limit:
            break
    more = len(keys) > limit
    keys = keys[:limit]
    devices: list[dict[str, Any]] = []
    for _, found_state, device_id in keys:
        record = records_of(root, device_id).get(name)
        devices.append(
            {
                "device_id": device_id,
                "state": found_state,
                "version": None if record is None else record.version,
                "failure": None if record is None else record.failure,
                "retained": [] if record is None else list(record.retained),
                "verified_at": None if record is None else record.verified_at,
            }
        )
    return {
        "profile": name,
        "version": profile.latest,
        "counts": profile_counts(root, name),
        "devices": devices,
        "more": more,
        "next": devices[-1]["device_id"] if more and state is not None else None,
    }


def device_profiles(root: Root, device_id: str) -> dict[str, Any]:
    """
    What one device has of its profiles: each record, and the profiles not verified.
    """
    if device_id not in root["devices"]:
        raise UnknownDevice(device_id)
    records = records_of(root, device_id)
    state = root["desired"].get(device_id)
    return {
        "device_id": device_id,
        "profiles": [records[name].as_json() for name in sorted(records)],
        "not_verified": sorted(name for name, r in records.items() if r.state in NOT_COMPLIANT),
        "next_verify": None if state is None else state.next_verify,
    }
