"""
Which way a push goes to a device: its routes, the rule that picks them,
and the unit of work that queues the jobs.

A device can be reached by SMS (package #0 as WAP push, through the SMSC
or the spool: it needs an MSISDN) and, if WNS is configured and it is a
Windows device with a usable channel (L{mdmd.notify.channels}), by WNS.
What an operator asks for (L{Via}: C{auto}, C{wns}, C{sms}, C{both}) picks
among them through one table, L{SELECTION}: the routes to consider, in
order of preference, and whether the first that reaches the device is
enough or every one that does is used. Every device is checked before
anything is queued: if one cannot be woken the way asked, nothing is.

L{PushRoutes} is the notifier's side: the transport of each route, and the
routes configured.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from mdmd.devices import lifecycle
from mdmd.devices.accounts import DeviceKind
from mdmd.errors import PeerError
from mdmd.notify import channels, jobs
from mdmd.notify.jobs import NotPushable, OutgoingPush, PushSettings
from mdmd.notify.transport import IPushTransport

__all__ = [
    "InvalidVia",
    "FALLBACK",
    "PushRoutes",
    "Reach",
    "Route",
    "SELECTION",
    "Via",
    "choose",
    "enqueue",
    "parse_via",
]

Root = MutableMapping[str, Any]


class Route(enum.Enum):
    """
    A way to a device: the stored value of C{PushJob.route}.
    """

    WNS = jobs.ROUTE_WNS
    SMS = jobs.ROUTE_SMS


class Via(enum.Enum):
    """
    What a push request asks for (C{mdmctl push --via}, the API's C{via}).
    """

    AUTO = "auto"
    WNS = "wns"
    SMS = "sms"
    BOTH = "both"


@dataclass(frozen=True)
class Selection:
    """
    The routes a request considers, in order of preference; C{every}: use
    every one that reaches the device, else the first.
    """

    routes: tuple[Route, ...]
    every: bool = False


#: What each request picks from.
SELECTION: Final[Mapping[Via, Selection]] = {
    Via.AUTO: Selection((Route.WNS, Route.SMS)),
    Via.WNS: Selection((Route.WNS,)),
    Via.SMS: Selection((Route.SMS,)),
    Via.BOTH: Selection((Route.WNS, Route.SMS), every=True),
}


#: How a device is woken when its route turns out to be gone (a WNS channel
#: WNS no longer knows): the job fails and one of these takes its place.
FALLBACK: Final[Mapping[Route, Via]] = {Route.WNS: Via.SMS}


class InvalidVia(PeerError):
    """
    A push was asked for by a way we do not know.
    """


def parse_via(text: str | None) -> Via:
    """
    @raise InvalidVia: for anything but auto, wns, sms, both (None is auto).
    """
    if text is None:
        return Via.AUTO
    try:
        return Via(text.strip().lower())
    except ValueError:
        raise InvalidVia(f"unknown push route {text!r} (one of {', '.join(v.value for v in Via)})") from None


@dataclass(frozen=True)
class Reach:
    """
    Whether each configured route reaches a device: None where it does, else
    why not (a phrase after "device X").
    """

    why_not: Mapping[Route, str | None]

    def reaches(self, route: Route) -> bool:
        return route in self.why_not and self.why_not[route] is None


def choose(via: Via, reach: Reach) -> tuple[Route, ...]:
    """
    The routes a push asked for C{via} takes to a device it C{reach}es that
    way (empty: none; routes not configured are not considered).
    """
    selection = SELECTION[via]
    usable = tuple(route for route in selection.routes if reach.reaches(route))
    return usable if selection.every else usable[:1]


def _reach(device: Any, routes: frozenset[Route], hosts: Sequence[str], now: float) -> Reach:
    why_not: dict[Route, str | None] = {}
    if Route.WNS in routes:
        if device.kind != DeviceKind.WINDOWS.value:
            why_not[Route.WNS] = "is not a Windows device (no WNS channel)"
        else:
            why_not[Route.WNS] = channels.problem(channels.channel_of(device), now, hosts)
    if Route.SMS in routes:
        # jobs.enqueue checks the rest and words it (credentials, server id)
        why_not[Route.SMS] = (
            None if jobs.msisdn_of(device) else f"has no MSISDN (mdmctl device set {device.device_id} --msisdn +...)"
        )
    return Reach(why_not)


def enqueue(
    root: Root,
    device_ids: Iterable[str],
    settings: PushSettings,
    now: float,
    random: Callable[[int], bytes] = os.urandom,
    *,
    via: Via = Via.AUTO,
    routes: frozenset[Route] = frozenset({Route.SMS}),
    hosts: Sequence[str] = channels.DEFAULT_HOSTS,
    fallback_of: int | None = None,
    default_nonce: bool = False,
) -> list[OutgoingPush]:
    """
    Queue the jobs a push C{via} makes, over the C{routes} configured: each
    device by the routes L{choose} picks (the SMS jobs through
    L{jobs.enqueue}, the WNS jobs through L{jobs.enqueue_wns}).

    C{default_nonce}: package #0 signed with the default nonce (L{jobs.enqueue}).

    @raise NotPushable: naming every device that cannot be woken so (and why);
        then nothing is queued.
    """
    ids = list(dict.fromkeys(device_ids))
    problems = []
    by_sms: list[str] = []
    by_wns: list[tuple[str, str]] = []
    for device_id in ids:
        device = root["devices"].get(device_id)
        if device is None:
            problems.append(f"no device {device_id!r}")
            continue
        if not lifecycle.manageable(device):
            problems.append(f"device {device_id} is {device.status}")
            continue
        reach = _reach(device, routes, hosts, now)
        chosen = choose(via, reach)
        if not chosen:
            considered = [r for r in SELECTION[via].routes if r in reach.why_not]
            if not considered:
                problems.append(f"device {device_id} cannot be woken by {via.value}: it is not configured")
            else:
                problems.append(f"device {device_id} " + " and ".join(str(reach.why_not[r]) for r in considered))
            continue
        if Route.SMS in chosen:
            by_sms.append(device_id)
        if Route.WNS in chosen:
            by_wns.append((device_id, channels.channel_of(device).uri))
    created: list[OutgoingPush] = []
    if by_sms:
        try:
            created += [_fallback(root, job, fallback_of) for job in jobs.enqueue(root, by_sms, settings, now, random, default_nonce)]
        except NotPushable as e:
            problems.append(str(e))
    if problems:
        # raising aborts the unit of work: the SMS jobs just made go with it
        raise NotPushable("; ".join(problems))
    created += jobs.enqueue_wns(root, by_wns, settings, now, fallback_of=fallback_of)
    created.sort(key=lambda job: (ids.index(job.info.device_id), job.info.seq))
    return created


def _fallback(root: Root, job: OutgoingPush, fallback_of: int | None) -> OutgoingPush:
    if fallback_of is None:
        return job
    root["pushes"][job.info.device_id].jobs[job.info.seq].fallback_of = fallback_of
    return dataclasses.replace(job, info=dataclasses.replace(job.info, fallback_of=fallback_of))


# -- the notifier's side -----------------------------------------------------------------------


@dataclass
class PushRoutes:
    """
    The transport of each configured route (every one an L{IPushTransport}),
    and the hosts a WNS channel may name.
    """

    transports: Mapping[Route, IPushTransport] = field(default_factory=dict)
    hosts: tuple[str, ...] = channels.DEFAULT_HOSTS

    def __post_init__(self) -> None:
        if Route.SMS not in self.transports:
            raise ValueError("the SMS route (SMSC or spool) is always configured")

    @property
    def configured(self) -> frozenset[Route]:
        return frozenset(self.transports)

    def transport_for(self, route: str) -> IPushTransport:
        """
        The transport of a job's route (a job made before routes existed is an SMS job).
        """
        return self.transports[Route(route)] if route else self.transports[Route.SMS]

    def __iter__(self) -> Iterator[IPushTransport]:
        return iter(self.transports.values())

    def describe(self) -> dict[str, Any]:
        """
        Each route's link, as the status output shows it.
        """
        return {route.value: transport.describe() for route, transport in self.transports.items()}
