"""
Tests for L{mdmd.store.paging}.
"""

from __future__ import annotations

from typing import Any

from BTrees.IOBTree import IOBTree
from BTrees.OOBTree import OOTreeSet
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mdmd.errors import PeerError
from mdmd.store.paging import (
    MAX_LIMIT,
    YIELD_EVERY,
    YIELD_PAUSE,
    GiveWay,
    BadCursor,
    BadPage,
    Cursor,
    Listing,
    Page,
    PageRequest,
    keys_after,
    keys_before,
)

NAMES = Listing("names", str)
SEQS = Listing("seqs", int, descending=True)
TRIPLES = Listing("triples", (float, str, int), descending=True)


def _previous(seq: int) -> int:
    return seq - 1


def _pages(listing: Listing, tree: Any, request: PageRequest, keep: Any = lambda key: key) -> list[Page[Any]]:
    """
    Every page of C{tree}, following the cursors.
    """
    pages = []
    while True:
        after, newest_first = listing.start(request)
        keys = keys_before(tree, after, _previous) if newest_first else keys_after(tree, after)
        page = listing.collect(keys, keep, request, newest_first)
        pages.append(page)
        if page.next is None:
            return pages
        request = PageRequest(limit=request.limit, cursor=Cursor.decode(page.next.encode()), scan_limit=request.scan_limit)


class CursorTests(SynchronousTestCase):
    @given(
        st.one_of(
            st.text(),
            st.integers(min_value=-(2**160), max_value=2**160),
            st.tuples(st.floats(allow_nan=False, allow_infinity=False), st.text(), st.integers()),
        ),
        st.booleans(),
    )
    def test_round_trip(self, key: Any, descending: bool) -> None:
        """
        A cursor comes back as it went (tuples as tuples, big serials, floats exactly).
        """
        cursor = Cursor("listing", key, descending)
        encoded = cursor.encode()
        self.assertRegex(encoded, "^[A-Za-z0-9_-]*$")
        self.assertEqual(Cursor.decode(encoded), cursor)

    def test_garbage(self) -> None:
        """
        What no listing gave is a BadCursor, the peer's mistake (400).
        """
        for text in ("", "!!!", "e30", Cursor("x", 1).encode()[:-3], "WzEsMiwzXQ"):
            with self.assertRaises(BadCursor) as caught:
                Cursor.decode(text)
            self.assertIsInstance(caught.exception, PeerError)
            self.assertEqual(caught.exception.http_status, 400)

    def test_checked_by_the_listing(self) -> None:
        """
        A cursor of another listing, of another order, or with a key of another shape is refused.
        """
        for cursor, message in (
            (Cursor("seqs", 1), "another listing"),
            (Cursor("triples", (1.0, "a")), "not one of triples"),
            (Cursor("triples", (1.0, "a", "b")), "not one of triples"),
            (Cursor("triples", (True, "a", 1)), "not one of triples"),
            (Cursor("names", 5), "not one of names"),
            (Cursor("names", "a", descending=True), "one order only"),
        ):
            listing = NAMES if cursor.listing == "names" else TRIPLES
            with self.assertRaises(BadCursor) as caught:
                listing.start(PageRequest(cursor=cursor))
            self.assertIn(message, str(caught.exception))
        with self.assertRaises(BadCursor):
            SEQS.start(PageRequest(cursor=Cursor("seqs", 5), descending=True))
        self.assertEqual(TRIPLES.start(PageRequest(cursor=Cursor("triples", (1, "a", 2)))), ((1, "a", 2), False))
        self.assertEqual(SEQS.start(PageRequest(cursor=Cursor("seqs", 5, True))), (5, True))

    def test_newest_first_only_where_offered(self) -> None:
        """
        Asking a listing that goes one way only for newest first is a BadPage.
        """
        self.assertRaises(BadPage, NAMES.start, PageRequest(descending=True))
        self.assertEqual(SEQS.start(PageRequest(descending=True)), (None, True))

    def test_limits(self) -> None:
        """
        A page holds 1 to MAX_LIMIT records.
        """
        self.assertRaises(ValueError, PageRequest, limit=0)
        self.assertRaises(ValueError, PageRequest, limit=MAX_LIMIT + 1)
        self.assertEqual(PageRequest(limit=MAX_LIMIT).limit, MAX_LIMIT)


class CollectTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.tree = IOBTree({n: str(n) for n in range(1, 11)})

    def test_pages_cover_everything_once(self) -> None:
        """
        Following the cursors lists every key once, in order; the last page has no cursor.
        """
        pages = _pages(SEQS, self.tree, PageRequest(limit=3))
        self.assertEqual([list(p.items) for p in pages], [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]])
        self.assertIsNone(pages[-1].next)
        self.assertFalse(any(p.partial for p in pages))

    def test_no_empty_last_page(self) -> None:
        """
        A page that ends exactly at the last key says there is nothing more.
        """
        pages = _pages(SEQS, self.tree, PageRequest(limit=5))
        self.assertEqual([len(p.items) for p in pages], [5, 5])

    def test_newest_first(self) -> None:
        """
        Newest first steps back from the greatest key, page after page.
        """
        pages = _pages(SEQS, self.tree, PageRequest(limit=4, descending=True))
        self.assertEqual([list(p.items) for p in pages], [[10, 9, 8, 7], [6, 5, 4, 3], [2, 1]])
        self.assertTrue(pages[0].next is not None and pages[0].next.descending)

    def test_scan_limit(self) -> None:
        """
        A filter that rejects most records ends pages at the scan limit:
        short (even empty) pages marked partial, with a cursor, and nothing lost.
        """
        pages = _pages(SEQS, self.tree, PageRequest(limit=5, scan_limit=3), lambda key: key if key % 7 == 0 else None)
        self.assertEqual([list(p.items) for p in pages], [[], [], [7], []])
        self.assertEqual([p.partial for p in pages], [True, True, True, False])

    def test_gives_way(self) -> None:
        """
        A page pauses every YIELD_EVERY keys it looks at (to let the check-ins' threads run).
        """
        tree = IOBTree({n: str(n) for n in range(1, 101)})
        paused: list[int] = []
        page = SEQS.collect(keys_after(tree, None), lambda key: key, PageRequest(limit=45), pause=lambda: paused.append(1))
        self.assertEqual((len(page.items), len(paused)), (45, 45 // YIELD_EVERY))

    def test_give_way_in_proportion(self) -> None:
        """
        GiveWay sleeps the ratio times the work since its last call, and at least YIELD_PAUSE.
        """
        now = [0.0]
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            now[0] += seconds

        give_way = GiveWay(2.0, clock=lambda: now[0], sleep=sleep)
        now[0] += 0.25
        give_way()
        now[0] += 0.0001
        give_way()
        self.assertEqual(slept, [0.5, YIELD_PAUSE])

    def test_stable_under_inserts(self) -> None:
        """
        Keys added between two pages before the cursor never show; after it,
        they show in their place; nothing is listed twice or skipped.
        """
        tree = OOTreeSet(["b", "d", "f", "h"])
        first = NAMES.collect(keys_after(tree, None), lambda key: key, PageRequest(limit=2))
        self.assertEqual(first.items, ("b", "d"))
        tree.update(["a", "c", "e", "i"])
        assert first.next is not None
        rest = _pages(NAMES, tree, PageRequest(limit=2, cursor=Cursor.decode(first.next.encode())))
        self.assertEqual([key for page in rest for key in page.items], ["e", "f", "h", "i"])

    def test_ranges(self) -> None:
        """
        keys_after and keys_before keep to their bounds, wherever the cursor points.
        """
        tree = OOTreeSet([("a", 1), ("b", 1), ("b", 2), ("b", 3), ("c", 1)])
        low, high = ("b",), ("b\0",)
        self.assertEqual(list(keys_after(tree, None, low, high)), [("b", 1), ("b", 2), ("b", 3)])
        self.assertEqual(list(keys_after(tree, ("b", 1), low, high)), [("b", 2), ("b", 3)])
        self.assertEqual(list(keys_after(tree, ("a", 9), low, high)), [("b", 1), ("b", 2), ("b", 3)])
        self.assertEqual(list(keys_after(tree, ("c", 0), low, high)), [])

        def back(key: tuple[str, int]) -> tuple[str, int]:
            return (key[0], key[1] - 1)

        self.assertEqual(list(keys_before(tree, None, back, ("b", 0), ("b", 99))), [("b", 3), ("b", 2), ("b", 1)])
        self.assertEqual(list(keys_before(tree, ("b", 3), back, ("b", 0))), [("b", 2), ("b", 1)])
        self.assertEqual(list(keys_before(tree, ("z", 1), back, None, ("b", 2))), [("b", 2), ("b", 1), ("a", 1)])
        self.assertEqual(list(keys_before(OOTreeSet(), None, back)), [])
