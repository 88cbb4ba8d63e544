"""
The SMPP client as a Twisted service: L{ESMEService} keeps one bound session
to the SMSC, reconnecting with backoff, and hands it push jobs.

This is the only Twisted code of the notify package. L{ESMEProtocol} shuttles
bytes between a transport and an L{EsmeSession} and keeps one timer at the
session's next deadline; L{ESMEService} owns the jobs across connections.

For the rest of mdmd (the SMPP push transport, L{mdmd.notify.smpp_transport}):

    service = ESMEService(smsc_endpoint(reactor, host, port, tls=True), config, clock=reactor)
    service.add_receipt_observer(on_receipt)      # DeliveryReceipt events
    service.add_state_observer(on_state)          # Bound / BindFailed / Unbound / LinkBroken
    service.add_segment_observer(on_segment)      # SegmentAccepted: one id, as it arrives
    d = service.submit(ref, Address(msisdn), segments, message_ids=None)
    # d fires with SubmitOutcome once the SMSC accepted every segment (with
    # one message id per segment) or refused the job for good.

Submits made while there is no bound session wait in memory until there is
one. Accepted segments are never sent again: a job interrupted by a
disconnect is resubmitted with the message ids it already has, and the
notifier can do the same across restarts by passing the ids it persisted.
When the service stops, jobs not finished fail with L{SubmitAbandoned}
(carrying the ids accepted so far).

Reconnection uses L{ClientService} with C{backoffPolicy}, with one change:
the attempt count we hand the policy counts every connection since the last
successful bind, not just failed TCP connects. ClientService resets its own
count whenever TCP connects, so an SMSC that accepts connections but refuses
the bind (a wrong password) would otherwise be retried at the first,
shortest delay forever. The bind is deliberately not done in ClientService's
C{prepareConnection}: on Twisted 26.10 a connection rejected there that
then closes makes ClientService raise C{NoTransition} (it has no transition
for C{_clientDisconnected} in its Waiting and Connecting states).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from mdmd.notify.smpp_session import (
    Address,
    BindFailed,
    Bound,
    DeliveryReceipt,
    EsmeSession,
    Event,
    Ignored,
    JobsReturned,
    LinkBroken,
    Output,
    ProtocolViolation,
    SegmentAccepted,
    SessionConfig,
    State,
    SubmitAccepted,
    SubmitFailed,
    Unbound,
    submit_templates,
)
from mdmd.notify.smpp_pdu import status_name
from mdmd.notify.wap import SmsSegment

__all__ = [
    "ESMEProtocol",
    "ESMEService",
    "StateEvent",
    "SubmitAbandoned",
    "SubmitOutcome",
    "smsc_endpoint",
]

log = Logger()

StateEvent = Bound | BindFailed | Unbound | LinkBroken


@dataclass(frozen=True)
class SubmitOutcome:
    """
    How a job ended: C{accepted} with one message id per segment, or refused
    with C{status} (C{temporary} when the SMSC said "later" too many times).
    On refusal C{message_ids} still holds the segments the SMSC accepted.
    """

    ref: Hashable
    accepted: bool
    message_ids: tuple[str | None, ...]
    status: int | None = None
    temporary: bool = False

    @property
    def status_name(self) -> str | None:
        return None if self.status is None else status_name(self.status)


class SubmitAbandoned(Exception):
    """
    The service stopped before the job was finished; nothing more will be
    sent for it. C{message_ids} are the segments already accepted.
    """

    def __init__(self, ref: Hashable, message_ids: tuple[str | None, ...]) -> None:
        super().__init__(f"job {ref!r} abandoned")
        self.ref = ref
        self.message_ids = message_ids


def smsc_endpoint(
    reactor: Any,
    host: str,
    port: int,
    *,
    tls: bool = False,
    ca_certificates: Sequence[bytes] = (),
    client_certificate: PrivateCertificate | None = None,
    timeout: float = 30.0,
) -> IStreamClientEndpoint:
    """
    The endpoint for the SMSC: TCP, or TLS that verifies the SMSC's
    certificate and host name (against C{ca_certificates}, PEM, when given,
    else the platform's trust store).
    """
    endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
    if not tls:
        return endpoint
    trust = (
        trustRootFromCertificates([Certificate.loadPEM(pem) for pem in ca_certificates])
        if ca_certificates
        else platformTrust()
    )
    options = optionsForClientTLS(host, trustRoot=trust, clientCertificate=client_certificate)
    return wrapClientTLS(options, endpoint)


class ESMEProtocol(Protocol):
    """
    One connection to the SMSC around an L{EsmeSession}.

    Events go to C{handler(protocol, event)}. There is at most one timer, due
    no later than the session's deadline (it may fire early: the session
    then just says when to come back).
    """

    def __init__(
        self,
        config: SessionConfig,
        clock: IReactorTime,
        handler: Callable[[ESMEProtocol, Event], None],
        receipt_refs: OrderedDict[str, Hashable] | None = None,
    ) -> None:
        self.session = EsmeSession(config, receipt_refs)
        self._clock = clock
        self._handler = handler
        self._timer: IDelayedCall | None = None
        self._closed: list[Deferred[None]] = []
        self._lost = False

    def connectionMade(self) -> None:
        self._apply(self.session.connection_made(self._clock.seconds()))

    def dataReceived(self, data: bytes) -> None:
        self._apply(self.session.receive_data(data, self._clock.seconds()))

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._lost = True
        self._schedule(None)
        self._apply(self.session.connection_lost(self._clock.seconds()))
        closed, self._closed = self._closed, []
        for d in closed:
            d.callback(None)

    def submit(
        self,
        ref: Hashable,
        destination: Address,
        segments: Sequence[SmsSegment],
        message_ids: Sequence[str | None] | None = None,
    ) -> None:
        self._apply(
            self.session.submit(ref, destination, segments, self._clock.seconds(), message_ids)
        )

    def unbind(self) -> Deferred[None]:
        """
        Drain and unbind; the Deferred fires when the connection is gone.
        """
        if self._lost:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closed.append(d)
        self._apply(self.session.close(self._clock.seconds()))
        return d

    def abort(self) -> None:
        if not self._lost and self.transport is not None:
            # Typed as an ITransport, every stream transport can also abort (ITCPTransport).
            cast(ITCPTransport, self.transport).abortConnection()

    def _tick(self) -> None:
        self._timer = None
        self._apply(self.session.tick(self._clock.seconds()))

    def _apply(self, out: Output) -> None:
        if out.data and not self._lost and self.transport is not None:
            self.transport.write(out.data)
        # Arm the timer before handing events out: a handler may feed the
        # session again, and whichever deadline is earlier must be kept.
        self._schedule(None if self._lost else out.deadline)
        if out.disconnect and not self._lost and self.transport is not None:
            self.transport.loseConnection()
        for event in out.events:
            try:
                self._handler(self, event)
            except Exception:
                log.failure("SMPP event handler failed on {event!r}", event=event)

    def _schedule(self, deadline: float | None) -> None:
        timer = self._timer
        if timer is not None and timer.active():
            if deadline is not None and timer.getTime() <= deadline:
                return  # an early tick is harmless and re-arms; saves reactor churn
            timer.cancel()
        self._timer = None
        if deadline is not None:
            delay = max(0.0, deadline - self._clock.seconds())
            self._timer = self._clock.callLater(delay, self._tick)


@dataclass(eq=False)
class _Job:
    ref: Hashable
    destination: Address
    segments: tuple[SmsSegment, ...]
    message_ids: tuple[str | None, ...] | None
    deferred: Deferred[SubmitOutcome]
    in_session: bool = False
    cancelled: bool = False


class _ESMEFactory(Factory):
    def __init__(self, service: ESMEService) -> None:
        self._service = service

    def buildProtocol(self, addr: object) -> ESMEProtocol:
        service = self._service
        return ESMEProtocol(service.config, service.clock, service._on_event, service._receipt_refs)


@dataclass
class _Observers:
    receipts: list[Callable[[DeliveryReceipt], object]] = field(default_factory=list)
    states: list[Callable[[StateEvent], object]] = field(default_factory=list)
    segments: list[Callable[[SegmentAccepted], object]] = field(default_factory=list)


class ESMEService(Service):
    """
    Keeps an SMPP session bound and sends push jobs through it.

    @param endpoint: where the SMSC is (see L{smsc_endpoint}).
    @param retry_policy: seconds to wait before connection attempt I{n}
        (counted since the last successful bind); Twisted's C{backoffPolicy}
        (1 s growing by 1.5 up to 60 s, plus up to 1 s of jitter) by default.
    @param stop_timeout: how long L{stopService} lets the session drain and
        unbind before cutting the connection.
    """

    name = "smpp"

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        config: SessionConfig,
        *,
        clock: IReactorTime,
        retry_policy: Callable[[int], float] | None = None,
        stop_timeout: float = 15.0,
    ) -> None:
        self.config = config
        self.clock = clock
        self._policy = retry_policy or backoffPolicy()
        self._attempts = 0
        self._stop_timeout = stop_timeout
        self._client = ClientService(
            endpoint, _ESMEFactory(self), retryPolicy=self._retry_delay, clock=clock
        )
        self._protocol: ESMEProtocol | None = None
        self._jobs: dict[Hashable, _Job] = {}
        self._observers = _Observers()
        # Shared by successive sessions: a receipt may come after a reconnect.
        self._receipt_refs: OrderedDict[str, Hashable] = OrderedDict()

    # -- the interface for the SMPP transport ------------------------------------

    @property
    def bound(self) -> bool:
        return self._protocol is not None and self._protocol.session.state is State.BOUND

    def add_receipt_observer(self, observer: Callable[[DeliveryReceipt], object]) -> None:
        self._observers.receipts.append(observer)

    def add_state_observer(self, observer: Callable[[StateEvent], object]) -> None:
        self._observers.states.append(observer)

    def add_segment_observer(self, observer: Callable[[SegmentAccepted], object]) -> None:
        """
        Be told of each accepted segment (its message id) before the job's
        outcome, to persist ids as they come.
        """
        self._observers.segments.append(observer)

    def submit(
        self,
        ref: Hashable,
        destination: Address,
        segments: Sequence[SmsSegment],
        message_ids: Sequence[str | None] | None = None,
    ) -> Deferred[SubmitOutcome]:
        """
        Send one push job (all the segments of one WAP push to one handset).

        @param ref: the caller's unique, hashable name for the job.
        @param message_ids: ids of segments accepted in an earlier attempt
            (None for the others); those segments are not sent again.
        @return: fires with a L{SubmitOutcome}; fails with L{SubmitAbandoned}
            if the service stops first. Cancelling it drops the job if it has
            not gone to the SMSC yet (else only the outcome is dropped).
        """
        if ref in self._jobs:
            raise ValueError(f"job {ref!r} is already pending")
        segments = tuple(segments)
        submit_templates(self.config, destination, segments)  # refuse the unsendable now
        ids = tuple(message_ids) if message_ids is not None else None
        if ids is not None and len(ids) != len(segments):
            raise ValueError("one message id (or None) per segment")
        job = _Job(ref, destination, segments, ids, Deferred(lambda d: self._cancel(ref)))
        self._jobs[ref] = job
        if self.bound:
            self._hand_over(job)
        return job.deferred

    # -- service ----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._client.startService()

    def stopService(self) -> Deferred[None]:
        """
        Drain and unbind the current session (at most C{stop_timeout}), stop
        reconnecting, and fail the jobs left with L{SubmitAbandoned}.
        """
        super().stopService()
        protocol = self._protocol
        drained = protocol.unbind() if protocol is not None else succeed(None)
        guard = self.clock.callLater(
            self._stop_timeout, lambda: protocol.abort() if protocol is not None else None
        )

        def stop_client(_: object) -> Deferred[None]:
            if guard.active():
                guard.cancel()
            return self._client.stopService()

        def abandon(_: object) -> None:
            jobs, self._jobs = list(self._jobs.values()), {}
            for job in jobs:
                if not job.cancelled:
                    ids = job.message_ids or (None,) * len(job.segments)
                    job.deferred.errback(SubmitAbandoned(job.ref, ids))

        return drained.addCallback(stop_client).addCallback(abandon)

    # -- internals --------------------------------------------------------------

    def _retry_delay(self, attempt: int) -> float:
        self._attempts += 1
        return self._policy(self._attempts)

    def _hand_over(self, job: _Job) -> None:
        assert self._protocol is not None
        job.in_session = True
        self._protocol.submit(job.ref, job.destination, job.segments, job.message_ids)

    def _cancel(self, ref: Hashable) -> None:
        job = self._jobs.get(ref)
        if job is None:
            return
        if job.in_session:
            job.cancelled = True  # the SMSC may have it already; just forget the outcome
        else:
            del self._jobs[ref]

    def _finish(self, ref: Hashable, outcome: SubmitOutcome) -> None:
        job = self._jobs.pop(ref, None)
        if job is not None and not job.cancelled:
            job.deferred.callback(outcome)

    def _on_event(self, protocol: ESMEProtocol, event: Event) -> None:
        if isinstance(event, SubmitAccepted):
            self._finish(event.ref, SubmitOutcome(event.ref, True, event.message_ids))
        elif isinstance(event, SubmitFailed):
            log.warn("SMSC refused push {ref!r}: {status}", ref=event.ref, status=event.status_name)
            self._finish(
                event.ref,
                SubmitOutcome(event.ref, False, event.message_ids, event.status, event.temporary),
            )
        elif isinstance(event, SegmentAccepted):
            job = self._jobs.get(event.ref)
            if job is not None and not job.cancelled:
                self._notify(self._observers.segments, event)
        elif isinstance(event, DeliveryReceipt):
            self._notify(self._observers.receipts, event)
        elif isinstance(event, JobsReturned):
            self._requeue(event)
        elif isinstance(event, (ProtocolViolation, Ignored)):
            log.info("SMPP: {event!r}", event=event)
        else:
            self._on_state(protocol, event)

    def _on_state(self, protocol: ESMEProtocol, event: StateEvent) -> None:
        if isinstance(event, Bound):
            log.info("SMPP bound to {system_id}", system_id=event.system_id)
            self._attempts = 0
            self._protocol = protocol
            if not self.running:
                protocol.unbind()  # raced with stopService; nothing goes out
                return
            for job in list(self._jobs.values()):
                if not job.in_session and not job.cancelled:
                    self._hand_over(job)
        else:
            log.warn("SMPP session ended: {event!r}", event=event)
            if self._protocol is protocol:
                self._protocol = None
        self._notify(self._observers.states, event)

    def _requeue(self, event: JobsReturned) -> None:
        for progress in event.jobs:
            job = self._jobs.get(progress.ref)
            if job is None:
                continue
            job.in_session = False
            job.message_ids = progress.message_ids
            if job.cancelled:
                del self._jobs[job.ref]

    @staticmethod
    def _notify(observers: list[Callable[[Any], object]], event: object) -> None:
        for observer in observers:
            try:
                observer(event)
            except Exception:
                log.failure("SMPP observer failed on {event!r}", event=event)
