"""
The record of every certificate the CA issued, kept in the store.

These functions are units of work: they take the ZODB root (see
L{mdmd.store.runner.Store.run}) and return plain L{CertificateInfo} values.

Issuing and revoking keep, in the same transaction, the count of
certificates by status (L{STATUSES}) and the per-device index
(C{cert_index}: (device id, issued at, serial)), so that a device's
certificates are found without walking everyone's. Listing pages
(L{certificate_page}): a device's certificates oldest first, through the
index; all of them by serial, the revoked ones through C{revoked} (the
CRL's list), the valid ones by checking each record within the page's scan
limit.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from mdmd.errors import SOAP_AUTHENTICATION, NotFound, PeerError
from mdmd.pki.ca import REVOCATION_REASONS, RevokedRecord, serial_hex, thumbprint
from mdmd.store.counters import Family
from mdmd.store.migration import Pass
from mdmd.store.models import IssuedCertificate
from mdmd.store.paging import Key, Listing, Page, PageRequest, keys_after

__all__ = [
    "CertificateInfo",
    "UnknownCertificate",
    "InvalidRevocationReason",
    "record_issued",
    "revoke",
    "lookup",
    "list_certificates",
    "certificate_page",
    "CertificateQuery",
    "LISTING",
    "DEVICE_LISTING",
    "STATUSES",
    "VALID",
    "REVOKED",
    "RECOUNT",
    "revoked",
    "crl_revision",
    "check_client",
    "ClientCertificateRefused",
    "ClientIdentity",
    "check_dm_client",
    "certificate_names",
]

Root = MutableMapping[str, Any]

#: The statuses of a certificate record (C{IssuedCertificate.status}).
VALID = "valid"
REVOKED = "revoked"
#: How many certificates are in each status.
STATUSES = Family("certificates.status", (VALID, REVOKED))


class InvalidRevocationReason(PeerError, ValueError):
    """
    Not an RFC 5280 revocation reason name.
    """


class UnknownCertificate(NotFound):
    """
    No certificate with that serial was issued by us.
    """

    def __str__(self) -> str:
        return f"no certificate with serial {self.args[0]}"


@dataclass(frozen=True)
class CertificateInfo:
    """
    A plain copy of an issued-certificate record.
    """

    serial: int
    device_id: str
    thumbprint: str
    not_before: float
    not_after: float
    issued_at: float
    status: str
    revoked_at: float | None
    revocation_reason: str | None
    der: bytes

    @property
    def serial_hex(self) -> str:
        return serial_hex(self.serial)

    def as_json(self) -> dict[str, Any]:
        return {
            "serial": self.serial_hex,
            "device_id": self.device_id,
            "thumbprint": self.thumbprint,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "issued_at": self.issued_at,
            "status": self.status,
            "revoked_at": self.revoked_at,
            "revocation_reason": self.revocation_reason,
        }


def _info(record: IssuedCertificate) -> CertificateInfo:
    return CertificateInfo(
        serial=record.serial,
        device_id=record.device_id,
        thumbprint=record.thumbprint,
        not_before=record.not_before,
        not_after=record.not_after,
        issued_at=record.issued_at,
        status=record.status,
        revoked_at=record.revoked_at,
        revocation_reason=record.revocation_reason,
        der=record.der,
    )


def record_issued(root: Root, cert: x509.Certificate, device_id: str, now: float) -> CertificateInfo:
    """
    Remember a certificate we just issued to C{device_id}.
    """
    serial = cert.serial_number
    if serial in root["certs"]:
        raise ValueError(f"serial {serial_hex(serial)} was already issued")
    record = IssuedCertificate(
        serial=serial,
        der=cert.public_bytes(serialization.Encoding.DER),
        device_id=device_id,
        thumbprint=thumbprint(cert),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        issued_at=now,
    )
    root["certs"][serial] = record
    _track(root, record)
    return _info(record)


def _track(root: Root, record: IssuedCertificate) -> None:
    """
    Count a certificate record and index it by device.
    """
    STATUSES.add(root, record.status)
    root["cert_index"].add((record.device_id, record.issued_at, record.serial))


def revoke(root: Root, serial: int, reason: str, now: float) -> CertificateInfo:
    """
    Mark a certificate revoked; revoking twice keeps the first date and reason.

    @raise UnknownCertificate: if we never issued C{serial}.
    @raise InvalidRevocationReason: if C{reason} is not an RFC 5280 reason name.
    """
    if reason not in REVOCATION_REASONS:
        raise InvalidRevocationReason(
            f"unknown revocation reason {reason!r} (one of {', '.join(REVOCATION_REASONS)})"
        )
    record = root["certs"].get(serial)
    if record is None:
        raise UnknownCertificate(serial_hex(serial))
    if record.status != REVOKED:
        STATUSES.move(root, record.status, REVOKED)
        record.status = REVOKED
        record.revoked_at = now
        record.revocation_reason = reason
        root["revoked"][serial] = (now, reason)
        root["crl_revision"].change(1)
    return _info(record)


def lookup(root: Root, serial: int) -> CertificateInfo | None:
    record = root["certs"].get(serial)
    return None if record is None else _info(record)


def list_certificates(root: Root, device_id: str | None = None) -> list[CertificateInfo]:
    """
    Issued certificates, oldest first, optionally only those of one device:
    for tests and small tools. Operators' surfaces page (L{certificate_page}).
    """
    if device_id is not None:
        return [_info(root["certs"][serial]) for _, _, serial in _device_keys(root, device_id, None)]
    records = [_info(r) for r in root["certs"].values()]
    return sorted(records, key=lambda info: (info.issued_at, info.serial))


#: All certificates, by serial.
LISTING = Listing("certificates", int)
#: One device's certificates, oldest first: keys of C{cert_index}.
DEVICE_LISTING = Listing("device certificates", (str, float, int))


@dataclass(frozen=True)
class CertificateQuery:
    """
    Which certificates a listing wants.
    """

    device_id: str | None = None
    #: L{VALID} or L{REVOKED}
    status: str | None = None


def _device_keys(root: Root, device_id: str, after: Key | None) -> Any:
    """
    The C{cert_index} keys of one device's certificates, after C{after}.
    """
    return keys_after(root["cert_index"], after, low=(device_id,), high=(device_id + "\0",))


def certificate_page(root: Root, query: CertificateQuery, request: PageRequest) -> Page[CertificateInfo]:
    """
    One page of the certificates C{query} wants: a device's oldest first, all by serial.

    @raise mdmd.store.paging.BadCursor: if the request's cursor is not one of this listing.
    """
    certs = root["certs"]

    def load(serial: int) -> CertificateInfo | None:
        record = certs.get(serial)
        if record is None or (query.status is not None and record.status != query.status):
            return None
        return _info(record)

    if query.device_id is not None:
        after, _ = DEVICE_LISTING.start(request)
        keys = _device_keys(root, query.device_id, after)
        return DEVICE_LISTING.collect(keys, lambda key: load(key[2]), request)
    after, _ = LISTING.start(request)
    index = root["revoked"] if query.status == REVOKED else certs
    return LISTING.collect(keys_after(index, after), load, request)


def _recount_start(root: Root) -> None:
    STATUSES.reset(root)
    root["cert_index"].clear()


#: The store upgrade's pass over the certificates: counted by status, indexed by device.
RECOUNT = Pass("certificates", "certs", lambda root, serial, record: _track(root, record), _recount_start)


class ClientCertificateRefused(PeerError):
    """
    A client certificate we do not (or no longer) honour.
    """

    http_status = 403
    syncml_status = 403
    soap_subcode = SOAP_AUTHENTICATION


def check_client(root: Root, certificate: x509.Certificate) -> CertificateInfo:
    """
    The record of a TLS-verified client certificate, if we still honour it.

    TLS has checked the chain to our CA; this checks the application's view:
    we issued that serial, the DER is the one we issued, and it is not revoked.

    @raise ClientCertificateRefused: naming what is wrong.
    """
    return _check_issued(root, certificate, certificate.public_bytes(serialization.Encoding.DER))


def _check_issued(root: Root, certificate: x509.Certificate, der: bytes) -> CertificateInfo:
    """
    L{check_client}, given the certificate's DER (encoding it costs: a DM message does it once).
    """
    record = root["certs"].get(certificate.serial_number)
    if record is None:
        raise ClientCertificateRefused(
            f"certificate {serial_hex(certificate.serial_number)} was not issued by this server"
        )
    if record.der != der:
        raise ClientCertificateRefused(
            f"certificate {serial_hex(record.serial)} does not match the one we issued"
        )
    if record.status != "valid":
        raise ClientCertificateRefused(f"certificate {serial_hex(record.serial)} is {record.status}")
    return _info(record)


@dataclass(frozen=True)
class ClientIdentity:
    """
    Who a DM client's TLS certificate says it is, once we honour the certificate.
    """

    #: the device ids it may be presented for
    names: frozenset[str]
    #: issued by a CA of the operator's device PKI ([https] device_ca_file), not by ours
    device_ca: bool

    def __str__(self) -> str:
        return ", ".join(sorted(self.names)) or "no device"


def certificate_names(certificate: x509.Certificate) -> frozenset[str]:
    """
    The names a certificate gives its subject: the subject's CNs and the SAN's URIs and DNS names.
    """
    names = {str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset(names)
    names.update(san.get_values_for_type(x509.UniformResourceIdentifier))
    names.update(san.get_values_for_type(x509.DNSName))
    return frozenset(names)


def _issued_by(certificate: x509.Certificate, authority: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(authority)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_dm_client(
    root: Root, certificate: x509.Certificate, device_cas: Sequence[x509.Certificate] = ()
) -> ClientIdentity:
    """
    Who the TLS-verified client certificate of a DM session names, if we honour it.

    A certificate we issued gets L{check_client}'s checks and names the
    device we issued it to. One we have no record of, signed by a CA of
    C{device_cas} (the TLS layer trusts those too), names the devices of
    L{certificate_names}; which devices may present such a certificate is
    the caller's to decide. Anything else is refused, as L{check_client}
    refuses it.

    @raise ClientCertificateRefused: naming what is wrong.
    """
    record = root["certs"].get(certificate.serial_number)
    der = certificate.public_bytes(serialization.Encoding.DER)
    ours = record is not None and record.der == der
    if not ours and any(_issued_by(certificate, authority) for authority in device_cas):
        return ClientIdentity(certificate_names(certificate), device_ca=True)
    return ClientIdentity(frozenset({_check_issued(root, certificate, der).device_id}), device_ca=False)


def crl_revision(root: Root) -> int:
    """
    How often the revocations changed: a CRL signed at this revision is
    current while it stays (one small object, cheap to read per request).
    """
    revision: int = root["crl_revision"]()
    return revision


def revoked(root: Root) -> Iterator[RevokedRecord]:
    """
    Every revocation as the store keeps it, in serial order (C{revoked} is
    kept sorted): what the CRL lists.
    """
    for serial, (when, reason) in root["revoked"].items():
        yield serial, when, reason
