"""
Tests for L{mdmd.store.models}: the root's containers, and the due indexes
built by the store upgrade for a store made before them.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.notify import jobs
from mdmd.store.db import open_db
from mdmd.migrations import SCHEMA
from mdmd.store.migration import store_version, upgrade
from mdmd.store.models import ROOT_CONTAINERS, SCHEMA_VERSION, DMSession, ensure_root
from mdmd.store.runner import Root, Store
from mdmd.testing.devices import add_device
from mdmd.testing.randomness import fixed_random


#: The indexes layout 3 added.
DUE_INDEXES = ("session_deadlines", "push_expiry", "push_finished")


def _older_store(root: Root) -> None:
    """
    Make the store look as it did before the due indexes: sessions and push
    jobs (one open, one finished at 500) but no index over them.
    """
    root["sessions"]["D1"] = DMSession({"deadline": 1000.0})
    for name in DUE_INDEXES:
        del root[name]
    root["schema"].version = 2


class DueIndexUpgradeTests(SynchronousTestCase):
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
        Each due index is one of the root's containers.
        """
        self.assertLessEqual(set(DUE_INDEXES), set(ROOT_CONTAINERS))

    def test_built_from_what_they_index(self) -> None:
        """
        Opening a store made before the indexes creates them, and the
        upgrade to layout 3 fills them: every session and open job due at
        once (their sweeps read the real time), finished jobs at the time
        they finished.
        """
        self.assertTrue(self.store.run(ensure_root))
        upgrade(self.store, SCHEMA, batch=1)
        self.assertEqual(self.store.read(store_version), SCHEMA_VERSION)

        def indexes(root: Root) -> dict[str, list[tuple[object, ...]]]:
            return {name: list(root[name]) for name in DUE_INDEXES}

        self.assertEqual(
            self.store.read(indexes),
            {
                "session_deadlines": [(0, "D1")],
                "push_expiry": [(0, "D2", 2)],
                "push_finished": [(12, "D1", 1), (12, "D2", 1)],
            },
        )
        self.assertFalse(self.store.run(ensure_root))
