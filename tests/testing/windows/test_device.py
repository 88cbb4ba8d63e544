"""
Tests for L{mdmd.testing.windows.device}: the emulated device talks HTTPS as
a Windows client does and is as strict as one about what it is answered.

A scripted server on loopback TLS records each request and gives the answer
the test wrote (built with mdmd's own response builders); the whole
enrollment against the real server is in C{tests/enroll/test_resource.py}.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.ssl import PrivateCertificate
from twisted.trial.unittest import TestCase
from twisted.web.client import ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from mdmd.enroll import soap as ns
from mdmd.enroll.discovery import DiscoveryAnswer, discover_response, parse_discover
from mdmd.enroll.federated import post_back_page, sign_in_page
from mdmd.enroll.xcep import CertificatePolicy, get_policies_response
from mdmd.testing.windows.device import APPRU, Discovery, EnrollmentFault, WindowsDevice
from mdmd.testing.windows.provisioning import ProvisioningError

from ...servers import serve

SOAP = "application/soap+xml; charset=utf-8"
NOW = datetime.datetime.now(datetime.timezone.utc)


def _self_signed(hostname: str) -> tuple[x509.Certificate, PrivateCertificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate, PrivateCertificate.loadPEM(pem)


ROOT, SERVER = _self_signed("localhost")
OTHER_ROOT, _ = _self_signed("localhost")

#: An answer: what to do with the request (set headers, write) and the body, or NOT_DONE_YET.
Answer = Callable[[Request], Any]


def soap(body: bytes, code: int = 200, content_type: str = SOAP) -> Answer:
    def answer(request: Request) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", content_type.encode())
        return body

    return answer


def chunked(body: bytes) -> Answer:
    """
    A SOAP answer without Content-Length (HTTP/1.1 chunked).
    """

    def answer(request: Request) -> object:
        request.setHeader(b"Content-Type", SOAP.encode())
        request.write(body)
        request.finish()
        return NOT_DONE_YET

    return answer


class Scripted(Resource):
    """
    Answers each request with the next scripted answer; records (method, uri, headers, body).
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[Answer] = []
        self.requests: list[tuple[bytes, bytes, dict[bytes, bytes], bytes]] = []

    def render(self, request: Request) -> Any:
        assert request.method is not None and request.uri is not None and request.content is not None
        headers = {name.lower(): values[-1] for name, values in request.requestHeaders.getAllRawHeaders()}
        self.requests.append((request.method, request.uri, headers, request.content.read()))
        return self.answers.pop(0)(request)


class CountingSite(Site):
    connections = 0

    def buildProtocol(self, addr: Any) -> Any:
        self.connections += 1
        return super().buildProtocol(addr)


class DeviceTests(TestCase):
    def setUp(self) -> None:
        self.server = Scripted()
        self.site = CountingSite(self.server)
        self.base = f"https://localhost:{serve(self, self.site, SERVER.options())}"

    def device(self, roots: tuple[x509.Certificate, ...] = (ROOT,), **kwargs: Any) -> WindowsDevice:
        device = WindowsDevice(
            reactor, self.base + "/EnrollmentServer/Discovery.svc", roots, user="alice@example.com", password="pw", **kwargs
        )
        self.addCleanup(device.close)
        return device

    def discovery(self, auth_policy: str = "OnPremise", policy_host: str = "") -> bytes:
        base = policy_host or self.base
        answer = DiscoveryAnswer(
            auth_policy,
            "5.0",
            base + "/EnrollmentServer/Policy.svc",
            self.base + "/EnrollmentServer/Enrollment.svc",
            self.base + "/EnrollmentServer/SignIn" if auth_policy == "Federated" else "",
        )
        return discover_response(answer, "urn:uuid:1", "activity")

    async def test_requests_as_windows_sends_them(self) -> None:
        """
        The probe is a bare GET; Discover a POST of SOAP with its length (not
        chunked); both with Windows' User-Agent and no caching; the
        Discover carries the device's user and versions.
        """
        self.server.answers = [soap(b""), soap(self.discovery())]
        device = self.device(request_version="6.0", os_version="10.0.22631.1")
        self.assertEqual(await device.probe(), 200)
        discovery = await device.discover()
        self.assertEqual(
            discovery,
            Discovery(
                "OnPremise",
                "5.0",
                self.base + "/EnrollmentServer/Policy.svc",
                self.base + "/EnrollmentServer/Enrollment.svc",
                "",
            ),
        )
        (get, post) = self.server.requests
        self.assertEqual((get[0], get[1], get[3]), (b"GET", b"/EnrollmentServer/Discovery.svc", b""))
        self.assertEqual((post[0], post[1]), (b"POST", b"/EnrollmentServer/Discovery.svc"))
        for _, _, headers, _ in (get, post):
            self.assertEqual((headers[b"user-agent"], headers[b"cache-control"]), (b"ENROLLClient", b"no-cache"))
        self.assertEqual(post[2][b"content-type"], SOAP.encode())
        self.assertEqual(int(post[2][b"content-length"]), len(post[3]))
        self.assertNotIn(b"transfer-encoding", post[2])
        discover = parse_discover(ns.parse_request(post[3]))
        self.assertEqual(
            (discover.email_address, str(discover.request_version), discover.os_version, discover.auth_policies),
            ("alice@example.com", "6.0", "10.0.22631.1", ("OnPremise", "Federated")),
        )

    async def test_fault(self) -> None:
        """
        A SOAP fault becomes an L{EnrollmentFault} with the HTTP status, the
        subcode, the reason and the DeviceEnrollmentServiceError type.
        """
        fault = ns.fault("s:Authentication", "bad password", "urn:action", "urn:uuid:1", "activity", "AuthenticationFailure")
        self.server.answers = [soap(fault, code=401)]
        with self.assertRaises(EnrollmentFault) as caught:
            await self.device().discover()
        error = caught.exception
        self.assertEqual(
            (error.code, error.subcode, error.reason, error.error_type, error.body),
            (401, "s:Authentication", "bad password", "AuthenticationFailure", fault),
        )

    async def test_strict_about_answers(self) -> None:
        """
        A SOAP answer without a Content-Length, or of another content type, is refused.
        """
        self.server.answers = [chunked(self.discovery()), soap(self.discovery(), content_type="text/xml")]
        device = self.device()
        with self.assertRaises(EnrollmentFault) as caught:
            await device.discover()
        self.assertIn("Content-Length", str(caught.exception))
        with self.assertRaises(EnrollmentFault) as caught:
            await device.discover()
        self.assertIn("content type", str(caught.exception))

    async def test_services_on_one_host(self) -> None:
        """
        Discovery pointing the policy and enrollment services at different hosts is refused.
        """
        self.server.answers = [soap(self.discovery(policy_host="https://elsewhere.example"))]
        with self.assertRaises(ProvisioningError):
            await self.device().discover()

    async def test_policy(self) -> None:
        """
        GetPolicies goes where Discover said, with the OnPremise credentials,
        and gives the minimal key length of mdmd's policy.
        """
        policy = get_policies_response(CertificatePolicy("mdmd", 3072, 86400, 3600), "urn:uuid:1", "activity")
        self.server.answers = [soap(self.discovery()), soap(policy)]
        device = self.device()
        await device.discover()
        self.assertEqual(await device.get_policies(), 3072)
        method, uri, _, body = self.server.requests[-1]
        self.assertEqual((method, uri), (b"POST", b"/EnrollmentServer/Policy.svc"))
        token = ns.parse_request(body).username_token
        assert token is not None
        self.assertEqual((token.username, token.password), ("alice@example.com", "pw"))

    async def test_federated_sign_in(self) -> None:
        """
        The Federated sign-in is the Web Authentication Broker's: GET the
        page with appru and the login hint, POST the form, and take the
        token the answer posts back to appru; a page posting elsewhere is refused.
        """
        page = sign_in_page("/EnrollmentServer/SignIn", APPRU, "alice@example.com", "mdmd")
        self.server.answers = [soap(self.discovery("Federated")), soap(page, content_type="text/html"),
                               soap(post_back_page(APPRU, "the&token"), content_type="text/html")]
        device = self.device()
        await device.discover()
        self.assertEqual(await device.sign_in(), b"the&token")
        (_, get_uri, _, _), (_, post_uri, headers, body) = self.server.requests[1:]
        self.assertEqual(
            parse_qs(urlsplit(get_uri.decode()).query), {"appru": [APPRU], "login_hint": ["alice@example.com"]}
        )
        self.assertEqual(post_uri, b"/EnrollmentServer/SignIn")
        self.assertEqual(headers[b"content-type"], b"application/x-www-form-urlencoded")
        self.assertEqual(
            parse_qs(body.decode()), {"appru": [APPRU], "username": ["alice@example.com"], "password": ["pw"]}
        )
        self.server.answers = [soap(page, content_type="text/html"),
                               soap(post_back_page("https://evil.example/", "t"), content_type="text/html")]
        with self.assertRaises(ProvisioningError):
            await device.sign_in()

    async def test_steps_in_order(self) -> None:
        """
        Steps taken out of order, and the identity before enrollment, are errors.
        """
        device = self.device()
        with self.assertRaises(RuntimeError):
            await device.get_policies()
        with self.assertRaises(RuntimeError):
            await device.renew()
        with self.assertRaises(RuntimeError):
            device.dm_url
        with self.assertRaises(RuntimeError):
            device.dm_agent()
        self.assertEqual(self.server.requests, [])

    async def test_own_keep_alive_connection(self) -> None:
        """
        A device sends its requests over its one kept-alive connection; another device opens its own.
        """
        self.server.answers = [soap(b"")] * 3
        first, second = self.device(), self.device()
        await first.probe()
        await first.probe()
        self.assertEqual(self.site.connections, 1)
        await second.probe()
        self.assertEqual(self.site.connections, 2)

    async def test_trusts_only_its_roots(self) -> None:
        """
        A server whose certificate does not chain to the device's roots gets no request.
        """
        with self.assertRaises(ResponseNeverReceived) as caught:
            await self.device(roots=(OTHER_ROOT,)).probe()
        self.assertIn("certificate verify failed", str(caught.exception.reasons[0].value))
        self.assertEqual(self.server.requests, [])
