"""
Tests for L{mdmd.store.models}: the root's containers, and indexes built for a store made before them.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.notify import jobs
from mdmd.store.db import open_db
from mdmd.store.models import INDEX_BUILDERS, ROOT_CONTAINERS, DMSession, ensure_root
from mdmd.store.runner import Root, Store
from mdmd.testing.devices import add_device
from mdmd.testing.randomness import fixed_random


def _older_store(root: Root) -> None:
    """
    Make the store look as it did before the due indexes: sessions and push
    jobs (one open, one finished at 500) but no index over them.
    """
    root["sessions"]["D1"] = DMSession({"deadline": 1000.0})
    for name in INDEX_BUILDERS:
        del root[name]


class IndexBuildersTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = Store(open_db("memory:"))
        self.store.initialize()
        for device_id in ("D1", "D2"):
            self.store.run(add_device, device_id)
        settings = jobs.PushSettings(expiry=600.0)
        self.store.run(jobs.enqueue, ["D1", "D2"], settings, 100.0, fixed_random())
        self.store.run(jobs.expire, 700.0)
        self.store.run(jobs.enqueue, ["D2"], settings, 800.0, fixed_random())
        self.store.run(_older_store)

    def test_every_index_is_a_container(self) -> None:
        """
        Each index built on open is one of the root's containers.
        """
        self.assertLessEqual(set(INDEX_BUILDERS), set(ROOT_CONTAINERS))

    def test_built_from_what_they_index(self) -> None:
        """
        Opening a store made before the indexes creates them, filled: every
        session and open job due at once (their sweeps read the real time),
        finished jobs at the time they finished.
        """
        self.assertTrue(self.store.run(ensure_root))

        def indexes(root: Root) -> dict[str, list[tuple[object, ...]]]:
            return {name: list(root[name]) for name in INDEX_BUILDERS}

        self.assertEqual(
            self.store.read(indexes),
            {
                "session_deadlines": [(0, "D1")],
                "push_expiry": [(0, "D2", 2)],
                "push_finished": [(12, "D1", 1), (12, "D2", 1)],
            },
        )
        self.assertFalse(self.store.run(ensure_root))
