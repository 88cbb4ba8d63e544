"""
The built-in certificate authority, as pure functions of keys, names and time.

A self-signed root signs mdmd's TLS server certificate and the client
certificates devices receive at enrollment. Nothing here reads the clock or
touches files: callers pass C{now} and persist what comes back.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mdmd.errors import PeerError

__all__ = [
    "CertificateAuthority",
    "Revocation",
    "RevokedEntries",
    "RevokedRecord",
    "revoked_entry",
    "REVOCATION_REASONS",
    "generate_rsa_key",
    "thumbprint",
    "serial_hex",
    "parse_serial",
    "InvalidSerial",
    "private_key_pem",
    "certificate_pem",
]

#: Clock skew allowance: issued certificates start this long before C{now}.
BACKDATE = datetime.timedelta(minutes=5)

#: RFC 5280 CRLReason names accepted by revoke(), mapped to cryptography's flags.
REVOCATION_REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
}

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Revocation:
    """
    One entry of a CRL.
    """

    serial: int
    revoked_at: datetime.datetime
    reason: str = "unspecified"


def revoked_entry(entry: Revocation) -> x509.RevokedCertificate:
    """
    The CRL entry of a revocation (its reason as an extension, unless unspecified).
    """
    revoked = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked_at)
    reason = REVOCATION_REASONS.get(entry.reason, x509.ReasonFlags.unspecified)
    if reason is not x509.ReasonFlags.unspecified:
        revoked = revoked.add_extension(x509.CRLReason(reason), critical=False)
    return revoked.build()


#: A revocation as the store keeps it: (serial, POSIX time, reason name).
RevokedRecord = tuple[int, float, str]


class RevokedEntries:
    """
    CRL entries, each built once: a CRL is signed whole after every
    revocation, and building 100,000 entries takes seconds.

    Keyed by the revocations as the store keeps them, so that the entries
    of a CRL already signed are found without building anything. Not
    thread-safe: one CRL is signed at a time.
    """

    def __init__(self) -> None:
        self._built: dict[RevokedRecord, x509.RevokedCertificate] = {}

    def __call__(self, revoked: Iterable[RevokedRecord]) -> list[x509.RevokedCertificate]:
        """
        The entries of C{revoked}, in their order; entries no longer asked for are forgotten.
        """
        known = self._built
        built = {}
        for record in revoked:
            entry = known.get(record)
            if entry is None:
                serial, when, reason = record
                at = datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
                entry = revoked_entry(Revocation(serial, at, reason))
            built[record] = entry
        self._built = built
        return list(built.values())


def generate_rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def thumbprint(cert: x509.Certificate | bytes) -> str:
    """
    Upper-case hex SHA-1 of the DER certificate, as Windows names certificates.
    """
    der = cert if isinstance(cert, bytes) else cert.public_bytes(serialization.Encoding.DER)
    return hashlib.sha1(der).hexdigest().upper()


def serial_hex(serial: int) -> str:
    """
    The spelling of a serial number mdmd shows and accepts: upper-case hex.
    """
    return format(serial, "X")


class InvalidSerial(PeerError, ValueError):
    """
    Not a certificate serial (hex, with or without C{0x} or colons).
    """


def parse_serial(text: str) -> int:
    """
    Read a serial in hex, with or without C{0x} or colons.

    @raise InvalidSerial: if C{text} is not a hex serial.
    """
    cleaned = text.strip().replace(":", "")
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    if not cleaned or len(cleaned) > 40:
        raise InvalidSerial(f"not a certificate serial: {text!r}")
    try:
        return int(cleaned, 16)
    except ValueError:
        raise InvalidSerial(f"not a certificate serial (hex expected): {text!r}") from None


def private_key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_usage(*, digital_signature: bool = False, key_encipherment: bool = False,
               key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


@dataclass(frozen=True)
class CertificateAuthority:
    """
    A root CA: its key and self-signed certificate.
    """

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(
        cls,
        key: rsa.RSAPrivateKey,
        common_name: str,
        organization: str,
        lifetime: datetime.timedelta,
        now: datetime.datetime,
    ) -> CertificateAuthority:
        """
        Make a new self-signed root for C{key}.
        """
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                _key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def name(self) -> x509.Name:
        return self.certificate.subject

    def _leaf(
        self,
        subject: x509.Name,
        public_key: PublicKey,
        lifetime: datetime.timedelta,
        now: datetime.datetime,
        serial: int | None,
    ) -> x509.CertificateBuilder:
        ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        not_after = min(now + lifetime, self.certificate.not_valid_after_utc)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(serial if serial is not None else x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                _key_usage(
                    digital_signature=True,
                    key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value),
                critical=False,
            )
        )

    def issue_server(
        self,
        public_key: PublicKey,
        hostnames: Sequence[str],
        organization: str,
        lifetime: datetime.timedelta,
        now: datetime.datetime,
    ) -> x509.Certificate:
        """
        A TLS server certificate for C{hostnames} (the first is the CN).
        """
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0]),
            ]
        )
        return (
            self._leaf(subject, public_key, lifetime, now, None)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(_san(hostnames), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue_client(
        self,
        subject_key: PublicKey | x509.CertificateSigningRequest,
        device_id: str,
        lifetime: datetime.timedelta,
        now: datetime.datetime,
        serial: int | None = None,
    ) -> x509.Certificate:
        """
        A client-authentication certificate binding C{device_id} (its CN) to a key.

        C{subject_key} is a public key, or a CSR whose signature the caller has
        already verified; nothing but its key is taken from a CSR.
        """
        public_key = (
            subject_key.public_key()
            if isinstance(subject_key, x509.CertificateSigningRequest)
            else subject_key
        )
        if not isinstance(public_key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            raise TypeError(f"unsupported public key type {type(public_key).__name__}")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)])
        return (
            self._leaf(subject, public_key, lifetime, now, serial)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def crl(
        self,
        revocations: Iterable[Revocation],
        number: int,
        now: datetime.datetime,
        lifetime: datetime.timedelta,
    ) -> x509.CertificateRevocationList:
        """
        A CRL listing C{revocations}, valid from C{now} for C{lifetime}.
        """
        return self.crl_of_entries([revoked_entry(r) for r in revocations], number, now, lifetime)

    def crl_of_entries(
        self,
        entries: Sequence[x509.RevokedCertificate],
        number: int,
        now: datetime.datetime,
        lifetime: datetime.timedelta,
    ) -> x509.CertificateRevocationList:
        """
        A CRL of entries already built (L{RevokedEntries}), valid from C{now} for C{lifetime}.
        """
        ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        # All entries at once: adding them one by one copies the builder's list each time.
        builder = (
            x509.CertificateRevocationListBuilder(revoked_certificates=list(entries))
            .issuer_name(self.name)
            .last_update(now)
            .next_update(now + lifetime)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value),
                critical=False,
            )
        )
        return builder.sign(self.key, hashes.SHA256())
