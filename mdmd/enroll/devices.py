"""
MS-MDE2 enrollment and renewal of devices: units of work C{fn(root, ...)}
returning plain L{Enrolled} and L{DMCredentials} values.

Enrollment and renewal take an C{issue(subject_key, device_id)} callable that
signs and records a certificate inside the same unit of work (see
L{mdmd.pki.authority.CAService.transact_issuing}), so a certificate, its record
and the device record that points at it are committed together or not at all.
The device's status, its timestamps and the revocation of the certificate it
replaces are L{mdmd.devices.lifecycle}'s: a known DeviceID is updated in
place, never replaced, so everything keyed by the device id (the DM command
queue, sessions) stays attached across re-enrollments and renewals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from mdmd.devices import lifecycle
from mdmd.devices.accounts import DeviceKind
from mdmd.devices.lifecycle import DeviceStatus, Event
from mdmd.devices.records import DeviceInfo, device_info, device_record
from mdmd.dm.authentication import AuthScheme
from mdmd.enroll.provisioning import DMCredentials
from mdmd.errors import SOAP_AUTHORIZATION, SOAP_CERTIFICATE_REQUEST, Conflict
from mdmd.pki.ca import PublicKey, serial_hex
from mdmd.pki.authority import IssuedClientCertificate
from mdmd.store.models import Device

__all__ = [
    "EnrollmentFacts",
    "Enrolled",
    "DeviceOwnedByAnotherUser",
    "NotEligibleToRenew",
    "enroll",
    "renew",
    "dm_credentials",
    "update_nonces",
]

Root = MutableMapping[str, Any]
Issue = Callable[[PublicKey, str], IssuedClientCertificate]

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


#: DMCredentials field → Device attribute
_CREDENTIAL_FIELDS = tuple((f.name, "dm_" + f.name) for f in dataclasses.fields(DMCredentials))


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


def _set_credentials(device: Device, credentials: DMCredentials) -> None:
    """
    Give the device the Windows account its provisioning document hands out:
    the credentials, the configured provider id as its server id, and our
    MD5 digest as the server's scheme. What an operator set (MSISDN, IMSI,
    certificate requirement) stays.
    """
    for field, attribute in _CREDENTIAL_FIELDS:
        setattr(device, attribute, getattr(credentials, field))
    device.dm_server_id = ""
    device.dm_server_auth_type = AuthScheme.DIGEST.name


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
    credentials and keeps the record (see L{lifecycle.re_enroll}); a removed
    classic device enrolling becomes a Windows device.

    @raise DeviceOwnedByAnotherUser: if the DeviceID is enrolled by another
        user, or registered as a classic device.
    """
    device: Device | None = root["devices"].get(facts.device_id)
    if device is not None and device.kind == DeviceKind.OMADM.value and lifecycle.manageable(device):
        raise DeviceOwnedByAnotherUser(
            f"device {facts.device_id} is registered as a classic OMA DM device; remove it first "
            "(mdmctl device remove) to enroll it"
        )
    if device is not None and device.user != facts.user:
        if lifecycle.status_of(device) is DeviceStatus.ENROLLED:
            raise DeviceOwnedByAnotherUser(
                f"device {facts.device_id} is enrolled by {device.user}; remove it first "
                "(mdmctl device remove) to enroll it for another user"
            )
    issued = issue(public_key, facts.device_id)
    known = device is not None
    replaced: int | None = None
    if device is None:
        device = lifecycle.enroll(root, facts.device_id, issued.info, now)
    else:
        replaced = lifecycle.re_enroll(root, device, issued.info, now)
    for name, field in _FACTS.items():
        setattr(device, field, facts.value(name))
    device.context = facts.context
    device.user = facts.user
    device.auth_policy = facts.auth_policy
    device.certificate_store = facts.certificate_store
    _set_credentials(device, credentials)
    return Enrolled(issued.certificate, device_info(device), credentials, replaced, known)


def renew(root: Root, issue: Issue, device_id: str, serial: int, public_key: PublicKey, now: float) -> Enrolled:
    """
    Replace the certificate C{serial} of an enrolled device by one for C{public_key}.

    The DM credentials are kept: only the certificate changes. Eligibility is
    checked before anything is signed.

    @raise NotEligibleToRenew: if the device is not enrolled or C{serial} is
        not its current certificate.
    """
    device: Device | None = root["devices"].get(device_id)
    if device is None:
        raise NotEligibleToRenew(f"device {device_id} is not enrolled here")
    if not lifecycle.allows(device, Event.RENEW):
        raise NotEligibleToRenew(f"device {device_id} is {device.status}")
    if device.cert_serial != serial:
        raise NotEligibleToRenew(
            f"certificate {serial_hex(serial)} is not the current certificate of {device_id}"
        )
    issued = issue(public_key, device_id)
    replaced = lifecycle.renew(root, device, issued.info, now)
    return Enrolled(issued.certificate, device_info(device), None, replaced, True)


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

    @raise mdmd.devices.records.UnknownDevice: if there is no such device.
    """
    device = device_record(root, device_id)
    if client_nonce is not None:
        device.dm_client_nonce = client_nonce
    if server_nonce is not None:
        device.dm_server_nonce = server_nonce
    return _credentials(device)
