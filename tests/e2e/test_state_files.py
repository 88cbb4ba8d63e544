"""
End-to-end: what the real daemon leaves in its state directory is its own
(mode 0600), however it was started, and a crash's leftovers are reported.
"""

from __future__ import annotations

import os
import stat

from twisted.trial.unittest import SynchronousTestCase

from mdmd.testing.daemon import DaemonProcess


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class StateFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        previous = os.umask(0o022)  # a shell's usual umask, which the daemon inherits
        self.addCleanup(os.umask, previous)

    def test_owner_only(self) -> None:
        """
        Started by hand with a umask of 022 and a log file in its state
        directory, the daemon writes the store (Data.fs, its index, lock and
        commit buffer) and the log readable by its owner only.
        """
        daemon = DaemonProcess()
        self.addCleanup(daemon.cleanup)
        log_file = os.path.join(daemon.state_dir, "twistd.log")
        daemon.twistd_args = ("--logfile", log_file)
        daemon.start()
        added = daemon.mdmctl("user", "add", "ops@example.com", stdin="pa55word\n")
        self.assertEqual(added.returncode, 0, added.stderr)
        daemon.stop()
        store = os.path.join(daemon.state_dir, "Data.fs")
        for path in (store, store + ".index", store + ".lock", store + ".tmp", log_file):
            self.assertEqual(mode(path), 0o600, path)

    def test_crash_leftovers_reported(self) -> None:
        """
        A transaction cut off at the end of Data.fs (a crash while it was
        written) is moved aside by the store when it opens; the daemon starts,
        and its log names the file and says what to do with it.
        """
        daemon = DaemonProcess()
        self.addCleanup(daemon.cleanup)
        daemon.start()
        added = daemon.mdmctl("user", "add", "ops@example.com", stdin="pa55word\n")
        self.assertEqual(added.returncode, 0, added.stderr)
        daemon.stop()
        store = os.path.join(daemon.state_dir, "Data.fs")
        with open(store, "r+b") as f:  # the last transaction (the user) half written, as kill -9 may leave it
            f.truncate(os.path.getsize(store) - 30)
        daemon.start()
        log = daemon.log()
        self.assertIn(f"{store}.tr0: the unfinished end of a transaction cut off by a crash", log)
        self.assertIn("delete them", log)
        self.assertEqual(mode(store + ".tr0"), 0o600)
