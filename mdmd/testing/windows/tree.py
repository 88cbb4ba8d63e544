"""
A Windows device's DM tree, emulated: settings that stay set, and the
answers Windows gives (the hidden peer of desired-state tests).

What it does as Windows does (Microsoft's "OMA DM protocol support" and CSP
reference): Get of a node that is not there is 404; Add of a node that is
there is 418 (already exists); Delete of a node that is not there is 404;
Replace, Add and Delete under C{./DevInfo} and C{./DevDetail} are 405
(command not allowed: those nodes are read-only); Exec of a node that is not
executable is 405; RemoteLock/Lock without a PIN set is 405. The device
scope is spelled C{./Device/Vendor/...} or C{./Vendor/...}: both name the
same node. Each node keeps its value and format, and a Get answers both.

Tests make it misbehave on purpose: C{reads} makes a Get of a node answer
another value than the one stored (a device that does not apply a setting
as written), C{refuse} answers a status (500, 405...) for every command on
a node, and changing C{values} directly is a user changing a setting on the
device (drift).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["SettingsTree", "EXECUTABLE"]

#: Nodes Windows executes (device actions), by their device-scope spelling.
EXECUTABLE = frozenset(
    {
        "./Device/Vendor/MSFT/RemoteWipe/doWipe",
        "./Device/Vendor/MSFT/RemoteWipe/doWipeProtected",
        "./Device/Vendor/MSFT/RemoteWipe/doWipePersistProvisionedData",
        "./Device/Vendor/MSFT/Reboot/RebootNow",
        "./Device/Vendor/MSFT/RemoteLock/Lock",
    }
)
_READ_ONLY = ("./DevInfo/", "./DevDetail/")


def canonical(uri: str) -> str:
    """
    The one spelling of a node: the device scope written C{./Device/...}.
    """
    lowered = uri.lower()
    if lowered.startswith("./vendor/"):
        return "./Device/" + uri[2:]
    if lowered.startswith("./device/"):
        return "./Device/" + uri[len("./device/") :]
    if lowered.startswith("./user/"):
        return "./User/" + uri[len("./user/") :]
    return uri


@dataclass
class SettingsTree:
    """
    The nodes of one device: C{values} (canonical URI → value), their
    C{formats}, and what a test made it do.
    """

    values: dict[str, str] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    #: URI → the value a Get answers instead of the stored one
    reads: dict[str, str] = field(default_factory=dict)
    #: URI → the status every command on it is answered with
    refuse: dict[str, int] = field(default_factory=dict)
    #: whether a PIN is set (RemoteLock/Lock is refused 405 without one)
    pin_set: bool = True
    #: the executable nodes carried out, in order
    executed: list[str] = field(default_factory=list)

    def value(self, uri: str) -> str | None:
        return self.values.get(canonical(uri))

    def set(self, uri: str, value: str, format: str = "chr") -> None:
        """
        Set a node as the device's user (or another manager) would: a change the server did not make.
        """
        self.values[canonical(uri)] = value
        self.formats[canonical(uri)] = format

    def execute(self, verb: str, items: Sequence[tuple[str, str | None, str | None]]) -> tuple[int, list[tuple[str, str, str]]]:
        """
        Carry out one command on its items (URI, data, format): its status,
        and for a Get the (URI, value, format) it read.
        """
        uris = [canonical(uri) for uri, _, _ in items]
        for uri in uris:
            if uri in self.refuse:
                return self.refuse[uri], []
        if verb == "Get":
            found = []
            for uri in uris:
                if uri not in self.values:
                    return 404, []
                found.append((uri, self.reads.get(uri, self.values[uri]), self.formats.get(uri, "chr")))
            return 200, found
        if verb in ("Add", "Replace", "Delete") and any(uri.startswith(_READ_ONLY) for uri in uris):
            return 405, []
        if verb == "Add":
            if any(uri in self.values for uri in uris):
                return 418, []
            self._write(uris, items)
            return 200, []
        if verb == "Replace":
            self._write(uris, items)
            return 200, []
        if verb == "Delete":
            if not all(uri in self.values or self._has_children(uri) for uri in uris):
                return 404, []
            for uri in uris:
                for node in [n for n in self.values if n == uri or n.startswith(uri + "/")]:
                    del self.values[node]
                    self.formats.pop(node, None)
            return 200, []
        if verb == "Exec":
            uri = uris[0]
            if uri not in EXECUTABLE:
                return 405, []
            if uri.endswith("/RemoteLock/Lock") and not self.pin_set:
                return 405, []
            self.executed.append(uri)
            return 200, []
        return 406, []

    def _write(self, uris: list[str], items: Sequence[tuple[str, str | None, str | None]]) -> None:
        for uri, (_, data, format) in zip(uris, items):
            self.values[uri] = data or ""
            self.formats[uri] = format or "chr"

    def _has_children(self, uri: str) -> bool:
        return any(node.startswith(uri + "/") for node in self.values)
