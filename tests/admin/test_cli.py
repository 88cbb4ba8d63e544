"""
Tests for L{mdmd.admin.cli}: what mdmctl says when it may not open the daemon's files.

A user who is neither root nor the service account cannot read the packaged
configuration, the token or the socket; mdmctl must tell them what to do in
one line (the tests fake the refusal: as root nothing is refused).
"""

from __future__ import annotations

import argparse
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


class _FakeClient:
    """
    Answers every request with the value given for its path.
    """

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    def request(self, method: str, path: str, body: Any = None) -> Any:
        return self.answers[path]


def _command(seq: int, status: int | None, statuses: list[tuple[str, int]], error: str | None = None) -> dict[str, Any]:
    return {
        "seq": seq,
        "state": "done" if status is not None and 200 <= status < 300 else "failed",
        "spec": {"verb": "Get", "items": [{"target": f"./N{seq}"}]},
        "status": status,
        "statuses": [{"command": path, "status": code} for path, code in statuses],
        "results": [],
        "error": error,
        "updated_at": 0.0,
    }


class PrintingTests(SynchronousTestCase):
    def test_sizes(self) -> None:
        """
        Store sizes are shown in bytes, KiB, MiB or GiB.
        """
        self.assertEqual(
            [cli._size(n) for n in (512, 2048, 5 * 1024**2 + 1, 3 * 1024**3, 4096 * 1024**3)],
            ["512 bytes", "2.0 KiB", "5.0 MiB", "3.0 GiB", "4096.0 GiB"],
        )

    def test_results_print_every_status(self) -> None:
        """
        mdmctl results shows every status code stored: a status of 0 (not a code,
        as libdmclient answers before the server authenticated), the statuses of
        each Item, and those of group members as PATH:CODE.
        """
        found = [
            _command(1, 0, [("", 0)]),
            _command(2, 404, [("", 200), ("", 404)]),
            _command(3, 507, [("", 507), ("1", 216), ("2", 500)]),
            _command(4, None, [], error="too large"),
        ]
        client = _FakeClient({"/v1/devices/D/results": {"commands": found}})
        out = io.StringIO()
        cli.cmd_results(client, argparse.Namespace(device="D", limit=0, json=False), out)  # type: ignore[arg-type]
        rows = {line.split()[0]: line for line in out.getvalue().splitlines()[1:]}
        self.assertIn(" 0 ", rows["1"])
        self.assertIn("200 404", rows["2"])
        self.assertIn("507 1:216 2:500", rows["3"])
        self.assertIn(" - ", rows["4"])

    def test_device_show_prints_device_events(self) -> None:
        """
        mdmctl device show lists the device's latest events (alerts 1224 and 1226, the
        last ten), long data cut; events kept before codes were are 1226.
        """
        alerts = [
            {"time": 0.0, "type": "com.microsoft.mdm.synctype", "format": "chr", "mark": None, "source": None, "data": "device", "correlator": None, "alert": "1224"},
            {"time": 60.0, "type": "urn:x", "format": "int", "mark": None, "source": "./Vendor/X/Run", "data": "0", "correlator": None},
        ] + [
            {"time": 120.0, "type": "urn:y", "format": "chr", "mark": None, "source": None, "data": "z" * 100, "correlator": None, "alert": "1226"}
        ] * 9
        device = {
            "device_id": "D", "device_name": "", "status": "enrolled", "user": "", "auth_policy": "",
            "enrollment_type": "", "device_type": "", "os_version": "", "os_edition": "",
            "application_version": "", "hw_dev_id": "", "mac_addresses": [], "enrollment_count": 0,
            "first_enrolled_at": 0.0, "enrolled_at": 0.0, "renewed_at": None, "removed_at": None,
            "last_contact": None, "certificate": None, "push": None, "kind": "omadm",
            "account": {
                "server_id": "", "effective_server_id": "mdmd", "client_certificate": "default",
                "certificate_required": False, "client_auth": "digest", "client_name": "D",
                "client_secret": "set", "client_nonce": "AQ==", "server_auth": "digest",
                "server_name": "mdmd", "server_secret": "set", "server_nonce": "Ag==", "imsi": "",
            },
            "dm": {"alerts": alerts},
        }
        out = io.StringIO()
        cli.cmd_device_show(_FakeClient({"/v1/devices/D": device}), argparse.Namespace(device="D", json=False), out)  # type: ignore[arg-type]
        lines = out.getvalue().splitlines()
        shown = [line for line in lines if line.startswith("device events:") or line.startswith(" " * 23)]
        self.assertEqual(len(shown), 10)
        self.assertEqual(shown[0], f"{'device events:':<22} 1226 urn:x '0' from ./Vendor/X/Run, 1970-01-01 00:01:00Z")
        self.assertEqual(shown[1], f"{'':<22} 1226 urn:y '{'z' * 57}...', 1970-01-01 00:02:00Z")
        self.assertNotIn("synctype", out.getvalue())

    def test_device_show_prints_what_the_device_answered_our_header(self) -> None:
        """
        mdmctl device show lists the device's answers to our SyncHdr that were not an acceptance.
        """
        device = {
            "device_id": "D", "device_name": "", "status": "enrolled", "user": "", "auth_policy": "",
            "enrollment_type": "", "device_type": "", "os_version": "", "os_edition": "",
            "application_version": "", "hw_dev_id": "", "mac_addresses": [], "enrollment_count": 0,
            "first_enrolled_at": 0.0, "enrolled_at": 0.0, "renewed_at": None, "removed_at": None,
            "last_contact": None, "certificate": None, "push": None, "kind": "omadm",
            "account": {
                "server_id": "", "effective_server_id": "mdmd", "client_certificate": "default",
                "certificate_required": False, "client_auth": "digest", "client_name": "D",
                "client_secret": "set", "client_nonce": "AQ==", "server_auth": "digest",
                "server_name": "mdmd", "server_secret": "set", "server_nonce": "Ag==", "imsi": "",
            },
            "dm": {
                "header_events": [
                    {"time": 0.0, "session_id": "1", "event": "invalid", "status": "0"},
                    {"time": 60.0, "session_id": "2", "event": "refused", "status": "401"},
                ]
            },
        }
        out = io.StringIO()
        cli.cmd_device_show(_FakeClient({"/v1/devices/D": device}), argparse.Namespace(device="D", json=False), out)  # type: ignore[arg-type]
        lines = out.getvalue().splitlines()
        self.assertIn("our SyncHdr answered:  '0' (invalid) in session 1, 1970-01-01 00:00:00Z", lines)
        self.assertIn(f"{'':<22} '401' (refused) in session 2, 1970-01-01 00:01:00Z", lines)


class RetryTests(SynchronousTestCase):
    """
    How AdminClient retries, with the exchange and time replaced.
    """

    def client(self, outcomes: list[Any], wait: bool = False) -> tuple[AdminClient, list[tuple[str, dict[str, str]]]]:
        now = [0.0]
        client = AdminClient("unix:/nowhere", "token", retry_for=5.0, wait=wait, sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
        calls: list[tuple[str, dict[str, str]]] = []

        def exchange(method: str, path: str, payload: Any, headers: dict[str, str]) -> tuple[int, str | None, bytes]:
            calls.append((method, dict(headers)))
            outcome = outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        self.patch(client, "_exchange", exchange)
        return client, calls

    def test_lost_answer_retried_with_the_same_key(self) -> None:
        """
        A POST whose answer is lost is sent again with the same Idempotency-Key.
        """
        from mdmd.admin.cli import _AnswerLost

        client, calls = self.client([_AnswerLost(ConnectionResetError()), _AnswerLost(TimeoutError()), (201, None, b'{"ok": 1}')])
        self.assertEqual(client.request("POST", "/v1/users", {"name": "x"}), {"ok": 1})
        keys = {headers["Idempotency-Key"] for _, headers in calls}
        self.assertEqual((len(calls), len(keys)), (3, 1))
        client, calls = self.client([(201, None, b"{}")])
        client.request("POST", "/v1/users", {})
        self.assertNotIn(calls[0][1]["Idempotency-Key"], keys)

    def test_not_repeated(self) -> None:
        """
        A DELETE or PATCH whose answer was lost is not sent again; a daemon
        that does not listen is reported at once unless asked to wait.
        """
        from mdmd.admin.cli import _AnswerLost, _Unreachable

        for method in ("DELETE", "PATCH"):
            client, calls = self.client([_AnswerLost(ConnectionResetError())])
            with self.assertRaises(CommandError) as caught:
                client.request(method, "/v1/devices/X")
            self.assertIn("the request may have been carried out", str(caught.exception))
            self.assertEqual(len(calls), 1)
            self.assertNotIn("Idempotency-Key", calls[0][1])
        client, calls = self.client([_Unreachable(ConnectionRefusedError())])
        with self.assertRaises(CommandError) as caught:
            client.request("GET", "/v1/status")
        self.assertNotIn("carried out", str(caught.exception))
        client, calls = self.client([_Unreachable(ConnectionRefusedError())] * 3 + [(200, None, b"{}")], wait=True)
        self.assertEqual(client.request("GET", "/v1/status"), {})
        self.assertEqual(len(calls), 4)
