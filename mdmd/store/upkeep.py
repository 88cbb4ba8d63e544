"""
Store upkeep: packing the embedded FileStorage and saving its index, while it serves.

FileStorage appends every transaction to C{Data.fs}, so the file grows
without bound until it is packed. A pack copies the records current at the
pack time (and every record written after it) to C{Data.fs.pack} while
commits go on, takes the commit lock only to copy what was committed
meanwhile, and swaps the files; objects no longer reachable from the root
are dropped too (garbage collection, on by default). Loads and commits
continue throughout; one pack runs at a time.

The storage's index (object id → position in the file) lives in memory and
is written to C{Data.fs.index} only on a clean close, so a start after a
crash reads the whole file to rebuild it. Saving it now and then (under
the storage's lock, which a commit holds while it moves the end of the file
and updates the index, so the saved index and position agree) makes that
start read only the transactions committed after the save.

A ZEO client packs nothing: the storage is the ZEO server's (C{zeopack}
packs it there, for every node at once). RelStorage history-free keeps no
old revisions: its garbage is collected by RelStorage's C{zodbpack}.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import ZODB
from ZODB.FileStorage import FileStorage

from mdmd.errors import Conflict
from mdmd.store.db import restrict_modes

__all__ = [
    "IndexSaved",
    "PackInProgress",
    "PackRefused",
    "PackReport",
    "UpkeepSettings",
    "pack",
    "pack_point",
    "pack_refusal",
    "save_index",
]

_DAY = 86400.0


@dataclass(frozen=True)
class UpkeepSettings:
    """
    When the store is packed and its index saved ([store]).
    """

    #: seconds between scheduled packs; 0: only on demand
    pack_interval: float = _DAY
    #: history kept by a pack, in days (0: only the current revisions)
    pack_keep_days: float = 1.0
    #: seconds between saves of the FileStorage index; 0: only on a clean close
    index_save_interval: float = 300.0


class PackRefused(Conflict):
    """
    This store is not packed by mdmd (a ZEO client, RelStorage history-free).
    """


class PackInProgress(Conflict):
    """
    A pack is running already.
    """


#: Why a store of a URI scheme is not packed here; a scheme not named packs.
_REFUSALS: dict[str, str] = {
    "zeo": "the store is the ZEO server's: pack it there (zeopack HOST:PORT), once for every node",
    "postgresql": (
        "RelStorage history-free keeps no history to pack; collect its garbage with "
        "RelStorage's zodbpack and a <relstorage> configuration"
    ),
}
_REFUSALS["postgres"] = _REFUSALS["postgresql"]


def pack_refusal(uri: str) -> str | None:
    """
    Why the store at C{uri} is not packed by mdmd, or None if it is.
    """
    return _REFUSALS.get(urlsplit(uri).scheme)


@dataclass(frozen=True)
class PackReport:
    """
    What a pack did.
    """

    #: the history it kept, in days
    days: float
    #: when it started (POSIX seconds) and how long it took
    started_at: float
    seconds: float
    #: the storage's size (bytes) before and after
    size_before: int
    size_after: int

    def as_json(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "started_at": self.started_at,
            "seconds": round(self.seconds, 3),
            "size_before": self.size_before,
            "size_after": self.size_after,
        }


def pack_point(days: float, now: float) -> float:
    """
    The time a pack keeping C{days} of history at C{now} drops revisions before.
    """
    return now - days * _DAY


def pack(
    db: ZODB.DB, days: float, now: float, timer: Callable[[], float] = time.monotonic
) -> PackReport:
    """
    Pack C{db}'s storage to C{days} before C{now}, in the calling thread
    (commits go on meanwhile); return what it did.
    """
    storage = db.storage
    size_before = storage.getSize()
    started = timer()
    db.pack(t=pack_point(days, now))
    return PackReport(days, now, timer() - started, size_before, storage.getSize())


@dataclass(frozen=True)
class IndexSaved:
    """
    What a save of the FileStorage index did.
    """

    #: the end of the file it covers (a start reads only what follows)
    position: int
    #: how long it held the storage's lock (commits wait that long)
    seconds: float


def save_index(storage: FileStorage, timer: Callable[[], float] = time.monotonic) -> IndexSaved:
    """
    Write C{Data.fs.index} as of the last commit.

    FileStorage saves its index this way itself after a pack: under its
    lock, which commits take to update the index and the end position together.
    """
    started = timer()
    with storage._lock:
        storage._save_index()
        position: int = storage._pos
    held = timer() - started
    restrict_modes(storage._file_name)  # the index names every object: owner only, as the store
    return IndexSaved(position, held)
