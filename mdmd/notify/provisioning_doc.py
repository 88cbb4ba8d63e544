"""
OMA Client Provisioning documents (the WAP Provisioning language): a model,
its XML form and its WBXML encoding, and the w7 document that gives a
classic OMA DM device its DM account.

A document is a C{wap-provisioningdoc} of C{characteristic}s holding
C{parm}s and further characteristics (OMA-WAP-ProvCont). On the air it is
WBXML 1.3 with public identifier 0x0B (C{-//WAPFORUM//DTD PROV 1.0//EN}),
UTF-8, and every tag and attribute from the token tables of ProvCont
section 7: code page 0 holds the WAP 2.0 vocabulary (NAPDEF, PXLOGICAL, ...),
code page 1 the OMA additions (APPLICATION, APPADDR, APPAUTH, their parms and
values such as APPSRV or DIGEST).

B{Encoding choices.} No string table: text goes inline (C{STR_I}). An
attribute whose name and whole value have a token is that token; otherwise
the name's token, then the value as a value token when the whole value has
one, else inline text. Tag and attribute code pages are separate states
(WBXML 1.3 section 5.8.1); a token is taken from the current page when the
page has it, else from the lowest page that does, with a C{SWITCH_PAGE}
before it. libwbxml's C{xml2wbxml} prefers the lowest page instead, so it
switches back and forth where we stay on page 1: its bytes and ours decode
to the same document (the tests check both ways), ours are shorter, and for
a document that needs page 0 only they are identical to C{xml2wbxml -n}.

This module is pure: values in, bytes out.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, Union
from xml.sax.saxutils import escape

__all__ = [
    "AAUTHLEVEL_APPSRV",
    "AAUTHLEVEL_CLIENT",
    "BootstrapAccount",
    "CONTENT_TYPE",
    "Characteristic",
    "DMCredential",
    "DMServer",
    "PUBLIC_ID",
    "Parm",
    "ProvisioningDoc",
    "WBXML_PUBLIC_ID",
    "account_document",
    "to_wbxml",
    "to_xml",
]

#: The MIME type of a WBXML provisioning document (WSP well-known value 0x36).
CONTENT_TYPE = "application/vnd.wap.connectivity-wbxml"
PUBLIC_ID = "-//WAPFORUM//DTD PROV 1.0//EN"
SYSTEM_ID = "http://www.wapforum.org/DTD/prov.dtd"
#: The well-known WBXML public identifier of PUBLIC_ID.
WBXML_PUBLIC_ID = 0x0B
#: The document version our documents declare (the OMA 1.1 vocabulary of code page 1).
DOCUMENT_VERSION = "1.1"

#: The w7 APPAUTH levels, in OMA's meaning (see L{account_document}).
AAUTHLEVEL_APPSRV = "APPSRV"
AAUTHLEVEL_CLIENT = "CLIENT"

# WBXML global tokens (WBXML 1.3 section 7.1) and the header we write.
_SWITCH_PAGE = 0x00
_END = 0x01
_STR_I = 0x03
_HAS_ATTRIBUTES = 0x80
_HAS_CONTENT = 0x40
_WBXML_1_3 = 0x03
_UTF8 = 0x6A  # IANA MIBenum 106

# -- the token tables (OMA-WAP-ProvCont-v1_1 section 7; page 0 is WAP-183's) -------------

#: Tag tokens by code page.
_TAGS: tuple[dict[str, int], ...] = (
    {"wap-provisioningdoc": 0x05, "characteristic": 0x06, "parm": 0x07},
    {"characteristic": 0x06, "parm": 0x07},
)

_PAGE0_TYPES = (
    "PXLOGICAL PXPHYSICAL PORT VALIDITY NAPDEF BOOTSTRAP VENDORCONFIG CLIENTIDENTITY "
    "PXAUTHINFO NAPAUTHINFO ACCESS"
).split()
#: Page 0 parm names with a token, from 0x07; None marks a token the table skips.
_PAGE0_NAMES: tuple[str | None, ...] = (
    *(
        "NAME NAP-ADDRESS NAP-ADDRTYPE CALLTYPE VALIDUNTIL AUTHTYPE AUTHNAME AUTHSECRET LINGER "
        "BEARER NAPID COUNTRY NETWORK INTERNET PROXY-ID PROXY-PROVIDER-ID DOMAIN PROVURL "
        "PXAUTH-TYPE PXAUTH-ID PXAUTH-PW STARTPAGE BASAUTH-ID BASAUTH-PW PUSHENABLED PXADDR "
        "PXADDRTYPE TO-NAPID PORTNBR SERVICE LINKSPEED DNLINKSPEED LOCAL-ADDR LOCAL-ADDRTYPE "
        "CONTEXT-ALLOW TRUST MASTER SID SOC WSP-VERSION PHYSICAL-PROXY-ID CLIENT-ID "
        "DELIVERY-ERR-SDU DELIVERY-ORDER TRAFFIC-CLASS MAX-SDU-SIZE MAX-BITRATE-UPLINK "
        "MAX-BITRATE-DNLINK RESIDUAL-BER SDU-ERROR-RATIO TRAFFIC-HANDL-PRIO TRANSFER-DELAY "
        "GUARANTEED-BITRATE-UPLINK GUARANTEED-BITRATE-DNLINK PXADDR-FQDN PROXY-PW PPGAUTH-TYPE"
    ).split(),
    # 0x40 to 0x46: global tokens and the version attribute
    *(None,) * 7,
    *"PULLENABLED DNS-ADDR MAX-NUM-RETRY FIRST-RETRY-TIMEOUT REREG-THRESHOLD T-BIT".split(),
    None,  # 0x4D
    *"AUTH-ENTITY SPI".split(),
)

_AttributeKey = tuple[str, Union[str, None]]

#: Attribute-start tokens by code page: (attribute, whole value) or (attribute, None)
#: for the name alone, its value following.
_ATTRIBUTE_STARTS: tuple[dict[_AttributeKey, int], ...] = (
    {
        ("version", None): 0x45,
        ("version", "1.0"): 0x46,
        ("type", None): 0x50,
        **{("type", name): 0x51 + i for i, name in enumerate(_PAGE0_TYPES)},
        ("name", None): 0x05,
        ("value", None): 0x06,
        **{("name", name): 0x07 + i for i, name in enumerate(_PAGE0_NAMES) if name is not None},
    },
    {
        ("type", None): 0x50,
        ("type", "PORT"): 0x53,
        ("type", "APPLICATION"): 0x55,
        ("type", "APPADDR"): 0x56,
        ("type", "APPAUTH"): 0x57,
        ("type", "CLIENTIDENTITY"): 0x58,
        ("type", "RESOURCE"): 0x59,
        ("name", None): 0x05,
        ("value", None): 0x06,
        ("name", "NAME"): 0x07,
        ("name", "INTERNET"): 0x14,
        ("name", "STARTPAGE"): 0x1C,
        ("name", "TO-NAPID"): 0x22,
        ("name", "PORTNBR"): 0x23,
        ("name", "SERVICE"): 0x24,
        **{
            ("name", name): 0x2E + i
            for i, name in enumerate(
                (
                    "AACCEPT AAUTHDATA AAUTHLEVEL AAUTHNAME AAUTHSECRET AAUTHTYPE ADDR ADDRTYPE "
                    "APPID APROTOCOL PROVIDER-ID TO-PROXY URI RULE"
                ).split()
            )
        },
    },
)


def _run(first: int, names: str) -> dict[str, int]:
    return {name: first + i for i, name in enumerate(names.split())}


#: Attribute-value tokens by code page (whole values only; see the module docstring).
_ATTRIBUTE_VALUES: tuple[dict[str, int], ...] = (
    {
        **_run(0x85, "IPV4 IPV6 E164 ALPHA APN SCODE TETRA-ITSI MAN"),
        **_run(0x90, "ANALOG-MODEM V.120 V.110 X.31 BIT-TRANSPARENT DIRECT-ASYNCHRONOUS-DATA-SERVICE"),
        **_run(0x9A, "PAP CHAP HTTP-BASIC HTTP-DIGEST WTLS-SS MD5"),
        **_run(
            0xA2,
            "GSM-USSD GSM-SMS ANSI-136-GUTS IS-95-CDMA-SMS IS-95-CDMA-CSD IS-95-CDMA-PACKET "
            "ANSI-136-CSD ANSI-136-GPRS GSM-CSD GSM-GPRS AMPS-CDPD PDC-CSD PDC-PACKET IDEN-SMS "
            "IDEN-CSD IDEN-PACKET FLEX/REFLEX PHS-SMS PHS-CSD TRETRA-SDS TRETRA-PACKET "
            "ANSI-136-GHOST MOBITEX-MPAK CDMA2000-1X-SIMPLE-IP CDMA2000-1X-MOBILE-IP",
        ),
        "AUTOBAUDING": 0xC5,
        **_run(
            0xCA,
            "CL-WSP CO-WSP CL-SEC-WSP CO-SEC-WSP CL-SEC-WTA CO-SEC-WTA OTA-HTTP-TO "
            "OTA-HTTP-TLS-TO OTA-HTTP-PO OTA-HTTP-TLS-PO",
        ),
        **_run(0xE0, "AAA HA"),
    },
    {
        **_run(0x86, "IPV6 E164 ALPHA"),
        **_run(0x8D, "APPSRV OBEX"),
        # the OMA 1.1 (2005) values: the 2002 draft's 0x80-0x83 are global tokens
        **_run(0x90, ", HTTP- BASIC DIGEST"),
    },
)

# -- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parm:
    """
    A parameter; C{value} None for a valueless one (such as w7 INIT).
    """

    name: str
    value: str | None = None


@dataclass(frozen=True)
class Characteristic:
    """
    A characteristic: C{type}, then its parms and characteristics in document order.
    """

    type: str
    children: tuple[Parm | Characteristic, ...] = ()


@dataclass(frozen=True)
class ProvisioningDoc:
    characteristics: tuple[Characteristic, ...]
    version: str = DOCUMENT_VERSION


# -- XML ------------------------------------------------------------------------------------


def _attribute(name: str, value: str) -> str:
    return f' {name}="{escape(value, {chr(34): "&quot;"})}"'


def _xml_of(node: Parm | Characteristic, out: list[str]) -> None:
    if isinstance(node, Parm):
        value = "" if node.value is None else _attribute("value", node.value)
        out.append(f"<parm{_attribute('name', node.name)}{value}/>")
    elif node.children:
        out.append(f"<characteristic{_attribute('type', node.type)}>")
        for child in node.children:
            _xml_of(child, out)
        out.append("</characteristic>")
    else:
        out.append(f"<characteristic{_attribute('type', node.type)}/>")


def to_xml(doc: ProvisioningDoc) -> bytes:
    """
    The document in XML (C{text/vnd.wap.connectivity-xml}), compact, for
    display and debugging: what L{to_wbxml} encodes.
    """
    out = [
        '<?xml version="1.0"?>',
        f'<!DOCTYPE wap-provisioningdoc PUBLIC "{PUBLIC_ID}" "{SYSTEM_ID}">',
        f"<wap-provisioningdoc{_attribute('version', doc.version)}>",
    ]
    for characteristic in doc.characteristics:
        _xml_of(characteristic, out)
    out.append("</wap-provisioningdoc>")
    return "".join(out).encode("utf-8")


# -- WBXML ----------------------------------------------------------------------------------

K = TypeVar("K")


def _token(pages: Sequence[Mapping[K, int]], key: K, current: int) -> tuple[int, int] | None:
    """
    (page, token) for C{key}: the current page's if it has one, else the lowest page's.
    """
    if key in pages[current]:
        return current, pages[current][key]
    for page, table in enumerate(pages):
        if key in table:
            return page, table[key]
    return None


def _inline(text: str) -> bytes:
    raw = text.encode("utf-8")
    if b"\x00" in raw:
        raise ValueError("a provisioning document cannot carry a NUL character")
    return bytes((_STR_I,)) + raw + b"\x00"


class _Encoder:
    """
    The WBXML body, with the tag and attribute code pages we are on.
    """

    def __init__(self) -> None:
        self.out = bytearray()
        self.tag_page = 0
        self.attribute_page = 0

    def _attribute_token(self, found: tuple[int, int]) -> None:
        page, token = found
        if page != self.attribute_page:
            self.out += bytes((_SWITCH_PAGE, page))
            self.attribute_page = page
        self.out.append(token)

    def start(self, tag: str, attributes: Sequence[tuple[str, str | None]], content: bool) -> None:
        found = _token(_TAGS, tag, self.tag_page)
        assert found is not None, tag  # we write the PROV DTD's three elements only
        page, token = found
        if page != self.tag_page:
            self.out += bytes((_SWITCH_PAGE, page))
            self.tag_page = page
        self.out.append(token | _HAS_ATTRIBUTES | (_HAS_CONTENT if content else 0))
        for name, value in attributes:
            self.attribute(name, value)
        self.out.append(_END)

    def attribute(self, name: str, value: str | None) -> None:
        whole = None if value is None else _token(_ATTRIBUTE_STARTS, (name, value), self.attribute_page)
        if whole is not None:
            self._attribute_token(whole)
            return
        start = _token(_ATTRIBUTE_STARTS, (name, None), self.attribute_page)
        assert start is not None, name  # every attribute of the PROV DTD has a token
        self._attribute_token(start)
        if not value:
            return
        value_token = _token(_ATTRIBUTE_VALUES, value, self.attribute_page)
        if value_token is not None:
            self._attribute_token(value_token)
        else:
            self.out += _inline(value)

    def node(self, node: Parm | Characteristic) -> None:
        if isinstance(node, Parm):
            attributes: list[tuple[str, str | None]] = [("name", node.name)]
            if node.value is not None:
                attributes.append(("value", node.value))
            self.start("parm", attributes, content=False)
            return
        self.start("characteristic", [("type", node.type)], content=bool(node.children))
        if node.children:
            for child in node.children:
                self.node(child)
            self.out.append(_END)


def to_wbxml(doc: ProvisioningDoc) -> bytes:
    """
    The document as WBXML 1.3 (C{application/vnd.wap.connectivity-wbxml}).

    @raise ValueError: if a name or value holds a NUL character.
    """
    encoder = _Encoder()
    encoder.start("wap-provisioningdoc", [("version", doc.version)], content=True)
    for characteristic in doc.characteristics:
        encoder.node(characteristic)
    encoder.out.append(_END)
    # version, public id (a one-octet mb_u_int32), charset, empty string table
    return bytes((_WBXML_1_3, WBXML_PUBLIC_ID, _UTF8, 0)) + bytes(encoder.out)


# -- the w7 DM account -----------------------------------------------------------------------


@dataclass(frozen=True)
class DMServer:
    """
    Who a bootstrapped device is told its DM server is: the configured
    C{[enrollment] provider_id} (a device's server id when it has none of
    its own) and C{display_name}, and the DM URL (known once HTTPS is bound).
    """

    provider_id: str
    name: str
    address: str


@dataclass(frozen=True)
class DMCredential:
    """
    One side's DM credential: its AAUTHTYPE (DIGEST, BASIC, HMAC), name,
    secret and the nonce (raw octets) the next digest uses.
    """

    auth_type: str
    name: str
    secret: str = field(repr=False)
    nonce: bytes = field(repr=False)


@dataclass(frozen=True)
class BootstrapAccount:
    """
    Everything the w7 document of one device says.

    @ivar server: how the server authenticates itself to the device (what
        the device checks; mdmd's C{dm_server_*}).
    @ivar client: how the device authenticates itself to the server
        (mdmd's C{dm_client_*}).
    """

    server_id: str
    name: str
    address: str
    server: DMCredential
    client: DMCredential


def _app_auth(level: str, credential: DMCredential) -> Characteristic:
    parms = [
        Parm("AAUTHLEVEL", level),
        Parm("AAUTHTYPE", credential.auth_type),
        Parm("AAUTHNAME", credential.name),
        Parm("AAUTHSECRET", credential.secret),
    ]
    if credential.nonce:
        parms.append(Parm("AAUTHDATA", base64.b64encode(credential.nonce).decode("ascii")))
    return Characteristic("APPAUTH", tuple(parms))


def account_document(account: BootstrapAccount) -> ProvisioningDoc:
    """
    The w7 APPLICATION characteristic that gives a classic device its DM account.

    B{Which APPAUTH is which.} A classic device follows OMA's registration
    of w7 (OMA-SUP-ac_w7_dm, applied by OMA DM Bootstrap when it maps w7 to
    DMAcc): AAUTHLEVEL C{APPSRV} holds the I{application server's}
    credential, which the client uses to authenticate the server (it becomes
    the AppAuth of AAuthLevel SRVCRED), and C{CLIENT} holds the I{client's}
    own credential, which it sends to the server (CLCRED). Microsoft's w7
    CSP reads the two levels the other way round (APPSRV: "the credentials
    the client uses to authenticate itself to the server"), and so does
    mdmd's Windows enrollment (L{mdmd.enroll.provisioning}), because that is
    what Windows does with them. A classic device implements the OMA text,
    not Windows' CSP, so here APPSRV carries C{server} and CLIENT carries
    C{client}. INIT asks the client to open a DM session as soon as it has
    taken the account; a client that does not know it ignores it, as
    ProvCont asks of unknown parameters.
    """
    return ProvisioningDoc(
        (
            Characteristic(
                "APPLICATION",
                (
                    Parm("APPID", "w7"),
                    Parm("PROVIDER-ID", account.server_id),
                    Parm("NAME", account.name),
                    Parm("ADDR", account.address),
                    Parm("INIT"),
                    _app_auth(AAUTHLEVEL_APPSRV, account.server),
                    _app_auth(AAUTHLEVEL_CLIENT, account.client),
                ),
            ),
        )
    )
