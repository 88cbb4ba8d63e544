"""
MS-XCEP policy: the C{GetPolicies} request and the certificate template the
device must follow when it builds its request.

Windows reads three things from the answer (MS-MDE2 3.3): C{policySchema}
(must be 3), C{minimalKeyLength} and C{hashAlgorithmOIDReference}, which
must name an entry of C{oIDs}. Every other field is written C{xsi:nil}, as in
Microsoft's sample. The promised key length and validity are the ones the CA
enforces and issues (one source of truth: the configuration).
"""

from __future__ import annotations

from dataclasses import dataclass

from mdmd.enroll.soap import ENROLLMENT_POLICY, MessageFormatFault, SoapRequest, envelope, escape

__all__ = [
    "GET_POLICIES_ACTION",
    "GET_POLICIES_RESPONSE_ACTION",
    "CertificatePolicy",
    "check_get_policies",
    "get_policies_response",
    "SHA256_OID",
]

GET_POLICIES_ACTION = ENROLLMENT_POLICY + "/IPolicy/GetPolicies"
GET_POLICIES_RESPONSE_ACTION = ENROLLMENT_POLICY + "/IPolicy/GetPoliciesResponse"
SHA256_OID = "2.16.840.1.101.3.4.2.1"


@dataclass(frozen=True)
class CertificatePolicy:
    """
    The template of the device certificate.
    """

    name: str
    min_key_length: int
    validity_seconds: int
    renewal_seconds: int


def check_get_policies(request: SoapRequest) -> None:
    """
    @raise MessageFormatFault: if the payload is not C{GetPolicies}.
    """
    if request.payload.tag.rpartition("}")[2] != "GetPolicies":
        raise MessageFormatFault("the policy service expects a GetPolicies request")


_NIL = ' xsi:nil="true"/>'


def get_policies_response(policy: CertificatePolicy, relates_to: str, activity_id: str) -> bytes:
    """
    The C{GetPoliciesResponse} envelope (element order of the MS-XCEP sequence).
    """
    body = (
        f'<GetPoliciesResponse xmlns="{ENROLLMENT_POLICY}"><response>'
        "<policyID/>"
        f"<policyFriendlyName{_NIL}<nextUpdateHours{_NIL}<policiesNotChanged{_NIL}"
        "<policies><policy><policyOIDReference>0</policyOIDReference>"
        f"<cAs{_NIL}<attributes>"
        f"<commonName>{escape(policy.name)}</commonName>"
        "<policySchema>3</policySchema>"
        "<certificateValidity>"
        f"<validityPeriodSeconds>{policy.validity_seconds}</validityPeriodSeconds>"
        f"<renewalPeriodSeconds>{policy.renewal_seconds}</renewalPeriodSeconds>"
        "</certificateValidity>"
        "<permission><enroll>true</enroll><autoEnroll>false</autoEnroll></permission>"
        "<privateKeyAttributes>"
        f"<minimalKeyLength>{policy.min_key_length}</minimalKeyLength>"
        f"<keySpec{_NIL}<keyUsageProperty{_NIL}<permissions{_NIL}"
        f"<algorithmOIDReference{_NIL}<cryptoProviders{_NIL}"
        "</privateKeyAttributes>"
        "<revision><majorRevision>1</majorRevision><minorRevision>0</minorRevision></revision>"
        f"<supersededPolicies{_NIL}<privateKeyFlags{_NIL}<subjectNameFlags{_NIL}"
        f"<enrollmentFlags{_NIL}<generalFlags{_NIL}"
        "<hashAlgorithmOIDReference>0</hashAlgorithmOIDReference>"
        f"<rARequirements{_NIL}<keyArchivalAttributes{_NIL}<extensions{_NIL}"
        "</attributes></policy></policies></response>"
        f"<cAs{_NIL}"
        f"<oIDs><oID><value>{SHA256_OID}</value><group>1</group>"
        "<oIDReferenceID>0</oIDReferenceID><defaultName>szOID_NIST_sha256</defaultName>"
        "</oID></oIDs></GetPoliciesResponse>"
    )
    return envelope(GET_POLICIES_RESPONSE_ACTION, relates_to, body, activity_id)
