"""
Tests for L{mdmd.enroll.soap}: lenient reading of request envelopes, exact
writing of response envelopes and faults.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mdmd.enroll import soap
from mdmd.xmlparser import parse

from .helpers import sample


class ParseRequestTests(SynchronousTestCase):
    def test_microsoft_sample(self) -> None:
        """
        Microsoft's GetPolicies sample: Action, MessageID and To are stripped of
        their padding, the UsernameToken is read, the payload is GetPolicies.
        """
        request = soap.parse_request(sample("getpolicies-onpremise.xml"))
        self.assertEqual(request.soap_namespace, soap.SOAP12)
        self.assertEqual(request.action, soap.ENROLLMENT_POLICY + "/IPolicy/GetPolicies")
        self.assertEqual(request.message_id, "urn:uuid:72048B64-0F19-448F-8C2E-B4C661860AA0")
        self.assertEqual(request.to, "https://enrolltest.contoso.com/ENROLLMENTSERVER/DEVICEENROLLMENTWEBSERVICE.SVC")
        self.assertEqual(request.username_token, soap.UsernameToken("user@contoso.com", "mypassword"))
        self.assertEqual(soap.local(request.payload), "GetPolicies")

    def test_padded_password_kept_as_sent(self) -> None:
        """
        The RST sample pads the password with a line break; it is kept as sent
        (the service also tries it stripped).
        """
        request = soap.parse_request(sample("rst-onpremise.xml", b"x"))
        self.assertEqual(request.username_token.password.strip(), "mypassword")  # type: ignore[union-attr]
        self.assertNotEqual(request.username_token.password, "mypassword")  # type: ignore[union-attr]

    def test_soap11_and_tokens(self) -> None:
        """
        A SOAP 1.1 envelope is accepted; header BinarySecurityTokens are decoded
        (whitespace and missing padding tolerated) or kept as None if not base64.
        """
        data = (
            f'<e:Envelope xmlns:e="{soap.SOAP11}" xmlns:o="{soap.WSSE}"><e:Header><o:Security>'
            '<o:BinarySecurityToken ValueType="urn:x#A">aGVs\n bG8</o:BinarySecurityToken>'
            '<o:BinarySecurityToken ValueType="urn:x#B">!!!</o:BinarySecurityToken>'
            "</o:Security></e:Header><e:Body><Thing/></e:Body></e:Envelope>"
        ).encode()
        request = soap.parse_request(data)
        self.assertEqual(request.token("#a").data, b"hello")  # type: ignore[union-attr]
        self.assertIsNone(request.token("#B").data)  # type: ignore[union-attr]
        self.assertIsNone(request.token("#C"))
        self.assertEqual((request.action, request.message_id), ("", ""))

    def test_malformed(self) -> None:
        """
        Non-XML, a foreign root, an unknown envelope namespace and an empty Body are MessageFormat faults.
        """
        for data, expected in (
            (b"<s:Envelope", "not well-formed"),
            (b"<Envelope/>", "unknown SOAP envelope namespace"),
            (b"<x/>", "expected a SOAP Envelope"),
            (f'<s:Envelope xmlns:s="{soap.SOAP12}"><s:Body/></s:Envelope>'.encode(), "Body is missing or empty"),
            (b"", "not well-formed"),
        ):
            with self.assertRaises(soap.MessageFormatFault) as caught:
                soap.parse_request(data)
            self.assertIn(expected, str(caught.exception))
            self.assertEqual(caught.exception.subcode, "s:MessageFormat")

    def test_decode_base64(self) -> None:
        """
        Line breaks, spaces and missing padding are tolerated; other characters are not.
        """
        self.assertEqual(soap.decode_base64(" aGVsbG8\r\n "), b"hello")
        self.assertEqual(soap.decode_base64(b"aGk"), b"hi")
        for bad in ("", "a$b", "   "):
            with self.assertRaises(ValueError):
                soap.decode_base64(bad)


class WriteTests(SynchronousTestCase):
    def test_envelope_shape(self) -> None:
        """
        Responses use the s:/a:/u: prefixes, a mustUnderstand Action, the
        ActivityId, RelatesTo copied verbatim, and are written without whitespace.
        """
        data = soap.envelope("urn:act", "urn:uuid: 74-8", "<X/>", "act-1", valid_from=0.0)
        self.assertNotIn(b"\n", data)
        root = parse(data)
        self.assertEqual(root.prefix, "s")
        header = soap.child(root, "Header")
        action = soap.child(header, "Action")
        assert action is not None
        self.assertEqual((action.text, action.get(f"{{{soap.SOAP12}}}mustUnderstand")), ("urn:act", "1"))
        self.assertEqual(soap.text(soap.child(header, "RelatesTo")), "urn:uuid: 74-8")
        activity = soap.child(header, "ActivityId")
        assert activity is not None
        self.assertEqual(activity.get("CorrelationId"), "act-1")
        stamp = soap.child(soap.child(header, "Security"), "Timestamp")
        self.assertEqual(soap.text(soap.child(stamp, "Created")), "1970-01-01T00:00:00.000Z")
        self.assertEqual(soap.text(soap.child(stamp, "Expires")), "1970-01-01T00:05:00.000Z")

    def test_fault(self) -> None:
        """
        A fault is s:Receiver with the MS-MDE2 subcode, an en-US reason and,
        when given, the DeviceEnrollmentServiceError detail with the trace id.
        """
        data = soap.fault("s:CertificateRequest", "too <short>", "urn:act", "urn:m", "trace-9", "NotEligibleToRenew")
        root = parse(data)
        body = soap.child(root, "Body")
        fault = soap.child(body, "Fault")
        code = soap.child(fault, "Code")
        self.assertEqual(soap.text(soap.child(code, "Value")), "s:Receiver")
        self.assertEqual(soap.text(soap.child(soap.child(code, "Subcode"), "Value")), "s:CertificateRequest")
        reason = soap.child(soap.child(fault, "Reason"), "Text")
        assert reason is not None
        self.assertEqual((reason.text, reason.get("{http://www.w3.org/XML/1998/namespace}lang")), ("too <short>", "en-US"))
        error = soap.child(soap.child(fault, "Detail"), "DeviceEnrollmentServiceError")
        assert error is not None
        self.assertEqual(error.nsmap[None], soap.ENROLLMENT)
        self.assertEqual(
            [soap.text(soap.child(error, n)) for n in ("ErrorType", "Message", "TraceId")],
            ["NotEligibleToRenew", "too <short>", "trace-9"],
        )
        bare = soap.child(parse(soap.fault("a:InvalidSecurity", "r", "a", "m", "t")), "Body")
        assert bare is not None
        self.assertIsNone(soap.child(bare[0], "Detail"))

    @given(st.text())
    def test_escape_round_trips(self, value: str) -> None:
        """
        Any text survives escaping into an element and an attribute, up to
        XML's own normalizations (line ends; whitespace in attributes) and the
        characters XML forbids, which are dropped.
        """
        root = parse(f'<a b="{soap.escape(value)}">{soap.escape(value)}</a>'.encode())
        expected = soap._FORBIDDEN.sub("", value).replace("\r\n", "\n").replace("\r", "\n")
        self.assertEqual(root.text or "", expected)
        self.assertEqual(root.get("b"), expected.replace("\n", " ").replace("\t", " "))


def _envelope(body: str, header: str = "") -> bytes:
    return f'<s:Envelope xmlns:s="{soap.SOAP12}" xmlns:a="{soap.WSA}"><s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>'.encode()


class BoundsTests(SynchronousTestCase):
    """
    What a request may cost before anyone authenticates: its size in
    elements, its lookups, what is echoed back, its media type.
    """

    def test_elements_bounded(self) -> None:
        """
        A request of more than MAX_ELEMENTS elements (100,000 siblings, say) is
        a MessageFormat fault; one at the limit is read.
        """
        huge = _envelope("<Discover>" + "<x/>" * 100_000 + "</Discover>")
        with self.assertRaises(soap.MessageFormatFault) as caught:
            soap.parse_request(huge)
        self.assertIn(f"more than {soap.MAX_ELEMENTS} elements", str(caught.exception))
        # envelope, header, body, payload, 5 groups: 9 elements besides the items
        groups = "".join("<g>" + "<i/>" * ((soap.MAX_ELEMENTS - 9) // 5) + "</g>" for _ in range(5))
        self.assertEqual(soap.local(soap.parse_request(_envelope(f"<p>{groups}</p>")).payload), "p")

    def test_children_bounded(self) -> None:
        """
        An element with more than MAX_CHILDREN children is refused even when the whole is small.
        """
        wide = _envelope("<p>" + "<i/>" * (soap.MAX_CHILDREN + 1) + "</p>")
        with self.assertRaises(soap.MessageFormatFault) as caught:
            soap.parse_request(wide)
        self.assertIn(f"more than {soap.MAX_CHILDREN} children", str(caught.exception))
        soap.parse_request(_envelope("<p>" + "<i/>" * soap.MAX_CHILDREN + "</p>"))

    def test_lookups(self) -> None:
        """
        child and children match the local name in any namespace or none,
        in order, skipping comments; Children indexes an element's children once.
        """
        element = parse(b'<r xmlns:p="urn:p"><a>1</a><!--c--><p:a>2</p:a><b/><a xmlns="urn:q">3</a></r>')
        self.assertEqual([soap.text(e) for e in soap.children(element, "a")], ["1", "2", "3"])
        self.assertEqual(soap.text(soap.child(element, "a")), "1")
        self.assertIsNone(soap.child(element, "c"))
        self.assertIsNone(soap.child(None, "a"))
        self.assertEqual(list(soap.children(None, "a")), [])
        index = soap.Children(element)
        self.assertEqual(sorted(index), ["a", "b"])
        self.assertEqual([soap.text(e) for e in index.all("a")], ["1", "2", "3"])
        self.assertEqual((soap.local(index.first("b")), index.first("c"), index.all("c")), ("b", None, ()))
        self.assertEqual(len(soap.Children(None)), 0)

    def test_message_id_bounded(self) -> None:
        """
        The MessageID (echoed as RelatesTo) may be up to MAX_MESSAGE_ID
        printable characters, a blank included as in Microsoft's samples;
        longer, or with a control character, it is a MessageFormat fault.
        """
        for message_id in ("urn:uuid: 748132ec-a575-4329-b01b-6171a9cf8478", "m" * soap.MAX_MESSAGE_ID, ""):
            request = soap.parse_request(_envelope("<p/>", f"<a:MessageID>{message_id}</a:MessageID>"))
            self.assertEqual(request.message_id, message_id)
        for message_id in ("m" * (soap.MAX_MESSAGE_ID + 1), "urn:a&#9;b", "urn:a\u2028b"):
            with self.assertRaises(soap.MessageFormatFault) as caught:
                soap.parse_request(_envelope("<p/>", f"<a:MessageID>{message_id}</a:MessageID>"))
            self.assertIn("MessageID", str(caught.exception))

    def test_fault_reason_bounded(self) -> None:
        """
        A fault's reason (which quotes the request) is cut to MAX_REASON characters.
        """
        fault = soap.MessageFormatFault(f"unsupported RequestType {'x' * 900_000!r}")
        self.assertEqual(len(str(fault)), soap.MAX_REASON)
        self.assertEqual((len(fault.reason), fault.reason[-1]), (soap.MAX_REASON, "\u2026"))
        body = soap.fault(fault.subcode, fault.reason, "urn:a", "urn:m", "trace")
        self.assertLess(len(body), 2 * soap.MAX_REASON + 1000)
        self.assertEqual(str(soap.MessageFormatFault("short")), "short")

    def test_content_type(self) -> None:
        """
        SOAP 1.2's and SOAP 1.1's media types pass, with parameters and in any
        case; none or another type is a MessageFormat fault.
        """
        for value in (b"application/soap+xml; charset=utf-8", b"text/xml", b" Application/SOAP+XML ;action=x"):
            soap.check_content_type(value)
        for refused in (None, b"", b"application/x-www-form-urlencoded", b"text/xmlx", b"multipart/form-data; boundary=x"):
            with self.assertRaises(soap.MessageFormatFault):
                soap.check_content_type(refused)
