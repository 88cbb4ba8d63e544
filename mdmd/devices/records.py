"""
Device records for the operator's surfaces: units of work C{fn(root, ...)}
returning plain L{DeviceInfo} values (look up, page through, count, remove).

Every status change goes through L{mdmd.devices.lifecycle}; this module only
finds records and copies them out. A copy carries the device's DM account
without its secrets (L{mdmd.devices.accounts.public_json}): what reaches an
operator's surface never holds one.

Listing pages (L{device_page}, L{mdmd.store.paging}) in DeviceID order. A
filter on status or kind walks the member set the lifecycle keeps for that
value (the smallest, when both are given; the other is checked by
membership), never the devices it does not list; the other filters (user,
last contact) are checked on each record, within the page's scan limit.
Counting reads the lifecycle's counters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from mdmd.desired import reconciler as desired
from mdmd.devices import accounts, lifecycle
from mdmd.errors import NotFound
from mdmd.pki.ca import serial_hex
from mdmd.store.counters import Family
from mdmd.store.models import Device
from mdmd.store.paging import Listing, Page, PageRequest, keys_after

__all__ = [
    "DeviceInfo",
    "DeviceQuery",
    "LISTING",
    "UnknownDevice",
    "device_info",
    "device_record",
    "lookup_device",
    "list_devices",
    "device_page",
    "device_counts",
    "kind_counts",
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
        # field by field, not dataclasses.asdict: its deep copy is most of a listing page's time
        value = {name: getattr(self, name) for name in _JSON_FIELDS}
        value["account"] = dict(self.account)
        value["context"] = [list(item) for item in self.context]
        value["mac_addresses"] = [v for name, v in self.context if name == "MAC"]
        serial = value.pop("cert_serial")
        value["certificate_serial"] = None if serial is None else serial_hex(serial)
        value["certificate_not_after"] = value.pop("cert_not_after")
        return value


_JSON_FIELDS = tuple(f.name for f in dataclasses.fields(DeviceInfo))
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
    Every device (of one L{accounts.DeviceKind} value, if given), ordered by
    DeviceID: for tests and small tools. Operators' surfaces page (L{device_page}).
    """
    return [
        device_info(device) for device in root["devices"].values() if kind is None or device.kind == kind
    ]


#: Devices, in DeviceID order.
LISTING = Listing("devices", str)


@dataclass(frozen=True)
class DeviceQuery:
    """
    Which devices a listing wants: every filter given holds for each.
    """

    #: a L{lifecycle.DeviceStatus} value
    status: str | None = None
    #: a L{accounts.DeviceKind} value
    kind: str | None = None
    #: who enrolled it (compared case-insensitively)
    user: str | None = None
    #: its last contact was before this time (POSIX seconds); a device never
    #: in contact counts as before any time
    contact_before: float | None = None
    #: its last contact was at or after this time
    contact_after: float | None = None

    def indexed(self) -> list[tuple[Family, str]]:
        """
        The filters a member set serves, as (family, value). Another indexed
        filter (issue 14's groups: a member family per group) is another entry here.
        """
        found = []
        if self.status is not None:
            found.append((lifecycle.STATUSES, self.status))
        if self.kind is not None:
            found.append((lifecycle.KINDS, self.kind))
        return found

    def admits(self, device: Device) -> bool:
        """
        Whether the record passes the filters no index serves.
        """
        if self.user is not None and device.user.casefold() != self.user.casefold():
            return False
        contact = device.last_contact
        if self.contact_before is not None and contact is not None and contact >= self.contact_before:
            return False
        if self.contact_after is not None and (contact is None or contact < self.contact_after):
            return False
        return True


def device_page(root: Root, query: DeviceQuery, request: PageRequest) -> Page[DeviceInfo]:
    """
    One page of the devices C{query} wants, by DeviceID.

    @raise mdmd.store.paging.BadCursor: if the request's cursor is not one of this listing.
    """
    after, _ = LISTING.start(request)
    devices = root["devices"]
    indexed = sorted(query.indexed(), key=lambda item: item[0].count(root, item[1]))
    if indexed:
        family, value = indexed[0]
        keys = keys_after(family.member_set(root, value), after)
    else:
        keys = keys_after(devices, after)
    others = [family.member_set(root, value) for family, value in indexed[1:]]

    def load(device_id: str) -> DeviceInfo | None:
        if any(device_id not in members for members in others):
            return None
        device: Device | None = devices.get(device_id)
        if device is None or not query.admits(device):
            return None
        return device_info(device)

    return LISTING.collect(keys, load, request)


def device_counts(root: Root) -> dict[str, int]:
    """
    How many devices are in each status (keyed by the L{lifecycle.DeviceStatus}
    values), from the lifecycle's counters.
    """
    return lifecycle.STATUSES.counts(root)


def kind_counts(root: Root) -> dict[str, int]:
    """
    How many devices are of each kind (keyed by the L{accounts.DeviceKind} values).
    """
    return lifecycle.KINDS.counts(root)


def remove(root: Root, device_id: str, now: float) -> DeviceInfo:
    """
    An operator removes a device: its certificate is revoked, so its DM sessions are refused.

    @raise UnknownDevice: if there is no such device.
    """
    device = device_record(root, device_id)
    lifecycle.remove(root, device, now)
    desired.forget(root, device_id)
    return device_info(device)
