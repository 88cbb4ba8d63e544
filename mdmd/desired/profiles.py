"""
Profiles: a file of SyncML command fragments → validated steps, and a step →
what one device gets.

An operator uploads what they would put in a SyncBody::

    <Replace>
      <CmdID>1</CmdID>
      <Item>
        <Target><LocURI>./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera</LocURI></Target>
        <Meta><Format xmlns="syncml:metinf">int</Format></Meta>
        <Data>0</Data>
      </Item>
    </Replace>

Each top-level command (Replace, Add, Exec, Delete, Atomic, Sequence) is a
step. The file is parsed with the one XML parser; each step is checked with
L{mdmd.dm.commands.parse_spec} (the rules of C{mdmctl cmd}: LocURIs, scope,
no nested Atomic, no Get in Atomic, whole tree) after its variables were
replaced by sample values, so a bad file is refused with every problem and
its line. CmdIDs in the file are ignored (the session numbers commands).

A step is turned into a device's command at send time (L{plan}): its
variables expanded with the device's values (L{mdmd.desired.variables}),
validated again (a value may make a LocURI invalid), and with what follows
from it: the nodes to read back after it succeeded (every Add and Replace
that carries a value) and how it is undone (L{mdmd.dm.csp.reversals}).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from lxml import etree

from mdmd.dm.commands import CommandSpec, InvalidCommand, parse_spec
from mdmd.dm.csp import Reversal, reversals
from mdmd.desired.variables import VARIABLES, MissingValue, UnknownVariable, expand, names_in
from mdmd.errors import PeerError
from mdmd.syncml.xml import inner_xml
from mdmd.xmlparser import MalformedXML, localname, parse

__all__ = [
    "InvalidProfile",
    "Step",
    "Readback",
    "PlannedStep",
    "parse_profile",
    "plan_step",
    "plan",
    "STEP_VERBS",
    "MAX_PROFILE",
    "valid_name",
]

#: The commands a profile is made of (Get and Copy read or move, they set nothing).
STEP_VERBS: Final = ("Replace", "Add", "Exec", "Delete", "Atomic", "Sequence")
#: The largest profile file, in bytes (one profile is one document in the store).
MAX_PROFILE: Final = 4 * 1024 * 1024
#: Formats whose values are not read back (an interior node, a null value).
_NOT_READ_BACK: Final = frozenset({"node", "null"})
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class InvalidProfile(PeerError):
    """
    A profile file (or name) mdmd refuses: every problem, with its line.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems

    @property
    def details(self) -> dict[str, Any]:
        return {"problems": self.problems}


def valid_name(name: object, what: str = "profile") -> str:
    """
    A profile or group name: 1 to 64 letters, digits, '.', '_', '-' (URL- and shell-safe).

    @raise InvalidProfile: if it is not one.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidProfile([f"{what} name {name!r}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"])
    return name


@dataclass(frozen=True)
class Step:
    """
    One top-level command of a profile as uploaded: its JSON form with the
    variables unexpanded, and the line it starts on.
    """

    raw: dict[str, Any]
    line: int
    variables: frozenset[str] = frozenset()

    def as_json(self) -> dict[str, Any]:
        return {"command": self.raw, "line": self.line, "variables": sorted(self.variables)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Step:
        return cls(value["command"], value["line"], frozenset(value["variables"]))


@dataclass(frozen=True)
class Readback:
    """
    A node to read back after its step succeeded, and the value it must have.
    """

    target: str
    data: str
    format: str | None


@dataclass(frozen=True)
class PlannedStep:
    """
    A step as one device gets it: the command (or why it cannot have one),
    what identifies it across versions, what is read back and how it is undone.
    """

    command: CommandSpec | None
    error: str | None = None
    #: the same command (after expansion) in two versions has the same digest
    digest: str = ""
    readbacks: tuple[Readback, ...] = ()
    reversals: tuple[Reversal, ...] = field(default=())

    @property
    def label(self) -> str:
        """
        A one-line name for messages: C{Replace ./Device/...}.
        """
        if self.command is None:
            return "(not expanded)"
        return describe(self.command)


def describe(spec: CommandSpec) -> str:
    targets = [item.target for item in spec.items]
    if targets:
        return f"{spec.verb} {targets[0]}" + (f" (+{len(targets) - 1})" if len(targets) > 1 else "")
    return f"{spec.verb} of {len(spec.commands)}"


# -- parsing a file -------------------------------------------------------------------------------

_DECLARATION = re.compile(rb"^(\xef\xbb\xbf)?\s*<\?xml[^>]*\?>")
_WRAPPERS: Final = ("SyncBody", "SyncML")


def _wrapped(data: bytes) -> bytes:
    """
    The file inside one root element, its XML declaration blanked (so lines keep their numbers).
    """
    match = _DECLARATION.match(data)
    if match is not None:
        blank = re.sub(rb"[^\n]", b" ", match.group(0))
        data = blank + data[match.end() :]
    return b"<Profile>" + data + b"</Profile>"


def _text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    return (element.text or "").strip()


def _child(element: etree._Element, name: str) -> etree._Element | None:
    for child in element:
        if isinstance(child.tag, str) and localname(child) == name:
            return child
    return None


def _meta(element: etree._Element) -> dict[str, str]:
    found: dict[str, str] = {}
    meta = _child(element, "Meta")
    if meta is None:
        return found
    for name, key in (("Format", "format"), ("Type", "type")):
        value = _text(_child(meta, name))
        if value:
            found[key] = value
    return found


class _Problems(list[str]):
    def add(self, line: int | None, message: str) -> None:
        self.append(f"line {line}: {message}" if line else message)


#: The children a command and an item may have (anything else is a mistake worth reporting).
_COMMAND_CHILDREN: Final = frozenset({"CmdID", "Meta", "Item", "NoResp", "Cred"})
_GROUP_CHILDREN: Final = frozenset({"CmdID", "Meta", "NoResp", "Get", "Copy", *STEP_VERBS})
_ITEM_CHILDREN: Final = frozenset({"Target", "Source", "Meta", "Data"})


def _command(element: etree._Element, problems: _Problems, inherited: Mapping[str, str]) -> dict[str, Any] | None:
    """
    The JSON form of one command element (None if it is not one a profile may hold).
    """
    verb = localname(element)
    line = element.sourceline
    if verb not in STEP_VERBS:
        reason = "a profile sets nodes: Get and Copy are not allowed" if verb in ("Get", "Copy") else "not a command a profile may hold"
        problems.add(line, f"<{verb}>: {reason} (commands: {', '.join(STEP_VERBS)})")
        return None
    meta = {**inherited, **_meta(element)}
    if verb in ("Atomic", "Sequence"):
        children = []
        for child in element:
            if not isinstance(child.tag, str):
                continue
            name = localname(child)
            if name not in _GROUP_CHILDREN:
                problems.add(child.sourceline, f"<{verb}> cannot hold <{name}>")
                continue
            if name in (*STEP_VERBS, "Get", "Copy"):
                command = _command(child, problems, meta)
                if command is not None:
                    children.append(command)
        return {"verb": verb, "commands": children}
    items = []
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = localname(child)
        if name not in _COMMAND_CHILDREN:
            problems.add(child.sourceline, f"<{verb}> cannot hold <{name}>")
        elif name == "Item":
            items.append(_item(child, verb, problems, meta))
    return {"verb": verb, "items": items}


def _item(element: etree._Element, verb: str, problems: _Problems, inherited: Mapping[str, str]) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for child in element:
        if isinstance(child.tag, str) and localname(child) not in _ITEM_CHILDREN:
            problems.add(child.sourceline, f"<Item> of <{verb}> cannot hold <{localname(child)}>")
    target = _child(element, "Target")
    uri = _text(_child(target, "LocURI")) if target is not None else None
    if not uri:
        problems.add(element.sourceline, f"<{verb}>: an <Item> needs <Target><LocURI>")
    item["target"] = uri or ""
    source = _child(element, "Source")
    if source is not None:
        item["source"] = _text(_child(source, "LocURI")) or ""
    data = _child(element, "Data")
    if data is not None:
        item["data"] = inner_xml(data) if len(data) else (data.text or "")
    item.update({**inherited, **_meta(element)})
    return item


def _strings(value: Any) -> list[str]:
    """
    Every string in a command's JSON form (targets, data, formats...).
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


_SAMPLES: Final[Mapping[str, str]] = {name: "sample" for name in VARIABLES}


def _substitute(value: Any, values: Mapping[str, str | None]) -> Any:
    if isinstance(value, str):
        return expand(value, values)
    if isinstance(value, dict):
        return {k: _substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    return value


def parse_profile(data: bytes) -> tuple[Step, ...]:
    """
    The steps of a profile file.

    @raise InvalidProfile: listing every problem found, with its line.
    """
    problems = _Problems()
    if len(data) > MAX_PROFILE:
        raise InvalidProfile([f"a profile is at most {MAX_PROFILE} bytes"])
    try:
        root = parse(_wrapped(data))
    except MalformedXML as e:
        raise InvalidProfile([str(e)]) from None
    elements = [child for child in root if isinstance(child.tag, str)]
    while len(elements) == 1 and localname(elements[0]) in _WRAPPERS:
        elements = [child for child in elements[0] if isinstance(child.tag, str) and localname(child) not in ("SyncHdr", "Final")]
    steps = []
    for element in elements:
        line = element.sourceline or 0
        before = len(problems)
        raw = _command(element, problems, {})
        if raw is None or len(problems) > before:
            continue
        try:
            variables: frozenset[str] = frozenset().union(*(names_in(s) for s in _strings(raw)))
        except UnknownVariable as e:
            problems.add(_line_of(element, e.name), str(e))
            continue
        try:
            parse_spec(_substitute(raw, _SAMPLES))
        except InvalidCommand as e:
            problems.add(line, str(e))
            continue
        steps.append(Step(raw, line, variables))
    if not steps and not problems:
        problems.add(None, "the profile holds no command (Replace, Add, Exec, Delete, Atomic or Sequence)")
    if problems:
        raise InvalidProfile(list(problems))
    return tuple(steps)


def _line_of(element: etree._Element, name: str) -> int | None:
    """
    The line of the first element under C{element} whose text names variable C{name}.
    """
    pattern = re.compile(r"\$\{?" + re.escape(name) + r"\b")
    for node in element.iter():
        if any(pattern.search(text or "") for text in (node.text, node.tail)):
            return node.sourceline
    return element.sourceline


# -- a step for one device -------------------------------------------------------------------------


def _digest(spec: CommandSpec) -> str:
    return hashlib.sha256(json.dumps(spec.as_json(), sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()[:32]


def _readbacks(spec: CommandSpec) -> tuple[Readback, ...]:
    found = []
    for command in spec.walk():
        if command.verb not in ("Add", "Replace"):
            continue
        for item in command.items:
            if item.data is None or (item.format in _NOT_READ_BACK) or "?" in item.target:
                continue
            found.append(Readback(item.target, item.data, item.format))
    return tuple(found)


def plan_step(step: Step, values: Mapping[str, str | None]) -> PlannedStep:
    """
    C{step} as the device with these variable C{values} gets it.
    """
    try:
        spec = parse_spec(_substitute(step.raw, values) if step.variables else step.raw)
    except MissingValue as e:
        return PlannedStep(None, str(e))
    except InvalidCommand as e:
        return PlannedStep(None, f"after expanding its variables: {e}")
    return PlannedStep(spec, None, _digest(spec), _readbacks(spec), reversals(spec))


def plan(steps: tuple[Step, ...], values: Mapping[str, str | None]) -> tuple[PlannedStep, ...]:
    """
    Every step of a profile version as one device gets it.
    """
    return tuple(plan_step(step, values) for step in steps)
