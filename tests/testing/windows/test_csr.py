"""
Tests for L{mdmd.testing.windows.csr}: the requests it builds have the shapes
real Windows clients send, and both mdmd's parser and OpenSSL accept them.
"""

from __future__ import annotations

import base64
import datetime
import shutil
import subprocess
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.trial.unittest import SynchronousTestCase

from mdmd.pki.csr import OID_MS_DEVICE_ID, parse_csr, parse_signed_request, request_from_content
from mdmd.testing.windows.csr import CSR_SHAPES, OID_DEVICE_ID, legacy_csr, modern_csr, renewal_request

DEVICE_ID = "7BA748C8703E4DF2A74A92984117346A"
#: The CN Windows writes: the DeviceID, "!", and a hex string.
CN = f"{DEVICE_ID}!{uuid.uuid5(uuid.NAMESPACE_OID, DEVICE_ID).hex}"
KEY = rsa.generate_private_key(65537, 2048)
OPENSSL = shutil.which("openssl")


def _openssl(*args: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *args], input=data, capture_output=True, timeout=30)


def _tampered(der: bytes) -> bytes:
    """
    The request with the last byte of its signature changed.
    """
    return der[:-1] + bytes([der[-1] ^ 0x01])


def _certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DEVICE_ID)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


class ShapeTests(SynchronousTestCase):
    def test_modern(self) -> None:
        """
        Windows 11's request: a UTF8String CN, the DeviceID extension (with its
        NUL) and EKU clientAuth, signed with SHA-256.
        """
        der = modern_csr(KEY, DEVICE_ID)
        request = x509.load_der_x509_csr(der)
        self.assertEqual(request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, CN)
        self.assertIn(b"\x0c" + bytes([len(CN)]) + CN.encode(), der)  # UTF8String
        extension = request.extensions.get_extension_for_oid(x509.ObjectIdentifier(OID_DEVICE_ID))
        self.assertEqual(extension.value.value, DEVICE_ID.encode() + b"\0")  # type: ignore[attr-defined]
        usage = request.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(usage), [ExtendedKeyUsageOID.CLIENT_AUTH])
        self.assertIsInstance(request.signature_hash_algorithm, hashes.SHA256)
        self.assertTrue(request.is_signature_valid)

    def test_legacy(self) -> None:
        """
        The older Windows 10 request: a PrintableString CN with "!" and a
        trailing NUL (which is not valid DER: C{cryptography} refuses it),
        signed under the ISO sha1WithRSA OID.
        """
        der = legacy_csr(KEY, DEVICE_ID)
        self.assertIn(b"\x13" + bytes([len(CN) + 1]) + CN.encode() + b"\0", der)  # PrintableString
        self.assertIn(b"\x06\x05\x2b\x0e\x03\x02\x1d", der)  # OID 1.3.14.3.2.29
        self.assertRaises(ValueError, x509.load_der_x509_csr, der)

    def test_shapes_by_name(self) -> None:
        """
        The device's C{csr_shape} names one of the two builders.
        """
        self.assertEqual(CSR_SHAPES, {"modern": modern_csr, "legacy": legacy_csr})
        self.assertEqual(OID_DEVICE_ID, OID_MS_DEVICE_ID)


class AcceptedByMdmdTests(SynchronousTestCase):
    def test_requests(self) -> None:
        """
        mdmd's parser verifies both shapes' signatures and reads the DeviceID.
        """
        for shape, algorithm in (("modern", "1.2.840.113549.1.1.11"), ("legacy", "1.3.14.3.2.29")):
            request = parse_csr(CSR_SHAPES[shape](KEY, DEVICE_ID))
            self.assertEqual((request.device_id, request.signature_algorithm), (DEVICE_ID, algorithm), shape)
            self.assertEqual(request.public_key.public_numbers(), KEY.public_key().public_numbers())

    def test_renewal(self) -> None:
        """
        A renewal is a SignedData by the current certificate over the new
        request: DER for automatic renewals, base64 for user-initiated ones.
        """
        certificate = _certificate(KEY)
        csr = modern_csr(KEY, DEVICE_ID)
        for base64_content, content in ((False, csr), (True, base64.b64encode(csr))):
            signed = parse_signed_request(renewal_request(certificate, KEY, csr, base64_content))
            self.assertEqual((signed.signer, signed.content), (certificate, content))
            self.assertEqual(request_from_content(signed.content), csr)


class AcceptedByOpenSSLTests(SynchronousTestCase):
    if OPENSSL is None:
        skip = "openssl is not installed"

    def test_requests(self) -> None:
        """
        C{openssl req -verify} accepts both shapes' self-signatures, and
        refuses them once a signature byte is changed.
        """
        for shape in ("modern", "legacy"):
            der = CSR_SHAPES[shape](KEY, DEVICE_ID)
            verified = _openssl("req", "-verify", "-inform", "DER", "-noout", data=der)
            self.assertEqual(verified.returncode, 0, (shape, verified.stderr))
            self.assertIn(b"verify OK", verified.stdout + verified.stderr)
            # OpenSSL 3.0 exits 0 on a bad self-signature too: read what it says
            tampered = _openssl("req", "-verify", "-inform", "DER", "-noout", data=_tampered(der))
            self.assertNotIn(b"verify OK", tampered.stdout + tampered.stderr, shape)

    def test_renewal(self) -> None:
        """
        C{openssl cms -verify} accepts the renewal's signature and gives back the request.
        """
        certificate = _certificate(KEY)
        csr = modern_csr(KEY, DEVICE_ID)
        verified = _openssl(
            "cms", "-verify", "-inform", "DER", "-binary", "-noverify", data=renewal_request(certificate, KEY, csr)
        )
        self.assertEqual(verified.returncode, 0, verified.stderr)
        self.assertEqual(verified.stdout, csr)
