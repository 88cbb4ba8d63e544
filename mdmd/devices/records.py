"""
Device records for the operator's surfaces: units of work C{fn(root, ...)}
returning plain L{DeviceInfo} values (look up, list, count, remove).

Every status change goes through L{mdmd.devices.lifecycle}; this module only
finds records and copies them out. A copy carries the device's DM account
without its secrets (L{mdmd.devices.accounts.public_json}): what reaches an
operator's surface never holds one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from mdmd.desired import reconciler as desired
from mdmd.devices import accounts, lifecycle
from mdmd.devices.lifecycle import DeviceStatus
from mdmd.errors import NotFound
from mdmd.pki.ca import serial_hex
from mdmd.store.models import Device

__all__ = [
    "DeviceInfo",
    "UnknownDevice",
    "device_info",
    "device_record",
    "lookup_device",
    "list_devices",
    "device_counts",
    "remove",
]

Root = MutableMapping[str, Any]


class UnknownDevice(NotFound):
    def __str__(self) -> str:
        return f"no device {self.args[0]!r}"


@dataclass(frozen=True)
class DeviceInfo:
    """
    A plain copy of a device record.
    """

    device_id: str
    hw_dev_id: str
    device_name: str
    os_version: str
    os_edition: str
    enrollment_type: str
    device_type: str
    application_version: str
    context: tuple[tuple[str, str], ...]
    user: str
    auth_policy: str
    certificate_store: str
    cert_serial: int | None
    cert_not_after: float | None
    status: str
    #: a L{mdmd.devices.accounts.DeviceKind} value
    kind: str
    first_enrolled_at: float
    enrolled_at: float
    enrollment_count: int
    renewed_at: float | None
    unenrolled_at: float | None
    removed_at: float | None
    last_contact: float | None
    #: the DM account, secrets only as "set" or "not set" (L{accounts.public_json})
    account: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        value = dataclasses.asdict(self)
        value["context"] = [list(item) for item in self.context]
        value["mac_addresses"] = [v for name, v in self.context if name == "MAC"]
        serial = value.pop("cert_serial")
        value["certificate_serial"] = None if serial is None else serial_hex(serial)
        value["certificate_not_after"] = value.pop("cert_not_after")
        return value


#: DeviceInfo fields copied from the record's attributes of the same name.
_INFO_FIELDS = tuple(f.name for f in dataclasses.fields(DeviceInfo) if f.name != "account")


def device_info(device: Device) -> DeviceInfo:
    """
    A plain copy of C{device}, its account without secrets.
    """
    return DeviceInfo(
        **{name: getattr(device, name) for name in _INFO_FIELDS},
        account=accounts.public_json(accounts.account_of(device)),
    )


def device_record(root: Root, device_id: str) -> Device:
    """
    The record of C{device_id}, for use inside a unit of work.

    @raise UnknownDevice: if there is no such device.
    """
    device: Device | None = root["devices"].get(device_id)
    if device is None:
        raise UnknownDevice(device_id)
    return device


def lookup_device(root: Root, device_id: str) -> DeviceInfo | None:
    device = root["devices"].get(device_id)
    return None if device is None else device_info(device)


def list_devices(root: Root, kind: str | None = None) -> list[DeviceInfo]:
    """
    Every device (of one L{accounts.DeviceKind} value, if given), ordered by DeviceID.
    """
    return [
        device_info(device) for device in root["devices"].values() if kind is None or device.kind == kind
    ]


def device_counts(root: Root) -> dict[str, int]:
    """
    How many devices are in each status (keyed by the L{DeviceStatus} values).
    """
    counts = {status.value: 0 for status in DeviceStatus}
    for device in root["devices"].values():
        counts[device.status] = counts.get(device.status, 0) + 1
    return counts


def remove(root: Root, device_id: str, now: float) -> DeviceInfo:
    """
    An operator removes a device: its certificate is revoked, so its DM sessions are refused.

    @raise UnknownDevice: if there is no such device.
    """
    device = device_record(root, device_id)
    lifecycle.remove(root, device, now)
    desired.forget(root, device_id)
    return device_info(device)
