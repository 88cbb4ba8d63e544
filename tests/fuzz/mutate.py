"""
Mutators: each takes an input, a seeded C{random.Random} and the pool of
other inputs, and returns a changed input.

Byte-level mutators work on anything; the structure-aware ones know just
enough of a format to reach past its first check (an XML element
duplicated, a number in text replaced, a DER element changed with every
enclosing length fixed, an SMPP frame changed with its command_length
fixed, a JSON value replaced) and return their input unchanged when it is
not of their format, so that another mutator is drawn. All of them are
deterministic for a given C{random.Random} state.
"""

from __future__ import annotations

import base64
import copy
import binascii
import json
import re
import struct
from collections.abc import Callable, Sequence
from random import Random
from typing import Any

from lxml import etree

__all__ = [
    "Mutator",
    "BYTES",
    "TEXT",
    "XML",
    "DER",
    "SMPP",
    "JSON_BODY",
    "INI",
    "mutate",
    "der_mutate",
]

Mutator = Callable[[bytes, Random, Sequence[bytes]], bytes]

#: Octets that sit at boundaries (signs, lengths, NUL, UTF-8 lead bytes).
_INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x84, 0xFF, 0xC3, 0xE2, 0x3C, 0x26)

#: Numbers as peers write them, right and wrong: signs, overflows, exponents,
#: digits that C{str.isdigit} accepts but C{int} does not, other scripts.
NUMBERS = (
    "0", "1", "-1", "00", "255", "256", "65535", "65536", "2147483647", "4294967296",
    "18446744073709551616", "9" * 40, "9" * 4400, "1e-999999", "1E+999999", "1e-999999999",
    "1e999999999999999999", "NaN", "-Infinity", "0x10", "1_0", " 7 ", "3.", ".5", "-0",
    "²", "³", "¹²", "٣", "１２", "12²", "2611220101", "261122010²", "²611220101",
)

#: Text that tends to break parsers and the code behind them.
TOKENS = (
    "\x00", "&#0;", "&amp;", "&#x10FFFF;", "&lt;", "]]>", "<![CDATA[x]]>", "<!--c-->", "<?pi x?>",
    "<!DOCTYPE x>", "\ufeff", "\ud800", "\u202e", "é", "\U0001f600", "\r\n", "\t", " ",
    ' xmlns:r="relative/uri"', ' xmlns="rel"', ' xmlns:x=""', ' Id="_0"', ' u:Id="_0"',
    "%s", "{0}", "\\", '"', "'", "/", ":", "#", "=", "A" * 300, "=" * 3,
) + NUMBERS


def _choice_index(rng: Random, size: int) -> int:
    return rng.randrange(size) if size else 0


# -- bytes --------------------------------------------------------------------------


def flip_bit(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    position = rng.randrange(len(data))
    return data[:position] + bytes([data[position] ^ (1 << rng.randrange(8))]) + data[position + 1 :]


def set_byte(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    if not data:
        return bytes([rng.choice(_INTERESTING_BYTES)])
    position = rng.randrange(len(data))
    value = rng.choice(_INTERESTING_BYTES) if rng.random() < 0.6 else rng.randrange(256)
    return data[:position] + bytes([value]) + data[position + 1 :]


def insert_bytes(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    position = _choice_index(rng, len(data) + 1)
    if rng.random() < 0.5:
        extra = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    else:
        extra = rng.choice(TOKENS).encode("utf-8", "surrogatepass")
    return data[:position] + extra + data[position:]


def delete_range(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    if len(data) < 2:
        return data
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.choice((1, 1, 2, 4, 16, 64, 512)))
    return data[:start] + data[end:]


def duplicate_range(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    if not data:
        return data
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.choice((1, 2, 4, 16, 64, 256)))
    times = rng.choice((1, 1, 2, 8))
    return data[:end] + data[start:end] * times + data[end:]


def splice(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    if not pool:
        return data
    other = rng.choice(pool)
    cut = _choice_index(rng, len(data) + 1)
    other_cut = _choice_index(rng, len(other) + 1)
    return data[:cut] + other[other_cut:]


def truncate(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    return data[: _choice_index(rng, len(data))]


# -- text ---------------------------------------------------------------------------

_NUMBER = re.compile(rb"[0-9]+(?:\.[0-9]+)?")


def replace_number(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    """
    One number in the text replaced by an awkward one (see L{NUMBERS}).
    """
    found = list(_NUMBER.finditer(data))
    if not found:
        return data
    match = rng.choice(found)
    if rng.random() < 0.3:  # near the original: off by one, doubled, negated
        value = int(float(match.group())) if len(match.group()) < 300 else 0
        new = str(rng.choice((value + 1, value - 1, value * 2, -value, value + 2**32))).encode()
    else:
        new = rng.choice(NUMBERS).encode("utf-8")
    return data[: match.start()] + new + data[match.end() :]


def insert_token(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    position = _choice_index(rng, len(data) + 1)
    return data[:position] + rng.choice(TOKENS).encode("utf-8", "surrogatepass") + data[position:]


# -- XML ----------------------------------------------------------------------------

_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
_START_TAG = re.compile(rb"<([A-Za-z_][\w.:-]*)")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]{24,}[A-Za-z0-9+/\s]*={0,2}")


def _tree(data: bytes) -> etree._Element | None:
    try:
        root = etree.fromstring(data, _XML_PARSER)
    except (etree.XMLSyntaxError, ValueError):
        return None
    return root


def _elements(root: etree._Element) -> list[etree._Element]:
    return [e for e in root.iter() if isinstance(e.tag, str)]


def _serialize(root: etree._Element) -> bytes:
    return bytes(etree.tostring(root))


def xml_duplicate(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    """
    An element repeated next to itself (sometimes many times).
    """
    root = _tree(data)
    if root is None:
        return data
    candidates = [e for e in _elements(root) if e.getparent() is not None]
    if not candidates:
        return data
    element = rng.choice(candidates)
    parent = element.getparent()
    assert parent is not None
    index = parent.index(element)
    for _ in range(rng.choice((1, 1, 2, 50))):
        parent.insert(index, copy.deepcopy(element))
    return _serialize(root)


def xml_delete(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    root = _tree(data)
    if root is None:
        return data
    candidates = [e for e in _elements(root) if e.getparent() is not None]
    if not candidates:
        return data
    element = rng.choice(candidates)
    parent = element.getparent()
    assert parent is not None
    parent.remove(element)
    return _serialize(root)


def xml_move(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    """
    An element moved under another one (nesting where none is expected).
    """
    root = _tree(data)
    if root is None:
        return data
    elements = _elements(root)
    element, host = rng.choice(elements), rng.choice(elements)
    if element is root or element in host.iterancestors() or element is host:
        return data
    host.append(element)
    return _serialize(root)


def xml_text(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    """
    An element's text replaced by an awkward number or token (or emptied).
    """
    root = _tree(data)
    if root is None:
        return data
    element = rng.choice(_elements(root))
    choice = rng.random()
    value = "" if choice < 0.1 else rng.choice(NUMBERS if choice < 0.6 else TOKENS)
    try:
        element.text = value
    except ValueError:  # lxml refuses control characters: write them as text bytes instead
        return insert_token(data, rng, pool)
    return _serialize(root)


def xml_attribute(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    root = _tree(data)
    if root is None:
        return data
    with_attributes = [e for e in _elements(root) if e.attrib]
    if not with_attributes:
        return data
    element = rng.choice(with_attributes)
    name = rng.choice(list(element.attrib.keys()))
    try:
        if rng.random() < 0.2:
            del element.attrib[name]
        else:
            element.set(name, rng.choice(TOKENS))
    except ValueError:
        return data
    return _serialize(root)


def xml_namespace(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    """
    A namespace declaration (often a relative URI) added to a start tag, or an element renamed.
    """
    tags = list(_START_TAG.finditer(data))
    if not tags:
        return data
    tag = rng.choice(tags)
    if rng.random() < 0.3:
        prefix = tag.group(1).rpartition(b":")[0]
        name = rng.choice((b"Id", b"Reference", b"Data", b"Envelope", b"SyncML", b"Security"))
        new = b"<" + (prefix + b":" if prefix else b"") + name
        return data[: tag.start()] + new + data[tag.end() :]
    declaration = rng.choice(
        (b' xmlns:r="relative/uri"', b' xmlns="rel"', b' xmlns:x="http://x/"', b' xmlns:ds="../a"')
    )
    return data[: tag.end()] + declaration + data[tag.end() :]


def base64_inner(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    """
    A base64 text (a CSR, a certificate, a signature) decoded, mutated (DER-aware when it is DER) and re-encoded.
    """
    found = list(_BASE64.finditer(data))
    if not found:
        return data
    match = rng.choice(found)
    try:
        inner = base64.b64decode(b"".join(match.group().split()), validate=True)
    except (binascii.Error, ValueError):
        return data
    changed = der_mutate(inner, rng, pool) if inner[:1] == b"\x30" else mutate(inner, rng, pool, BYTES)
    return data[: match.start()] + base64.b64encode(changed) + data[match.end() :]


# -- DER ----------------------------------------------------------------------------

#: A DER element: (tag, content bytes) or (tag, children) for constructed ones.
_Node = tuple[int, Any]


def _parse_der(data: bytes, depth: int = 0) -> list[_Node] | None:
    nodes: list[_Node] = []
    offset = 0
    while offset < len(data):
        if offset + 2 > len(data):
            return None
        tag = data[offset]
        length = data[offset + 1]
        start = offset + 2
        if length & 0x80:
            count = length & 0x7F
            if not 0 < count <= 3 or start + count > len(data):
                return None
            length = int.from_bytes(data[start : start + count], "big")
            start += count
        end = start + length
        if end > len(data) or tag & 0x1F == 0x1F:
            return None
        content = data[start:end]
        # constructed elements, and OCTET STRINGs that hold DER (extension values)
        nested = (tag & 0x20 or (tag == 0x04 and content[:1] in (b"\x30", b"\x04", b"\x02"))) and depth < 12
        children = _parse_der(content, depth + 1) if nested else None
        nodes.append((tag, children if children is not None else content))
        offset = end
    return nodes


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _encode_der(nodes: list[_Node]) -> bytes:
    out = bytearray()
    for tag, value in nodes:
        content = _encode_der(value) if isinstance(value, list) else value
        out += bytes([tag]) + _length(len(content)) + content
    return bytes(out)


def _all_lists(nodes: list[_Node]) -> list[list[_Node]]:
    found = [nodes]
    for _, value in nodes:
        if isinstance(value, list):
            found += _all_lists(value)
    return found


#: Element contents that break decoders: huge integers and OID arcs, empty, lone sign bytes.
_DER_CONTENTS: tuple[tuple[int, bytes], ...] = (
    (0x02, b"\x7f" + b"\xff" * 1800),  # an INTEGER of ~4340 decimal digits
    (0x02, b""),
    (0x02, b"\x00\x00\x01"),
    (0x02, b"\xff"),
    (0x06, b"\xff" * 1600 + b"\x7f"),  # an OID arc of ~3400 decimal digits
    (0x06, b"\xff" * 2000 + b"\x7f"),  # past 4300 digits
    (0x06, b""),
    (0x06, b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b"),  # sha256WithRSAEncryption
    (0x06, b"\x2a\x86\x48\xce\x3d\x04\x03\x02"),  # ecdsa-with-SHA256
    (0x06, b"\x2a\x86\x48\xce\x3d\x02\x01"),  # id-ecPublicKey
    (0x06, b"\x2b\x65\x70"),  # Ed25519
    (0x06, b"\x2a\x86\x48\xce\x38\x04\x01"),  # DSA
    (0x03, b""),
    (0x03, b"\x08\xff"),
    (0x03, b"\x00"),
    (0x04, b""),
    (0x05, b"\x00"),
    (0x0C, "é\x00".encode()),
    (0x13, b"\xff\xfe"),
    (0x17, b"991231235959Z"),
    (0x17, b"not a time"),
    (0x18, b"99991231235959Z"),
    (0x01, b"\x05"),
    (0x0A, b"\x80"),
    (0xA0, b""),
)


def der_mutate(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    """
    A DER structure changed in one element, every enclosing length kept right
    (or, sometimes, one length left wrong on purpose).
    """
    nodes = _parse_der(data)
    if not nodes:
        return mutate(data, rng, pool, BYTES)
    lists = _all_lists(nodes)
    siblings = rng.choice(lists)
    if not siblings:
        return data
    index = rng.randrange(len(siblings))
    tag, value = siblings[index]
    roll = rng.random()
    if roll < 0.3:
        siblings[index] = rng.choice(_DER_CONTENTS)
    elif roll < 0.4:
        siblings.insert(index, siblings[index])
    elif roll < 0.5:
        del siblings[index]
    elif roll < 0.6:
        siblings[index] = (rng.choice((0x02, 0x03, 0x04, 0x05, 0x06, 0x0C, 0x30, 0x31, 0xA0, 0xA3, 0x80)), value)
    elif roll < 0.7 and not isinstance(value, list):
        siblings[index] = (tag, mutate(bytes(value), rng, pool, BYTES))
    elif roll < 0.8 and not isinstance(value, list):  # DER where raw bytes were (an extension's value)
        siblings[index] = (tag, _encode_der([rng.choice(_DER_CONTENTS)]))
    elif isinstance(value, list) and value:
        siblings[index] = (tag, value[: rng.randrange(len(value))])
    else:
        siblings[index] = (tag, bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))))
    out = _encode_der(nodes)
    if rng.random() < 0.1:  # a length that lies, at some depth
        out = _lying_length(out, rng)
    return out


def _lying_length(data: bytes, rng: Random) -> bytes:
    positions = [m.start() for m in re.finditer(rb"[\x02-\x06\x30\x31\xa0]", data[:256])]
    if not positions:
        return data
    at = rng.choice(positions) + 1
    if at >= len(data):
        return data
    replacement = rng.choice((b"\x80", b"\x84\xff\xff\xff\xff", b"\x00", b"\x7f", b"\x82\x00\x01"))
    return data[:at] + replacement + data[at + 1 :]


def der_whole(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    return der_mutate(data, rng, pool)


# -- SMPP ---------------------------------------------------------------------------


def _frames(data: bytes) -> list[bytes] | None:
    frames = []
    offset = 0
    while offset + 16 <= len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        if length < 16 or offset + length > len(data):
            return None
        frames.append(data[offset : offset + length])
        offset += length
    return frames if offset == len(data) and frames else None


_COMMAND_IDS = (
    0x80000000, 0x00000001, 0x80000001, 0x00000002, 0x80000002, 0x00000004, 0x80000004,
    0x00000005, 0x80000005, 0x00000006, 0x80000006, 0x00000009, 0x80000009, 0x00000015,
    0x80000015, 0x00000103, 0x80000103, 0x00000102, 0x00000003, 0x12345678,
)


def smpp_frame(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    """
    One PDU of a stream changed (its body, its command_id, status or sequence),
    its command_length fixed most of the time so that the body is read.
    """
    frames = _frames(data)
    if frames is None:
        return mutate(data, rng, pool, BYTES)
    index = rng.randrange(len(frames))
    frame = frames[index]
    length, command_id, status, sequence = struct.unpack_from(">IIII", frame)
    body = frame[16:]
    roll = rng.random()
    if roll < 0.15:
        command_id = rng.choice(_COMMAND_IDS)
    elif roll < 0.25:
        status = rng.choice((0, 1, 8, 0x58, 0x14, 0xFF, 0xFFFFFFFF))
    elif roll < 0.3:
        sequence = rng.choice((0, 1, 0x7FFFFFFF, 0xFFFFFFFF))
    elif roll < 0.5:
        body = mutate(body, rng, pool, TEXT)
    elif roll < 0.6:
        frames.insert(index, frame)
    elif roll < 0.65:
        del frames[index]
        return b"".join(frames)
    else:
        body = mutate(body, rng, pool, BYTES)
    fixed = rng.random() < 0.85
    new_length = 16 + len(body) if fixed else rng.choice((length + 1, length - 1, 0, 15, 0xFFFFFFFF))
    frames[index] = struct.pack(">IIII", new_length & 0xFFFFFFFF, command_id, status, sequence) + body
    return b"".join(frames)


# -- JSON ---------------------------------------------------------------------------

_JSON_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1.5, 1e308, 10**30, "", "x", "²", "٣", "a" * 5000, "\x00", "\ud800x",
    [], [1], {}, {"a": None}, [[[]]], "../../etc/passwd", "*", "Get", "./Vendor/MSFT/x",
)


def _json_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [path]
    if isinstance(value, dict):
        for key, inner in value.items():
            paths += _json_paths(inner, path + (key,))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            paths += _json_paths(inner, path + (index,))
    return paths


def json_value(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    """
    In a "METHOD PATH" line followed by a JSON body: one JSON value replaced,
    a key dropped or added, or the path changed.
    """
    head, sep, body = data.partition(b"\n")
    if not sep:
        return data
    if rng.random() < 0.15:
        return mutate(head, rng, pool, TEXT) + b"\n" + body
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return data
    path = rng.choice(_json_paths(value))
    replacement = rng.choice(_JSON_VALUES)
    if not path:
        value = replacement if rng.random() < 0.3 else value
    else:
        parent = value
        for step in path[:-1]:
            parent = parent[step]
        roll = rng.random()
        if roll < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        elif roll < 0.25 and isinstance(parent, dict):
            parent[rng.choice(("name", "password", "verb", "target", "devices", "pin", "msisdn", "zz"))] = replacement
        else:
            parent[path[-1]] = replacement
    encoded = json.dumps(value, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    return head + b"\n" + encoded


# -- INI ----------------------------------------------------------------------------


def ini_line(data: bytes, rng: Random, pool: Sequence[bytes]) -> bytes:
    """
    One line of an INI file duplicated, dropped, moved, or its value replaced.
    """
    lines = data.split(b"\n")
    index = rng.randrange(len(lines))
    line = lines[index]
    roll = rng.random()
    if roll < 0.15:
        lines.insert(rng.randrange(len(lines) + 1), line)
    elif roll < 0.25:
        del lines[index]
    elif roll < 0.35 and pool:
        other = rng.choice(pool).split(b"\n")
        lines.insert(index, rng.choice(other))
    elif b"=" in line:
        key, _, _ = line.partition(b"=")
        value = rng.choice(NUMBERS + TOKENS + ("", "yes", "no", "unix:", "tcp:[::1]:0", "file://", "x" * 3000))
        lines[index] = key + b"= " + value.encode("utf-8", "surrogatepass")
    else:
        lines[index] = mutate(line, rng, pool, TEXT)
    return b"\n".join(lines)


# -- choosing -----------------------------------------------------------------------

#: Weighted mutator families; targets combine them.
BYTES: tuple[tuple[Mutator, int], ...] = (
    (flip_bit, 3), (set_byte, 3), (insert_bytes, 2), (delete_range, 2), (duplicate_range, 2),
    (splice, 2), (truncate, 1),
)
TEXT: tuple[tuple[Mutator, int], ...] = BYTES + ((replace_number, 4), (insert_token, 3))
XML: tuple[tuple[Mutator, int], ...] = TEXT + (
    (xml_duplicate, 3), (xml_delete, 3), (xml_move, 2), (xml_text, 4), (xml_attribute, 2),
    (xml_namespace, 2), (base64_inner, 4),
)
DER: tuple[tuple[Mutator, int], ...] = BYTES + ((der_whole, 12),)
SMPP: tuple[tuple[Mutator, int], ...] = BYTES + ((smpp_frame, 12), (replace_number, 3))
JSON_BODY: tuple[tuple[Mutator, int], ...] = TEXT + ((json_value, 14),)
INI: tuple[tuple[Mutator, int], ...] = TEXT + ((ini_line, 10),)


def mutate(
    data: bytes, rng: Random, pool: Sequence[bytes], family: Sequence[tuple[Mutator, int]]
) -> bytes:
    """
    C{data} changed by one mutator of C{family}, drawn by weight (up to a
    few tries when the drawn one does not apply to this input).
    """
    mutators = [m for m, _ in family]
    weights = [w for _, w in family]
    for _ in range(4):
        (mutator,) = rng.choices(mutators, weights)
        changed = mutator(data, rng, pool)
        if changed != data:
            return changed
    return flip_bit(data, rng, pool)
