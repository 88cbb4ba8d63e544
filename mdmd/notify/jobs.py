"""
Push jobs in the store: units of work C{fn(root, ...)} returning plain values.

A job is one push to one device, of one of two kinds (L{PushKind}): a
B{notification} wakes the device, a B{bootstrap} gives a classic OMA DM
device its DM account (an OMA Client Provisioning document, authenticated
with a NETWPIN or USERPIN MAC, as WAP push SMS to its MSISDN; no session
id). A notification goes by one route (C{PushJob.route}; which one is
L{mdmd.notify.routes}'s choice): "sms", package #0 for its DM account, with
a session id the device echoes, as WAP push SMS to its MSISDN (L{enqueue});
or "wns", a raw notification to a Windows device's WNS channel (no session
id: Windows echoes nothing of it; L{enqueue_wns}). Every job changes state
only through L{TRANSITIONS}, one table keyed by (state, event)::

    queued ──SUBMIT──► submitted ──DELIVER──► delivered ──ANSWER──► answered

    open (queued, submitted, delivered) ──ANSWER──► answered   (receipts are optional)
                                        ──EXPIRE──► expired
    queued, submitted ──DELIVER──► delivered,  ──UNDELIVERED──► failed
    queued ──REFUSE──► failed

 - B{queued}: built and stored; not every segment acknowledged by the SMSC yet.
   The message ids the SMSC gives are kept as they come, so a restart
   resubmits only the segments it never acknowledged.
 - B{submitted}: every segment acknowledged (or the job was written to the
   spool directory, or WNS accepted the notification: its 200 with
   X-WNS-Status "received" says WNS has it, cached if the device is away,
   not that the device got it).
 - B{delivered}: the SMSC's receipts say every segment reached the handset
   (WNS reports no delivery: a WNS job goes from submitted to answered).
 - B{answered}: an SMS notification: the device opened the DM session
   (Alert 1200) with the job's session id (L{answer_push}); a bootstrap or a
   WNS notification: the device authenticated a DM session that began after
   the job was submitted (L{answer_session}): with the account it was sent,
   or after the notification it was sent. Both are called from the DM
   check-in's unit of work. (A session begun before submission cannot have
   been caused by the job; one that authenticates afterwards shows the
   device holds the account, or came, whichever way it got there. A device
   that opens its session before WNS's acknowledgement of the notification
   is recorded answers the job only with its next session.)
 - B{failed}: the SMSC refused the job for good, or a receipt said a segment
   was not delivered. B{expired}: not answered within the configured time.

What the SMSC reports may come after the job moved on (the device answered
before the acknowledgement was recorded, a duplicate receipt, a job
submitted by two nodes): the table keeps the job where it is for those, and
the report's facts (message ids, receipts) are still recorded. Answering or
expiring a job that is no longer open is our bug (L{IllegalPushMove}).

The segments are built once, when the job is queued (with the device's
credentials and nonces of that moment), so every resubmission sends the same
octets; a bootstrap's USERPIN is used for its MAC and then forgotten.
Package #0 names the device's server id (its C{dm_server_id}, or the
configured provider id) and is signed with its server credential (name,
secret, nonce: what it checks our SyncHdr credential with). Session ids are
unique among a device's open notifications, random, non-zero; the device's
SessionID matches one in hexadecimal (either case) or decimal.

Containers: C{pushes} (device id → L{PushLog}), C{push_open} ((device id, seq)
→ True for jobs queued, submitted or delivered) and C{push_messages}
(message id key → (device id, seq, segment index)) for receipts; the due
indexes (L{mdmd.store.due}) C{push_expiry} (every job by its expiry: an
entry stays until it falls due, whatever became of the job) and
C{push_finished} (finished jobs by the time they finished), so that the
sweeps (L{expire_due}, L{purge_due}) read only what is due, a batch per
transaction.
C{push_index} holds (created at, device id, seq) of every job kept, the
order operators list them in. A job is made in L{_keep}, changes state in
L{_move} and goes in L{_forget}: the three keep the count of jobs by state
(L{STATE_COUNTS}) and C{push_index} in the same transaction.

Listing pages (L{push_page}): all jobs in the order they were made,
through C{push_index}; one device's by its sequence numbers; either way
oldest or newest first. Filters on state and kind are checked on each job,
within the page's scan limit.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from mdmd.devices import lifecycle
from mdmd.devices.accounts import DeviceKind
from mdmd.devices.records import UnknownDevice
from mdmd.errors import Conflict, NotFound, PeerError
from mdmd.notify.bootstrap import BootstrapPin, InvalidImsi, Sec, bootstrap_segments
from mdmd.notify.pkg0 import DEFAULT_NONCE, DEFAULT_VERSION, UIMode, build_package0, session_id_text, session_ids_for
from mdmd.notify.provisioning_doc import (
    BootstrapAccount,
    DMCredential,
    DMServer,
    ProvisioningDoc,
    account_document,
    to_wbxml,
)
from mdmd.notify.smpp_session import Address
from mdmd.notify.smpp_pdu import MessageState
from mdmd.notify.wap import (
    DATA_CODING_8BIT,
    IEI_CONCAT_8BIT,
    SmsSegment,
    wap_push_segments,
)
from mdmd.store import due
from mdmd.store.counters import Family
from mdmd.store.migration import Pass
from mdmd.store.models import Device, PushJob, PushLog
from mdmd.store.paging import Listing, Page, PageRequest, keys_after, keys_before

__all__ = [
    "ANSWERED",
    "BOOTSTRAP",
    "CannotBootstrap",
    "DELIVERED",
    "EXPIRED",
    "FAILED",
    "IllegalPushMove",
    "InvalidMsisdn",
    "JobRef",
    "JobSweep",
    "NOTIFICATION",
    "NotPushable",
    "OPEN",
    "OutgoingPush",
    "PushInfo",
    "PushEvent",
    "PushQuery",
    "LISTING",
    "DEVICE_LISTING",
    "STATE_COUNTS",
    "RECOUNT",
    "DUE_INDEX",
    "push_page",
    "PushKind",
    "PushSettings",
    "PushState",
    "QUEUED",
    "ROUTE_SMS",
    "ROUTE_WNS",
    "STATES",
    "SUBMITTED",
    "TRANSITIONS",
    "UnknownPush",
    "answer_push",
    "answer_session",
    "bootstrap_document",
    "destination_of",
    "enqueue",
    "enqueue_bootstrap",
    "enqueue_wns",
    "expire",
    "expire_due",
    "list_pushes",
    "msisdn_of",
    "next_state",
    "parse_msisdn",
    "purge",
    "purge_due",
    "push_counts",
    "push_facts",
    "queued_jobs",
    "record_receipt",
    "record_refused",
    "record_ids",
    "outgoing",
    "record_submitted",
    "server_id_of",
    "set_msisdn",
]

Root = MutableMapping[str, Any]
#: A job's name everywhere: (device id, per-device sequence number).
JobRef = tuple[str, int]


class PushKind(enum.Enum):
    """
    What a job carries (C{PushJob.kind}).
    """

    #: package #0: wake the device
    NOTIFICATION = "notification"
    #: an OMA CP document: the device's DM account
    BOOTSTRAP = "bootstrap"


class PushState(enum.Enum):
    QUEUED = "queued"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    ANSWERED = "answered"
    FAILED = "failed"
    EXPIRED = "expired"


class PushEvent(enum.Enum):
    #: the SMSC acknowledged every segment, or the job was written to the spool
    SUBMIT = "submit"
    #: the SMSC refused the job for good
    REFUSE = "refuse"
    #: the receipts say every segment reached the handset
    DELIVER = "deliver"
    #: a receipt says a segment never will
    UNDELIVERED = "undelivered"
    #: the device opened the DM session with the job's session id
    ANSWER = "answer"
    #: the job was not answered in time
    EXPIRE = "expire"


#: Jobs waiting for the device (they hold their session id, and are in C{push_open}).
_OPEN = (PushState.QUEUED, PushState.SUBMITTED, PushState.DELIVERED)
_FINISHED = (PushState.ANSWERED, PushState.FAILED, PushState.EXPIRED)
#: What the SMSC may report after the job moved on, and the states that keep the job.
_LATE = {
    PushEvent.SUBMIT: (PushState.SUBMITTED, PushState.DELIVERED) + _FINISHED,
    PushEvent.REFUSE: (PushState.SUBMITTED, PushState.DELIVERED) + _FINISHED,
    PushEvent.DELIVER: (PushState.DELIVERED,) + _FINISHED,
    PushEvent.UNDELIVERED: (PushState.DELIVERED,) + _FINISHED,
}

TRANSITIONS: dict[tuple[PushState, PushEvent], PushState] = {
    (PushState.QUEUED, PushEvent.SUBMIT): PushState.SUBMITTED,
    (PushState.QUEUED, PushEvent.REFUSE): PushState.FAILED,
    # receipts for every segment before the last acknowledgement was recorded
    (PushState.QUEUED, PushEvent.DELIVER): PushState.DELIVERED,
    (PushState.QUEUED, PushEvent.UNDELIVERED): PushState.FAILED,
    # the device answered before the acknowledgement was recorded
    (PushState.QUEUED, PushEvent.ANSWER): PushState.ANSWERED,
    (PushState.QUEUED, PushEvent.EXPIRE): PushState.EXPIRED,
    (PushState.SUBMITTED, PushEvent.DELIVER): PushState.DELIVERED,
    (PushState.SUBMITTED, PushEvent.UNDELIVERED): PushState.FAILED,
    # receipts are optional
    (PushState.SUBMITTED, PushEvent.ANSWER): PushState.ANSWERED,
    (PushState.SUBMITTED, PushEvent.EXPIRE): PushState.EXPIRED,
    (PushState.DELIVERED, PushEvent.ANSWER): PushState.ANSWERED,
    (PushState.DELIVERED, PushEvent.EXPIRE): PushState.EXPIRED,
    # late reports keep the job where it is
    **{(state, event): state for event, states in _LATE.items() for state in states},
}

#: The time a job reached a state, by state (finished states also set C{finished_at}).
_REACHED_AT = {
    PushState.SUBMITTED: "submitted_at",
    PushState.DELIVERED: "delivered_at",
    PushState.ANSWERED: "answered_at",
}

#: The stored values of the states (C{PushJob.state}, L{PushInfo.state}).
QUEUED = PushState.QUEUED.value
SUBMITTED = PushState.SUBMITTED.value
DELIVERED = PushState.DELIVERED.value
ANSWERED = PushState.ANSWERED.value
FAILED = PushState.FAILED.value
EXPIRED = PushState.EXPIRED.value
STATES = tuple(state.value for state in PushState)
#: The stored values of the open states.
OPEN = tuple(state.value for state in _OPEN)
#: The stored values of the routes (C{PushJob.route}, L{PushInfo.route}); L{mdmd.notify.routes.Route} names them.
ROUTE_SMS = "sms"
ROUTE_WNS = "wns"
#: The stored values of the kinds (C{PushJob.kind}, L{PushInfo.kind}).
NOTIFICATION = PushKind.NOTIFICATION.value
BOOTSTRAP = PushKind.BOOTSTRAP.value
#: How many jobs the store keeps in each state.
STATE_COUNTS = Family("pushes.state", STATES)

#: Receipt states that mean the segment will never reach the handset.
_UNDELIVERED = frozenset(
    {
        MessageState.EXPIRED,
        MessageState.DELETED,
        MessageState.UNDELIVERABLE,
        MessageState.REJECTED,
        MessageState.UNKNOWN,
    }
)
_MSISDN = re.compile(r"\+?[1-9][0-9]{2,14}|[0-9]{3,15}")
_SEPARATORS = str.maketrans("", "", " -.()/")
#: AdditionalContext items of an enrollment that may carry the number.
_CONTEXT_NAMES = ("msisdn", "phonenumber")
_SEQ_MAX = sys.maxsize


class InvalidMsisdn(PeerError):
    """
    Not a phone number we can send an SMS to.
    """


class NotPushable(Conflict):
    """
    A push was asked for devices that cannot be woken (unknown, not enrolled, no MSISDN).
    """


class IllegalPushMove(Exception):
    """
    A move the table forbids was asked for: our bug.
    """

    def __init__(self, state: PushState, event: PushEvent) -> None:
        super().__init__(f"no transition from {state.value} on {event.value}")
        self.state = state
        self.event = event


def next_state(state: PushState, event: PushEvent) -> PushState:
    """
    The state C{event} moves a job in C{state} to (C{state} itself for a late report).

    @raise IllegalPushMove: if the table has no such move.
    """
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalPushMove(state, event) from None


class CannotBootstrap(Conflict):
    """
    A bootstrap was asked for a device that cannot get one (a Windows
    device, no MSISDN, no IMSI for a NETWPIN, no DM account, removed).
    """


class UnknownPush(NotFound):
    def __str__(self) -> str:
        return f"no push job {self.args[0]!r}"


@dataclass(frozen=True)
class PushSettings:
    """
    How package #0 and its SMS are built ([push] in the configuration).
    """

    version: int = DEFAULT_VERSION
    ui_mode: UIMode = UIMode.BACKGROUND
    data_coding: int = DATA_CODING_8BIT
    concat_iei: int = IEI_CONCAT_8BIT
    #: seconds after which a job not answered is expired
    expiry: float = 86400.0
    #: TON and NPI of numbers written without a leading "+"
    local_ton: int = 0
    local_npi: int = 1
    #: the server id of devices that have none of their own ([enrollment] provider_id)
    provider_id: str = "mdmd"


@dataclass(frozen=True)
class PushInfo:
    """
    A plain copy of a push job's record.
    """

    device_id: str
    seq: int
    kind: str
    state: str
    #: the package #0 session id of a notification; None for a bootstrap
    session_id: int | None
    msisdn: str
    segments: int
    via: str | None
    spool_file: str | None
    message_ids: tuple[str | None, ...]
    receipts: tuple[str | None, ...]
    attempts: int
    error: str | None
    created_at: float
    updated_at: float
    expires_at: float
    submitted_at: float | None
    delivered_at: float | None
    answered_at: float | None
    finished_at: float | None
    #: L{ROUTE_SMS} or L{ROUTE_WNS} (see L{mdmd.notify.routes})
    route: str = "sms"
    channel_uri: str = ""
    carrier: tuple[tuple[str, str], ...] = ()
    fallback_of: int | None = None

    @property
    def ref(self) -> JobRef:
        return (self.device_id, self.seq)

    @property
    def session_text(self) -> str | None:
        """
        The session id as the device echoes it (None for a bootstrap).
        """
        return None if self.session_id is None else session_id_text(self.session_id)

    def as_json(self) -> dict[str, Any]:
        # field by field, not dataclasses.asdict: its deep copy is most of a listing page's time
        value = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        value["session_id"] = self.session_text
        value["message_ids"] = list(self.message_ids)
        value["receipts"] = list(self.receipts)
        value["carrier"] = dict(self.carrier)
        return value


@dataclass(frozen=True)
class OutgoingPush:
    """
    What the notifier needs to send (or spool) one job.
    """

    info: PushInfo
    destination: Address
    segments: tuple[SmsSegment, ...]

    @property
    def ref(self) -> JobRef:
        return self.info.ref


# -- MSISDN ---------------------------------------------------------------------------


def parse_msisdn(text: str) -> str:
    """
    Normalise a phone number: digits with an optional leading "+" (E.164:
    country code then number, at most 15 digits). Blanks, dashes, dots,
    slashes and parentheses between the digits are dropped.

    @raise InvalidMsisdn: for anything else.
    """
    value = text.strip().translate(_SEPARATORS)
    if not _MSISDN.fullmatch(value):
        raise InvalidMsisdn(
            f"{text.strip()!r} is not a phone number: expected 3 to 15 digits, optionally "
            "after a + (international form, e.g. +491701234567)"
        )
    return value


def destination_of(msisdn: str, settings: PushSettings) -> Address:
    """
    The SMPP destination: a "+" number is international (TON 1, NPI 1 ISDN/E.164)
    and goes without its "+"; any other uses the configured local TON/NPI.
    """
    if msisdn.startswith("+"):
        return Address(msisdn[1:], 1, 1)
    return Address(msisdn, settings.local_ton, settings.local_npi)


def _msisdn_of(device: Any) -> tuple[str, str | None]:
    """
    (number, where it came from): set by an operator, or an C{MSISDN} /
    C{PhoneNumber} item of the enrollment's AdditionalContext.
    """
    if device.msisdn:
        return device.msisdn, "operator"
    for name, value in device.context:
        if name.lower() in _CONTEXT_NAMES:
            try:
                return parse_msisdn(value), "enrollment"
            except InvalidMsisdn:
                continue
    return "", None


def msisdn_of(device: Any) -> str:
    """
    The number a device is woken on by SMS ("" if none): an operator's, or its enrollment's.
    """
    return _msisdn_of(device)[0]


def set_msisdn(root: Root, device_id: str, msisdn: str | None) -> dict[str, Any]:
    """
    Set (or with None or "", clear) the number a device is woken on.

    @raise NotPushable: if there is no such device.
    @raise InvalidMsisdn: if the number is not one.
    """
    device = root["devices"].get(device_id)
    if device is None:
        raise NotPushable(f"no device {device_id!r}")
    device.msisdn = parse_msisdn(msisdn) if msisdn else ""
    facts = push_facts(root, device_id)
    assert facts is not None
    return facts


# -- reading ------------------------------------------------------------------------


#: PushInfo fields copied from the record's attributes of the same name.
_COPIED = tuple(f.name for f in dataclasses.fields(PushInfo) if f.name not in ("msisdn", "segments"))


def _info(job: PushJob) -> PushInfo:
    address, ton, _ = job.destination
    return PushInfo(
        msisdn=("+" if ton == 1 else "") + address,
        segments=len(job.segments),
        **{name: getattr(job, name) for name in _COPIED},
    )


def _outgoing(job: PushJob) -> OutgoingPush:
    address, ton, npi = job.destination
    return OutgoingPush(
        info=_info(job),
        destination=Address(address, ton, npi),
        segments=tuple(SmsSegment(sm, esm_class, coding) for esm_class, coding, sm in job.segments),
    )


def _job(root: Root, ref: JobRef) -> PushJob:
    log = root["pushes"].get(ref[0])
    job = None if log is None else log.jobs.get(ref[1])
    if job is None:
        raise UnknownPush(f"{ref[0]}#{ref[1]}")
    return job


def _open_refs(root: Root, device_id: str | None = None) -> Iterator[JobRef]:
    index = root["push_open"]
    if device_id is None:
        yield from index.keys()
    else:
        yield from index.keys(min=(device_id, 0), max=(device_id, _SEQ_MAX))


def _device_jobs(root: Root, device_id: str) -> Iterable[PushJob]:
    log = root["pushes"].get(device_id)
    return () if log is None else log.jobs.values()


#: All jobs, in the order they were made: keys of C{push_index}.
LISTING = Listing("pushes", (float, str, int), descending=True)
#: One device's jobs, by sequence number.
DEVICE_LISTING = Listing("device pushes", int, descending=True)


@dataclass(frozen=True)
class PushQuery:
    """
    Which jobs a listing wants.
    """

    device_id: str | None = None
    #: state values (L{STATES}); None: any
    states: frozenset[str] | None = None
    #: a L{PushKind} value
    kind: str | None = None

    def admits(self, job: PushJob) -> bool:
        return (self.states is None or job.state in self.states) and (self.kind is None or job.kind == self.kind)


def _before_index_key(key: tuple[float, str, int]) -> tuple[float, str, int]:
    created_at, device_id, seq = key
    return (created_at, device_id, seq - 1)


def _before_seq(seq: int) -> int:
    return seq - 1


def push_page(root: Root, query: PushQuery, request: PageRequest) -> Page[PushInfo]:
    """
    One page of the jobs C{query} wants, oldest first (or newest first if the request says so).

    @raise mdmd.store.paging.BadCursor: if the request's cursor is not one of this listing.
    """
    if query.device_id is not None:
        after, newest_first = DEVICE_LISTING.start(request)
        log = root["pushes"].get(query.device_id)
        if log is None:
            return Page(())
        jobs = log.jobs
        keys = keys_before(jobs, after, _before_seq) if newest_first else keys_after(jobs, after)

        def by_seq(seq: int) -> PushInfo | None:
            job = jobs.get(seq)
            return _info(job) if job is not None and query.admits(job) else None

        return DEVICE_LISTING.collect(keys, by_seq, request, newest_first)
    after, newest_first = LISTING.start(request)
    index = root["push_index"]
    keys = keys_before(index, after, _before_index_key) if newest_first else keys_after(index, after)

    def by_index(key: tuple[float, str, int]) -> PushInfo | None:
        log = root["pushes"].get(key[1])
        job = None if log is None else log.jobs.get(key[2])
        return _info(job) if job is not None and query.admits(job) else None

    return LISTING.collect(keys, by_index, request, newest_first)


def list_pushes(
    root: Root,
    device_id: str | None = None,
    limit: int | None = None,
    states: Iterable[str] | None = None,
) -> list[PushInfo]:
    """
    Jobs (of one device, or all), oldest first; with C{limit}, the newest
    that many: for tests and the manhole. Operators' listings page (L{push_page}).
    """
    query = PushQuery(device_id, None if states is None else frozenset(states))
    found: list[PushInfo] = []
    request = PageRequest(descending=bool(limit))
    while True:
        page = push_page(root, query, request)
        found.extend(page.items)
        if page.next is None or (limit and len(found) >= limit):
            break
        request = PageRequest(cursor=page.next)
    if limit:
        return list(reversed(found[:limit]))
    return found


def push_counts(root: Root) -> dict[str, int]:
    """
    How many jobs the store keeps in each state, from L{STATE_COUNTS}.
    """
    return STATE_COUNTS.counts(root)


def push_facts(root: Root, device_id: str) -> dict[str, Any] | None:
    """
    A device's number and its jobs at a glance (plain JSON values), or None.
    """
    device = root["devices"].get(device_id)
    if device is None:
        return None
    msisdn, source = _msisdn_of(device)
    counts: dict[str, int] = {}
    last = None
    for job in _device_jobs(root, device_id):
        counts[job.state] = counts.get(job.state, 0) + 1
        last = job
    return {
        "msisdn": msisdn or None,
        "msisdn_source": source,
        "jobs": counts,
        "last": None if last is None else _info(last).as_json(),
    }


def queued_jobs(root: Root) -> list[OutgoingPush]:
    """
    Every job not yet acknowledged by the SMSC, with the ids it already has.
    """
    found = []
    for ref in _open_refs(root):
        job = _job(root, ref)
        if job.state == QUEUED:
            found.append(_outgoing(job))
    return found


# -- changing ------------------------------------------------------------------------


def _new_session_id(root: Root, device_id: str, random: Callable[[int], bytes]) -> int:
    used = {_job(root, ref).session_id for ref in _open_refs(root, device_id)}
    if len(used) >= 0xFFFF:
        raise NotPushable(f"device {device_id} has 65535 pushes outstanding")
    for _ in range(64):
        candidate = int.from_bytes(random(2), "big")
        if candidate and candidate not in used:
            return candidate
    return next(n for n in range(1, 0x10000) if n not in used)


def server_id_of(device: Device, settings: PushSettings) -> str:
    """
    The server id package #0 names for C{device}: its own, or the configured provider id.
    """
    return device.dm_server_id or settings.provider_id


def enqueue(
    root: Root,
    device_ids: Iterable[str],
    settings: PushSettings,
    now: float,
    random: Callable[[int], bytes] = os.urandom,
    default_nonce: bool = False,
) -> list[OutgoingPush]:
    """
    Build and store one push job per device, in state queued.

    Every device is checked first; if any cannot be woken, nothing is queued.

    With C{default_nonce}, package #0 is signed with L{DEFAULT_NONCE}, for a
    device whose server nonce is out of step with ours (it refuses every
    package signed with ours); a device that accepts it holds that nonce
    from then on (OMA DM Notification §6.2), and so does its record here,
    so that the session it opens checks our credential with it.

    @raise NotPushable: naming every device that is unknown, not enrolled,
        without an MSISDN or without DM server credentials.
    """
    ids = list(dict.fromkeys(device_ids))
    problems = []
    for device_id in ids:
        device = root["devices"].get(device_id)
        if device is None:
            problems.append(f"no device {device_id!r}")
        elif not lifecycle.manageable(device):
            problems.append(f"device {device_id} is {device.status}")
        elif not _msisdn_of(device)[0]:
            problems.append(
                f"device {device_id} has no MSISDN (mdmctl device set {device_id} --msisdn +...)"
            )
        elif not (device.dm_server_name and device.dm_server_secret):
            problems.append(f"device {device_id} has no DM server credentials")
        elif len(server_id_of(device, settings).encode("utf-8")) > 255:
            problems.append(f"the server id of device {device_id} is longer than 255 octets")
    if problems:
        raise NotPushable("; ".join(problems))

    mask = 0xFF if settings.concat_iei == IEI_CONCAT_8BIT else 0xFFFF
    created = []
    for device_id in ids:
        device = root["devices"][device_id]
        log = root["pushes"].get(device_id)
        if log is None:
            log = root["pushes"][device_id] = PushLog()
        seq = log.next_seq
        log.next_seq = seq + 1
        session_id = _new_session_id(root, device_id, random)
        if default_nonce:
            device.dm_server_nonce = DEFAULT_NONCE
        package0 = build_package0(
            server_id=server_id_of(device, settings),
            name=device.dm_server_name,
            password=device.dm_server_secret,
            nonce=device.dm_server_nonce,
            session_id=session_id,
            ui_mode=settings.ui_mode,
            version=settings.version,
        )
        segments = wap_push_segments(
            package0,
            concat_ref=seq & mask,
            concat_iei=settings.concat_iei,
            data_coding=settings.data_coding,
        )
        address = destination_of(_msisdn_of(device)[0], settings)
        job = PushJob(
            device_id,
            seq,
            session_id,
            (address.addr, address.ton, address.npi),
            tuple((s.esm_class, s.data_coding, s.short_message) for s in segments),
            now,
            now + settings.expiry,
        )
        _keep(root, log, job)
        created.append(_outgoing(job))
    return created


def enqueue_wns(
    root: Root,
    channels: Iterable[tuple[str, str]],
    settings: PushSettings,
    now: float,
    fallback_of: int | None = None,
) -> list[OutgoingPush]:
    """
    Store one WNS notification, queued, per (device id, channel URI), for
    devices the caller checked (L{mdmd.notify.routes.enqueue}). A WNS job is
    one part (the notification: its message id is WNS's X-WNS-Msg-ID) and
    has no session id (Windows echoes nothing of it).
    """
    created = []
    for device_id, channel_uri in channels:
        log = root["pushes"].get(device_id)
        if log is None:
            log = root["pushes"][device_id] = PushLog()
        seq = log.next_seq
        log.next_seq = seq + 1
        job = PushJob(device_id, seq, None, ("", 0, 0), (), now, now + settings.expiry)
        job.route = ROUTE_WNS
        job.channel_uri = channel_uri
        job.fallback_of = fallback_of
        job.message_ids = job.message_keys = job.receipts = (None,)
        _keep(root, log, job)
        created.append(_outgoing(job))
    return created


def _bootstrap_account(device: Device, server: DMServer) -> BootstrapAccount:
    """
    The DM account a device is bootstrapped with, from its record: its server
    id (the configured provider id when it has none), our DM address, and
    both credentials with the nonces of this moment.
    """
    server_id = device.dm_server_id or server.provider_id
    return BootstrapAccount(
        server_id=server_id,
        name=server.name,
        address=server.address,
        server=DMCredential(
            device.dm_server_auth_type,
            device.dm_server_name or server_id,
            device.dm_server_secret,
            device.dm_server_nonce,
        ),
        client=DMCredential(
            device.dm_client_auth_type,
            device.dm_client_name,
            device.dm_client_secret,
            device.dm_client_nonce,
        ),
    )


def _bootstrap_problems(device: Device, pin: BootstrapPin) -> list[str]:
    device_id = device.device_id
    if device.kind == DeviceKind.WINDOWS.value:  # provisioned by its enrollment, never by a bootstrap
        return [
            f"device {device_id} is a Windows device: it gets its DM account when it "
            "enrolls, not by a bootstrap"
        ]
    if not lifecycle.manageable(device):
        return [f"device {device_id} is {device.status}"]
    problems = []
    if not _msisdn_of(device)[0]:
        problems.append(
            f"device {device_id} has no MSISDN (mdmctl device set {device_id} --msisdn +...)"
        )
    if pin.sec is Sec.NETWPIN:
        if not device.imsi:
            problems.append(
                f"device {device_id} has no IMSI, which a NETWPIN bootstrap needs "
                "(set it, or bootstrap with a USERPIN)"
            )
        else:
            try:
                pin.key(device.imsi)
            except InvalidImsi as e:
                problems.append(f"device {device_id}: {e}")
    if not (device.dm_client_name and device.dm_client_secret and device.dm_server_secret):
        problems.append(f"device {device_id} has no DM account (client name and secret, server secret)")
    return problems


def bootstrap_document(root: Root, device_id: str, server: DMServer) -> ProvisioningDoc:
    """
    The provisioning document a bootstrap of the device would carry now
    (secrets included: for the manhole and tests).

    @raise UnknownDevice: if there is no such device.
    """
    device = root["devices"].get(device_id)
    if device is None:
        raise UnknownDevice(device_id)
    return account_document(_bootstrap_account(device, server))


def enqueue_bootstrap(
    root: Root,
    device_id: str,
    pin: BootstrapPin,
    server: DMServer,
    settings: PushSettings,
    now: float,
) -> OutgoingPush:
    """
    Build and store a bootstrap job for one classic OMA DM device, in state
    queued: its DM account as a w7 provisioning document, in WBXML, with the
    MAC of C{pin}, wrapped as WAP push SMS for its MSISDN.

    @raise UnknownDevice: if there is no such device.
    @raise CannotBootstrap: naming every reason the device cannot get one
        (a Windows device, removed, no MSISDN, no IMSI for a NETWPIN, no DM
        account).
    """
    device = root["devices"].get(device_id)
    if device is None:
        raise UnknownDevice(device_id)
    problems = _bootstrap_problems(device, pin)
    if problems:
        raise CannotBootstrap("; ".join(problems))

    log = root["pushes"].get(device_id)
    if log is None:
        log = root["pushes"][device_id] = PushLog()
    seq = log.next_seq
    log.next_seq = seq + 1
    document = to_wbxml(account_document(_bootstrap_account(device, server)))
    mask = 0xFF if settings.concat_iei == IEI_CONCAT_8BIT else 0xFFFF
    segments = bootstrap_segments(
        document,
        pin,
        device.imsi,
        concat_ref=seq & mask,
        concat_iei=settings.concat_iei,
        data_coding=settings.data_coding,
    )
    address = destination_of(_msisdn_of(device)[0], settings)
    job = PushJob(
        device_id,
        seq,
        None,
        (address.addr, address.ton, address.npi),
        tuple((s.esm_class, s.data_coding, s.short_message) for s in segments),
        now,
        now + settings.expiry,
        kind=BOOTSTRAP,
    )
    _keep(root, log, job)
    return _outgoing(job)


def _opened(root: Root, job: PushJob) -> None:
    """
    Index a new job: open, and due to expire at its expiry.
    """
    root["push_open"][(job.device_id, job.seq)] = True
    due.file(root["push_expiry"], job.expires_at, job.device_id, job.seq)


def _keep_ids(
    root: Root, job: PushJob, message_ids: Iterable[str | None], keys: Iterable[str | None]
) -> None:
    ids = list(job.message_ids)
    known = list(job.message_keys)
    for index, (message_id, key) in enumerate(zip(message_ids, keys)):
        if message_id is None or ids[index] is not None:
            continue
        ids[index] = message_id
        if key:
            known[index] = key
            root["push_messages"][key] = (job.device_id, job.seq, index)
    job.message_ids = tuple(ids)
    job.message_keys = tuple(known)


def _keep(root: Root, log: PushLog, job: PushJob) -> None:
    """
    The one place a new job is stored: in its device's log, the index of
    open jobs, C{push_index} and the count of jobs by state.
    """
    log.jobs[job.seq] = job
    _opened(root, job)
    _track(root, job)


def _track(root: Root, job: PushJob) -> None:
    STATE_COUNTS.add(root, job.state)
    root["push_index"].add((job.created_at, job.device_id, job.seq))


def _forget(root: Root, log: PushLog, job: PushJob) -> None:
    """
    The one place a job goes: from its device's log, the message id index,
    C{push_index} and the count of jobs by state.
    """
    for key in job.message_keys:
        if key and root["push_messages"].get(key, (None, None))[:2] == (job.device_id, job.seq):
            del root["push_messages"][key]
    root["push_open"].pop((job.device_id, job.seq), None)
    root["push_index"].discard((job.created_at, job.device_id, job.seq))
    STATE_COUNTS.discard(root, job.state)
    del log.jobs[job.seq]


def _move(root: Root, job: PushJob, event: PushEvent, now: float) -> bool:
    """
    The one place a job changes state, with the time it got there and the
    index of open jobs; return whether the state changed (a late report
    leaves it).

    @raise IllegalPushMove: if the table has no such move.
    """
    state = PushState(job.state)
    target = next_state(state, event)
    if target is state:
        return False
    STATE_COUNTS.move(root, job.state, target.value)
    job.state = target.value
    job.updated_at = now
    reached = _REACHED_AT.get(target)
    if reached is not None:
        setattr(job, reached, now)
    if target in _FINISHED:
        job.finished_at = now
        root["push_open"].pop((job.device_id, job.seq), None)
        # (its push_expiry entry goes when it falls due: no second index write here)
        due.file(root["push_finished"], now, job.device_id, job.seq)
    return True


def record_ids(
    root: Root, ref: JobRef, message_ids: Iterable[str | None], keys: Iterable[str | None], now: float
) -> None:
    """
    The SMSC acknowledged some segments (None for the others): keep their
    ids at once, so that a restart does not send them again.
    """
    job = _job(root, ref)
    _keep_ids(root, job, message_ids, keys)
    job.updated_at = now


def outgoing(root: Root, ref: JobRef) -> OutgoingPush | None:
    """
    A job to send again, if it is still queued.
    """
    try:
        job = _job(root, ref)
    except UnknownPush:
        return None
    return _outgoing(job) if job.state == QUEUED else None


def record_submitted(
    root: Root,
    ref: JobRef,
    now: float,
    *,
    via: str,
    message_ids: Iterable[str | None] = (),
    keys: Iterable[str | None] = (),
    spool_file: str | None = None,
    carrier: Iterable[tuple[str, str]] = (),
) -> PushInfo:
    """
    Every segment was acknowledged by the SMSC (C{via} "smpp"), the job was
    written to the spool (C{via} "spool", C{spool_file}) or WNS accepted the
    notification (C{via} "wns", with what it said in C{carrier}).
    """
    job = _job(root, ref)
    _keep_ids(root, job, message_ids, keys)
    job.via = via
    job.spool_file = spool_file
    if carrier:
        job.carrier = tuple(carrier)
    job.attempts += 1
    job.updated_at = now
    if _move(root, job, PushEvent.SUBMIT, now):
        job.error = None
    return _info(job)


def record_refused(
    root: Root,
    ref: JobRef,
    now: float,
    *,
    error: str,
    retry: bool,
    message_ids: Iterable[str | None] = (),
    keys: Iterable[str | None] = (),
) -> PushInfo:
    """
    The SMSC refused the job: for good (failed) or for now (C{retry}: it stays
    queued, with the segments already acknowledged kept).
    """
    job = _job(root, ref)
    _keep_ids(root, job, message_ids, keys)
    job.attempts += 1
    job.error = error
    job.updated_at = now
    if not retry:
        _move(root, job, PushEvent.REFUSE, now)
    return _info(job)


def record_receipt(root: Root, key: str, state: MessageState, now: float) -> PushInfo | None:
    """
    A delivery receipt for the segment whose message id has C{key}: the job
    is delivered once every segment is, failed as soon as one is not.
    Intermediate states (enroute, accepted) change nothing. Returns the job,
    or None if no job has that message id.
    """
    where = root["push_messages"].get(key)
    if where is None:
        return None
    device_id, seq, index = where
    try:
        job = _job(root, (device_id, seq))
    except UnknownPush:
        return None
    if state in (MessageState.ENROUTE, MessageState.ACCEPTED):
        return _info(job)
    receipts = list(job.receipts)
    receipts[index] = state.name
    job.receipts = tuple(receipts)
    job.updated_at = now
    if state in _UNDELIVERED:
        if _move(root, job, PushEvent.UNDELIVERED, now):
            job.error = f"segment {index + 1} of {len(receipts)}: {state.name.lower()}"
    elif all(r == MessageState.DELIVERED.name for r in receipts):
        _move(root, job, PushEvent.DELIVER, now)
    return _info(job)


def answer_push(root: Root, device_id: str, session_id: str, now: float) -> PushInfo | None:
    """
    The device opened a session with Alert 1200 and this SyncHdr SessionID:
    its open job with that session id (the newest, should there be several)
    is answered. The SessionID is read as hexadecimal in either case, then
    as decimal (L{session_ids_for}). Called inside the DM endpoint's unit of work.
    """
    wanted = session_ids_for(session_id)
    open_jobs = [_job(root, ref) for ref in _open_refs(root, device_id)]
    for candidate in wanted:
        matching = [job for job in open_jobs if job.session_id == candidate]
        if matching:
            break
    else:
        return None
    job = matching[-1]
    _move(root, job, PushEvent.ANSWER, now)
    return _info(job)


def _answered_by_session(job: PushJob) -> bool:
    """
    Whether an authenticated session answers the job (a bootstrap, a WNS
    notification), rather than its session id (an SMS notification).
    """
    return job.kind == BOOTSTRAP or job.route == ROUTE_WNS


def answer_session(root: Root, device_id: str, session_started_at: float, now: float) -> list[PushInfo]:
    """
    The device authenticated a DM session that began at
    C{session_started_at}: its open bootstrap and WNS jobs submitted (or
    delivered) by then are answered. Called inside the DM endpoint's unit of
    work, on the message that authenticated the device.
    """
    answered = []
    for ref in list(_open_refs(root, device_id)):
        job = _job(root, ref)
        if not _answered_by_session(job):
            continue
        sent_at = job.submitted_at if job.submitted_at is not None else job.delivered_at
        if sent_at is None or sent_at > session_started_at:
            continue
        _move(root, job, PushEvent.ANSWER, now)
        answered.append(_info(job))
    return answered


@dataclass(frozen=True)
class JobSweep:
    """
    What one batch of a sweep of push jobs did.
    """

    #: the jobs expired (or forgotten)
    refs: tuple[JobRef, ...]
    #: where the next batch starts; None when nothing more is due
    cursor: due.Entry | None


#: How many index entries one batch of a sweep takes at most.
SWEEP_BATCH = 500


def expire_due(
    root: Root, now: float, limit: int | None = SWEEP_BATCH, after: due.Entry | None = None
) -> JobSweep:
    """
    Expire the open jobs past their expiry among the next C{limit} due
    entries of C{push_expiry} (from just after C{after}). Entries of jobs
    that finished meanwhile are dropped; one not due yet (an entry made when
    the index was built) is moved to its expiry.
    """
    index = root["push_expiry"]
    entries, cursor = due.due_entries(index, now, limit, after)
    expired = []
    for entry in entries:
        _, device_id, seq = entry
        ref = (device_id, seq)
        if ref not in root["push_open"]:
            index.remove(entry)
            continue
        job = _job(root, ref)
        if job.expires_at > now:
            due.refile(index, entry, job.expires_at)
            continue
        index.remove(entry)
        job.error = job.error or "not answered in time"
        _move(root, job, PushEvent.EXPIRE, now)
        expired.append(ref)
    return JobSweep(tuple(expired), cursor)


def expire(root: Root, now: float) -> list[JobRef]:
    """
    Every open job past its expiry becomes expired, in one transaction; returns them.
    """
    return list(expire_due(root, now, limit=None).refs)


def purge_due(
    root: Root, before: float, limit: int | None = SWEEP_BATCH, after: due.Entry | None = None
) -> JobSweep:
    """
    Forget the finished jobs (answered, failed, expired) that finished
    before C{before}, among the next C{limit} due entries of C{push_finished}
    (from just after C{after}), with their message ids.
    """
    index = root["push_finished"]
    entries, cursor = due.due_entries(index, before, limit, after)
    removed = []
    for entry in entries:
        _, device_id, seq = entry
        log = root["pushes"].get(device_id)
        job = None if log is None else log.jobs.get(seq)
        if job is None or job.finished_at is None:
            index.remove(entry)
            continue
        if job.finished_at >= before:
            due.refile(index, entry, job.finished_at)
            continue
        index.remove(entry)
        _forget(root, log, job)
        removed.append((device_id, seq))
    return JobSweep(tuple(removed), cursor)


def purge(root: Root, before: float) -> int:
    """
    Forget every finished job that finished before C{before}, in one transaction.
    """
    return len(purge_due(root, before, limit=None).refs)


def track(root: Root, log: PushLog) -> None:
    """
    Count and index the jobs of a log that never were (the store upgrade's recount).
    """
    for job in log.jobs.values():
        _track(root, job)


def _recount_start(root: Root) -> None:
    STATE_COUNTS.reset(root)
    root["push_index"].clear()


#: The store upgrade's pass over the push logs: every job counted by state and indexed.
RECOUNT = Pass("push logs", "pushes", lambda root, device_id, log: track(root, log), _recount_start)


def _file_due(root: Root, device_id: str, log: PushLog) -> None:
    for seq, job in log.jobs.items():
        if job.state in OPEN:
            # due at once: the expiry sweep reads the job's expiry and files it there
            root["push_expiry"].add((0, device_id, seq))
        elif job.finished_at is not None:
            due.file(root["push_finished"], job.finished_at, device_id, seq)


#: The store upgrade's pass filing every job in the due indexes of the sweeps.
DUE_INDEX = Pass("push logs", "pushes", _file_due)
