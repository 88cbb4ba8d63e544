"""
Each Windows device's WNS push channel, in the store: units of work and the
helpers the DM check-in calls inside its own.

A Windows device is woken through the Windows Notification Service once the
DMClient CSP knows the package family name (PFN) of our push application
(C{./Vendor/MSFT/DMClient/Provider/<ProviderID>/Push/PFN}): it then
registers with WNS and reports the channel it got in C{Push/ChannelURI},
and how that went in C{Push/Status} (L{STATUS_MEANINGS}). The PFN goes in
the provisioning document at enrollment or, for a device enrolled before
(or when the configured PFN changes), as a Replace queued in its next DM
session (L{plan}); the two nodes are read with Gets queued the same way:
first when nothing was read yet, again every C{refresh} seconds (channels
live 30 days and Windows renews them on its own), and in every session
while WNS says the channel we have is gone (L{mark_gone}: a 404 or 410).
Whatever the device answers for those nodes (our Gets, an operator's) is
kept (L{record_answer}); a new URI clears the "gone" mark.

The device record keeps it all in one plain dict (C{Device.wns_channel}),
the form of L{Channel}, replaced whole.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from mdmd.devices.accounts import DeviceKind
from mdmd.dm import queue as dm_queue
from mdmd.dm.commands import CommandSpec, normalize_uri, parse_spec
from mdmd.store.models import CommandQueue, Device

__all__ = [
    "CHANNEL_LIFETIME",
    "Channel",
    "ChannelSettings",
    "DEFAULT_HOSTS",
    "STATUS_MEANINGS",
    "channel_facts",
    "channel_of",
    "mark_gone",
    "node",
    "plan",
    "problem",
    "provisioned",
    "record_answer",
]

Root = MutableMapping[str, Any]

#: How long WNS keeps a channel URI valid.
CHANNEL_LIFETIME: Final = 30 * 86400.0
#: The hosts a channel URI may name: we send our access token there.
DEFAULT_HOSTS: Final = ("notify.windows.com",)

#: What the DMClient CSP's Push/Status values mean (Microsoft's DMClient DDF).
STATUS_MEANINGS: Final[Mapping[int, str]] = {
    0: "success",
    1: "invalid PFN",
    2: "invalid or expired device authentication with MSA",
    3: "WNS client registration failed: invalid or revoked PFN",
    4: "no channel URI assigned",
    5: "the channel URI has expired",
    6: "the channel URI failed to be revoked",
    7: "push received, but no DM session possible (power or connectivity)",
    8: "unknown error",
}

_PUSH = "./Vendor/MSFT/DMClient/Provider/{provider}/Push/{leaf}"
#: A Push node as a device names it in Results (with or without ./Device).
_PUSH_RESULT = re.compile(
    r"\./(?:Device/)?Vendor/MSFT/DMClient/Provider/(?P<provider>[^/]+)/Push/(?P<leaf>PFN|ChannelURI|Status)",
    re.IGNORECASE,
)
_ANSWERED_OK = "done"


def node(provider: str, leaf: str) -> str:
    """
    The LocURI of a Push node of our provider (its id percent-encoded as Windows wants).
    """
    return normalize_uri(_PUSH.format(provider=provider, leaf=leaf))


@dataclass(frozen=True)
class ChannelSettings:
    """
    What the DM check-in needs to set up and follow channels ([wns] with C{enabled}).
    """

    #: the package family name of our push application
    pfn: str
    #: our provider id on devices that have none of their own ([enrollment] provider_id)
    provider_id: str
    #: seconds between two reads of a channel
    refresh: float = 7 * 86400.0
    #: hosts a channel URI may name (it or a subdomain)
    hosts: tuple[str, ...] = DEFAULT_HOSTS
    #: whether the enrollment's provisioning document sets the PFN
    pfn_at_enrollment: bool = True


@dataclass(frozen=True)
class Channel:
    """
    A device's channel as we know it (all times POSIX seconds).
    """

    #: the PFN the device has from us, and how it got it ("enrollment", "session")
    pfn: str = ""
    pfn_via: str = ""
    #: when we last handed it out or asked for it to be set
    pfn_at: float | None = None
    #: why the device refused our Replace of the PFN
    pfn_error: str = ""
    #: the provider whose Push nodes we read
    provider: str = ""
    uri: str = ""
    status: int | None = None
    #: when ChannelURI was last read, and when this URI was first read
    read_at: float | None = None
    since: float | None = None
    #: when the reads were last queued
    asked_at: float | None = None
    #: when WNS said this URI is gone (404, 410)
    expired_at: float | None = None

    def as_plain(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_plain(cls, value: Mapping[str, Any] | None) -> Channel:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (value or {}).items() if k in known})


def channel_of(device: Device) -> Channel:
    return Channel.from_plain(device.wns_channel)


def _keep(device: Device, channel: Channel) -> None:
    plain = channel.as_plain()
    if plain != device.wns_channel:
        device.wns_channel = plain


def problem(channel: Channel, now: float, hosts: Iterable[str] = DEFAULT_HOSTS) -> str | None:
    """
    Why a push cannot go through this channel (a phrase after "device X"), or None.
    """
    if not channel.uri:
        if channel.status:
            return f"has no WNS channel (Push/Status {channel.status}: {_meaning(channel.status)})"
        return "has no WNS channel yet (it is read in the device's next DM session)"
    if channel.expired_at is not None:
        return "has a WNS channel that WNS reported gone (a new one is read in its next DM session)"
    if channel.status:
        return f"has a failed WNS channel (Push/Status {channel.status}: {_meaning(channel.status)})"
    if channel.since is not None and now >= channel.since + CHANNEL_LIFETIME:
        return "has a WNS channel older than 30 days (a new one is read in its next DM session)"
    parts = urlsplit(channel.uri)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not any(host == h or host.endswith("." + h) for h in hosts):
        return f"reported a WNS channel on {host or channel.uri!r}, not a WNS host"
    return None


def _meaning(status: int | None) -> str:
    return "unknown" if status is None else STATUS_MEANINGS.get(status, "not a documented status")


# -- at enrollment and at the start of a DM session ----------------------------------------------


def provisioned(device: Device, pfn: str, now: float) -> None:
    """
    The enrollment's provisioning document set the PFN (called in its unit of work).
    """
    _keep(device, dataclasses.replace(channel_of(device), pfn=pfn, pfn_via="enrollment", pfn_at=now, pfn_error=""))


def plan(root: Root, device: Device, queue: CommandQueue, settings: ChannelSettings, now: float) -> list[str]:
    """
    At the start of a DM session: queue what the device's channel needs (the
    PFN, reading ChannelURI and Status), unless it is queued already; return
    the targets queued.
    """
    if device.kind != DeviceKind.WINDOWS.value:
        return []
    channel = channel_of(device)
    provider = unquote(device.dm_server_id) or settings.provider_id
    pending = {
        target for command in dm_queue.pending_commands(queue) for target in CommandSpec.from_json(command.spec).targets()
    }
    pfn_node, uri_node, status_node = (node(provider, leaf) for leaf in ("PFN", "ChannelURI", "Status"))
    queued: list[str] = []

    def ask(spec: dict[str, Any]) -> None:
        dm_queue.enqueue(root, [device.device_id], parse_spec(spec), now)
        queued.append(spec["target"])

    # a PFN the device refused is asked for again after the refresh interval
    refused_lately = bool(channel.pfn_error) and channel.pfn_at is not None and now < channel.pfn_at + settings.refresh
    if channel.pfn != settings.pfn and pfn_node not in pending and not refused_lately:
        ask({"verb": "Replace", "target": pfn_node, "data": settings.pfn, "format": "chr"})
        channel = dataclasses.replace(channel, pfn_at=now)
    read_due = (
        channel.asked_at is None
        or channel.expired_at is not None
        or now >= channel.asked_at + settings.refresh
        or channel.provider != provider
    )
    if read_due and uri_node not in pending and status_node not in pending:
        ask({"verb": "Get", "target": uri_node})
        ask({"verb": "Get", "target": status_node})
        channel = dataclasses.replace(channel, asked_at=now, provider=provider)
    _keep(device, channel)
    return queued


# -- what the device answered ----------------------------------------------------------------------


def record_answer(
    device: Device,
    spec: Mapping[str, Any],
    state: str,
    status: int,
    results: Iterable[Mapping[str, Any]],
    now: float,
) -> bool:
    """
    Keep what an answered command says of the device's channel: the values
    of ChannelURI and Status in its Results, whether a Replace of our PFN
    took. Called for every answered command; return whether it said anything.
    """
    channel = channel_of(device)
    before = channel
    for item in results:
        found = _PUSH_RESULT.fullmatch(str(item.get("source") or ""))
        if found is None or (channel.provider and unquote(found["provider"]) != unquote(channel.provider)):
            continue
        data = (item.get("data") or "").strip()
        leaf = found["leaf"].lower()
        if leaf == "channeluri":
            renewed = data != channel.uri
            channel = dataclasses.replace(
                channel,
                uri=data,
                read_at=now,
                since=now if renewed else channel.since,
                expired_at=None if renewed else channel.expired_at,
            )
        elif leaf == "status":
            channel = dataclasses.replace(channel, status=int(data) if data.lstrip("-").isdigit() else None)
    if spec.get("verb") == "Replace":
        for item in spec.get("items", ()):
            found = _PUSH_RESULT.fullmatch(item.get("target", ""))
            if found is None or found["leaf"].lower() != "pfn":
                continue
            if state == _ANSWERED_OK:
                channel = dataclasses.replace(
                    channel, pfn=item.get("data") or "", pfn_via="session", pfn_at=now, pfn_error=""
                )
            else:
                channel = dataclasses.replace(channel, pfn="", pfn_at=now, pfn_error=f"the device answered {status}")
    if channel == before:
        return False
    _keep(device, channel)
    return True


# -- what WNS said ---------------------------------------------------------------------------------


def mark_gone(root: Root, device_id: str, uri: str, now: float) -> bool:
    """
    WNS answered 404 or 410 for C{uri}: if it is still the device's channel,
    mark it gone (pushes take another route, and the device is asked for a
    new one in its next session). Return whether it was marked.
    """
    device = root["devices"].get(device_id)
    if device is None:
        return False
    channel = channel_of(device)
    if not uri or channel.uri != uri or channel.expired_at is not None:
        return False
    _keep(device, dataclasses.replace(channel, expired_at=now))
    return True


# -- for operators --------------------------------------------------------------------------------


def channel_facts(root: Root, device_id: str, now: float) -> dict[str, Any] | None:
    """
    A device's channel at a glance (plain JSON values), or None for an unknown device.
    """
    device = root["devices"].get(device_id)
    if device is None:
        return None
    channel = channel_of(device)
    facts = channel.as_plain()
    facts["status_meaning"] = None if channel.status is None else _meaning(channel.status)
    facts["age_seconds"] = None if channel.since is None else max(0.0, now - channel.since)
    facts["expires_at"] = None if channel.since is None else channel.since + CHANNEL_LIFETIME
    facts["problem"] = problem(channel, now) if device.kind == DeviceKind.WINDOWS.value else "is not a Windows device"
    return facts
