"""
The C{notify} service: wakes devices with OMA DM package #0 as WAP push SMS.

It owns the push jobs' journey out of the store (L{mdmd.notify.jobs} holds
their records and every unit of work on them):

 - L{Notifier.push} queues one job per device and hands it to the SMPP
   client (L{mdmd.notify.smpp_client.ESMEService}), or, with no SMSC configured,
   writes it to the spool directory for a gateway to pick up
   (L{spool_document} says what such a file holds);
 - the SMSC's message ids are written to the job as they come (one write per
   accepted segment of a multi-segment job, one when the whole job is
   accepted); on start, every job still queued is handed over again with
   the ids it has, so nothing the SMSC acknowledged is sent twice;
 - a temporary refusal keeps the job queued and tries again after
   C{retry_delay}; a permanent one fails it; while the SMSC is unreachable
   the jobs wait in the SMPP client;
 - delivery receipts move jobs to delivered or failed, the DM endpoint marks
   them answered (L{mdmd.notify.jobs.answer_push}); a sweep expires jobs not
   answered in time (every minute) and forgets finished ones after
   C{keep_seconds} (every hour).

The notifier's own store writes go through one lock, in the order the events
happened (a receipt is never recorded before the acknowledgement it follows).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, DeferredLock
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from mdmd.notify import jobs
from mdmd.notify.smpp_client import ESMEService, StateEvent, SubmitAbandoned, SubmitOutcome
from mdmd.notify.jobs import JobRef, OutgoingPush, PushInfo, PushSettings
from mdmd.notify.pkg0 import session_id_text
from mdmd.notify.smpp_session import BindFailed, Bound, DeliveryReceipt, LinkBroken, SegmentAccepted, Unbound
from mdmd.notify.smpp_pdu import message_id_key
from mdmd.store.runner import StoreService

__all__ = ["Notifier", "SPOOL_FORMAT", "spool_document", "spool_name"]

log = Logger()

#: The C{format} member of every spool file.
SPOOL_FORMAT = "mdmd-push/1"
#: How often expired jobs are looked for.
SWEEP_INTERVAL = 60.0
#: How often finished jobs past their keeping time are forgotten (this reads every job).
PURGE_INTERVAL = 3600.0

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def spool_name(ref: JobRef) -> str:
    """
    The file name of a job in the spool: stable, so writing it again replaces it.
    """
    device_id, seq = ref
    digest = hashlib.sha256(device_id.encode("utf-8")).hexdigest()[:8]
    return f"push-{_UNSAFE.sub('_', device_id)[:48]}-{digest}-{seq}.json"


def spool_document(job: OutgoingPush) -> dict[str, Any]:
    """
    What a spool file holds (JSON, one job per file)::

        {"format": "mdmd-push/1", "device_id": ..., "seq": 3,
         "session_id": "1A2B",                 # the SessionID the device will use
         "destination": {"address": "491701234567", "ton": 1, "npi": 1},
         "msisdn": "+491701234567",
         "created_at": ..., "expires_at": ...,   # POSIX seconds
         "segments": [{"esm_class": 64, "data_coding": 4,
                       "short_message": "0605040b8423f0..."}]}

    Each segment is one SMS as for an SMPP submit_sm: C{short_message} (hex)
    starts with the user-data header (ports 2948/9200, concatenation), so
    C{esm_class} has UDHI (0x40) set and C{data_coding} says 8-bit data.
    """
    info = job.info
    return {
        "format": SPOOL_FORMAT,
        "device_id": info.device_id,
        "seq": info.seq,
        "session_id": session_id_text(info.session_id),
        "destination": {
            "address": job.destination.addr,
            "ton": job.destination.ton,
            "npi": job.destination.npi,
        },
        "msisdn": info.msisdn,
        "created_at": info.created_at,
        "expires_at": info.expires_at,
        "segments": [
            {
                "esm_class": s.esm_class,
                "data_coding": s.data_coding,
                "short_message": s.short_message.hex(),
            }
            for s in job.segments
        ],
    }


def _write_spool(directory: str, job: OutgoingPush) -> str:
    """
    Write the job's file whole: a hidden temporary file, then a rename.
    """
    os.makedirs(directory, mode=0o750, exist_ok=True)
    path = os.path.join(directory, spool_name(job.ref))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.tmp")
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(spool_document(job), f, sort_keys=True)
        f.write("\n")
    os.replace(temporary, path)
    return path


@dataclass
class _Flight:
    """
    A job handed to the SMPP client.
    """

    deferred: Deferred[SubmitOutcome]
    segments: int


@dataclass
class _Link:
    state: str = "disconnected"
    detail: str | None = "not bound yet"


@dataclass
class _Timers:
    resume: IDelayedCall | None = None
    retries: dict[JobRef, IDelayedCall] = field(default_factory=dict)


class Notifier(Service):
    """
    Push jobs from the store to the SMSC (or the spool) and their fate back.

    @param esme: the SMPP client, or None to write jobs to C{spool_dir}.
    @param smsc: how to name the SMSC in status output (C{tcp:host:port}).
    @param retry_delay: seconds before a temporarily refused job is sent again.
    @param keep_seconds: how long finished jobs are kept (0: for ever).
    """

    name = "notify"

    def __init__(
        self,
        store: StoreService,
        settings: PushSettings,
        clock: IReactorTime,
        *,
        esme: ESMEService | None = None,
        spool_dir: str = "",
        smsc: str = "",
        retry_delay: float = 60.0,
        keep_seconds: float = 30 * 86400.0,
        sweep_interval: float = SWEEP_INTERVAL,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if esme is None and not spool_dir:
            raise ValueError("without an SMSC the notifier needs a spool directory")
        self.store = store
        self.settings = settings
        self.clock = clock
        self.esme = esme
        self.spool_dir = spool_dir
        self.smsc = smsc
        self.retry_delay = retry_delay
        self.keep_seconds = keep_seconds
        self._sweep_interval = sweep_interval
        self._random = random
        self._lock = DeferredLock()
        self._writes: set[Deferred[Any]] = set()
        self._flights: dict[JobRef, _Flight] = {}
        self._timers = _Timers()
        self._link = _Link()
        self._purged_at = float("-inf")
        self._loop: LoopingCall | None = None
        if esme is not None:
            esme.add_state_observer(self._on_state)
            esme.add_segment_observer(self._on_segment)
            esme.add_receipt_observer(self._on_receipt)

    # -- for the admin API and the manhole ---------------------------------------

    def push(self, device_ids: Sequence[str]) -> Deferred[list[PushInfo]]:
        """
        Wake these devices: one job each, queued for the SMSC, or written to
        the spool before this fires.

        @raise jobs.NotPushable: (in the Deferred) naming the devices that
            cannot be woken; then nothing is queued.
        """
        return Deferred.fromCoroutine(self._push(list(device_ids)))

    async def _push(self, device_ids: list[str]) -> list[PushInfo]:
        created = await self._write(
            jobs.enqueue, device_ids, self.settings, self.clock.seconds(), self._random
        )
        results = []
        for job in created:
            log.info(
                "push {device_id}#{seq} queued: session {session_id} to {msisdn}",
                device_id=job.info.device_id,
                seq=job.info.seq,
                session_id=session_id_text(job.info.session_id),
                msisdn=job.info.msisdn,
            )
            if self.esme is None:
                results.append(await self._spool(job))
            else:
                self._send(job)
                results.append(job.info)
        return results

    def _dispatch(self, job: OutgoingPush) -> None:
        """
        Send a job through the SMSC, or spool it.
        """
        if self.esme is None:
            self._track(Deferred.fromCoroutine(self._spool(job))).addErrback(
                lambda f: log.failure("spooling push {ref!r} failed", f, ref=job.ref)
            )
        else:
            self._send(job)

    @property
    def link(self) -> dict[str, Any]:
        """
        The SMPP link as the status output shows it.
        """
        if self.esme is None:
            return {"state": "not configured", "smsc": None, "spool_dir": self.spool_dir}
        state = "bound" if self.esme.bound else self._link.state
        return {
            "state": state,
            "smsc": self.smsc,
            "detail": None if state == "bound" else self._link.detail,
            "spool_dir": None,
        }

    def status(self) -> Deferred[dict[str, Any]]:
        """
        The link and how many jobs are in each state.
        """

        def combine(counts: dict[str, int]) -> dict[str, Any]:
            return {"link": self.link, "counts": counts}

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
        expired = await self._write(jobs.expire, now)
        for ref in expired:
            log.info("push {device_id}#{seq} expired unanswered", device_id=ref[0], seq=ref[1])
            self._forget(ref)
        if self.keep_seconds and now >= self._purged_at + PURGE_INTERVAL:
            self._purged_at = now
            removed = await self._write(jobs.purge, now - self.keep_seconds)
            if removed:
                log.info("forgot {count} finished push job(s)", count=removed)

    # -- sending ----------------------------------------------------------------------

    def _resume(self) -> None:
        """
        Once running: send (or spool) every job a previous run left queued.
        """
        self._timers.resume = None
        self._track(self.store.read(jobs.queued_jobs).addCallback(self._send_all)).addErrback(
            lambda f: log.failure("reading the queued push jobs failed", f)
        )

    def _send_all(self, queued: list[OutgoingPush]) -> None:
        if queued:
            log.info("{count} push job(s) still queued; sending them", count=len(queued))
        for job in queued:
            self._dispatch(job)

    def _send(self, job: OutgoingPush) -> None:
        assert self.esme is not None
        ref = job.ref
        if ref in self._flights or not self.running:
            return
        ids = job.info.message_ids
        try:
            d = self.esme.submit(
                ref, job.destination, job.segments, ids if any(ids) else None
            )
        except ValueError as e:
            self._record(jobs.record_refused, ref, self.clock.seconds(), error=str(e), retry=False)
            return
        self._flights[ref] = _Flight(d, len(job.segments))
        d.addBoth(self._landed, ref)

    def _landed(self, result: SubmitOutcome | Failure, ref: JobRef) -> None:
        self._flights.pop(ref, None)
        now = self.clock.seconds()
        if isinstance(result, SubmitOutcome):
            keys = self._keys(result.message_ids)
            if result.accepted:
                log.info(
                    "push {device_id}#{seq} accepted by the SMSC: {ids}",
                    device_id=ref[0],
                    seq=ref[1],
                    ids=", ".join(i or "" for i in result.message_ids),
                )
                self._record(
                    jobs.record_submitted, ref, now, via="smpp",
                    message_ids=result.message_ids, keys=keys,
                )
            else:
                retry = result.temporary and self.running
                error = f"SMSC refused: {result.status_name}"
                log.warn(
                    "push {device_id}#{seq}: {error}{then}",
                    device_id=ref[0],
                    seq=ref[1],
                    error=error,
                    then=f"; again in {self.retry_delay:g} s" if retry else "",
                )
                self._record(
                    jobs.record_refused, ref, now, error=error, retry=result.temporary,
                    message_ids=result.message_ids, keys=keys,
                )
                if retry:
                    self._retry_later(ref)
        elif result.check(SubmitAbandoned):
            ids = result.value.message_ids
            if any(ids):
                self._record(jobs.record_ids, ref, ids, self._keys(ids), now)
        elif not result.check(CancelledError):
            log.failure("push {device_id}#{seq} failed", result, device_id=ref[0], seq=ref[1])

    def _retry_later(self, ref: JobRef) -> None:
        self._timers.retries[ref] = self.clock.callLater(self.retry_delay, self._retry, ref)

    def _retry(self, ref: JobRef) -> None:
        self._timers.retries.pop(ref, None)

        def send(job: OutgoingPush | None) -> None:
            if job is not None and self.running:
                self._dispatch(job)

        self._track(self._lock.run(self.store.read, jobs.outgoing, ref).addCallback(send))

    def _forget(self, ref: JobRef) -> None:
        timer = self._timers.retries.pop(ref, None)
        if timer is not None and timer.active():
            timer.cancel()
        flight = self._flights.pop(ref, None)
        if flight is not None:
            flight.deferred.cancel()

    async def _spool(self, job: OutgoingPush) -> PushInfo:
        try:
            path = _write_spool(self.spool_dir, job)
        except OSError as e:
            error = f"cannot write to the spool: {e.strerror or e}"
            log.error(
                "push {device_id}#{seq}: {error}; again in {delay:g} s",
                device_id=job.info.device_id,
                seq=job.info.seq,
                error=error,
                delay=self.retry_delay,
            )
            info: PushInfo = await self._write(
                jobs.record_refused, job.ref, self.clock.seconds(), error=error, retry=True
            )
            if self.running:
                self._retry_later(job.ref)
            return info
        log.info(
            "push {device_id}#{seq} written to {path}",
            device_id=job.info.device_id,
            seq=job.info.seq,
            path=path,
        )
        info = await self._write(
            jobs.record_submitted, job.ref, self.clock.seconds(), via="spool", spool_file=path
        )
        return info

    # -- what the SMPP client tells us ---------------------------------------------------

    def _on_segment(self, event: SegmentAccepted) -> None:
        flight = self._flights.get(event.ref)  # type: ignore[arg-type]
        if flight is None or flight.segments == 1:
            return  # the job's outcome follows at once and records it
        ids: list[str | None] = [None] * flight.segments
        ids[event.index] = event.message_id
        self._record(jobs.record_ids, event.ref, ids, self._keys(ids), self.clock.seconds())

    def _on_receipt(self, receipt: DeliveryReceipt) -> None:
        def logged(info: PushInfo | None) -> None:
            if info is None:
                log.info(
                    "receipt for unknown message id {message_id}: {state}",
                    message_id=receipt.message_id,
                    state=receipt.state.name,
                )
            else:
                log.info(
                    "push {device_id}#{seq}: receipt {state}, job {job_state}",
                    device_id=info.device_id,
                    seq=info.seq,
                    state=receipt.state.name,
                    job_state=info.state,
                )

        self._record(
            jobs.record_receipt, receipt.key, receipt.state, self.clock.seconds()
        ).addCallback(logged)

    def _on_state(self, event: StateEvent) -> None:
        if isinstance(event, Bound):
            self._link = _Link("bound", event.system_id)
        elif isinstance(event, BindFailed):
            self._link = _Link("disconnected", event.reason)
        elif isinstance(event, LinkBroken):
            self._link = _Link("disconnected", event.reason)
        elif isinstance(event, Unbound):
            self._link = _Link(
                "disconnected", "the SMSC unbound" if event.by_peer else "unbound"
            )

    # -- plumbing --------------------------------------------------------------------------

    def _keys(self, message_ids: Sequence[str | None]) -> list[str | None]:
        assert self.esme is not None
        base = self.esme.config.submit_id_base
        return [None if i is None else message_id_key(i, base) for i in message_ids]

    def _write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """
        One of our units of work, after those already asked for.
        """
        return self._track(self._lock.run(self.store.transact, fn, *args, **kwargs))

    def _record(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """
        A write nobody waits for: its failure is logged.
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
