"""
Tests for L{mdmd.testing.wns}: the fake WNS answers as Microsoft documents
WNS, over real HTTPS on loopback, trusted through its throwaway CA.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from twisted.internet import reactor
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.trial.unittest import TestCase
from twisted.web.client import BrowserLikePolicyForHTTPS

from mdmd.notify.wns_http import AgentClient, HttpAnswer
from mdmd.testing.wns import CHANNEL_HOST, ENTRA_SCOPE, MAX_RAW, FakeWns, Notification

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class FakeWnsTests(TestCase):
    def setUp(self) -> None:
        self.wns = FakeWns(reactor, clients={"ms-app://s-1": "secret", "app-id": "entra-secret"})
        self.wns.start()
        self.addCleanup(self.wns.stop)
        trust = trustRootFromCertificates([Certificate.loadPEM(self.wns.ca_pem)])
        self.http = AgentClient(reactor, tls=BrowserLikePolicyForHTTPS(trustRoot=trust))
        self.addCleanup(self.http.close)

    async def token(self, url: str = "", **form: str) -> HttpAnswer:
        fields = {"grant_type": "client_credentials", "client_id": "ms-app://s-1", "client_secret": "secret",
                  "scope": "notify.windows.com", **form}
        return await self.http.post(url or self.wns.token_url, FORM, urlencode(fields).encode())

    async def notify(
        self, uri: str, token: str | None, body: bytes = b"x", headers: dict[str, str] | None = None
    ) -> HttpAnswer:
        sent = {"X-WNS-Type": "wns/raw", "Content-Type": "application/octet-stream", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        path = uri.split(CHANNEL_HOST, 1)[1]
        return await self.http.post(self.wns.url + path, sent, body)

    async def bearer(self) -> str:
        return json.loads((await self.token()).body)["access_token"]

    async def test_classic_token(self) -> None:
        """
        The classic endpoint grants a bearer token for a day to a known
        client; a wrong secret, scope or grant gets 400 with its OAuth error.
        """
        answer = await self.token()
        value = json.loads(answer.body)
        self.assertEqual((answer.status, value["token_type"], value["expires_in"]), (200, "bearer", 86400))
        for form, error in [
            ({"client_secret": "wrong"}, "invalid_client"),
            ({"scope": ENTRA_SCOPE}, "invalid_scope"),
            ({"grant_type": "password"}, "unsupported_grant_type"),
        ]:
            answer = await self.token(**form)
            self.assertEqual((answer.status, json.loads(answer.body)["error"]), (400, error))
        self.assertEqual([r.granted for r in self.wns.token_requests], [True, False, False, False])

    async def test_entra_token(self) -> None:
        """
        The tenant's v2.0 endpoint grants a token for the wns.windows.com scope.
        """
        answer = await self.token(self.wns.entra_token_url, client_id="app-id", client_secret="entra-secret", scope=ENTRA_SCOPE)
        self.assertEqual((answer.status, json.loads(answer.body)["token_type"]), (200, "Bearer"))
        self.wns.refuse_tokens("unauthorized_client")
        answer = await self.token(self.wns.entra_token_url, client_id="app-id", client_secret="entra-secret", scope=ENTRA_SCOPE)
        self.assertEqual(json.loads(answer.body)["error"], "unauthorized_client")

    async def test_notification(self) -> None:
        """
        A raw notification to a channel it handed out is answered 200 with
        a message id, received, and (when asked) connected; it is kept and observed.
        """
        uri = self.wns.register("Contoso.Push_8wekyb3d8bbwe")
        self.assertTrue(uri.startswith(f"https://{CHANNEL_HOST}/w/?token="))
        seen: list[Notification] = []
        self.wns.observers.append(seen.append)
        token = await self.bearer()
        answer = await self.notify(uri, token, b"1A2B", {"X-WNS-RequestForStatus": "true"})
        self.assertEqual(
            (answer.status, answer.headers["x-wns-status"], answer.headers["x-wns-deviceconnectionstatus"]),
            (200, "received", "connected"),
        )
        (kept,) = self.wns.notifications
        self.assertEqual((kept.body, kept.token, kept.msg_id), (b"1A2B", token, answer.headers["x-wns-msg-id"]))
        self.assertEqual(seen, [kept])

    async def test_refusals(self) -> None:
        """
        No or a revoked token: 401; not a raw notification: 400; too large:
        413; unknown channel: 404; expired channel: 410.
        """
        uri = self.wns.register("pfn")
        token = await self.bearer()
        self.assertEqual((await self.notify(uri, None)).status, 401)
        self.assertEqual((await self.notify(uri, token, headers={"X-WNS-Type": "wns/toast"})).status, 400)
        self.assertEqual((await self.notify(uri, token, headers={"Content-Type": "text/xml"})).status, 400)
        self.assertEqual((await self.notify(uri, token, b"x" * (MAX_RAW + 1))).status, 413)
        self.assertEqual((await self.notify(uri.replace("token=", "token=zz"), token)).status, 404)
        self.wns.expire_channel(uri)
        self.assertEqual((await self.notify(uri, token)).status, 410)
        self.wns.revoke_tokens()
        answer = await self.notify(uri, token)
        self.assertEqual(answer.status, 401)
        self.assertIn("Bearer", answer.headers["www-authenticate"])
        other = self.wns.register("pfn")
        self.wns.forget_channel(other)
        self.assertEqual((await self.notify(other, await self.bearer())).status, 404)
        self.assertEqual(self.wns.notifications, [])

    async def test_trouble(self) -> None:
        """
        Throttling answers the next notifications 406 or 429 (with
        Retry-After when asked), failures 5xx; then it accepts again.
        """
        uri = self.wns.register("pfn")
        token = await self.bearer()
        self.wns.throttle(2, 406)
        self.wns.throttle(1, 429, retry_after=7)
        self.wns.fail(1, 503)
        statuses = [(await self.notify(uri, token)) for _ in range(5)]
        self.assertEqual([a.status for a in statuses], [406, 406, 429, 503, 200])
        self.assertEqual(statuses[2].headers["retry-after"], "7")
        self.assertEqual(self.wns.answered, [406, 406, 429, 503, 200])
