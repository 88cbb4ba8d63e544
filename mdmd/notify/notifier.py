"""
The C{notify} service: wakes devices with OMA DM package #0, and bootstraps
classic ones with their DM account (OMA Client Provisioning), carried by a
push transport (L{mdmd.notify.transport.IPushTransport}: SMS through an
SMSC, or a spool directory), or with a WNS raw notification (Windows).

It owns the push jobs' journey out of the store (L{mdmd.notify.jobs} holds
their records and every unit of work on them):

 - L{Notifier.push} queues one notification per device and route
   (L{mdmd.notify.routes} picks them: WNS for a Windows device with a usable
   channel, SMS for one with an MSISDN, or what the request asks for),
   L{Notifier.bootstrap} one bootstrap, and each job goes to its route's
   transport;
 - what the transport reports is written to the job as it comes: each part
   accepted before the whole job is, then the job's outcome (sent, refused
   for now or for good, abandoned at a stop); on start, every job still
   queued is handed over again with the message ids it has, so nothing the
   carrier acknowledged is sent twice;
 - a refusal for now keeps the job queued and tries again after
   C{retry_delay}; one for good fails it; while the carrier is unreachable
   the jobs wait in the transport; a refusal that says the route is gone
   (a WNS channel WNS no longer knows) fails the job and queues one by the
   route's fall-back (L{mdmd.notify.routes.FALLBACK}: SMS), if the device
   has it;
 - delivery reports move jobs to delivered or failed, the DM endpoint marks
   them answered (L{mdmd.notify.jobs.answer_push}); a sweep expires jobs not
   answered in time (every minute) and forgets finished ones after
   C{keep_seconds} (every hour), each reading only the jobs due (an index by
   time), a batch per transaction.

The notifier never asks which transport it holds: a job's route names it
(L{mdmd.notify.routes.PushRoutes}); past queueing, a job's kind matters to
neither of them. Its own store writes go
through one lock, in the order the events happened (a receipt is never
recorded before the acknowledgement it follows).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, DeferredLock
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mdmd.notify import jobs, routes
from mdmd.notify.bootstrap import BootstrapPin
from mdmd.notify.jobs import JobRef, NotPushable, OutgoingPush, PushInfo, PushSettings
from mdmd.notify.provisioning_doc import DMServer
from mdmd.notify.routes import PushRoutes, Route, Via
from mdmd.notify.transport import (
    Abandoned,
    DeliveryReport,
    IPushListener,
    IPushTransport,
    Outcome,
    PartAccepted,
    Refused,
    Sent,
)
from mdmd.store.runner import StoreService

__all__ = ["BootstrapUnavailable", "Notifier"]

log = Logger()

#: How often expired jobs are looked for.
SWEEP_INTERVAL = 60.0
#: How often finished jobs past their keeping time are forgotten.
PURGE_INTERVAL = 3600.0


#: What a caller adds to the unit of work that queues jobs: C{also(root, created)}.
Also = Callable[[Any, Any], None]


def _queue_and(root: Any, queue: Callable[..., Any], also: Also | None, *args: Any) -> Any:
    """
    A unit of work: C{queue(root, *args)}, then C{also(root, what it queued)}.
    """
    created = queue(root, *args)
    if also is not None:
        also(root, created)
    return created


class BootstrapUnavailable(Exception):
    """
    The notifier was built without the DM server a bootstrap names: our bug.
    """


@dataclass
class _Timers:
    resume: IDelayedCall | None = None
    retries: dict[JobRef, IDelayedCall] = field(default_factory=dict)


@implementer(IPushListener)
class Notifier(Service):
    """
    Push jobs from the store to their transports, and their fate back.

    @param transport: what carries the SMS jobs (when C{routes} is not given).
    @param routes: the transport of each route; the notifier attaches
        itself as the listener of each.
    @param retry_delay: seconds before a job refused for now is sent again.
    @param keep_seconds: how long finished jobs are kept (0: for ever).
    @param dm_server: who bootstrapped devices are told their DM server is
        (called when a bootstrap is queued: the DM address is known once
        HTTPS is bound).
    """

    name = "notify"

    def __init__(
        self,
        store: StoreService,
        settings: PushSettings,
        clock: IReactorTime,
        *,
        transport: IPushTransport | None = None,
        routes: PushRoutes | None = None,
        retry_delay: float = 60.0,
        keep_seconds: float = 30 * 86400.0,
        sweep_interval: float = SWEEP_INTERVAL,
        random: Callable[[int], bytes] = os.urandom,
        dm_server: Callable[[], DMServer] | None = None,
    ) -> None:
        self.store = store
        self._dm_server = dm_server
        self.settings = settings
        self.clock = clock
        if routes is None:
            if transport is None:
                raise TypeError("a notifier needs a transport or routes")
            routes = PushRoutes({Route.SMS: transport})
        self.routes = routes
        #: the SMS route's transport
        self.transport = routes.transports[Route.SMS]
        self.retry_delay = retry_delay
        self.keep_seconds = keep_seconds
        self._sweep_interval = sweep_interval
        self._random = random
        self._lock = DeferredLock()
        self._writes: set[Deferred[Any]] = set()
        #: the jobs the transport has, each with its outcome to come
        self._flights: dict[JobRef, Deferred[Outcome]] = {}
        self._timers = _Timers()
        self._purged_at = float("-inf")
        self._loop: LoopingCall | None = None
        for carrier in routes:
            carrier.attach(self)

    # -- for the admin API and the manhole ---------------------------------------

    def push(
        self, device_ids: Sequence[str], also: Also | None = None, via: Via = Via.AUTO, default_nonce: bool = False
    ) -> Deferred[list[PushInfo]]:
        """
        Wake these devices: one job each per route C{via} picks, handed to
        the route's transport. A job the transport settles at once (the
        spool writes it) is answered as recorded after that; any other as
        queued. C{also(root, jobs)} runs in the transaction that queues them
        (to record the request with them). C{default_nonce}: package #0 signed
        with the default nonce, to reach a device whose nonce is out of step.

        @raise jobs.NotPushable: (in the Deferred) naming the devices that
            cannot be woken; then nothing is queued.
        """
        return Deferred.fromCoroutine(self._push(list(device_ids), via, also, default_nonce))

    def _enqueue(
        self,
        device_ids: list[str],
        via: Via,
        fallback_of: int | None = None,
        also: Also | None = None,
        default_nonce: bool = False,
    ) -> Deferred[list[OutgoingPush]]:
        queue = partial(
            routes.enqueue,
            via=via,
            routes=self.routes.configured,
            hosts=self.routes.hosts,
            fallback_of=fallback_of,
            default_nonce=default_nonce,
        )
        return self._write(
            _queue_and, queue, also, device_ids, self.settings, self.clock.seconds(), self._random
        )

    async def _push(
        self, device_ids: list[str], via: Via, also: Also | None, default_nonce: bool = False
    ) -> list[PushInfo]:
        created = await self._enqueue(device_ids, via, also=also, default_nonce=default_nonce)
        results = []
        for job in created:
            self._queued(job)
            results.append(await self._hand_over(job))
        return results

    def _queued(self, job: OutgoingPush) -> None:
        info = job.info
        log.info(
            "push {device_id}#{seq} queued: {session}to {to}",
            device_id=info.device_id,
            seq=info.seq,
            session="" if info.session_text is None else f"session {info.session_text} ",
            to=info.msisdn if info.route == Route.SMS.value else "its WNS channel",
        )

    def bootstrap(self, device_id: str, pin: BootstrapPin, also: Also | None = None) -> Deferred[PushInfo]:
        """
        Send a classic OMA DM device its DM account (OMA CP over WAP push),
        authenticated with C{pin}: one job, handed to the transport, answered
        like L{push}'s.

        @raise jobs.CannotBootstrap: (in the Deferred) why the device cannot
            get one; then nothing is queued.
        """
        return Deferred.fromCoroutine(self._bootstrap(device_id, pin, also))

    def dm_server(self) -> DMServer:
        """
        Who a bootstrapped device is told its DM server is, now.

        @raise BootstrapUnavailable: if the notifier was built without it.
        """
        if self._dm_server is None:
            raise BootstrapUnavailable("this notifier does not know the DM server")
        return self._dm_server()

    async def _bootstrap(self, device_id: str, pin: BootstrapPin, also: Also | None) -> PushInfo:
        job = await self._write(
            _queue_and, jobs.enqueue_bootstrap, also, device_id, pin, self.dm_server(), self.settings, self.clock.seconds()
        )
        log.info(
            "bootstrap {device_id}#{seq} queued: {pin}, {segments} SMS to {msisdn}",
            device_id=job.info.device_id,
            seq=job.info.seq,
            pin=pin.sec.name,
            segments=job.info.segments,
            msisdn=job.info.msisdn,
        )
        return await self._hand_over(job)

    async def _hand_over(self, job: OutgoingPush) -> PushInfo:
        """
        Send a job just queued: as recorded after its outcome if the transport
        settled it at once, else as queued.
        """
        recorded = self._send(job)
        info = None if recorded is None else await recorded
        return info or job.info

    @property
    def link(self) -> dict[str, Any]:
        """
        The SMS transport's link as the status output shows it.
        """
        return self.transport.describe()

    def status(self) -> Deferred[dict[str, Any]]:
        """
        The SMS link, every route's link, and how many jobs are in each state.
        """

        def combine(counts: dict[str, int]) -> dict[str, Any]:
            return {"link": self.link, "links": self.routes.describe(), "counts": counts}

        return self.store.read(jobs.push_counts).addCallback(combine)

    # -- service ---------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._timers.resume = self.clock.callLater(0, self._resume)
        self._loop = LoopingCall(self.sweep)
        self._loop.clock = self.clock
        self._loop.start(self._sweep_interval, now=False)

    def stopService(self) -> Deferred[None]:
        """
        Stop sweeping and retrying, and wait for the store writes under way.

        Jobs still queued stay queued in the store and are sent on the next start.
        """
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        for timer in [self._timers.resume, *self._timers.retries.values()]:
            if timer is not None and timer.active():
                timer.cancel()
        self._timers = _Timers()
        writes = list(self._writes)
        return DeferredList(writes, consumeErrors=True).addCallback(lambda _: None)

    def sweep(self) -> Deferred[None]:
        """
        Expire jobs not answered in time; forget old finished ones.
        """
        return self._track(Deferred.fromCoroutine(self._sweep())).addErrback(
            lambda f: log.failure("sweeping push jobs failed", f)
        )

    async def _sweep(self) -> None:
        now = self.clock.seconds()
        for ref in await self._batches(jobs.expire_due, now):
            log.info("push {device_id}#{seq} expired unanswered", device_id=ref[0], seq=ref[1])
            self._forget(ref)
        if self.keep_seconds and now >= self._purged_at + PURGE_INTERVAL:
            self._purged_at = now
            removed = await self._batches(jobs.purge_due, now - self.keep_seconds)
            if removed:
                log.info("forgot {count} finished push job(s)", count=len(removed))

    async def _batches(self, sweep: Callable[..., jobs.JobSweep], when: float) -> list[JobRef]:
        """
        Run a sweep of L{jobs} a batch per transaction until nothing more is due.
        """
        refs: list[JobRef] = []
        cursor = None
        while True:
            batch = await self._write(sweep, when, jobs.SWEEP_BATCH, cursor)
            refs += batch.refs
            if batch.cursor is None or not self.running:
                return refs
            cursor = batch.cursor

    # -- sending ----------------------------------------------------------------------

    def _resume(self) -> None:
        """
        Once running: hand over every job a previous run left queued.
        """
        self._timers.resume = None
        self._track(self.store.read(jobs.queued_jobs).addCallback(self._send_all)).addErrback(
            lambda f: log.failure("reading the queued push jobs failed", f)
        )

    def _send_all(self, queued: list[OutgoingPush]) -> None:
        if queued:
            log.info("{count} push job(s) still queued; sending them", count=len(queued))
        for job in queued:
            self._send(job)

    def _send(self, job: OutgoingPush) -> Deferred[PushInfo | None] | None:
        """
        Hand a job to the transport, unless it has it already or we are stopped.

        @return: if the transport settled the job at once, a Deferred of the
            job as recorded after that; else None (the outcome is recorded
            whenever it comes).
        """
        ref = job.ref
        if ref in self._flights or not self.running:
            return None
        outcome = self.routes.transport_for(job.info.route).send(job)
        settled = outcome.called
        self._flights[ref] = outcome
        recorded: Deferred[PushInfo | None] = outcome.addCallbacks(
            self._landed, self._lost, callbackArgs=(job,), errbackArgs=(ref,)
        )
        return recorded if settled else None

    def _landed(self, outcome: Outcome, job: OutgoingPush) -> Deferred[PushInfo | None] | None:
        self._flights.pop(job.ref, None)
        return _RECORD[type(outcome)](self, job, outcome)

    def _lost(self, failure: Failure, ref: JobRef) -> None:
        self._flights.pop(ref, None)
        if not failure.check(CancelledError):
            log.failure("push {device_id}#{seq} failed", failure, device_id=ref[0], seq=ref[1])

    def _sent(self, job: OutgoingPush, outcome: Sent) -> Deferred[PushInfo | None]:
        ref = job.ref
        log.info(
            "push {device_id}#{seq} {detail}", device_id=ref[0], seq=ref[1], detail=outcome.detail
        )
        return self._record(
            jobs.record_submitted,
            ref,
            self.clock.seconds(),
            via=self.routes.transport_for(job.info.route).via,
            message_ids=outcome.message_ids,
            keys=outcome.keys,
            spool_file=outcome.location,
            carrier=outcome.carrier,
        )

    def _refused(self, job: OutgoingPush, outcome: Refused) -> Deferred[PushInfo | None]:
        ref = job.ref
        retry = outcome.retry and self.running
        log.warn(
            "push {device_id}#{seq}: {error}{then}",
            device_id=ref[0],
            seq=ref[1],
            error=outcome.error,
            then=f"; again in {self.retry_delay:g} s" if retry else "",
        )
        recorded = self._record(
            jobs.record_refused,
            ref,
            self.clock.seconds(),
            error=outcome.error,
            retry=outcome.retry,
            message_ids=outcome.message_ids,
            keys=outcome.keys,
        )
        if retry:
            self._retry_later(ref)
        elif outcome.reroute and self.running:

            def then(info: PushInfo | None) -> PushInfo | None:
                self._track(self._fall_back(job))
                return info

            recorded.addCallback(then)
        return recorded

    def _fall_back(self, job: OutgoingPush) -> Deferred[None]:
        """
        The job's route to its device is gone (the job failed): wake the
        device by the route's fall-back instead, if it has one and the device has it.
        """
        via = routes.FALLBACK.get(Route(job.info.route))
        device_id, seq = job.ref

        async def fall_back() -> None:
            if via is None or not self.running:
                return
            try:
                created = await self._enqueue([device_id], via, fallback_of=seq)
            except NotPushable as e:
                log.info("push {device_id}#{seq}: no fall-back: {reason}", device_id=device_id, seq=seq, reason=e)
                return
            for new in created:
                log.info(
                    "push {device_id}#{seq}: falling back to {route}: push #{new}",
                    device_id=device_id,
                    seq=seq,
                    route=new.info.route,
                    new=new.info.seq,
                )
                self._queued(new)
                self._send(new)

        return Deferred.fromCoroutine(fall_back()).addErrback(
            lambda f: log.failure("falling back for push {device_id}#{seq} failed", f, device_id=device_id, seq=seq)
        )

    def _abandoned(self, job: OutgoingPush, outcome: Abandoned) -> Deferred[PushInfo | None] | None:
        if not any(outcome.message_ids):
            return None
        return self._record(
            jobs.record_ids, job.ref, outcome.message_ids, outcome.keys, self.clock.seconds()
        )

    def _retry_later(self, ref: JobRef) -> None:
        self._timers.retries[ref] = self.clock.callLater(self.retry_delay, self._retry, ref)

    def _retry(self, ref: JobRef) -> None:
        self._timers.retries.pop(ref, None)

        def send(job: OutgoingPush | None) -> None:
            if job is not None:
                self._send(job)

        self._track(self._lock.run(self.store.read, jobs.outgoing, ref).addCallback(send))

    def _forget(self, ref: JobRef) -> None:
        timer = self._timers.retries.pop(ref, None)
        if timer is not None and timer.active():
            timer.cancel()
        flight = self._flights.pop(ref, None)
        if flight is not None:
            flight.cancel()

    # -- what the transport reports (IPushListener) ---------------------------------------

    def part_accepted(self, event: PartAccepted) -> None:
        if event.ref not in self._flights or event.parts == 1:
            return  # the job's outcome follows at once and records it
        ids: list[str | None] = [None] * event.parts
        keys: list[str | None] = [None] * event.parts
        ids[event.index] = event.message_id
        keys[event.index] = event.key
        self._record(jobs.record_ids, event.ref, ids, keys, self.clock.seconds())

    def delivery_reported(self, report: DeliveryReport) -> None:
        def logged(info: PushInfo | None) -> None:
            if info is None:
                log.info(
                    "receipt for unknown message id {message_id}: {state}",
                    message_id=report.message_id,
                    state=report.state.name,
                )
            else:
                log.info(
                    "push {device_id}#{seq}: receipt {state}, job {job_state}",
                    device_id=info.device_id,
                    seq=info.seq,
                    state=report.state.name,
                    job_state=info.state,
                )

        self._record(
            jobs.record_receipt, report.key, report.state, self.clock.seconds()
        ).addCallback(logged)

    # -- plumbing --------------------------------------------------------------------------

    def _write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """
        One of our units of work, after those already asked for.
        """
        return self._track(self._lock.run(self.store.transact, fn, *args, **kwargs))

    def _record(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """
        A write nobody waits for: its failure is logged (and it fires with None).
        """
        d = self._write(fn, *args, **kwargs)
        d.addErrback(lambda f: log.failure("recording a push event failed", f))
        return d

    def _track(self, d: Deferred[Any]) -> Deferred[Any]:
        self._writes.add(d)

        def done(result: Any) -> Any:
            self._writes.discard(d)
            return result

        return d.addBoth(done)


#: How each outcome is recorded. (A table keyed by type cannot say that each
#: entry takes its own key's type; hence Any.)
_RECORD: Final[dict[type, Callable[[Notifier, OutgoingPush, Any], Deferred[PushInfo | None] | None]]] = {
    Sent: Notifier._sent,
    Refused: Notifier._refused,
    Abandoned: Notifier._abandoned,
}
