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
import json
import os
import socket
from typing import Any, cast

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
        cli.open = fake_open  # type: ignore[attr-defined]  # shadows the builtin in mdmd.admin.cli only

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
        cli.cmd_results(cast(AdminClient, client), argparse.Namespace(device="D", limit=0, json=False), out)  # a stand-in: the command only calls request()
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
        cli.cmd_device_show(cast(AdminClient, _FakeClient({"/v1/devices/D": device})), argparse.Namespace(device="D", json=False), out)  # a stand-in: the command only calls request()
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
        cli.cmd_device_show(cast(AdminClient, _FakeClient({"/v1/devices/D": device})), argparse.Namespace(device="D", json=False), out)  # a stand-in: the command only calls request()
        lines = out.getvalue().splitlines()
        self.assertIn("our SyncHdr answered:  '0' (invalid) in session 1, 1970-01-01 00:00:00Z", lines)
        self.assertIn(f"{'':<22} '401' (refused) in session 2, 1970-01-01 00:01:00Z", lines)


    def test_device_show_prints_failed_logins(self) -> None:
        """
        mdmctl device show says how often the device failed to authenticate lately,
        and until when it is refused while it is.
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
            "dm": {"login_failures": {"count": 4, "last": 60.0, "locked_until": 4e9}},
        }
        out = io.StringIO()
        cli.cmd_device_show(_FakeClient({"/v1/devices/D": device}), argparse.Namespace(device="D", json=False), out)  # type: ignore[arg-type]
        self.assertIn(
            "failed logins:         4, the last 1970-01-01 00:01:00Z, refused until 2096-10-02 07:06:40Z",
            out.getvalue().splitlines(),
        )


class TerminalSafetyTests(SynchronousTestCase):
    """
    What a device sent is printed with its control characters escaped (text output only).
    """

    HOSTILE = "red\x1b[31mRED\x1b[0m\x07bell\x00"

    def test_printable(self) -> None:
        """
        C0 controls, DEL and C1 controls are escaped as repr() spells them; other text is kept.
        """
        self.assertEqual(cli._printable(self.HOSTILE), "red\\x1b[31mRED\\x1b[0m\\x07bell\\x00")
        self.assertEqual(cli._printable("a\nb\tc\x7f\x85\x9f"), "a\\nb\\tc\\x7f\\x85\\x9f")
        self.assertEqual(cli._printable("é ü € 中 \xa0"), "é ü € 中 \xa0")

    def results(self, json: bool) -> str:
        command = _command(1, 200, [("", 200)])
        command["results"] = [{"source": "./N1", "data": self.HOSTILE}]
        out = io.StringIO()
        client = _FakeClient({"/v1/devices/D/results": {"commands": [command]}})
        cli.cmd_results(client, argparse.Namespace(device="D", limit=0, json=json), out)  # type: ignore[arg-type]
        return out.getvalue()

    def test_results(self) -> None:
        """
        mdmctl results shows a hostile value escaped, its columns in line; --json keeps it as it is.
        """
        text = self.results(json=False)
        self.assertNotIn("\x1b", text)
        self.assertNotIn("\x00", text)
        header, row = text.splitlines()
        self.assertIn("red\\x1b[31mRED", row)
        self.assertEqual(row.rindex("1970"), header.index("UPDATED"))
        self.assertEqual(json.loads(self.results(json=True))[0]["results"][0]["data"], self.HOSTILE)

    def test_device_show(self) -> None:
        """
        mdmctl device show escapes what the device reported (its name, its events' sessions and types).
        """
        device = {
            "device_id": "D", "device_name": self.HOSTILE, "status": "enrolled", "user": "", "auth_policy": "",
            "enrollment_type": "", "device_type": "", "os_version": "\x9b2J", "os_edition": "",
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
                "header_events": [{"time": 0.0, "session_id": "\x1b]0;owned\x07", "event": "invalid", "status": "0"}],
                "alerts": [{"time": 0.0, "type": "urn:\x1bx", "format": "chr", "mark": None, "source": None, "data": "1", "correlator": None}],
            },
        }
        out = io.StringIO()
        cli.cmd_device_show(_FakeClient({"/v1/devices/D": device}), argparse.Namespace(device="D", json=False), out)  # type: ignore[arg-type]
        text = out.getvalue()
        self.assertFalse(any(ord(c) < 0x20 and c != "\n" or 0x7F <= ord(c) < 0xA0 for c in text), text)
        self.assertIn("red\\x1b[31mRED", text)
        self.assertIn("\\x9b2J", text)
        self.assertIn("in session \\x1b]0;owned\\x07", text)
        self.assertIn("urn:\\x1bx", text)


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


class _PagedClient:
    """
    Serves a listing of C{records} under C{key} in pages, as the admin API
    does (C{limit}, C{cursor}, C{order}), and keeps the paths asked for.
    """

    def __init__(self, key: str, records: list[dict[str, Any]], default: int = 2) -> None:
        self.key = key
        self.records = records
        self.default = default
        self.paths: list[str] = []

    def request(self, method: str, path: str, body: Any = None) -> Any:
        from urllib.parse import parse_qs, urlsplit

        self.paths.append(path)
        query = {k: v[-1] for k, v in parse_qs(urlsplit(path).query).items()}
        records = self.records[::-1] if query.get("order") == "desc" else self.records
        start = int(query.get("cursor", "0"))
        end = start + int(query.get("limit", self.default))
        page: dict[str, Any] = {self.key: records[start:end]}
        if end < len(records):
            page["next"] = str(end)
        return page


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _devices(count: int) -> list[dict[str, Any]]:
    return [
        {"device_id": f"D{n}", "kind": "windows", "device_name": "", "user": "", "status": "enrolled",
         "enrolled_at": 0.0, "last_contact": None}
        for n in range(count)
    ]


class ListingTests(SynchronousTestCase):
    """
    mdmctl's listings page through the API.
    """

    def list_devices(self, client: _PagedClient, *argv: str, err: Any = None) -> tuple[str, str]:
        args = cli.build_parser().parse_args(["device", "list", *argv])
        args.stderr = err if err is not None else io.StringIO()
        out = io.StringIO()
        cli.cmd_device_list(cast(AdminClient, client), args, out)  # a stand-in: the command only calls request()
        return out.getvalue(), args.stderr.getvalue()

    def test_first_page_by_default(self) -> None:
        """
        A listing shows its first 100 by default and says on stderr that there are more.
        """
        client = _PagedClient("devices", _devices(150), default=100)
        out, err = self.list_devices(client)
        self.assertEqual(len(out.splitlines()), 101)
        self.assertEqual(client.paths, ["/v1/devices?limit=100"])
        self.assertEqual(err, "mdmctl: only the first 100 devices (--limit N for more, --all for every one)\n")

    def test_all_streams_every_page(self) -> None:
        """
        --all follows the cursors with pages of the most the API gives, and
        prints rows as each page comes (the table's header once).
        """
        client = _PagedClient("devices", _devices(2500), default=100)
        out, err = self.list_devices(client, "--all")
        lines = out.splitlines()
        self.assertEqual((len(lines), lines[0].split()[0], lines[-1].split()[0]), (2501, "DEVICE", "D2499"))
        self.assertEqual(
            client.paths,
            ["/v1/devices?limit=1000", "/v1/devices?limit=1000&cursor=1000", "/v1/devices?limit=1000&cursor=2000"],
        )
        self.assertEqual(err, "")

    def test_limit(self) -> None:
        """
        --limit N asks for no more than it needs, over as many pages as it takes.
        """
        client = _PagedClient("devices", _devices(1500), default=100)
        out, err = self.list_devices(client, "--limit", "1200", "--status", "enrolled")
        self.assertEqual(len(out.splitlines()), 1201)
        self.assertEqual(
            client.paths,
            ["/v1/devices?status=enrolled&limit=1000", "/v1/devices?status=enrolled&limit=200&cursor=1000"],
        )
        self.assertIn("only the first 1200 devices", err)
        client = _PagedClient("devices", _devices(5))
        self.assertEqual(self.list_devices(client, "--limit", "0")[0].count("\n"), 6)

    def test_json_is_one_array(self) -> None:
        """
        --json writes one valid JSON array across pages (as json.dumps would), and [] for nothing.
        """
        records = _devices(5)
        out, _ = self.list_devices(_PagedClient("devices", records), "--all", "--json")
        self.assertEqual(json.loads(out), records)
        self.assertEqual(out, json.dumps(records, indent=2, sort_keys=True) + "\n")
        out, _ = self.list_devices(_PagedClient("devices", []), "--json")
        self.assertEqual(out, "[]\n")

    def test_json_lines(self) -> None:
        """
        --jsonl writes one JSON object per line.
        """
        records = _devices(5)
        out, _ = self.list_devices(_PagedClient("devices", records), "--all", "--jsonl")
        self.assertEqual([json.loads(line) for line in out.splitlines()], records)

    def test_progress_on_a_terminal_only(self) -> None:
        """
        A progress line goes to stderr when it is a terminal, and is cleared at the end.
        """
        terminal = _Terminal()
        self.list_devices(_PagedClient("devices", _devices(2500)), "--all", err=terminal)
        shown = terminal.getvalue()
        self.assertIn("\r1000 devices (", shown)
        self.assertIn("\r2500 devices (", shown)
        self.assertTrue(shown.endswith("\r\x1b[K"))
        _, err = self.list_devices(_PagedClient("devices", _devices(5)), "--all")
        self.assertEqual(err, "")

    def test_latest(self) -> None:
        """
        push status and results with a limit show the newest records, oldest first.
        """
        jobs: list[dict[str, Any]] = [
            {"device_id": "D", "seq": n, "state": "submitted", "session_id": None, "msisdn": "+1555",
             "kind": "notification", "via": None, "spool_file": None, "message_ids": [], "created_at": 0.0,
             "updated_at": 0.0, "error": None}
            for n in range(1, 8)
        ]
        client = _PagedClient("jobs", jobs)
        args = cli.build_parser().parse_args(["push", "status", "D", "--limit", "3", "--json"])
        args.stderr = io.StringIO()
        out = io.StringIO()
        cli.cmd_push(cast(AdminClient, client), args, out)  # a stand-in: the command only calls request()
        self.assertEqual([j["seq"] for j in json.loads(out.getvalue())], [5, 6, 7])
        self.assertEqual(client.paths, ["/v1/devices/D/pushes?order=desc&limit=3"])
        self.assertIn("only the latest 3 jobs", args.stderr.getvalue())

    def test_times(self) -> None:
        """
        Times on the command line: ISO dates (UTC unless they say), or ages.
        """
        self.assertEqual(cli._time_option("2025-01-31", "--x"), 1738281600.0)
        self.assertEqual(cli._time_option("2025-01-31T01:00:00+01:00", "--x"), 1738281600.0)
        self.assertEqual(cli._time_option("7d", "--x", now=lambda: 1000000.0), 1000000.0 - 7 * 86400)
        self.assertEqual(cli._time_option("30m", "--x", now=lambda: 1000000.0), 1000000.0 - 1800)
        self.assertIsNone(cli._time_option(None, "--x"))
        with self.assertRaises(CommandError) as caught:
            cli._time_option("yesterday", "--contact-before")
        self.assertIn("--contact-before: 'yesterday' is neither a date", str(caught.exception))
