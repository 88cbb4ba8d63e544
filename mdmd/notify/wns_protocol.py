"""
The Windows Notification Service, without I/O: access tokens, the raw
notification request, what WNS's answers mean, and what to do next.

Sending a raw notification takes an OAuth access token, got with the
client-credentials grant in one of the two flows Microsoft documents
(L{FLOWS}): the classic one (the push application's package SID and client
secret, form-posted to the Live token endpoint, scope
C{notify.windows.com}) or the Entra ID one (an application registration's
client id and secret, against the tenant's v2.0 token endpoint, scope
C{https://wns.windows.com/.default}). L{TokenCache} holds the token until
shortly before it expires, and drops it when WNS refuses it (401).

A notification is an HTTPS POST to the device's channel URI
(L{notification}): C{X-WNS-Type: wns/raw}, C{application/octet-stream},
C{Authorization: Bearer ...}, cached by WNS while the device is away, for no
longer than the job has left. Windows ignores the payload of an MDM push:
it opens a DM session. WNS's answer (L{read_answer}) is one of the
L{Answer}s in L{ANSWERS}; L{next_step} decides, for a send so far
(L{Progress}), whether it is finished (and how the job fares: L{FATES}),
posts again after a back-off (throttled, WNS unavailable), or posts again
at once with a new token (401, once).

Everything that affects a send lives in these tables; the adapter
(L{mdmd.notify.wns}) only does the I/O they ask for.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Union
from urllib.parse import urlencode, urlsplit, urlunsplit

__all__ = [
    "ANSWERS",
    "AccessToken",
    "Answer",
    "ClientCredentials",
    "FATES",
    "FLOWS",
    "Fate",
    "Finish",
    "FlowSpec",
    "Progress",
    "RenewToken",
    "RetryPolicy",
    "Step",
    "TokenCache",
    "TokenFlow",
    "TokenRefused",
    "Wait",
    "WnsAnswer",
    "next_step",
    "notification",
    "parse_token_answer",
    "read_answer",
    "target_url",
    "token_url_for",
]

FORM: Final = "application/x-www-form-urlencoded"
RAW: Final = "application/octet-stream"


# -- access tokens --------------------------------------------------------------------------------


class TokenFlow(enum.Enum):
    """
    How the access token is obtained ([wns] token_flow).
    """

    CLASSIC = "classic"
    ENTRA = "entra"


@dataclass(frozen=True)
class FlowSpec:
    """
    A flow's token endpoint (C{{tenant}} is filled in) and scope.
    """

    token_url: str
    scope: str


FLOWS: Final[Mapping[TokenFlow, FlowSpec]] = {
    TokenFlow.CLASSIC: FlowSpec("https://login.live.com/accesstoken.srf", "notify.windows.com"),
    TokenFlow.ENTRA: FlowSpec(
        "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token", "https://wns.windows.com/.default"
    ),
}


def token_url_for(flow: TokenFlow, tenant: str = "", override: str = "") -> str:
    """
    Where the flow's token is asked for: C{override} when set, else Microsoft's endpoint.
    """
    return override or FLOWS[flow].token_url.format(tenant=tenant)


@dataclass(frozen=True)
class ClientCredentials:
    """
    Who we are to the token endpoint: the package SID (classic) or the
    application's client id (Entra), and its secret.
    """

    flow: TokenFlow
    client_id: str
    secret: str = field(repr=False)
    token_url: str

    def request_body(self) -> bytes:
        """
        The token request's form (C{application/x-www-form-urlencoded}, every value URL-encoded).
        """
        return urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.secret,
                "scope": FLOWS[self.flow].scope,
            }
        ).encode("ascii")


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    obtained_at: float
    expires_at: float


class TokenRefused(Exception):
    """
    The token endpoint did not give us a token; the message says what it said.
    """


#: What a token answer without C{expires_in} is taken to last (the classic
#: flow's tokens last a day; Entra's say so).
DEFAULT_TOKEN_LIFETIME: Final = 3600.0


def parse_token_answer(status: int, body: bytes, now: float) -> AccessToken:
    """
    The access token in the token endpoint's answer.

    @raise TokenRefused: if the answer is not 200 with a bearer token (its
        OAuth C{error} and C{error_description} in the message).
    """
    try:
        value: Any = json.loads(body.decode("utf-8")) if body else {}
    except (UnicodeDecodeError, ValueError):
        value = {}
    if not isinstance(value, dict):
        value = {}
    if status != 200:
        error = value.get("error") or "no OAuth error"
        description = str(value.get("error_description") or "").split("\r\n")[0][:200]
        raise TokenRefused(f"HTTP {status} {error}" + (f": {description}" if description else ""))
    token = value.get("access_token")
    kind = str(value.get("token_type") or "bearer")
    if not isinstance(token, str) or not token or kind.lower() != "bearer":
        raise TokenRefused("the token endpoint answered 200 without a bearer access_token")
    try:
        lifetime = float(value.get("expires_in", DEFAULT_TOKEN_LIFETIME))
    except (TypeError, ValueError):
        lifetime = DEFAULT_TOKEN_LIFETIME
    if not math.isfinite(lifetime) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    return AccessToken(token, now, now + lifetime)


@dataclass
class TokenCache:
    """
    Our access token, while it lasts (C{margin} seconds short of its
    expiry, so that no notification goes out with a token about to lapse),
    and what happened to the attempts to get one.
    """

    margin: float = 60.0
    token: AccessToken | None = None
    #: tokens obtained, and of those, how many replaced one WNS refused
    obtained: int = 0
    renewed_after_refusal: int = 0
    #: notifications that used the cached token
    hits: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    _refused: bool = False

    def current(self, now: float) -> AccessToken | None:
        """
        The token to use now, or None: it must be fetched.
        """
        token = self.token
        if token is None or now >= token.expires_at - min(self.margin, (token.expires_at - token.obtained_at) / 2):
            return None
        self.hits += 1
        return token

    def got(self, token: AccessToken) -> None:
        self.token = token
        self.obtained += 1
        if self._refused:
            self.renewed_after_refusal += 1
            self._refused = False

    def failed(self, reason: str, now: float) -> None:
        self.last_error = reason
        self.last_error_at = now

    def refused(self, token: AccessToken) -> None:
        """
        WNS answered 401 to a notification carrying C{token}: forget it (if
        it is still ours; another send may have renewed it already).
        """
        if self.token == token:
            self.token = None
            self._refused = True

    def describe(self, now: float) -> dict[str, Any]:
        token = self.token
        if token is not None and now < token.expires_at:
            state = "valid"
        elif self.last_error is not None and (token is None or (self.last_error_at or 0) >= token.obtained_at):
            state = "refused"
        else:
            state = "none" if token is None else "expired"
        return {
            "state": state,
            "valid_until": None if token is None else token.expires_at,
            "obtained": self.obtained,
            "renewed_after_refusal": self.renewed_after_refusal,
            "cache_hits": self.hits,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }


# -- the notification ------------------------------------------------------------------------------


def target_url(channel_uri: str, notify_url: str = "") -> str:
    """
    Where a notification for C{channel_uri} is posted: the channel URI, or
    its path and query on the C{notify_url} origin (a private or test endpoint).

    @raise ValueError: for a channel URI that is not HTTPS.
    """
    channel = urlsplit(channel_uri)
    if channel.scheme != "https" or not channel.hostname:
        raise ValueError(f"not an HTTPS channel URI: {channel_uri!r}")
    if not notify_url:
        return channel_uri
    base = urlsplit(notify_url)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + (channel.path or "/"), channel.query, ""))


def notification(token: AccessToken, ttl: float) -> dict[str, str]:
    """
    The headers of a raw notification: cached by WNS while the device is
    offline, for at most C{ttl} seconds (what the job has left), and asking
    for the device's connection status in the answer.
    """
    return {
        "Authorization": f"Bearer {token.value}",
        "X-WNS-Type": "wns/raw",
        "Content-Type": RAW,
        "X-WNS-Cache-Policy": "cache",
        "X-WNS-TTL": str(max(1, int(ttl))),
        "X-WNS-RequestForStatus": "true",
    }


class Answer(enum.Enum):
    """
    What WNS said of a notification.
    """

    #: 200, X-WNS-Status received: WNS has it (cached if the device is away)
    ACCEPTED = "accepted"
    #: 200, X-WNS-Status dropped: WNS will not deliver it now
    DROPPED = "dropped"
    #: 401: our token is expired or not valid
    UNAUTHORIZED = "unauthorized"
    #: 404, 410: the channel URI is not valid, or expired
    GONE = "gone"
    #: 406, 429, or 200 with X-WNS-Status channelthrottled: too many notifications
    THROTTLED = "throttled"
    #: 413: the notification is too large
    TOO_LARGE = "too large"
    #: 400, 403, 405 and any other 4xx: it would be refused again the same way
    REFUSED = "refused"
    #: 5xx, or no answer at all (connection, TLS, time-out)
    UNAVAILABLE = "unavailable"


#: The documented answers (any other 4xx is REFUSED, any other 5xx UNAVAILABLE).
ANSWERS: Final[Mapping[int, Answer]] = {
    200: Answer.ACCEPTED,
    400: Answer.REFUSED,
    401: Answer.UNAUTHORIZED,
    403: Answer.REFUSED,
    404: Answer.GONE,
    405: Answer.REFUSED,
    406: Answer.THROTTLED,
    410: Answer.GONE,
    413: Answer.TOO_LARGE,
    429: Answer.THROTTLED,
    500: Answer.UNAVAILABLE,
    503: Answer.UNAVAILABLE,
}

#: What X-WNS-Status says of a notification WNS answered 200.
NOTIFICATION_STATUS: Final[Mapping[str, Answer]] = {
    "received": Answer.ACCEPTED,
    "dropped": Answer.DROPPED,
    "channelthrottled": Answer.THROTTLED,
}


@dataclass(frozen=True)
class WnsAnswer:
    """
    WNS's answer to one notification, read (C{status} None: none came).
    """

    answer: Answer
    status: int | None
    msg_id: str | None = None
    notification_status: str | None = None
    device_status: str | None = None
    error: str | None = None
    retry_after: float | None = None

    @property
    def carrier(self) -> tuple[tuple[str, str], ...]:
        """
        What a job keeps of it.
        """
        named = (("status", self.notification_status), ("device", self.device_status))
        return tuple((name, value) for name, value in named if value)

    def describe(self) -> str:
        if self.status is None:
            return f"no answer from WNS ({self.error})"
        text = f"WNS answered {self.status}"
        extra = ", ".join(v for v in (self.notification_status, self.device_status, self.error) if v)
        return f"{text} ({extra})" if extra else text


def read_answer(status: int | None, headers: Mapping[str, str], reason: str = "") -> WnsAnswer:
    """
    Read WNS's answer; C{headers} have lower-case names. C{status} None: no
    answer came (C{reason} says why).
    """
    if status is None:
        return WnsAnswer(Answer.UNAVAILABLE, None, error=reason or "no answer")
    answer = ANSWERS.get(status) or (Answer.UNAVAILABLE if status >= 500 else Answer.REFUSED)
    notification_status = headers.get("x-wns-status") or headers.get("x-wns-notificationstatus")
    if answer is Answer.ACCEPTED and notification_status:
        answer = NOTIFICATION_STATUS.get(notification_status.lower(), Answer.ACCEPTED)
    return WnsAnswer(
        answer,
        status,
        msg_id=headers.get("x-wns-msg-id") or None,
        notification_status=notification_status or None,
        device_status=headers.get("x-wns-deviceconnectionstatus") or None,
        error=(headers.get("x-wns-error-description") or headers.get("www-authenticate") or None),
        retry_after=_seconds(headers.get("retry-after")),
    )


def _seconds(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


# -- what to do next -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """
    How hard one send tries: C{attempts} notifications at most, waiting
    C{initial_delay} seconds after the first throttled or failed one,
    doubling to C{max_delay} (or what WNS's Retry-After asks, if longer).
    """

    attempts: int = 5
    initial_delay: float = 1.0
    max_delay: float = 60.0


@dataclass(frozen=True)
class Progress:
    """
    A send so far.
    """

    posts: int = 0
    waits: int = 0
    token_renewed: bool = False


@dataclass(frozen=True)
class Finish:
    """
    The send is over; how the job fares is L{FATES}[C{answer.answer}].
    """

    answer: WnsAnswer


@dataclass(frozen=True)
class Wait:
    """
    Post again after C{delay} seconds.
    """

    delay: float


@dataclass(frozen=True)
class RenewToken:
    """
    Get a new token, and post again at once.
    """


Step = Union[Finish, Wait, RenewToken]


@dataclass(frozen=True)
class Fate:
    """
    How a finished send leaves the job: sent, or refused for now (C{retry}:
    the notifier tries again later, within the job's expiry) or for good;
    C{reroute}: the device's channel is gone, try its next route.
    """

    sent: bool = False
    retry: bool = False
    reroute: bool = False


FATES: Final[Mapping[Answer, Fate]] = {
    Answer.ACCEPTED: Fate(sent=True),
    Answer.DROPPED: Fate(retry=True),
    Answer.UNAUTHORIZED: Fate(retry=True),
    Answer.GONE: Fate(reroute=True),
    Answer.THROTTLED: Fate(retry=True),
    Answer.TOO_LARGE: Fate(),
    Answer.REFUSED: Fate(),
    Answer.UNAVAILABLE: Fate(retry=True),
}

_BACK_OFF: Final = frozenset({Answer.THROTTLED, Answer.UNAVAILABLE})


def next_step(
    answer: WnsAnswer, progress: Progress, policy: RetryPolicy, now: float, expires_at: float
) -> tuple[Step, Progress]:
    """
    What to do after WNS's C{answer} to the C{progress.posts}-th notification.

    A refused token is renewed once per send; throttling and unavailability
    back off and post again while the policy allows and the job is not
    past its expiry when the wait is over; everything else finishes.
    """
    if answer.answer is Answer.UNAUTHORIZED and not progress.token_renewed:
        return RenewToken(), replace(progress, token_renewed=True)
    if answer.answer in _BACK_OFF and progress.posts < policy.attempts:
        delay = min(policy.max_delay, policy.initial_delay * 2**progress.waits)
        delay = max(delay, answer.retry_after or 0.0)
        if now + delay < expires_at:
            return Wait(delay), replace(progress, waits=progress.waits + 1)
    return Finish(answer), progress
