"""
Enrolled devices in the store: units of work C{fn(root, ...)} returning plain
L{DeviceInfo} and L{DMCredentials} values.

Enrollment and renewal take an C{issue(subject_key, device_id)} callable that
signs and records a certificate inside the same unit of work (see
L{mdmd.pki.authority.CAService.transact_issuing}), so a certificate, its record
and the device record that points at it are committed together or not at all.
A known DeviceID is updated in place, never replaced: everything keyed by the
device id (the DM command queue, sessions) stays attached across
re-enrollments and renewals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from mdmd.enroll.provisioning import DMCredentials
from mdmd.errors import SOAP_AUTHORIZATION, SOAP_CERTIFICATE_REQUEST, Conflict, NotFound
from mdmd.pki import registry
from mdmd.pki.ca import PublicKey, serial_hex
from mdmd.pki.authority import IssuedClientCertificate
from mdmd.store.models import Device

__all__ = [
    "DeviceInfo",
    "EnrollmentFacts",
    "Enrolled",
    "UnknownDevice",
    "DeviceOwnedByAnotherUser",
    "NotEligibleToRenew",
    "enroll",
    "renew",
    "remove",
    "mark_unenrolled",
    "lookup_device",
    "list_devices",
    "device_counts",
    "dm_credentials",
    "update_nonces",
    "record_contact",
    "ENROLLED",
    "UNENROLLED",
    "REMOVED",
]

Root = MutableMapping[str, Any]
Issue = Callable[[PublicKey, str], IssuedClientCertificate]

ENROLLED = "enrolled"
UNENROLLED = "unenrolled"
REMOVED = "removed"

#: AdditionalContext items copied into named fields of the record.
_FACTS = {
    "HWDevID": "hw_dev_id",
    "DeviceName": "device_name",
    "OSVersion": "os_version",
    "OSEdition": "os_edition",
    "EnrollmentType": "enrollment_type",
    "DeviceType": "device_type",
    "ApplicationVersion": "application_version",
}


class UnknownDevice(NotFound):
    def __str__(self) -> str:
        return f"no device {self.args[0]!r}"


class DeviceOwnedByAnotherUser(Conflict):
    """
    The DeviceID is enrolled by someone else; an operator must remove it first.
    """

    soap_subcode = SOAP_AUTHORIZATION


class NotEligibleToRenew(Conflict):
    """
    The device or certificate asking for renewal is not the current, enrolled one.
    """

    soap_subcode = SOAP_CERTIFICATE_REQUEST


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
    first_enrolled_at: float
    enrolled_at: float
    enrollment_count: int
    renewed_at: float | None
    removed_at: float | None
    last_contact: float | None

    def as_json(self) -> dict[str, Any]:
        value = dataclasses.asdict(self)
        value["context"] = [list(item) for item in self.context]
        value["mac_addresses"] = [v for name, v in self.context if name == "MAC"]
        serial = value.pop("cert_serial")
        value["certificate_serial"] = None if serial is None else serial_hex(serial)
        value["certificate_not_after"] = value.pop("cert_not_after")
        return value


_INFO_FIELDS = tuple(f.name for f in dataclasses.fields(DeviceInfo))
#: DMCredentials field → Device attribute
_CREDENTIAL_FIELDS = tuple((f.name, "dm_" + f.name) for f in dataclasses.fields(DMCredentials))


def _info(device: Device) -> DeviceInfo:
    # DeviceInfo's fields are named like the record's attributes
    return DeviceInfo(**{name: getattr(device, name) for name in _INFO_FIELDS})


@dataclass(frozen=True)
class EnrollmentFacts:
    """
    Who is enrolling what: the authenticated user and what the device reported.
    """

    device_id: str
    user: str
    auth_policy: str
    certificate_store: str
    context: tuple[tuple[str, str], ...]

    def value(self, name: str) -> str:
        return next((value for found, value in self.context if found == name), "")


@dataclass(frozen=True)
class Enrolled:
    """
    The outcome of an enrollment or renewal: the new certificate and the updated record.
    """

    certificate: x509.Certificate
    device: DeviceInfo
    credentials: DMCredentials | None
    #: the serial of the certificate this one replaced (now revoked), if any
    replaced_serial: int | None
    #: the device was known before (re-enrollment)
    known: bool


def _revoke_current(root: Root, device: Device, reason: str, now: float) -> int | None:
    serial = device.cert_serial
    if serial is None:
        return None
    record = registry.lookup(root, serial)
    if record is not None and record.status != "revoked":
        registry.revoke(root, serial, reason, now)
    return serial


def _set_credentials(device: Device, credentials: DMCredentials) -> None:
    for field, attribute in _CREDENTIAL_FIELDS:
        setattr(device, attribute, getattr(credentials, field))


def _credentials(device: Device) -> DMCredentials:
    return DMCredentials(**{field: getattr(device, attribute) for field, attribute in _CREDENTIAL_FIELDS})


def enroll(
    root: Root,
    issue: Issue,
    facts: EnrollmentFacts,
    public_key: PublicKey,
    credentials: DMCredentials,
    now: float,
) -> Enrolled:
    """
    Certify C{public_key} for C{facts.device_id} and create or update its record.

    Re-enrolling a known device (by the same user, or after it left or was
    removed) revokes its previous certificate as superseded, replaces its DM
    credentials and keeps the record.

    @raise DeviceOwnedByAnotherUser: if the DeviceID is enrolled by another user.
    """
    devices = root["devices"]
    device: Device | None = devices.get(facts.device_id)
    known = device is not None
    if device is not None and device.status == ENROLLED and device.user != facts.user:
        raise DeviceOwnedByAnotherUser(
            f"device {facts.device_id} is enrolled by {device.user}; remove it first "
            "(mdmctl device remove) to enroll it for another user"
        )
    issued = issue(public_key, facts.device_id)
    if device is None:
        device = Device(facts.device_id, now)
        devices[facts.device_id] = device
        replaced = None
    else:
        replaced = _revoke_current(root, device, "superseded", now)
    for name, field in _FACTS.items():
        setattr(device, field, facts.value(name))
    device.context = facts.context
    device.user = facts.user
    device.auth_policy = facts.auth_policy
    device.certificate_store = facts.certificate_store
    device.cert_serial = issued.info.serial
    device.cert_not_after = issued.info.not_after
    device.status = ENROLLED
    device.enrolled_at = now
    device.enrollment_count += 1
    device.removed_at = None
    _set_credentials(device, credentials)
    return Enrolled(issued.certificate, _info(device), credentials, replaced, known)


def renew(root: Root, issue: Issue, device_id: str, serial: int, public_key: PublicKey, now: float) -> Enrolled:
    """
    Replace the certificate C{serial} of an enrolled device by one for C{public_key}.

    The DM credentials are kept: only the certificate changes.

    @raise NotEligibleToRenew: if the device is not enrolled or C{serial} is
        not its current certificate.
    """
    device: Device | None = root["devices"].get(device_id)
    if device is None:
        raise NotEligibleToRenew(f"device {device_id} is not enrolled here")
    if device.status != ENROLLED:
        raise NotEligibleToRenew(f"device {device_id} is {device.status}")
    if device.cert_serial != serial:
        raise NotEligibleToRenew(
            f"certificate {serial_hex(serial)} is not the current certificate of {device_id}"
        )
    issued = issue(public_key, device_id)
    replaced = _revoke_current(root, device, "superseded", now)
    device.cert_serial = issued.info.serial
    device.cert_not_after = issued.info.not_after
    device.renewed_at = now
    return Enrolled(issued.certificate, _info(device), None, replaced, True)


def remove(root: Root, device_id: str, now: float) -> DeviceInfo:
    """
    An operator removes a device: its certificate is revoked, so its DM sessions are refused.

    @raise UnknownDevice: if there is no such device.
    """
    device: Device | None = root["devices"].get(device_id)
    if device is None:
        raise UnknownDevice(device_id)
    _revoke_current(root, device, "cessationOfOperation", now)
    if device.status != REMOVED:
        device.status = REMOVED
        device.removed_at = now
    return _info(device)


def mark_unenrolled(root: Root, device_id: str, now: float) -> DeviceInfo:
    """
    The device told us it left (DM alert 1226): revoke its certificate, keep the record.

    @raise UnknownDevice: if there is no such device.
    """
    device: Device | None = root["devices"].get(device_id)
    if device is None:
        raise UnknownDevice(device_id)
    _revoke_current(root, device, "cessationOfOperation", now)
    if device.status == ENROLLED:
        device.status = UNENROLLED
        device.removed_at = now
    return _info(device)


def lookup_device(root: Root, device_id: str) -> DeviceInfo | None:
    device = root["devices"].get(device_id)
    return None if device is None else _info(device)


def list_devices(root: Root) -> list[DeviceInfo]:
    """
    Every device, ordered by DeviceID.
    """
    return [_info(device) for device in root["devices"].values()]


def device_counts(root: Root) -> dict[str, int]:
    """
    How many devices are in each status.
    """
    counts = {ENROLLED: 0, UNENROLLED: 0, REMOVED: 0}
    for device in root["devices"].values():
        counts[device.status] = counts.get(device.status, 0) + 1
    return counts


def dm_credentials(root: Root, device_id: str) -> DMCredentials | None:
    """
    The DM credentials and current nonces of a device, for the DM session engine.
    """
    device = root["devices"].get(device_id)
    return None if device is None else _credentials(device)


def update_nonces(
    root: Root, device_id: str, *, client_nonce: bytes | None = None, server_nonce: bytes | None = None
) -> DMCredentials:
    """
    Remember the next nonces (raw bytes) once a DM session has sent them.

    @raise UnknownDevice: if there is no such device.
    """
    device: Device | None = root["devices"].get(device_id)
    if device is None:
        raise UnknownDevice(device_id)
    if client_nonce is not None:
        device.dm_client_nonce = client_nonce
    if server_nonce is not None:
        device.dm_server_nonce = server_nonce
    return _credentials(device)


def record_contact(root: Root, device_id: str, now: float) -> None:
    """
    Note that the device talked to us (shown as "last contact").
    """
    device: Device | None = root["devices"].get(device_id)
    if device is None:
        raise UnknownDevice(device_id)
    device.last_contact = now
