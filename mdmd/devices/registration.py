"""
Classic OMA DM devices, registered by an operator: units of work C{fn(root, ...)}
that register one device, import many, or edit an account.

A registration is one transaction: the record (through
L{mdmd.devices.lifecycle.register}), its account
(L{mdmd.devices.accounts}) and the Gets of its inventory, queued for its
first session. What an operator gives arrives as text by field name (the
admin API's JSON, a CSV row: L{COLUMNS}); secrets not given are generated
and returned once, in L{Registered.secrets}, never again.

An import (L{import_devices}) is all or nothing: every row is checked first
(its fields, duplicates within the import, the devices already known) and
every bad row is reported in one L{ImportRefused}; only then is anything
written. It is idempotent: a row naming a device already registered with
the same values for every field the row gives (nonces aside, which change
with every session) is left unchanged, so an import can be sent again
after a lost answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from mdmd.devices import accounts, lifecycle
from mdmd.devices.accounts import DeviceAccount, DeviceKind, InvalidAccount
from mdmd.devices.lifecycle import DeviceStatus, Event
from mdmd.devices.records import DeviceInfo, device_info, device_record
from mdmd.dm import queue as dm_queue
from mdmd.dm.commands import parse_spec
from mdmd.enroll.wstep import valid_device_id
from mdmd.errors import Conflict, PeerError
from mdmd.store.models import Device

__all__ = [
    "COLUMNS",
    "MAX_IMPORT",
    "RegistrationSettings",
    "Registered",
    "RowOutcome",
    "Imported",
    "Edited",
    "RowProblem",
    "InvalidRegistration",
    "DeviceExists",
    "AccountNotEditable",
    "ImportRefused",
    "ImportConflict",
    "register",
    "import_devices",
    "edit_account",
]

Root = MutableMapping[str, Any]
Random = Callable[[int], bytes]

#: What identifies a registration besides its account, then the account's fields:
#: the keys of a registration's JSON and the columns of an import's CSV.
COLUMNS: Final = ("device_id", "kind", *accounts.FIELDS)
#: The most devices one import registers (one transaction; split larger fleets).
MAX_IMPORT: Final = 5000


@dataclass(frozen=True)
class RegistrationSettings:
    """
    What registering a classic device takes from the configuration.
    """

    #: the server id of devices registered without one ([enrollment] provider_id)
    server_id: str = "mdmd"
    #: nodes read with Get in a classic device's first session ([dm] inventory_omadm)
    inventory: tuple[str, ...] = ()
    #: whether a kind's devices need a TLS client certificate unless they say
    #: otherwise ([dm] require_client_certificate_windows / _omadm)
    certificate_defaults: Mapping[DeviceKind, bool] = dataclasses.field(
        default_factory=lambda: {DeviceKind.WINDOWS: True, DeviceKind.OMADM: False}
    )


class InvalidRegistration(InvalidAccount):
    """
    A registration names no usable device, a kind that is not registered, or a bad account field.
    """


class DeviceExists(Conflict):
    """
    The device is enrolled or registered already (or unenrolled: remove it first).
    """


class AccountNotEditable(Conflict):
    """
    A Windows device's credentials and server id are its enrollment's: an operator cannot set them.
    """


@dataclass(frozen=True)
class RowProblem:
    """
    Why one row of an import cannot be registered.
    """

    #: its index in the import (0 for the first row)
    row: int
    device_id: str
    error: str
    #: the row is fine but contradicts a device we have (otherwise it is invalid)
    conflict: bool = False

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ImportRefused(PeerError):
    """
    Rows of an import are invalid; nothing was imported. C{problems} lists each bad row.
    """

    def __init__(self, problems: Sequence[RowProblem]) -> None:
        count = len(problems)
        super().__init__(f"{count} bad row{'s' if count != 1 else ''}; nothing was imported")
        self.problems = tuple(problems)

    @property
    def details(self) -> dict[str, Any]:
        """
        What the admin API adds to its error body.
        """
        return {"rows": [p.as_json() for p in self.problems]}


class ImportConflict(ImportRefused, Conflict):
    """
    Every bad row of an import contradicts a device we have (409); nothing was imported.
    """


@dataclass(frozen=True)
class Registered:
    """
    A device just registered: its record (no secrets), and the secrets generated for it, shown this once.
    """

    device: DeviceInfo
    #: field name → secret, for the secrets that were generated (not those given)
    secrets: dict[str, str]
    #: the whole account as an import row (every secret included), for the operator's file
    row: dict[str, str]
    #: inventory Gets queued for its first session
    inventory: int

    def as_json(self) -> dict[str, Any]:
        return {"device": self.device.as_json(), "secrets": self.secrets, "row": self.row, "inventory": self.inventory}


@dataclass(frozen=True)
class Edited:
    """
    A device whose account an operator changed, and the secrets generated for it, shown this once.
    """

    device: DeviceInfo
    secrets: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        return {"device": self.device.as_json(), "secrets": self.secrets}


@dataclass(frozen=True)
class RowOutcome:
    """
    What an import did (or, in a dry run, would do) with one row.
    """

    device_id: str
    #: "register" (a new device, or a removed one again) or "unchanged"
    action: str
    #: for "register", the whole account as an import row, generated secrets
    #: included; None for "unchanged" (a stored secret is never shown)
    row: dict[str, str] | None

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Imported:
    """
    The outcome of an import, row by row, in the import's order.
    """

    rows: tuple[RowOutcome, ...]
    dry_run: bool

    def as_json(self) -> dict[str, Any]:
        registered = [r.device_id for r in self.rows if r.action == "register"]
        return {
            "dry_run": self.dry_run,
            "registered": registered,
            "unchanged": [r.device_id for r in self.rows if r.action == "unchanged"],
            "rows": [r.as_json() for r in self.rows],
        }


# -- parsing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    """
    One registration, parsed: the device, what was given, and the whole account.
    """

    device_id: str
    fields: accounts.AccountFields
    account: DeviceAccount
    generated: tuple[str, ...]


def _device_id(raw: object) -> str:
    """
    The device id, by enrollment's rule (it becomes a store key and part of DM URIs).
    """
    if raw is None or raw == "":
        raise ValueError("device_id: missing")
    if not isinstance(raw, str):
        raise ValueError("device_id: must be a string")
    if not valid_device_id(raw):
        raise ValueError(
            f"device_id: {raw!r} is not usable (1 to 128 of A-Z a-z 0-9 {{ }} . _ : -)"
        )
    return raw


def _request(raw: Mapping[str, object], settings: RegistrationSettings, random: Random) -> _Request:
    """
    Parse and complete one registration.

    @raise InvalidRegistration: naming every problem.
    """
    problems: list[str] = []
    device_id = ""
    try:
        device_id = _device_id(raw.get("device_id"))
    except ValueError as e:
        problems.append(str(e))
    kind = raw.get("kind") or DeviceKind.OMADM.value
    if kind == DeviceKind.WINDOWS.value:
        problems.append("kind: Windows devices are made by their MS-MDE2 enrollment, not registered")
    elif kind != DeviceKind.OMADM.value:
        problems.append(f"kind: expected omadm, got {kind!r}")
    fields = accounts.AccountFields()
    try:
        fields = accounts.parse_fields({k: v for k, v in raw.items() if k not in ("device_id", "kind")})
    except InvalidAccount as e:
        problems.extend(e.problems)
    if problems:
        raise InvalidRegistration(problems)
    try:
        account, generated = accounts.complete(fields, device_id, settings.server_id, random)
    except InvalidAccount as e:
        raise InvalidRegistration(e.problems) from None
    return _Request(device_id, fields, account, generated)


def _refusal(device: Device | None) -> str | None:
    """
    Why a device cannot be registered now, or None if it can.
    """
    if lifecycle.allows(device, Event.REGISTER):
        return None
    assert device is not None
    if lifecycle.status_of(device) is DeviceStatus.UNENROLLED:
        return (
            f"device {device.device_id} is unenrolled; remove it first "
            f"(mdmctl device remove {device.device_id}) to register it"
        )
    if device.kind == DeviceKind.WINDOWS.value:
        return f"device {device.device_id} is an enrolled Windows device"
    return f"device {device.device_id} is registered already"


def _differing(device: Device, request: _Request) -> list[str] | None:
    """
    The fields whose values a request gives otherwise than a registered
    classic device has them (nonces aside: sessions renew them); None if the
    device is not a registered classic one.
    """
    if device.kind != DeviceKind.OMADM.value or not lifecycle.manageable(device):
        return None
    stored = accounts.account_of(device)
    return [
        name
        for name, value in request.fields.given().items()
        if name not in accounts.NONCES and stored.value(name) != value
    ]


# -- the units of work ----------------------------------------------------------------------------


def _register(root: Root, requests: Sequence[_Request], settings: RegistrationSettings, now: float) -> list[Device]:
    """
    Make the records and accounts of C{requests}, and queue their inventory Gets.
    """
    made = []
    for request in requests:
        device = lifecycle.register(root, request.device_id, now)
        accounts.store_account(device, request.account)
        made.append(device)
    device_ids = [request.device_id for request in requests]
    for uri in settings.inventory:
        dm_queue.enqueue(root, device_ids, parse_spec({"verb": "Get", "target": uri}), now)
    return made


def register(
    root: Root, raw: Mapping[str, object], settings: RegistrationSettings, now: float, random: Random
) -> Registered:
    """
    Register one classic device with its account and queue its inventory.

    @raise InvalidRegistration: naming every problem of C{raw}.
    @raise DeviceExists: if the device is enrolled, registered or unenrolled.
    """
    request = _request(raw, settings, random)
    refusal = _refusal(root["devices"].get(request.device_id))
    if refusal is not None:
        raise DeviceExists(refusal)
    (device,) = _register(root, [request], settings, now)
    secrets = {name: request.account.value(name) for name in request.generated}
    return Registered(device_info(device), secrets, _row(request), len(settings.inventory))


def _row(request: _Request) -> dict[str, str]:
    return {"device_id": request.device_id, "kind": DeviceKind.OMADM.value, **accounts.as_row(request.account)}


def import_devices(
    root: Root,
    rows: Sequence[Mapping[str, object]],
    settings: RegistrationSettings,
    now: float,
    random: Random,
    dry_run: bool = False,
) -> Imported:
    """
    Register every row's device, or none: see the module's description.

    A dry run checks everything and answers what would be done, generated
    secrets included, without writing.

    @raise ImportRefused: (L{ImportConflict} when every problem is a
        conflict with a device we have) listing every bad row.
    """
    if not rows:
        raise ImportRefused([RowProblem(0, "", "the import holds no devices")])
    if len(rows) > MAX_IMPORT:
        raise ImportRefused([RowProblem(MAX_IMPORT, "", f"at most {MAX_IMPORT} devices per import")])
    problems: list[RowProblem] = []
    planned: list[tuple[_Request, str]] = []
    first: dict[str, int] = {}
    for index, raw in enumerate(rows):
        named = raw.get("device_id")
        device_id = named if isinstance(named, str) else ""
        try:
            request = _request(raw, settings, random)
        except InvalidAccount as e:
            problems.append(RowProblem(index, device_id, str(e)))
            continue
        if device_id in first:
            problems.append(RowProblem(index, device_id, f"device {device_id} is also in row {first[device_id]}"))
            continue
        first[device_id] = index
        device = root["devices"].get(device_id)
        refusal = _refusal(device)
        if refusal is None:
            planned.append((request, "register"))
            continue
        assert device is not None
        differing = _differing(device, request)
        if differing == []:
            planned.append((request, "unchanged"))
            continue
        if differing:
            refusal += f" with other values ({', '.join(differing)})"
        problems.append(RowProblem(index, device_id, refusal, conflict=True))
    if problems:
        error = ImportConflict if all(p.conflict for p in problems) else ImportRefused
        raise error(problems)
    if not dry_run:
        _register(root, [request for request, action in planned if action == "register"], settings, now)
    outcomes = [
        RowOutcome(request.device_id, action, _row(request) if action == "register" else None)
        for request, action in planned
    ]
    return Imported(tuple(outcomes), dry_run)


#: What an operator may set on a Windows device (the rest is its enrollment's).
WINDOWS_SETTABLE: Final = ("msisdn", "imsi", "client_certificate")


def edit_account(
    root: Root, device_id: str, raw: Mapping[str, object], generate: Sequence[str], random: Random
) -> Edited:
    """
    Change fields of a device's account (C{raw}, as L{accounts.parse_fields}
    reads for an edit) and generate new secrets for the fields named in
    C{generate}; return the record and the secrets generated (shown once).

    @raise mdmd.devices.records.UnknownDevice: if there is no such device.
    @raise InvalidAccount: naming every problem of C{raw} or C{generate}.
    @raise AccountNotEditable: if C{raw} or C{generate} names a field of a
        Windows device's enrollment.
    """
    device = device_record(root, device_id)
    fields = accounts.parse_fields(raw, clearing=True)
    unknown = [name for name in generate if name not in accounts.SECRETS]
    if unknown:
        raise InvalidAccount([f"cannot generate {name} (only {', '.join(accounts.SECRETS)})" for name in unknown])
    both = [name for name in generate if getattr(fields, name) is not None]
    if both:
        raise InvalidAccount([f"{name}: given and to be generated" for name in both])
    if device.kind == DeviceKind.WINDOWS.value:
        fixed = sorted(set(fields.given()) - set(WINDOWS_SETTABLE) | set(generate))
        if fixed:
            raise AccountNotEditable(
                f"device {device_id} is a Windows device: its {', '.join(fixed)} come from its "
                f"enrollment (settable: {', '.join(WINDOWS_SETTABLE)})"
            )
    secrets = {name: accounts.generate_secret(random) for name in generate}
    fields = dataclasses.replace(
        fields,
        client_secret=secrets.get("client_secret", fields.client_secret),
        server_secret=secrets.get("server_secret", fields.server_secret),
    )
    account = accounts.edited(accounts.account_of(device), fields)
    accounts.store_account(device, account)
    return Edited(device_info(device), secrets)
