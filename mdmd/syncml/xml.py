"""
The XML encoding of SyncML (C{application/vnd.syncml.dm+xml}).

Decoding is namespace-tolerant: elements are matched on local names, so
C{SYNCML:SYNCML1.2}, C{SYNCML:SYNCML1.1}, no namespace, C{syncml:metinf},
Microsoft's C{syncml:metinfo} typo and stray C{xmlns:*} declarations (such as
C{xmlns:msft} on C{SyncBody}) all read the same. Parsing goes through
L{mdmd.xmlparser.parse}; a leading C{<!DOCTYPE SyncML ...>} that only names
the external DTD (what libwbxml's C{wbxml2xml} and older SyncML stacks
write) is dropped first, since that parser refuses every DTD and this one
can neither define entities nor be fetched.

Encoding is compact (the Windows DM client aborts on whitespace between
tags), UTF-8 without an XML declaration, root C{xmlns="SYNCML:SYNCML1.2"}
(C{1.1} when the header says C{VerDTD 1.1}), C{xmlns="syncml:metinf"} on
each C{Meta} child, children in DTD order, and C{Data} always escaped text,
never CDATA (Windows mis-reads CDATA around nested documents). Decoding
forgives the C0 control characters XML forbids (L{lenient}): libdmclient
ends values with a NUL. XML cannot
carry opaque bytes: C{bytes} Data must be UTF-8 text or encoding fails;
binary values go as base64 text with Meta Format C{b64}, which is the
session engine's choice, not the codec's.
"""

from __future__ import annotations

import re
from copy import deepcopy

from lxml import etree

from mdmd.syncml._dtd import MAX_DEPTH, NAMESPACES, Node, build_message, write_command, write_header
from mdmd.syncml.model import Command, Data, SyncHdr, SyncML, SyncMLDecodeError, SyncMLEncodeError
from mdmd.xmlparser import MalformedXML, parse

__all__ = ["CONTENT_TYPE", "decode", "encode", "envelope_size", "command_size", "inner_xml", "lenient"]

CONTENT_TYPE = "application/vnd.syncml.dm+xml"


# -- encoding ---------------------------------------------------------------------------


class _Tags(dict[str, str]):
    """
    Tag text by element name, made on first use.
    """

    def __init__(self, template: str) -> None:
        super().__init__()
        self._template = template

    def __missing__(self, name: str) -> str:
        tag = self[name] = self._template.format(name)
        return tag


_OPEN = _Tags("<{}>")
_CLOSE = _Tags("</{}>")
_EMPTY = _Tags("<{}/>")
_META_OPEN = _Tags('<{} xmlns="syncml:metinf">')
_META_EMPTY = _Tags('<{} xmlns="syncml:metinf"/>')

# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Anything that needs L{_escape}: markup characters, CR, or the above.
_SPECIAL = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _escape(text: str) -> str:
    if _SPECIAL.search(text) is None:
        return text
    if _NOT_XML.search(text):
        raise SyncMLEncodeError(f"text cannot be carried in XML: {text[:40]!r}")
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:  # a bare CR would come back as LF
        text = text.replace("\r", "&#13;")
    return text


class _Writer:
    """
    Appends XML text for the element walk of L{mdmd.syncml._dtd}.
    """

    __slots__ = ("out",)

    def __init__(self) -> None:
        self.out: list[str] = []

    def start(self, name: str) -> None:
        self.out.append(_OPEN[name])

    def end(self, name: str) -> None:
        self.out.append(_CLOSE[name])

    def empty(self, name: str) -> None:
        self.out.append(_EMPTY[name])

    def leaf(self, name: str, text: str) -> None:
        if text:
            self.out += (_OPEN[name], _escape(text), _CLOSE[name])
        else:
            self.out.append(_EMPTY[name])

    def meta_leaf(self, name: str, text: str) -> None:
        if text:
            self.out += (_META_OPEN[name], _escape(text), _CLOSE[name])
        else:
            self.out.append(_META_EMPTY[name])

    def data(self, value: Data) -> None:
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise SyncMLEncodeError(
                    "binary Data cannot be carried in XML; send it as base64 (Format b64)"
                ) from None
        self.leaf("Data", value)


def _root_open(header: SyncHdr) -> str:
    return f'<SyncML xmlns="{NAMESPACES.get(header.ver_dtd, NAMESPACES["1.2"])}">'


def encode(msg: SyncML) -> bytes:
    """
    The compact XML bytes of C{msg}.

    @raise SyncMLEncodeError: if some text cannot be carried in XML.
    """
    w = _Writer()
    w.out.append(_root_open(msg.header))
    write_header(w, msg.header)
    w.out.append("<SyncBody>")
    for command in msg.body:
        write_command(w, command)
    w.out.append("<Final/></SyncBody></SyncML>" if msg.final else "</SyncBody></SyncML>")
    return _utf8("".join(w.out))


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates
        raise SyncMLEncodeError(f"text is not encodable as UTF-8: {e}") from None


def envelope_size(header: SyncHdr, final: bool) -> int:
    """
    Bytes of a message with this header and no commands; each command adds L{command_size}.
    """
    return len(encode(SyncML(header=header, body=(), final=final)))


def command_size(command: Command) -> int:
    """
    Bytes C{command} adds to an encoded message (exactly).
    """
    w = _Writer()
    write_command(w, command)
    return len(_utf8("".join(w.out)))


# -- decoding ---------------------------------------------------------------------------

_DOCTYPE = re.compile(
    rb"((?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>)?)\s*<!DOCTYPE\s+SyncML"
    rb"""(\s+(PUBLIC\s+("[^"]*"|'[^']*')|SYSTEM)(\s+("[^"]*"|'[^']*'))?)?\s*>"""
)


#: The C0 control characters XML 1.0 forbids (all but tab, LF and CR) but for
#: NUL: a byte of its own in UTF-8 (never part of a longer sequence).
_ILLEGAL_CONTROLS = re.compile(rb"[\x01-\x08\x0b\x0c\x0e-\x1f]")
#: Byte order marks (and the first bytes without one) of documents in UTF-16 or
#: UTF-32, where a 0x00 byte is part of a character.
_WIDE_ENCODINGS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00", b"<\x00", b"\x00<")


def lenient(data: bytes) -> bytes:
    """
    C{data} with the C0 control characters XML forbids made harmless: NUL
    dropped (libdmclient sends C strings with their terminating NUL in
    values), the others replaced by U+FFFD. Without this one such character
    would lose the whole message: its statuses, results and our nonce.

    A UTF-16 or UTF-32 document is left as it is (its zero bytes are characters).
    """
    if data.startswith(_WIDE_ENCODINGS):
        return data
    if b"\x00" in data:
        data = data.replace(b"\x00", b"")
    return _ILLEGAL_CONTROLS.sub("\ufffd".encode(), data)


def decode(data: bytes) -> SyncML:
    """
    The model of an XML SyncML message.

    The peer's bytes are made L{lenient} first; the parser stays as strict as
    ever (no DTD, no entities).

    @raise SyncMLDecodeError: if C{data} is not well-formed XML or not a SyncML message.
    """
    data = lenient(data)
    if b"<!DOCTYPE" in data[:1024]:
        match = _DOCTYPE.match(data)
        if match:
            data = match.group(1) + data[match.end() :]
    try:
        root = parse(data)
    except MalformedXML as e:
        raise SyncMLDecodeError(str(e)) from None
    return build_message(_tree(root))


def _tree(root: etree._Element) -> Node:
    """
    The L{Node} tree of a parsed document (one C{iterwalk}: cheaper than recursion over proxies).
    """
    walker = etree.iterwalk(root, events=("start", "end"))
    stack: list[Node] = []
    current: Node | None = None
    for event, element in walker:
        if event == "end":
            if stack:
                current = stack.pop()
            continue
        tag = element.tag
        name = tag[tag.rfind("}") + 1 :]
        if name == "Data" and len(element):
            node: Node = (name, [], inner_xml(element))
            walker.skip_subtree()
        else:
            node = (name, [], element.text)
        if current is not None:
            if len(stack) >= MAX_DEPTH:
                raise SyncMLDecodeError(f"elements nest deeper than {MAX_DEPTH} levels")
            current[1].append(node)
            stack.append(current)
        current = node
    assert current is not None  # the walk begins with the root's start
    return current


def inner_xml(element: etree._Element) -> str:
    """
    The content of a C{Data} holding child elements, serialized as XML text.

    Children would otherwise inherit the SyncML default namespace, which was
    never theirs: it is removed (their own declarations stay).
    """
    inherited = element.nsmap.get(None)
    parts = [_escape(element.text)] if element.text else []
    for child in element:
        if isinstance(child.tag, str):
            copy = deepcopy(child)
            if inherited:
                prefix = "{" + inherited + "}"
                for e in copy.iter():
                    if isinstance(e.tag, str) and e.tag.startswith(prefix):
                        e.tag = e.tag[len(prefix) :]
                etree.cleanup_namespaces(copy)
            parts.append(etree.tostring(copy, encoding=str, with_tail=False))
        if child.tail:
            parts.append(_escape(child.tail))
    return "".join(parts)
