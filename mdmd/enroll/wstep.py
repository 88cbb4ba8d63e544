"""
MS-WSTEP as profiled by MS-MDE2: the C{RequestSecurityToken} a device sends
with its certificate request and the C{RequestSecurityTokenResponseCollection}
that carries its provisioning document back.

AdditionalContext is kept as a list of (name, value) pairs in wire order:
names repeat (one C{MAC} per network adapter) and are case-sensitive.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from mdmd.enroll.soap import (
    BASE64_BINARY,
    ENROLLMENT,
    WSSE,
    WST,
    CertificateRequestFault,
    MessageFormatFault,
    SoapRequest,
    attribute,
    child,
    children,
    decode_base64,
    envelope,
    text,
)

__all__ = [
    "RST_ACTION",
    "RSTRC_ACTION",
    "ENROLLMENT_TOKEN_TYPE",
    "PROVISION_DOC_VALUE_TYPE",
    "USER_TOKEN_VALUE_TYPE",
    "ISSUE",
    "RENEW",
    "TokenRequest",
    "parse_token_request",
    "token_response",
    "valid_device_id",
]

RST_ACTION = ENROLLMENT + "/RST/wstep"
RSTRC_ACTION = ENROLLMENT + "/RSTRC/wstep"
ENROLLMENT_TOKEN_TYPE = (
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/DeviceEnrollmentToken"
)
PROVISION_DOC_VALUE_TYPE = (
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/"
    "DeviceEnrollmentProvisionDoc"
)
USER_TOKEN_VALUE_TYPE = (
    "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/"
    "DeviceEnrollmentUserToken"
)
ISSUE = "Issue"
RENEW = "Renew"

_DEVICE_ID = re.compile(r"[A-Za-z0-9{}._:-]{1,128}")


def valid_device_id(value: str) -> bool:
    """
    Whether C{value} can name a device: it becomes a certificate CN, a
    store key and part of DM URIs, so only GUID-like characters are allowed.
    """
    return bool(_DEVICE_ID.fullmatch(value))


@dataclass(frozen=True)
class TokenRequest:
    """
    A parsed RequestSecurityToken.
    """

    request_type: str  # ISSUE or RENEW
    value_type: str
    #: the decoded BinarySecurityToken: DER PKCS#10 (Issue) or PKCS#7 (Renew)
    token: bytes
    context: tuple[tuple[str, str], ...]

    def value(self, name: str) -> str:
        """
        The first AdditionalContext value named C{name} ("" when absent).
        """
        for found, value in self.context:
            if found == name:
                return value
        return ""

    def values(self, name: str) -> tuple[str, ...]:
        return tuple(value for found, value in self.context if found == name)


def parse_token_request(request: SoapRequest) -> TokenRequest:
    """
    Read a C{RequestSecurityToken} payload.

    @raise MessageFormatFault: if an element the request needs is missing or unknown.
    @raise CertificateRequestFault: if the token is not base64 or not the kind the request type needs.
    """
    payload = request.payload
    if payload.tag.rpartition("}")[2] != "RequestSecurityToken":
        raise MessageFormatFault("the enrollment service expects a RequestSecurityToken")
    token_type = text(child(payload, "TokenType"))
    if token_type and token_type.lower() != ENROLLMENT_TOKEN_TYPE.lower():
        raise MessageFormatFault(f"unsupported TokenType {token_type!r}")
    request_type_uri = text(child(payload, "RequestType"))
    if not request_type_uri:
        raise MessageFormatFault("RequestSecurityToken has no RequestType")
    request_type = request_type_uri.rstrip("/").rpartition("/")[2].capitalize()
    if request_type not in (ISSUE, RENEW):
        raise MessageFormatFault(f"unsupported RequestType {request_type_uri!r}")
    token_element = child(payload, "BinarySecurityToken")
    if token_element is None:
        raise MessageFormatFault("RequestSecurityToken has no BinarySecurityToken")
    value_type = attribute(token_element, "ValueType") or ""
    expected = "#PKCS10" if request_type == ISSUE else "#PKCS7"
    if value_type and not value_type.upper().endswith(expected):
        raise CertificateRequestFault(
            f"a {request_type} request needs a {expected[1:]} token, not {value_type!r}"
        )
    encoded = text(token_element)
    try:
        token = decode_base64(encoded)
    except ValueError:
        raise CertificateRequestFault(
            "the BinarySecurityToken is not base64 (expected a base64 DER certificate request)"
        ) from None
    context = []
    for item in children(child(payload, "AdditionalContext"), "ContextItem"):
        name = attribute(item, "Name")
        if name:
            context.append((name, text(child(item, "Value"))))
    return TokenRequest(request_type, value_type, token, tuple(context))


def token_response(provisioning_doc: bytes, relates_to: str, activity_id: str, now: float) -> bytes:
    """
    The C{RequestSecurityTokenResponseCollection} carrying C{provisioning_doc} (base64).
    """
    encoded = base64.b64encode(provisioning_doc).decode("ascii")
    body = (
        f'<RequestSecurityTokenResponseCollection xmlns="{WST}"><RequestSecurityTokenResponse>'
        f"<TokenType>{ENROLLMENT_TOKEN_TYPE}</TokenType>"
        f'<DispositionMessage xmlns="{ENROLLMENT}"/>'
        "<RequestedSecurityToken>"
        f'<BinarySecurityToken ValueType="{PROVISION_DOC_VALUE_TYPE}" '
        f'EncodingType="{BASE64_BINARY}" xmlns="{WSSE}">{encoded}</BinarySecurityToken>'
        "</RequestedSecurityToken>"
        f'<RequestID xmlns="{ENROLLMENT}">0</RequestID>'
        "</RequestSecurityTokenResponse></RequestSecurityTokenResponseCollection>"
    )
    return envelope(
        RSTRC_ACTION, relates_to, body, activity_id, body_schema_namespaces=False, valid_from=now
    )
