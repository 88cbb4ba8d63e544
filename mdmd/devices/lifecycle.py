"""
The lifecycle of a device record: everything that affects its status lives here.

A device's status changes only through L{TRANSITIONS}, one table keyed by
(status, event); C{None} stands for "no record yet"::

    (no record)                    ──ENROLL──────────► enrolled
    (no record), removed           ──REGISTER────────► enrolled    (an operator registers a classic device)
    enrolled                       ──RENEW, CONTACT──► enrolled
    enrolled, unenrolled, removed  ──RE_ENROLL───────► enrolled
    enrolled, unenrolled           ──UNENROLL────────► unenrolled  (Alert 1226: the device left)
    enrolled, unenrolled, removed  ──REMOVE──────────► removed     (an operator removed it)

Each step is one function that applies the table and then does everything
that goes with the move, the same way whoever calls it:

 - B{enroll} creates the record: C{first_enrolled_at}, C{enrolled_at},
   C{enrollment_count} 1, the certificate.
 - B{register} makes the record of a classic OMA DM device (kind C{omadm}):
   C{first_enrolled_at} and C{enrolled_at}; C{enrollment_count} counts
   MS-MDE2 enrollments and stays as it is. Registering a I{removed} device
   again is allowed (an operator brings it back, as an enrollment may): its
   record is updated in place, so its queue, results and pushes stay
   attached; it becomes an C{omadm} device whatever it was, drops the
   certificate of ours it had (revoked when it was removed), and clears
   C{unenrolled_at} and C{removed_at}. An enrolled or unenrolled device
   cannot be registered: the caller refuses (a conflict) before asking.
   Its account is the caller's (L{mdmd.devices.registration}).
 - B{enroll} and B{re_enroll} make the record a C{windows} device.
 - B{re_enroll} revokes the current certificate (C{superseded}), takes the
   new one, sets C{enrolled_at}, counts the enrollment, and clears
   C{unenrolled_at} and C{removed_at}: those say why the device is not
   managed now, and after a re-enrollment it is. C{first_enrolled_at},
   C{renewed_at} (of an earlier enrollment, older than C{enrolled_at}) and
   C{last_contact} are history and stay.
 - B{renew} revokes the current certificate (C{superseded}), takes the new
   one and sets C{renewed_at}.
 - B{unenroll} revokes the current certificate (C{cessationOfOperation})
   and sets C{unenrolled_at}; B{remove} does the same with C{removed_at}.
   Repeating either (two unenrollment alerts in one message, removing a
   removed device) changes nothing: the first time is kept.
 - B{record_contact} keeps C{last_contact} to L{LAST_CONTACT_RESOLUTION},
   so a session does not rewrite the record with every message.

Certificates are revoked in one place (L{_revoke_current}, through
L{mdmd.pki.registry.revoke}). Only an L{ENROLLED} device is L{manageable}:
DM check-in, the command queue and push jobs all ask L{manageable}.

A record's status and kind are written in one place, L{_file}, which keeps
their counters and member sets (L{STATUSES}, L{KINDS}: how many devices,
and which, are in each status and of each kind) in the same transaction:
an operator's count never walks the devices, and a listing by status or
kind walks only the devices it lists.

The status is stored in C{Device.status} as the plain string value of a
L{DeviceStatus}. These functions run inside a unit of work (they take the
ZODB root or a record of it) and never commit.
"""

from __future__ import annotations

import enum
from collections.abc import MutableMapping
from typing import Any

from mdmd.devices.accounts import DeviceKind
from mdmd.pki import registry
from mdmd.store.counters import Family
from mdmd.store.migration import Pass
from mdmd.store.models import Device

__all__ = [
    "DeviceStatus",
    "Event",
    "TRANSITIONS",
    "MANAGEABLE",
    "LAST_CONTACT_RESOLUTION",
    "IllegalTransition",
    "status_of",
    "allows",
    "manageable",
    "enroll",
    "register",
    "re_enroll",
    "renew",
    "record_contact",
    "unenroll",
    "remove",
    "STATUSES",
    "KINDS",
    "track",
    "RECOUNT",
]

Root = MutableMapping[str, Any]


class DeviceStatus(enum.Enum):
    #: managed: it may check in, and commands and pushes may be queued for it
    ENROLLED = "enrolled"
    #: the device told us it left (the user removed the work account)
    UNENROLLED = "unenrolled"
    #: an operator removed it
    REMOVED = "removed"


class Event(enum.Enum):
    #: a DeviceID we never saw enrolls (MS-MDE2): the record is created
    ENROLL = "enroll"
    #: a known DeviceID enrolls again
    RE_ENROLL = "re-enroll"
    #: the enrolled device replaces its certificate (MS-MDE2 renewal)
    RENEW = "renew"
    #: the device checked in (a DM message)
    CONTACT = "contact"
    #: the device says it left (DM Alert 1226, unenrollment)
    UNENROLL = "unenroll"
    #: an operator removes it
    REMOVE = "remove"
    #: an operator registers a classic OMA DM device (mdmctl device add):
    #: its record is made without an enrollment
    REGISTER = "register"


TRANSITIONS: dict[tuple[DeviceStatus | None, Event], DeviceStatus] = {
    (None, Event.ENROLL): DeviceStatus.ENROLLED,
    (None, Event.REGISTER): DeviceStatus.ENROLLED,
    (DeviceStatus.REMOVED, Event.REGISTER): DeviceStatus.ENROLLED,
    (DeviceStatus.ENROLLED, Event.RE_ENROLL): DeviceStatus.ENROLLED,
    (DeviceStatus.UNENROLLED, Event.RE_ENROLL): DeviceStatus.ENROLLED,
    (DeviceStatus.REMOVED, Event.RE_ENROLL): DeviceStatus.ENROLLED,
    (DeviceStatus.ENROLLED, Event.RENEW): DeviceStatus.ENROLLED,
    (DeviceStatus.ENROLLED, Event.CONTACT): DeviceStatus.ENROLLED,
    (DeviceStatus.ENROLLED, Event.UNENROLL): DeviceStatus.UNENROLLED,
    # a message may carry the unenrollment alert twice
    (DeviceStatus.UNENROLLED, Event.UNENROLL): DeviceStatus.UNENROLLED,
    (DeviceStatus.ENROLLED, Event.REMOVE): DeviceStatus.REMOVED,
    (DeviceStatus.UNENROLLED, Event.REMOVE): DeviceStatus.REMOVED,
    (DeviceStatus.REMOVED, Event.REMOVE): DeviceStatus.REMOVED,
}

#: How many devices are in each status, and which (their ids).
STATUSES = Family("devices.status", tuple(status.value for status in DeviceStatus), members=True)
#: How many devices are of each kind, and which.
KINDS = Family("devices.kind", tuple(kind.value for kind in DeviceKind), members=True)

#: The statuses in which a device may check in and be sent commands and pushes.
MANAGEABLE = frozenset({DeviceStatus.ENROLLED})

#: "Last contact" is kept to this many seconds, so that the device record is
#: not rewritten by every message of a session.
LAST_CONTACT_RESOLUTION = 60.0


class IllegalTransition(Exception):
    """
    A step the table forbids was asked for: our bug.

    Where a peer or an operator can ask for such a step, the caller checks
    L{allows} first and refuses in its own terms (e.g.
    L{mdmd.enroll.devices.NotEligibleToRenew}), so this never reaches them.
    """

    def __init__(self, device_id: str, status: DeviceStatus | None, event: Event) -> None:
        where = "no record" if status is None else status.value
        super().__init__(f"device {device_id}: no transition from {where} on {event.value}")
        self.device_id = device_id
        self.status = status
        self.event = event


def status_of(device: Device | None) -> DeviceStatus | None:
    """
    The status of a record (None: there is no record).
    """
    return None if device is None else DeviceStatus(device.status)


def allows(device: Device | None, event: Event) -> bool:
    """
    Whether the table has a move for C{event} from the status of C{device}.
    """
    return (status_of(device), event) in TRANSITIONS


def manageable(device: Device) -> bool:
    """
    Whether the device may check in, and commands or pushes be queued for it.
    """
    return status_of(device) in MANAGEABLE


def _next(device_id: str, status: DeviceStatus | None, event: Event) -> DeviceStatus:
    """
    The status C{event} moves C{status} to.

    @raise IllegalTransition: if the table has no such move.
    """
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise IllegalTransition(device_id, status, event) from None


def _move(root: Root, device: Device, event: Event) -> bool:
    """
    Apply the table to a record; return whether its status changed (a record
    is written only when something in it changes).
    """
    status = status_of(device)
    target = _next(device.device_id, status, event)
    if target is status:
        return False
    _file(root, device, status=target)
    return True


def _file(
    root: Root,
    device: Device,
    *,
    status: DeviceStatus | None = None,
    kind: DeviceKind | None = None,
    new: bool = False,
) -> None:
    """
    Write a record's status and kind (those given): the one place they are
    written, with their counters and member sets. C{new}: the record was not
    counted yet (it is being made).
    """
    if status is not None:
        STATUSES.move(root, None if new else device.status, status.value, device.device_id)
        device.status = status.value
    if kind is not None:
        KINDS.move(root, None if new else device.kind, kind.value, device.device_id)
        device.kind = kind.value


def track(root: Root, device: Device) -> None:
    """
    Count a record that is in the store but was never counted: the store
    upgrade's recount, and devices a test kit puts in the store directly.
    """
    STATUSES.add(root, device.status, device.device_id)
    KINDS.add(root, device.kind, device.device_id)


def _recount_start(root: Root) -> None:
    STATUSES.reset(root)
    KINDS.reset(root)


#: The store upgrade's pass over the devices: their statuses and kinds counted, and their member sets.
RECOUNT = Pass("devices", "devices", lambda root, key, device: track(root, device), _recount_start)


def _revoke_current(root: Root, device: Device, reason: str, now: float) -> int | None:
    """
    Revoke the device's current certificate, if it has one we issued; return its serial.

    Revoking an already revoked certificate keeps its first date and reason.
    """
    serial = device.cert_serial
    if serial is not None and serial in root["certs"]:
        registry.revoke(root, serial, reason, now)
    return serial


def _take_certificate(device: Device, certificate: registry.CertificateInfo) -> None:
    device.cert_serial = certificate.serial
    device.cert_not_after = certificate.not_after


def enroll(root: Root, device_id: str, certificate: registry.CertificateInfo, now: float) -> Device:
    """
    A DeviceID we never saw enrolled with C{certificate}: create its record.

    @raise IllegalTransition: if the device has a record (use L{re_enroll}).
    """
    status = _next(device_id, status_of(root["devices"].get(device_id)), Event.ENROLL)
    device = Device(device_id, now)
    _file(root, device, status=status, kind=DeviceKind.WINDOWS, new=True)
    device.enrolled_at = now
    device.enrollment_count = 1
    _take_certificate(device, certificate)
    root["devices"][device_id] = device
    return device


def register(root: Root, device_id: str, now: float) -> Device:
    """
    An operator registers the classic OMA DM device C{device_id}: create its
    record, or bring a removed one back (updated in place).

    @raise IllegalTransition: if the device is enrolled or unenrolled (check
        L{allows} first).
    """
    device: Device | None = root["devices"].get(device_id)
    if device is None:
        status = _next(device_id, None, Event.REGISTER)
        device = Device(device_id, now)
        _file(root, device, status=status, kind=DeviceKind.OMADM, new=True)
        root["devices"][device_id] = device
    else:
        _move(root, device, Event.REGISTER)
        _file(root, device, kind=DeviceKind.OMADM)
        _revoke_current(root, device, "cessationOfOperation", now)
        device.cert_serial = None
        device.cert_not_after = None
        device.unenrolled_at = None
        device.removed_at = None
    device.enrolled_at = now
    return device


def re_enroll(root: Root, device: Device, certificate: registry.CertificateInfo, now: float) -> int | None:
    """
    A known device enrolled again with C{certificate}; return the serial it replaced (now revoked).

    The record is updated in place, so whatever is keyed by its DeviceID (the
    DM command queue, sessions, push jobs) stays attached.
    """
    _move(root, device, Event.RE_ENROLL)
    _file(root, device, kind=DeviceKind.WINDOWS)
    replaced = _revoke_current(root, device, "superseded", now)
    _take_certificate(device, certificate)
    device.enrolled_at = now
    device.enrollment_count += 1
    device.unenrolled_at = None
    device.removed_at = None
    return replaced


def renew(root: Root, device: Device, certificate: registry.CertificateInfo, now: float) -> int | None:
    """
    The enrolled device replaced its certificate by C{certificate}; return the old serial (now revoked).

    @raise IllegalTransition: if the device is not enrolled (check L{allows} first).
    """
    _move(root, device, Event.RENEW)
    replaced = _revoke_current(root, device, "superseded", now)
    _take_certificate(device, certificate)
    device.renewed_at = now
    return replaced


def record_contact(device: Device, now: float) -> None:
    """
    The device checked in: note it as "last contact", to L{LAST_CONTACT_RESOLUTION}.

    @raise IllegalTransition: if the device is not manageable.
    """
    status = status_of(device)
    target = _next(device.device_id, status, Event.CONTACT)
    # The table keeps the status on a contact: there is nothing to file or count.
    assert target is status
    if device.last_contact is None or now - device.last_contact >= LAST_CONTACT_RESOLUTION:
        device.last_contact = now


def unenroll(root: Root, device: Device, now: float) -> None:
    """
    The device told us it left (Alert 1226): revoke its certificate, keep the record.

    @raise IllegalTransition: if the device was removed.
    """
    if _move(root, device, Event.UNENROLL):
        device.unenrolled_at = now
    _revoke_current(root, device, "cessationOfOperation", now)


def remove(root: Root, device: Device, now: float) -> None:
    """
    An operator removed the device: revoke its certificate (so its DM
    sessions are refused), keep the record.
    """
    if _move(root, device, Event.REMOVE):
        device.removed_at = now
    _revoke_current(root, device, "cessationOfOperation", now)
