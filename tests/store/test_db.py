"""
Tests for L{mdmd.store.db}, including a real ZEO server.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from mdmd.store.db import StoreURIError, describe, open_db
from mdmd.store.runner import Store

from ..servers import start_zeo


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
