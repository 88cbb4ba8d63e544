"""
Tests for L{mdmd.notify.wns_protocol}: WNS without I/O (token flows and
cache, the notification, the answer table, what to do next).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from twisted.trial.unittest import SynchronousTestCase

from mdmd.notify.wns_protocol import (
    ANSWERS,
    FATES,
    AccessToken,
    Answer,
    ClientCredentials,
    Finish,
    Progress,
    RenewToken,
    RetryPolicy,
    Step,
    TokenCache,
    TokenFlow,
    TokenRefused,
    Wait,
    next_step,
    notification,
    parse_token_answer,
    read_answer,
    target_url,
    token_url_for,
)

SID = "ms-app://s-1-15-2-2411381248-444863693-3819932088-4077691928-1194867744-112853457-373702379"


class TokenFlowTests(SynchronousTestCase):
    def test_classic_request(self) -> None:
        """
        The classic flow form-posts the package SID, the secret and scope
        notify.windows.com, URL-encoded, to login.live.com.
        """
        credentials = ClientCredentials(TokenFlow.CLASSIC, SID, "s3cr+t/=", token_url_for(TokenFlow.CLASSIC))
        self.assertEqual(credentials.token_url, "https://login.live.com/accesstoken.srf")
        body = credentials.request_body()
        self.assertIn(b"client_secret=s3cr%2Bt%2F%3D", body)
        self.assertEqual(
            parse_qs(body.decode()),
            {
                "grant_type": ["client_credentials"],
                "client_id": [SID],
                "client_secret": ["s3cr+t/="],
                "scope": ["notify.windows.com"],
            },
        )
        self.assertNotIn("s3cr", repr(credentials))

    def test_entra_request(self) -> None:
        """
        The Entra ID flow asks the tenant's v2.0 endpoint for https://wns.windows.com/.default.
        """
        url = token_url_for(TokenFlow.ENTRA, "contoso-tenant")
        self.assertEqual(url, "https://login.microsoftonline.com/contoso-tenant/oauth2/v2.0/token")
        credentials = ClientCredentials(TokenFlow.ENTRA, "app-id", "secret", url)
        self.assertEqual(parse_qs(credentials.request_body().decode())["scope"], ["https://wns.windows.com/.default"])

    def test_configured_url_wins(self) -> None:
        """
        A configured token URL replaces the flow's.
        """
        self.assertEqual(token_url_for(TokenFlow.ENTRA, "t", "https://private/token"), "https://private/token")

    def test_token_answer(self) -> None:
        """
        A 200 with a bearer token lasts its expires_in (either case of
        "bearer"); without expires_in, an hour.
        """
        body = json.dumps({"access_token": "tok", "token_type": "bearer", "expires_in": 86400}).encode()
        self.assertEqual(parse_token_answer(200, body, 100.0), AccessToken("tok", 100.0, 86500.0))
        body = json.dumps({"access_token": "tok", "token_type": "Bearer"}).encode()
        self.assertEqual(parse_token_answer(200, body, 100.0).expires_at, 3700.0)

    def test_token_refusals(self) -> None:
        """
        An OAuth error says its error and description; a 200 without a token or
        not JSON is a refusal too.
        """
        cases = [
            (400, b'{"error":"invalid_client","error_description":"bad secret"}', "HTTP 400 invalid_client: bad secret"),
            (503, b"<html>", "HTTP 503 no OAuth error"),
            (200, b'{"token_type":"bearer"}', "without a bearer access_token"),
            (200, b'{"access_token":"x","token_type":"mac"}', "without a bearer access_token"),
        ]
        for status, body, message in cases:
            with self.assertRaises(TokenRefused) as caught:
                parse_token_answer(status, body, 0.0)
            self.assertIn(message, str(caught.exception))


class TokenCacheTests(SynchronousTestCase):
    def test_margin(self) -> None:
        """
        A token is used until a minute before it expires (half its life for a short one).
        """
        cache = TokenCache()
        self.assertIsNone(cache.current(0.0))
        token = AccessToken("t", 0.0, 3600.0)
        cache.got(token)
        self.assertIs(cache.current(3539.0), token)
        self.assertIsNone(cache.current(3540.0))
        cache.got(AccessToken("short", 0.0, 60.0))
        self.assertIsNone(cache.current(30.0))
        self.assertEqual((cache.obtained, cache.hits), (2, 1))

    def test_refused_token(self) -> None:
        """
        A token WNS refused is dropped, unless another replaced it already;
        the next one counts as renewed after a refusal.
        """
        cache = TokenCache()
        old, new = AccessToken("old", 0.0, 3600.0), AccessToken("new", 1.0, 3601.0)
        cache.got(old)
        cache.refused(old)
        self.assertIsNone(cache.current(2.0))
        cache.got(new)
        cache.refused(old)
        self.assertIs(cache.current(2.0), new)
        self.assertEqual(cache.renewed_after_refusal, 1)

    def test_describe(self) -> None:
        """
        The state says whether a token is valid, was refused, or never came.
        """
        cache = TokenCache()
        self.assertEqual(cache.describe(0.0)["state"], "none")
        cache.failed("HTTP 400 invalid_client", 5.0)
        self.assertEqual(
            {k: cache.describe(6.0)[k] for k in ("state", "last_error", "last_error_at")},
            {"state": "refused", "last_error": "HTTP 400 invalid_client", "last_error_at": 5.0},
        )
        cache.got(AccessToken("t", 10.0, 100.0))
        self.assertEqual((cache.describe(50.0)["state"], cache.describe(50.0)["valid_until"]), ("valid", 100.0))
        self.assertEqual(cache.describe(200.0)["state"], "expired")


class NotificationTests(SynchronousTestCase):
    def test_headers(self) -> None:
        """
        A raw notification: bearer token, wns/raw, octet-stream, cached for
        the job's remaining time (whole seconds, at least 1), status asked for.
        """
        headers = notification(AccessToken("tok", 0.0, 1.0), 599.7)
        self.assertEqual(
            headers,
            {
                "Authorization": "Bearer tok",
                "X-WNS-Type": "wns/raw",
                "Content-Type": "application/octet-stream",
                "X-WNS-Cache-Policy": "cache",
                "X-WNS-TTL": "599",
                "X-WNS-RequestForStatus": "true",
            },
        )
        self.assertEqual(notification(AccessToken("tok", 0.0, 1.0), 0.2)["X-WNS-TTL"], "1")

    def test_target_url(self) -> None:
        """
        The channel URI itself, or its path and query on the configured origin.
        """
        channel = "https://db5p.notify.windows.com/w/?token=AwYAAAD%2b"
        self.assertEqual(target_url(channel), channel)
        self.assertEqual(target_url(channel, "https://127.0.0.1:8443"), "https://127.0.0.1:8443/w/?token=AwYAAAD%2b")
        self.assertEqual(target_url(channel, "https://relay/wns/"), "https://relay/wns/w/?token=AwYAAAD%2b")
        with self.assertRaises(ValueError):
            target_url("http://db5p.notify.windows.com/w/?token=x")


class AnswerTests(SynchronousTestCase):
    def test_documented_codes(self) -> None:
        """
        Each documented status has its answer; other 4xx are refusals, other 5xx unavailability.
        """
        expected = {
            200: Answer.ACCEPTED, 400: Answer.REFUSED, 401: Answer.UNAUTHORIZED, 403: Answer.REFUSED,
            404: Answer.GONE, 405: Answer.REFUSED, 406: Answer.THROTTLED, 410: Answer.GONE,
            413: Answer.TOO_LARGE, 429: Answer.THROTTLED, 500: Answer.UNAVAILABLE, 503: Answer.UNAVAILABLE,
        }
        self.assertEqual(dict(ANSWERS), expected)
        for status, answer in {**expected, 418: Answer.REFUSED, 502: Answer.UNAVAILABLE}.items():
            self.assertEqual(read_answer(status, {}).answer, answer, status)
        self.assertEqual(set(FATES), set(Answer))

    def test_accepted_headers(self) -> None:
        """
        A 200 keeps the message id, the notification status and the device's connection status.
        """
        answer = read_answer(
            200,
            {"x-wns-msg-id": "1ACE", "x-wns-status": "received", "x-wns-deviceconnectionstatus": "tempdisconnected"},
        )
        self.assertEqual((answer.answer, answer.msg_id), (Answer.ACCEPTED, "1ACE"))
        self.assertEqual(answer.carrier, (("status", "received"), ("device", "tempdisconnected")))
        self.assertEqual(answer.describe(), "WNS answered 200 (received, tempdisconnected)")

    def test_notification_status(self) -> None:
        """
        A 200 whose X-WNS-Status is dropped or channelthrottled is not an acceptance.
        """
        self.assertEqual(read_answer(200, {"x-wns-status": "dropped"}).answer, Answer.DROPPED)
        self.assertEqual(read_answer(200, {"x-wns-status": "channelthrottled"}).answer, Answer.THROTTLED)

    def test_no_answer(self) -> None:
        """
        No answer (connection, TLS, time-out) is unavailability, with its reason.
        """
        answer = read_answer(None, {}, "connection refused")
        self.assertEqual((answer.answer, answer.describe()), (Answer.UNAVAILABLE, "no answer from WNS (connection refused)"))

    def test_retry_after(self) -> None:
        """
        Retry-After in seconds is read; a date form is ignored.
        """
        self.assertEqual(read_answer(429, {"retry-after": "30"}).retry_after, 30.0)
        self.assertIsNone(read_answer(429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}).retry_after)


class NextStepTests(SynchronousTestCase):
    policy = RetryPolicy(attempts=3, initial_delay=1.0, max_delay=3.0)

    def step(
        self, status: int, progress: Progress, now: float = 0.0, expires: float = 600.0, headers: dict[str, str] | None = None
    ) -> tuple[Step, Progress]:
        return next_step(read_answer(status, headers or {}), progress, self.policy, now, expires)

    def test_token_renewed_once(self) -> None:
        """
        A 401 renews the token once per send; a second one finishes it (refused for now).
        """
        step, progress = self.step(401, Progress(posts=1))
        self.assertIsInstance(step, RenewToken)
        step, _ = self.step(401, Progress(posts=2, token_renewed=True))
        self.assertIsInstance(step, Finish)
        self.assertEqual(FATES[Answer.UNAUTHORIZED].retry, True)

    def test_back_off(self) -> None:
        """
        Throttling and unavailability wait 1, 2, then at most max_delay seconds,
        or what Retry-After asks if longer, while attempts remain.
        """
        step, progress = self.step(406, Progress(posts=1))
        self.assertEqual(step, Wait(1.0))
        step, progress = self.step(503, replace_posts(progress, 2))
        self.assertEqual(step, Wait(2.0))
        step, _ = self.step(429, Progress(posts=2, waits=5), headers={"retry-after": "10"})
        self.assertEqual(step, Wait(10.0))
        step, _ = self.step(429, Progress(posts=2, waits=5))
        self.assertEqual(step, Wait(3.0))
        step, _ = self.step(406, Progress(posts=3, waits=2))
        self.assertIsInstance(step, Finish)

    def test_expiry_bounds_the_wait(self) -> None:
        """
        A wait that would end at or after the job's expiry finishes the send instead.
        """
        step, _ = self.step(406, Progress(posts=1), now=599.0, expires=600.0)
        self.assertIsInstance(step, Finish)

    def test_finishing_answers(self) -> None:
        """
        Accepted, gone, too large and refused finish at once; gone reroutes,
        too large and refused fail for good, accepted is sent.
        """
        for status in (200, 404, 410, 413, 400, 403):
            step, _ = self.step(status, Progress(posts=1))
            self.assertIsInstance(step, Finish, status)
        self.assertTrue(FATES[Answer.GONE].reroute)
        self.assertFalse(FATES[Answer.GONE].retry)
        self.assertEqual((FATES[Answer.TOO_LARGE].retry, FATES[Answer.REFUSED].retry), (False, False))
        self.assertTrue(FATES[Answer.ACCEPTED].sent)


def replace_posts(progress: Progress, posts: int) -> Progress:
    return Progress(posts=posts, waits=progress.waits, token_renewed=progress.token_renewed)
