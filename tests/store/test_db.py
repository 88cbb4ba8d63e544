"""
Tests for L{mdmd.store.db}, including a real ZEO server.
"""

import os
import stat

import transaction
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from mdmd.store.db import (
    StoreURIError,
    describe,
    file_storage_path,
    open_db,
    restrict_modes,
    truncated_leftovers,
)
from mdmd.store.runner import Store

from ..logs import logged_events
from ..servers import start_zeo


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def commit_one(uri: str) -> None:
    """
    Open the store at C{uri}, commit one change, close it.
    """
    db = open_db(uri)
    connection = db.open()
    connection.root()["x"] = 1
    transaction.commit()
    connection.close()
    db.close()


class FileModeTests(SynchronousTestCase):
    """
    The FileStorage's files are its owner's only, and crash leftovers are reported.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        self.path = os.path.join(self.directory, "Data.fs")
        self.uri = "file://" + self.path
        previous = os.umask(0o022)  # what a daemon started by hand may have
        self.addCleanup(os.umask, previous)

    def test_owner_only_on_open(self) -> None:
        """
        Opening the store makes Data.fs, its lock and commit buffer 0600, and
        tightens an index and a leftover that were readable by others.
        """
        commit_one(self.uri)
        for suffix in ("", ".index", ".tr0"):
            if not os.path.exists(self.path + suffix):
                open(self.path + suffix, "wb").close()
            os.chmod(self.path + suffix, 0o644)
        events = logged_events(self)
        db = open_db(self.uri)
        self.addCleanup(db.close)
        for suffix in ("", ".index", ".lock", ".tmp", ".tr0"):
            self.assertEqual(mode(self.path + suffix), 0o600, suffix)
        tightened = [e["file"] for e in events if "file" in e]
        self.assertEqual(sorted(tightened), [self.path, self.path + ".index", self.path + ".tr0"])

    def test_restrict_modes(self) -> None:
        """
        restrict_modes takes group and other permissions away, keeps the
        owner's, and names what it changed; other files are left alone.
        """
        os.makedirs(self.directory)
        for name, permissions in (("Data.fs", 0o664), ("Data.fs.index", 0o600), ("Data.fs.tr3", 0o640), ("other", 0o644)):
            open(os.path.join(self.directory, name), "wb").close()
            os.chmod(os.path.join(self.directory, name), permissions)
        self.assertEqual(restrict_modes(self.path), [self.path, self.path + ".tr3"])
        self.assertEqual(
            [mode(os.path.join(self.directory, n)) for n in ("Data.fs", "Data.fs.index", "Data.fs.tr3", "other")],
            [0o600, 0o600, 0o600, 0o644],
        )

    def test_truncated_transaction_reported(self) -> None:
        """
        When FileStorage cuts an unfinished transaction off Data.fs on
        opening (after a crash), a warning names the .trN file it wrote and
        says what to do; it is reported again at every start while it is there.
        """
        commit_one(self.uri)
        commit_one(self.uri)
        with open(self.path, "r+b") as f:  # the last transaction half written, as kill -9 may leave it
            f.truncate(os.path.getsize(self.path) - 30)
        for _ in range(2):
            events = logged_events(self)
            open_db(self.uri).close()
            self.assertEqual(truncated_leftovers(self.path), [self.path + ".tr0"])
            (warning,) = [e for e in events if e.get("leftovers")]
            self.assertEqual(warning["log_level"], LogLevel.warn)
            self.assertEqual(warning["leftovers"], [self.path + ".tr0"])
            self.assertIn("delete them", warning["log_format"])
            self.assertEqual(mode(self.path + ".tr0"), 0o600)

    def test_leftovers_only_numbered(self) -> None:
        """
        Only PATH.trN files count as leftovers, sorted; no file, no leftovers.
        """
        os.makedirs(self.directory)
        self.assertEqual(truncated_leftovers(self.path), [])
        for name in ("Data.fs.tr1", "Data.fs.tr0", "Data.fs.trash", "Data.fs.tr"):
            open(os.path.join(self.directory, name), "wb").close()
        self.assertEqual(truncated_leftovers(self.path), [self.path + ".tr0", self.path + ".tr1"])

    def test_file_storage_path(self) -> None:
        """
        Only a file:// URI names a FileStorage path.
        """
        self.assertEqual(file_storage_path("file:///var/lib/mdmd/Data.fs"), "/var/lib/mdmd/Data.fs")
        self.assertIsNone(file_storage_path("zeo://db.example:8100"))
        self.assertIsNone(file_storage_path("memory:"))


class OpenTests(SynchronousTestCase):
    def test_file_storage_created(self) -> None:
        """
        file:// creates the directory (0700) and the FileStorage.
        """
        directory = os.path.abspath(self.mktemp())
        db = open_db(f"file://{directory}/sub/Data.fs")
        db.close()
        self.assertTrue(os.path.exists(f"{directory}/sub/Data.fs"))
        self.assertEqual(os.stat(f"{directory}/sub").st_mode & 0o777, 0o700)

    def test_unsupported(self) -> None:
        """
        Unknown schemes and empty paths are refused clearly.
        """
        self.assertRaises(StoreURIError, open_db, "mysql://x")
        self.assertRaises(StoreURIError, open_db, "file://")

    def test_describe_hides_password(self) -> None:
        """
        Passwords never reach logs or status output.
        """
        self.assertEqual(
            describe("postgresql://mdmd:s3cret@db.example/mdmd"),
            "postgresql://mdmd:***@db.example/mdmd",
        )
        self.assertEqual(describe("file:///var/lib/mdmd/Data.fs"), "file:///var/lib/mdmd/Data.fs")


class ZEOTests(SynchronousTestCase):
    def test_zeo_shared_between_two_clients(self) -> None:
        """
        Two clients of one real ZEO server see each other's commits.
        """
        port = start_zeo(self)
        first = Store(open_db(f"zeo://127.0.0.1:{port}"))
        self.addCleanup(first.db.close)
        second = Store(open_db(f"zeo://127.0.0.1:{port}"))
        self.addCleanup(second.db.close)
        first.initialize()
        first.run(lambda root: root["users"].__setitem__("k", 1))
        self.assertEqual(second.read(lambda root: dict(root["users"])), {"k": 1})


class DSNTests(SynchronousTestCase):
    def test_libpq_dsn(self) -> None:
        """
        PostgreSQL URIs become libpq keyword strings, quoted, with query parameters kept.
        """
        from mdmd.store.db import libpq_dsn

        self.assertEqual(
            libpq_dsn("postgresql://md%40md:p%27w@db.example:5433/mdmd?sslmode=require"),
            "dbname='mdmd' user='md@md' password='p\\'w' host='db.example' port='5433' sslmode='require'",
        )
