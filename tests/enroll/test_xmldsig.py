"""
Tests for L{mdmd.enroll.xmldsig}: the Certificate policy's signed security header.
"""

from __future__ import annotations

import datetime

from twisted.trial.unittest import SynchronousTestCase

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
