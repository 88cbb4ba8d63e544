"""
The WNS transport: push jobs as raw notifications to Windows devices'
channels, through the Windows Notification Service.

L{WnsTransport} is an L{IPushTransport} for the jobs of route "wns"
(L{mdmd.notify.routes}). For each job it takes an access token from the
cache (fetching one, once for every send that waits for it, when there is
none or WNS refused it), posts the notification to the job's channel URI
(or its path on C{notify_url}: a private or test endpoint), at most
C{concurrency} at a time over kept-alive connections, and follows
L{mdmd.notify.wns_protocol.next_step}: a 401 renews the token and posts
again once, throttling (406, 429, C{channelthrottled}) and WNS failures
(5xx, no answer) back off and post again within the job's expiry, and the
rest ends the send. A 404 or 410 says the channel is gone: the device's
channel is marked so in the store (C{channel_gone}) before the job is
refused with C{reroute}, so the notifier's fall-back sees it gone. A 200
makes the job submitted, with WNS's message id and what it said of the
notification and the device.

L{WnsService} runs it: it reads the client secret when it starts (from a
file only its owner may read), fetches a first token once the reactor
runs (a refused one shows in the log and in C{mdmctl status} at once), and
when it stops abandons the sends under way (their jobs stay queued for the
next start) and closes the connections.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mdmd.notify.jobs import JobRef, OutgoingPush
from mdmd.notify.transport import Abandoned, IPushListener, IPushTransport, Outcome, Refused, Sent
from mdmd.notify.wns_http import HttpClient, HttpFailed
from mdmd.notify.wns_protocol import (
    FATES,
    FORM,
    AccessToken,
    Answer,
    ClientCredentials,
    Finish,
    Progress,
    RenewToken,
    RetryPolicy,
    TokenCache,
    TokenFlow,
    TokenRefused,
    Wait,
    WnsAnswer,
    next_step,
    notification,
    parse_token_answer,
    read_answer,
    target_url,
)

__all__ = ["WnsSecretError", "WnsService", "WnsSettings", "WnsTransport", "read_secret"]

log = Logger()


@dataclass(frozen=True)
class WnsSettings:
    """
    [wns] as the transport takes it.
    """

    flow: TokenFlow
    #: the package SID (classic) or the application (client) id (Entra)
    client_id: str
    #: the file holding the client secret (its owner alone may read it)
    secret_file: str
    #: the token endpoint (the flow's own unless configured)
    token_url: str
    #: an origin that replaces the channel URIs' ("" posts to the channel URI)
    notify_url: str = ""
    #: PEM trust roots for both endpoints ("" trusts the system's)
    ca_file: str = ""
    #: an HTTP proxy that takes CONNECT ("" connects directly)
    proxy: str = ""
    #: notifications in flight at once (and connections kept per host)
    concurrency: int = 50
    #: seconds an HTTP request may take
    timeout: float = 30.0
    retry: RetryPolicy = RetryPolicy()


class WnsSecretError(Exception):
    """
    The client secret file is missing, empty, or readable by others.
    """


def read_secret(path: str) -> str:
    """
    The first line of C{path}, which must be a file no one but its owner may
    read or write (mode 0600 or stricter).

    @raise WnsSecretError: naming the problem.
    """
    try:
        info = os.stat(path)
    except OSError as e:
        raise WnsSecretError(f"[wns] secret_file: cannot read {path}: {e.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise WnsSecretError(f"[wns] secret_file: {path} is not a file")
    if info.st_mode & 0o077:
        raise WnsSecretError(
            f"[wns] secret_file: {path} is mode {stat.S_IMODE(info.st_mode):04o}; "
            "the client secret must be readable by its owner only (chmod 600)"
        )
    with open(path, encoding="utf-8") as f:
        secret = f.readline().strip()
    if not secret:
        raise WnsSecretError(f"[wns] secret_file: {path} is empty")
    return secret


class _Tokens:
    """
    The token cache and the one token request that the sends needing a token wait for.
    """

    def __init__(self, http: HttpClient, clock: IReactorTime, cache: TokenCache) -> None:
        self.http = http
        self.clock = clock
        self.cache = cache
        self.credentials: ClientCredentials | None = None
        self._waiting: list[Deferred[AccessToken]] | None = None

    def get(self) -> Deferred[AccessToken]:
        token = self.cache.current(self.clock.seconds())
        if token is not None:
            return succeed(token)
        waiting = self._waiting

        def cancel(d: Deferred[AccessToken]) -> None:
            if self._waiting is not None and d in self._waiting:
                self._waiting.remove(d)

        waiter: Deferred[AccessToken] = Deferred(cancel)
        if waiting is not None:
            waiting.append(waiter)
        else:
            self._waiting = [waiter]
            # (this may fire the waiter before it returns)
            Deferred.fromCoroutine(self._fetch()).addBoth(self._fetched)
        return waiter

    def refused(self, token: AccessToken) -> None:
        self.cache.refused(token)

    async def _fetch(self) -> AccessToken:
        credentials = self.credentials
        if credentials is None:
            raise TokenRefused("the WNS transport is not started")
        try:
            answer = await self.http.post(
                credentials.token_url, {"Content-Type": FORM, "Accept": "application/json"}, credentials.request_body()
            )
        except HttpFailed as e:
            raise TokenRefused(str(e)) from None
        return parse_token_answer(answer.status, answer.body, self.clock.seconds())

    def _fetched(self, result: AccessToken | Failure) -> None:
        waiting, self._waiting = self._waiting or [], None
        if isinstance(result, Failure):
            reason = result.getErrorMessage() if result.check(TokenRefused) else repr(result.value)
            if not result.check(TokenRefused):
                log.failure("fetching a WNS access token failed", result)
            self.cache.failed(reason, self.clock.seconds())
            log.warn("no WNS access token: {reason}", reason=reason)
            for waiter in waiting:
                waiter.errback(TokenRefused(reason))
            return
        self.cache.got(result)
        log.info("WNS access token obtained, valid for {seconds:.0f} s", seconds=result.expires_at - result.obtained_at)
        for waiter in waiting:
            waiter.callback(result)


@implementer(IPushTransport)
class WnsTransport:
    """
    Raw notifications to the channels of WNS jobs.

    @param http: the HTTPS client (L{mdmd.notify.wns_http.AgentClient}).
    @param channel_gone: C{(device id, channel URI)} once WNS said the
        channel is gone; what it returns is waited for.
    """

    via = "wns"

    def __init__(
        self,
        settings: WnsSettings,
        http: HttpClient,
        clock: IReactorTime,
        *,
        channel_gone: Callable[[str, str], Deferred[Any]] | None = None,
        secret: Callable[[], str] | None = None,
        close: Callable[[], Deferred[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.http = http
        self.clock = clock
        self._channel_gone = channel_gone
        self._secret = secret or (lambda: read_secret(settings.secret_file))
        self._close = close
        self.tokens = _Tokens(http, clock, TokenCache())
        self._slots = DeferredSemaphore(settings.concurrency)
        self._flights: dict[JobRef, Deferred[Outcome]] = {}
        self._stopping = False
        self.answers: Counter[str] = Counter()
        self._last_problem: str | None = None
        self.service = WnsService(self)

    # -- IPushTransport --------------------------------------------------------------------

    def attach(self, listener: IPushListener) -> None:
        """
        Nothing to report on the way: WNS sends no delivery reports.
        """

    def send(self, job: OutgoingPush) -> Deferred[Outcome]:
        ref = job.ref
        carried = Deferred.fromCoroutine(self._carry(job))
        if not carried.called:
            self._flights[ref] = carried

            def landed(result: Any) -> Any:
                self._flights.pop(ref, None)
                return result

            carried.addBoth(landed)
        return carried

    def describe(self) -> dict[str, Any]:
        token = self.tokens.cache.describe(self.clock.seconds())
        state = {"valid": "ready", "refused": "token refused"}.get(token["state"], "no token yet")
        return {
            "state": state,
            "flow": self.settings.flow.value,
            "token_url": self.settings.token_url,
            "notify_url": self.settings.notify_url or None,
            "token": token,
            "in_flight": len(self._flights),
            "answers": dict(self.answers),
            "detail": self._last_problem,
        }

    # -- life ----------------------------------------------------------------------------

    def start(self) -> None:
        """
        Read the client secret.

        @raise WnsSecretError: if it cannot be.
        """
        self._stopping = False
        self.tokens.credentials = ClientCredentials(
            self.settings.flow, self.settings.client_id, self._secret(), self.settings.token_url
        )

    def stop(self) -> Deferred[None]:
        """
        Abandon the sends under way (their jobs stay queued) and close the connections.
        """
        self._stopping = True
        for flight in list(self._flights.values()):
            flight.cancel()
        return self._close() if self._close is not None else succeed(None)

    # -- one send ------------------------------------------------------------------------

    async def _carry(self, job: OutgoingPush) -> Outcome:
        try:
            return await self._attempts(job)
        except CancelledError:
            if self._stopping:
                return Abandoned()
            raise

    async def _attempts(self, job: OutgoingPush) -> Outcome:
        info = job.info
        try:
            url = target_url(info.channel_uri, self.settings.notify_url)
        except ValueError as e:
            return Refused(str(e), retry=False)
        # Windows ignores an MDM push's payload; the job's number helps whoever reads WNS's logs
        body = str(info.seq).encode("ascii")
        progress = Progress()
        while True:
            try:
                token = await self.tokens.get()
            except TokenRefused as e:
                self._last_problem = f"no access token: {e}"
                return Refused(f"no WNS access token: {e}", retry=True)
            answer = await self._post(url, notification(token, info.expires_at - self.clock.seconds()), body)
            progress = replace(progress, posts=progress.posts + 1)
            step, progress = next_step(answer, progress, self.settings.retry, self.clock.seconds(), info.expires_at)
            if isinstance(step, RenewToken):
                self.tokens.refused(token)
            elif isinstance(step, Wait):
                log.info(
                    "push {device_id}#{seq}: {answer}; again in {delay:g} s",
                    device_id=info.device_id,
                    seq=info.seq,
                    answer=answer.describe(),
                    delay=step.delay,
                )
                await deferLater(self.clock, step.delay, lambda: None)
            else:
                assert isinstance(step, Finish)
                return await self._finish(job, step.answer)

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> WnsAnswer:
        await self._slots.acquire()
        try:
            reply = await self.http.post(url, headers, body)
        except HttpFailed as e:
            answer = read_answer(None, {}, str(e))
        else:
            answer = read_answer(reply.status, reply.headers)
        finally:
            self._slots.release()
        self.answers[answer.answer.value] += 1
        if answer.answer is not Answer.ACCEPTED:
            self._last_problem = answer.describe()
        return answer

    async def _finish(self, job: OutgoingPush, answer: WnsAnswer) -> Outcome:
        fate = FATES[answer.answer]
        if fate.sent:
            return Sent(
                (answer.msg_id or "",),
                (None,),
                detail=f"accepted by WNS ({', '.join(v for _, v in answer.carrier) or answer.status})",
                carrier=answer.carrier,
            )
        if fate.reroute:
            info = job.info
            if self._channel_gone is not None:
                try:
                    await self._channel_gone(info.device_id, info.channel_uri)
                except Exception:
                    log.failure("marking the channel of {device_id} gone failed", device_id=info.device_id)
            return Refused(f"{answer.describe()}: the device's WNS channel is gone", retry=False, reroute=True)
        return Refused(answer.describe(), retry=fate.retry)


class WnsService(Service):
    """
    Runs a L{WnsTransport}: the secret at start, a first token once running,
    the sends abandoned and the connections closed at stop.
    """

    name = "wns"

    def __init__(self, transport: WnsTransport) -> None:
        self.transport = transport

    def startService(self) -> None:
        self.transport.start()
        super().startService()
        log.info(
            "WNS: {flow} token flow at {url}", flow=self.transport.settings.flow.value, url=self.transport.settings.token_url
        )
        self.transport.clock.callLater(0, self._first_token)

    def _first_token(self) -> None:
        if self.running:
            self.transport.tokens.get().addErrback(lambda f: f.trap(TokenRefused, CancelledError))

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.transport.stop()
