"""
A Windows device, emulated: it enrolls against mdmd the way Windows 10/11
does, over real TLS, and keeps the identity it gets for the DM session.

It reproduces the client's side of MS-MDE2: the GET probe of the discovery
URL, Discover, the Federated policy's web sign-in (as the Web Authentication
Broker does it), MS-XCEP GetPolicies, the MS-WSTEP RequestSecurityToken and
the automatic (ROBO) renewal over mutual TLS. It sends the User-Agent and
message shapes of the real client (L{mdmd.testing.windows.soap}), certificate
requests of either shape (L{mdmd.testing.windows.csr}), and is as strict as a
device about what it is answered: SOAP answers must come with their
Content-Length, faults become L{EnrollmentFault}, and the provisioning
document is checked before it is relied on
(L{mdmd.testing.windows.provisioning}).

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

import hashlib
import html
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS, trustRootFromCertificates
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IPolicyForHTTPS
from zope.interface import implementer

from mdmd.enroll import soap as ns
from mdmd.notify.wns_http import BytesProducer
from mdmd.xmlparser import parse

from .csr import CSR_SHAPES, renewal_request
from .provisioning import (
    AppAuth,
    Enrollment,
    ProvisioningError,
    check_enrollment_document,
    check_renewal_document,
    document_from_answer,
)
from .soap import (
    discover_message,
    get_policies_message,
    signed_security_header,
    token_message,
    user_token_security,
    username_security,
)

__all__ = ["APPRU", "Discovery", "EnrollmentFault", "Reply", "WindowsDevice"]

SOAP_CONTENT_TYPE = "application/soap+xml; charset=utf-8"
USER_AGENT = b"ENROLLClient"
#: The Web Authentication Broker callback a Windows client passes as appru.
APPRU = "ms-app://windows.immersivecontrolpanel"


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


@dataclass(frozen=True)
class Reply:
    """
    An HTTP answer as the device read it.
    """

    code: int
    headers: dict[str, str]
    body: bytes
    #: the Content-Length the server sent, or None (chunked or until close)
    length: int | None


@dataclass(frozen=True)
class Discovery:
    """
    What Discover told the device: how to authenticate and where to go next.
    """

    auth_policy: str
    enrollment_version: str
    policy_url: str
    enrollment_url: str
    authentication_url: str


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
            producer = BytesProducer(body)
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
        envelope_body = ns.child(root, "Body")
        payload = next(iter(envelope_body), None) if envelope_body is not None else None
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
        document = document_from_answer(payload)
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
        certificate = check_renewal_document(document_from_answer(payload), self.device_id, new_key, enrollment)
        self.key = new_key
        self.certificate = certificate
        self.enrollment = replace(enrollment, certificate=certificate)
        old = self._pools.pop(True, None)
        self._agents.pop(True, None)
        if old is not None:
            await old.closeCachedConnections()
        return certificate
