"""
Indexes of what falls due: the background sweepers read these, never the whole container.

A due index is an C{OOTreeSet} of entries C{(slot, *key)}: C{key} names a
record (a device id; a device id and a job number) and C{slot} the minute
its time falls in, rounded up (L{slot_of}). A sweeper asks for the entries
whose slot has begun (L{due_entries}), in bounded batches, re-checks each
record's real time and state, and then drops, keeps or moves the entry.

So an entry may be stale, and that is by design: a record whose time moves
forward on every write (a DM session's deadline) is filed once, at its
first time, and moved only when a sweeper finds it not yet due
(L{refile}). The hot path writes the index once per record, not once per
change, and an entry is never later than its record's time (a record whose
time moves earlier is filed again, L{keep_filed}).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any, Protocol

from BTrees.OOBTree import OOTreeSet

__all__ = [
    "SLOT_SECONDS",
    "Entry",
    "Filed",
    "due_entries",
    "file",
    "keep_filed",
    "refile",
    "slot_of",
]

#: The width of a slot: entries are kept by the minute.
SLOT_SECONDS = 60

#: One entry: (slot, *key).
Entry = tuple[Any, ...]


class Filed(Protocol):
    """
    A record that remembers the slot of its entry (None: not filed).
    """

    due_slot: int | None


def slot_of(when: float) -> int:
    """
    The slot of a time: the minute it falls in, rounded up, so that an entry
    is never due before its time.
    """
    return math.ceil(when / SLOT_SECONDS)


def file(index: OOTreeSet, when: float, *key: Hashable) -> int:
    """
    Add C{key}'s entry for C{when}; return its slot.
    """
    slot = slot_of(when)
    index.add((slot, *key))
    return slot


def refile(index: OOTreeSet, entry: Entry, when: float) -> int:
    """
    Move C{entry} to the slot of C{when} (if that is another); return the slot.
    """
    slot = slot_of(when)
    if slot != entry[0]:
        index.remove(entry)
        index.add((slot, *entry[1:]))
    return slot


def keep_filed(index: OOTreeSet, record: Filed, when: float, *key: Hashable) -> None:
    """
    Make sure C{record} has an entry no later than C{when}.

    An entry at C{when}'s slot or earlier is left as it is (when it falls
    due, its sweeper finds the record not due yet and moves it); only an
    unfiled record, or one whose time moved before its entry, is written.
    """
    slot = slot_of(when)
    if record.due_slot is not None:
        if record.due_slot <= slot:
            return
        index.discard((record.due_slot, *key))
    index.add((slot, *key))
    record.due_slot = slot


def due_entries(
    index: OOTreeSet, now: float, limit: int | None = None, after: Entry | None = None
) -> tuple[list[Entry], Entry | None]:
    """
    The entries whose slot has begun at C{now}, in order, from just after
    C{after}: at most C{limit} of them, and the cursor to pass as C{after}
    for the next batch (None when there is no more).

    The current minute's entries are among them, so some of their records
    may not be due yet: the caller checks each and leaves those where they
    are (the cursor moves past them).
    """
    keys = index.keys(min=after, max=(slot_of(now) + 1,), excludemin=after is not None, excludemax=True)
    entries: list[Entry] = []
    for entry in keys:
        entries.append(entry)
        if limit is not None and len(entries) >= limit:
            return entries, entry
    return entries, None
