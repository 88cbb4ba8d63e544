"""
What an operator may queue for a device: validated command specifications.

A specification is plain data (the JSON the admin API takes): a verb, its
items, and for Atomic and Sequence their child commands. Validation applies
the OMA DM rules and the ones Microsoft's "OMA DM protocol support" page adds
for Windows, so a command that a device would refuse is refused when queued,
with the reason, instead of failing later on the device.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mdmd.errors import PeerError
from mdmd.syncml.model import NOT_CARRIED

__all__ = [
    "InvalidCommand",
    "sendable",
    "PENDING",
    "CommandSpec",
    "ItemSpec",
    "parse_spec",
    "normalize_uri",
    "scope_of",
    "FORMATS",
    "ITEM_VERBS",
    "GROUP_VERBS",
]

#: Verbs that act on items, and the group verbs.
ITEM_VERBS = ("Get", "Add", "Replace", "Delete", "Exec", "Copy")
GROUP_VERBS = ("Atomic", "Sequence")

#: DM Tree node formats (OMA DM TND; Windows also uses b64 and xml).
FORMATS = ("b64", "bin", "bool", "chr", "int", "node", "null", "xml", "date", "time", "float")

#: Children each group may hold (Windows: no nested Atomic, no Get in Atomic).
_ALLOWED_CHILDREN = {
    "Atomic": ("Add", "Replace", "Delete", "Exec", "Copy", "Sequence"),
    "Sequence": ("Get", "Add", "Replace", "Delete", "Exec", "Copy", "Atomic"),
}

_UNRESERVED = set(string.ascii_letters + string.digits + "-._~")
_ESCAPE = re.compile("[0-9A-Fa-f]{2}")
MAX_URI = 1024
MAX_DATA = 16 * 1024 * 1024


class InvalidCommand(PeerError):
    """
    An operator asked for a command the protocol or Windows does not allow.
    """


@dataclass(frozen=True)
class ItemSpec:
    target: str
    data: str | None = None
    format: str | None = None
    type: str | None = None
    source: str | None = None  # Copy only

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class CommandSpec:
    """
    One queued command: an item verb with its items, or a group with children.

    An Exec may carry a C{correlator}: the device echoes it in the alert
    that reports the outcome of an asynchronous Exec (OMA DM Generic Alert).
    """

    verb: str
    items: tuple[ItemSpec, ...] = ()
    commands: tuple[CommandSpec, ...] = ()
    correlator: str | None = None

    def as_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"verb": self.verb}
        if self.items:
            value["items"] = [i.as_json() for i in self.items]
        if self.commands:
            value["commands"] = [c.as_json() for c in self.commands]
        if self.correlator is not None:
            value["correlator"] = self.correlator
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> CommandSpec:
        """
        Rebuild a specification from its stored JSON form, which L{parse_spec}
        already validated when it was queued (no second validation per message).
        """
        return cls(
            value["verb"],
            items=tuple(ItemSpec(**item) for item in value.get("items", ())),
            commands=tuple(cls.from_json(child) for child in value.get("commands", ())),
            correlator=value.get("correlator"),
        )

    def walk(self) -> list[CommandSpec]:
        """
        This command and every command nested in it, depth first.
        """
        found = [self]
        for child in self.commands:
            found += child.walk()
        return found

    def targets(self) -> list[str]:
        return [item.target for command in self.walk() for item in command.items]

    @property
    def scope(self) -> str:
        """
        C{user} when any target is under C{./User}: it must wait for the enrolled user to log in.
        """
        return "user" if any(scope_of(t) == "user" for t in self.targets()) else "device"


def scope_of(uri: str) -> str:
    lowered = uri.lower()
    return "user" if lowered == "./user" or lowered.startswith("./user/") else "device"


def normalize_uri(uri: str) -> str:
    """
    Check a LocURI against the DM rules and percent-encode what must be.

    Characters outside RFC 3986's unreserved set are UTF-8 percent-encoded
    (Windows: "MS DM Server" → "MS%20DM%20Server"); existing C{%XX} escapes are
    kept, so already-encoded URIs pass unchanged. A C{?list=} or C{?prop=}
    query is kept as is.

    @raise InvalidCommand: naming the rule the URI breaks.
    """
    if not isinstance(uri, str) or not uri:
        raise InvalidCommand("a target URI must be a non-empty string")
    if uri.startswith("/"):
        raise InvalidCommand(f"{uri!r}: a LocURI must not start with '/' (use './...')")
    path, sep, query = uri.partition("?")
    if query and not (query.startswith("list=") or query.startswith("prop=")):
        raise InvalidCommand(f"{uri!r}: only ?list= and ?prop= queries are allowed")
    if path.endswith("/") and path != "./":
        raise InvalidCommand(f"{uri!r}: a LocURI must not end with '/'")
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if segment == "." and index == 0:
            continue
        if segment in ("", "*"):
            raise InvalidCommand(f"{uri!r}: node names must not be empty or '*'")
        if segment in (".", ".."):
            raise InvalidCommand(f"{uri!r}: '.' and '..' are only allowed as the leading './'")
    encoded = []
    i = 0
    while i < len(path):
        char = path[i]
        if char == "%" and _ESCAPE.fullmatch(path, i + 1, i + 3):
            encoded.append(path[i : i + 3].upper())
            i += 3
            continue
        if char in _UNRESERVED or char == "/":
            encoded.append(char)
        else:
            encoded.append("".join(f"%{b:02X}" for b in char.encode("utf-8")))
        i += 1
    result = "".join(encoded) + (sep + query)
    if len(result) > MAX_URI:
        raise InvalidCommand(f"a LocURI is at most {MAX_URI} characters")
    return result


def _item(raw: Any, verb: str) -> ItemSpec:
    if isinstance(raw, str):
        raw = {"target": raw}
    if not isinstance(raw, Mapping):
        raise InvalidCommand(f"{verb}: an item must be an object with a 'target'")
    unknown = set(raw) - {"target", "data", "format", "type", "source"}
    if unknown:
        raise InvalidCommand(f"{verb}: unknown item field(s) {', '.join(sorted(unknown))}")
    target = normalize_uri(raw.get("target", ""))
    data = raw.get("data")
    if data is not None and not isinstance(data, str):
        raise InvalidCommand(f"{verb} {target}: data must be a string")
    if data is not None and len(data) > MAX_DATA:
        raise InvalidCommand(f"{verb} {target}: data is larger than {MAX_DATA} characters")
    if data is not None:
        _check_text(data, f"{verb} {target}: data")
    fmt = raw.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise InvalidCommand(f"{verb} {target}: unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    mime = raw.get("type")
    if mime is not None and (not isinstance(mime, str) or not mime or len(mime) > 256):
        raise InvalidCommand(f"{verb} {target}: type must be a short MIME type or URN")
    if mime is not None:
        _check_text(mime, f"{verb} {target}: type")
    source = raw.get("source")
    if verb == "Copy":
        if source is None:
            raise InvalidCommand(f"Copy {target}: a source URI is required")
        source = normalize_uri(source)
    elif source is not None:
        raise InvalidCommand(f"{verb} {target}: only Copy takes a source")
    if verb in ("Get", "Delete") and data is not None:
        raise InvalidCommand(f"{verb} {target}: {verb} carries no data")
    if verb == "Exec" and scope_of(target) == "device" and "?" in target:
        raise InvalidCommand(f"Exec {target}: cannot execute a property or list query")
    return ItemSpec(target, data, fmt, mime, source)


#: What may not be anywhere inside an Atomic (its direct members or through a
#: Sequence), and why (Windows: a nested Atomic gets 500 and its parent 507).
_NOT_IN_ATOMIC = {
    "Atomic": "Atomic commands cannot be nested",
    "Get": "Get is not allowed inside Atomic",
}


def _check_text(text: str, what: str) -> None:
    """
    Refuse text no SyncML encoding can carry (it would fail every session of the device).
    """
    found = NOT_CARRIED.search(text)
    if found is not None:
        raise InvalidCommand(f"{what} holds U+{ord(found.group()):04X}, which SyncML cannot carry")


def parse_spec(raw: Any, _parent: str | None = None, _in_atomic: bool = False) -> CommandSpec:
    """
    Validate the JSON form of a command (as the admin API receives it).

    Group rules hold for the whole tree: nothing under an Atomic, however
    deep (through a Sequence), may be an Atomic or a Get.

    @raise InvalidCommand: naming what is wrong.
    """
    if not isinstance(raw, Mapping):
        raise InvalidCommand("a command must be an object with a 'verb'")
    verb = raw.get("verb")
    if not isinstance(verb, str):
        raise InvalidCommand("a command needs a 'verb'")
    verb = verb[:1].upper() + verb[1:].lower()
    if verb not in ITEM_VERBS + GROUP_VERBS:
        raise InvalidCommand(f"unknown verb {raw.get('verb')!r} (one of {', '.join(ITEM_VERBS + GROUP_VERBS)})")
    if _in_atomic and verb in _NOT_IN_ATOMIC:
        raise InvalidCommand(
            _NOT_IN_ATOMIC[verb] if _parent == "Atomic" else f"{_NOT_IN_ATOMIC[verb]} (not even through a Sequence)"
        )
    if _parent is not None and verb not in _ALLOWED_CHILDREN[_parent]:
        raise InvalidCommand(f"{verb} is not allowed inside {_parent}")
    unknown = set(raw) - {"verb", "items", "commands", "target", "data", "format", "type", "source", "correlator"}
    if unknown:
        raise InvalidCommand(f"{verb}: unknown field(s) {', '.join(sorted(unknown))}")
    correlator = raw.get("correlator")
    if correlator is not None:
        if verb != "Exec":
            raise InvalidCommand(f"{verb}: only Exec takes a correlator")
        if not isinstance(correlator, str) or not correlator or len(correlator) > 256:
            raise InvalidCommand("Exec: a correlator is a string of 1 to 256 characters")
        _check_text(correlator, "Exec: the correlator")
    if verb in GROUP_VERBS:
        children = raw.get("commands")
        if not isinstance(children, Sequence) or isinstance(children, str) or not children:
            raise InvalidCommand(f"{verb} needs a non-empty 'commands' list")
        if any(k in raw for k in ("items", "target", "data")):
            raise InvalidCommand(f"{verb} holds commands, not items")
        inside = _in_atomic or verb == "Atomic"
        spec = CommandSpec(verb, commands=tuple(parse_spec(c, verb, inside) for c in children))
        if verb == "Atomic":
            _check_atomic(spec)
        return spec
    if "commands" in raw:
        raise InvalidCommand(f"{verb} takes items, not commands")
    if "target" in raw:
        if "items" in raw:
            raise InvalidCommand(f"{verb}: give either 'target' or 'items'")
        items_raw: Any = [{k: raw[k] for k in ("target", "data", "format", "type", "source") if k in raw}]
    else:
        items_raw = raw.get("items")
    if not isinstance(items_raw, Sequence) or isinstance(items_raw, str) or not items_raw:
        raise InvalidCommand(f"{verb} needs a 'target' or a non-empty 'items' list")
    items = tuple(_item(i, verb) for i in items_raw)
    if verb == "Exec" and len(items) != 1:
        raise InvalidCommand("Exec takes exactly one item")
    return CommandSpec(verb, items=items, correlator=correlator)


def _check_atomic(spec: CommandSpec) -> None:
    added: set[str] = set()
    scopes = set()
    for command in spec.walk()[1:]:
        for item in command.items:
            scopes.add(scope_of(item.target))
            if command.verb == "Add":
                added.add(item.target)
            elif command.verb == "Replace" and item.target in added:
                raise InvalidCommand(
                    f"Atomic: Windows does not support Add followed by Replace of {item.target}"
                )
    if len(scopes) > 1:
        raise InvalidCommand("Atomic: do not mix ./User and ./Device targets in one Atomic")


#: Command states that still need the device (what a device's queue lists).
PENDING = ("queued", "sent", "accepted")
#: The states L{sendable} reads: a sent command holds back its scope, a
#: queued one may go; an accepted one (202) waits for the device's alert and
#: holds back nothing.
_IN_FLIGHT = ("queued", "sent")


class _Queued(Protocol):
    """
    What L{sendable} reads of a queued command (read-only, so frozen
    dataclasses and persistent records both fit).
    """

    @property
    def state(self) -> str: ...

    @property
    def scope(self) -> str: ...


Q = TypeVar("Q", bound=_Queued)


def sendable(commands: Iterable[Q], user_logged_in: bool) -> Iterator[Q]:
    """
    The queued commands (in sequence order) that may go out now.

    Order is strict within each scope: a command is sendable only when no
    earlier command of its scope is still waiting for its answer. C{./User}
    commands wait for the enrolled user to be logged in, without holding
    back device-scoped ones.
    """
    blocked: set[str] = set()
    for command in commands:
        if command.state not in _IN_FLIGHT:
            continue
        if command.scope == "user" and not user_logged_in:
            blocked.add("user")
        if command.scope in blocked:
            continue
        if command.state == "sent":
            blocked.add(command.scope)
            continue
        yield command
