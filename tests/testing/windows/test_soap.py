"""
Tests for L{mdmd.testing.windows.soap}: the requests have the shapes of
Microsoft's samples (C{tests/enroll/samples}) and mdmd's own parsers read
back what was put in.
"""

from __future__ import annotations

import base64
import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from mdmd.enroll import soap as ns
from mdmd.enroll.discovery import parse_discover
from mdmd.enroll.wstep import ENROLLMENT_TOKEN_TYPE, ISSUE, RENEW, RST_ACTION, USER_TOKEN_VALUE_TYPE, parse_token_request
from mdmd.enroll.xcep import check_get_policies
from mdmd.enroll.xmldsig import verify_signed_header
from mdmd.testing.windows.soap import (
    discover_message,
    get_policies_message,
    signed_security_header,
    token_message,
    user_token_security,
    username_security,
)
from mdmd.xmlparser import parse

SAMPLES = Path(__file__).resolve().parents[2] / "enroll" / "samples"
URL = "https://mdm.example.com/EnrollmentServer/Enrollment.svc"
NOW = 1_800_000_000.0
CONTEXT = (("DeviceID", "7BA748C8703E4DF2A74A92984117346A"), ("MAC", "00:15:5D:01:02:03"), ("MAC", "00:15:5D:01:02:04"))


def sample(name: str) -> etree._Element:
    return parse((SAMPLES / name).read_bytes())


def skeleton(element: etree._Element) -> tuple[object, ...]:
    """
    An element's shape: prefix, name and attribute names, then its child
    elements' shapes, repeats written once (text and comments left out).
    """
    children: list[tuple[object, ...]] = []
    for child in element:
        if isinstance(child.tag, str) and (shape := skeleton(child)) not in children:
            children.append(shape)
    return (element.prefix, element.tag, tuple(sorted(element.attrib)), tuple(children))


def header_text(root: etree._Element, name: str) -> str:
    found = root.find(f"{{{ns.SOAP12}}}Header/{{{ns.WSA}}}{name}")
    assert found is not None and found.text is not None
    return found.text


class SampleShapeTests(SynchronousTestCase):
    def test_get_policies(self) -> None:
        """
        GetPolicies with the OnPremise header is shaped like Microsoft's sample, element for element.
        """
        ours = parse(get_policies_message(URL, username_security("user@contoso.com", "pw")))
        self.assertEqual(skeleton(ours), skeleton(sample("getpolicies-onpremise.xml")))

    def test_request_security_token(self) -> None:
        """
        The RequestSecurityToken with the OnPremise header is shaped like Microsoft's sample.
        """
        ours = parse(token_message(URL, username_security("user@contoso.com", "pw"), b"\x30\x00", CONTEXT))
        self.assertEqual(skeleton(ours), skeleton(sample("rst-onpremise.xml")))

    def test_discover_header(self) -> None:
        """
        Discover's header is shaped like the sample's, and its request holds
        every field the sample's does.
        """
        ours = parse(discover_message(URL, "user@contoso.com"))
        theirs = sample("discover-onpremise.xml")
        self.assertEqual(
            skeleton(ours.find(f"{{{ns.SOAP12}}}Header")), skeleton(theirs.find(f"{{{ns.SOAP12}}}Header"))
        )

        def fields(root: etree._Element) -> set[str]:
            request = root.find(f".//{{{ns.DISCOVERY}/}}request")
            assert request is not None
            return {ns.local(child) for child in request if isinstance(child.tag, str)}

        self.assertLessEqual(fields(theirs), fields(ours))

    def test_padded_addressing(self) -> None:
        """
        Action and To are padded with whitespace, as in the samples (servers must strip it).
        """
        for message in (
            discover_message(URL, "a@b"),
            get_policies_message(URL, ""),
            token_message(URL, "", b"\x30\x00", ()),
        ):
            root = parse(message)
            for name in ("Action", "To"):
                value = header_text(root, name)
                self.assertNotEqual(value, value.strip(), name)
        padded = header_text(sample("rst-onpremise.xml"), "To")
        self.assertNotEqual(padded, padded.strip())


class ParsedBackTests(SynchronousTestCase):
    def test_discover(self) -> None:
        """
        mdmd reads back Discover's action, address and every field given.
        """
        request = ns.parse_request(
            discover_message(
                URL, "alice@example.com", "5.0", os_version="10.0.1", auth_policies=("Federated",), message_id="urn:uuid:1"
            )
        )
        self.assertEqual(
            (request.action, request.to, request.message_id),
            (ns.DISCOVERY + "/IDiscoveryService/Discover", URL, "urn:uuid:1"),
        )
        discover = parse_discover(request)
        self.assertEqual(
            (discover.email_address, str(discover.request_version), discover.os_version, discover.auth_policies),
            ("alice@example.com", "5.0", "10.0.1", ("Federated",)),
        )

    def test_get_policies_onpremise(self) -> None:
        """
        GetPolicies carries the OnPremise UsernameToken (escaped where needed) mdmd reads.
        """
        request = ns.parse_request(get_policies_message(URL, username_security("a<b@example.com", "p&w")))
        check_get_policies(request)
        self.assertEqual(request.action, ns.ENROLLMENT_POLICY + "/IPolicy/GetPolicies")
        assert request.username_token is not None
        self.assertEqual((request.username_token.username, request.username_token.password), ("a<b@example.com", "p&w"))

    def test_federated_token(self) -> None:
        """
        The Federated header carries the sign-in token as a BinarySecurityToken of the user-token type.
        """
        request = ns.parse_request(get_policies_message(URL, user_token_security(b"token \x00 bytes")))
        token = request.token(USER_TOKEN_VALUE_TYPE)
        assert token is not None
        self.assertEqual(token.data, b"token \x00 bytes")

    def test_issue_and_renew(self) -> None:
        """
        An Issue carries a PKCS#10, a Renew a PKCS#7, base64 in 64-character
        lines (or one line), with the AdditionalContext in order.
        """
        token = bytes(range(256)) * 3
        for renew, request_type, value_type in ((False, ISSUE, "#PKCS10"), (True, RENEW, "#PKCS7")):
            for wrap in (True, False):
                message = token_message(URL, "", token, CONTEXT, renew=renew, wrap_base64=wrap)
                request = ns.parse_request(message)
                self.assertEqual(request.action, RST_ACTION)
                parsed = parse_token_request(request)
                self.assertEqual((parsed.request_type, parsed.token, parsed.context), (request_type, token, CONTEXT))
                self.assertTrue(parsed.value_type.endswith(value_type))
                encoded = request.payload.find(f"{{{ns.WSSE}}}BinarySecurityToken").text
                self.assertEqual(max(map(len, encoded.split("\n"))), 64 if wrap else len(base64.b64encode(token)))
                token_type = request.payload.find(f"{{{ns.WST}}}TokenType").text
                self.assertEqual(token_type, ENROLLMENT_TOKEN_TYPE)


class SignedHeaderTests(SynchronousTestCase):
    def test_verifies(self) -> None:
        """
        The Certificate policy's header: a Timestamp valid for five minutes,
        the certificate, and a signature over the Timestamp that mdmd verifies.
        """
        key = rsa.generate_private_key(65537, 2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provisioning")])
        moment = datetime.datetime.fromtimestamp(NOW, datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(moment - datetime.timedelta(days=1))
            .not_valid_after(moment + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        unsigned = get_policies_message(URL, '<wsse:Security s:mustUnderstand="1"/>')
        request = ns.parse_request(signed_security_header(unsigned, certificate, key, NOW))
        verified = verify_signed_header(request.root, request.security, NOW)
        self.assertEqual((verified.certificate, verified.signed_ids), (certificate, ("_0",)))
        stamp = request.security.find(f"{{{ns.WSU}}}Timestamp")  # type: ignore[union-attr]
        self.assertEqual(
            [child.text for child in stamp],
            ["2027-01-15T08:00:00Z", "2027-01-15T08:05:00Z"],
        )

    def test_needs_a_security_header(self) -> None:
        """
        An envelope without a security header to fill is refused.
        """
        key = rsa.generate_private_key(65537, 1024)
        with self.assertRaises(ValueError):
            signed_security_header(get_policies_message(URL, ""), None, key, NOW)  # type: ignore[arg-type]
