"""
A fleet in a store, made by mdmd's own units of work, quickly.

Tests of what many records do (counters, listings, the store upgrade) and
benchmarks need devices enrolled as the enrollment endpoint enrolls them,
with certificates, commands and pushes; a real CA signs with RSA, which
makes thousands of devices slow. L{FleetCA} signs with a throwaway EC key
(a fraction of a millisecond each) and records each certificate as
L{mdmd.pki.authority.CAService.transact_issuing} does; the other helpers run
the units of work of the endpoints (MS-MDE2 enrollment and renewal, an
operator's registration, the DM queue's moves, push jobs) inside the
caller's unit of work.
"""

from __future__ import annotations

import datetime
import functools
import itertools
from collections.abc import MutableMapping
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mdmd.devices import registration
from mdmd.dm import queue as dm_queue
from mdmd.dm.commands import CommandSpec, parse_spec
from mdmd.enroll import devices
from mdmd.enroll.devices import Enrolled, EnrollmentFacts, Issue
from mdmd.enroll.provisioning import DMCredentials
from mdmd.pki import registry
from mdmd.pki.authority import IssuedClientCertificate
from mdmd.pki.ca import CertificateAuthority, PublicKey

__all__ = ["FleetCA", "enroll", "renew", "register", "queue_get", "send_and_answer"]

Root = MutableMapping[str, Any]

_counter = itertools.count(1)


class FleetCA:
    """
    A certificate authority for test fleets: an EC key, certificates of a year.
    """

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.now = datetime.datetime.now(datetime.timezone.utc)
        # create() is typed for the RSA keys the daemon makes; it only signs, which an EC key does too.
        self.authority = CertificateAuthority.create(
            cast(rsa.RSAPrivateKey, self.key), "mdmd fleet CA", "mdmd", datetime.timedelta(days=3650), self.now
        )

    def issue_in(self, root: Root, now: float) -> Issue:
        """
        The C{issue} of an enrollment unit running in C{root} at C{now}.
        """

        def issue(subject_key: PublicKey, device_id: str) -> IssuedClientCertificate:
            certificate = self.authority.issue_client(subject_key, device_id, datetime.timedelta(days=365), self.now)
            return IssuedClientCertificate(certificate, registry.record_issued(root, certificate, device_id, now))

        return issue


def _credentials(device_id: str) -> DMCredentials:
    return DMCredentials(device_id, "device-secret", "DIGEST", b"\1" * 16, "mdmd", "server-secret", b"\2" * 16)


def enroll(root: Root, ca: FleetCA, device_id: str, now: float, user: str = "alice@example.com") -> Enrolled:
    """
    Enroll (or re-enroll) a Windows device as the enrollment endpoint does.
    """
    facts = EnrollmentFacts(
        device_id,
        user,
        "OnPremise",
        "User",
        (("DeviceName", f"PC-{next(_counter)}"), ("OSVersion", "10.0.22631.1"), ("MAC", "00:11:22:33:44:55")),
    )
    return devices.enroll(root, ca.issue_in(root, now), facts, ca.key.public_key(), _credentials(device_id), now)


def renew(root: Root, ca: FleetCA, device_id: str, now: float) -> Enrolled:
    """
    Renew an enrolled device's certificate as the enrollment endpoint does.
    """
    device = root["devices"].get(device_id)
    serial = -1 if device is None or device.cert_serial is None else device.cert_serial
    return devices.renew(root, ca.issue_in(root, now), device_id, serial, ca.key.public_key(), now)


def register(root: Root, device_id: str, now: float, inventory: tuple[str, ...] = ()) -> None:
    """
    Register a classic OMA DM device as C{mdmctl device add} does (its secrets generated).
    """
    settings = registration.RegistrationSettings(inventory=inventory)
    registration.register(root, {"device_id": device_id, "msisdn": "+491701234567"}, settings, now, _random)


def _random(size: int) -> bytes:
    return bytes((next(_counter) + i) % 256 for i in range(size))


def queue_get(root: Root, device_id: str, now: float, uri: str = "./DevDetail/SwV") -> int:
    """
    Queue a Get for a device; return its sequence number.
    """
    (queued,) = dm_queue.enqueue(root, [device_id], _get(uri), now)
    return queued.seq


@functools.lru_cache(maxsize=64)
def _get(uri: str) -> CommandSpec:
    return parse_spec({"verb": "Get", "target": uri})


def send_and_answer(
    root: Root, device_id: str, seq: int, now: float, status: int = 200, results: tuple[dict[str, Any], ...] = ()
) -> None:
    """
    A DM session sends the command and the device answers it (C{done} for a 2xx, else C{failed}).
    """
    queue = dm_queue.queue_of(root, device_id)
    dm_queue.mark_sent(root, queue, seq, ("S1", "1", str(seq)), now)
    verdict = "done" if 200 <= status < 300 else "failed"
    dm_queue.mark_answered(root, queue, seq, verdict, status, (("", status),), results, now)


def recount(root: Root) -> dict[str, dict[str, int]]:
    """
    What every counter must say, found the slow way the counters replace:
    by walking every record. Values nothing has are left out.
    """
    found: dict[str, dict[str, int]] = {}

    def count(family: str, value: str) -> None:
        values = found.setdefault(family, {})
        values[value] = values.get(value, 0) + 1

    for device in root["devices"].values():
        count("devices.status", device.status)
        count("devices.kind", device.kind)
    for certificate in root["certs"].values():
        count("certificates.status", certificate.status)
    for queue in root["queues"].values():
        for command in queue.commands.values():
            count("commands.state", command.state)
    for log in root["pushes"].values():
        for job in log.jobs.values():
            count("pushes.state", job.state)
    for user in root["users"].values():
        count("users", "enabled" if user.enabled else "disabled")
    return found


def indexes(root: Root) -> dict[str, Any]:
    """
    What the indexes must hold, found by walking every record: the devices
    of each status and kind, (device, issued at, serial) of every
    certificate, (created at, device, seq) of every push job.
    """
    members: dict[tuple[str, str], set[str]] = {}
    for device_id, device in root["devices"].items():
        members.setdefault(("devices.status", device.status), set()).add(device_id)
        members.setdefault(("devices.kind", device.kind), set()).add(device_id)
    return {
        "members": members,
        "cert_index": {(c.device_id, c.issued_at, c.serial) for c in root["certs"].values()},
        "push_index": {
            (job.created_at, job.device_id, job.seq) for log in root["pushes"].values() for job in log.jobs.values()
        },
    }


def kept_indexes(root: Root) -> dict[str, Any]:
    """
    What the indexes hold (non-empty member sets only), to compare with L{indexes}.
    """
    return {
        "members": {key: set(members) for key, members in root["members"].items() if len(members)},
        "cert_index": set(root["cert_index"]),
        "push_index": set(root["push_index"]),
    }


def kept_counts(root: Root) -> dict[str, dict[str, int]]:
    """
    What the counters say (values at 0 left out), to compare with L{recount}.
    """
    found: dict[str, dict[str, int]] = {}
    for (family, value), counter in root["counters"].items():
        if counter():
            found.setdefault(family, {})[value] = counter()
    return found
