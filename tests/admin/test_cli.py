"""
Tests for L{mdmd.admin.cli}: what mdmctl says when it may not open the daemon's files.

A user who is neither root nor the service account cannot read the packaged
configuration, the token or the socket; mdmctl must tell them what to do in
one line (the tests fake the refusal: as root nothing is refused).
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import socket
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mdmd import config as mdmd_config
from mdmd.admin import cli
from mdmd.admin.cli import AdminClient, CommandError

HINT = "(run mdmctl as root, e.g. sudo mdmctl, or as the daemon's user)"


class PermissionHintTests(SynchronousTestCase):
    def refuse(self, path: str, code: int = errno.EACCES) -> None:
        """
        Make mdmctl's open() of C{path} fail with C{code}.
        """

        def fake_open(name: Any, *args: Any, **kwargs: Any) -> Any:
            if name == path:
                raise OSError(code, os.strerror(code), path)
            return builtins.open(name, *args, **kwargs)

        if "open" not in vars(cli):
            self.addCleanup(delattr, cli, "open")
        cli.open = fake_open  # type: ignore[attr-defined]

    def mdmctl(self, *argv: str) -> tuple[int, str]:
        err = io.StringIO()
        code = cli.main(list(argv), out=io.StringIO(), err=err)
        return code, err.getvalue()

    def test_unreadable_configuration(self) -> None:
        """
        A configuration this user may not read: one line that says to use sudo.
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("[server]\nhostname = x\n")
        self.refuse(path)
        code, err = self.mdmctl("--config", path, "status")
        self.assertEqual(code, 1)
        self.assertEqual(err, f"mdmctl: cannot read {path}: Permission denied {HINT}\n")

    def test_unreadable_token(self) -> None:
        """
        A token this user may not read: the same advice; a missing one asks whether the daemon ran.
        """
        base = os.path.abspath(self.mktemp())
        loaded = mdmd_config.load(None, base_dir=base)
        self.refuse(loaded.admin_token_file)
        with self.assertRaises(CommandError) as caught:
            AdminClient.from_config(loaded)
        self.assertEqual(
            str(caught.exception),
            f"cannot read the admin token {loaded.admin_token_file}: Permission denied {HINT}",
        )
        self.refuse(loaded.admin_token_file, errno.ENOENT)
        with self.assertRaises(CommandError) as caught:
            AdminClient.from_config(loaded)
        self.assertTrue(str(caught.exception).endswith("(has the daemon been started?)"))

    def test_socket_refused(self) -> None:
        """
        A socket this user may not connect to: the same advice, not "is the daemon running?".
        """

        def refuse_connect(self: socket.socket, address: Any) -> None:
            raise PermissionError(errno.EACCES, "Permission denied")

        client = AdminClient("unix:/run/mdmd/admin.sock", "token")
        self.patch(socket.socket, "connect", refuse_connect)
        with self.assertRaises(CommandError) as caught:
            client.request("GET", "/v1/status")
        self.assertEqual(
            str(caught.exception),
            f"cannot reach mdmd's admin API at unix:/run/mdmd/admin.sock: Permission denied {HINT}",
        )
