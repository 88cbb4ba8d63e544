"""
Tests for L{mdmd.pki.csr}: PKCS#10 requests in the shapes Windows sends, and
PKCS#7 renewal requests, checked against requests built independently
(pyasn1 by hand, C{cryptography}, and the openssl command).
"""

from __future__ import annotations

import base64
import datetime
import os
import shutil
import subprocess

from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_modules import rfc5280, rfc5652
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from mdmd.pki import csr
from mdmd.pki.ca import CertificateAuthority, generate_rsa_key, private_key_pem
from mdmd.testing.windows.csr import legacy_csr, modern_csr, renewal_request

KEY = generate_rsa_key(2048)
#: Inputs the fuzzer saved (tests/fuzz/): each found an exception the parser did not declare.
FUZZ_CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus")
DEVICE_ID = "7BA748C8703E4DF2A74A92984117346A"
NOW = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)


def _authority() -> CertificateAuthority:
    return CertificateAuthority.create(generate_rsa_key(2048), "test CA", "t", datetime.timedelta(days=30), NOW)


AUTHORITY = _authority()
CERTIFICATE = AUTHORITY.issue_client(KEY.public_key(), DEVICE_ID, datetime.timedelta(days=10), NOW)


def _openssl(*args: str, input: bytes | None = None) -> bytes:
    if shutil.which("openssl") is None:
        raise SkipTest("the openssl command is not installed")
    return subprocess.run(["openssl", *args], input=input, capture_output=True, check=True).stdout


class PKCS10Tests(SynchronousTestCase):
    def test_legacy_windows_request(self) -> None:
        """
        The older Windows shape (PrintableString CN with ! and NUL, ISO
        sha1WithRSA OID) is refused by cryptography's loader but accepted here,
        its signature verified, its DeviceID extension read.
        """
        der = legacy_csr(KEY, DEVICE_ID)
        with self.assertRaises(ValueError):
            x509.load_der_x509_csr(der)
        request = csr.parse_csr(der)
        self.assertEqual(request.signature_algorithm, "1.3.14.3.2.29")
        self.assertEqual(request.hash_name, "sha1")
        self.assertEqual(request.key_description, "RSA 2048")
        self.assertEqual(request.device_id, DEVICE_ID)
        ((oid, cn),) = request.subject
        self.assertEqual(oid, "2.5.4.3")
        self.assertTrue(cn.startswith(DEVICE_ID + "!") and cn.endswith("\0"), cn)
        self.assertEqual(
            request.public_key.public_numbers(), KEY.public_key().public_numbers()
        )

    def test_modern_windows_request(self) -> None:
        """
        The Windows 11 shape (UTF8String, SHA-256, EKU and DeviceID extensions) is read too.
        """
        request = csr.parse_csr(modern_csr(KEY, DEVICE_ID))
        self.assertEqual((request.signature_algorithm, request.hash_name), ("1.2.840.113549.1.1.11", "sha256"))
        self.assertEqual(request.device_id, DEVICE_ID)
        self.assertIn("2.5.29.37", [oid for oid, _, _ in request.extensions])
        self.assertTrue(request.subject_text.startswith(f"CN={DEVICE_ID}!"))

    def test_openssl_requests(self) -> None:
        """
        Requests made by the openssl command (RSA with SHA-384, and EC P-256) are verified.
        """
        rsa_pem = _openssl(
            "req", "-new", "-key", "/dev/stdin", "-subj", "/CN=openssl device", "-sha384",
            input=private_key_pem(KEY),
        )
        request = csr.parse_csr(x509.load_pem_x509_csr(rsa_pem).public_bytes(serialization.Encoding.DER))
        self.assertEqual((request.hash_name, request.subject_text), ("sha384", "CN=openssl device"))
        ec_key = ec.generate_private_key(ec.SECP256R1())
        ec_pem = _openssl("req", "-new", "-key", "/dev/stdin", "-subj", "/CN=ec", input=private_key_pem(ec_key))
        request = csr.parse_csr(x509.load_pem_x509_csr(ec_pem).public_bytes(serialization.Encoding.DER))
        self.assertEqual(request.key_description, "EC secp256r1")

    def test_wrong_signature(self) -> None:
        """
        A request whose signature was made by another key is refused.
        """
        other = generate_rsa_key(2048)
        genuine = modern_csr(KEY, DEVICE_ID)
        forged = modern_csr(other, DEVICE_ID)
        # KEY's request body with other's signature: same length, so the DER stays valid
        body_end = len(genuine) - 256
        with self.assertRaises(csr.InvalidCSR) as caught:
            csr.parse_csr(genuine[:body_end] + forged[-256:])
        self.assertIn("signature does not verify", str(caught.exception))

    def test_weak_key(self) -> None:
        """
        A 1024-bit key is refused by the policy check, naming both sizes.
        """
        request = csr.parse_csr(modern_csr(rsa.generate_private_key(65537, 1024), DEVICE_ID))
        with self.assertRaises(csr.WeakKey) as caught:
            csr.check_key(request, 2048)
        self.assertIn("1024 bits; at least 2048", str(caught.exception))
        csr.check_key(csr.parse_csr(modern_csr(KEY, DEVICE_ID)), 2048)

    def test_garbage(self) -> None:
        """
        Bytes that are not a request, trailing bytes, oversized input and
        unknown signature algorithms are each refused with InvalidCSR.
        """
        der = modern_csr(KEY, DEVICE_ID)
        for data, expected in (
            (b"hello", "not a PKCS#10"),
            (der + b"\0", "trailing bytes"),
            (b"\x30\x03\x02\x01\x00", "not a PKCS#10"),
            (b"0" * (csr.MAX_REQUEST_SIZE + 1), "too large"),
            (legacy_csr(KEY, DEVICE_ID, signature_oid="1.2.840.113549.1.1.4"), "unsupported signature algorithm"),
        ):
            with self.assertRaises(csr.InvalidCSR) as caught:
                csr.parse_csr(data)
            self.assertIn(expected, str(caught.exception))

    @given(st.data())
    def test_mutations_are_refused_cleanly(self, data: st.DataObject) -> None:
        """
        Any corruption of a request either still verifies or raises InvalidRequest, nothing else.
        """
        der = bytearray(legacy_csr(KEY, DEVICE_ID) if data.draw(st.booleans()) else modern_csr(KEY, DEVICE_ID))
        for _ in range(data.draw(st.integers(1, 4))):
            index = data.draw(st.integers(0, len(der) - 1))
            der[index] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(1, len(der)))
        try:
            csr.parse_csr(bytes(der[:cut]))
        except csr.InvalidRequest:
            pass


class PKCS7Tests(SynchronousTestCase):
    def test_renewal_request(self) -> None:
        """
        A SignedData made by cryptography (OpenSSL) verifies; its signer and inner request are returned.
        """
        inner = modern_csr(generate_rsa_key(2048), DEVICE_ID)
        signed = csr.parse_signed_request(renewal_request(CERTIFICATE, KEY, inner))
        self.assertEqual(signed.signer, CERTIFICATE)
        self.assertEqual(signed.digest_name, "sha256")
        self.assertEqual(csr.request_from_content(signed.content), inner)

    def test_base64_content(self) -> None:
        """
        A user-initiated renewal carries the request base64-encoded inside; it is unwrapped.
        """
        inner = legacy_csr(KEY, DEVICE_ID)
        signed = csr.parse_signed_request(renewal_request(CERTIFICATE, KEY, inner, base64_content=True))
        self.assertEqual(signed.content, base64.b64encode(inner))
        self.assertEqual(csr.request_from_content(signed.content), inner)

    def test_openssl_cms(self) -> None:
        """
        SignedData made by openssl cms, with and without signed attributes, verifies.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        with open(f"{directory}/cert.pem", "wb") as f:
            f.write(CERTIFICATE.public_bytes(serialization.Encoding.PEM))
        with open(f"{directory}/key.pem", "wb") as f:
            f.write(private_key_pem(KEY))
        inner = modern_csr(KEY, DEVICE_ID)
        for extra in ([], ["-noattr"]):
            der = _openssl(
                "cms", "-sign", "-binary", "-nodetach", "-outform", "DER", "-md", "sha256",
                "-signer", f"{directory}/cert.pem", "-inkey", f"{directory}/key.pem", *extra,
                input=inner,
            )
            signed = csr.parse_signed_request(der)
            self.assertEqual((signed.content, signed.signer), (inner, CERTIFICATE))

    def test_tampered_content(self) -> None:
        """
        Changing the signed request breaks the message digest.
        """
        inner = modern_csr(KEY, DEVICE_ID)
        der = renewal_request(CERTIFICATE, KEY, inner)
        position = der.index(inner) + 40
        tampered = der[:position] + bytes([der[position] ^ 1]) + der[position + 1 :]
        with self.assertRaises(csr.InvalidSignedRequest) as caught:
            csr.parse_signed_request(tampered)
        self.assertIn("message digest does not match", str(caught.exception))

    def test_signed_by_another_key(self) -> None:
        """
        A certificate that does not belong to the signing key does not verify.
        """
        impostor = AUTHORITY.issue_client(generate_rsa_key(2048).public_key(), DEVICE_ID, datetime.timedelta(days=1), NOW)
        with self.assertRaises(csr.InvalidSignedRequest) as caught:
            csr.parse_signed_request(renewal_request(impostor, KEY, modern_csr(KEY, DEVICE_ID)))
        self.assertIn("does not verify", str(caught.exception))

    def test_not_signed_data(self) -> None:
        """
        A bare PKCS#10, garbage, and non-base64 content are refused with InvalidSignedRequest.
        """
        for data in (modern_csr(KEY, DEVICE_ID), b"\x30\x00", b"garbage"):
            with self.assertRaises(csr.InvalidSignedRequest):
                csr.parse_signed_request(data)
        with self.assertRaises(csr.InvalidSignedRequest):
            csr.request_from_content(b"not base64 !")


#: An INTEGER of about 4340 decimal digits: Python refuses to print it (str() raises ValueError).
HUGE_INTEGER = b"\x02\x82\x07\x08\x7f" + b"\xff" * 1799


def _renewal_with(change: Callable[[rfc5652.SignedData], None]) -> bytes:
    """
    A renewal request re-encoded after C{change} edited its SignedData (the signature is not renewed).
    """
    info, _ = der_decoder.decode(
        renewal_request(CERTIFICATE, KEY, modern_csr(KEY, DEVICE_ID)), asn1Spec=rfc5652.ContentInfo()
    )
    signed, _ = der_decoder.decode(bytes(info["content"]), asn1Spec=rfc5652.SignedData())
    change(signed)
    info["content"] = univ.Any(der_encoder.encode(signed))
    return bytes(der_encoder.encode(info))


def _signer_certificate(replace: Callable[[bytes], bytes]) -> Callable[[rfc5652.SignedData], None]:
    """
    A change of the SignedData's certificate: C{replace} edits its DER.
    """

    def change(signed: rfc5652.SignedData) -> None:
        choice = signed["certificates"][0]
        der = replace(bytes(der_encoder.encode(choice["certificate"])))
        choice["certificate"], _ = der_decoder.decode(der, asn1Spec=rfc5280.Certificate())

    return change


class UnreadableRequestTests(SynchronousTestCase):
    """
    Issue 12, defect 1: requests the fuzzer built that escaped as exceptions
    other than L{csr.InvalidRequest} (an internal fault instead of
    C{s:CertificateRequest}).
    """

    def test_fuzz_pkcs7_signer_certificate_of_unknown_version(self) -> None:
        """
        A signer certificate of X.509 version 35 (cryptography's InvalidVersion, not a ValueError) is refused.
        """
        der = _renewal_with(_signer_certificate(lambda c: c.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x22", 1)))
        with self.assertRaises(csr.InvalidSignedRequest) as caught:
            csr.parse_signed_request(der)
        self.assertIn("not a valid X509 version", str(caught.exception))

    def test_fuzz_pkcs7_signer_key_of_unknown_type(self) -> None:
        """
        A signer certificate whose key algorithm cryptography does not know (UnsupportedAlgorithm) is refused.
        """
        rsa_encryption = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"
        unknown = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x23"
        der = _renewal_with(_signer_certificate(lambda c: c.replace(rsa_encryption, unknown)))
        with self.assertRaises(csr.InvalidSignedRequest) as caught:
            csr.parse_signed_request(der)
        self.assertIn("Unknown key type", str(caught.exception))

    def test_fuzz_pkcs7_signer_key_unreadable(self) -> None:
        """
        A signer certificate whose RSA key does not deserialize (ValueError from cryptography) is refused.
        """
        modulus = CERTIFICATE.public_key().public_numbers().n.to_bytes(256, "big")  # type: ignore[union-attr]  # an RSA key
        der = _renewal_with(_signer_certificate(lambda c: c.replace(modulus, b"\x00" * 256)))
        with self.assertRaises(csr.InvalidSignedRequest) as caught:
            csr.parse_signed_request(der)
        self.assertIn("deserialize", str(caught.exception))

    def _fuzzed(self, name: str) -> str:
        """
        The refusal of the renewal request the fuzzer saved as C{name} (tests/fuzz/corpus/pkcs7/).
        """
        with open(os.path.join(FUZZ_CORPUS, "pkcs7", name), "rb") as f:
            der = f.read()
        with self.assertRaises(csr.InvalidSignedRequest) as caught:
            csr.parse_signed_request(der)
        return str(caught.exception)

    def test_fuzz_pkcs7_signer_issuer_unreadable(self) -> None:
        """
        A signer certificate whose issuer cryptography cannot parse (a ValueError when first read) is refused.
        """
        self.assertIn('location: ["issuer"]', self._fuzzed("signer-issuer-unreadable"))

    def test_fuzz_pkcs7_signer_issuer_not_encodable(self) -> None:
        """
        A signer identifier whose issuer pyasn1 cannot encode again (PyAsn1Error) is refused.
        """
        self.assertIn("Error encoding", self._fuzzed("signer-issuer-not-encodable"))

    def test_fuzz_pkcs7_length_past_index_size(self) -> None:
        """
        A length pyasn1 cannot read as far as (an OverflowError) is refused.
        """
        self.assertIn("cannot fit 'int' into an index-sized integer", self._fuzzed("length-past-index-size"))

    def test_fuzz_pkcs7_signer_issuer_bitstring_attribute(self) -> None:
        """
        A signer certificate whose issuer has a BIT STRING attribute cryptography refuses (TypeError) is refused.
        """
        self.assertIn("BitString", self._fuzzed("signer-issuer-bitstring-attribute"))

    def test_fuzz_pkcs7_certificate_not_encodable(self) -> None:
        """
        A certificate that pyasn1's encoder fails on with an IndexError is refused.
        """
        self.assertIn("index out of range", self._fuzzed("certificate-not-encodable"))

    def test_fuzz_pkcs10_device_id_of_more_than_4300_digits(self) -> None:
        """
        A DeviceID extension holding an INTEGER Python will not print does not raise: it names no usable device.
        """
        request = csr.parse_csr(_csr_with_device_id_value(HUGE_INTEGER))
        device_id = request.device_id
        self.assertTrue(device_id is None or not device_id.isalnum())


def _csr_with_device_id_value(value: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DEVICE_ID)]))
        .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(csr.OID_MS_DEVICE_ID), value), critical=False)
        .sign(KEY, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


class OpenSSLAgreesTests(SynchronousTestCase):
    def test_modern_request_verifies_with_openssl(self) -> None:
        """
        openssl req -verify accepts the emulator's modern request (it is a real CSR, not just ours).
        """
        pem = x509.load_der_x509_csr(modern_csr(KEY, DEVICE_ID)).public_bytes(serialization.Encoding.PEM)
        output = subprocess.run(
            ["openssl", "req", "-verify", "-noout"], input=pem, capture_output=True
        ) if shutil.which("openssl") else None
        if output is None:
            raise SkipTest("the openssl command is not installed")
        self.assertEqual(output.returncode, 0, output.stderr)
        self.assertIn(b"verify OK", output.stdout + output.stderr)

