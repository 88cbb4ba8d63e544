"""
A push transport under a test's control, for the notifier and whatever is
built on it.

L{FakePushTransport} keeps every job it is sent; the test settles each one
(L{FakePushTransport.settle}) and reports parts and deliveries as a carrier
would. With C{at_once}, it settles every job before C{send} returns, as the
spool does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from mdmd.notify.jobs import JobRef, OutgoingPush
from mdmd.notify.smpp_pdu import MessageState
from mdmd.notify.transport import (
    DeliveryReport,
    IPushListener,
    IPushTransport,
    Outcome,
    PartAccepted,
)

__all__ = ["FakePushTransport"]


@implementer(IPushTransport)
class FakePushTransport:
    """
    @ivar sent: every job handed over, in order (again when sent again).
    @ivar pending: the jobs in flight, by reference, with their outcome to come.
    @ivar cancelled: the references of jobs whose outcome was cancelled.
    @ivar link: what L{describe} answers.
    """

    service = None

    def __init__(
        self, via: str = "fake", at_once: Callable[[OutgoingPush], Outcome] | None = None
    ) -> None:
        self.via = via
        self.at_once = at_once
        self.listener: IPushListener | None = None
        self.sent: list[OutgoingPush] = []
        self.pending: dict[JobRef, Deferred[Outcome]] = {}
        self.cancelled: list[JobRef] = []
        self.link: dict[str, Any] = {"state": "fake", "detail": None}

    def attach(self, listener: IPushListener) -> None:
        self.listener = listener

    def send(self, job: OutgoingPush) -> Deferred[Outcome]:
        self.sent.append(job)
        if self.at_once is not None:
            return succeed(self.at_once(job))
        ref = job.ref

        def cancel(d: Deferred[Outcome]) -> None:
            self.pending.pop(ref, None)
            self.cancelled.append(ref)

        outcome: Deferred[Outcome] = Deferred(cancel)
        self.pending[ref] = outcome
        return outcome

    def describe(self) -> dict[str, Any]:
        return dict(self.link)

    # -- what the test makes happen ---------------------------------------------------

    def settle(self, ref: JobRef, outcome: Outcome) -> None:
        """
        The job in flight C{ref} ends with C{outcome}.
        """
        self.pending.pop(ref).callback(outcome)

    def accept_part(
        self, ref: JobRef, index: int, parts: int, message_id: str, key: str | None = None
    ) -> None:
        """
        Report one part of a job accepted (its key is its id unless given).
        """
        assert self.listener is not None, "no listener attached"
        self.listener.part_accepted(
            PartAccepted(ref, index, parts, message_id, message_id if key is None else key)
        )

    def report(self, message_id: str, state: MessageState, key: str | None = None) -> None:
        """
        Report what became of a part (its key is its id unless given).
        """
        assert self.listener is not None, "no listener attached"
        self.listener.delivery_reported(
            DeliveryReport(message_id if key is None else key, state, message_id)
        )
