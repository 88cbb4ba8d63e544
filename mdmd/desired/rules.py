"""
Rule groups: which devices a rule over inventory facts matches.

A rule is one or more conditions joined by C{and}::

    DevDetail/SwV >= 10.0.22000
    DevInfo/Man = "Contoso Ltd" and DevDetail/OEM ^= Contoso
    kind = omadm and DevDetail/FwV != 1.0

A condition is a fact, an operator and a value (quoted with double quotes
if it holds spaces). Facts are the values the server keeps of a device:
its DevInfo (every package 1) and the DevDetail/DevInfo nodes read with Get
(its inventory), named with or without the leading C{./}; and the record's
C{kind}, C{user}, C{device_name}, C{os_version}, C{os_edition},
C{device_type}, C{enrollment_type}. Operators: C{=} (equal), C{!=}, C{^=}
(starts with), and C{<}, C{<=}, C{>}, C{>=}, which compare versions (dotted
numbers: C{10.0.9} < C{10.0.22000}; a value that is not one matches no
ordering). A fact the device has not reported matches nothing, not even C{!=}.
"""

from __future__ import annotations

import operator
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from mdmd.errors import PeerError

__all__ = ["InvalidRule", "Condition", "Rule", "parse_rule", "version_key", "RECORD_FACTS", "MAX_RULE"]

#: Facts read from the device record (beside the DevInfo and inventory nodes).
RECORD_FACTS: Final = ("kind", "user", "device_name", "os_version", "os_edition", "device_type", "enrollment_type")
MAX_RULE: Final = 1024
_OPERATORS: Final = ("!=", "^=", "<=", ">=", "==", "=", "<", ">")
_FACT: Final = re.compile(r"(\./)?(DevInfo|DevDetail)(/[^\s/]+)+|" + "|".join(RECORD_FACTS))
_VERSION: Final = re.compile(r"\d+(\.\d+)*")


class InvalidRule(PeerError):
    """
    A group rule mdmd cannot read.
    """


def version_key(text: str) -> tuple[int, ...] | None:
    """
    A dotted version as numbers (None if C{text} is not one).
    """
    text = text.strip()
    if not _VERSION.fullmatch(text):
        return None
    return tuple(int(p) for p in text.split("."))


def _ordered(compare: Callable[[tuple[int, ...], tuple[int, ...]], bool]) -> Callable[[str, str], bool]:
    def test(found: str, wanted: str) -> bool:
        a, b = version_key(found), version_key(wanted)
        if a is None or b is None:
            return False
        width = max(len(a), len(b))
        return compare(a + (0,) * (width - len(a)), b + (0,) * (width - len(b)))

    return test


_TESTS: Final[Mapping[str, Callable[[str, str], bool]]] = {
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
    "^=": str.startswith,
    "<": _ordered(operator.lt),
    "<=": _ordered(operator.le),
    ">": _ordered(operator.gt),
    ">=": _ordered(operator.ge),
}


@dataclass(frozen=True)
class Condition:
    fact: str
    op: str
    value: str

    def matches(self, facts: Mapping[str, str | None]) -> bool:
        found = facts.get(self.fact)
        return found is not None and _TESTS[self.op](found, self.value)


@dataclass(frozen=True)
class Rule:
    """
    A parsed rule: every condition must match. C{text} is the canonical spelling.
    """

    conditions: tuple[Condition, ...]

    @property
    def text(self) -> str:
        return " and ".join(f"{c.fact} {c.op} {_quoted(c.value)}" for c in self.conditions)

    def matches(self, facts: Mapping[str, str | None]) -> bool:
        return all(c.matches(facts) for c in self.conditions)


_PLAIN: Final = re.compile(r"[A-Za-z0-9._:/{}@+-]+")


def _quoted(value: str) -> str:
    return value if _PLAIN.fullmatch(value) else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fact(name: str) -> str:
    """
    A fact's canonical name: tree nodes with their leading C{./}.
    """
    if name in RECORD_FACTS:
        return name
    return name if name.startswith("./") else "./" + name


def parse_rule(text: str) -> Rule:
    """
    @raise InvalidRule: saying what is wrong with C{text}.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidRule("a rule needs at least one condition (e.g. DevDetail/SwV >= 10.0.22000)")
    if len(text) > MAX_RULE:
        raise InvalidRule(f"a rule is at most {MAX_RULE} characters")
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars="!=^<>")
        lexer.wordchars += "./-:{}@+"
        tokens = list(lexer)
    except ValueError as e:
        raise InvalidRule(f"cannot read the rule: {e}") from None
    conditions = []
    index = 0
    while True:
        if len(tokens) - index < 3:
            raise InvalidRule(f"{text!r}: expected FACT OPERATOR VALUE (operators: {', '.join(_OPERATORS)})")
        fact, op, value = tokens[index : index + 3]
        if not _FACT.fullmatch(fact):
            raise InvalidRule(
                f"unknown fact {fact!r}: a DevInfo/... or DevDetail/... node, or one of {', '.join(RECORD_FACTS)}"
            )
        if op not in _TESTS:
            raise InvalidRule(f"unknown operator {op!r} (operators: {', '.join(_OPERATORS)})")
        if op in ("<", "<=", ">", ">=") and version_key(value) is None:
            raise InvalidRule(f"{fact} {op} {value}: ordering compares versions (dotted numbers)")
        conditions.append(Condition(_fact(fact), "=" if op == "==" else op, value))
        index += 3
        if index == len(tokens):
            return Rule(tuple(conditions))
        if tokens[index].lower() != "and":
            raise InvalidRule(f"expected 'and' between conditions, found {tokens[index]!r}")
        index += 1
