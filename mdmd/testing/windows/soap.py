"""
SOAP requests as the Windows enrollment client sends them.

The shapes are those of Microsoft's samples in MS-MDE2, which real clients
follow: C{s:}/C{a:}/C{wsse:} prefixes, WS-Addressing C{Action} and C{To}
padded with newlines and spaces, the RequestSecurityToken's base64 broken into
64-character lines. L{discover_message} is MS-MDE2 Discover,
L{get_policies_message} MS-XCEP GetPolicies, L{token_message} the MS-WSTEP
RequestSecurityToken (Issue or Renew); the security headers are those of the
OnPremise (L{username_security}), Federated (L{user_token_security}) and
Certificate (L{signed_security_header}) authentication policies.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import uuid
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from mdmd.enroll import soap as ns
from mdmd.enroll.wstep import ENROLLMENT_TOKEN_TYPE, RST_ACTION, USER_TOKEN_VALUE_TYPE
from mdmd.enroll.xmldsig import EXC_C14N, canonicalize
from mdmd.xmlparser import parse

__all__ = [
    "discover_message",
    "get_policies_message",
    "signed_security_header",
    "token_message",
    "user_token_security",
    "username_security",
]

def _message_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _header(action: str, to: str, message_id: str, security: str = "") -> str:
    return (
        "<s:Header>"
        f'<a:Action s:mustUnderstand="1">\n      {action}\n    </a:Action>'
        f"<a:MessageID>{message_id}</a:MessageID>"
        "<a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>"
        f'<a:To s:mustUnderstand="1">\n      {ns.escape(to)}\n    </a:To>'
        f"{security}</s:Header>"
    )


_ENVELOPE = (
    f'<s:Envelope xmlns:s="{ns.SOAP12}" xmlns:a="{ns.WSA}" xmlns:u="{ns.WSU}" '
    f'xmlns:wsse="{ns.WSSE}" xmlns:wst="{ns.WST}" xmlns:ac="{ns.AC}">'
)


def discover_message(
    to: str,
    email: str,
    request_version: str = "9.0",
    *,
    device_type: str = "CIMClient_Windows",
    application_version: str = "10.0.26100.1",
    os_edition: str = "48",
    os_version: str = "10.0.26100.1",
    auth_policies: Sequence[str] = ("OnPremise", "Federated"),
    message_id: str | None = None,
) -> bytes:
    """
    An MS-MDE2 Discover for C{email}, with the fields a Windows 11 client fills in.
    """
    policies = "".join(f"<AuthPolicy>{p}</AuthPolicy>" for p in auth_policies)
    return (
        '<?xml version="1.0"?>'
        f'<s:Envelope xmlns:a="{ns.WSA}" xmlns:s="{ns.SOAP12}">'
        + _header(
            ns.DISCOVERY + "/IDiscoveryService/Discover", to, message_id or _message_id()
        )
        + f'<s:Body><Discover xmlns="{ns.DISCOVERY}/">'
        f'<request xmlns:i="{ns.XSI}">'
        f"<EmailAddress>{ns.escape(email)}</EmailAddress>"
        f"<RequestVersion>{request_version}</RequestVersion>"
        f"<DeviceType>{device_type}</DeviceType>"
        f"<ApplicationVersion>{application_version}</ApplicationVersion>"
        f"<OSEdition>{os_edition}</OSEdition><OSVersion>{os_version}</OSVersion>"
        f"<AuthPolicies>{policies}</AuthPolicies></request></Discover></s:Body></s:Envelope>"
    ).encode("utf-8")


def username_security(user: str, password: str) -> str:
    """
    The OnPremise WS-Security header: a UsernameToken with the password as text.
    """
    return (
        '<wsse:Security s:mustUnderstand="1">'
        '<wsse:UsernameToken u:Id="uuid-cc1ccc1f-2fba-4bcf-b063-ffc0cac77917-4">'
        f"<wsse:Username>{ns.escape(user)}</wsse:Username>"
        f'<wsse:Password wsse:Type="{ns.PASSWORD_TEXT}">{ns.escape(password)}</wsse:Password>'
        "</wsse:UsernameToken></wsse:Security>"
    )


def user_token_security(token: bytes) -> str:
    """
    The Federated WS-Security header: the sign-in page's token, base64-encoded.
    """
    return (
        '<wsse:Security s:mustUnderstand="1">'
        f'<wsse:BinarySecurityToken ValueType="{USER_TOKEN_VALUE_TYPE}" '
        f'EncodingType="{ns.BASE64_BINARY}">{base64.b64encode(token).decode()}'
        "</wsse:BinarySecurityToken></wsse:Security>"
    )


def get_policies_message(to: str, security: str, message_id: str | None = None) -> bytes:
    """
    An MS-XCEP GetPolicies with C{security} as its WS-Security header (no filter, no last update).
    """
    return (
        _ENVELOPE
        + _header(ns.ENROLLMENT_POLICY + "/IPolicy/GetPolicies", to, message_id or _message_id(), security)
        + f'<s:Body xmlns:xsi="{ns.XSI}" xmlns:xsd="{ns.XSD}">'
        f'<GetPolicies xmlns="{ns.ENROLLMENT_POLICY}"><client><lastUpdate xsi:nil="true"/>'
        '<preferredLanguage xsi:nil="true"/></client><requestFilter xsi:nil="true"/>'
        "</GetPolicies></s:Body></s:Envelope>"
    ).encode("utf-8")


def token_message(
    to: str,
    security: str,
    token: bytes,
    context: Sequence[tuple[str, str]],
    *,
    renew: bool = False,
    message_id: str | None = None,
    wrap_base64: bool = True,
) -> bytes:
    """
    A RequestSecurityToken: Issue with a PKCS#10, or Renew with a PKCS#7.
    """
    encoded = base64.b64encode(token).decode("ascii")
    if wrap_base64:  # as Windows sends it: with line breaks
        encoded = "\n".join(encoded[i : i + 64] for i in range(0, len(encoded), 64))
    value_type = (
        "http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS7"
        if renew
        else "http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS10"
    )
    items = "".join(
        f'<ac:ContextItem Name="{ns.escape(name)}"><ac:Value>{ns.escape(value)}</ac:Value></ac:ContextItem>'
        for name, value in context
    )
    return (
        _ENVELOPE
        + _header(RST_ACTION, to, message_id or _message_id(), security)
        + "<s:Body><wst:RequestSecurityToken>"
        f"<wst:TokenType>{ENROLLMENT_TOKEN_TYPE}</wst:TokenType>"
        "<wst:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/"
        f"{'Renew' if renew else 'Issue'}</wst:RequestType>"
        f'<wsse:BinarySecurityToken ValueType="{value_type}" EncodingType="{ns.BASE64_BINARY}">'
        f"{encoded}</wsse:BinarySecurityToken>"
        f'<ac:AdditionalContext xmlns="{ns.AC}">{items}</ac:AdditionalContext>'
        "</wst:RequestSecurityToken></s:Body></s:Envelope>"
    ).encode("utf-8")


def signed_security_header(
    envelope: bytes, certificate: x509.Certificate, key: rsa.RSAPrivateKey, now: float
) -> bytes:
    """
    Sign C{envelope} for the Certificate policy: add to its (empty) security
    header a Timestamp, the certificate as BinarySecurityToken and an XML
    signature (exclusive C14N, RSA-SHA256) over the Timestamp.
    """
    root = parse(envelope)
    security = root.find(f".//{{{ns.WSSE}}}Security")
    if security is None:
        raise ValueError("the envelope has no wsse:Security header")

    def when(seconds: float) -> str:
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    stamp = etree.SubElement(security, f"{{{ns.WSU}}}Timestamp", {f"{{{ns.WSU}}}Id": "_0"})
    etree.SubElement(stamp, f"{{{ns.WSU}}}Created").text = when(now)
    etree.SubElement(stamp, f"{{{ns.WSU}}}Expires").text = when(now + 300)
    token = etree.SubElement(
        security,
        f"{{{ns.WSSE}}}BinarySecurityToken",
        {
            "ValueType": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3",
            "EncodingType": ns.BASE64_BINARY,
            f"{{{ns.WSU}}}Id": "X509Token",
        },
    )
    token.text = base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()
    ds = ns.DS
    signature = etree.SubElement(security, f"{{{ds}}}Signature", nsmap={"ds": ds})
    signed_info = etree.SubElement(signature, f"{{{ds}}}SignedInfo")
    etree.SubElement(signed_info, f"{{{ds}}}CanonicalizationMethod", Algorithm=EXC_C14N)
    etree.SubElement(
        signed_info, f"{{{ds}}}SignatureMethod", Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    )
    reference = etree.SubElement(signed_info, f"{{{ds}}}Reference", URI="#_0")
    transforms = etree.SubElement(reference, f"{{{ds}}}Transforms")
    etree.SubElement(transforms, f"{{{ds}}}Transform", Algorithm=EXC_C14N)
    etree.SubElement(reference, f"{{{ds}}}DigestMethod", Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
    etree.SubElement(reference, f"{{{ds}}}DigestValue").text = base64.b64encode(
        hashlib.sha256(canonicalize(stamp, EXC_C14N)).digest()
    ).decode()
    value = key.sign(canonicalize(signed_info, EXC_C14N), padding.PKCS1v15(), hashes.SHA256())
    etree.SubElement(signature, f"{{{ds}}}SignatureValue").text = base64.b64encode(value).decode()
    key_info = etree.SubElement(signature, f"{{{ds}}}KeyInfo")
    reference_token = etree.SubElement(key_info, f"{{{ns.WSSE}}}SecurityTokenReference")
    etree.SubElement(reference_token, f"{{{ns.WSSE}}}Reference", URI="#X509Token")
    return etree.tostring(root)
