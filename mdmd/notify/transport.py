"""
Push transports: what carries a push job from the notifier to a device.

The notifier (L{mdmd.notify.notifier.Notifier}) knows jobs, not carriers. It
hands each queued job to an L{IPushTransport} and records what the transport
reports, in the job store's terms (L{mdmd.notify.jobs}):

 - the job's B{outcome}, once, through the Deferred L{IPushTransport.send}
   returns: L{Sent} (the carrier took every part), L{Refused} (for now: the
   notifier sends it again after its retry delay; or for good: the job
   fails), or L{Abandoned} (the transport stopped first: the job stays
   queued for the next start);
 - as they happen, to its L{IPushListener}: each part accepted before the
   whole job is (L{PartAccepted}, kept at once so a restart does not send it
   again) and, later, what became of a part (L{DeliveryReport}).

What only one carrier has (SMPP message ids, the spool file) rides along in
those values; the notifier stores it without reading it. The carriers are
L{mdmd.notify.smpp_transport.SmppTransport} (WAP push SMS through an SMSC),
L{mdmd.notify.spool.SpoolTransport} (one file per job for a gateway) and
L{mdmd.notify.wns.WnsTransport} (WNS raw notifications to Windows devices);
tests use L{mdmd.testing.push.FakePushTransport}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from mdmd.notify.jobs import JobRef, OutgoingPush
from mdmd.notify.smpp_pdu import MessageState

__all__ = [
    "Abandoned",
    "DeliveryReport",
    "IPushListener",
    "IPushTransport",
    "Outcome",
    "PartAccepted",
    "Refused",
    "Sent",
]


# -- a job's outcome ------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """
    The carrier took the whole job.

    @ivar message_ids: the carrier's name for each part, if it gives one.
    @ivar keys: each name's canonical form, under which delivery reports
        come back (None for a part no report will name).
    @ivar location: where the job was left, when that is a file (the spool).
    @ivar detail: how the carrier took it, for the log ("accepted by the
        SMSC: 1, 2", "written to PATH").
    @ivar carrier: what else the carrier said of it, kept with the job as
        (name, value) pairs (WNS: its status and the device's connection status).
    """

    message_ids: tuple[str | None, ...] = ()
    keys: tuple[str | None, ...] = ()
    location: str | None = None
    detail: str = "sent"
    carrier: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Refused:
    """
    The carrier would not take the job: for now (C{retry}: the job stays
    queued and is sent again after the notifier's retry delay) or for good
    (the job fails). C{error} is recorded on the job as it is; the parts the
    carrier accepted anyway are kept. C{reroute} (with C{retry} false) says
    the device cannot be reached this way any more (its WNS channel is
    gone): the notifier then tries the device's next route.
    """

    error: str
    retry: bool
    message_ids: tuple[str | None, ...] = ()
    keys: tuple[str | None, ...] = ()
    reroute: bool = False


@dataclass(frozen=True)
class Abandoned:
    """
    The transport stopped before it finished the job; nothing more is sent
    for it now. It stays queued, with the parts accepted so far, and goes
    again at the next start.
    """

    message_ids: tuple[str | None, ...] = ()
    keys: tuple[str | None, ...] = ()


Outcome = Union[Sent, Refused, Abandoned]


# -- what a transport reports as it happens ---------------------------------------------


@dataclass(frozen=True)
class PartAccepted:
    """
    Part C{index} of the C{parts} of job C{ref} was accepted, before the
    job's outcome: a job of several parts may be cut short by a disconnect
    or a restart, and what was accepted must not be sent twice.
    """

    ref: JobRef
    index: int
    parts: int
    message_id: str
    key: str | None


@dataclass(frozen=True)
class DeliveryReport:
    """
    What became of the part whose message id has the canonical form C{key}
    (in the vocabulary of SMPP's message_state, which the job store keeps).
    """

    key: str
    state: MessageState
    message_id: str


# -- the interfaces -----------------------------------------------------------------------


class IPushListener(Interface):
    """
    Who hears what a transport reports outside a job's outcome: the notifier.
    """

    def part_accepted(event: PartAccepted) -> None:
        """
        Part of a job in flight was accepted (see L{PartAccepted}).
        """

    def delivery_reported(report: DeliveryReport) -> None:
        """
        A delivery report came, possibly long after the job was sent (or
        for a job sent before a restart).
        """


class IPushTransport(Interface):
    """
    A carrier of push jobs, as the notifier and the service tree see it.
    """

    via = Attribute(
        """
        The name jobs it carried record (C{PushJob.via}): "smpp", "spool", "wns".
        """
    )

    service = Attribute(
        """
        What must run for the transport to carry jobs (an L{IService}: the
        SMPP client keeping its session), or None. The service tree runs it
        just after the notifier: it starts after the notifier and stops
        before it, so that what it reports while it drains is still recorded.
        """
    )

    def attach(listener: IPushListener) -> None:
        """
        Report parts accepted and deliveries to C{listener} from now on (the
        notifier attaches itself when it is made; there is one listener).
        """

    def send(job: OutgoingPush) -> Deferred[Outcome]:
        """
        Carry one job: its reference and all that goes out. A job is sent
        again with the message ids it already has; parts that have one are
        not sent again. The notifier never hands over a job already in flight.

        @return: fires once, with L{Sent}, L{Refused} or L{Abandoned};
            fails only with the transport's own bug or, when the notifier
            cancels it (the job expired), with C{CancelledError}: the job is
            then dropped if it has not gone out yet (else only its outcome is).
            It may have fired already when C{send} returns (the spool).
        """

    def describe() -> dict[str, Any]:
        """
        The link as C{mdmctl status} shows it (JSON values): C{state}
        ("bound", "disconnected", "not configured"), and what names the
        peer (C{smsc}) or the place (C{spool_dir}), with a C{detail}.
        """
