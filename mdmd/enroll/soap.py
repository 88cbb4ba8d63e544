"""
SOAP 1.2 envelopes as Windows' enrollment client sends and expects them.

Requests are read leniently: elements are found by local name (Microsoft's
own samples disagree on namespaces), text is stripped (the samples wrap
Action, To and values in whitespace), and SOAP 1.1 envelopes are accepted.
Responses are written in the exact prefix shapes of Microsoft's samples
(C{s:}, C{a:}, C{u:}), compactly, from string templates with every value
escaped: cheaper than building trees, and byte-for-byte predictable.

Faults carry the MS-MDE2 subcodes: a L{SoapFault} is a peer's mistake
(MessageFormat, Authentication, Authorization, CertificateRequest,
InvalidSecurity); C{s:EnrollmentServer} (busy) and C{a:InternalServiceFault}
are ours. Every error declares its subcode (C{soap_subcode}, L{mdmd.errors}),
which the adapter writes with L{fault}.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from lxml import etree

from mdmd.errors import (
    SOAP_AUTHENTICATION,
    SOAP_AUTHORIZATION,
    SOAP_CERTIFICATE_REQUEST,
    SOAP_INVALID_SECURITY,
    SOAP_MESSAGE_FORMAT,
    PeerError,
)
from mdmd.xmlparser import MalformedXML, parse

__all__ = [
    "SOAP12",
    "SOAP11",
    "WSA",
    "WSSE",
    "WSU",
    "WST",
    "AC",
    "XSI",
    "XSD",
    "DS",
    "DIAGNOSTICS",
    "ENROLLMENT",
    "ENROLLMENT_POLICY",
    "DISCOVERY",
    "BASE64_BINARY",
    "PASSWORD_TEXT",
    "SoapFault",
    "MessageFormatFault",
    "AuthenticationFault",
    "AuthorizationFault",
    "CertificateRequestFault",
    "InvalidSecurityFault",
    "UsernameToken",
    "BinaryToken",
    "SoapRequest",
    "Children",
    "MAX_ELEMENTS",
    "MAX_CHILDREN",
    "MAX_MESSAGE_ID",
    "MAX_REASON",
    "SOAP_MEDIA_TYPES",
    "check_content_type",
    "quoted",
    "parse_request",
    "decode_base64",
    "escape",
    "local",
    "child",
    "children",
    "text",
    "envelope",
    "fault",
    "timestamp",
]

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
WST = "http://docs.oasis-open.org/ws-sx/ws-trust/200512"
AC = "http://schemas.xmlsoap.org/ws/2006/12/authorization"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
DS = "http://www.w3.org/2000/09/xmldsig#"
DIAGNOSTICS = "http://schemas.microsoft.com/2004/09/ServiceModel/Diagnostics"
#: MS-WSTEP / MS-MDE2 enrollment namespace (RequestID, DispositionMessage, fault detail)
ENROLLMENT = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment"
#: MS-XCEP namespace
ENROLLMENT_POLICY = "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy"
#: MS-MDE2 discovery namespace
DISCOVERY = "http://schemas.microsoft.com/windows/management/2012/01/enrollment"
BASE64_BINARY = WSSE + "#base64binary"
PASSWORD_TEXT = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    "#PasswordText"
)
ADDRESSING_FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"

#: Elements a request may have in all, and children one element may have.
#: Windows' largest request (a RequestSecurityToken) has about 55 elements,
#: none with more than 20 children; a stranger's 100,000 siblings are
#: refused before anything looks them up.
MAX_ELEMENTS = 1000
MAX_CHILDREN = 200
#: The longest MessageID echoed as RelatesTo (Windows sends urn:uuid:…, 45 characters).
MAX_MESSAGE_ID = 256
#: The longest fault reason: reasons quote what the peer sent.
MAX_REASON = 512
#: The media types of SOAP requests: SOAP 1.2's, and SOAP 1.1's (text/xml).
SOAP_MEDIA_TYPES = ("application/soap+xml", "text/xml")



def _bounded(text: str, limit: int) -> str:
    """
    C{text}, cut to C{limit} characters (marked with an ellipsis).
    """
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def quoted(value: str, limit: int = 64) -> str:
    """
    C{value} quoted for a fault reason or a log line, cut to C{limit} characters.
    """
    return repr(_bounded(value, limit))


class SoapFault(PeerError):
    """
    The peer's request is refused with an MS-MDE2 fault (its class declares the subcode).

    C{error_type} is the optional C{DeviceEnrollmentServiceError/ErrorType}
    (e.g. C{NotEligibleToRenew}) that makes the client show a precise message.
    The reason is cut to L{MAX_REASON} characters: it often quotes the request.
    """

    soap_subcode = SOAP_MESSAGE_FORMAT

    def __init__(self, reason: str, error_type: str | None = None) -> None:
        reason = _bounded(reason, MAX_REASON)
        super().__init__(reason)
        self.reason = reason
        self.error_type = error_type

    @property
    def subcode(self) -> str:
        """
        The fault's subcode, as the SOAP vocabulary names it (its class's C{soap_subcode}).
        """
        return self.soap_subcode


class MessageFormatFault(SoapFault):
    """Malformed XML, a missing element or an unexpected value (0x80180001)."""

    soap_subcode = SOAP_MESSAGE_FORMAT


class AuthenticationFault(SoapFault):
    """The user or token is not recognized (0x80180002)."""

    http_status = 401
    soap_subcode = SOAP_AUTHENTICATION


class AuthorizationFault(SoapFault):
    """The user is known but may not enroll this device (0x80180003)."""

    http_status = 403
    soap_subcode = SOAP_AUTHORIZATION


class CertificateRequestFault(SoapFault):
    """The certificate request cannot be honoured (0x80180004)."""

    soap_subcode = SOAP_CERTIFICATE_REQUEST


class InvalidSecurityFault(SoapFault):
    """The WS-Security header is missing or unreadable (0x80180007)."""

    http_status = 401
    soap_subcode = SOAP_INVALID_SECURITY


# --- reading ------------------------------------------------------------------------------


def local(element: etree._Element) -> str:
    """
    The local name of C{element} (the empty string for comments and the like).
    """
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


def children(element: etree._Element | None, name: str) -> Iterator[etree._Element]:
    """
    The child elements of C{element} whose local name is C{name}, in order.

    lxml matches the name itself (C{{*}}name: any namespace, or none), so a
    lookup among an element's (at most L{MAX_CHILDREN}) children costs no Python loop.
    """
    if element is None:
        return iter(())
    return element.iterchildren(f"{{*}}{name}")


def child(element: etree._Element | None, name: str) -> etree._Element | None:
    """
    The first child element of C{element} named C{name} (any namespace), or None.
    """
    return next(children(element, name), None)


class Children(Mapping[str, tuple[etree._Element, ...]]):
    """
    The child elements of one element by local name, indexed in one pass:
    for a reader that looks up many fields of the same element.
    """

    def __init__(self, element: etree._Element | None) -> None:
        index: dict[str, list[etree._Element]] = {}
        for candidate in () if element is None else element:
            name = local(candidate)
            if name:
                index.setdefault(name, []).append(candidate)
        self._index = {name: tuple(found) for name, found in index.items()}

    def __getitem__(self, name: str) -> tuple[etree._Element, ...]:
        return self._index[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def first(self, name: str) -> etree._Element | None:
        """
        The first child named C{name}, or None.
        """
        found = self._index.get(name)
        return found[0] if found else None

    def all(self, name: str) -> tuple[etree._Element, ...]:
        """
        Every child named C{name}, in order.
        """
        return self._index.get(name, ())


def text(element: etree._Element | None) -> str:
    """
    The stripped text content of C{element} ("" when absent).
    """
    if element is None:
        return ""
    if len(element) == 0:  # the usual leaf: no need to walk descendants
        return (element.text or "").strip()
    return "".join(element.itertext()).strip()


def attribute(element: etree._Element, name: str) -> str | None:
    """
    The value of the attribute named C{name} in any namespace (or none), stripped.
    """
    value = element.get(name)
    if value is None:
        for key, candidate in element.attrib.items():
            if key.rpartition("}")[2] == name:
                value = candidate
                break
    return None if value is None else value.strip()


_WHITESPACE = re.compile(rb"\s+")


def decode_base64(value: str | bytes) -> bytes:
    """
    Decode base64 that may contain whitespace and line breaks, and may lack padding.

    @raise ValueError: if it is not base64.
    """
    data = value.encode("ascii", "replace") if isinstance(value, str) else value
    data = _WHITESPACE.sub(b"", data)
    if not data:
        raise ValueError("empty")
    data += b"=" * (-len(data) % 4)
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error as e:
        raise ValueError(str(e)) from None


@dataclass(frozen=True)
class UsernameToken:
    username: str
    #: as sent; callers may also try it stripped (Microsoft's samples pad it with whitespace)
    password: str


@dataclass(frozen=True)
class BinaryToken:
    """
    A C{wsse:BinarySecurityToken} of the security header: decoded bytes, or None if not base64.
    """

    value_type: str
    data: bytes | None
    id: str | None


@dataclass(frozen=True)
class SoapRequest:
    """
    A parsed request envelope: the addressing headers, the security header and the payload.
    """

    soap_namespace: str
    action: str
    message_id: str
    to: str
    #: the first element inside Body
    payload: etree._Element
    root: etree._Element
    security: etree._Element | None
    username_token: UsernameToken | None
    tokens: tuple[BinaryToken, ...]

    def token(self, value_type_suffix: str) -> BinaryToken | None:
        """
        The header token whose ValueType ends with C{value_type_suffix} (case-insensitive).
        """
        suffix = value_type_suffix.lower()
        for token in self.tokens:
            if token.value_type.lower().endswith(suffix):
                return token
        return None


def check_content_type(value: bytes | None) -> None:
    """
    Refuse a request whose Content-Type is not a SOAP one (L{SOAP_MEDIA_TYPES}).

    @raise MessageFormatFault: if it is missing or another type.
    """
    media = (value or b"").partition(b";")[0].strip().lower().decode("latin-1")
    if media not in SOAP_MEDIA_TYPES:
        raise MessageFormatFault(
            f"a SOAP request is sent as {' or '.join(SOAP_MEDIA_TYPES)}, not {media or 'no type'!r}"
        )


def _check_size(root: etree._Element) -> None:
    """
    Refuse a tree of more than L{MAX_ELEMENTS} elements, or with an element of
    more than L{MAX_CHILDREN} children (counting stops at the limit).

    @raise MessageFormatFault: if it is one.
    """
    elements = list(itertools.islice(root.iter(), MAX_ELEMENTS + 1))
    if len(elements) > MAX_ELEMENTS:
        raise MessageFormatFault(f"the request has more than {MAX_ELEMENTS} elements")
    if any(len(element) > MAX_CHILDREN for element in elements):
        raise MessageFormatFault(f"an element of the request has more than {MAX_CHILDREN} children")


def _message_id(header: etree._Element | None) -> str:
    """
    The MessageID, echoed as RelatesTo: at most L{MAX_MESSAGE_ID} printable
    characters (an IRI; Microsoft's samples put a blank in theirs).

    @raise MessageFormatFault: if it is longer or holds control characters.
    """
    value = text(child(header, "MessageID"))
    if len(value) > MAX_MESSAGE_ID or not value.isprintable():
        raise MessageFormatFault(
            f"the MessageID must be at most {MAX_MESSAGE_ID} printable characters"
        )
    return value


def parse_request(data: bytes) -> SoapRequest:
    """
    Parse a SOAP request envelope.

    @raise MessageFormatFault: if the bytes are not an envelope with a payload,
        the tree is larger than L{MAX_ELEMENTS} and L{MAX_CHILDREN} allow, or
        the MessageID is not one to echo.
    """
    try:
        root = parse(data)
    except MalformedXML as e:
        raise MessageFormatFault(f"the request is not well-formed XML: {e}") from None
    _check_size(root)
    if local(root) != "Envelope":
        raise MessageFormatFault(f"expected a SOAP Envelope, got {local(root) or 'nothing'}")
    namespace = etree.QName(root).namespace or ""
    if namespace not in (SOAP12, SOAP11):
        raise MessageFormatFault(f"unknown SOAP envelope namespace {namespace!r}")
    header = child(root, "Header")
    body = child(root, "Body")
    payload = next((e for e in (body if body is not None else ()) if local(e)), None)
    if payload is None:
        raise MessageFormatFault("the SOAP Body is missing or empty")
    security = child(header, "Security")
    username_token = None
    tokens: list[BinaryToken] = []
    if security is not None:
        found = child(security, "UsernameToken")
        if found is not None:
            password = child(found, "Password")
            username_token = UsernameToken(
                text(child(found, "Username")),
                "" if password is None else "".join(password.itertext()),
            )
        for token in children(security, "BinarySecurityToken"):
            try:
                decoded: bytes | None = decode_base64(text(token))
            except ValueError:
                decoded = None
            tokens.append(
                BinaryToken(attribute(token, "ValueType") or "", decoded, attribute(token, "Id"))
            )
    return SoapRequest(
        soap_namespace=namespace,
        action=text(child(header, "Action")),
        message_id=_message_id(header),
        to=text(child(header, "To")),
        payload=payload,
        root=root,
        security=security,
        username_token=username_token,
        tokens=tuple(tokens),
    )


# --- writing ------------------------------------------------------------------------------

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def escape(value: str) -> str:
    """
    C{value} safe in XML text and double-quoted attributes (characters XML forbids dropped).
    """
    if _FORBIDDEN.search(value):
        value = _FORBIDDEN.sub("", value)
    return value.translate(_ESCAPES)


def timestamp(seconds: float) -> str:
    """
    An xsd:dateTime in UTC with milliseconds, as in Microsoft's samples.
    """
    import datetime

    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def envelope(
    action: str,
    relates_to: str,
    body: str,
    activity_id: str,
    *,
    body_schema_namespaces: bool = True,
    valid_from: float | None = None,
    valid_for: float = 300.0,
) -> bytes:
    """
    A SOAP 1.2 response envelope in the shape of Microsoft's samples.

    With C{valid_from}, the header carries the WS-Security timestamp of
    Microsoft's RSTR sample (C{o:Security/u:Timestamp}, C{valid_for} seconds).
    """
    parts = [
        f'<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA}" xmlns:u="{WSU}"><s:Header>'
        f'<a:Action s:mustUnderstand="1">{escape(action)}</a:Action>'
        f'<ActivityId CorrelationId="{escape(activity_id)}" xmlns="{DIAGNOSTICS}">'
        f"{escape(activity_id)}</ActivityId>"
    ]
    if relates_to:
        parts.append(f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>")
    if valid_from is not None:
        parts.append(
            f'<o:Security s:mustUnderstand="1" xmlns:o="{WSSE}"><u:Timestamp u:Id="_0">'
            f"<u:Created>{timestamp(valid_from)}</u:Created>"
            f"<u:Expires>{timestamp(valid_from + valid_for)}</u:Expires>"
            "</u:Timestamp></o:Security>"
        )
    parts.append("</s:Header>")
    if body_schema_namespaces:
        parts.append(f'<s:Body xmlns:xsi="{XSI}" xmlns:xsd="{XSD}">')
    else:
        parts.append("<s:Body>")
    parts.append(body)
    parts.append("</s:Body></s:Envelope>")
    return "".join(parts).encode("utf-8")


def fault(
    subcode: str,
    reason: str,
    action: str,
    relates_to: str,
    activity_id: str,
    error_type: str | None = None,
) -> bytes:
    """
    A SOAP 1.2 fault with an MS-MDE2 subcode, in the shape of Microsoft's sample.

    The reason text is what Windows logs and may show; the activity id is
    repeated as the C{TraceId} so a support case can find our log line.
    """
    detail = ""
    if error_type:
        detail = (
            f'<s:Detail><DeviceEnrollmentServiceError xmlns="{ENROLLMENT}">'
            f"<ErrorType>{escape(error_type)}</ErrorType><Message>{escape(reason)}</Message>"
            f"<TraceId>{escape(activity_id)}</TraceId></DeviceEnrollmentServiceError></s:Detail>"
        )
    body = (
        "<s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode>"
        f"<s:Value>{escape(subcode)}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(reason)}</s:Text></s:Reason>'
        f"{detail}</s:Fault>"
    )
    return envelope(action, relates_to, body, activity_id, body_schema_namespaces=False)
