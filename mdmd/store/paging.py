"""
Pages of an operator's listing: one bounded unit of work per page, continued by a cursor.

A listing walks one BTree (or tree set) in key order: the records
themselves, or an index of them. A page starts after the key the previous
page ended on, so a record added meanwhile never shifts a page: past the
cursor it shows up on a later page, before it, it was simply not there
yet. The cursor (L{Cursor}) names the listing, the direction and that key,
and goes to the client as an opaque string.

A page holds at most C{limit} records, and looks at no more than
C{scan_limit} keys: a filter that no index serves rejects records as it
goes, and when the scan limit is reached first the page ends there, shorter
than asked (even empty), with a cursor to go on (L{Page.partial}). So a
page costs at most C{scan_limit} record loads whatever the filter, and a
client keeps following the cursor until there is none.

Walking newest first (L{keys_before}) steps from key to key with
C{maxKey}, each step O(log n); it is offered where a key's predecessor can
be computed (keys ending in a sequence number).

A page is built on one of the store's threads, in Python, while the
devices' check-ins need the same interpreter. Every L{YIELD_EVERY} records
it gives way (L{GiveWay}): it sleeps, which lets the check-ins take the
interpreter at once instead of waiting for the holder's switch interval
(5 ms, several times per message), and for L{BACKGROUND_RATIO} times as long
as it just worked, so that listings use at most a third of the interpreter
however many pages a client asks for back to back. Measured at a million
devices, a bulk listing at full speed (a sleep of 1 ms per 20 records)
still took most of the interpreter and made check-ins wait: their p99 went
from 36 to 152 ms. A bulk listing takes longer; the check-ins do not wait
for it.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mdmd.errors import PeerError

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "SCAN_LIMIT",
    "BACKGROUND_RATIO",
    "GiveWay",
    "YIELD_EVERY",
    "YIELD_PAUSE",
    "BadCursor",
    "BadPage",
    "Cursor",
    "Listing",
    "Page",
    "PageRequest",
    "keys_after",
    "keys_before",
]

T = TypeVar("T")
#: A key of a listing: a str, an int, a float, or a tuple of those.
Key = Any
#: What a listing's keys look like: a type, or a tuple of types for tuple keys.
Shape = type | tuple[type, ...]

#: Records per page when the client does not say.
DEFAULT_LIMIT = 100
#: The most records a page holds, whatever the client asks.
MAX_LIMIT = 1000
#: The most keys one page looks at (records a filter without an index may reject).
SCAN_LIMIT = 5000
#: A page gives way to other threads after this many keys...
YIELD_EVERY = 20
#: ... for at least this many seconds,
YIELD_PAUSE = 0.001
#: ... and this many times as long as it worked since it last gave way.
BACKGROUND_RATIO = 2.0


class GiveWay:
    """
    What a page calls every L{YIELD_EVERY} keys: sleep at least
    L{YIELD_PAUSE}, and L{BACKGROUND_RATIO} times the work since the last call.
    """

    def __init__(
        self,
        ratio: float = BACKGROUND_RATIO,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._ratio = ratio
        self._clock = clock
        self._sleep = sleep
        self._since = clock()

    def __call__(self) -> None:
        worked = self._clock() - self._since
        self._sleep(max(YIELD_PAUSE, worked * self._ratio))
        self._since = self._clock()


class BadCursor(PeerError):
    """
    The cursor is not one this listing gave (garbled, of another listing, of another order).
    """


class BadPage(PeerError):
    """
    A page was asked for in a way the listing does not offer (e.g. newest first).
    """


@dataclass(frozen=True)
class Cursor:
    """
    Where a listing goes on: after C{key}, in its direction.
    """

    listing: str
    key: Key
    descending: bool = False

    def encode(self) -> str:
        """
        The opaque form the client gets (URL-safe base64 of JSON, no padding).
        """
        raw = json.dumps([self.listing, "desc" if self.descending else "asc", self.key], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """
        @raise BadCursor: if C{text} is not an encoded cursor.
        """
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            listing, order, key = json.loads(raw)
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            raise BadCursor(f"not a cursor: {text[:40]!r}") from None
        if not isinstance(listing, str) or order not in ("asc", "desc"):
            raise BadCursor(f"not a cursor: {text[:40]!r}")
        return cls(listing, _tuples(key), order == "desc")


def _tuples(value: Any) -> Any:
    """
    JSON's lists back to the tuples keys are made of.
    """
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _fits(key: Key, shape: Shape) -> bool:
    if isinstance(shape, tuple):
        return isinstance(key, tuple) and len(key) == len(shape) and all(map(_fits, key, shape))
    if isinstance(key, bool):
        return False
    if shape is float:
        return isinstance(key, (int, float))
    return isinstance(key, shape)


@dataclass(frozen=True)
class PageRequest:
    """
    What a client asks of one page.
    """

    limit: int = DEFAULT_LIMIT
    #: where the previous page ended; None for the first page
    cursor: Cursor | None = None
    #: newest (greatest key) first, for a first page; a cursor keeps its own direction
    descending: bool = False
    scan_limit: int = SCAN_LIMIT

    def __post_init__(self) -> None:
        if not 0 < self.limit <= MAX_LIMIT or self.scan_limit < 1:
            raise ValueError(f"a page holds 1 to {MAX_LIMIT} records (asked: {self.limit})")


@dataclass(frozen=True)
class Page(Generic[T]):
    """
    One page of a listing: its records, and where the next page starts (None: there is none).
    """

    items: tuple[T, ...]
    next: Cursor | None = None
    #: the scan limit ended the page before it was full
    partial: bool = False


@dataclass(frozen=True)
class Listing:
    """
    One way of walking one kind of record: its name (what a cursor names) and its keys' shape.
    """

    name: str
    shape: Shape
    #: whether it can be walked newest first
    descending: bool = False

    def start(self, request: PageRequest) -> tuple[Key | None, bool]:
        """
        The key a page starts after (None: from the first) and whether it walks newest first.

        @raise BadCursor: if the cursor is of another listing or order, or its key is malformed.
        @raise BadPage: if newest first was asked of a listing that does not offer it.
        """
        cursor = request.cursor
        if cursor is None:
            if request.descending and not self.descending:
                raise BadPage(f"{self.name} are listed in one order only")
            return None, request.descending
        if cursor.listing != self.name:
            raise BadCursor(f"the cursor is of another listing ({cursor.listing}, not {self.name})")
        if request.descending and not cursor.descending:
            raise BadCursor("the cursor continues a listing oldest first")
        if cursor.descending and not self.descending:
            raise BadCursor(f"{self.name} are listed in one order only")
        if not _fits(cursor.key, self.shape):
            raise BadCursor(f"the cursor's position is not one of {self.name}")
        return cursor.key, cursor.descending

    def collect(
        self,
        keys: Iterable[Key],
        load: Callable[[Key], T | None],
        request: PageRequest,
        descending: bool = False,
        pause: Callable[[], None] | None = None,
    ) -> Page[T]:
        """
        The page: C{load} each key in turn (None: the filter rejects that
        record) until the page is full, the keys run out, or the scan limit
        is reached; C{pause()} (default: a new L{GiveWay}) every L{YIELD_EVERY} keys.
        """
        if pause is None:
            pause = GiveWay()
        items: list[T] = []
        iterator = iter(keys)
        scanned = 0
        last: Key | None = None
        for key in iterator:
            scanned += 1
            if scanned % YIELD_EVERY == 0:
                pause()
            last = key
            item = load(key)
            if item is not None:
                items.append(item)
            if len(items) >= request.limit or scanned >= request.scan_limit:
                break
        else:
            return Page(tuple(items))
        if next(iterator, _END) is _END:
            return Page(tuple(items))
        return Page(tuple(items), Cursor(self.name, last, descending), partial=len(items) < request.limit)


_END = object()


def keys_after(tree: Any, after: Key | None, low: Key | None = None, high: Key | None = None) -> Iterator[Key]:
    """
    The keys of C{tree} after C{after} (or from C{low}), up to C{high} excluded.
    """
    if after is not None and (low is None or after >= low):
        keys = tree.keys(min=after, max=high, excludemin=True, excludemax=high is not None)
    else:
        keys = tree.keys(min=low, max=high, excludemax=high is not None)
    return iter(keys)


def keys_before(
    tree: Any,
    before: Key | None,
    predecessor: Callable[[Key], Key],
    low: Key | None = None,
    high: Key | None = None,
) -> Iterator[Key]:
    """
    The keys of C{tree} before C{before} (or from C{high} included), newest
    first, down to C{low} included; C{predecessor(key)} is the greatest key
    that could come before C{key} (C{key - 1} for sequence numbers).
    """
    bound = high if before is None else predecessor(before)
    if bound is not None and high is not None and bound > high:
        bound = high
    while True:
        try:
            key = tree.maxKey() if bound is None else tree.maxKey(bound)
        except ValueError:  # nothing at or below the bound
            return
        if low is not None and key < low:
            return
        yield key
        bound = predecessor(key)
