"""
Tests for L{mdmd.notify.wns}: the WNS transport on a Clock, over a scripted
HTTPS client (no sockets: the HTTP adapter and the fake WNS have their own
tests), and its service.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mdmd.notify.jobs import OutgoingPush, PushInfo
from mdmd.notify.smpp_session import Address
from mdmd.notify.transport import Abandoned, IPushTransport, Refused, Sent
from mdmd.notify.wns import WnsSecretError, WnsSettings, WnsTransport, read_secret
from mdmd.notify.wns_http import HttpAnswer, HttpFailed
from mdmd.notify.wns_protocol import RetryPolicy, TokenFlow

TOKEN_URL = "https://login.example/accesstoken.srf"
CHANNEL = "https://db5p.notify.windows.com/w/?token=CHAN"
SETTINGS = WnsSettings(
    TokenFlow.CLASSIC, "ms-app://s-1", "/nonexistent", TOKEN_URL, concurrency=2, retry=RetryPolicy(attempts=3)
)


def job(seq: int = 1, channel: str = CHANNEL, expires_at: float = 600.0) -> OutgoingPush:
    info = PushInfo(
        device_id="D1", seq=seq, kind="notification", state="queued", session_id=None, msisdn="", segments=0,
        via=None, spool_file=None, message_ids=(None,), receipts=(None,), attempts=0, error=None, created_at=0.0,
        updated_at=0.0, expires_at=expires_at, submitted_at=None, delivered_at=None, answered_at=None,
        finished_at=None, route="wns", channel_uri=channel,
    )
    return OutgoingPush(info, Address("", 0, 0), ())


@dataclass
class Post:
    url: str
    headers: dict[str, str]
    body: bytes
    answer: Deferred[HttpAnswer]


@dataclass
class ScriptedHttp:
    """
    Token requests are answered at once with a fresh token (or what
    C{token_answer} says); notifications take the next of C{statuses}, or
    wait for the test when it runs out.
    """

    statuses: list[int | Exception] = field(default_factory=list)
    token_answer: Callable[[int], HttpAnswer | Exception] | None = None
    posts: list[Post] = field(default_factory=list)
    tokens: int = 0
    hold_tokens: bool = False

    def post(self, url: str, headers: Any, body: bytes) -> Deferred[HttpAnswer]:
        answer: Deferred[HttpAnswer] = Deferred()
        self.posts.append(Post(url, dict(headers), body, answer))
        if url == TOKEN_URL:
            if self.hold_tokens:
                return answer
            self.tokens += 1
            given = (
                self.token_answer(self.tokens)
                if self.token_answer
                else HttpAnswer(200, {}, json.dumps({"access_token": f"T{self.tokens}", "expires_in": 3600}).encode())
            )
        elif self.statuses:
            status = self.statuses.pop(0)
            given = status if isinstance(status, Exception) else reply(status)
        else:
            return answer
        if isinstance(given, Exception):
            answer.errback(given)
        else:
            answer.callback(given)
        return answer

    def notifications(self) -> list[Post]:
        return [p for p in self.posts if p.url != TOKEN_URL]


def reply(status: int, **headers: str) -> HttpAnswer:
    if status == 200 and not headers:
        headers = {"x-wns-msg-id": "M1", "x-wns-status": "received", "x-wns-deviceconnectionstatus": "connected"}
    return HttpAnswer(status, headers, b"")


class Rig:
    def __init__(self, *statuses: int | Exception, settings: WnsSettings = SETTINGS) -> None:
        self.clock = Clock()
        self.http = ScriptedHttp(list(statuses))
        self.gone: list[tuple[str, str]] = []
        self.closed = 0

        def channel_gone(device_id: str, uri: str) -> Deferred[bool]:
            self.gone.append((device_id, uri))
            return succeed(True)

        def close() -> Deferred[None]:
            self.closed += 1
            return succeed(None)

        self.transport = WnsTransport(
            settings, self.http, self.clock, channel_gone=channel_gone, secret=lambda: "s3cret", close=close
        )
        self.transport.start()

    def send(self, *jobs: OutgoingPush) -> list[Any]:
        outcomes: list[Any] = []
        for each in jobs:
            self.transport.send(each).addBoth(outcomes.append)
        return outcomes


class TransportTests(SynchronousTestCase):
    def test_interface(self) -> None:
        """
        It is a verified push transport named wns, run by a service named wns.
        """
        transport = Rig().transport
        self.assertTrue(verifyObject(IPushTransport, transport))
        self.assertEqual((transport.via, transport.service.name), ("wns", "wns"))

    def test_accepted(self) -> None:
        """
        One token request, then the raw notification to the channel with the
        bearer token; the job is sent with WNS's message id and what it said.
        """
        rig = Rig(200)
        (outcome,) = rig.send(job())
        self.assertEqual(
            outcome,
            Sent(("M1",), (None,), detail="accepted by WNS (received, connected)",
                 carrier=(("status", "received"), ("device", "connected"))),
        )
        token, note = rig.http.posts
        self.assertEqual(token.headers["Content-Type"], "application/x-www-form-urlencoded")
        self.assertIn(b"client_secret=s3cret", token.body)
        self.assertEqual((note.url, note.body), (CHANNEL, b"1"))
        self.assertEqual(
            (note.headers["Authorization"], note.headers["X-WNS-Type"], note.headers["X-WNS-TTL"]),
            ("Bearer T1", "wns/raw", "600"),
        )

    def test_one_token_for_many(self) -> None:
        """
        Sends waiting for a token share one request; later sends use the cached token.
        """
        rig = Rig(200, 200, 200)
        rig.http.hold_tokens = True
        outcomes = rig.send(job(1), job(2))
        (request,) = rig.http.posts
        request.answer.callback(HttpAnswer(200, {}, b'{"access_token":"T","expires_in":3600}'))
        rig.http.hold_tokens = False
        outcomes += rig.send(job(3))
        self.assertEqual([type(o) for o in outcomes], [Sent, Sent, Sent])
        self.assertEqual(len([p for p in rig.http.posts if p.url == TOKEN_URL]), 1)
        self.assertEqual(rig.transport.describe()["token"]["cache_hits"], 1)

    def test_notify_url(self) -> None:
        """
        With a notify URL, the notification goes there, with the channel's path and query.
        """
        from dataclasses import replace

        rig = Rig(200, settings=replace(SETTINGS, notify_url="https://127.0.0.1:9443"))
        rig.send(job())
        self.assertEqual(rig.http.notifications()[0].url, "https://127.0.0.1:9443/w/?token=CHAN")

    def test_unauthorized_renews_the_token(self) -> None:
        """
        A 401 drops the token, gets a new one and posts again, once.
        """
        rig = Rig(401, 200)
        (outcome,) = rig.send(job())
        self.assertIsInstance(outcome, Sent)
        self.assertEqual([p.headers["Authorization"] for p in rig.http.notifications()], ["Bearer T1", "Bearer T2"])
        self.assertEqual(rig.transport.describe()["token"]["renewed_after_refusal"], 1)
        rig = Rig(401, 401)
        (outcome,) = rig.send(job())
        self.assertEqual((type(outcome), outcome.retry), (Refused, True))

    def test_token_refused(self) -> None:
        """
        A token endpoint that refuses leaves the job refused for now; the
        status shows the refusal.
        """
        rig = Rig()
        rig.http.token_answer = lambda n: HttpAnswer(400, {}, b'{"error":"invalid_client"}')
        (outcome,) = rig.send(job())
        self.assertEqual(outcome, Refused("no WNS access token: HTTP 400 invalid_client", retry=True))
        described = rig.transport.describe()
        self.assertEqual((described["state"], described["token"]["last_error"]), ("token refused", "HTTP 400 invalid_client"))
        rig = Rig()
        rig.http.token_answer = lambda n: HttpFailed("login.example: connection refused")
        (outcome,) = rig.send(job())
        self.assertIn("connection refused", outcome.error)

    def test_channel_gone(self) -> None:
        """
        A 410 (or 404) marks the channel gone before the job is refused for good, rerouted.
        """
        for status in (410, 404):
            rig = Rig(status)
            (outcome,) = rig.send(job())
            self.assertEqual((outcome.retry, outcome.reroute), (False, True))
            self.assertIn(f"WNS answered {status}", outcome.error)
            self.assertEqual(rig.gone, [("D1", CHANNEL)])

    def test_throttled_then_accepted(self) -> None:
        """
        406 and 429 back off (1 s, then 2 s) and post again.
        """
        rig = Rig(406, 429, 200)
        outcomes = rig.send(job())
        self.assertEqual((len(rig.http.notifications()), outcomes), (1, []))
        rig.clock.advance(1.0)
        self.assertEqual(len(rig.http.notifications()), 2)
        rig.clock.advance(1.9)
        self.assertEqual(outcomes, [])
        rig.clock.advance(0.1)
        self.assertIsInstance(outcomes[0], Sent)
        self.assertEqual(rig.transport.describe()["answers"], {"throttled": 2, "accepted": 1})

    def test_unavailable_exhausts_the_attempts(self) -> None:
        """
        No answer and 5xx are retried until the policy's attempts are used: then refused for now.
        """
        rig = Rig(HttpFailed("db5p: connection lost"), 503, 500)
        outcomes = rig.send(job())
        rig.clock.pump([1.0, 2.0])
        (outcome,) = outcomes
        self.assertEqual((outcome.error, outcome.retry), ("WNS answered 500", True))
        self.assertEqual(len(rig.http.notifications()), 3)

    def test_for_good(self) -> None:
        """
        413 and other 4xx refuse the job for good.
        """
        for status in (413, 400, 403):
            (outcome,) = Rig(status).send(job())
            self.assertEqual((outcome.retry, outcome.reroute), (False, False), status)

    def test_not_https(self) -> None:
        """
        A channel URI that is not HTTPS is refused for good, and nothing is posted.
        """
        rig = Rig(200)
        (outcome,) = rig.send(job(channel="http://db5p.notify.windows.com/w/?token=x"))
        self.assertEqual(outcome.retry, False)
        self.assertEqual(rig.http.posts, [])

    def test_concurrency(self) -> None:
        """
        At most C{concurrency} notifications are in flight; the others wait their turn.
        """
        rig = Rig()
        outcomes = rig.send(job(1), job(2), job(3))
        self.assertEqual(len(rig.http.notifications()), 2)
        rig.http.notifications()[0].answer.callback(reply(200))
        self.assertEqual((len(rig.http.notifications()), len(outcomes)), (3, 1))
        self.assertEqual(rig.transport.describe()["in_flight"], 2)

    def test_stop_abandons(self) -> None:
        """
        Stopping abandons the sends under way (their jobs stay queued) and closes the connections.
        """
        rig = Rig(406)
        outcomes = rig.send(job(1), job(2))
        rig.transport.stop()
        self.assertEqual(outcomes, [Abandoned(), Abandoned()])
        self.assertEqual((rig.closed, rig.clock.getDelayedCalls()), (1, []))

    def test_cancelled(self) -> None:
        """
        A send the notifier cancels (its job expired) fails with CancelledError.
        """
        rig = Rig()
        sent = rig.transport.send(job())
        sent.cancel()
        self.failureResultOf(sent, CancelledError)
        self.assertEqual(rig.transport.describe()["in_flight"], 0)


class SecretTests(SynchronousTestCase):
    def write(self, text: str, mode: int) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def test_read(self) -> None:
        """
        The first line of a file only its owner may read.
        """
        self.assertEqual(read_secret(self.write("s3cret\nignored\n", 0o600)), "s3cret")
        self.assertEqual(read_secret(self.write("s3cret", 0o400)), "s3cret")

    def test_refused(self) -> None:
        """
        A file others may read, an empty one, or none at all is refused, saying why.
        """
        for path, reason in [
            (self.write("s3cret", 0o640), "is mode 0640"),
            (self.write("s3cret", 0o604), "is mode 0604"),
            (self.write("\n", 0o600), "is empty"),
            ("/nonexistent/secret", "cannot read"),
        ]:
            with self.assertRaises(WnsSecretError) as caught:
                read_secret(path)
            self.assertIn(reason, str(caught.exception))


class ServiceTests(SynchronousTestCase):
    def test_start_and_stop(self) -> None:
        """
        Starting reads the secret and, once running, fetches a first token;
        stopping closes the connections. A secret that cannot be read stops the start.
        """
        rig = Rig()
        service = rig.transport.service
        service.startService()
        self.assertEqual(rig.http.posts, [])
        rig.clock.advance(0)
        self.assertEqual(rig.transport.describe()["state"], "ready")
        self.successResultOf(service.stopService())
        self.assertEqual(rig.closed, 1)
        broken = WnsTransport(SETTINGS, ScriptedHttp(), Clock())
        with self.assertRaises(WnsSecretError):
            broken.service.startService()
        self.assertFalse(broken.service.running)

    def test_first_token_refused(self) -> None:
        """
        A refused first token is only logged (and shown).
        """
        rig = Rig()
        rig.http.token_answer = lambda n: fail_answer()
        rig.transport.service.startService()
        rig.clock.advance(0)
        self.assertEqual(rig.transport.describe()["state"], "token refused")
        self.flushLoggedErrors()


def fail_answer() -> HttpAnswer:
    return HttpAnswer(400, {}, b'{"error":"invalid_client"}')



