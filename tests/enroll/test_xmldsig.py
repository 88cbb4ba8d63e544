"""
Tests for L{mdmd.enroll.xmldsig}: the Certificate policy's signed security header.
"""

from __future__ import annotations

import base64
import datetime

from twisted.trial.unittest import SynchronousTestCase

from cryptography.hazmat.primitives import serialization

from mdmd.enroll import soap, xmldsig
from mdmd.pki.ca import CertificateAuthority, generate_rsa_key
from mdmd.testing.windows.soap import get_policies_message, signed_security_header

from .helpers import KEY, OTHER_KEY

NOW = 1_800_000_000.0
MOMENT = datetime.datetime.fromtimestamp(NOW, datetime.timezone.utc)
AUTHORITY = CertificateAuthority.create(generate_rsa_key(2048), "root", "o", datetime.timedelta(days=30), MOMENT)
CERTIFICATE = AUTHORITY.issue_client(KEY.public_key(), "bulk", datetime.timedelta(days=10), MOMENT)
UNSIGNED = get_policies_message("https://h/p", '<wsse:Security s:mustUnderstand="1"/>')


def _verify(data: bytes, now: float = NOW) -> xmldsig.SignedHeader:
    request = soap.parse_request(data)
    return xmldsig.verify_signed_header(request.root, request.security, now)


class SignedHeaderTests(SynchronousTestCase):
    def test_valid(self) -> None:
        """
        A header signed with the certificate's key verifies and names the certificate and signed ids.
        """
        header = _verify(signed_security_header(UNSIGNED, CERTIFICATE, KEY, NOW))
        self.assertEqual((header.certificate, header.signed_ids), (CERTIFICATE, ("_0",)))

    def test_pretty_printed_message_still_verifies(self) -> None:
        """
        Whitespace added outside the signed elements does not matter.
        """
        signed = signed_security_header(UNSIGNED, CERTIFICATE, KEY, NOW)
        self.assertEqual(_verify(signed.replace(b"<s:Body", b"\n  <s:Body")).certificate, CERTIFICATE)

    def test_tampered_timestamp(self) -> None:
        """
        Changing the signed Timestamp breaks its digest.
        """
        signed = signed_security_header(UNSIGNED, CERTIFICATE, KEY, NOW)
        year = str(MOMENT.year).encode()
        tampered = signed.replace(b"<u:Expires>" + year, b"<u:Expires>" + str(MOMENT.year + 1).encode())
        self.assertNotEqual(signed, tampered)
        with self.assertRaises(soap.AuthenticationFault) as caught:
            _verify(tampered)
        self.assertIn("digest", str(caught.exception))

    def test_wrong_key(self) -> None:
        """
        A signature by another key than the certificate's does not verify.
        """
        with self.assertRaises(soap.AuthenticationFault) as caught:
            _verify(signed_security_header(UNSIGNED, CERTIFICATE, OTHER_KEY, NOW))
        self.assertIn("does not verify", str(caught.exception))

    def test_stale(self) -> None:
        """
        A header signed an hour ago (or an hour ahead) is refused: it could be a replay.
        """
        for offset in (-3600, 3600):
            with self.assertRaises(soap.AuthenticationFault) as caught:
                _verify(signed_security_header(UNSIGNED, CERTIFICATE, KEY, NOW + offset))
            self.assertIn("not current", str(caught.exception))

    def test_missing_parts(self) -> None:
        """
        No security header, no certificate, or no signature: InvalidSecurity.
        """
        for data, expected in (
            (get_policies_message("https://h/p", ""), "no WS-Security header"),
            (UNSIGNED, "no X.509 certificate"),
        ):
            with self.assertRaises(soap.InvalidSecurityFault) as caught:
                _verify(data)
            self.assertIn(expected, str(caught.exception))
        signed = signed_security_header(UNSIGNED, CERTIFICATE, KEY, NOW)
        start, end = signed.index(b"<ds:Signature"), signed.index(b"</ds:Signature>") + len(b"</ds:Signature>")
        with self.assertRaises(soap.InvalidSecurityFault) as caught:
            _verify(signed[:start] + signed[end:])
        self.assertIn("not signed", str(caught.exception))


def _with_certificate_der(signed: bytes, change: tuple[bytes, bytes]) -> bytes:
    """
    C{signed} with its BinarySecurityToken's certificate DER edited (the token is not signed).
    """
    der = CERTIFICATE.public_bytes(serialization.Encoding.DER)
    edited = der.replace(*change)
    assert edited != der
    return signed.replace(base64.b64encode(der), base64.b64encode(edited))


class UnreadableHeaderTests(SynchronousTestCase):
    """
    Issue 12, defect 1: headers the fuzzer built that escaped as exceptions
    other than a SOAP fault, before the peer was authenticated.
    """

    def test_fuzz_c14n_relative_namespace_uri(self) -> None:
        """
        A relative namespace URI in the signed Timestamp (which C14N refuses) is InvalidSecurity.
        """
        signed = signed_security_header(UNSIGNED, CERTIFICATE, KEY, NOW)
        tampered = signed.replace(b"<u:Timestamp ", b'<u:Timestamp xmlns:r="relative/uri" ', 1)
        self.assertNotEqual(signed, tampered)
        with self.assertRaises(soap.InvalidSecurityFault) as caught:
            _verify(tampered)
        self.assertIn("cannot be canonicalized", str(caught.exception))

    def test_fuzz_certificate_of_unknown_version(self) -> None:
        """
        A token certificate of X.509 version 35 (InvalidVersion, not a ValueError) is no certificate.
        """
        signed = signed_security_header(UNSIGNED, CERTIFICATE, KEY, NOW)
        tampered = _with_certificate_der(signed, (b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x22"))
        with self.assertRaises(soap.InvalidSecurityFault) as caught:
            _verify(tampered)
        self.assertIn("no X.509 certificate", str(caught.exception))

    def test_fuzz_certificate_key_of_unknown_type(self) -> None:
        """
        A token certificate whose key algorithm cryptography does not know is InvalidSecurity.
        """
        signed = signed_security_header(UNSIGNED, CERTIFICATE, KEY, NOW)
        rsa_encryption = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"
        tampered = _with_certificate_der(signed, (rsa_encryption, rsa_encryption[:-1] + b"\x23"))
        with self.assertRaises(soap.InvalidSecurityFault) as caught:
            _verify(tampered)
        self.assertIn("key is unsupported or malformed", str(caught.exception))

    def test_fuzz_certificate_key_unreadable(self) -> None:
        """
        A token certificate whose RSA key does not deserialize is InvalidSecurity.
        """
        signed = signed_security_header(UNSIGNED, CERTIFICATE, KEY, NOW)
        modulus = KEY.public_key().public_numbers().n.to_bytes(256, "big")
        tampered = _with_certificate_der(signed, (modulus, b"\x00" * 256))
        with self.assertRaises(soap.InvalidSecurityFault) as caught:
            _verify(tampered)
        self.assertIn("key is unsupported or malformed", str(caught.exception))
