"""
The counts desired state keeps (devices per profile and state, members per
group), changed in the same transactions as the records they count.

A tiny interface of our own: L{ensure} (create keys ahead, outside the hot
units of work), L{incr} and L{read}. Each count is a C{BTrees.Length.Length}
under the root's C{desired_counts}: concurrent changes of one count resolve
(two check-ins adding one each commit as plus two), and only creating a key
changes the tree itself. It is meant to be pointed at the store's general
counters (C{mdmd.store.counters}) when they land, keeping these four names.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any, Final

from BTrees.Length import Length

__all__ = ["COUNTS", "Key", "ensure", "incr", "read", "drop"]

Root = MutableMapping[str, Any]
#: A count's key: (kind, name, ...) of plain strings, e.g. ("profile", "camera", "verified").
Key = tuple[str, ...]

COUNTS: Final = "desired_counts"


def ensure(root: Root, keys: Iterable[Key]) -> None:
    """
    Create the counts of C{keys} that do not exist yet (at 0).
    """
    counts = root[COUNTS]
    for key in keys:
        if key not in counts:
            counts[key] = Length()


def incr(root: Root, key: Key, n: int = 1) -> None:
    """
    Add C{n} (which may be negative) to a count, creating it if needed.
    """
    if not n:
        return
    counts = root[COUNTS]
    counter = counts.get(key)
    if counter is None:
        counter = counts[key] = Length()
    counter.change(n)


def read(root: Root, keys: Iterable[Key]) -> dict[Key, int]:
    """
    The counts of C{keys} (0 for one that does not exist).
    """
    counts = root[COUNTS]
    found = {}
    for key in keys:
        counter = counts.get(key)
        found[key] = 0 if counter is None else int(counter())
    return found


def drop(root: Root, keys: Iterable[Key]) -> None:
    """
    Forget counts (of a group that is gone).
    """
    counts = root[COUNTS]
    for key in keys:
        counts.pop(key, None)
