"""
A fake of the Windows Notification Service, for tests and benchmarks.

WNS is a remote service this machine cannot reach: this stands in for it
over real HTTPS on loopback, with a throwaway CA (L{FakeWns.ca_pem}) that the
client under test is told to trust. It answers like WNS does, as far as
Microsoft documents it:

 - the token endpoints: the classic one (C{/accesstoken.srf}, scope
   C{notify.windows.com}) and the Entra ID one (C{/TENANT/oauth2/v2.0/token},
   scope C{https://wns.windows.com/.default}): a form POST of a
   client-credentials grant, answered with a JSON bearer token and its
   lifetime, or 400 with an OAuth error;
 - the notification endpoint, at any path: the channel is named by the
   C{token} query argument of the URI L{FakeWns.register} handed out
   (realistic C{https://...notify.windows.com/...} URIs, so the client posts
   them to us through its C{notify_url}). It checks the bearer token (401),
   the C{X-WNS-Type} and C{Content-Type} of a raw notification (400), the
   size (413 above 5000 bytes), the channel (404 unknown, 410 expired), and
   answers 200 with C{X-WNS-Msg-ID}, C{X-WNS-Status: received} and, when
   asked, C{X-WNS-DeviceConnectionStatus: connected}.

Tests switch on what a real WNS does now and then: channels expire
(L{FakeWns.expire_channel}), tokens are revoked (L{FakeWns.revoke_tokens}),
notifications are throttled (L{FakeWns.throttle}: 406 or 429, optionally
with Retry-After) or fail (L{FakeWns.fail}: 5xx). Everything received is
kept (L{FakeWns.notifications}, L{FakeWns.token_requests}) and can be
watched (L{FakeWns.observers}).

Run as a program (C{python -m mdmd.testing.wns}), it serves in its own
process, with C{--channels N} channels whose tokens are C{chan-0} to
C{chan-N-1}, and prints its URL and CA file as JSON (the benchmark uses it).
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from OpenSSL.crypto import X509, PKey
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IListeningPort
from twisted.internet.ssl import CertificateOptions
from twisted.web.resource import Resource
from twisted.web import http
from twisted.web.server import Request, Site

from mdmd.pki.ca import CertificateAuthority, certificate_pem, generate_rsa_key

__all__ = ["FakeWns", "Notification", "TokenRequest", "CLASSIC_SCOPE", "ENTRA_SCOPE", "MAX_RAW"]

CLASSIC_SCOPE = "notify.windows.com"
ENTRA_SCOPE = "https://wns.windows.com/.default"
#: The largest notification WNS takes (bytes).
MAX_RAW = 5000
#: The host of the channel URIs it hands out (the client must use a notify_url to reach us).
CHANNEL_HOST = "db5p.notify.windows.com"


@dataclass(frozen=True)
class Notification:
    """
    A notification WNS accepted (answered 200).
    """

    channel: str
    token: str
    headers: dict[str, str]
    body: bytes
    msg_id: str


@dataclass(frozen=True)
class TokenRequest:
    path: str
    form: dict[str, str]
    granted: bool


@dataclass
class _Channel:
    pfn: str
    uri: str
    expired: bool = False


@dataclass
class _Trouble:
    """
    The next C{count} notifications are answered C{status} (with Retry-After when set).
    """

    status: int
    count: int
    retry_after: int | None = None


@dataclass
class FakeWns:
    """
    The fake service; L{start} it on a reactor, L{stop} it after.

    @ivar clients: client id (package SID or application id) → secret.
    @ivar tenant: the Entra tenant its token endpoint serves.
    """

    reactor: Any
    clients: dict[str, str] = field(default_factory=lambda: {"ms-app://s-1-15-2-1": "secret"})
    tenant: str = "tenant-1"
    token_lifetime: int = 86400
    notifications: list[Notification] = field(default_factory=list)
    token_requests: list[TokenRequest] = field(default_factory=list)
    #: called with each accepted notification
    observers: list[Callable[[Notification], None]] = field(default_factory=list)
    #: every status answered to a notification, in order
    answered: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        self._ca = CertificateAuthority.create(generate_rsa_key(2048), "fake WNS CA", "mdmd tests", datetime.timedelta(days=2), now)
        self._key = generate_rsa_key(2048)
        self._certificate = self._ca.issue_server(
            self._key.public_key(), ["127.0.0.1", "localhost"], "mdmd tests", datetime.timedelta(days=1), now
        )
        self._channels: dict[str, _Channel] = {}
        self._tokens: dict[str, float] = {}
        self._troubles: list[_Trouble] = []
        self._refusing: str | None = None
        self._ids = itertools.count(1)
        self.port: IListeningPort | None = None

    # -- running -------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        """
        Listen on 127.0.0.1 (port 0: a free one); return the base URL.
        """
        options = CertificateOptions(
            privateKey=PKey.from_cryptography_key(self._key),
            certificate=X509.from_cryptography(self._certificate),
        )
        self.port = self.reactor.listenSSL(port, _QuietSite(_Root(self)), options, interface="127.0.0.1")
        return self.url

    def stop(self) -> Any:
        port, self.port = self.port, None
        return None if port is None else port.stopListening()

    @property
    def url(self) -> str:
        assert self.port is not None, "not started"
        address = self.port.getHost()
        assert isinstance(address, IPv4Address)
        return f"https://127.0.0.1:{address.port}"

    @property
    def token_url(self) -> str:
        """
        The classic flow's token endpoint.
        """
        return self.url + "/accesstoken.srf"

    @property
    def entra_token_url(self) -> str:
        return f"{self.url}/{self.tenant}/oauth2/v2.0/token"

    @property
    def ca_pem(self) -> bytes:
        return certificate_pem(self._ca.certificate)

    def write_ca(self, path: str) -> str:
        with open(path, "wb") as f:
            f.write(self.ca_pem)
        return path

    # -- channels ------------------------------------------------------------------------

    def register(self, pfn: str, token: str | None = None) -> str:
        """
        A device asks for a channel for the application C{pfn}: its URI.
        """
        token = token or secrets.token_urlsafe(24)
        uri = f"https://{CHANNEL_HOST}/w/?token={token}"
        self._channels[token] = _Channel(pfn, uri)
        return uri

    def expire_channel(self, uri: str) -> None:
        """
        From now on, notifications to C{uri} are answered 410 (the channel expired).
        """
        self._channels[_token_of(uri)].expired = True

    def forget_channel(self, uri: str) -> None:
        """
        From now on, notifications to C{uri} are answered 404 (not a channel WNS knows).
        """
        self._channels.pop(_token_of(uri), None)

    # -- trouble -------------------------------------------------------------------------

    def throttle(self, count: int = 1, status: int = 406, retry_after: int | None = None) -> None:
        """
        The next C{count} notifications are throttled (406, or 429).
        """
        self._troubles.append(_Trouble(status, count, retry_after))

    def fail(self, count: int = 1, status: int = 500) -> None:
        """
        The next C{count} notifications fail (500, 503).
        """
        self._troubles.append(_Trouble(status, count))

    def clear_trouble(self) -> None:
        """
        Forget the throttling and failures still to come.
        """
        self._troubles.clear()

    def revoke_tokens(self) -> None:
        """
        Every token issued so far stops being valid (notifications get 401).
        """
        self._tokens.clear()

    def refuse_tokens(self, error: str | None = "invalid_client") -> None:
        """
        The token endpoints refuse every request with this OAuth error (None: stop refusing).
        """
        self._refusing = error

    # -- the endpoints -------------------------------------------------------------------

    def _grant(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        entra = path != "/accesstoken.srf"
        if entra and path != f"/{self.tenant}/oauth2/v2.0/token":
            return 404, {"error": "invalid_request", "error_description": f"no tenant at {path}"}
        scope = ENTRA_SCOPE if entra else CLASSIC_SCOPE
        if form.get("grant_type") != "client_credentials":
            error: tuple[str, str] | None = ("unsupported_grant_type", "only client_credentials")
        elif form.get("scope") != scope:
            error = ("invalid_scope", f"the scope is {scope}")
        elif self._refusing is not None or self.clients.get(form.get("client_id", "")) != form.get("client_secret"):
            error = (self._refusing or "invalid_client", "the client id or secret is not valid")
        else:
            error = None
        self.token_requests.append(TokenRequest(path, form, error is None))
        if error is not None:
            return 400, {"error": error[0], "error_description": error[1]}
        token = secrets.token_urlsafe(32)
        self._tokens[token] = self.reactor.seconds() + self.token_lifetime
        answer: dict[str, Any] = {"access_token": token, "token_type": "bearer", "expires_in": self.token_lifetime}
        if entra:
            answer.update(token_type="Bearer", ext_expires_in=self.token_lifetime)
        return 200, answer

    def _notify(self, request: Request) -> bytes:
        headers = {k.decode("latin-1").lower(): v[0].decode("latin-1") for k, v in request.requestHeaders.getAllRawHeaders()}
        assert request.content is not None
        body = request.content.read()
        status, extra = self._judge(request, headers, body)
        self.answered.append(status)
        request.setResponseCode(status)
        request.setHeader(b"X-WNS-Debug-Trace", b"fake-wns")
        for name, value in extra.items():
            request.setHeader(name.encode("ascii"), value.encode("ascii"))
        if status == 200:
            channel = _token_of(request.uri.decode("latin-1"))
            bearer = headers["authorization"].split(" ", 1)[1]
            notification = Notification(channel, bearer, headers, body, extra["X-WNS-Msg-ID"])
            self.notifications.append(notification)
            for observer in list(self.observers):
                observer(notification)
        return b""

    def _judge(self, request: Request, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        kind, _, bearer = headers.get("authorization", "").partition(" ")
        expires = self._tokens.get(bearer) if kind.lower() == "bearer" else None
        if expires is None or expires <= self.reactor.seconds():
            return 401, {"WWW-Authenticate": 'Bearer error="invalid_request",error_description="Invalid token"'}
        if headers.get("x-wns-type") != "wns/raw" or headers.get("content-type") != "application/octet-stream":
            return 400, {"X-WNS-Error-Description": "a raw notification needs X-WNS-Type wns/raw and application/octet-stream"}
        if len(body) > MAX_RAW:
            return 413, {"X-WNS-Error-Description": f"larger than {MAX_RAW} bytes"}
        channel = self._channels.get(_token_of(request.uri.decode("latin-1")))
        if channel is None:
            return 404, {"X-WNS-Error-Description": "the channel URI is not valid"}
        if channel.expired:
            return 410, {"X-WNS-Error-Description": "the channel expired"}
        if self._troubles:
            trouble = self._troubles[0]
            trouble.count -= 1
            if trouble.count <= 0:
                self._troubles.pop(0)
            extra = {} if trouble.retry_after is None else {"Retry-After": str(trouble.retry_after)}
            return trouble.status, extra
        extra = {"X-WNS-Msg-ID": f"{next(self._ids):016X}", "X-WNS-Status": "received"}
        if headers.get("x-wns-requestforstatus", "").lower() == "true":
            extra["X-WNS-DeviceConnectionStatus"] = "connected"
        return 200, extra


def _token_of(uri: str) -> str:
    return parse_qs(urlsplit(uri).query).get("token", [""])[0]


class _QuietSite(Site):
    """
    No access log: a benchmark sends thousands of requests.
    """

    noisy = False

    def log(self, request: http.Request) -> None:
        pass


class _Root(Resource):
    isLeaf = True

    def __init__(self, wns: FakeWns) -> None:
        super().__init__()
        self.wns = wns

    def render_POST(self, request: Request) -> bytes:
        path = urlsplit(request.uri.decode("latin-1")).path
        if path.endswith("/accesstoken.srf") or path.endswith("/oauth2/v2.0/token"):
            assert request.content is not None
            raw = request.content.read().decode("utf-8", "replace")
            form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            status, answer = self.wns._grant(path, form)
            request.setResponseCode(status)
            request.setHeader(b"Content-Type", b"application/json")
            request.setHeader(b"Cache-Control", b"no-store")
            return json.dumps(answer).encode("utf-8")
        return self.wns._notify(request)


def main(argv: list[str] | None = None) -> None:
    """
    Serve in this process: C{--channels N}, C{--client ID=SECRET}; print
    C{{"url": ..., "ca_file": ..., "token_url": ...}} once listening.
    """
    import argparse

    from twisted.internet import reactor

    parser = argparse.ArgumentParser(prog="python -m mdmd.testing.wns")
    parser.add_argument("--channels", type=int, default=0)
    parser.add_argument("--client", action="append", default=[], help="ID=SECRET")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    wns = FakeWns(reactor)
    if args.client:
        wns.clients = dict(c.split("=", 1) for c in args.client)
    wns.start(args.port)
    for index in range(args.channels):
        wns.register("bench", token=f"chan-{index}")
    ca_file = wns.write_ca(os.path.join(tempfile.mkdtemp(prefix="fake-wns-"), "ca.pem"))
    print(json.dumps({"url": wns.url, "ca_file": ca_file, "token_url": wns.token_url}), flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
