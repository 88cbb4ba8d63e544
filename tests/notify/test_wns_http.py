"""
Tests for L{mdmd.notify.wns_http}: Twisted's HTTPS client against the fake
WNS of L{mdmd.testing.wns} over loopback: verified TLS, kept-alive
connections, time-outs, and tunnels through a CONNECT proxy.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.trial.unittest import TestCase
from twisted.web.client import BrowserLikePolicyForHTTPS

from mdmd.notify.wns_http import AgentClient, HttpFailed
from mdmd.pki.ca import certificate_pem
from mdmd.testing.wns import FakeWns

from .proxy import ConnectProxy

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
GRANT = b"grant_type=client_credentials&client_id=ms-app%3A%2F%2Fs-1-15-2-1&client_secret=secret&scope=notify.windows.com"


class AgentClientTests(TestCase):
    def setUp(self) -> None:
        self.wns = FakeWns(reactor)
        self.wns.start()
        self.addCleanup(self.wns.stop)

    def client(self, trusted: bytes | None = None, **options: Any) -> AgentClient:
        trust = trustRootFromCertificates([Certificate.loadPEM(trusted or self.wns.ca_pem)])
        client = AgentClient(reactor, tls=BrowserLikePolicyForHTTPS(trustRoot=trust), **options)
        self.addCleanup(client.close)
        return client

    async def test_post(self) -> None:
        """
        A POST is answered with its status, lower-cased headers and body;
        two in a row share one kept-alive connection.
        """
        client = self.client()
        first = await client.post(self.wns.token_url, FORM, GRANT)
        self.assertEqual((first.status, first.headers["content-type"]), (200, "application/json"))
        self.assertIn(b'"access_token"', first.body)
        second = await client.post(self.wns.token_url, FORM, GRANT)
        self.assertEqual(second.status, 200)
        self.assertEqual(len(client.pool._connections), 1)

    async def test_endpoint_made_once(self) -> None:
        """
        The TLS connection creator (and endpoint) of a host is made once, not per request.
        """
        trust = trustRootFromCertificates([Certificate.loadPEM(self.wns.ca_pem)])
        policy = BrowserLikePolicyForHTTPS(trustRoot=trust)
        asked: list[tuple[bytes, int]] = []
        original = policy.creatorForNetloc

        def counted(hostname: bytes, port: int) -> Any:
            asked.append((hostname, port))
            return original(hostname, port)

        policy.creatorForNetloc = counted  # type: ignore[method-assign]  # counting the calls under test
        client = AgentClient(reactor, tls=policy, persistent=False)
        self.addCleanup(client.close)
        for _ in range(3):
            self.assertEqual((await client.post(self.wns.token_url, FORM, GRANT)).status, 200)
        self.assertEqual(len(asked), 1)

    async def test_untrusted_server(self) -> None:
        """
        A server whose certificate does not chain to the trust roots gives no
        answer: the request fails with HttpFailed.
        """
        other = FakeWns(reactor)
        client = self.client(trusted=certificate_pem(other._ca.certificate))
        with self.assertRaises(HttpFailed) as caught:
            await client.post(self.wns.token_url, FORM, GRANT)
        self.assertIn("127.0.0.1", str(caught.exception))

    async def test_time_out(self) -> None:
        """
        A server that never answers: the request fails after the time-out.
        """
        from twisted.internet.address import IPv4Address
        from twisted.internet.protocol import Protocol, ServerFactory

        factory: ServerFactory[Protocol] = ServerFactory()
        factory.protocol = Protocol
        # (Twisted's stubs want a protocol class that declares its factory; any protocol listens)
        silent = reactor.listenTCP(0, cast(Any, factory), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        address = silent.getHost()
        assert isinstance(address, IPv4Address)
        client = self.client(timeout=0.3)
        with self.assertRaises(HttpFailed) as caught:
            await client.post(f"https://127.0.0.1:{address.port}/", {}, b"")
        self.assertIn("no answer within 0.3 s", str(caught.exception))

    async def test_cancelled(self) -> None:
        """
        Cancelling a request under way fails it with CancelledError, not HttpFailed.
        """
        from twisted.internet.defer import CancelledError

        client = self.client()
        posted = client.post(self.wns.token_url, FORM, GRANT)
        posted.cancel()
        with self.assertRaises(CancelledError):
            await posted

    async def test_through_a_proxy(self) -> None:
        """
        Through a proxy, the client asks for a CONNECT tunnel to the server
        and speaks TLS inside it, verified as usual; a proxy that refuses
        gives no answer.
        """
        proxy = ConnectProxy(reactor)
        self.addCleanup(proxy.port.stopListening)
        client = self.client(proxy=proxy.url)
        answer = await client.post(self.wns.token_url, FORM, GRANT)
        self.assertEqual(answer.status, 200)
        self.assertEqual(proxy.requests, [self.wns.url.removeprefix("https://")])
        await client.close()
        proxy.refuse = True
        refused = self.client(proxy=proxy.url)
        with self.assertRaises(HttpFailed) as caught:
            await refused.post(self.wns.token_url, FORM, GRANT)
        self.assertIn("403", str(caught.exception))

    def test_proxy_url(self) -> None:
        """
        Only an http:// proxy is taken.
        """
        with self.assertRaises(ValueError):
            AgentClient(reactor, proxy="https://proxy:3128")
