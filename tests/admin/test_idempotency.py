"""
Tests for L{mdmd.admin.idempotency}: answers stored with their keys, in the
transaction that creates, replayed, refused for another request, expired
and swept through the expiry index.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd.admin import idempotency
from mdmd.admin.idempotency import (
    IdempotencyKey,
    IdempotencyKeyReused,
    IdempotencySettings,
    InvalidIdempotencyKey,
    Replayed,
)
from mdmd.store.runner import Store
from mdmd.testing.store import memory_store_service

KEEP = IdempotencySettings(keep=100.0)


def key(name: str = "k-1", body: bytes = b'{"name": "eve"}', path: bytes = b"/v1/users") -> IdempotencyKey:
    return IdempotencyKey.of(name.encode(), b"POST", path, body)


def create(root: Any, name: str) -> str:
    """
    A creating unit of work: one more user-like entry.
    """
    root.setdefault("made", [])
    root["made"] = [*root["made"], name]
    return name


class IdempotencyTests(SynchronousTestCase):
    def setUp(self) -> None:
        service = memory_store_service()
        service.startService()
        self.addCleanup(service.stopService)
        assert service.store is not None
        self.store: Store = service.store

    def made(self) -> list[str]:
        return self.store.read(lambda root: list(root.get("made", [])))

    def test_key_shape(self) -> None:
        """
        A key is 1 to 255 printable ASCII characters; the fingerprint tells
        method, path and body apart.
        """
        for bad in (b"", b"   ", b"x" * 256, "cl\u00e9".encode(), b"a\x01b"):
            self.assertRaises(InvalidIdempotencyKey, IdempotencyKey.of, bad, b"POST", b"/v1/users", b"")
        self.assertEqual(key().key, "k-1")
        prints = {
            key().fingerprint,
            key(body=b'{"name": "bob"}').fingerprint,
            key(path=b"/v1/users2").fingerprint,
            IdempotencyKey.of(b"k-1", b"PUT", b"/v1/users", b'{"name": "eve"}').fingerprint,
            # the parts are length-prefixed: moving a byte from path to body changes it
            IdempotencyKey.of(b"k-1", b"POST", b"/v1/users{", b'"name": "eve"}').fingerprint,
        }
        self.assertEqual(len(prints), 5)

    def test_done_once(self) -> None:
        """
        The first request creates and stores its answer; the same key again
        raises Replayed with that answer and creates nothing more.
        """
        unit = idempotency.recorded(create, key(), lambda name: (201, {"name": name}), 10.0, KEEP)
        status, body = self.store.run(unit, "eve")
        self.assertEqual((status, body), (201, b'{"name": "eve"}\n'))
        again = idempotency.recorded(create, key(), lambda name: (201, {"name": name}), 20.0, KEEP)
        with self.assertRaises(Replayed) as caught:
            self.store.run(again, "eve")
        self.assertEqual((caught.exception.status, caught.exception.body), (201, b'{"name": "eve"}\n'))
        self.assertEqual(self.made(), ["eve"])

    def test_failed_request_not_stored(self) -> None:
        """
        A request that fails stores nothing: sent again, it is carried out.
        """

        def failing(root: Any, name: str) -> str:
            create(root, name)
            raise ValueError("no")

        self.assertRaises(ValueError, self.store.run, idempotency.recorded(failing, key(), lambda n: (201, n), 1.0, KEEP), "eve")
        self.assertEqual(self.made(), [])
        self.store.run(idempotency.recorded(create, key(), lambda n: (201, n), 2.0, KEEP), "eve")
        self.assertEqual(self.made(), ["eve"])

    def test_key_of_another_request(self) -> None:
        """
        The same key with another body is refused with 422, and nothing is created.
        """
        self.store.run(idempotency.recorded(create, key(), lambda n: (201, n), 1.0, KEEP), "eve")
        other = idempotency.recorded(create, key(body=b'{"name": "bob"}'), lambda n: (201, n), 2.0, KEEP)
        with self.assertRaises(IdempotencyKeyReused) as caught:
            self.store.run(other, "bob")
        self.assertEqual(caught.exception.http_status, 422)
        self.assertEqual(self.made(), ["eve"])

    def test_remember_after_a_concurrent_winner(self) -> None:
        """
        remember() finding the key stored meanwhile raises Replayed, so the
        loser's work is not committed.
        """
        self.store.run(idempotency.remember, key(), 201, {"jobs": [1]}, 1.0, KEEP)

        def late(root: Any) -> None:
            create(root, "twice")
            idempotency.remember(root, key(), 201, {"jobs": [2]}, 2.0, KEEP)

        with self.assertRaises(Replayed) as caught:
            self.store.run(late)
        self.assertEqual(caught.exception.body, b'{"jobs": [1]}\n')
        self.assertEqual(self.made(), [])

    def test_expiry_and_sweep(self) -> None:
        """
        A key is forgotten once it expires; each new key removes up to
        SWEEP_BATCH expired ones, oldest first, through the expiry index.
        """
        for n in range(20):
            self.store.run(idempotency.remember, key(f"old-{n}"), 201, {}, float(n), KEEP)
        self.assertIsNotNone(self.store.read(idempotency.recall, key("old-0"), 99.0))
        self.assertIsNone(self.store.read(idempotency.recall, key("old-0"), 100.0))

        def sizes(root: Any) -> tuple[int, int]:
            return len(root["idempotency"]), len(root["idempotency_expiry"])

        self.store.run(idempotency.remember, key("new-1"), 201, {}, 110.5, KEEP)
        # old-0 .. old-10 expired by 110.5; eight of them went
        self.assertEqual(self.store.read(sizes), (13, 13))
        kept = self.store.read(lambda root: sorted(root["idempotency"]))
        self.assertNotIn("old-7", kept)
        self.assertIn("old-8", kept)
        self.store.run(idempotency.remember, key("new-2"), 201, {}, 110.5, KEEP)
        self.assertEqual(self.store.read(sizes), (11, 11))
        # an expired key still stored is replaced, with its index entry
        self.store.run(idempotency.remember, key("old-19"), 201, {"again": True}, 500.0, KEEP)
        recalled = self.store.read(idempotency.recall, key("old-19"), 501.0)
        assert recalled is not None
        self.assertEqual(recalled.body, b'{"again": true}\n')
        entries = self.store.read(lambda root: [k for _, k in root["idempotency_expiry"]])
        self.assertEqual(sorted(entries), sorted(set(entries)))
