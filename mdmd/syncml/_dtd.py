"""
The SyncML element structure, shared by the XML and WBXML codecs.

One table per element (L{Shape}) lists its children in the order the SyncML
1.2 DTD requires, each with the model field it maps to. Writing walks the
model along those tables and calls a codec's L{Writer}; reading takes the
plain L{Node} tuples a codec made of its input (local name, children, text)
and fills the model through the same tables. So element order, field mapping
and leniency exist once, whatever the encoding.

Reading is lenient where peers differ and the meaning is clear: any
namespace, any child order, unknown children of known elements ignored,
C{Meta} children with or without a C{MetInf} wrapper. Where the session
engine must answer (MS-MDM), it represents: an unknown element where a
command belongs becomes an L{UnknownElement}, a missing CmdID stays
C{None}. It refuses what leaves no message to answer: no C{SyncHdr}, no
C{SessionID}, a C{Target} without C{LocURI}, a non-numeric size.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, TypeAlias, Union

from mdmd.syncml.model import (
    Add,
    Alert,
    Atomic,
    Chal,
    Command,
    Copy,
    Cred,
    Data,
    Delete,
    Exec,
    Get,
    Item,
    Location,
    Meta,
    Replace,
    Results,
    Sequence,
    Status,
    SyncHdr,
    SyncML,
    SyncMLDecodeError,
    SyncMLEncodeError,
    UnknownElement,
)

#: A decoded element: local name, child elements, text (C{None} when empty).
Node: TypeAlias = tuple[str, list["Node"], Union[str, bytes, None]]

#: Deepest element nesting a codec accepts (a real DM message needs about 10).
MAX_DEPTH = 64

#: Root namespace (XML) / public identifier choice by C{VerDTD}.
NAMESPACES = {"1.1": "SYNCML:SYNCML1.1", "1.2": "SYNCML:SYNCML1.2"}


class Writer(Protocol):
    """
    What a codec provides to serialize elements; names are SyncML local names.
    """

    def start(self, name: str) -> None: ...

    def end(self, name: str) -> None: ...

    def empty(self, name: str) -> None: ...

    def leaf(self, name: str, text: str) -> None: ...

    def meta_leaf(self, name: str, text: str) -> None: ...

    def data(self, value: Data) -> None: ...


# Kinds of child element.
TEXT = 0  # leaf text (str)
DATA = 1  # Data: str, or bytes from WBXML OPAQUE
FLAG = 2  # empty element present or not (bool)
META = 3
LOCATION = 4
CRED = 5
CHAL = 6
ITEM = 7


class Child(NamedTuple):
    """
    One child element: its name, the model field it fills, its kind, whether it repeats.
    """

    element: str
    field: str
    kind: int
    repeated: bool = False


class Shape(NamedTuple):
    """
    An element's model class and its children in DTD order.
    """

    cls: type
    children: tuple[Child, ...]
    required: tuple[str, ...] = ()
    commands: bool = False  # Atomic/Sequence: other children are commands


def _cmd(*middle: Child, items: bool = True) -> tuple[Child, ...]:
    """
    CmdID, NoResp?, then C{middle}, then Item* (the pattern of most commands).
    """
    head = (Child("CmdID", "cmd_id", TEXT), Child("NoResp", "no_resp", FLAG))
    return head + middle + ((Child("Item", "items", ITEM, True),) if items else ())


_CRED = Child("Cred", "cred", CRED)
_META = Child("Meta", "meta", META)
_ITEM_COMMAND = _cmd(_CRED, _META)
# Results and Status start by pointing at the command they answer.
_REFS = (
    Child("CmdID", "cmd_id", TEXT),
    Child("MsgRef", "msg_ref", TEXT),
    Child("CmdRef", "cmd_ref", TEXT),
)

LOCATION_SHAPE = Shape(
    Location, (Child("LocURI", "loc_uri", TEXT), Child("LocName", "loc_name", TEXT)), ("loc_uri",)
)
HEADER_SHAPE = Shape(
    SyncHdr,
    (
        Child("VerDTD", "ver_dtd", TEXT),
        Child("VerProto", "ver_proto", TEXT),
        Child("SessionID", "session_id", TEXT),
        Child("MsgID", "msg_id", TEXT),
        Child("Target", "target", LOCATION),
        Child("Source", "source", LOCATION),
        Child("RespURI", "resp_uri", TEXT),
        Child("NoResp", "no_resp", FLAG),
        _CRED,
        _META,
    ),
    ("ver_dtd", "ver_proto", "session_id", "msg_id", "target", "source"),
)
_SHAPES: dict[type, Shape] = {
    Location: LOCATION_SHAPE,
    SyncHdr: HEADER_SHAPE,
    Cred: Shape(Cred, (_META, Child("Data", "data", DATA))),
    Chal: Shape(Chal, (_META,)),
    Item: Shape(
        Item,
        (
            Child("Target", "target", LOCATION),
            Child("Source", "source", LOCATION),
            Child("TargetParent", "target_parent", LOCATION),
            Child("SourceParent", "source_parent", LOCATION),
            _META,
            Child("Data", "data", DATA),
            Child("MoreData", "more_data", FLAG),
        ),
    ),
    **{cls: Shape(cls, _ITEM_COMMAND) for cls in (Add, Replace, Copy, Delete, Get)},
    Exec: Shape(Exec, _cmd(_CRED, _META, Child("Correlator", "correlator", TEXT))),
    # The RTK writes Correlator before Data; OMA examples after. Reading accepts both.
    Alert: Shape(
        Alert, _cmd(_CRED, Child("Data", "data", TEXT), Child("Correlator", "correlator", TEXT))
    ),
    Atomic: Shape(Atomic, _cmd(_META, items=False), commands=True),
    Sequence: Shape(Sequence, _cmd(_META, items=False), commands=True),
    Results: Shape(
        Results,
        (
            *_REFS,
            _META,
            Child("TargetRef", "target_ref", TEXT),
            Child("SourceRef", "source_ref", TEXT),
            Child("Item", "items", ITEM, True),
        ),
    ),
    Status: Shape(
        Status,
        (
            *_REFS,
            Child("Cmd", "cmd", TEXT),
            Child("TargetRef", "target_refs", TEXT, True),
            Child("SourceRef", "source_refs", TEXT, True),
            _CRED,
            Child("Chal", "chal", CHAL),
            Child("Data", "data", TEXT),
            Child("Item", "items", ITEM, True),
        ),
    ),
}
_BY_ELEMENT = {cls: {c.element: c for c in shape.children} for cls, shape in _SHAPES.items()}
_REPEATED = {
    cls: tuple(c.field for c in shape.children if c.repeated) for cls, shape in _SHAPES.items()
}
_COMMAND_SHAPES = {
    getattr(cls, "name"): shape for cls, shape in _SHAPES.items() if issubclass(cls, Command)
}
_SHAPE_OF_KIND = {
    LOCATION: LOCATION_SHAPE,
    CRED: _SHAPES[Cred],
    CHAL: _SHAPES[Chal],
    ITEM: _SHAPES[Item],
}

#: C{syncml:metinf} children in MetInf DTD order, with their model field.
META_FIELDS = (
    ("Format", "format"),
    ("Type", "type"),
    ("Mark", "mark"),
    ("Size", "size"),
    ("Version", "version"),
    ("NextNonce", "next_nonce"),
    ("MaxMsgSize", "max_msg_size"),
    ("MaxObjSize", "max_obj_size"),
)
_META_INT = frozenset(("size", "max_msg_size", "max_obj_size"))
_META_BY_NAME = dict(META_FIELDS)


# -- writing ----------------------------------------------------------------------------


def write_header(w: Writer, header: SyncHdr) -> None:
    """
    C{SyncHdr} with its children in DTD order.
    """
    _write(w, "SyncHdr", header, HEADER_SHAPE)


def write_command(w: Writer, command: Command) -> None:
    """
    One command with its children in DTD order.

    @raise SyncMLEncodeError: for an L{UnknownElement} or a foreign object.
    """
    shape = _SHAPES.get(type(command))
    if shape is None or not isinstance(command, Command):
        raise SyncMLEncodeError(f"cannot encode {command!r} as a SyncML command")
    _write(w, command.name, command, shape)


def _write(w: Writer, element: str, obj: Any, shape: Shape) -> None:
    # The hot loop of both encoders: children unpacked, kinds dispatched inline.
    w.start(element)
    for name, field, kind, repeated in shape.children:
        value = getattr(obj, field)
        if value is None:
            continue
        if kind == TEXT:
            if repeated:
                for one in value:
                    w.leaf(name, one)
            else:
                w.leaf(name, value)
        elif kind == DATA:
            w.data(value)
        elif kind == FLAG:
            if value:
                w.empty(name)
        elif kind == META:
            _write_meta(w, value)
        elif repeated:
            nested = _SHAPE_OF_KIND[kind]
            for one in value:
                _write(w, name, one, nested)
        else:
            _write(w, name, value, _SHAPE_OF_KIND[kind])
    if shape.commands:
        for command in obj.commands:
            write_command(w, command)
    w.end(element)


def _write_meta(w: Writer, meta: Meta) -> None:
    values = [(name, v) for name, field in META_FIELDS if (v := getattr(meta, field)) is not None]
    if not values and not meta.emi:
        w.empty("Meta")
        return
    w.start("Meta")
    for name, value in values:
        w.meta_leaf(name, value if value.__class__ is str else str(value))
    for emi in meta.emi:
        w.meta_leaf("EMI", emi)
    w.end("Meta")


# -- reading ----------------------------------------------------------------------------


def build_message(root: Node) -> SyncML:
    """
    The model of a decoded document.

    @raise SyncMLDecodeError: if the document is not a SyncML message.
    """
    name, children, _ = root
    if name != "SyncML":
        raise SyncMLDecodeError(f"root element is <{name}>, not <SyncML>")
    hdr = body = None
    for child in children:
        if child[0] == "SyncHdr":
            hdr = child
        elif child[0] == "SyncBody":
            body = child
    if hdr is None:
        raise SyncMLDecodeError("<SyncML> has no <SyncHdr>")
    if body is None:
        raise SyncMLDecodeError("<SyncML> has no <SyncBody>")
    header = _read(hdr, HEADER_SHAPE)
    final = False
    commands = []
    for child in body[1]:
        if child[0] == "Final":
            final = True
        else:
            commands.append(_read_command(child))
    return SyncML(header=header, body=tuple(commands), final=final)


def text(node: Node) -> str:
    """
    The text of a leaf element (C{""} when empty); opaque bytes must be UTF-8.
    """
    value = node[2]
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise SyncMLDecodeError(f"<{node[0]}> holds bytes that are not UTF-8 text") from None


def _read_command(node: Node) -> Command:
    shape = _COMMAND_SHAPES.get(node[0])
    if shape is None:
        cmd_id = next((text(c) for c in node[1] if c[0] == "CmdID"), None)
        return UnknownElement(name=node[0], cmd_id=cmd_id)
    return _read(node, shape)


def _read(node: Node, shape: Shape) -> Any:
    by_element = _BY_ELEMENT[shape.cls]
    values: dict[str, Any] = {}
    for c in node[1]:
        child = by_element.get(c[0])
        if child is None:
            if shape.commands:
                values.setdefault("commands", []).append(_read_command(c))
            continue
        kind = child.kind
        if kind == TEXT:
            value: Any = text(c)
        elif kind == DATA:
            value = "" if c[2] is None else c[2]
        elif kind == FLAG:
            value = True
        elif kind == META:
            value = _read_meta(c)
        else:
            value = _read(c, _SHAPE_OF_KIND[kind])
        if child.repeated:
            values.setdefault(child.field, []).append(value)
        else:
            values[child.field] = value
    for field in _REPEATED[shape.cls]:
        if field in values:
            values[field] = tuple(values[field])
    if shape.commands and "commands" in values:
        values["commands"] = tuple(values["commands"])
    for field in shape.required:
        if field not in values:
            element = next(c.element for c in shape.children if c.field == field)
            raise SyncMLDecodeError(f"<{node[0]}> has no <{element}>")
    return shape.cls(**values)


def _read_meta(node: Node) -> Meta:
    fields: dict[str, Any] = {}
    emi: list[str] = []
    _collect_meta(node, fields, emi, 0)
    if emi:
        fields["emi"] = tuple(emi)
    return Meta(**fields)


def _collect_meta(node: Node, fields: dict[str, Any], emi: list[str], depth: int) -> None:
    for c in node[1]:
        n = c[0]
        field = _META_BY_NAME.get(n)
        if field is not None:
            value = text(c)
            fields[field] = _byte_count(n, value) if field in _META_INT else value
        elif n == "EMI":
            emi.append(text(c))
        elif n == "MetInf" and depth == 0:
            _collect_meta(c, fields, emi, 1)


def _byte_count(name: str, value: str) -> int:
    digits = value.strip()
    if not (0 < len(digits) <= 20 and digits.isascii() and digits.isdigit()):
        raise SyncMLDecodeError(f"<{name}> is not a byte count: {value[:40]!r}")
    return int(digits)
