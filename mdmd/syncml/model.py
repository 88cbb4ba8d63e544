"""
A typed model of one OMA DM 1.2 SyncML message, shared by the XML and WBXML codecs.

Every class is a frozen, keyword-only dataclass: a decoded message is a value
that tests compare with C{==} and the session engine pattern-matches on.

The model I{represents} what a peer sent rather than judging it, because the
session engine has to answer mistakes in protocol terms (MS-MDM): a command
without C{CmdID} keeps C{cmd_id=None} (answered with 400 and an empty
CmdRef), an element the engine does not know under C{SyncBody}, C{Atomic} or
C{Sequence} becomes an L{UnknownElement} (400), a nested C{Atomic} or a
C{Get} inside C{Atomic} decodes normally (500/507). Codes and counters stay
text (C{SessionID} may be hex: never C{int()} it); sizes in L{Meta} are
integers because the engine computes with them.

C{Data} is C{str} or C{bytes}. XML only carries text; an XML C{<Data>}
holding child elements (an embedded document) becomes its serialized XML
text. WBXML C{OPAQUE} becomes C{bytes}: binary node values (Meta Format
C{bin}) and embedded WBXML documents travel that way, and so does plain
text from some peers (libwbxml puts every C{Data} under C{Add}/C{Replace} in
C{OPAQUE}), so use L{data_text} where text is expected.

Container fields are tuples (the codecs build them so); pass tuples when
building messages by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Final, TypeAlias, Union

from mdmd.errors import PeerError
from mdmd.syncml.codes import AlertCode, StatusCode, parse_code

__all__ = [
    "SyncMLDecodeError",
    "SyncMLEncodeError",
    "Data",
    "Location",
    "Meta",
    "Cred",
    "Chal",
    "Item",
    "SyncHdr",
    "Command",
    "Alert",
    "Add",
    "Replace",
    "Copy",
    "Delete",
    "Get",
    "Exec",
    "Atomic",
    "Sequence",
    "Results",
    "Status",
    "UnknownElement",
    "ItemCommand",
    "SyncML",
    "data_text",
    "NOT_CARRIED",
]


class SyncMLDecodeError(PeerError):
    """
    The peer's message is not a SyncML message we can read (answer 400/415).
    """


class SyncMLEncodeError(ValueError):
    """
    We asked a codec to write something the encoding cannot carry (our bug).
    """


Data: TypeAlias = Union[str, bytes]


#: Characters no SyncML encoding carries in text: XML 1.0 cannot even escape
#: them, a WBXML inline string ends at NUL (a WBXML peer can still send them,
#: as ENTITY or OPAQUE). Text going to a peer must not hold them.
NOT_CARRIED: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def data_text(data: Data | None, encoding: str = "utf-8") -> str | None:
    """
    C{data} as text: C{bytes} (WBXML OPAQUE) are decoded, C{str} returned as is.

    @raise UnicodeDecodeError: if opaque data is not text in C{encoding}.
    """
    if isinstance(data, bytes):
        return data.decode(encoding)
    return data


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """
    C{Target}, C{Source}, C{TargetParent} or C{SourceParent}: a LocURI and an optional LocName.
    """

    loc_uri: str
    loc_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Meta:
    """
    C{Meta} with its C{syncml:metinf} children as OMA DM uses them.

    Anchor, Mem and FieldLevel (data synchronisation only) are not kept.
    """

    format: str | None = None
    type: str | None = None
    mark: str | None = None
    size: int | None = None
    version: str | None = None
    next_nonce: str | None = None
    max_msg_size: int | None = None
    max_obj_size: int | None = None
    emi: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Cred:
    """
    Credentials: C{Meta} (Type C{syncml:auth-md5}/C{-basic}, Format C{b64}) and the Data.
    """

    meta: Meta | None = None
    data: Data = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Chal:
    """
    A challenge: its C{Meta} names the auth type and may carry NextNonce.
    """

    meta: Meta = Meta()


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """
    One C{Item}; C{more_data} marks every chunk of a large object but the last.
    """

    target: Location | None = None
    source: Location | None = None
    target_parent: Location | None = None
    source_parent: Location | None = None
    meta: Meta | None = None
    data: Data | None = None
    more_data: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncHdr:
    """
    The message header. C{session_id} and C{msg_id} are opaque text.
    """

    ver_dtd: str = "1.2"
    ver_proto: str = "DM/1.2"
    session_id: str
    msg_id: str
    target: Location
    source: Location
    resp_uri: str | None = None
    no_resp: bool = False
    cred: Cred | None = None
    meta: Meta | None = None


class Command:
    """
    Base of every C{SyncBody} command; C{name} is its element name.
    """

    __slots__ = ()
    name: ClassVar[str]
    cmd_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _ItemCommand(Command):
    cmd_id: str | None = None
    no_resp: bool = False
    cred: Cred | None = None
    meta: Meta | None = None
    items: tuple[Item, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Add(_ItemCommand):
    """
    Create nodes.
    """

    name: ClassVar[str] = "Add"


@dataclass(frozen=True, slots=True, kw_only=True)
class Replace(_ItemCommand):
    """
    Overwrite nodes (the device's DevInfo in package 1).
    """

    name: ClassVar[str] = "Replace"


@dataclass(frozen=True, slots=True, kw_only=True)
class Copy(_ItemCommand):
    """
    Copy nodes (not supported by Windows).
    """

    name: ClassVar[str] = "Copy"


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete(_ItemCommand):
    """
    Delete nodes and their subtrees.
    """

    name: ClassVar[str] = "Delete"


@dataclass(frozen=True, slots=True, kw_only=True)
class Get(_ItemCommand):
    """
    Read nodes; values come back in a later L{Results}.
    """

    name: ClassVar[str] = "Get"


@dataclass(frozen=True, slots=True, kw_only=True)
class Exec(_ItemCommand):
    """
    Execute a node; C{correlator} ties a later Generic Alert to it.
    """

    name: ClassVar[str] = "Exec"
    correlator: str | None = None


ItemCommand: TypeAlias = Union[Add, Replace, Copy, Delete, Get, Exec]


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert(Command):
    """
    An alert; C{data} is the code as received (see L{code}).
    """

    name: ClassVar[str] = "Alert"
    cmd_id: str | None = None
    no_resp: bool = False
    cred: Cred | None = None
    data: str | None = None
    correlator: str | None = None
    items: tuple[Item, ...] = ()

    @property
    def code(self) -> AlertCode | None:
        """
        The alert code if C{data} is a known one.
        """
        return parse_code(AlertCode, self.data)


@dataclass(frozen=True, slots=True, kw_only=True)
class Atomic(Command):
    """
    All-or-nothing container (a nested Atomic or a Get inside still decodes).
    """

    name: ClassVar[str] = "Atomic"
    cmd_id: str | None = None
    no_resp: bool = False
    meta: Meta | None = None
    commands: tuple[Command, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Sequence(Command):
    """
    Ordered container.
    """

    name: ClassVar[str] = "Sequence"
    cmd_id: str | None = None
    no_resp: bool = False
    meta: Meta | None = None
    commands: tuple[Command, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Results(Command):
    """
    Values answering a Get (C{msg_ref}/C{cmd_ref} point at it).
    """

    name: ClassVar[str] = "Results"
    cmd_id: str | None = None
    msg_ref: str | None = None
    cmd_ref: str | None = None
    meta: Meta | None = None
    target_ref: str | None = None
    source_ref: str | None = None
    items: tuple[Item, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Status(Command):
    """
    The outcome of one command of the peer; C{data} is the code as received.
    """

    name: ClassVar[str] = "Status"
    cmd_id: str | None = None
    msg_ref: str | None = None
    cmd_ref: str | None = None
    cmd: str | None = None
    target_refs: tuple[str, ...] = ()
    source_refs: tuple[str, ...] = ()
    cred: Cred | None = None
    chal: Chal | None = None
    data: str | None = None
    items: tuple[Item, ...] = ()

    @property
    def code(self) -> StatusCode | None:
        """
        The status code if C{data} is a known one.
        """
        return parse_code(StatusCode, self.data)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownElement(Command):
    """
    An element the model does not know where a command belongs (answer 400).

    Codecs decode it but refuse to encode it.
    """

    name: str  # type: ignore[misc]  # a ClassVar of Command; here the element's name, per instance
    cmd_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncML:
    """
    One message: header, commands in order, and whether it carries C{<Final/>}.
    """

    header: SyncHdr
    body: tuple[Command, ...] = ()
    final: bool = True
