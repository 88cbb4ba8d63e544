"""
Device actions (wipe, lock, unlock, reboot): one Exec each, queued and tracked like any command.

L{request} checks the device can do it (L{mdmd.dm.csp.action_target}: its
kind, Windows version and edition, whether a classic device reported LAWMO),
queues the Exec and keeps which action the command carries out under the
root's C{device_actions}; the action's state is its command's (queued →
sent → done or failed, with the device's status). L{list_actions} lists a
device's actions, newest first.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from mdmd.devices.records import device_record
from mdmd.dm import queue as dm_queue
from mdmd.dm.csp import LAWMO_STATE, DeviceAction, action_command

__all__ = ["ActionInfo", "request", "list_actions"]

Root = MutableMapping[str, Any]


@dataclass(frozen=True)
class ActionInfo:
    device_id: str
    #: the command's sequence number in the device's queue
    seq: int
    action: str
    node: str
    #: its command's state: queued, sent, done, failed (or accepted, cancelled...)
    state: str
    status: int | None
    error: str | None
    requested_at: float
    updated_at: float

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _info(root: Root, device_id: str, seq: int, recorded: dict[str, Any]) -> ActionInfo:
    command = dm_queue.get_command(root, device_id, seq)
    return ActionInfo(
        device_id=device_id,
        seq=seq,
        action=recorded["action"],
        node=recorded["node"],
        state=command.state,
        status=command.status,
        error=command.error,
        requested_at=recorded["requested_at"],
        updated_at=command.updated_at,
    )


def request(root: Root, device_id: str, action: DeviceAction, now: float) -> ActionInfo:
    """
    Queue the Exec that carries out C{action} on the device.

    @raise mdmd.devices.records.UnknownDevice: if there is no such device.
    @raise mdmd.dm.csp.UnsupportedAction: if the device cannot do it.
    @raise mdmd.dm.queue.NotManageable: if it is no longer enrolled.
    """
    device = device_record(root, device_id)
    inventory = device.inventory or {}
    spec = action_command(
        action,
        device.kind,
        windows_version=inventory.get("./DevDetail/SwV") or device.os_version or None,
        windows_edition=device.os_edition,
        lawmo_reported=inventory.get(LAWMO_STATE) is not None,
    )
    (queued,) = dm_queue.enqueue(root, [device_id], spec, now)
    recorded = {"action": action.value, "node": spec.items[0].target, "requested_at": now}
    root["device_actions"][(device_id, queued.seq)] = recorded
    return _info(root, device_id, queued.seq, recorded)


def list_actions(root: Root, device_id: str) -> list[ActionInfo]:
    """
    The device's actions, newest first.
    """
    device_record(root, device_id)
    found = root["device_actions"].items(min=(device_id,), max=(device_id, 2**62))
    return [_info(root, device_id, seq, recorded) for (_, seq), recorded in reversed(list(found))]
