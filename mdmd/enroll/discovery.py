"""
MS-MDE2 discovery: the C{Discover} request and the C{DiscoverResponse} that
tells a device where the policy and enrollment services are and how to
authenticate to them.

Every RequestVersion is accepted (Windows 11 25H2 sends 9.0; allow-lists of
exact versions broke enrollment elsewhere) that is a positive number with at
most L{MAX_VERSION_DECIMALS} decimals; the device is answered the lower of
its version and the configured maximum.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass

from mdmd.enroll.soap import (
    DISCOVERY,
    MessageFormatFault,
    SoapRequest,
    child,
    children,
    envelope,
    escape,
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

#: Digits a RequestVersion may have after the point: the answer can repeat
#: them, and a version such as C{1e-999999999} would make it a gigabyte.
MAX_VERSION_DECIMALS = 6


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
    fields = child(payload, "request")
    if fields is None:
        raise MessageFormatFault("Discover has no request element")
    version_text = text(child(fields, "RequestVersion"))
    if not version_text:
        raise MessageFormatFault("Discover/request has no RequestVersion")
    try:
        version = decimal.Decimal(version_text)
    except decimal.InvalidOperation:
        version = decimal.Decimal("NaN")
    if not version.is_finite() or version <= 0 or _decimals(version) > MAX_VERSION_DECIMALS:
        raise MessageFormatFault(f"RequestVersion {version_text[:40]!r} is not a version number")
    policies_element = child(fields, "AuthPolicies")
    policies = tuple(text(p) for p in children(policies_element, "AuthPolicy") if text(p))
    if not policies and text(policies_element):
        # the Certificate sample writes <AuthPolicies>Certificate</AuthPolicies>
        policies = tuple(text(policies_element).split())
    return DiscoverRequest(
        email_address=text(child(fields, "EmailAddress")),
        request_version=version,
        device_type=text(child(fields, "DeviceType")),
        application_version=text(child(fields, "ApplicationVersion")),
        os_edition=text(child(fields, "OSEdition")),
        os_version=text(child(fields, "OSVersion")),
        auth_policies=policies,
    )


def _decimals(version: decimal.Decimal) -> int:
    """
    How many digits C{version} has after the point (C{1e-999999} has 999999).
    """
    _, digits, exponent = version.as_tuple()  # exact: normalize() would round 1e-999999999 to 0
    if not isinstance(exponent, int):
        return 0
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing_zeros))


def negotiate_version(requested: decimal.Decimal, maximum: str) -> str:
    """
    The EnrollmentVersion to answer: the lower of the device's and ours, as X.Y.
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
