"""
Real TLS handshakes on loopback against the HTTPS listener's options: no client
certificate, one of ours, one from a foreign CA, a revoked one, and old TLS.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from OpenSSL.crypto import X509
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from mdmd.pki.ca import CertificateAuthority, certificate_pem, generate_rsa_key, private_key_pem
from mdmd.pki.resource import pki_resource
from mdmd.pki.tls import peer_certificate, verified_client
from mdmd.site import AsyncResource, MdmdRequest, MdmdSite, Response
from mdmd.store.runner import StoreService
from mdmd.testing.store import memory_store_service

from ..httpclient import Reply, client_context, fetch
from ..servers import serve
from .helpers import DevicePKI, started_ca

CLIENT_KEY = generate_rsa_key(2048)


class WhoAmI(AsyncResource):
    """
    A resource that requires an honoured client certificate (as the DM endpoint will).
    """

    def __init__(self, store: StoreService) -> None:
        super().__init__()
        self._store = store

    async def handle_GET(self, request: Request) -> Response:
        info = await verified_client(request, self._store)
        return Response(info.device_id.encode())


class HandshakeTests(TestCase):
    def setUp(self) -> None:
        self.store = memory_store_service()
        self.addCleanup(self.store.stopService)
        self.ca = started_ca(self, store=self.store)
        root = Resource()
        root.putChild(b"whoami", WhoAmI(self.store))
        root.putChild(b"pki", pki_resource(self.ca))
        site = MdmdSite(root, clock=reactor, max_body=4096)
        self.port = serve(self, site, self.ca.tls_options)

    def write_client(
        self, certificate: x509.Certificate, key: rsa.RSAPrivateKey = CLIENT_KEY
    ) -> tuple[str, str]:
        directory = self.mktemp()
        os.makedirs(directory)
        cert_path, key_path = f"{directory}/cert.pem", f"{directory}/key.pem"
        with open(cert_path, "wb") as f:
            f.write(certificate_pem(certificate))
        with open(key_path, "wb") as f:
            f.write(private_key_pem(key))
        return cert_path, key_path

    def get(self, path: str, context: ssl.SSLContext) -> Deferred[list[Reply]]:
        return deferToThread(fetch, self.port, path, context)

    async def test_no_client_certificate(self) -> None:
        """
        Without a client certificate the handshake succeeds (discovery, enrollment)
        but a resource that requires one refuses with 403.
        """
        context = client_context(self.ca.ca_cert_path)
        (reply,) = await self.get("/pki/ca.crt", context)
        self.assertEqual(reply.status, 200)
        self.assertIn(reply.tls_version, ("TLSv1.2", "TLSv1.3"))
        (reply,) = await self.get("/whoami", context)
        self.assertEqual(reply.status, 403)
        self.assertIn(b"client certificate is required", reply.body)

    async def test_valid_client_certificate(self) -> None:
        """
        A certificate we issued is verified and its record reaches the resource.
        """
        issued = await self.ca.issue(CLIENT_KEY.public_key(), "DEVICE-42")
        context = client_context(self.ca.ca_cert_path, *self.write_client(issued.certificate))
        (reply,) = await self.get("/whoami", context)
        self.assertEqual((reply.status, reply.body), (200, b"DEVICE-42"))

    async def test_foreign_client_certificate(self) -> None:
        """
        A certificate from another CA fails the TLS handshake.
        """
        now = datetime.datetime.now(datetime.timezone.utc)
        foreign = CertificateAuthority.create(generate_rsa_key(2048), "evil", "x", datetime.timedelta(days=9), now)
        certificate = foreign.issue_client(CLIENT_KEY.public_key(), "DEVICE-42", datetime.timedelta(days=9), now)
        context = client_context(self.ca.ca_cert_path, *self.write_client(certificate))
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            await self.get("/pki/ca.crt", context)

    async def test_revoked_client_certificate(self) -> None:
        """
        A revoked certificate completes the handshake but the application refuses it.
        """
        issued = await self.ca.issue(CLIENT_KEY.public_key(), "DEVICE-42")
        await self.ca.revoke(issued.certificate.serial_number, "keyCompromise")
        context = client_context(self.ca.ca_cert_path, *self.write_client(issued.certificate))
        (reply,) = await self.get("/whoami", context)
        self.assertEqual(reply.status, 403)
        self.assertIn(b"revoked", reply.body)

    async def test_unrecorded_certificate(self) -> None:
        """
        A certificate signed by our key but absent from our records is refused.
        """
        now = datetime.datetime.now(datetime.timezone.utc)
        assert self.ca.authority is not None
        certificate = self.ca.authority.issue_client(CLIENT_KEY.public_key(), "GHOST", datetime.timedelta(days=1), now)
        context = client_context(self.ca.ca_cert_path, *self.write_client(certificate))
        (reply,) = await self.get("/whoami", context)
        self.assertEqual(reply.status, 403)
        self.assertIn(b"not issued by this server", reply.body)

    async def test_old_tls_refused(self) -> None:
        """
        TLS 1.1 and older are refused.
        """
        context = client_context(self.ca.ca_cert_path)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT@SECLEVEL=0")
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            await self.get("/pki/ca.crt", context)

    async def test_tls12_cipher_policy(self) -> None:
        """
        TLS 1.2 offers forward-secret AEAD suites only: static RSA key
        exchange (AES256-GCM-SHA384), CBC with SHA-256 (AES128-SHA256) and
        CBC with SHA-1 (ECDHE-RSA-AES128-SHA) are refused; the ECDHE AES-GCM
        and ChaCha20 suites are accepted, as is TLS 1.3.
        """
        for refused in ("AES256-GCM-SHA384", "AES128-SHA256", "ECDHE-RSA-AES128-SHA", "DHE-RSA-AES128-GCM-SHA256"):
            context = client_context(self.ca.ca_cert_path)
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            context.set_ciphers(refused)
            with self.assertRaises((ssl.SSLError, ConnectionError), msg=refused):
                await self.get("/pki/ca.crt", context)
        for accepted in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"):
            context = client_context(self.ca.ca_cert_path)
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            context.set_ciphers(accepted)
            (reply,) = await self.get("/pki/ca.crt", context)
            self.assertEqual((reply.status, reply.tls_version), (200, "TLSv1.2"), accepted)
        (reply,) = await self.get("/pki/ca.crt", client_context(self.ca.ca_cert_path))
        self.assertEqual(reply.tls_version, "TLSv1.3")

    async def test_returning_device_resumes(self) -> None:
        """
        A device reconnecting resumes its TLS session (TLS 1.3 tickets, TLS 1.2
        too), and its client certificate still reaches the application.
        """
        issued = await self.ca.issue(CLIENT_KEY.public_key(), "DEVICE-42")
        paths = self.write_client(issued.certificate)

        def twice(maximum: ssl.TLSVersion) -> list[tuple[bool | None, bytes]]:
            context = client_context(self.ca.ca_cert_path, *paths)
            context.maximum_version = maximum
            session, seen = None, []
            for _ in range(2):
                with socket.create_connection(("127.0.0.1", self.port)) as raw:
                    with context.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                        tls.sendall(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                        answer = b""
                        while chunk := tls.recv(4096):
                            answer += chunk
                        seen.append((tls.session_reused, answer.rpartition(b"\r\n\r\n")[2]))
                        session = tls.session
            return seen

        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            seen = await deferToThread(twice, version)
            self.assertEqual(seen, [(False, b"DEVICE-42"), (True, b"DEVICE-42")], version)


class _TlsTransport(DummyChannel.SSL):
    """
    A TLS transport whose peer presented C{certificate}; counts the reads.
    """

    def __init__(self, certificate: x509.Certificate) -> None:
        super().__init__()
        self.certificate = X509.from_cryptography(certificate)
        self.reads = 0

    def getPeerCertificate(self) -> X509:
        self.reads += 1
        return self.certificate


class PeerCertificateTests(SynchronousTestCase):
    def setUp(self) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        authority = CertificateAuthority.create(CLIENT_KEY, "ca", "x", datetime.timedelta(days=9), now)
        self.certificate = authority.issue_client(CLIENT_KEY.public_key(), "DEVICE-42", datetime.timedelta(days=9), now)

    def connection(self) -> tuple[DummyChannel, _TlsTransport]:
        channel = DummyChannel()
        channel.transport = transport = _TlsTransport(self.certificate)
        return channel, transport

    def test_read_once_per_connection(self) -> None:
        """
        The requests of one connection share one reading of its peer
        certificate; another connection reads its own.
        """
        channel, transport = self.connection()
        for _ in range(3):
            request = MdmdRequest(cast(HTTPChannel, channel))  # a stand-in: Request only uses part of it
            self.assertEqual(peer_certificate(request), self.certificate)
        self.assertEqual(transport.reads, 1)
        other, other_transport = self.connection()
        self.assertEqual(peer_certificate(MdmdRequest(cast(HTTPChannel, other))), self.certificate)
        self.assertEqual((transport.reads, other_transport.reads), (1, 1))

    def test_no_tls(self) -> None:
        """
        A connection without TLS has no peer certificate.
        """
        self.assertIsNone(peer_certificate(MdmdRequest(cast(HTTPChannel, DummyChannel()))))


class DeviceCATests(TestCase):
    """
    With [https] device_ca_file, TLS also accepts the certificates of an operator's device PKI.
    """

    def setUp(self) -> None:
        self.pki = DevicePKI()
        self.store = memory_store_service()
        self.addCleanup(self.store.stopService)
        self.ca = started_ca(self, store=self.store, device_cas=(self.pki.certificate,))
        root = Resource()
        root.putChild(b"whoami", WhoAmI(self.store))
        self.port = serve(self, MdmdSite(root, clock=reactor, max_body=4096), self.ca.tls_options)

    async def test_device_ca_passes_tls_only(self) -> None:
        """
        A device CA's certificate completes the handshake, but what needs a
        certificate of ours (enrollment renewal) still refuses it; ours still works.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        paths = f"{directory}/cert.pem", f"{directory}/key.pem"
        with open(paths[0], "wb") as f:
            f.write(certificate_pem(self.pki.issue(CLIENT_KEY.public_key(), "DEVICE-42")))
        with open(paths[1], "wb") as f:
            f.write(private_key_pem(CLIENT_KEY))
        (reply,) = await deferToThread(fetch, self.port, "/whoami", client_context(self.ca.ca_cert_path, *paths))
        self.assertEqual(reply.status, 403)
        self.assertIn(b"not issued by this server", reply.body)
        issued = await self.ca.issue(CLIENT_KEY.public_key(), "DEVICE-42")
        with open(paths[0], "wb") as f:
            f.write(certificate_pem(issued.certificate))
        (reply,) = await deferToThread(fetch, self.port, "/whoami", client_context(self.ca.ca_cert_path, *paths))
        self.assertEqual((reply.status, reply.body), (200, b"DEVICE-42"))


class ConfiguredCiphersTests(TestCase):
    def setUp(self) -> None:
        self.store = memory_store_service()
        self.addCleanup(self.store.stopService)
        self.ca = started_ca(self, store=self.store, tls_ciphers="ECDHE+AESGCM")
        root = Resource()
        root.putChild(b"pki", pki_resource(self.ca))
        self.port = serve(self, MdmdSite(root, clock=reactor), self.ca.tls_options)

    async def test_configured_string_applies(self) -> None:
        """
        [https] ciphers reaches the listener: without CHACHA20 in it, a client
        offering only ChaCha20 is refused, one offering AES-GCM served.
        """
        context = client_context(self.ca.ca_cert_path)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers("ECDHE-RSA-CHACHA20-POLY1305")
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            await deferToThread(fetch, self.port, "/pki/ca.crt", context)
        context = client_context(self.ca.ca_cert_path)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
        (reply,) = await deferToThread(fetch, self.port, "/pki/ca.crt", context)
        self.assertEqual(reply.status, 200)
