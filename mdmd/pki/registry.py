"""
The record of every certificate the CA issued, kept in the store.

These functions are units of work: they take the ZODB root (see
L{mdmd.store.runner.Store.run}) and return plain L{CertificateInfo} values.
"""

from __future__ import annotations

import datetime
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from mdmd.errors import SOAP_AUTHENTICATION, NotFound, PeerError
from mdmd.pki.ca import REVOCATION_REASONS, Revocation, serial_hex, thumbprint
from mdmd.store.models import IssuedCertificate

__all__ = [
    "CertificateInfo",
    "UnknownCertificate",
    "InvalidRevocationReason",
    "record_issued",
    "revoke",
    "lookup",
    "list_certificates",
    "revocations",
    "check_client",
    "ClientCertificateRefused",
    "ClientIdentity",
    "check_dm_client",
    "certificate_names",
]

Root = MutableMapping[str, Any]


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
    return _info(record)


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
    if record.status != "revoked":
        record.status = "revoked"
        record.revoked_at = now
        record.revocation_reason = reason
        root["revoked"][serial] = (now, reason)
    return _info(record)


def lookup(root: Root, serial: int) -> CertificateInfo | None:
    record = root["certs"].get(serial)
    return None if record is None else _info(record)


def list_certificates(root: Root, device_id: str | None = None) -> list[CertificateInfo]:
    """
    Issued certificates, oldest first, optionally only those of one device.
    """
    records = [
        _info(r) for r in root["certs"].values() if device_id is None or r.device_id == device_id
    ]
    return sorted(records, key=lambda info: (info.issued_at, info.serial))


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


def revocations(root: Root) -> list[Revocation]:
    """
    Every revoked serial, for the CRL.
    """
    return [
        Revocation(
            serial=serial,
            revoked_at=datetime.datetime.fromtimestamp(when, datetime.timezone.utc),
            reason=reason,
        )
        for serial, (when, reason) in root["revoked"].items()
    ]
