"""
Tests for L{mdmd.enroll.discovery}: Microsoft's Discover samples, the
variations real clients send, and the DiscoverResponse element by element.
"""

from __future__ import annotations

import decimal

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mdmd.enroll import discovery, soap
from mdmd.testing.windows.soap import discover_message
from mdmd.xmlparser import parse

from .helpers import sample

URL = "https://mdm.example.com/EnrollmentServer/Discovery.svc"
FIELDS = {
    "EmailAddress": "user@contoso.com",
    "RequestVersion": "9.0",
    "DeviceType": "CIMClient_Windows",
    "ApplicationVersion": "10.0.26100.1",
    "OSEdition": "48",
    "OSVersion": "10.0.26100.1",
}


def _discover(fields: list[tuple[str, str]], namespace: str = soap.DISCOVERY + "/") -> soap.SoapRequest:
    body = "".join(f"<{name}>{value}</{name}>" for name, value in fields)
    return soap.parse_request(
        f'<s:Envelope xmlns:s="{soap.SOAP12}"><s:Body><Discover xmlns="{namespace}"><request>{body}'
        "</request></Discover></s:Body></s:Envelope>".encode()
    )


class ParseTests(SynchronousTestCase):
    def test_onpremise_sample(self) -> None:
        """
        Microsoft's on-premise sample (trailing slash on the namespace, comments, whitespace).
        """
        request = discovery.parse_discover(soap.parse_request(sample("discover-onpremise.xml")))
        self.assertEqual(
            request,
            discovery.DiscoverRequest(
                email_address="user@contoso.com",
                request_version=decimal.Decimal("3.0"),
                device_type="WindowsPhone",
                application_version="10.0.0.0",
                os_edition="3",
                os_version="",
                auth_policies=("OnPremise",),
            ),
        )

    def test_certificate_sample(self) -> None:
        """
        The certificate sample's bare <AuthPolicies>Certificate</AuthPolicies> is read as a list.
        """
        request = discovery.parse_discover(soap.parse_request(sample("discover-certificate.xml")))
        self.assertEqual((request.auth_policies, request.os_version), (("Certificate",), "10.0.0.0"))

    def test_every_version_accepted(self) -> None:
        """
        RequestVersion 9.0 (Windows 11 25H2), 5.0, 1.0, 10.25 and " 4.0 " are all accepted.
        """
        for text, expected in (("9.0", "9.0"), ("5.0", "5.0"), ("1.0", "1.0"), ("10.25", "10.25"), (" 4.0 ", "4.0")):
            request = discovery.parse_discover(_discover([("RequestVersion", text)]))
            self.assertEqual(request.request_version, decimal.Decimal(expected))

    def test_email_variants(self) -> None:
        """
        domain\\user and an empty or missing EmailAddress are accepted.
        """
        for fields, expected in (
            ([("EmailAddress", "CONTOSO\\user")], "CONTOSO\\user"),
            ([("EmailAddress", "")], ""),
            ([], ""),
        ):
            request = discovery.parse_discover(_discover(fields + [("RequestVersion", "5.0")]))
            self.assertEqual(request.email_address, expected)

    @given(st.permutations(list(FIELDS.items())))
    def test_any_order(self, fields: list[tuple[str, str]]) -> None:
        """
        The schema is xsd:all: any order of the fields reads the same.
        """
        request = discovery.parse_discover(_discover(fields, namespace=soap.DISCOVERY))
        self.assertEqual(
            (request.email_address, request.request_version, request.os_edition, request.os_version),
            ("user@contoso.com", decimal.Decimal("9.0"), "48", "10.0.26100.1"),
        )

    def test_emulator_message(self) -> None:
        """
        The emulator's Discover (Windows 11 shape, whitespace-padded headers) reads back.
        """
        request = soap.parse_request(discover_message(URL, "alice@example.com"))
        self.assertEqual(request.action, discovery.DISCOVER_ACTION)
        parsed = discovery.parse_discover(request)
        self.assertEqual(parsed.auth_policies, ("OnPremise", "Federated"))

    def test_missing_or_bad(self) -> None:
        """
        A missing request element or RequestVersion, a non-number version and
        another payload are MessageFormat faults.
        """
        for request, expected in (
            (_discover([("EmailAddress", "x")]), "no RequestVersion"),
            (_discover([("RequestVersion", "five")]), "not a version number"),
            (_discover([("RequestVersion", "-1")]), "not a version number"),
            (
                soap.parse_request(
                    f'<s:Envelope xmlns:s="{soap.SOAP12}"><s:Body><Discover/></s:Body></s:Envelope>'.encode()
                ),
                "no request element",
            ),
            (soap.parse_request(sample("getpolicies-onpremise.xml")), "expects a Discover"),
        ):
            with self.assertRaises(soap.MessageFormatFault) as caught:
                discovery.parse_discover(request)
            self.assertIn(expected, str(caught.exception))


class VersionBoundsTests(SynchronousTestCase):
    def test_only_versions_accepted(self) -> None:
        """
        A RequestVersion must read as digits, a dot and digits (at most
        MAX_VERSION_DIGITS each side): exponents, signs, 1e-999999, NaN and
        overlong versions are MessageFormat faults, quoting at most MAX_REASON characters.
        """
        for text in ("1e-999999", "1E+3", "+5.0", "5.", ".5", "NaN", "Infinity", "5.0.1", "0x5", "1_0", "12345.0", "1." + "0" * 100_000, "٥.٠", "0", "0.0"):
            with self.assertRaises(soap.MessageFormatFault) as caught:
                discovery.parse_discover(_discover([("RequestVersion", text)]))
            self.assertIn("not a version number", str(caught.exception), text[:20])
            self.assertLessEqual(len(str(caught.exception)), soap.MAX_REASON)
        for text, expected in (("9999.9999", "9999.9999"), ("6.0", "6.0"), ("007", "7")):
            request = discovery.parse_discover(_discover([("RequestVersion", text)]))
            self.assertEqual(request.request_version, decimal.Decimal(expected))

    def test_answer_is_short(self) -> None:
        """
        Whatever version is admitted, the EnrollmentVersion answered is the
        lower of it and ours: never longer than the digits allowed.
        """
        for text in ("9999.9999", "0.0001", "1.2345", "3"):
            version = discovery.parse_discover(_discover([("RequestVersion", text)])).request_version
            answer = discovery.negotiate_version(version, "5.0")
            self.assertLessEqual(len(answer), 2 * discovery.MAX_VERSION_DIGITS + 1, text)
            self.assertLessEqual(decimal.Decimal(answer), decimal.Decimal("5.0"))


class ResponseTests(SynchronousTestCase):
    def test_negotiate_version(self) -> None:
        """
        The answer is the lower of the two versions, written X.Y.
        """
        for requested, maximum, expected in (
            ("9.0", "3.0", "3.0"),
            ("3.0", "5.0", "3.0"),
            ("5", "5.0", "5.0"),
            ("4.5", "9.0", "4.5"),
        ):
            self.assertEqual(discovery.negotiate_version(decimal.Decimal(requested), maximum), expected)

    def test_response_elements(self) -> None:
        """
        DiscoverResponse carries the DiscoverResponse action, RelatesTo, and
        AuthPolicy, EnrollmentVersion, the two URLs in the sample's order;
        AuthenticationServiceUrl only when given.
        """
        answer = discovery.DiscoveryAnswer(
            "OnPremise", "3.0", "https://h/EnrollmentServer/Policy.svc", "https://h/EnrollmentServer/Enrollment.svc"
        )
        root = parse(discovery.discover_response(answer, "urn:uuid: 748132ec", "act"))
        header = soap.child(root, "Header")
        self.assertEqual(soap.text(soap.child(header, "Action")), discovery.DISCOVER_RESPONSE_ACTION)
        self.assertEqual(soap.text(soap.child(header, "RelatesTo")), "urn:uuid: 748132ec")
        response = soap.child(soap.child(root, "Body"), "DiscoverResponse")
        assert response is not None
        self.assertEqual(response.nsmap[None], soap.DISCOVERY)
        result = soap.child(response, "DiscoverResult")
        assert result is not None
        self.assertEqual(
            [(soap.local(e), e.text) for e in result],
            [
                ("AuthPolicy", "OnPremise"),
                ("EnrollmentVersion", "3.0"),
                ("EnrollmentPolicyServiceUrl", "https://h/EnrollmentServer/Policy.svc"),
                ("EnrollmentServiceUrl", "https://h/EnrollmentServer/Enrollment.svc"),
            ],
        )
        federated = discovery.DiscoveryAnswer("Federated", "3.0", "p", "e", "https://h/EnrollmentServer/Authenticate")
        result = parse(discovery.discover_response(federated, "m", "a")).find(f".//{{{soap.DISCOVERY}}}DiscoverResult")
        self.assertEqual(soap.text(soap.child(result, "AuthenticationServiceUrl")), "https://h/EnrollmentServer/Authenticate")
