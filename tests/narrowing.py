"""
Narrowing a value a test knows the type of, for the type checker (and checked when the test runs).
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def narrowed(kind: type[T], value: object) -> T:
    """
    C{value}, which must be a C{kind}: a command of a decoded message's body, say.
    """
    assert isinstance(value, kind), value
    return value
