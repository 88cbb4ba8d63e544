"""
Tests for L{mdmd.enroll.wstep}: Microsoft's RequestSecurityToken samples with
real requests inserted, and the response collection element by element.
"""

from __future__ import annotations

import base64

from twisted.trial.unittest import SynchronousTestCase

from mdmd.enroll import soap, wstep
from mdmd.testing.windows.csr import modern_csr
from mdmd.testing.windows.soap import token_message
from mdmd.xmlparser import parse

from .helpers import KEY, sample

CSR = modern_csr(KEY, "7BA748C8-703E-4DF2-A74A-92984117346A")


def _rst(token: str, request_type: str = "Issue", value_type: str = "#PKCS10", extra: str = "") -> soap.SoapRequest:
    return soap.parse_request(
        f'<s:Envelope xmlns:s="{soap.SOAP12}" xmlns:wst="{soap.WST}" xmlns:wsse="{soap.WSSE}"><s:Body>'
        "<wst:RequestSecurityToken>"
        f"<wst:RequestType>{soap.WST}/{request_type}</wst:RequestType>{extra}"
        f'<wsse:BinarySecurityToken ValueType="http://schemas.microsoft.com/windows/pki/2009/01/enrollment{value_type}">'
        f"{token}</wsse:BinarySecurityToken></wst:RequestSecurityToken></s:Body></s:Envelope>".encode()
    )


class ParseTests(SynchronousTestCase):
    def test_onpremise_sample(self) -> None:
        """
        Microsoft's RST sample with a real CSR (in base64 lines): Issue, the DER
        request, and every AdditionalContext item in order, repeats kept, values stripped.
        """
        request = wstep.parse_token_request(soap.parse_request(sample("rst-onpremise.xml", CSR)))
        self.assertEqual((request.request_type, request.token), (wstep.ISSUE, CSR))
        self.assertEqual(request.values("MAC"), ("FF:FF:FF:FF:FF:FF", "CC:CC:CC:CC:CC:CC"))
        self.assertEqual(request.values("IMEI"), ("49015420323756", "30215420323756"))
        self.assertEqual(request.value("OSEdition"), "4")
        self.assertEqual(request.value("DeviceID"), "7BA748C8-703E-4DF2-A74A-92984117346A")
        self.assertEqual(request.value("Missing"), "")
        self.assertEqual(
            [name for name, _ in request.context],
            ["OSEdition", "OSVersion", "DeviceName", "MAC", "MAC", "IMEI", "IMEI", "EnrollmentType",
             "DeviceType", "ApplicationVersion", "DeviceID", "TargetedUserLoggedIn"],
        )

    def test_renewal_sample(self) -> None:
        """
        Microsoft's renewal sample (unprefixed elements, the secext #PKCS7 ValueType) is a Renew.
        """
        request = wstep.parse_token_request(soap.parse_request(sample("rst-renew.xml", b"\x30\x00")))
        self.assertEqual((request.request_type, request.token), (wstep.RENEW, b"\x30\x00"))
        self.assertEqual(request.value("ApplicationVersion"), "5.0.7616.0")

    def test_emulator_message(self) -> None:
        """
        The emulator's message round-trips, including the Renew form.
        """
        message = token_message("https://h/e", "", CSR, [("DeviceID", "D1"), ("MAC", "a"), ("MAC", "b")])
        request = wstep.parse_token_request(soap.parse_request(message))
        self.assertEqual((request.token, request.values("MAC")), (CSR, ("a", "b")))
        renewal = wstep.parse_token_request(soap.parse_request(token_message("https://h/e", "", b"pk7", [], renew=True)))
        self.assertEqual((renewal.request_type, renewal.token), (wstep.RENEW, b"pk7"))

    def test_faults(self) -> None:
        """
        Garbage base64 and a token of the wrong kind are CertificateRequest
        faults; a missing token or RequestType, an unknown RequestType or
        TokenType, or another payload are MessageFormat faults.
        """
        good = base64.b64encode(CSR).decode()
        for request, fault, expected in (
            (_rst("%%% not base64 %%%"), soap.CertificateRequestFault, "not base64"),
            (_rst(good, value_type="#PKCS7"), soap.CertificateRequestFault, "needs a PKCS10 token"),
            (_rst(good, request_type="Renew"), soap.CertificateRequestFault, "needs a PKCS7 token"),
            (_rst(good, request_type="Cancel"), soap.MessageFormatFault, "unsupported RequestType"),
            (_rst(good, extra="<wst:TokenType>urn:other</wst:TokenType>"), soap.MessageFormatFault, "TokenType"),
            (
                soap.parse_request(
                    f'<s:Envelope xmlns:s="{soap.SOAP12}"><s:Body><RequestSecurityToken>'
                    f"<RequestType>{soap.WST}/Issue</RequestType></RequestSecurityToken></s:Body></s:Envelope>".encode()
                ),
                soap.MessageFormatFault,
                "no BinarySecurityToken",
            ),
            (
                soap.parse_request(
                    f'<s:Envelope xmlns:s="{soap.SOAP12}"><s:Body><RequestSecurityToken/></s:Body></s:Envelope>'.encode()
                ),
                soap.MessageFormatFault,
                "no RequestType",
            ),
            (soap.parse_request(sample("discover-onpremise.xml")), soap.MessageFormatFault, "expects a RequestSecurityToken"),
        ):
            with self.assertRaises(fault) as caught:
                wstep.parse_token_request(request)
            self.assertIn(expected, str(caught.exception))

    def test_device_ids(self) -> None:
        """
        GUIDs with or without dashes and braces, and 64-hex hardware ids, name
        devices; empty, spaced or path-like values do not.
        """
        for good in ("7BA748C8-703E-4DF2-A74A-92984117346A", "{7BA748C8-703E}", "A" * 64):
            self.assertTrue(wstep.valid_device_id(good), good)
        for bad in ("", "a b", "../x", "x/y", "A" * 129, "dev\0"):
            self.assertFalse(wstep.valid_device_id(bad), bad)


class ResponseTests(SynchronousTestCase):
    def test_response_collection(self) -> None:
        """
        The RSTRC: SOAP 1.2, the RSTRC action, RelatesTo, a five-minute
        timestamp, TokenType, an empty DispositionMessage, the document as a
        base64 BinarySecurityToken of the ProvisionDoc type, RequestID 0.
        """
        document = b'<wap-provisioningdoc version="1.1"/>'
        root = parse(wstep.token_response(document, "urn:uuid:0d5a1441", "act", 1000.0))
        self.assertEqual(root.nsmap["s"], soap.SOAP12)
        header = soap.child(root, "Header")
        self.assertEqual(soap.text(soap.child(header, "Action")), wstep.RSTRC_ACTION)
        self.assertEqual(soap.text(soap.child(header, "RelatesTo")), "urn:uuid:0d5a1441")
        stamp = soap.child(soap.child(header, "Security"), "Timestamp")
        self.assertEqual(soap.text(soap.child(stamp, "Expires")), "1970-01-01T00:21:40.000Z")
        response = root.find(f".//{{{soap.WST}}}RequestSecurityTokenResponse")
        self.assertEqual(soap.text(soap.child(response, "TokenType")), wstep.ENROLLMENT_TOKEN_TYPE)
        disposition = soap.child(response, "DispositionMessage")
        assert disposition is not None
        self.assertEqual(disposition.nsmap[None], soap.ENROLLMENT)
        token = soap.child(soap.child(response, "RequestedSecurityToken"), "BinarySecurityToken")
        assert token is not None
        self.assertEqual(token.tag, f"{{{soap.WSSE}}}BinarySecurityToken")
        self.assertEqual(token.get("ValueType"), wstep.PROVISION_DOC_VALUE_TYPE)
        self.assertEqual(token.get("EncodingType"), soap.BASE64_BINARY)
        self.assertEqual(base64.b64decode(token.text), document)
        self.assertEqual(soap.text(soap.child(response, "RequestID")), "0")
