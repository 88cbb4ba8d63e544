"""
A Windows device emulator: enrolls against mdmd the way Windows 10/11 does,
over real TLS, and keeps the identity it gets for the DM session.

It sends Microsoft's sample message shapes (C{s:}/C{a:}/C{wsse:} prefixes,
whitespace-padded WS-Addressing headers), builds certificate requests in both
shapes real clients produce (L{legacy_csr}: the PrintableString CN with C{!}
and a NUL, signed under the ISO sha1WithRSA OID; L{modern_csr}: UTF8String,
SHA-256), and checks the provisioning document as strictly as a device must
rely on it: our root, a client certificate chaining to it for client
authentication and selected by the search criteria, the DM address, and both
DM credentials with non-empty nonces.

It is asynchronous, on C{twisted.web.client.Agent}: every device has its own
connection pool (so its requests reuse its keep-alive connection, and no two
devices share one) and a TLS policy that trusts only the given roots and,
once enrolled, presents the device's certificate. Tests, benchmarks and the
DM session work all drive it::

    device = WindowsDevice(reactor, "https://mdm.example/EnrollmentServer/Discovery.svc",
                           [root], user="alice@example.com", password="...")
    await device.enroll()
    device.dm_url, device.client_auth, device.server_auth, device.dm_agent()
    await device.renew()
    await device.close()
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import re
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lxml import etree
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import char, univ
from pyasn1_modules import rfc2986, rfc5280
from twisted.internet.defer import Deferred, succeed
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS, trustRootFromCertificates
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IPolicyForHTTPS
from zope.interface import implementer

from mdmd.enroll import soap as ns
from mdmd.enroll.wstep import ENROLLMENT_TOKEN_TYPE, RST_ACTION, USER_TOKEN_VALUE_TYPE
from mdmd.enroll.xmldsig import EXC_C14N, canonicalize
from mdmd.enroll.provisioning import Characteristic, parse_document
from mdmd.xmlparser import parse

__all__ = [
    "WindowsDevice",
    "AppAuth",
    "Enrollment",
    "EnrollmentFault",
    "ProvisioningError",
    "modern_csr",
    "legacy_csr",
    "renewal_request",
    "discover_message",
    "get_policies_message",
    "token_message",
    "username_security",
    "user_token_security",
    "signed_security_header",
    "check_enrollment_document",
    "CSR_SHAPES",
    "APPRU",
]

SOAP_CONTENT_TYPE = "application/soap+xml; charset=utf-8"
USER_AGENT = b"ENROLLClient"
#: The Web Authentication Broker callback a Windows client passes as appru.
APPRU = "ms-app://windows.immersivecontrolpanel"
OID_DEVICE_ID = "1.3.6.1.4.1.311.66.1.0"


# --- certificate requests -------------------------------------------------------------------


def modern_csr(key: rsa.RSAPrivateKey, device_id: str, algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    """
    A Windows 11 style request: UTF8String CN C{<DeviceID>!<hex>}, the DeviceID
    extension, EKU clientAuth, signed with SHA-256 (DER).
    """
    cn = f"{device_id}!{uuid.uuid5(uuid.NAMESPACE_OID, device_id).hex}"
    with warnings.catch_warnings():
        # Windows exceeds the 64-character upper bound of a CN here; so do we
        warnings.simplefilter("ignore", UserWarning)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False)])
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(OID_DEVICE_ID), device_id.encode() + b"\0"),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, algorithm or hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.DER)


def legacy_csr(key: rsa.RSAPrivateKey, device_id: str, signature_oid: str = "1.3.14.3.2.29") -> bytes:
    """
    An older Windows 10 style request, built by hand: a PrintableString CN
    holding C{!} and a trailing NUL (not DER-valid, which C{cryptography}
    refuses), the DeviceID extension only, signed with SHA-1 under the ISO
    OID 1.3.14.3.2.29.
    """
    info = rfc2986.CertificationRequestInfo()
    info["version"] = 0
    name_value = rfc5280.AttributeTypeAndValue()
    name_value["type"] = rfc5280.id_at_commonName
    name_value["value"] = der_encoder.encode(
        char.PrintableString(f"{device_id}!{uuid.uuid5(uuid.NAMESPACE_OID, device_id).hex}\0")
    )
    rdn = rfc5280.RelativeDistinguishedName()
    rdn.append(name_value)
    sequence = rfc5280.RDNSequence()
    sequence.append(rdn)
    info["subject"]["rdnSequence"] = sequence
    spki_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    spki, _ = der_decoder.decode(spki_der, asn1Spec=rfc5280.SubjectPublicKeyInfo())
    info["subjectPKInfo"]["algorithm"]["algorithm"] = spki["algorithm"]["algorithm"]
    info["subjectPKInfo"]["algorithm"]["parameters"] = spki["algorithm"]["parameters"]
    info["subjectPKInfo"]["subjectPublicKey"] = spki["subjectPublicKey"]
    extension = rfc5280.Extension()
    extension["extnID"] = univ.ObjectIdentifier(OID_DEVICE_ID)
    extension["critical"] = False
    extension["extnValue"] = univ.OctetString(device_id.encode() + b"\0")
    extensions = rfc5280.Extensions()
    extensions.append(extension)
    attribute = rfc2986.Attribute()
    attribute["type"] = univ.ObjectIdentifier("1.2.840.113549.1.9.14")
    attribute["values"].append(der_encoder.encode(extensions))
    info["attributes"].append(attribute)
    tbs = der_encoder.encode(info)
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    request = rfc2986.CertificationRequest()
    request["certificationRequestInfo"] = info
    request["signatureAlgorithm"]["algorithm"] = univ.ObjectIdentifier(signature_oid)
    request["signatureAlgorithm"]["parameters"] = der_encoder.encode(univ.Null())
    request["signature"] = univ.BitString.fromOctetString(signature)
    return bytes(der_encoder.encode(request))


CSR_SHAPES = {"modern": modern_csr, "legacy": legacy_csr}


def renewal_request(
    certificate: x509.Certificate,
    key: rsa.RSAPrivateKey,
    csr_der: bytes,
    base64_content: bool = False,
) -> bytes:
    """
    The PKCS#7 SignedData of a renewal: the new request signed with the current
    certificate's key (OpenSSL's CMS encoder, via C{cryptography}). Automatic
    (ROBO) renewals carry the DER request; user-initiated ones its base64.
    """
    content = base64.b64encode(csr_der) if base64_content else csr_der
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(certificate, key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )


# --- request messages (the shapes of Microsoft's samples) ------------------------------------


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


# --- the device ------------------------------------------------------------------------------


class EnrollmentFault(Exception):
    """
    The server answered with a SOAP fault (or another non-200 status).
    """

    def __init__(self, code: int, subcode: str, reason: str, error_type: str | None, body: bytes) -> None:
        super().__init__(f"HTTP {code} {subcode}: {reason}" + (f" ({error_type})" if error_type else ""))
        self.code = code
        self.subcode = subcode
        self.reason = reason
        self.error_type = error_type
        self.body = body


class ProvisioningError(Exception):
    """
    The provisioning document is not one a Windows device could rely on.
    """


@dataclass
class AppAuth:
    """
    One w7 APPAUTH credential as the device holds it. C{nonce} is raw bytes
    and changes as DM sessions send new ones.
    """

    level: str
    auth_type: str
    name: str
    secret: str
    nonce: bytes


@dataclass(frozen=True)
class Reply:
    code: int
    headers: dict[str, str]
    body: bytes
    #: the Content-Length the server sent, or None (chunked or until close)
    length: int | None


@dataclass(frozen=True)
class Discovery:
    auth_policy: str
    enrollment_version: str
    policy_url: str
    enrollment_url: str
    authentication_url: str


@dataclass(frozen=True)
class Enrollment:
    """
    What an enrollment gave the device.
    """

    certificate: x509.Certificate
    root: x509.Certificate
    document: Characteristic
    dm_url: str
    provider_id: str
    store: str
    client_auth: AppAuth
    server_auth: AppAuth


@implementer(IPolicyForHTTPS)
class _TLSPolicy:
    """
    Trust only the given roots; present a client certificate if given one.
    """

    def __init__(self, roots: Sequence[x509.Certificate], client: PrivateCertificate | None) -> None:
        self._trust = trustRootFromCertificates(
            [Certificate.loadPEM(r.public_bytes(serialization.Encoding.PEM)) for r in roots]
        )
        self._client = client
        self._creators: dict[tuple[bytes, int], Any] = {}

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        # Agent asks for every request; building TLS options (cipher lists, an
        # SSL context) each time would cost more than the request itself.
        creator = self._creators.get((hostname, port))
        if creator is None:
            creator = self._creators[(hostname, port)] = optionsForClientTLS(
                hostname.decode("ascii"), trustRoot=self._trust, clientCertificate=self._client
            )
        return creator


_SHARED_POLICIES: dict[tuple[bytes, ...], _TLSPolicy] = {}


class WindowsDevice:
    """
    One emulated Windows device and the identity it holds once enrolled.
    """

    def __init__(
        self,
        reactor: Any,
        discovery_url: str,
        trust_roots: Sequence[x509.Certificate],
        *,
        user: str = "",
        password: str = "",
        device_id: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
        csr_shape: str = "modern",
        csr: bytes | None = None,
        enrollment_type: str = "Full",
        device_name: str | None = None,
        request_version: str = "9.0",
        os_version: str = "10.0.26100.1",
        os_edition: str = "48",
        mac_addresses: Sequence[str] = ("00:15:5D:01:02:03", "00:15:5D:01:02:04"),
        provisioning_certificate: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
        key_size: int = 2048,
    ) -> None:
        self.reactor = reactor
        self.discovery_url = discovery_url
        self.trust_roots = list(trust_roots)
        self.user = user
        self.password = password
        self.device_id = device_id or uuid.uuid4().hex.upper()
        self.hw_dev_id = hashlib.sha256(self.device_id.encode()).hexdigest().upper()
        self.key = key
        self.key_size = key_size
        self.csr_shape = csr_shape
        self._csr = csr
        self.enrollment_type = enrollment_type
        self.device_name = device_name or f"DESKTOP-{self.device_id[:7]}"
        self.request_version = request_version
        self.os_version = os_version
        self.os_edition = os_edition
        self.mac_addresses = tuple(mac_addresses)
        self.provisioning_certificate = provisioning_certificate
        self.discovery: Discovery | None = None
        self.min_key_length: int | None = None
        self.user_token: bytes | None = None
        self.enrollment: Enrollment | None = None
        self.certificate: x509.Certificate | None = None
        self._pools: dict[bool, HTTPConnectionPool] = {}
        self._agents: dict[bool, IAgent] = {}

    # -- identity, for the DM session ------------------------------------------------------------

    @property
    def dm_url(self) -> str:
        return self._enrolled().dm_url

    @property
    def client_auth(self) -> AppAuth:
        """
        APPSRV: how this device authenticates to the DM server.
        """
        return self._enrolled().client_auth

    @property
    def server_auth(self) -> AppAuth:
        """
        CLIENT: how the DM server authenticates to this device.
        """
        return self._enrolled().server_auth

    def _enrolled(self) -> Enrollment:
        if self.enrollment is None:
            raise RuntimeError("the device has not enrolled")
        return self.enrollment

    def dm_agent(self) -> IAgent:
        """
        An Agent presenting this device's MDM certificate (for DM sessions).
        """
        return self._agent(client_certificate=True)

    def _agent(self, client_certificate: bool) -> IAgent:
        agent = self._agents.get(client_certificate)
        if agent is None:
            client = None
            if client_certificate:
                if self.certificate is None or self.key is None:
                    raise RuntimeError("the device has no certificate yet")
                client = PrivateCertificate.loadPEM(
                    self.certificate.public_bytes(serialization.Encoding.PEM)
                    + self.key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.TraditionalOpenSSL,
                        serialization.NoEncryption(),
                    )
                )
            pool = HTTPConnectionPool(self.reactor, persistent=True)
            pool.retryAutomatically = False
            self._pools[client_certificate] = pool
            agent = Agent(self.reactor, contextFactory=self._tls_policy(client), pool=pool)
            self._agents[client_certificate] = agent
        return agent

    def _tls_policy(self, client: PrivateCertificate | None) -> _TLSPolicy:
        """
        The TLS policy: devices trusting the same roots share one while they
        present no certificate (an SSL context per device would cost more
        than its enrollment's requests).
        """
        if client is not None:
            return _TLSPolicy(self.trust_roots, client)
        key = tuple(root.fingerprint(hashes.SHA256()) for root in self.trust_roots)
        policy = _SHARED_POLICIES.get(key)
        if policy is None:
            policy = _SHARED_POLICIES[key] = _TLSPolicy(self.trust_roots, None)
        return policy

    async def close(self) -> None:
        """
        Close this device's connections.
        """
        pools, self._pools, self._agents = self._pools, {}, {}
        for pool in pools.values():
            await pool.closeCachedConnections()

    # -- HTTP ------------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        content_type: str = SOAP_CONTENT_TYPE,
        client_certificate: bool = False,
    ) -> Reply:
        headers = Headers({b"User-Agent": [USER_AGENT], b"Cache-Control": [b"no-cache"]})
        producer = None
        if body is not None:
            headers.addRawHeader(b"Content-Type", content_type.encode("ascii"))
            producer = _Body(body)
        response = await self._agent(client_certificate).request(
            method.encode("ascii"), url.encode("ascii"), headers, producer
        )
        length = response.length if isinstance(response.length, int) else None
        data = await readBody(response)
        return Reply(
            response.code,
            {k.decode().lower(): v[-1].decode("latin-1") for k, v in response.headers.getAllRawHeaders()},
            data,
            length,
        )

    async def soap(self, url: str, body: bytes, client_certificate: bool = False) -> etree._Element:
        """
        POST a SOAP message; the parsed response payload, or L{EnrollmentFault}.
        """
        reply = await self.request("POST", url, body, client_certificate=client_certificate)
        if reply.headers.get("content-type") != SOAP_CONTENT_TYPE:
            raise EnrollmentFault(reply.code, "", f"content type {reply.headers.get('content-type')}", None, reply.body)
        if reply.length != len(reply.body):
            raise EnrollmentFault(reply.code, "", "the answer is not sent with a Content-Length", None, reply.body)
        root = parse(reply.body)
        payload = next(iter(ns.child(root, "Body")), None)
        if payload is None:
            raise EnrollmentFault(reply.code, "", "empty SOAP body", None, reply.body)
        if ns.local(payload) == "Fault":
            subcode = ns.text(ns.child(ns.child(ns.child(payload, "Code"), "Subcode"), "Value"))
            reason = ns.text(ns.child(ns.child(payload, "Reason"), "Text"))
            error = ns.child(ns.child(payload, "Detail"), "DeviceEnrollmentServiceError")
            raise EnrollmentFault(reply.code, subcode, reason, ns.text(ns.child(error, "ErrorType")) or None, reply.body)
        if reply.code != 200:
            raise EnrollmentFault(reply.code, "", f"HTTP {reply.code}", None, reply.body)
        return payload

    # -- the enrollment steps ----------------------------------------------------------------------

    async def probe(self) -> int:
        """
        The client's first GET of the discovery URL; the status code.
        """
        reply = await self.request("GET", self.discovery_url)
        return reply.code

    async def discover(self) -> Discovery:
        payload = await self.soap(
            self.discovery_url,
            discover_message(
                self.discovery_url,
                self.user,
                self.request_version,
                os_version=self.os_version,
                os_edition=self.os_edition,
                auth_policies=("OnPremise", "Federated", "Certificate")
                if self.provisioning_certificate
                else ("OnPremise", "Federated"),
            ),
        )
        result = ns.child(payload, "DiscoverResult")
        self.discovery = Discovery(
            auth_policy=ns.text(ns.child(result, "AuthPolicy")),
            enrollment_version=ns.text(ns.child(result, "EnrollmentVersion")),
            policy_url=ns.text(ns.child(result, "EnrollmentPolicyServiceUrl")),
            enrollment_url=ns.text(ns.child(result, "EnrollmentServiceUrl")),
            authentication_url=ns.text(ns.child(result, "AuthenticationServiceUrl")),
        )
        if urlsplit(self.discovery.policy_url).netloc.lower() != urlsplit(
            self.discovery.enrollment_url
        ).netloc.lower():
            raise ProvisioningError("the policy and enrollment services are on different hosts")
        return self.discovery

    async def sign_in(self) -> bytes:
        """
        The Federated policy's web sign-in, as the Web Authentication Broker does it:
        the security token the page posts back to C{appru}.
        """
        discovery = self._discovered()
        page = await self.request(
            "GET", discovery.authentication_url + "?" + urlencode({"appru": APPRU, "login_hint": self.user})
        )
        if page.code != 200 or b"<form" not in page.body:
            raise EnrollmentFault(page.code, "", "no sign-in form", None, page.body)
        answer = await self.request(
            "POST",
            discovery.authentication_url,
            urlencode({"appru": APPRU, "username": self.user, "password": self.password}).encode(),
            content_type="application/x-www-form-urlencoded",
        )
        action = re.search(rb'<form method="post" action="([^"]*)"', answer.body)
        token = re.search(rb'name="wresult" value="([^"]*)"', answer.body)
        if answer.code != 200 or token is None or action is None:
            raise EnrollmentFault(answer.code, "", "the sign-in was refused", None, answer.body)
        if html.unescape(action.group(1).decode()) != APPRU:
            raise ProvisioningError("the sign-in page posts the token somewhere else than appru")
        self.user_token = html.unescape(token.group(1).decode()).encode()
        return self.user_token

    def _discovered(self) -> Discovery:
        if self.discovery is None:
            raise RuntimeError("discover first")
        return self.discovery

    def _security(self) -> str:
        policy = self._discovered().auth_policy
        if policy == "Federated":
            if self.user_token is None:
                raise RuntimeError("sign in first")
            return user_token_security(self.user_token)
        if policy == "Certificate":
            return '<wsse:Security s:mustUnderstand="1"/>'
        return username_security(self.user, self.password)

    def _sign(self, message: bytes) -> bytes:
        if self._discovered().auth_policy != "Certificate":
            return message
        if self.provisioning_certificate is None:
            raise RuntimeError("the Certificate policy needs a provisioning certificate")
        certificate, key = self.provisioning_certificate
        return signed_security_header(message, certificate, key, self.reactor.seconds())

    async def get_policies(self) -> int:
        """
        MS-XCEP GetPolicies; the minimal key length the policy asks for.
        """
        url = self._discovered().policy_url
        payload = await self.soap(url, self._sign(get_policies_message(url, self._security())))
        attributes = payload.find(f".//{{{ns.ENROLLMENT_POLICY}}}attributes")
        if ns.text(ns.child(attributes, "policySchema")) != "3":
            raise ProvisioningError("policySchema must be 3")
        reference = ns.text(ns.child(attributes, "hashAlgorithmOIDReference"))
        known = {ns.text(ns.child(o, "oIDReferenceID")) for o in payload.iter(f"{{{ns.ENROLLMENT_POLICY}}}oID")}
        if reference not in known:
            raise ProvisioningError(f"hashAlgorithmOIDReference {reference} is not in oIDs")
        self.min_key_length = int(ns.text(payload.find(f".//{{{ns.ENROLLMENT_POLICY}}}minimalKeyLength")))
        return self.min_key_length

    def context(self) -> list[tuple[str, str]]:
        """
        The AdditionalContext a Windows 11 client sends (MAC repeats).
        """
        items = [
            ("UXInitiated", "true"),
            ("HWDevID", self.hw_dev_id),
            ("Locale", "en-US"),
            ("TargetedUserLoggedIn", "true"),
            ("OSEdition", self.os_edition),
            ("DeviceName", self.device_name),
        ]
        items += [("MAC", mac) for mac in self.mac_addresses]
        items += [
            ("DeviceID", self.device_id),
            ("EnrollmentType", self.enrollment_type),
            ("DeviceType", "CIMClient_Windows"),
            ("OSVersion", self.os_version),
            ("ApplicationVersion", self.os_version),
            ("NotInOobe", "false"),
            ("RequestVersion", self.request_version),
        ]
        return items

    def certificate_request(self) -> bytes:
        if self._csr is not None:
            return self._csr
        if self.key is None:
            self.key = rsa.generate_private_key(65537, max(self.key_size, self.min_key_length or 0))
        return CSR_SHAPES[self.csr_shape](self.key, self.device_id)

    async def request_certificate(self) -> Enrollment:
        """
        The RequestSecurityToken; the provisioning document, checked.
        """
        url = self._discovered().enrollment_url
        message = token_message(url, self._security(), self.certificate_request(), self.context())
        payload = await self.soap(url, self._sign(message))
        document = _provisioning_document(payload)
        enrollment = check_enrollment_document(document, self.device_id, self.key, self.trust_roots)
        self.enrollment = enrollment
        self.certificate = enrollment.certificate
        self._agents.pop(True, None)
        self._pools.pop(True, None)
        return enrollment

    async def enroll(self) -> Enrollment:
        """
        The whole enrollment: GET probe, Discover, (sign-in), GetPolicies, RequestSecurityToken.
        """
        code = await self.probe()
        if code != 200:
            raise EnrollmentFault(code, "", "the discovery probe failed", None, b"")
        discovery = await self.discover()
        if discovery.auth_policy == "Federated":
            await self.sign_in()
        await self.get_policies()
        return await self.request_certificate()

    async def renew(self, key: rsa.RSAPrivateKey | None = None, base64_content: bool = False) -> x509.Certificate:
        """
        Automatic (ROBO) renewal: a new key's request, signed with the current
        certificate, sent over TLS presenting that certificate.
        """
        enrollment = self._enrolled()
        if self.certificate is None or self.key is None:
            raise RuntimeError("the device has no certificate")
        new_key = key or rsa.generate_private_key(65537, self.key_size)
        signed = renewal_request(
            self.certificate, self.key, CSR_SHAPES[self.csr_shape](new_key, self.device_id), base64_content
        )
        url = self._discovered().enrollment_url
        message = token_message(
            url,
            '<wsse:Security s:mustUnderstand="1"/>',
            signed,
            [("DeviceType", "CIMClient_Windows"), ("ApplicationVersion", self.os_version)],
            renew=True,
        )
        payload = await self.soap(url, message, client_certificate=True)
        document = _provisioning_document(payload)
        store = document.get("CertificateStore", "My", enrollment.store)
        certificates = [c for c in (store.children if store else ()) if c.parm("EncodedCertificate")]
        if len(certificates) != 1 or certificates[0].get("PrivateKeyContainer") is None:
            raise ProvisioningError("the renewal document does not hold one new certificate")
        certificate = x509.load_der_x509_certificate(base64.b64decode(certificates[0].parm("EncodedCertificate") or ""))
        _check_client_certificate(certificate, certificates[0].type, self.device_id, new_key, enrollment.root)
        if (document.get("APPLICATION") or _EMPTY).parm("PROVIDER-ID") != enrollment.provider_id:
            raise ProvisioningError("the renewal document names another provider")
        self.key = new_key
        self.certificate = certificate
        self.enrollment = replace(enrollment, certificate=certificate)
        old = self._pools.pop(True, None)
        self._agents.pop(True, None)
        if old is not None:
            await old.closeCachedConnections()
        return certificate


@implementer(IBodyProducer)
class _Body:
    """
    A request body written at once (with its length, so it is not chunked).
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


_EMPTY = Characteristic("", (), ())


def _provisioning_document(payload: etree._Element) -> Characteristic:
    token = payload.find(f".//{{{ns.WSSE}}}BinarySecurityToken")
    if token is None:
        raise ProvisioningError("the answer carries no BinarySecurityToken")
    return parse_document(base64.b64decode(ns.text(token)))


def _check_client_certificate(
    certificate: x509.Certificate,
    thumbprint: str,
    device_id: str,
    key: rsa.RSAPrivateKey | None,
    root: x509.Certificate,
) -> None:
    if hashlib.sha1(certificate.public_bytes(serialization.Encoding.DER)).hexdigest().upper() != thumbprint:
        raise ProvisioningError("the client certificate's characteristic is not its thumbprint")
    try:
        certificate.verify_directly_issued_by(root)
    except Exception as e:
        raise ProvisioningError(f"the client certificate does not chain to the root: {e}") from None
    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise ProvisioningError("the client certificate has no extended key usage") from None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        raise ProvisioningError("the client certificate is not for client authentication")
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [n.value for n in names] != [device_id]:
        raise ProvisioningError(f"the client certificate names {certificate.subject.rfc4514_string()}")
    if key is not None and certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ProvisioningError("the client certificate is not for the device's key")


def _app_auth(characteristic: Characteristic) -> AppAuth:
    level = characteristic.parm("AAUTHLEVEL") or ""
    auth_type = characteristic.parm("AAUTHTYPE") or ""
    secret = characteristic.parm("AAUTHSECRET") or ""
    data = characteristic.parm("AAUTHDATA") or ""
    try:
        nonce = base64.b64decode(data, validate=True)
    except ValueError:
        raise ProvisioningError(f"APPAUTH {level}: AAUTHDATA is not base64") from None
    if not secret or len(nonce) < 8:
        raise ProvisioningError(f"APPAUTH {level}: the secret or the nonce is missing")
    return AppAuth(level, auth_type, characteristic.parm("AAUTHNAME") or "", secret, nonce)


def check_enrollment_document(
    document: Characteristic,
    device_id: str,
    key: rsa.RSAPrivateKey | None,
    trust_roots: Sequence[x509.Certificate],
) -> Enrollment:
    """
    Check a provisioning document as a device relies on it; the identity it gives.

    @raise ProvisioningError: naming the first problem.
    """
    kinds = [c.type for c in document.children]
    if sorted(kinds) != ["APPLICATION", "CertificateStore", "DMClient"]:
        raise ProvisioningError(f"unexpected top-level characteristics {kinds}")
    roots = list((document.get("CertificateStore", "Root", "System") or _EMPTY).children)
    if len(roots) != 1:
        raise ProvisioningError(f"expected one root certificate, found {len(roots)}")
    root = x509.load_der_x509_certificate(base64.b64decode(roots[0].parm("EncodedCertificate") or ""))
    if hashlib.sha1(root.public_bytes(serialization.Encoding.DER)).hexdigest().upper() != roots[0].type:
        raise ProvisioningError("the root's characteristic is not its thumbprint")
    if trust_roots and root not in trust_roots:
        raise ProvisioningError("the provisioned root is not the server's CA")
    my = document.get("CertificateStore", "My")
    stores = [c for c in (my.children if my else ()) if c.type in ("User", "System")]
    if len(stores) != 1:
        raise ProvisioningError("expected the client certificate in My/User or My/System")
    store = stores[0]
    certificates = [c for c in store.children if c.parm("EncodedCertificate")]
    if len(certificates) != 1 or store.get("PrivateKeyContainer") is None:
        raise ProvisioningError("expected one client certificate and a PrivateKeyContainer")
    certificate = x509.load_der_x509_certificate(base64.b64decode(certificates[0].parm("EncodedCertificate") or ""))
    _check_client_certificate(certificate, certificates[0].type, device_id, key, root)

    application = document.get("APPLICATION") or _EMPTY
    if application.parm("APPID") != "w7":
        raise ProvisioningError("APPLICATION is not w7")
    provider_id = application.parm("PROVIDER-ID") or ""
    dm_url = application.parm("ADDR") or ""
    if not dm_url.startswith("https://"):
        raise ProvisioningError(f"the DM address {dm_url!r} is not HTTPS")
    criteria = dict(part.partition("=")[::2] for part in (application.parm("SSLCLIENTCERTSEARCHCRITERIA") or "").split("&"))
    if unquote(criteria.get("Subject", "")) != certificate.subject.rfc4514_string() or unquote(
        criteria.get("Stores", "")
    ) != "My\\" + store.type:
        raise ProvisioningError(f"SSLCLIENTCERTSEARCHCRITERIA {criteria} does not select the certificate")
    auths = {_app_auth(c).level: _app_auth(c) for c in application.all("APPAUTH")}
    if set(auths) != {"CLIENT", "APPSRV"}:
        raise ProvisioningError(f"expected APPAUTH CLIENT and APPSRV, found {sorted(auths)}")
    if auths["CLIENT"].auth_type != "DIGEST" or not auths["APPSRV"].name:
        raise ProvisioningError("APPAUTH CLIENT must be DIGEST and APPSRV must name the device")
    if auths["CLIENT"].nonce == auths["APPSRV"].nonce:
        raise ProvisioningError("the CLIENT and APPSRV nonces are the same")
    provider = document.get("DMClient", "Provider", provider_id)
    if not provider_id or provider is None or provider.get("Poll") is None:
        raise ProvisioningError("DMClient/Provider does not match PROVIDER-ID or has no Poll schedule")
    auths["CLIENT"].name = auths["CLIENT"].name or provider_id
    return Enrollment(
        certificate=certificate,
        root=root,
        document=document,
        dm_url=dm_url,
        provider_id=provider_id,
        store=store.type,
        client_auth=auths["APPSRV"],
        server_auth=auths["CLIENT"],
    )
