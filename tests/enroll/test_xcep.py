"""
Tests for L{mdmd.enroll.xcep}: Microsoft's GetPolicies sample and the
GetPoliciesResponse element by element.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.enroll import soap, xcep
from mdmd.xmlparser import parse

from .helpers import sample

POLICY = xcep.CertificatePolicy("mdmd device", 2048, 365 * 86400, 60 * 86400)
P = f"{{{soap.ENROLLMENT_POLICY}}}"


class GetPoliciesTests(SynchronousTestCase):
    def test_sample_accepted(self) -> None:
        """
        Microsoft's GetPolicies sample is a GetPolicies request; a Discover is not.
        """
        xcep.check_get_policies(soap.parse_request(sample("getpolicies-onpremise.xml")))
        with self.assertRaises(soap.MessageFormatFault):
            xcep.check_get_policies(soap.parse_request(sample("discover-onpremise.xml")))

    def test_response(self) -> None:
        """
        The response has the GetPoliciesResponse action, RelatesTo the request's
        MessageID, policySchema 3, the key length, validity and renewal periods
        we enforce, and a hash reference resolving to SHA-256 in oIDs.
        """
        request = soap.parse_request(sample("getpolicies-onpremise.xml"))
        root = parse(xcep.get_policies_response(POLICY, request.message_id, "act"))
        header = soap.child(root, "Header")
        self.assertEqual(soap.text(soap.child(header, "Action")), xcep.GET_POLICIES_RESPONSE_ACTION)
        self.assertEqual(soap.text(soap.child(header, "RelatesTo")), "urn:uuid:72048B64-0F19-448F-8C2E-B4C661860AA0")
        response = root.find(f".//{P}GetPoliciesResponse")
        attributes = response.find(f"{P}response/{P}policies/{P}policy/{P}attributes")
        self.assertEqual(
            [soap.local(e) for e in attributes],
            [
                "commonName", "policySchema", "certificateValidity", "permission", "privateKeyAttributes",
                "revision", "supersededPolicies", "privateKeyFlags", "subjectNameFlags", "enrollmentFlags",
                "generalFlags", "hashAlgorithmOIDReference", "rARequirements", "keyArchivalAttributes", "extensions",
            ],
        )
        self.assertEqual(attributes.findtext(f"{P}policySchema"), "3")
        self.assertEqual(attributes.findtext(f"{P}privateKeyAttributes/{P}minimalKeyLength"), "2048")
        self.assertEqual(attributes.findtext(f"{P}certificateValidity/{P}validityPeriodSeconds"), "31536000")
        self.assertEqual(attributes.findtext(f"{P}certificateValidity/{P}renewalPeriodSeconds"), "5184000")
        self.assertEqual(attributes.findtext(f"{P}permission/{P}enroll"), "true")
        reference = attributes.findtext(f"{P}hashAlgorithmOIDReference")
        oids = {o.findtext(f"{P}oIDReferenceID"): o for o in response.iterfind(f"{P}oIDs/{P}oID")}
        self.assertEqual(oids[reference].findtext(f"{P}value"), "2.16.840.1.101.3.4.2.1")
        self.assertEqual(oids[reference].findtext(f"{P}group"), "1")
        nil = attributes.find(f"{P}privateKeyAttributes/{P}cryptoProviders")
        self.assertEqual(nil.get(f"{{{soap.XSI}}}nil"), "true")
