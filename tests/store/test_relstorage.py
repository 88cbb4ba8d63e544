"""
RelStorage on a real, private PostgreSQL server: two mdmd "nodes" share one database.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from mdmd.store.db import open_db
from mdmd.store.models import User
from mdmd.store.runner import Store

from ..servers import free_port


class PostgreSQLServer:
    """
    A throwaway PostgreSQL cluster listening on a UNIX socket in a temp dir.
    """

    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not binaries:
            raise SkipTest("PostgreSQL server binaries (Debian package postgresql) are not installed")
        self.bin = os.path.dirname(binaries[-1])
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise SkipTest("running as root without a postgres user to run the server") from None
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.directory = tempfile.mkdtemp(prefix="mdmd-pg-")
        os.chmod(self.directory, 0o755)
        if self.run_as:
            shutil.chown(self.directory, "postgres")
        self.data = os.path.join(self.directory, "data")
        self.port = free_port()

    def _run(self, *command: str) -> None:
        result = subprocess.run([*self.run_as, *command], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stdout}{result.stderr}")

    def start(self) -> str:
        self._run(f"{self.bin}/initdb", "-D", self.data, "-A", "trust", "-U", "mdmd", "--no-sync")
        self._run(
            f"{self.bin}/pg_ctl", "-D", self.data, "-w", "-l", os.path.join(self.directory, "log"),
            "-o", f"-k {self.directory} -p {self.port} -c listen_addresses='' -c fsync=off",
            "start",
        )
        self._run(f"{self.bin}/createdb", "-h", self.directory, "-p", str(self.port), "-U", "mdmd", "mdmd")
        return f"postgresql://mdmd@/mdmd?host={self.directory}&port={self.port}"

    def stop(self) -> None:
        try:
            self._run(f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


class RelStorageTests(SynchronousTestCase):
    def test_two_nodes_share_state(self) -> None:
        """
        What one node commits through RelStorage (history-free) the other reads.
        """
        server = PostgreSQLServer()
        uri = server.start()
        self.addCleanup(server.stop)
        first = Store(open_db(uri, pool_size=2))
        self.addCleanup(first.db.close)
        second = Store(open_db(uri, pool_size=2))
        self.addCleanup(second.db.close)
        first.initialize()
        first.run(lambda root: root["users"].__setitem__("ann", User("Ann", "h", 3.0)))
        self.assertEqual(second.read(lambda root: root["users"]["ann"].name), "Ann")
        self.assertFalse(first.db.storage._options.keep_history)
