"""
MS-MDE2 discovery: the C{Discover} request and the C{DiscoverResponse} that
tells a device where the policy and enrollment services are and how to
authenticate to them.

Every RequestVersion written as a version is accepted (Windows 11 25H2
sends 9.0; allow-lists of exact versions broke enrollment elsewhere): digits,
optionally a dot and digits, at most L{MAX_VERSION_DIGITS} on either side
(C{1e-999999} is a number, not a version). The device is answered the lower
of its version and the configured maximum, which is therefore always short.
"""

from __future__ import annotations

import decimal
import re
from dataclasses import dataclass

from mdmd.enroll.soap import (
    DISCOVERY,
    Children,
    MessageFormatFault,
    SoapRequest,
    child,
    envelope,
    escape,
    quoted,
    text,
)

__all__ = [
    "DISCOVER_ACTION",
    "DISCOVER_RESPONSE_ACTION",
    "DiscoverRequest",
    "DiscoveryAnswer",
    "parse_discover",
    "negotiate_version",
    "discover_response",
]

DISCOVER_ACTION = DISCOVERY + "/IDiscoveryService/Discover"
DISCOVER_RESPONSE_ACTION = DISCOVERY + "/IDiscoveryService/DiscoverResponse"

AUTH_POLICIES = ("OnPremise", "Federated", "Certificate")

#: Digits a RequestVersion may have before and after its dot.
MAX_VERSION_DIGITS = 4
_VERSION = re.compile(rf"[0-9]{{1,{MAX_VERSION_DIGITS}}}(\.[0-9]{{1,{MAX_VERSION_DIGITS}}})?")


@dataclass(frozen=True)
class DiscoverRequest:
    """
    What a device says about itself in C{Discover} (all optional but the version).
    """

    email_address: str
    request_version: decimal.Decimal
    device_type: str
    application_version: str
    os_edition: str
    os_version: str
    auth_policies: tuple[str, ...]


@dataclass(frozen=True)
class DiscoveryAnswer:
    """
    What we answer: the policy and the URLs, all on our one public host.
    """

    auth_policy: str
    enrollment_version: str
    policy_service_url: str
    enrollment_service_url: str
    authentication_service_url: str = ""


def parse_discover(request: SoapRequest) -> DiscoverRequest:
    """
    Read a C{Discover} payload; the schema is C{xsd:all}, so order does not matter.

    @raise MessageFormatFault: if C{request} or its RequestVersion is missing or unreadable.
    """
    payload = request.payload
    if payload.tag.rpartition("}")[2] != "Discover":
        raise MessageFormatFault("the discovery service expects a Discover request")
    element = child(payload, "request")
    if element is None:
        raise MessageFormatFault("Discover has no request element")
    fields = Children(element)
    version_text = text(fields.first("RequestVersion"))
    if not version_text:
        raise MessageFormatFault("Discover/request has no RequestVersion")
    version = decimal.Decimal(version_text) if _VERSION.fullmatch(version_text) else None
    if version is None or version <= 0:
        raise MessageFormatFault(f"RequestVersion {quoted(version_text)} is not a version number")
    policies_element = fields.first("AuthPolicies")
    policies = tuple(text(p) for p in Children(policies_element).all("AuthPolicy") if text(p))
    if not policies and text(policies_element):
        # the Certificate sample writes <AuthPolicies>Certificate</AuthPolicies>
        policies = tuple(text(policies_element).split())
    return DiscoverRequest(
        email_address=text(fields.first("EmailAddress")),
        request_version=version,
        device_type=text(fields.first("DeviceType")),
        application_version=text(fields.first("ApplicationVersion")),
        os_edition=text(fields.first("OSEdition")),
        os_version=text(fields.first("OSVersion")),
        auth_policies=policies,
    )


def negotiate_version(requested: decimal.Decimal, maximum: str) -> str:
    """
    The EnrollmentVersion to answer: the lower of the device's (as
    L{parse_discover} admits it) and ours, as X.Y.
    """
    chosen = min(requested, decimal.Decimal(maximum))
    if chosen == chosen.to_integral_value():
        return f"{chosen:.1f}"
    return format(chosen.normalize(), "f")


def discover_response(answer: DiscoveryAnswer, relates_to: str, activity_id: str) -> bytes:
    """
    The C{DiscoverResponse} envelope (the order of Microsoft's sample).
    """
    parts = [
        f'<DiscoverResponse xmlns="{DISCOVERY}"><DiscoverResult>'
        f"<AuthPolicy>{escape(answer.auth_policy)}</AuthPolicy>"
        f"<EnrollmentVersion>{escape(answer.enrollment_version)}</EnrollmentVersion>"
        f"<EnrollmentPolicyServiceUrl>{escape(answer.policy_service_url)}"
        "</EnrollmentPolicyServiceUrl>"
        f"<EnrollmentServiceUrl>{escape(answer.enrollment_service_url)}</EnrollmentServiceUrl>"
    ]
    if answer.authentication_service_url:
        parts.append(
            f"<AuthenticationServiceUrl>{escape(answer.authentication_service_url)}"
            "</AuthenticationServiceUrl>"
        )
    parts.append("</DiscoverResult></DiscoverResponse>")
    return envelope(DISCOVER_RESPONSE_ACTION, relates_to, "".join(parts), activity_id)
