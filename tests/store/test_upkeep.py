"""
Tests for L{mdmd.store.upkeep}: packing a real FileStorage while it serves, and saving its index.
"""

from __future__ import annotations

import importlib
import os
import shutil
import stat
import threading
import time
from typing import Any

from BTrees.OOBTree import OOBTree
from twisted.trial.unittest import SynchronousTestCase

from mdmd.store import upkeep
from mdmd.store.db import open_db
from mdmd.store.runner import Root, Store

#: One revision of the record the tests rewrite: history adds up fast.
PAYLOAD = 100_000

#: The module (its package exports the class of the same name in its place).
filestorage_module = importlib.import_module("ZODB.FileStorage.FileStorage")


def rewrite(root: Root, n: int) -> None:
    """
    A unit of work: a new revision of one record (its old one becomes history).
    """
    root["upkeep"]["record"] = (n, os.urandom(PAYLOAD))


def write(root: Root, key: str, n: int) -> None:
    """
    A unit of work: a small value in a container of its own.
    """
    root["test"][key] = n


def file_store(test: SynchronousTestCase) -> tuple[Store, str]:
    directory = os.path.abspath(test.mktemp())
    path = os.path.join(directory, "Data.fs")
    store = Store(open_db(f"file://{path}", pool_size=4))
    test.addCleanup(store.db.close)
    store.initialize()
    store.run(lambda root: root.__setitem__("test", OOBTree()))
    return store, path


class PackTests(SynchronousTestCase):
    def test_history_shrinks_while_serving(self) -> None:
        """
        A pack drops the old revisions (the file shrinks) while units of work
        go on committing in another thread, every one of them succeeding;
        what they wrote during the pack is kept.
        """
        store, path = file_store(self)
        for n in range(300):
            store.run(rewrite, n)
        size = os.path.getsize(path)
        reports: list[upkeep.PackReport] = []
        packing = threading.Thread(target=lambda: reports.append(upkeep.pack(store.db, 0, 2e9)))
        packing.start()
        during = 0
        while packing.is_alive():
            store.run(write, "during", during)
            during += 1
        packing.join()
        (report,) = reports
        self.assertGreater(during, 0)
        self.assertEqual(report.size_before, size)
        self.assertLess(report.size_after, size / 20)
        self.assertLess(os.path.getsize(path), size / 20)
        self.assertFalse(os.path.exists(path + ".old"))
        store.run(write, "after", 1)
        self.assertEqual(
            store.read(lambda root: (root["upkeep"]["record"][0], root["test"]["during"], root["test"]["after"])),
            (299, during - 1, 1),
        )

    def test_recent_history_kept(self) -> None:
        """
        History younger than the days kept stays.
        """
        store, path = file_store(self)
        for n in range(100):
            store.run(rewrite, n)
        report = upkeep.pack(store.db, 1, 2e9)
        self.assertLess(report.size_after, report.size_before / 50)
        for n in range(100):
            store.run(rewrite, n)
        report = upkeep.pack(store.db, 1, time.time())
        self.assertGreater(report.size_after, report.size_before * 0.9)

    def test_refusals(self) -> None:
        """
        A ZEO client or RelStorage store is not packed here, and the refusal says by whom.
        """
        self.assertIsNone(upkeep.pack_refusal("file:///var/lib/mdmd/Data.fs"))
        self.assertIsNone(upkeep.pack_refusal("memory:"))
        self.assertIn("zeopack", upkeep.pack_refusal("zeo://db:8100") or "")
        for uri in ("postgresql://u@h/d", "postgres://u@h/d"):
            self.assertIn("zodbpack", upkeep.pack_refusal(uri) or "")


class IndexTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store, self.path = file_store(self)
        self.starts: list[int] = []
        read_index = filestorage_module.read_index

        def recording(*args: Any, **kwargs: Any) -> Any:
            self.starts.append(kwargs.get("start", 4))
            return read_index(*args, **kwargs)

        self.patch(filestorage_module, "read_index", recording)

    def crashed_copy(self) -> str:
        """
        The files a kill -9 would leave now (every commit is on disk; the
        index only as last saved), in another directory.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        for suffix in ("", ".index"):
            shutil.copyfile(self.path + suffix, os.path.join(directory, "Data.fs" + suffix))
        return os.path.join(directory, "Data.fs")

    def reopen(self, path: str) -> Store:
        store = Store(open_db(f"file://{path}"))
        self.addCleanup(store.db.close)
        return store

    def test_saved_index_spares_the_scan(self) -> None:
        """
        With the index saved while running, a start after a crash reads only
        the transactions committed after the save, and has them all.
        """
        for n in range(50):
            self.store.run(write, f"k{n}", n)
        saved = upkeep.save_index(self.store.db.storage)
        position = saved.position
        self.assertEqual(position, self.store.db.storage.getSize())
        self.assertGreaterEqual(saved.seconds, 0)
        self.assertEqual(stat.S_IMODE(os.stat(self.path + ".index").st_mode), 0o600)
        for n in range(50, 60):
            self.store.run(write, f"k{n}", n)
        copy = self.reopen(self.crashed_copy())
        self.assertEqual(self.starts[-1], position)
        self.assertEqual(copy.read(lambda root: sorted(root["test"].values())), list(range(60)))

    def test_without_a_save_the_whole_file(self) -> None:
        """
        Without a save since the file was created, the start reads it all.
        """
        for n in range(50):
            self.store.run(write, f"k{n}", n)
        copy = self.reopen(self.crashed_copy())
        self.assertEqual(self.starts[-1], 4)
        self.assertEqual(copy.read(lambda root: len(root["test"])), 50)
