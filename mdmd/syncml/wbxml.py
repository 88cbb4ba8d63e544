"""
The WBXML encoding of SyncML (C{application/vnd.syncml.dm+wbxml}), straight to and from the model.

Decoding accepts WBXML 1.1, 1.2 and 1.3 documents whose public identifier is
SyncML 1.2 (C{0x1201}) or 1.1 (C{0x0FD3}), numerically or as the textual FPI
C{-//SYNCML//DTD SyncML 1.2//EN} (or C{1.1}) in the string table. OMA DM 1.2
has no FPI of its own: libwbxml, like the RTK, uses the SyncML 1.2 one.
Charset must be UTF-8 (MIBenum 106). Tags come from code page 0 (SyncML;
the 1.2 table is used for 1.1 documents too, it only adds tokens) and page
1 (MetInf); no attributes. Text may be C{STR_I}, C{STR_T}, C{ENTITY} or
C{OPAQUE}; pieces of one element are concatenated (libwbxml splits a string
into a string-table reference plus an inline tail). Whitespace-only text
between elements (libwbxml's C{-k}) is ignored. A C{Data} that holds
elements (LITERAL tags of an embedded document) becomes their XML text, like
in the XML codec. Anything else, a truncated document, an over-long
C{mb_u_int32}, nesting deeper than L{MAX_DEPTH} or bytes after the root
element, raises L{WBXMLDecodeError}, which is a L{SyncMLDecodeError}, so the
DM resource answers both encodings alike.

Encoding writes WBXML 1.2, the numeric public identifier, UTF-8, an empty
string table, text as C{STR_I}, C{bytes} Data as C{OPAQUE}, and switches
code pages lazily (just before a start tag of the other page), which is
what libwbxml writes: our output is byte-identical to
C{xml2wbxml -v 1.2 -n -k} for messages whose Data is text outside
C{Add}/C{Replace}. There libwbxml differs: it writes every C{Data} under
C{Add}/C{Replace} as C{OPAQUE} (it assumes vCard-like payloads), which we
decode as C{bytes} with the same content.
"""

from __future__ import annotations

import re
from typing import NoReturn

from mdmd.syncml._dtd import MAX_DEPTH, Node, build_message, write_command, write_header
from mdmd.syncml.model import Command, Data, SyncHdr, SyncML, SyncMLDecodeError, SyncMLEncodeError

__all__ = [
    "CONTENT_TYPE",
    "WBXMLDecodeError",
    "decode",
    "encode",
    "envelope_size",
    "command_size",
    "PUBLIC_IDS",
]

CONTENT_TYPE = "application/vnd.syncml.dm+wbxml"


class WBXMLDecodeError(SyncMLDecodeError):
    """
    The peer's bytes are not a WBXML SyncML document we accept.
    """

    http_status = 415
    syncml_status = 415


# Global tokens (WBXML 1.3 section 7.1).
_SWITCH_PAGE = 0x00
_END = 0x01
_ENTITY = 0x02
_STR_I = 0x03
_LITERAL = 0x04
_STR_T = 0x83
_OPAQUE = 0xC3
_CONTENT = 0x40
_ATTRIBUTES = 0x80
_UTF8 = 106

#: Public identifiers we accept, and the one we write per C{VerDTD}.
PUBLIC_IDS = {0x1201: "1.2", 0x0FD3: "1.1"}
_FPIS = {b"-//SYNCML//DTD SyncML 1.2//EN": "1.2", b"-//SYNCML//DTD SyncML 1.1//EN": "1.1"}
_WRITE_PUBLIC_ID = {"1.1": b"\x9f\x53", "1.2": b"\xa4\x01"}

# Code page 0: SyncML 1.2, tokens 0x05.. (0x30 is reserved).
_PAGE0 = (
    "Add Alert Archive Atomic Chal Cmd CmdID CmdRef Copy Cred Data Delete Exec Final Get Item "
    "Lang LocName LocURI Map MapItem Meta MsgID MsgRef NoResp NoResults Put Replace RespURI "
    "Results Search Sequence SessionID SftDel Source SourceRef Status Sync SyncBody SyncHdr "
    "SyncML Target TargetRef - VerDTD VerProto NumberOfChanges MoreData Field Filter Record "
    "FilterType SourceParent TargetParent Move Correlator"
).split()
# Code page 1: MetInf 1.2, tokens 0x05..
_PAGE1 = (
    "Anchor EMI Format FreeID FreeMem Last Mark MaxMsgSize Mem MetInf Next NextNonce SharedMem "
    "Size Type Version MaxObjSize FieldLevel"
).split()


def _token_names(names: list[str]) -> tuple[str | None, ...]:
    # element name by token (0..63) of one code page
    table: list[str | None] = [None] * 64
    for token, name in enumerate(names, 5):
        table[token] = None if name == "-" else name
    return tuple(table)


_PAGES = (_token_names(_PAGE0), _token_names(_PAGE1))
_TOKENS = [{name: token for token, name in enumerate(names) if name} for names in _PAGES]


# -- encoding ---------------------------------------------------------------------------


def _mb_u_int32(value: int) -> bytes:
    out = bytearray((value & 0x7F,))
    value >>= 7
    while value:
        out.insert(0, 0x80 | (value & 0x7F))
        value >>= 7
    return bytes(out)


_START = {name: bytes((token | _CONTENT,)) for name, token in _TOKENS[0].items()}
_EMPTY = {name: bytes((token,)) for name, token in _TOKENS[0].items()}
_LEAF = {name: bytes((token | _CONTENT, _STR_I)) for name, token in _TOKENS[0].items()}
_META_LEAF = {name: bytes((token | _CONTENT, _STR_I)) for name, token in _TOKENS[1].items()}
_META_EMPTY = {name: bytes((token,)) for name, token in _TOKENS[1].items()}
_OPAQUE_DATA = bytes((_TOKENS[0]["Data"] | _CONTENT, _OPAQUE))
_TO_PAGE0 = bytes((_SWITCH_PAGE, 0))
_TO_PAGE1 = bytes((_SWITCH_PAGE, 1))
_STR_END = bytes((0, _END))
_END_BYTE = bytes((_END,))


def _no_nul(text: str) -> NoReturn:
    raise SyncMLEncodeError(f"text with a NUL cannot be an inline string: {text[:40]!r}")


class _Writer:
    """
    Appends WBXML tokens for the element walk of L{mdmd.syncml._dtd}, switching pages lazily.
    """

    __slots__ = ("out", "page")

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.page = 0

    def _page(self, page: int) -> None:
        if self.page != page:
            self.out.append(_TO_PAGE1 if page else _TO_PAGE0)
            self.page = page

    def start(self, name: str) -> None:
        if self.page:
            self._page(0)
        self.out.append(_START[name])

    def end(self, name: str) -> None:
        self.out.append(_END_BYTE)

    def empty(self, name: str) -> None:
        if self.page:
            self._page(0)
        self.out.append(_EMPTY[name])

    def leaf(self, name: str, text: str) -> None:
        if self.page:
            self._page(0)
        if text:
            if "\x00" in text:
                _no_nul(text)
            self.out += (_LEAF[name], text.encode("utf-8"), _STR_END)
        else:
            self.out.append(_EMPTY[name])

    def meta_leaf(self, name: str, text: str) -> None:
        self._page(1)
        if text:
            if "\x00" in text:
                _no_nul(text)
            self.out += (_META_LEAF[name], text.encode("utf-8"), _STR_END)
        else:
            self.out.append(_META_EMPTY[name])

    def data(self, value: Data) -> None:
        if isinstance(value, str):
            self.leaf("Data", value)
            return
        if self.page:
            self._page(0)
        self.out += (_OPAQUE_DATA, _mb_u_int32(len(value)), value, _END_BYTE)


def _document_start(header: SyncHdr) -> bytes:
    # version 1.2, public id, charset UTF-8, empty string table, <SyncML>
    public_id = _WRITE_PUBLIC_ID.get(header.ver_dtd, _WRITE_PUBLIC_ID["1.2"])
    return b"\x02" + public_id + b"\x6a\x00" + _START["SyncML"]


def _write_message(w: _Writer, msg: SyncML) -> None:
    w.out.append(_document_start(msg.header))
    write_header(w, msg.header)
    w.start("SyncBody")
    for command in msg.body:
        write_command(w, command)
    if msg.final:
        w.empty("Final")
    w.out.append(b"\x01\x01")


def encode(msg: SyncML) -> bytes:
    """
    The WBXML 1.2 bytes of C{msg}.

    @raise SyncMLEncodeError: if some text cannot be an inline string.
    """
    w = _Writer()
    try:
        _write_message(w, msg)
    except UnicodeEncodeError as e:  # lone surrogates
        raise SyncMLEncodeError(f"text is not encodable as UTF-8: {e}") from None
    return b"".join(w.out)


def envelope_size(header: SyncHdr, final: bool) -> int:
    """
    Bytes of a message with this header and no commands; each command adds L{command_size}.
    """
    return len(encode(SyncML(header=header, body=(), final=final)))


def command_size(command: Command) -> int:
    """
    Bytes C{command} adds to an encoded message.

    Exact, except that a command ending on the MetInf page counts the
    two-byte page switch the next start tag needs, which the last command of
    a message without C{Final} does not: the sum stays an upper bound.
    """
    w = _Writer()
    try:
        write_command(w, command)
    except UnicodeEncodeError as e:
        raise SyncMLEncodeError(f"text is not encodable as UTF-8: {e}") from None
    return sum(map(len, w.out)) + (len(_TO_PAGE0) if w.page else 0)


# -- decoding ---------------------------------------------------------------------------

_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_.:-]*\Z")


def _read_mb(data: bytes, pos: int) -> tuple[int, int]:
    """
    An C{mb_u_int32} at C{pos}: at most 5 bytes, below 2**32.
    """
    value = 0
    for i in range(pos, min(pos + 5, len(data))):
        byte = data[i]
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            if value > 0xFFFFFFFF:
                raise WBXMLDecodeError(f"mb_u_int32 at offset {pos} exceeds 32 bits")
            return value, i + 1
    if pos + 5 <= len(data):
        raise WBXMLDecodeError(f"mb_u_int32 at offset {pos} is longer than 5 bytes")
    raise WBXMLDecodeError(f"document truncated in an mb_u_int32 at offset {pos}")


def _table_string(strtbl: bytes, offset: int) -> bytes:
    end = strtbl.find(b"\x00", offset)
    if offset >= len(strtbl) or end < 0:
        raise WBXMLDecodeError(f"string table reference {offset} is outside the table")
    return strtbl[offset:end]


def _entity(code: int) -> bytes:
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise WBXMLDecodeError(f"ENTITY {code:#x} is not a Unicode character")
    return chr(code).encode("utf-8")


def _utf8_text(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WBXMLDecodeError(f"text in <{where}> is not UTF-8") from None


def decode(data: bytes) -> SyncML:
    """
    The model of a WBXML SyncML message.

    @raise WBXMLDecodeError: if C{data} is not a WBXML SyncML 1.1/1.2 document.
    @raise SyncMLDecodeError: if it is one, but not a SyncML message.
    """
    data = bytes(data)
    if not data:
        raise WBXMLDecodeError("empty document")
    version = data[0]
    if version not in (0x01, 0x02, 0x03):
        raise WBXMLDecodeError(f"WBXML version byte {version:#04x} is not 1.1, 1.2 or 1.3")
    public_id, pos = _read_mb(data, 1)
    fpi_index = None
    if public_id == 0:
        fpi_index, pos = _read_mb(data, pos)
    charset, pos = _read_mb(data, pos)
    if charset != _UTF8:
        raise WBXMLDecodeError(f"charset MIBenum {charset} is not supported; only UTF-8 ({_UTF8})")
    strtbl_len, pos = _read_mb(data, pos)
    if pos + strtbl_len > len(data):
        raise WBXMLDecodeError("document truncated in its string table")
    strtbl = data[pos : pos + strtbl_len]
    pos += strtbl_len
    if fpi_index is not None:
        fpi = _table_string(strtbl, fpi_index)
        if fpi not in _FPIS:
            raise WBXMLDecodeError(f"public identifier {fpi[:80]!r} is not SyncML 1.1 or 1.2")
    elif public_id not in PUBLIC_IDS:
        raise WBXMLDecodeError(f"public identifier {public_id:#06x} is not SyncML 1.1 or 1.2")
    root, pos = _Parser(data, strtbl).body(pos)
    if pos != len(data):
        raise WBXMLDecodeError(f"{len(data) - pos} bytes after the end of the document")
    return build_message(root)


def _tag_table(page: int) -> tuple[tuple[str, bool] | None, ...]:
    """
    For each byte: (element name, has content) if it is a tag token of C{page} without attributes.
    """
    table: list[tuple[str, bool] | None] = []
    for byte in range(256):
        name = _PAGES[page][byte & 0x3F] if not byte & _ATTRIBUTES else None
        table.append((name, bool(byte & _CONTENT)) if name else None)
    return tuple(table)


_TAG_TABLES = (_tag_table(0), _tag_table(1))


class _Parser:
    """
    Turns the token stream into L{Node}s, with an explicit stack (no recursion).

    Tag tokens are looked up in a 256-entry table per code page and the
    usual leaf (tag, STR_I, text, END) is read in one step: that keeps the
    per-byte Python work small enough to beat the XML path.
    """

    __slots__ = ("data", "strtbl", "page")

    def __init__(self, data: bytes, strtbl: bytes) -> None:
        self.data = data
        self.strtbl = strtbl
        self.page = 0

    def _other_tag(self, byte: int, pos: int) -> tuple[str, int]:
        """
        The name of a LITERAL tag at C{pos - 1} (and where it ends), or fail for any other token.
        """
        if byte & _ATTRIBUTES:
            if byte & 0x3F >= 5 or byte & 0x3F == _LITERAL:
                raise WBXMLDecodeError(f"tag token {byte:#04x} at offset {pos - 1} has attributes")
        elif byte & 0x3F == _LITERAL:
            return self._literal(pos)
        raise WBXMLDecodeError(
            f"unknown token {byte:#04x} on code page {self.page} at offset {pos - 1}"
        )

    def _literal(self, pos: int) -> tuple[str, int]:
        index, pos = _read_mb(self.data, pos)
        raw = _table_string(self.strtbl, index)
        if not _NAME.match(raw):
            raise WBXMLDecodeError(f"literal tag name {raw[:40]!r} is not an XML name")
        return raw.decode("ascii"), pos

    def _switch(self, pos: int) -> int:
        page = self.data[pos]
        if page > 1:
            raise WBXMLDecodeError(f"code page {page} is not SyncML (0) or MetInf (1)")
        self.page = page
        return pos + 1

    def _string(self, byte: int, pos: int) -> tuple[bytes, int, bool] | None:
        """
        A text token at C{pos - 1}: its bytes, the next position, whether it was OPAQUE.
        """
        data = self.data
        if byte == _STR_I:
            end = data.find(b"\x00", pos)
            if end < 0:
                raise WBXMLDecodeError(f"document truncated in an inline string at offset {pos}")
            return data[pos:end], end + 1, False
        if byte == _OPAQUE:
            length, pos = _read_mb(data, pos)
            if pos + length > len(data):
                raise WBXMLDecodeError(f"document truncated in OPAQUE data at offset {pos}")
            return data[pos : pos + length], pos + length, True
        if byte == _STR_T:
            offset, pos = _read_mb(data, pos)
            return _table_string(self.strtbl, offset), pos, False
        if byte == _ENTITY:
            code, pos = _read_mb(data, pos)
            return _entity(code), pos, False
        return None

    def body(self, pos: int) -> tuple[Node, int]:
        """
        The root element starting at C{pos}, and the position after it.
        """
        try:
            return self._body(pos)
        except IndexError:
            raise WBXMLDecodeError("document truncated: elements left open") from None
        except UnicodeDecodeError:
            raise WBXMLDecodeError("an inline string is not UTF-8 text") from None

    def _body(self, pos: int) -> tuple[Node, int]:
        data = self.data
        find = data.find
        tags = _TAG_TABLES[self.page]
        # An open element: [name, children, text pieces, opaque?]
        stack: list[list] = []
        current: list | None = None
        while True:
            byte = data[pos]
            pos += 1
            if byte == _END:
                if current is None:
                    raise WBXMLDecodeError(f"END at offset {pos - 1} closes no element")
                node = _finish(current)
                if not stack:
                    return node, pos
                current = stack.pop()
                current[1].append(node)
                continue
            entry = tags[byte]
            if entry is not None:
                name, content = entry
            elif byte == _SWITCH_PAGE:
                pos = self._switch(pos)
                tags = _TAG_TABLES[self.page]
                continue
            else:
                string = self._string(byte, pos)
                if string is not None:
                    if current is None:
                        raise WBXMLDecodeError("text before the root element")
                    current[2].append(string[0])
                    pos = string[1]
                    if string[2]:
                        current[3] = True
                    continue
                name, pos = self._other_tag(byte, pos)
                content = bool(byte & _CONTENT)
            if not content:
                if current is None:
                    return (name, [], None), pos
                current[1].append((name, [], None))
                continue
            if current is not None:
                if name == "Data":
                    value, pos = self._data(pos)
                    tags = _TAG_TABLES[self.page]
                    current[1].append((name, [], value))
                    continue
                # The usual leaf: tag STR_I text NUL END, in one step.
                if data[pos] == _STR_I:
                    end = find(b"\x00", pos + 1)
                    if end > 0 and data[end + 1] == _END:
                        current[1].append((name, [], data[pos + 1 : end].decode("utf-8")))
                        pos = end + 2
                        continue
                if len(stack) >= MAX_DEPTH:
                    raise WBXMLDecodeError(f"elements nest deeper than {MAX_DEPTH} levels")
                stack.append(current)
            current = [name, [], [], False]

    def _data(self, pos: int) -> tuple[Data, int]:
        """
        The content of a C{Data} element up to its END: text, bytes, or XML text of elements.
        """
        data = self.data
        # The usual cases in one step: STR_I text NUL END, or OPAQUE length bytes END.
        byte = data[pos]
        if byte == _STR_I or byte == _OPAQUE:
            string = self._string(byte, pos + 1)
            if string is not None and data[string[1]] == _END:
                raw, after, opaque = string
                return (raw if opaque else _utf8_text(raw, "Data")), after + 1
        pieces: list[bytes] = []
        opaque = False
        xml: list[str] | None = None  # set once an element shows up
        open_names: list[str] = []
        while True:
            byte = data[pos]
            pos += 1
            if byte == _END:
                if not open_names:
                    break
                assert xml is not None  # an element was opened, so xml was started
                xml.append(f"</{open_names.pop()}>")
                continue
            if byte == _SWITCH_PAGE:
                pos = self._switch(pos)
                continue
            string = self._string(byte, pos)
            if string is not None:
                pos = string[1]
                if xml is None:
                    pieces.append(string[0])
                    opaque = opaque or string[2]
                else:
                    xml.append(_escape(_utf8_text(string[0], "Data")))
                continue
            entry = _TAG_TABLES[self.page][byte]
            if entry is not None:
                name = entry[0]
            else:
                name, pos = self._other_tag(byte, pos)
            if xml is None:
                xml = [_escape(_utf8_text(b"".join(pieces), "Data"))]
            if byte & _CONTENT:
                if len(open_names) >= MAX_DEPTH:
                    raise WBXMLDecodeError(f"elements nest deeper than {MAX_DEPTH} levels")
                open_names.append(name)
                xml.append(f"<{name}>")
            else:
                xml.append(f"<{name}/>")
        if xml is not None:
            return "".join(xml), pos
        if opaque:
            return b"".join(pieces), pos
        return _utf8_text(b"".join(pieces), "Data"), pos


def _finish(element: list) -> Node:
    name, children, pieces, opaque = element
    if children or not pieces:
        return (name, children, None)
    raw = b"".join(pieces)
    return (name, children, raw if opaque else _utf8_text(raw, name))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
