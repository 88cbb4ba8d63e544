"""
Tests for L{mdmd.dm.resource}: the DM endpoint over real TLS (the standard
library's ssl and http.client as the device), with and without client
certificates, from mdmd's CA and from an operator's device CA.
"""

from __future__ import annotations

import functools
import os
import ssl
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from mdmd.dm.checkin import DMSettings
from mdmd.dm.resource import ManagementResource
from mdmd.pki.ca import certificate_pem, generate_rsa_key, private_key_pem
from mdmd.site import MdmdSite
from mdmd.syncml.codec import XML_CODEC
from mdmd.syncml.model import Status
from mdmd.testing.devices import add_device
from mdmd.testing.store import memory_store_service

from ..httpclient import Reply, client_context, fetch
from ..narrowing import narrowed
from ..pki.helpers import DevicePKI, started_ca
from .helpers import DEVICE_ID, Client


@functools.cache
def _material() -> tuple[DevicePKI, Any]:
    """
    An operator's device PKI and a device key (made once: keys are slow).
    """
    return DevicePKI(), generate_rsa_key(2048)


class TransportSecurityTests(TestCase):
    """
    The HTTPS listener trusts mdmd's CA and a device CA; the endpoint decides per device.
    """

    def setUp(self) -> Any:
        self.pki, self.key = _material()
        self.store = memory_store_service()
        self.addCleanup(self.store.stopService)
        self.ca = started_ca(self, store=self.store, device_cas=(self.pki.certificate,))
        assert self.store.store is not None
        self.store.store.run(add_device, DEVICE_ID)
        settings = DMSettings(device_cas=(self.pki.certificate,))
        root = Resource()
        root.putChild(b"dm", ManagementResource(self.store, reactor, settings))
        site = MdmdSite(root, clock=reactor, max_body=65536)
        d = SSL4ServerEndpoint(reactor, 0, self.ca.tls_options, interface="127.0.0.1").listen(site)

        def listening(port: Any) -> None:
            self.port = port.getHost().port
            self.addCleanup(port.stopListening)

        return d.addCallback(listening)

    def set(self, **values: Any) -> None:
        def unit(root: Any) -> None:
            for name, value in values.items():
                setattr(root["devices"][DEVICE_ID], name, value)
            root["devices"][DEVICE_ID].dm_client_nonce = b"\x01" * 16
            root["sessions"].pop(DEVICE_ID, None)

        assert self.store.store is not None
        self.store.store.run(unit)

    def context(self, certificate: Any = None) -> ssl.SSLContext:
        if certificate is None:
            return client_context(self.ca.ca_cert_path)
        directory = self.mktemp()
        os.makedirs(directory)
        with open(f"{directory}/cert.pem", "wb") as f:
            f.write(certificate_pem(certificate))
        with open(f"{directory}/key.pem", "wb") as f:
            f.write(private_key_pem(self.key))
        return client_context(self.ca.ca_cert_path, f"{directory}/cert.pem", f"{directory}/key.pem")

    async def post(self, context: ssl.SSLContext) -> tuple[int, str]:
        """
        Package 1 over TLS; the HTTP status and our SyncHdr's status (or the refusal's text).
        """
        body = XML_CODEC.encode(Client(session_id="A").package1())
        headers = {"Content-Type": XML_CODEC.content_type}
        (reply,) = await deferToThread(fetch, self.port, "/dm", context, "POST", body, headers)
        return reply.status, self.answer(reply)

    @staticmethod
    def answer(reply: Reply) -> str:
        if reply.status != 200:
            return reply.body.decode().strip()
        return str(narrowed(Status, XML_CODEC.decode(reply.body).body[0]).data)

    async def test_classic_device_without_certificate(self) -> None:
        """
        A classic device authenticates with its DM credentials over
        server-authenticated TLS; required by its own setting, a certificate is missed.
        """
        self.set(kind="omadm")
        self.assertEqual(await self.post(self.context()), (200, "212"))
        self.set(client_certificate="required")
        self.assertEqual(await self.post(self.context()), (403, "a client certificate is required"))

    async def test_windows_device_keeps_mutual_tls(self) -> None:
        """
        A Windows device without a certificate is refused (the kind's default);
        with one of ours, issued to it, it is served.
        """
        self.assertEqual(await self.post(self.context()), (403, "a client certificate is required"))
        issued = await self.ca.issue(self.key.public_key(), DEVICE_ID)
        self.set()
        self.assertEqual(await self.post(self.context(issued.certificate)), (200, "212"))

    async def test_device_ca_certificate(self) -> None:
        """
        A device CA's certificate passes TLS; the endpoint honours it for the
        classic device it names, and for no other device or kind.
        """
        self.set(kind="omadm", client_certificate="required")
        named = self.pki.issue(self.key.public_key(), "modem", uris=(DEVICE_ID,))
        self.assertEqual(await self.post(self.context(named)), (200, "212"))
        self.set()
        stranger = self.pki.issue(self.key.public_key(), "OTHER-DEVICE")
        self.assertEqual(
            await self.post(self.context(stranger)),
            (403, f"the certificate of OTHER-DEVICE was presented for device {DEVICE_ID}"),
        )
        self.set(kind="windows")
        status, text = await self.post(self.context(named))
        self.assertEqual(status, 403)
        self.assertIn("honoured for classic OMA DM devices only", text)

    async def test_untrusted_ca_fails_the_handshake(self) -> None:
        """
        A certificate of a CA that is neither ours nor a configured device CA fails TLS itself.
        """
        foreign = DevicePKI("Someone else's CA")
        certificate = foreign.issue(self.key.public_key(), DEVICE_ID)
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            await self.post(self.context(certificate))
