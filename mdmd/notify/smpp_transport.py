"""
The SMPP transport: push jobs as WAP push SMS through an SMSC, over the SMPP
client L{mdmd.notify.smpp_client.ESMEService}.

It translates between the client's terms and the transport's
(L{mdmd.notify.transport}): a L{SubmitOutcome} becomes L{Sent} or L{Refused},
L{SubmitAbandoned} becomes L{Abandoned}, each L{SegmentAccepted} a
L{PartAccepted}, each L{DeliveryReceipt} a L{DeliveryReport}; message ids
get their canonical keys in the SMSC's configured base. It follows the
session's state events to describe the link.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from mdmd.notify.jobs import JobRef, OutgoingPush
from mdmd.notify.smpp_client import ESMEService, StateEvent, SubmitAbandoned, SubmitOutcome
from mdmd.notify.smpp_pdu import message_id_key
from mdmd.notify.smpp_session import BindFailed, Bound, DeliveryReceipt, LinkBroken, SegmentAccepted, Unbound
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

__all__ = ["SmppTransport"]


@dataclass(frozen=True)
class _Link:
    state: str = "disconnected"
    detail: str | None = "not bound yet"


#: What each session state event says about the link.
_LINK: Final[dict[type[StateEvent], Callable[[Any], _Link]]] = {
    Bound: lambda event: _Link("bound", event.system_id),
    BindFailed: lambda event: _Link("disconnected", event.reason),
    LinkBroken: lambda event: _Link("disconnected", event.reason),
    Unbound: lambda event: _Link(
        "disconnected", "the SMSC unbound" if event.by_peer else "unbound"
    ),
}


@dataclass(frozen=True)
class _Flight:
    ref: JobRef
    parts: int


@implementer(IPushTransport)
class SmppTransport:
    """
    Push jobs through the SMSC that C{service} keeps a session with.

    @param service: the SMPP client; the service tree runs it.
    @param smsc: how status output names the SMSC (C{tcp:host:port}).
    """

    via = "smpp"

    def __init__(self, service: ESMEService, smsc: str) -> None:
        self.service = service
        self.smsc = smsc
        self._listener: IPushListener | None = None
        self._flights: dict[Hashable, _Flight] = {}
        self._link = _Link()
        service.add_state_observer(self._on_state)
        service.add_segment_observer(self._on_segment)
        service.add_receipt_observer(self._on_receipt)

    def attach(self, listener: IPushListener) -> None:
        self._listener = listener

    def send(self, job: OutgoingPush) -> Deferred[Outcome]:
        """
        Submit the job's segments to the SMSC, skipping those that have a
        message id already; a job the SMPP client cannot send at all (the
        SMSC could never take it) is refused for good at once.
        """
        ref = job.ref
        ids = job.info.message_ids
        try:
            submitted = self.service.submit(
                ref, job.destination, job.segments, ids if any(ids) else None
            )
        except ValueError as e:
            return succeed(Refused(str(e), retry=False))
        self._flights[ref] = _Flight(ref, len(job.segments))
        return submitted.addCallbacks(
            self._outcome, self._abandoned, callbackArgs=(ref,), errbackArgs=(ref,)
        )

    def describe(self) -> dict[str, Any]:
        state = "bound" if self.service.bound else self._link.state
        return {
            "state": state,
            "smsc": self.smsc,
            "detail": None if state == "bound" else self._link.detail,
            "spool_dir": None,
        }

    # -- the SMPP client's terms into the transport's --------------------------------------

    def _outcome(self, result: SubmitOutcome, ref: JobRef) -> Outcome:
        self._flights.pop(ref, None)
        ids = result.message_ids
        if result.accepted:
            return Sent(
                ids, self._keys(ids), detail="accepted by the SMSC: " + ", ".join(i or "" for i in ids)
            )
        return Refused(
            f"SMSC refused: {result.status_name}", result.temporary, ids, self._keys(ids)
        )

    def _abandoned(self, failure: Failure, ref: JobRef) -> Outcome:
        self._flights.pop(ref, None)
        failure.trap(SubmitAbandoned)
        assert isinstance(failure.value, SubmitAbandoned)  # trap re-raised anything else
        ids = failure.value.message_ids
        return Abandoned(ids, self._keys(ids))

    def _on_segment(self, event: SegmentAccepted) -> None:
        flight = self._flights.get(event.ref)
        if flight is None or self._listener is None:
            return
        (key,) = self._keys((event.message_id,))
        self._listener.part_accepted(
            PartAccepted(flight.ref, event.index, flight.parts, event.message_id, key)
        )

    def _on_receipt(self, receipt: DeliveryReceipt) -> None:
        if self._listener is not None:
            self._listener.delivery_reported(
                DeliveryReport(receipt.key, receipt.state, receipt.message_id)
            )

    def _on_state(self, event: StateEvent) -> None:
        self._link = _LINK[type(event)](event)

    def _keys(self, message_ids: Sequence[str | None]) -> tuple[str | None, ...]:
        base = self.service.config.submit_id_base
        return tuple(None if i is None else message_id_key(i, base) for i in message_ids)
