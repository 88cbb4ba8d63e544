"""
Whether a value read back from a device is the value a profile wrote,
compared as its DM format says (OMA DM TND formats, and Windows' xml and b64).

A device answers in its own spelling: C{int} C{"01"} for C{1}, C{bool}
C{"True"} for C{true}, base64 with line breaks, XML with other whitespace
between elements or attributes in another order. Those are the same value;
anything else is a mismatch, and a mismatch is a failure, never "verified".
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Mapping
from typing import Final

from lxml import etree

from mdmd.xmlparser import MalformedXML, parse

__all__ = ["same_value", "COMPARERS"]

_TRUE: Final = frozenset({"true", "1"})
_FALSE: Final = frozenset({"false", "0"})


def _int(expected: str, found: str) -> bool:
    try:
        return int(expected.strip()) == int(found.strip())
    except ValueError:
        return expected == found


def _bool(expected: str, found: str) -> bool:
    def truth(text: str) -> bool | None:
        lowered = text.strip().lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else None

    wanted, got = truth(expected), truth(found)
    return wanted is not None and wanted == got


def _float(expected: str, found: str) -> bool:
    try:
        a, b = float(expected.strip()), float(found.strip())
    except ValueError:
        return expected == found
    return a == b or (math.isnan(a) and math.isnan(b))


def _b64(expected: str, found: str) -> bool:
    def raw(text: str) -> bytes | None:
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            return None

    wanted, got = raw(expected), raw(found)
    return wanted is not None and wanted == got


def _canonical(element: etree._Element) -> tuple[object, ...]:
    """
    An element as a comparable value: its name, attributes (in any order), trimmed text and children.
    """
    return (
        element.tag,
        tuple(sorted(element.attrib.items())),
        (element.text or "").strip(),
        tuple(_canonical(child) for child in element if isinstance(child.tag, str)),
        (element.tail or "").strip(),
    )


def _xml(expected: str, found: str) -> bool:
    if expected.strip() == found.strip():
        return True
    try:
        wanted = parse(expected.encode("utf-8"))
        got = parse(found.encode("utf-8"))
    except MalformedXML:
        # Windows' ADMX-backed policies are XML fragments (<enabled/><data .../>), not documents
        try:
            wanted = parse(b"<f>" + expected.encode("utf-8") + b"</f>")
            got = parse(b"<f>" + found.encode("utf-8") + b"</f>")
        except MalformedXML:
            return False
    return _canonical(wanted) == _canonical(got)


def _chr(expected: str, found: str) -> bool:
    return expected == found


#: How each format compares (a format not listed compares as chr, OMA DM's default).
COMPARERS: Final[Mapping[str, Callable[[str, str], bool]]] = {
    "int": _int,
    "bool": _bool,
    "float": _float,
    "b64": _b64,
    "bin": _b64,
    "xml": _xml,
    "chr": _chr,
}


def same_value(format: str | None, expected: str, found: str | None, found_encoding: str | None = None) -> bool:
    """
    Whether C{found} (as the device answered it) is C{expected} (as the profile wrote it).

    C{found_encoding} C{"base64"}: the device's value was not UTF-8 and the
    engine kept it as base64 (then only a b64 or bin value can match it).
    """
    if found is None:
        return False
    if found_encoding == "base64" and format not in ("b64", "bin"):
        return False
    return COMPARERS.get(format or "chr", _chr)(expected, found)
