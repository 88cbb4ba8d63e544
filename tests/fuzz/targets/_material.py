"""
Keys, certificates and requests for making seeds (only C{--write-seeds}
runs this: the seeds it makes are kept as files, so runs are repeatable).
"""

from __future__ import annotations

import datetime
import functools

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mdmd.pki.ca import generate_rsa_key

__all__ = ["DEVICE_ID", "NOW", "device_key", "ec_csr", "ec_key", "issued", "weak_key"]

DEVICE_ID = "B5B954E81FBCB94EB79BD08BE625F4EE"
#: The moment the seeds are signed for and the targets check at (2026-01-01).
NOW = 1767225600.0


@functools.cache
def device_key() -> rsa.RSAPrivateKey:
    return generate_rsa_key(2048)


@functools.cache
def weak_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


@functools.cache
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@functools.cache
def issued() -> tuple[x509.Certificate, rsa.RSAPrivateKey, x509.Certificate]:
    """
    (CA certificate, device key, device certificate for client authentication), valid around L{NOW}.
    """
    ca_key = generate_rsa_key(2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz seeds CA")])
    start = datetime.datetime.fromtimestamp(NOW - 86400 * 365, datetime.timezone.utc)
    end = datetime.datetime.fromtimestamp(NOW + 86400 * 3650, datetime.timezone.utc)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = device_key()
    device = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DEVICE_ID)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ca, key, device


def ec_csr() -> bytes:
    """
    A request for a P-256 key (Windows sends RSA; the parser accepts both).
    """
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DEVICE_ID)]))
        .sign(ec_key(), hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.DER)
