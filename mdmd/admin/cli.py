"""
mdmctl: operate a running mdmd through its admin API.

It reads the same configuration file as the daemon (C{--config}, or
C{$MDMD_CONFIG}, or the development defaults) to find the admin socket and
token. Every failure is one line on stderr and a non-zero exit status.

Listings page through the API (L{_Pages}): C{--limit N} rows (each listing
has its default), C{--all} every row, printed as the pages arrive, with a
progress line on stderr when it is a terminal; C{--json} is one JSON array
(written as it comes), C{--jsonl} one JSON object per line.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import errno
import getpass
import http.client
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Final, NoReturn
from urllib.parse import quote, urlencode

from mdmd import __version__
from mdmd import config as mdmd_config

__all__ = ["main", "AdminClient", "CommandError"]

EXIT_FAILURE = 1
EXIT_USAGE = 2
#: what a shell reports for a program stopped by SIGPIPE (128 + 13)
EXIT_BROKEN_PIPE = 141


class CommandError(Exception):
    """
    Something the operator must be told in one line; the exit status is 1.

    C{lines} are printed first, one problem each (the bad rows of an
    import); C{details} is the admin API's error body, if it answered one.
    """

    def __init__(self, message: str, lines: Sequence[str] = (), details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.lines = tuple(lines)
        self.details = details or {}


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


#: How long mdmctl keeps retrying a request whose answer was lost (the
#: daemon died or timed out after it was sent), with the same Idempotency-Key.
RETRY_FOR = 10.0
#: The first and the longest pause between two attempts.
RETRY_DELAYS = (0.25, 2.0)
#: Requests sent again when their answer is lost: those that read or set a
#: value, and POST, which carries an Idempotency-Key. A DELETE or a PATCH
#: (that may generate secrets) done twice would answer differently.
REPEATABLE = frozenset({"GET", "HEAD", "PUT", "POST"})


class _Unreachable(Exception):
    """
    Nothing was sent: the daemon does not listen (not started, or restarting).
    """


class _AnswerLost(Exception):
    """
    The request may have reached the daemon, but no whole answer came back.
    """


class AdminClient:
    """
    A small synchronous client of the admin API.

    Every POST carries a fresh C{Idempotency-Key}; a request whose answer is
    lost (reset, timeout, the daemon restarting) is sent again with the same
    key for up to C{retry_for} seconds, so the daemon does it once. With
    C{wait}, a daemon that does not listen yet is waited for as well;
    otherwise that is reported at once.
    """

    def __init__(
        self,
        address: str,
        token: str,
        timeout: float = 30.0,
        retry_for: float = RETRY_FOR,
        wait: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address
        self._token = token
        self._timeout = timeout
        self.retry_for = retry_for
        self.wait = wait
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_config(cls, config: mdmd_config.Config, retry_for: float | None = None) -> AdminClient:
        address = str(config.admin.listen)
        try:
            with open(config.listening_file) as f:
                running = json.load(f)
            if _alive(running.get("pid")) and running.get("admin"):
                address = running["admin"]
        except (OSError, ValueError):
            pass
        path = config.admin_token_file
        try:
            with open(path) as f:
                token = f.read().strip()
        except OSError as e:
            hint = _access_hint(e) or " (has the daemon been started?)"
            raise CommandError(f"cannot read the admin token {path}: {e.strerror}{hint}") from None
        if retry_for is None:
            return cls(address, token)
        return cls(address, token, retry_for=retry_for, wait=True)

    def waiting(self, timeout: float) -> AdminClient:
        """
        The same client, waiting up to C{timeout} seconds for an answer (a pack takes minutes).
        """
        return AdminClient(self.address, self._token, timeout)

    def _connection(self) -> http.client.HTTPConnection:
        if self.address.startswith("unix:"):
            return _UnixHTTPConnection(self.address[len("unix:") :], self._timeout)
        host, _, port = self.address[len("tcp:") :].rpartition(":")
        return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=self._timeout)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if method == "POST":
            headers["Idempotency-Key"] = secrets.token_urlsafe(18)
        deadline: float | None = None
        delay, longest = RETRY_DELAYS
        sent = False
        while True:
            try:
                status, retry_after, raw = self._exchange(method, path, payload, headers)
                break
            except (_Unreachable, _AnswerLost) as e:
                sent = sent or isinstance(e, _AnswerLost)
                if deadline is None:
                    deadline = self._clock() + self.retry_for
                if (
                    (not sent and not self.wait)
                    or (sent and method not in REPEATABLE)
                    or self._clock() + delay > deadline
                ):
                    raise self._unreachable(e.args[0], sent) from None
                self._sleep(delay)
                delay = min(2 * delay, longest)
        return self._value(status, retry_after, raw, payload)

    def _exchange(self, method: str, path: str, payload: bytes | None, headers: dict[str, str]) -> tuple[int, str | None, bytes]:
        """
        One attempt: the status, Retry-After and body of the answer.
        """
        connection = self._connection()
        try:
            try:
                connection.connect()
            except (FileNotFoundError, ConnectionRefusedError) as e:
                raise _Unreachable(e) from None
            except OSError as e:
                if _access_hint(e):
                    raise CommandError(self._unreachable(e, False).args[0]) from None
                raise _Unreachable(e) from None
            try:
                connection.request(method, path, body=payload, headers=headers)
                response = connection.getresponse()
                return response.status, response.getheader("Retry-After"), response.read()
            except (OSError, http.client.HTTPException) as e:
                raise _AnswerLost(e) from None
        finally:
            connection.close()

    def _unreachable(self, error: BaseException, sent: bool) -> CommandError:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        hint = _access_hint(error) if isinstance(error, OSError) else ""
        message = f"cannot reach mdmd's admin API at {self.address}: {reason}" + (hint or " (is the daemon running?)")
        if sent:
            message += "; the request may have been carried out: check before repeating it"
        return CommandError(message)

    def _value(self, status: int, retry_after: str | None, raw: bytes, payload: bytes | None) -> Any:
        if status == 413:
            raise CommandError(f"the request ({len(payload or b'')} bytes) is too large for the admin API")
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            raise CommandError(f"the admin API answered {status} with something that is not JSON") from None
        if status == 401:
            raise CommandError("the daemon refused the admin token (is this the right --config?)")
        if status == 503 and retry_after is not None:
            raise CommandError("the daemon is busy; try again")
        if status >= 400:
            details = value if isinstance(value, dict) else {}
            raise CommandError(details.get("error") or f"the admin API answered {status}", details=details)
        return value


def _access_hint(error: OSError) -> str:
    """
    What to do about a file or socket of the daemon this user may not open.
    """
    if error.errno in (errno.EACCES, errno.EPERM):
        return " (run mdmctl as root, e.g. sudo mdmctl, or as the daemon's user)"
    return ""


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- output ------------------------------------------------------------------

#: C0 controls, DEL and C1 controls, each as repr() spells it (\x1b, \n, \x85).
_CONTROLS: Final = {c: repr(chr(c))[1:-1] for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}


def _printable(value: object) -> str:
    """
    C{value} as text fit for a terminal: control characters escaped as repr()
    does, so that what a device sent (a result, a name, an event) cannot move
    the cursor, recolour or retitle the operator's terminal, or break a table.
    Every text output goes through it; --json and --jsonl do not need it.
    """
    return str(value).translate(_CONTROLS)


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(seconds))


def _table(rows: Sequence[Sequence[str]], headers: Sequence[str], out: Any) -> None:
    table = _Table(out, lambda first: (headers, None))
    table.rows(rows)
    table.close()


#: A table's layout, chosen from its first rows: its headers (and, for records, how a record becomes a row).
Layout = Callable[[Any], tuple[Sequence[str], Any]]


class _Table:
    """
    A table printed as its rows come: the columns are as wide as the first
    rows need (and widen for later rows, never narrow).
    """

    def __init__(self, out: Any, layout: Layout) -> None:
        self._out = out
        self._layout = layout
        self._widths: list[int] | None = None

    def rows(self, rows: Sequence[Sequence[str]], headers: Sequence[str] | None = None) -> None:
        if not rows:
            return
        rows = [[_printable(cell) for cell in row] for row in rows]
        if self._widths is None:
            headers = headers if headers is not None else self._layout(rows)[0]
            self._widths = [len(h) for h in headers]
            self._grow(rows)
            self._print(headers)
        else:
            self._grow(rows)
        for row in rows:
            self._print(row)

    def close(self) -> None:
        if self._widths is None:
            print("(none)", file=self._out)

    def _grow(self, rows: Sequence[Sequence[str]]) -> None:
        assert self._widths is not None
        self._widths = [max(w, *(len(r[i]) for r in rows)) for i, w in enumerate(self._widths)]

    def _print(self, cells: Sequence[str]) -> None:
        assert self._widths is not None
        print("  ".join(c.ljust(w) for c, w in zip(cells, self._widths)).rstrip(), file=self._out)


def _fields(record: dict[str, Any], keys: Sequence[str], width: int, out: Any, times: bool = False) -> None:
    """
    C{key: value} lines for C{keys} of C{record} ("-" when empty; times as dates).
    """
    for key in keys:
        value = _when(record.get(key)) if times else record.get(key) or "-"
        print(f"{key + ':':<{width}} {_printable(value)}", file=out)


def _print_json(value: Any, out: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True), file=out)


# --- listings -----------------------------------------------------------------

#: The most records one page of the admin API holds.
PAGE_MAX = 1000


class _Pages:
    """
    The records of a listing, page after page, following the API's cursors
    (C{next}) until there is none or C{want} records came; C{truncated} says
    whether the listing had more.
    """

    def __init__(
        self,
        client: AdminClient,
        path: str,
        key: str,
        want: int | None,
        *,
        newest_first: bool = False,
        page_size: int | None = None,
        progress: _Progress | None = None,
    ) -> None:
        self.client = client
        self.path = path
        self.key = key
        self.want = want
        self.newest_first = newest_first
        self.page_size = page_size
        self.progress = progress
        self.count = 0
        self.truncated = False

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        cursor = None
        while True:
            params: dict[str, str] = {}
            if self.newest_first:
                params["order"] = "desc"
            size = self.page_size if self.want is None else min(self.want - self.count, PAGE_MAX)
            if size:
                params["limit"] = str(size)
            if cursor is not None:
                params["cursor"] = cursor
            page = self.client.request("GET", _with_query(self.path, params))
            records = page[self.key]
            if self.want is not None:
                records = records[: self.want - self.count]
            self.count += len(records)
            if self.progress is not None:
                self.progress.show(self.count)
            yield records
            cursor = page.get("next")
            if cursor is None:
                return
            if self.want is not None and self.count >= self.want:
                self.truncated = True
                return


def _with_query(path: str, params: dict[str, str]) -> str:
    if not params:
        return path
    return path + ("&" if "?" in path else "?") + urlencode(params)


class _Progress:
    """
    A progress line on stderr while a listing comes, if stderr is a terminal.
    """

    def __init__(self, err: Any, what: str) -> None:
        self._err = err
        self._what = what
        self._shown = False
        self._started = time.monotonic()

    @classmethod
    def on(cls, err: Any, what: str) -> _Progress | None:
        isatty = getattr(err, "isatty", None)
        return cls(err, what) if isatty is not None and isatty() else None

    def show(self, count: int) -> None:
        rate = count / max(time.monotonic() - self._started, 1e-3)
        self._err.write(f"\r{count} {self._what} ({rate:.0f}/s)\033[K")
        self._err.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown:
            self._err.write("\r\033[K")
            self._err.flush()


class _Json:
    """
    One JSON array, written record by record (the same text as C{json.dumps(records, indent=2)}).
    """

    def __init__(self, out: Any) -> None:
        self._out = out
        self._first = True

    def records(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            text = json.dumps(record, indent=2, sort_keys=True).replace("\n", "\n  ")
            self._out.write(("[\n  " if self._first else ",\n  ") + text)
            self._first = False

    def close(self) -> None:
        self._out.write("[]\n" if self._first else "\n]\n")


class _JsonLines:
    """
    One JSON object per line.
    """

    def __init__(self, out: Any) -> None:
        self._out = out

    def records(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self._out.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")

    def close(self) -> None:
        pass


class _Rows:
    """
    Records as the rows of a table; C{layout(first records)} gives the
    headers and how a record becomes a row.
    """

    def __init__(self, out: Any, layout: Layout) -> None:
        self._table = _Table(out, layout)
        self._layout = layout
        self._row: Callable[[dict[str, Any]], list[str]] | None = None

    def records(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        headers = None
        if self._row is None:
            headers, self._row = self._layout(records)
        assert self._row is not None
        self._table.rows([self._row(r) for r in records], headers)

    def close(self) -> None:
        self._table.close()


def _wanted(args: argparse.Namespace, default: int | None) -> int | None:
    """
    How many records to list: C{--limit N} (0: all), C{--all}, or the listing's default (None: all).
    """
    if getattr(args, "all", False):
        return None
    limit = getattr(args, "limit", None)
    if limit is None:
        return default
    if limit < 0:
        raise CommandError("--limit takes 0 (every one) or more")
    return limit or None


def _list(
    client: AdminClient,
    args: argparse.Namespace,
    out: Any,
    path: str,
    key: str,
    layout: Layout,
    *,
    default: int | None,
    what: str,
    latest: bool = False,
) -> None:
    """
    Print a listing: C{default} records unless the options say otherwise
    (None: all), streamed page after page; with C{latest}, a limited listing
    shows the newest records (fetched newest first, printed oldest first).
    """
    want = _wanted(args, default)
    err = getattr(args, "stderr", None) or sys.stderr
    if getattr(args, "jsonl", False):
        writer: _Json | _JsonLines | _Rows = _JsonLines(out)
    elif getattr(args, "json", False):
        writer = _Json(out)
    else:
        writer = _Rows(out, layout)
    newest_first = latest and want is not None
    progress = None if newest_first else _Progress.on(err, what)
    pages = _Pages(
        client, path, key, want,
        newest_first=newest_first,
        page_size=PAGE_MAX if getattr(args, "all", False) else None,
        progress=progress,
    )
    try:
        if newest_first:
            found = [record for page in pages for record in page]
            writer.records(found[::-1])
        else:
            for records in pages:
                writer.records(records)
                flush = getattr(out, "flush", None)
                if flush is not None:
                    flush()
    finally:
        if progress is not None:
            progress.done()
    writer.close()
    if pages.truncated:
        which = "latest" if newest_first else "first"
        print(f"mdmctl: only the {which} {pages.count} {what} (--limit N for more, --all for every one)", file=err)


def _fixed(headers: Sequence[str], row: Callable[[dict[str, Any]], list[str]]) -> Layout:
    return lambda first: (headers, row)


# --- commands -----------------------------------------------------------------

Command = Callable[[AdminClient, argparse.Namespace, Any], None]
#: a command that works without the daemon (given the validated configuration instead of a client)
OfflineCommand = Callable[[mdmd_config.Config, argparse.Namespace, Any], None]


def cmd_status(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    status = client.request("GET", "/v1/status")
    if args.json:
        _print_json(status, out)
        return
    print(f"mdmd {status['version']} (pid {status['pid']}), up {status['uptime_seconds']:.0f}s", file=out)
    print(f"host name:  {status.get('hostname', '-')}", file=out)
    for name, address in sorted(status.get("listening", {}).items()):
        print(f"{name + ':':<11} {address}", file=out)
    print(f"store:      {status['store']}", file=out)
    ca = status["ca"]
    print(f"CA:         {ca['subject']} ({ca['thumbprint']}), until {ca['not_after']}", file=out)
    counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sorted(status["counts"].items()))
    print(f"counts:     {counts}", file=out)
    push = status.get("push")
    # every counter the daemon keeps, by family ("devices.status" → devices: status: ...), zeros left out
    groups: dict[str, list[str]] = {}
    for family, values in sorted(status.get("counters", {}).items()):
        group, _, part = family.partition(".")
        counted = ", ".join(f"{v} {k}" for k, v in sorted(values.items()) if v) or "none"
        groups.setdefault(group, []).append(f"{part}: {counted}" if part else counted)
    for group, parts in groups.items():
        if not (push and group == "pushes"):
            print(f"{group + ':':<11} {'; '.join(parts)}", file=out)
    if push:
        print(f"SMPP:       {_link_text(push['link'])}", file=out)
        wns = push.get("links", {}).get("wns")
        if wns is not None:
            print(f"WNS:        {_wns_text(wns)}", file=out)
        pushes = ", ".join(f"{v} {k}" for k, v in push["counts"].items() if v) or "none"
        print(f"pushes:     {pushes}", file=out)


def _wns_text(link: dict[str, Any]) -> str:
    """
    The WNS transport in a line: its token, what WNS answered, the last problem.
    """
    token = link["token"]
    if token["state"] == "valid":
        text = f"token valid until {_when(token['valid_until'])} ({link['flow']} flow)"
    elif token["state"] == "refused":
        text = f"no token: {token['last_error']}"
    else:
        text = f"no token yet ({link['flow']} flow, {link['token_url']})"
    answers = ", ".join(f"{n} {name}" for name, n in sorted(link.get("answers", {}).items()))
    if answers:
        text += f"; answers: {answers}"
    if token["state"] == "valid" and link.get("detail"):
        text += f"; last problem: {link['detail']}"
    return text


def _link_text(link: dict[str, Any]) -> str:
    """
    The SMPP link in a few words: bound to..., disconnected from... (why), not configured.
    """
    state = link["state"]
    if state == "not configured":
        return f"not configured (pushes are written to {link['spool_dir']})"
    where = link.get("smsc") or "the SMSC"
    if state == "bound":
        return f"bound to {where}"
    detail = f" ({link['detail']})" if link.get("detail") else ""
    return f"{state} from {where}{detail}"


def _read_secret(path: str | None, what: str = "password", prompt: str = "Password") -> str:
    """
    A secret from the first line of C{path}, else (no path, or C{-}) from
    stdin, asked twice on a terminal: never from the command line, which
    others can read.
    """
    if path and path != "-":
        try:
            with open(path, encoding="utf-8") as f:
                secret = f.readline().rstrip("\r\n")
        except OSError as e:
            raise CommandError(f"cannot read {path}: {e.strerror}") from None
    elif sys.stdin.isatty():
        secret = getpass.getpass(f"{prompt}: ")
        if getpass.getpass("Again: ") != secret:
            raise CommandError(f"the {what}s differ")
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise CommandError(f"the {what} must not be empty")
    return secret


def _read_password(args: argparse.Namespace) -> str:
    return _read_secret(args.password_file)


def cmd_user_add(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    password = _read_password(args)
    user = client.request("POST", "/v1/users", {"name": args.name, "password": password})
    print(f"added user {user['name']}", file=out)


def cmd_user_password(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    password = _read_password(args)
    user = client.request("PUT", f"/v1/users/{quote(args.name, safe='')}/password", {"password": password})
    print(f"changed the password of {user['name']}", file=out)


def cmd_user_list(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    layout = _fixed(
        ["NAME", "ENABLED", "CREATED"],
        lambda u: [u["name"], "yes" if u["enabled"] else "no", _when(u["created_at"])],
    )
    _list(client, args, out, "/v1/users", "users", layout, default=100, what="users")


def _user_action(verb: str, method: str, suffix: str) -> Command:
    def command(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
        user = client.request(method, f"/v1/users/{quote(args.name, safe='')}{suffix}")
        print(f"{verb} user {user['name']}", file=out)

    return command


def cmd_cert_list(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    filters = {"device": args.device, "status": getattr(args, "status", None)}
    path = _with_query("/v1/certs", {name: value for name, value in filters.items() if value})
    layout = _fixed(
        ["SERIAL", "DEVICE", "STATUS", "ISSUED", "EXPIRES"],
        lambda c: [c["serial"], c["device_id"], c["status"], _when(c["issued_at"]), _when(c["not_after"])],
    )
    _list(client, args, out, path, "certificates", layout, default=100, what="certificates")


def cmd_cert_show(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    cert = client.request("GET", f"/v1/certs/{quote(args.serial, safe='')}")
    if args.json:
        _print_json(cert, out)
        return
    _fields(cert, ("serial", "device_id", "thumbprint", "status", "revocation_reason"), 19, out)
    _fields(cert, ("issued_at", "not_before", "not_after", "revoked_at"), 19, out, times=True)
    print(cert["pem"], end="", file=out)


def cmd_cert_revoke(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    cert = client.request(
        "POST", f"/v1/certs/{quote(args.serial, safe='')}/revoke", {"reason": args.reason}
    )
    print(f"certificate {cert['serial']} of {cert['device_id']} is {cert['status']}", file=out)


def cmd_device_list(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    filters = {
        "status": getattr(args, "status", None),
        "kind": args.kind,
        "user": getattr(args, "user", None),
        "contact_before": _time_option(getattr(args, "contact_before", None), "--contact-before"),
        "contact_after": _time_option(getattr(args, "contact_after", None), "--contact-after"),
    }
    path = _with_query("/v1/devices", {name: str(value) for name, value in filters.items() if value is not None})

    def layout(first: list[dict[str, Any]]) -> tuple[list[str], Callable[[dict[str, Any]], list[str]]]:
        # A fleet of Windows devices only is listed as before kinds existed (the first page decides).
        kinds = args.kind not in (None, "windows") or any(d["kind"] != "windows" for d in first)

        def row(d: dict[str, Any]) -> list[str]:
            return [
                d["device_id"],
                *([d["kind"]] if kinds else []),
                d["device_name"] or "-",
                d["user"] or "-",
                d["status"],
                _when(d["enrolled_at"]),
                _when(d["last_contact"]),
            ]

        return ["DEVICE", *(["KIND"] if kinds else []), "NAME", "USER", "STATUS", "ENROLLED", "LAST CONTACT"], row

    _list(client, args, out, path, "devices", layout, default=100, what="devices")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _time_option(text: str | None, option: str, now: Callable[[], float] = time.time) -> float | None:
    """
    A time given on the command line as POSIX seconds for the API: an ISO
    8601 date or date and time (UTC unless it says otherwise), or an age:
    a number and one of s, m, h, d, w (C{7d}: seven days ago).
    """
    if text is None:
        return None
    value = text.strip()
    if value[:-1].isdigit() and value[-1:] in _UNITS:
        return now() - int(value[:-1]) * _UNITS[value[-1]]
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(
            f"{option}: {text!r} is neither a date (2025-01-31, 2025-01-31T12:00:00Z) nor an age (7d, 12h, 30m)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def _account_lines(device: dict[str, Any], out: Any) -> None:
    """
    The DM account of C{device} (secrets only as set / not set).
    """
    account = device["account"]
    server_id = account["server_id"] or f"{account['effective_server_id']} (the configured provider id)"
    certificate = account["client_certificate"]
    needed = "required" if account["certificate_required"] else "optional"
    if certificate == "default":
        certificate = f"{needed} (the default for {device['kind']} devices)"
    print(f"{'server_id:':<22} {_printable(server_id)}", file=out)
    for side in ("client", "server"):
        print(
            f"{side + '_auth:':<22} {account[side + '_auth']}, name {_printable(account[side + '_name'])}, "
            f"secret {account[side + '_secret']}",
            file=out,
        )
        print(f"{side + '_nonce:':<22} {account[side + '_nonce']}", file=out)
    print(f"{'imsi:':<22} {_printable(account['imsi'] or '-')}", file=out)
    print(f"{'client_certificate:':<22} {certificate}", file=out)


def cmd_device_show(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    device = client.request("GET", f"/v1/devices/{quote(args.device, safe='')}")
    if args.json:
        _print_json(device, out)
        return
    facts = (
        "device_id", "device_name", "status", "user", "auth_policy", "enrollment_type",
        "device_type", "os_version", "os_edition", "application_version", "hw_dev_id",
    )
    _fields(device, facts, 22, out)
    print(f"{'kind:':<22} {device['kind']}", file=out)
    print(f"{'mac_addresses:':<22} {_printable(', '.join(device['mac_addresses']) or '-')}", file=out)
    print(f"{'enrollments:':<22} {device['enrollment_count']}", file=out)
    times = ("first_enrolled_at", "enrolled_at", "renewed_at", "removed_at", "last_contact")
    _fields(device, times, 22, out, times=True)
    cert = device.get("certificate")
    if cert:
        print(
            f"{'certificate:':<22} {cert['serial']} ({cert['status']}), "
            f"store My\\{device['certificate_store']}, expires {_when(cert['not_after'])}",
            file=out,
        )
        print(f"{'thumbprint:':<22} {cert['thumbprint']}", file=out)
    else:
        print(f"{'certificate:':<22} -", file=out)
    _account_lines(device, out)
    push = device.get("push") or {}
    source = f" (from the {push['msisdn_source']})" if push.get("msisdn_source") == "enrollment" else ""
    print(f"{'msisdn:':<22} {_printable(push.get('msisdn') or '-')}{source}", file=out)
    wns = device.get("wns")
    if wns and (wns["pfn"] or wns["pfn_error"] or wns["uri"] or wns["status"] is not None):
        _wns_channel(wns, out)
    last = push.get("last")
    if last:
        print(f"{'last push:':<22} #{last['seq']} {last['state']}, {_when(last['created_at'])}", file=out)
    events = (device.get("dm") or {}).get("header_events") or ()
    for label, event in zip(["our SyncHdr answered:"] + [""] * len(events), events):
        print(
            f"{label:<22} {event['status']!r} ({event['event']}) in session {_printable(event['session_id'])}, "
            f"{_when(event['time'])}",
            file=out,
        )
    failures = (device.get("dm") or {}).get("login_failures")
    if failures:
        locked = failures.get("locked_until") or 0
        lockout = f", refused until {_when(locked)}" if locked > time.time() else ""
        print(
            f"{'failed logins:':<22} {failures['count']}, the last {_when(failures['last'])}{lockout}",
            file=out,
        )
    alerts = list((device.get("dm") or {}).get("alerts") or ())[-SHOWN_ALERTS:]
    for label, alert in zip(["device events:"] + [""] * len(alerts), alerts):
        print(f"{label:<22} {_alert_text(alert)}", file=out)


#: How many of the device's latest events (alerts 1224/1226) device show prints (--json has all).
SHOWN_ALERTS = 10


def _alert_text(alert: dict[str, Any]) -> str:
    """
    One device event: its alert code (1226 for those kept before codes were), type, data, node, when.
    """
    data = alert.get("data")
    shown = "-" if data is None else repr(data if len(data) <= 60 else data[:57] + "...")
    where = f" from {alert['source']}" if alert.get("source") else ""
    return _printable(f"{alert.get('alert', '1226')} {alert.get('type') or '-'} {shown}{where}, {_when(alert['time'])}")


# -- DM accounts: registering, editing, importing -------------------------------------------

#: The columns of an import file: mdmd.devices.registration.COLUMNS, which a
#: test keeps this equal to (importing it would slow every mdmctl command).
IMPORT_COLUMNS = (
    "device_id", "kind", "server_id", "client_auth", "client_name", "client_secret", "client_nonce",
    "server_auth", "server_name", "server_secret", "server_nonce", "msisdn", "imsi", "client_certificate",
)
#: option dest → account field, for device add and device set
_ACCOUNT_OPTIONS = (
    ("server_id", "server_id"),
    ("auth", "client_auth"),
    ("client_name", "client_name"),
    ("client_nonce", "client_nonce"),
    ("server_auth", "server_auth"),
    ("server_name", "server_name"),
    ("server_nonce", "server_nonce"),
    ("msisdn", "msisdn"),
    ("imsi", "imsi"),
    ("client_certificate", "client_certificate"),
)


def _given_secrets(args: argparse.Namespace) -> dict[str, str]:
    """
    The secrets read from --client-secret-file and --server-secret-file.
    """
    files = {"client_secret": args.client_secret_file, "server_secret": args.server_secret_file}
    if list(files.values()).count("-") > 1:
        raise CommandError("only one secret can come from standard input")
    return {
        name: _read_secret(path, name.replace("_", " "), name.replace("_", " ").capitalize())
        for name, path in files.items()
        if path is not None
    }


def _private_file(path: str) -> IO[str]:
    """
    A new file only its owner may read, for secrets; an existing file is never written over.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandError(f"{path} exists: secrets are never written over a file") from None
    except OSError as e:
        raise CommandError(f"cannot create {path}: {e.strerror}") from None
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


def _write_rows(f: IO[str], rows: Sequence[dict[str, str]]) -> None:
    """
    Rows in the import file's format (the columns in their order, a header first).
    """
    writer = csv.DictWriter(f, fieldnames=IMPORT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


def _account_request(client: AdminClient, method: str, path: str, body: dict[str, Any], secrets_file: str | None) -> tuple[Any, IO[str] | None]:
    """
    Send an account's request, with the secrets file created first (so
    that a file that cannot be written stops it before anything changes);
    the file is removed again if the request fails.
    """
    f = _private_file(secrets_file) if secrets_file else None
    try:
        return client.request(method, path, body), f
    except BaseException:
        if f is not None and secrets_file is not None:
            f.close()
            os.unlink(secrets_file)
        raise


def cmd_device_add(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    body: dict[str, Any] = {"device_id": args.device, "kind": args.kind}
    body.update({field: getattr(args, dest) for dest, field in _ACCOUNT_OPTIONS if getattr(args, dest) is not None})
    body.update(_given_secrets(args))
    registered, secrets_file = _account_request(client, "POST", "/v1/devices", body, args.secrets_file)
    if secrets_file is not None:
        with secrets_file:
            _write_rows(secrets_file, [registered["row"]])
    device = registered["device"]
    if args.json:
        _print_json({**device, "secrets": {} if secrets_file is not None else registered["secrets"]}, out)
        return
    account = device["account"]
    print(
        f"registered {device['device_id']} ({device['kind']}): server id "
        f"{account['server_id'] or 'the configured provider id'}, client {account['client_auth']} "
        f"as {account['client_name']}, server {account['server_auth']} as {account['server_name']}; "
        f"{registered['inventory']} inventory Get(s) queued",
        file=out,
    )
    if secrets_file is not None:
        print(f"its account, secrets included, is in {args.secrets_file} (mode 0600)", file=out)
        return
    for name, secret in sorted(registered["secrets"].items()):
        print(f"{name.replace('_', ' ')}: {secret}", file=out)
    if registered["secrets"]:
        print("(shown this once: mdmd never shows a secret again)", file=out)


def _wns_channel(wns: dict[str, Any], out: Any) -> None:
    """
    A device's WNS channel: its PFN, URI, age and expiry, Push/Status and its meaning.
    """
    pfn = f"{wns['pfn']} (set at {wns['pfn_via']})" if wns["pfn"] else "-"
    if wns["pfn_error"]:
        pfn += f"; refused: {wns['pfn_error']}"
    print(f"{'wns pfn:':<22} {_printable(pfn)}", file=out)
    if wns["uri"]:
        age = wns["age_seconds"] or 0.0
        print(
            f"{'wns channel:':<22} {_printable(wns['uri'])} (read {_when(wns['read_at'])}, {age / 86400:.1f} days old, "
            f"expires {_when(wns['expires_at'])})",
            file=out,
        )
    else:
        print(f"{'wns channel:':<22} -", file=out)
    if wns["status"] is not None:
        print(f"{'wns status:':<22} {wns['status']} ({wns['status_meaning']})", file=out)
    if wns["expired_at"] is not None:
        print(f"{'wns channel gone:':<22} {_when(wns['expired_at'])} (WNS said so; a new one is read)", file=out)
    if wns["problem"]:
        print(f"{'wns:':<22} cannot push: device {wns['problem']}", file=out)


def cmd_device_set(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    body: dict[str, Any] = {
        field: getattr(args, dest) for dest, field in _ACCOUNT_OPTIONS if getattr(args, dest) is not None
    }
    body.update(_given_secrets(args))
    generate = [name for name in ("client_secret", "server_secret") if getattr(args, "new_" + name)]
    if not body and not generate:
        raise CommandError("nothing to set (--msisdn NUMBER, or --msisdn '' to clear it; see mdmctl device set --help)")
    if generate:
        body["generate"] = generate
    if args.secrets_file and not generate:
        raise CommandError("--secrets-file takes the secrets of --new-client-secret and --new-server-secret")
    result, secrets_file = _account_request(client, "PATCH", _device_path(args.device), body, args.secrets_file)
    account = result["device"]["account"]
    for field in IMPORT_COLUMNS:
        if field not in body:
            continue
        if field == "msisdn":
            msisdn = result["push"]["msisdn"]
            print(f"{args.device}: msisdn {msisdn}" if msisdn else f"{args.device}: msisdn cleared", file=out)
        elif field in ("client_secret", "server_secret"):
            print(f"{args.device}: {field} replaced", file=out)
        else:
            print(f"{args.device}: {field} {account[field] or 'cleared'}", file=out)
    if secrets_file is not None:
        with secrets_file:
            _write_rows(secrets_file, [{"device_id": args.device, **result["secrets"]}])
        print(f"{args.device}: new {', '.join(generate)} in {args.secrets_file} (mode 0600)", file=out)
        return
    for name, secret in sorted(result["secrets"].items()):
        print(f"{args.device}: new {name.replace('_', ' ')}: {secret} (shown this once)", file=out)


def _csv_rows(path: str) -> tuple[list[tuple[int, dict[str, str]]], list[tuple[int, str]]]:
    """
    The rows of an import file, each with the line it starts on, and the
    problems of the file's structure (line, reason).

    @raise CommandError: if the header row is not usable (nothing else can be read then).
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            lines = f.readlines()
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text") from None
    reader = csv.reader(lines, skipinitialspace=True, strict=True)
    rows: list[tuple[int, dict[str, str]]] = []
    problems: list[tuple[int, str]] = []
    header: list[str] | None = None
    start = 1
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            problems.append((start, f"not CSV: {e}"))
            break
        if not any(field.strip() for field in fields):
            continue
        if header is None:
            header = [name.strip() for name in fields]
            _check_header(path, start, header)
            continue
        if len(fields) != len(header):
            problems.append((start, f"{len(fields)} fields, but the header names {len(header)}"))
            continue
        rows.append((start, {name: value.strip() for name, value in zip(header, fields)}))
    if header is None:
        raise CommandError(f"{path} has no header row (columns: {', '.join(IMPORT_COLUMNS)})")
    return rows, problems


def _check_header(path: str, line: int, header: list[str]) -> None:
    reasons = []
    unknown = [name for name in header if name not in IMPORT_COLUMNS]
    if unknown:
        reasons.append(f"unknown column(s) {', '.join(map(repr, unknown))}")
    if "device_id" not in header:
        reasons.append("no device_id column")
    doubled = sorted({name for name in header if header.count(name) > 1})
    if doubled:
        reasons.append(f"column(s) named twice: {', '.join(doubled)}")
    if reasons:
        raise CommandError(
            f"{path}:{line}: the header row has {'; '.join(reasons)} (columns: {', '.join(IMPORT_COLUMNS)})"
        )


def _row_problems(error: CommandError, lines: Sequence[int]) -> list[tuple[int, str]]:
    """
    The bad rows the admin API listed in C{error}, by the line each starts on.
    """
    found = []
    for problem in error.details.get("rows", ()):
        row = problem["row"]
        line = lines[row] if 0 <= row < len(lines) else 0
        name = f"{problem['device_id']}: " if problem["device_id"] else ""
        found.append((line, name + problem["error"]))
    return found


def _bad_rows(path: str, problems: list[tuple[int, str]], message: str = "nothing was imported") -> CommandError:
    count = len(problems)
    return CommandError(
        f"{count} bad row{'s' if count != 1 else ''} in {path}; {message}",
        lines=[f"{path}:{line}: {reason}" for line, reason in sorted(problems)],
    )


def cmd_device_import(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    rows, problems = _csv_rows(args.file)
    first: dict[str, int] = {}
    sent: list[tuple[int, dict[str, str]]] = []
    for line, row in rows:
        device_id = row.get("device_id", "")
        if device_id and device_id in first:
            problems.append((line, f"{device_id}: also on line {first[device_id]}"))
            continue
        first.setdefault(device_id, line)
        sent.append((line, row))
    if not sent and not problems:
        raise CommandError(f"{args.file} holds no devices")
    lines = [line for line, _ in sent]
    # Every row is checked (the daemon checks fields and the devices it has,
    # and completes each row, generating missing secrets and nonces); then the
    # completed rows are written; then registered: a lost answer loses no
    # secret, and the written file imports again unchanged.
    checked = None
    if sent:
        try:
            checked = client.request("POST", "/v1/devices:import", {"devices": [r for _, r in sent], "dry_run": True})
        except CommandError as e:
            if "rows" not in e.details:
                raise
            problems += _row_problems(e, lines)
    if problems or checked is None:
        raise _bad_rows(args.file, problems)
    outcomes = checked["rows"]
    complete = [o["row"] if o["row"] is not None else row for o, (_, row) in zip(outcomes, sent)]
    generated = sum(
        1
        for o, (_, row) in zip(outcomes, sent)
        if o["action"] == "register" and not (row.get("client_secret") and row.get("server_secret"))
    )
    if args.dry_run:
        print(
            f"{args.file}: {len(checked['registered'])} device(s) to register, {len(checked['unchanged'])} "
            f"unchanged, {generated} with generated secrets (a dry run: nothing was imported)",
            file=out,
        )
        return
    if generated and not args.secrets_file:
        raise CommandError(
            f"{generated} device(s) of {args.file} get generated secrets: name a file for them with "
            "--secrets-file PATH (created mode 0600; an import never shows secrets on the terminal)"
        )
    if args.secrets_file:
        with _private_file(args.secrets_file) as f:
            _write_rows(f, complete)
    try:
        imported = client.request("POST", "/v1/devices:import", {"devices": complete, "dry_run": False})
    except CommandError as e:
        again = f" ({args.secrets_file} holds the completed rows: import it once this is fixed)" if args.secrets_file else ""
        if "rows" in e.details:
            raise _bad_rows(args.file, _row_problems(e, lines), "nothing was imported" + again) from None
        raise CommandError(f"{e}{again}") from None
    print(
        f"{args.file}: {len(imported['registered'])} device(s) registered, "
        f"{len(imported['unchanged'])} unchanged (registered before with these values)",
        file=out,
    )
    if args.secrets_file:
        print(f"their accounts, secrets included, are in {args.secrets_file} (mode 0600)", file=out)


def cmd_device_bootstrap(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    if args.netwpin:
        pin, body = "NETWPIN", {"pin": "netwpin"}
    else:
        userpin = _read_secret(args.userpin_file, "USERPIN", "USERPIN")
        pin, body = "USERPIN", {"pin": "userpin", "userpin": userpin}
    result = client.request("POST", _device_path(args.device, "/bootstrap"), body)
    if args.json:
        _print_json(result, out)
        return
    job = result["job"]
    what = f"bootstrap #{job['seq']} for {job['device_id']} ({pin}, {job['segments']} SMS to {job['msisdn']})"
    if job["via"] == "spool":
        print(f"{what}: written to {job['spool_file']}", file=out)
    else:
        print(f"{what}: {job['state']}; SMPP link {_link_text(result['link'])}", file=out)


def cmd_device_remove(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    device = client.request("DELETE", f"/v1/devices/{quote(args.device, safe='')}")
    serial = device.get("certificate_serial")
    revoked = f"; certificate {serial} revoked" if serial else ""
    print(f"removed device {device['device_id']}{revoked}", file=out)


def _device_path(device: str, suffix: str = "") -> str:
    return f"/v1/devices/{quote(device, safe='')}{suffix}"


def _targets(spec: dict[str, Any]) -> str:
    """
    A one-line summary of a command's targets (group members included).
    """
    found: list[str] = [i["target"] for i in spec.get("items", ())]
    for child in spec.get("commands", ()):
        found.append(f"{child['verb']} {_targets(child)}")
    return ", ".join(found)


def _read_commands(path: str) -> list[Any]:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise CommandError(f"{path} is not JSON: {e}") from None
    if isinstance(value, dict):
        value = value.get("commands")
    if not isinstance(value, list) or not value:
        raise CommandError(f"{path} must hold a JSON list of commands (or {{\"commands\": [...]}})")
    return value


def cmd_queue_command(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    devices = [d for d in args.devices.split(",") if d]
    if not devices:
        raise CommandError("name at least one device")
    verb = args.verb
    if verb == "cancel":
        if len(devices) != 1:
            raise CommandError("cancel takes one device")
        command = client.request("DELETE", _device_path(devices[0], f"/commands/{quote(args.seq, safe='')}"))
        print(f"cancelled command {command['seq']} of {devices[0]}", file=out)
        return
    if verb in ("atomic", "sequence"):
        spec: dict[str, Any] = {"verb": verb.capitalize(), "commands": _read_commands(args.file)}
    else:
        spec = {"verb": verb.capitalize(), "target": args.uri}
        for option in ("data", "format", "type"):
            value = getattr(args, option, None)
            if value is not None:
                spec[option] = value
    if len(devices) == 1:
        queued = client.request("POST", _device_path(devices[0], "/commands"), spec)["commands"]
    else:
        queued = client.request("POST", "/v1/commands", {"devices": devices, "command": spec})["commands"]
    for command in queued:
        print(f"queued command {command['seq']} for {command['device_id']}", file=out)


def _status_codes(command: dict[str, Any]) -> str:
    """
    Every status code stored for a command: its own, then its members' as PATH:CODE.
    """
    statuses = command.get("statuses") or ()
    if not statuses:
        return "-" if command["status"] is None else str(command["status"])
    return " ".join(f"{s['command']}:{s['status']}" if s["command"] else str(s["status"]) for s in statuses)


def _command_rows(found: list[dict[str, Any]], with_results: bool) -> list[list[str]]:
    rows = []
    for c in found:
        row = [str(c["seq"]), c["state"], c["spec"]["verb"], _targets(c["spec"])]
        if with_results:
            first = c["results"][0]["data"] if c["results"] else (c["error"] or c.get("note") or "")
            row += [_status_codes(c), (first or "")[:40].replace("\n", " ")]
        row.append(_when(c["updated_at"]))
        rows.append(row)
    return rows


def cmd_queue(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    layout = _fixed(["SEQ", "STATE", "VERB", "TARGET", "UPDATED"], lambda c: _command_rows([c], False)[0])
    _list(client, args, out, _device_path(args.device, "/queue"), "commands", layout, default=None, what="commands")


def cmd_results(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    state = getattr(args, "state", None)
    if state:
        path = _with_query(_device_path(args.device, "/commands"), {"state": state})
    else:
        path = _device_path(args.device, "/results")
    layout = _fixed(
        ["SEQ", "STATE", "VERB", "TARGET", "STATUS", "RESULT", "UPDATED"], lambda c: _command_rows([c], True)[0]
    )
    _list(client, args, out, path, "commands", layout, default=None, what="commands", latest=True)


def _push_rows(found: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for job in found:
        where = job["spool_file"] if job["via"] == "spool" else ", ".join(i or "-" for i in job["message_ids"])
        rows.append(
            [
                job["device_id"],
                str(job["seq"]),
                job["state"],
                job["session_id"] or "-",
                "WNS" if job.get("route") == "wns" else job["msisdn"],
                job["kind"],
                where if job["via"] else "-",
                _when(job["created_at"]),
                _when(job["updated_at"]),
                job["error"] or "",
            ]
        )
    return rows


def cmd_push(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    targets = list(args.targets)
    if targets[0] == "status":
        if len(targets) > 2:
            raise CommandError("push status takes at most one device")
        path = _device_path(targets[1], "/pushes") if len(targets) == 2 else "/v1/pushes"
        filters = {"state": getattr(args, "state", None), "kind": getattr(args, "kind", None)}
        path = _with_query(path, {name: value for name, value in filters.items() if value})
        layout = _fixed(
            ["DEVICE", "SEQ", "STATE", "SESSION", "MSISDN", "KIND", "MESSAGE IDS / FILE", "CREATED", "UPDATED", "ERROR"],
            lambda job: _push_rows([job])[0],
        )
        _list(client, args, out, path, "jobs", layout, default=50, what="jobs", latest=True)
        return
    options: dict[str, Any] = {"via": args.via} if args.via else {}
    if getattr(args, "default_nonce", False):
        options["default_nonce"] = True
    if len(targets) == 1:
        result = client.request("POST", _device_path(targets[0], "/pushes"), options or None)
    else:
        result = client.request("POST", "/v1/pushes", {"devices": targets, **options})
    if args.json:
        _print_json(result, out)
        return
    link = result["link"]
    for job in result["jobs"]:
        if job.get("route") == "wns":
            what = f"push #{job['seq']} for {job['device_id']} (to its WNS channel)"
        else:
            what = f"push #{job['seq']} for {job['device_id']} (session id {job['session_id']}, to {job['msisdn']})"
        if job["via"] == "spool":
            print(f"{what}: written to {job['spool_file']}", file=out)
        elif job.get("route") == "wns":
            print(f"{what}: {job['state']} (WNS)", file=out)
        else:
            print(f"{what}: {job['state']}; SMPP link {_link_text(link)}", file=out)


def _size(octets: int) -> str:
    value = float(octets)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


#: How long mdmctl store pack waits for the daemon's answer: the pack runs as long as it takes.
PACK_WAIT = 86400.0


def cmd_store_pack(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    body = {} if args.days is None else {"days": args.days}
    report = client.waiting(PACK_WAIT).request("POST", "/v1/store/pack", body)
    if args.json:
        _print_json(report, out)
        return
    print(
        f"store packed in {report['seconds']:.1f} s, keeping {report['days']:g} day(s) of history: "
        f"{_size(report['size_before'])} → {_size(report['size_after'])}",
        file=out,
    )


# -- desired state ----------------------------------------------------------------------------


def _group_path(name: str, suffix: str = "") -> str:
    return f"/v1/groups/{quote(name, safe='')}{suffix}"


def _profile_path(name: str, suffix: str = "") -> str:
    return f"/v1/profiles/{quote(name, safe='')}{suffix}"


def cmd_group_list(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    found = client.request("GET", "/v1/groups")["groups"]
    if args.json:
        _print_json(found, out)
        return
    _table(
        [
            [g["name"], g["kind"], "-" if g["members"] is None else str(g["members"]), ", ".join(g["profiles"]) or "-",
             g["rule"] or g["description"] or "-"]
            for g in found
        ],
        ["GROUP", "KIND", "MEMBERS", "PROFILES", "RULE / DESCRIPTION"],
        out,
    )


def cmd_group_show(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    query = f"?limit={args.limit}" + (f"&after={quote(args.after, safe='')}" if args.after else "")
    group = client.request("GET", _group_path(args.name, query))
    if args.json:
        _print_json(group, out)
        return
    print(f"group {group['name']} ({group['kind']}): {group['rule'] or group['description'] or ''}".rstrip(": "), file=out)
    members = "every device of its kind" if group["members"] is None else str(group["members"])
    print(f"members:  {members}", file=out)
    print(f"profiles: {', '.join(group['profiles']) or '-'}", file=out)
    page = group["member_page"]
    for device_id in page["devices"]:
        print(f"  {device_id}", file=out)
    if page["next"]:
        print(f"(more: --after {page['next']})", file=out)


def cmd_group_add(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    exists = any(g["name"] == args.name for g in client.request("GET", "/v1/groups")["groups"])
    if exists and args.devices and args.rule is None:
        group = client.request("POST", _group_path(args.name, "/members"), {"devices": args.devices})
        print(f"added {group['added']} device(s) to group {args.name} ({group['members']} members)", file=out)
        return
    body: dict[str, Any] = {"name": args.name, "devices": args.devices}
    if args.rule is not None:
        body["rule"] = args.rule
    if args.description:
        body["description"] = args.description
    group = client.request("POST", "/v1/groups", body)
    what = f"rule {group['rule']}" if group["rule"] else f"{group['members']} member(s)"
    print(f"created group {group['name']}: {what}", file=out)


def cmd_group_remove(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    if args.devices:
        group = client.request("POST", _group_path(args.name, "/members:remove"), {"devices": args.devices})
        print(f"removed {group['removed']} device(s) from group {args.name} ({group['members']} members)", file=out)
        return
    group = client.request("DELETE", _group_path(args.name))
    print(f"removed group {group['name']}; its members undo its profiles at their next check-in", file=out)


def _read_profile(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text") from None


def _profile_request(client: AdminClient, path: str, body: dict[str, Any], file: str) -> Any:
    try:
        return client.request("POST", path, body)
    except CommandError as e:
        problems = e.details.get("problems")
        if problems:
            raise CommandError(f"{file}: {len(problems)} problem(s); nothing was changed", [f"{file}: {p}" for p in problems]) from None
        raise


def cmd_profile_add(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    body = {"name": args.name, "source": _read_profile(args.file), "description": args.description or ""}
    profile = _profile_request(client, "/v1/profiles", body, args.file)
    print(f"added profile {profile['name']} (version {profile['latest']})", file=out)


def cmd_profile_edit(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    body: dict[str, Any] = {"source": _read_profile(args.file)}
    if args.description is not None:
        body["description"] = args.description
    profile = _profile_request(client, _profile_path(args.name, "/versions"), body, args.file)
    assigned = f"; devices of {', '.join(profile['groups'])} converge on it" if profile["groups"] else ""
    print(f"profile {profile['name']} is at version {profile['latest']}{assigned}", file=out)


def _state_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in counts.items() if n) or "no devices"


def cmd_profile_list(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    found = client.request("GET", "/v1/profiles")["profiles"]
    if args.json:
        _print_json(found, out)
        return
    _table(
        [[p["name"], str(p["latest"]), ", ".join(p["groups"]) or "-", _state_counts(p["counts"]), p["description"] or ""]
         for p in found],
        ["PROFILE", "VERSION", "GROUPS", "DEVICES", "DESCRIPTION"],
        out,
    )


def cmd_profile_show(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    profile = client.request("GET", _profile_path(args.name, f"?version={args.version}" if args.version else ""))
    if args.json:
        _print_json(profile, out)
        return
    version = profile["version"]
    print(f"profile {profile['name']}: {profile['description'] or '-'}", file=out)
    print(f"version:  {version['version']} of {profile['latest']} ({_when(version['created_at'])})", file=out)
    print(f"groups:   {', '.join(profile['groups']) or '-'}", file=out)
    print(f"devices:  {_state_counts(profile['counts'])}", file=out)
    print("", file=out)
    print(version["source"].rstrip("\n"), file=out)


def cmd_profile_remove(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    profile = client.request("DELETE", _profile_path(args.name))
    print(f"removed profile {profile['name']}; devices undo it at their next check-in", file=out)


def cmd_profile_assign(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    profile = client.request("POST", _profile_path(args.name, "/assignments"), {"group": args.group, "push": args.push})
    print(f"assigned profile {profile['name']} to group {args.group}: its devices converge at their next check-in", file=out)
    push = profile.get("push")
    if push:
        print(f"waking group {push['group']} in batches of {push['batch']} (see the daemon's log)", file=out)


def cmd_profile_unassign(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    client.request("DELETE", _profile_path(args.name, f"/assignments/{quote(args.group, safe='')}"))
    print(f"unassigned profile {args.name} from group {args.group}: its devices undo it at their next check-in", file=out)


def _failure_text(device: dict[str, Any]) -> str:
    failure = device.get("failure")
    if failure:
        status = f" ({failure['status']})" if failure.get("status") is not None else ""
        return f"{failure.get('error') or failure.get('command')}{status}"
    return "; ".join(device.get("retained") or ()) or ""


def cmd_profile_status(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    query = f"?limit={args.limit}"
    if args.state:
        query += f"&state={quote(args.state, safe='')}"
    if args.after:
        query += f"&after={quote(args.after, safe='')}"
    status = client.request("GET", _profile_path(args.name, "/status" + query))
    if args.json:
        _print_json(status, out)
        return
    print(f"profile {status['profile']} (version {status['version']}): {_state_counts(status['counts'])}", file=out)
    _table(
        [[d["device_id"], d["state"], str(d["version"] or "-"), _failure_text(d)] for d in status["devices"]],
        ["DEVICE", "STATE", "VERSION", "FAILURE / RETAINED"],
        out,
    )
    if status["next"]:
        print(f"(more: --after {status['next']})", file=out)
    elif status["more"]:
        print("(more: ask for one --state at a time to page)", file=out)


def cmd_report(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    if args.device:
        found = client.request("GET", _device_path(args.device, "/profiles"))
        if args.json:
            _print_json(found, out)
            return
        _table(
            [[p["profile"], str(p["version"]), p["state"], _failure_text(p), _when(p["verified_at"])] for p in found["profiles"]],
            ["PROFILE", "VERSION", "STATE", "FAILURE / RETAINED", "VERIFIED"],
            out,
        )
        return
    found = client.request("GET", f"/v1/report?limit={args.limit}")
    if args.json:
        _print_json(found, out)
        return
    rows = []
    for p in found["profiles"]:
        counts = p["counts"]
        rows.append(
            [p["profile"], str(p["version"]), ", ".join(p["groups"]) or "-", str(counts["verified"]),
             str(counts["pending"] + counts["sent"] + counts["verifying"]), str(counts["failed"]),
             str(counts["drifted"]), str(counts["removing"]), str(counts["retained"])]
        )
    _table(rows, ["PROFILE", "VERSION", "GROUPS", "VERIFIED", "PENDING", "FAILED", "DRIFTED", "REMOVING", "RETAINED"], out)
    if found["not_verified"]:
        print("", file=out)
        print("not verified:", file=out)
        _table([[n["device_id"], n["profile"], n["state"]] for n in found["not_verified"]], ["DEVICE", "PROFILE", "STATE"], out)
        if found["more"]:
            print("(more: mdmctl profile status PROFILE --state STATE)", file=out)


def _device_action(action: str, variants: dict[str, str] | None = None) -> Command:
    def command(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
        chosen = action
        for option, name in (variants or {}).items():
            if getattr(args, option, False):
                chosen = name
        body: dict[str, Any] = {"action": chosen, "push": args.push}
        if action == "wipe":
            if not args.yes:
                raise CommandError(f"{chosen} erases {args.device}: say --yes to confirm")
            body["confirm"] = True
        result = client.request("POST", _device_path(args.device, "/actions"), body)
        if args.json:
            _print_json(result, out)
            return
        print(f"queued {result['action']} of {result['device_id']} (command {result['seq']}: Exec {result['node']})", file=out)
        push = result.get("push")
        if push:
            print(f"push: {push['error']}" if "error" in push else "push: sent", file=out)

    return command


def cmd_device_actions(client: AdminClient, args: argparse.Namespace, out: Any) -> None:
    found = client.request("GET", _device_path(args.device, "/actions"))["actions"]
    if args.json:
        _print_json(found, out)
        return
    _table(
        [[str(a["seq"]), a["action"], a["state"], "-" if a["status"] is None else str(a["status"]),
          _when(a["requested_at"]), _when(a["updated_at"]), a["error"] or ""] for a in found],
        ["SEQ", "ACTION", "STATE", "STATUS", "REQUESTED", "UPDATED", "ERROR"],
        out,
    )


def cmd_manhole_password(config: mdmd_config.Config, args: argparse.Namespace, out: Any) -> None:
    from mdmd.manhole import set_password, validate_login_name

    path = args.file or config.manhole_password_file
    try:
        validate_login_name(args.name)
    except ValueError as e:
        raise CommandError(str(e)) from None
    password = _read_password(args)
    try:
        replaced = set_password(path, args.name, password)
    except OSError as e:
        raise CommandError(f"cannot write {path}: {e.strerror}") from None
    print(f"{'changed' if replaced else 'added'} manhole login {args.name} in {path}", file=out)


def cmd_manhole(config: mdmd_config.Config, args: argparse.Namespace, out: Any) -> None:
    from mdmd.admin.console import connect, run

    if not config.manhole.enabled and not args.address:
        raise CommandError("the manhole is not enabled in this configuration ([manhole] enabled)")
    address = args.address or str(config.manhole.listen)
    try:
        with open(config.listening_file) as f:
            running = json.load(f)
        if not args.address and _alive(running.get("pid")) and running.get("manhole"):
            address = running["manhole"]
    except (OSError, ValueError):
        pass
    try:
        sock = connect(address)
    except OSError as e:
        raise CommandError(f"cannot reach the manhole at {address}: {e.strerror or e} (is the daemon running?)") from None
    with sock:
        run(sock)


# --- argument parsing ------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


class _RefuseSecret(argparse.Action):
    """
    An option that would put a secret on the command line, where ps and the
    shell's history show it: refused, its value never repeated.
    """

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None) -> None:
        parser.error(
            f"{option}: secrets are never taken on the command line (ps and shell history would "
            "show them); use --client-secret-file or --server-secret-file with a file, or - for "
            "standard input"
        )


def _account_arguments(parser: argparse.ArgumentParser, adding: bool) -> None:
    """
    The DM account's options: of device add (with their defaults) or of device set.
    """

    def option(name: str, help: str, default: str = "", clearing: str = "", **kwargs: Any) -> None:
        if adding and default:
            help += f" (default: {default})"
        elif not adding and clearing:
            help += f"; '' {clearing}"
        parser.add_argument(name, help=help, **kwargs)

    schemes = ("digest", "basic", "hmac")
    option("--server-id", "the server id the device knows us by (DMAcc ServerID)", "[enrollment] provider_id",
           "returns to the provider id", metavar="ID")
    option("--auth", "how the device authenticates to us", "digest", choices=schemes)
    option("--client-name", "the device's credential name (APPSRV AAuthName)", "the DeviceID", metavar="NAME")
    option("--client-nonce", "the nonce the device uses next", "fresh", metavar="BASE64")
    option("--server-auth", "how we authenticate to the device", "digest", choices=schemes)
    option("--server-name", "our credential name (CLIENT AAuthName)", "the server id", metavar="NAME")
    option("--server-nonce", "the nonce we use next", "fresh", metavar="BASE64")
    option("--msisdn", "the phone number for push (e.g. +491701234567)", clearing="clears it", metavar="NUMBER")
    option("--imsi", "the SIM's IMSI (for OMA CP bootstrap)", clearing="clears it", metavar="DIGITS")
    option("--client-certificate", "whether its DM sessions need a TLS client certificate",
           "its kind's: [dm] require_client_certificate_KIND", choices=("required", "optional", "default"))
    option("--client-secret-file", "read the device's secret from the first line of this file, or - for "
           "standard input", "generated", metavar="PATH")
    option("--server-secret-file", "read our secret from the first line of this file, or - for standard "
           "input", "generated", metavar="PATH")
    if not adding:
        parser.add_argument("--new-client-secret", action="store_true", help="generate a new device secret")
        parser.add_argument("--new-server-secret", action="store_true", help="generate a new server secret")
    parser.add_argument(
        "--secrets-file", metavar="PATH",
        help="write the generated secrets to this new file (mode 0600) instead of showing them"
        + (", with the whole account, in the import format" if adding else ""),
    )
    for refused in ("--secret", "--client-secret", "--server-secret", "--password"):
        parser.add_argument(refused, nargs="?", action=_RefuseSecret, help=argparse.SUPPRESS)


def _paged_arguments(parser: argparse.ArgumentParser, default: str | None) -> None:
    """
    The options of a listing; C{default} says what it lists unless told (for
    --help), None if the listing has its own --limit.
    """
    parser.add_argument("--jsonl", action="store_true", help="print one JSON object per line")
    if default is not None:
        parser.add_argument("--limit", type=int, metavar="N", help=f"list N at most, 0 for all (default: {default})")
    parser.add_argument("--all", action="store_true", help="list every one, as the pages come (same as --limit 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mdmctl",
        description="Operate a running mdmd through its admin API.",
        epilog="The admin socket and token come from the daemon's configuration file.",
    )
    parser.add_argument(
        "--config",
        "-c",
        default=os.environ.get("MDMD_CONFIG"),
        help="the daemon's configuration file (default: $MDMD_CONFIG, else the "
        "development settings in the current directory)",
    )
    parser.add_argument(
        "--retry-for",
        type=float,
        metavar="SECONDS",
        help="wait up to SECONDS for a daemon that does not answer (starting or restarting) "
        f"and retry; without it, a request whose answer was lost is retried for {RETRY_FOR:.0f}s "
        "and a daemon that is not running is reported at once. Retries of a request that "
        "creates something carry the same Idempotency-Key, so it is done once.",
    )
    parser.add_argument("--version", action="version", version=f"mdmctl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def add(
        parent: Any,
        name: str,
        handler: Command | OfflineCommand,
        help: str,
        listing: bool = False,
        paged: str | None = None,
    ) -> argparse.ArgumentParser:
        # no abbreviated options: --client-secret must never pass for --client-secret-file
        sub = parent.add_parser(name, help=help, description=help, allow_abbrev=False)
        sub.set_defaults(handler=handler)
        if listing:
            sub.add_argument("--json", action="store_true", help="print JSON")
        if paged is not None:
            _paged_arguments(sub, paged)
        return sub

    add(commands, "status", cmd_status, "show the daemon's state", listing=True)

    user = commands.add_parser("user", help="manage the users allowed to enroll devices")
    user_commands = user.add_subparsers(dest="user_command", metavar="ACTION", parser_class=_Parser)
    user_commands.required = True
    for name, handler, help in (
        ("add", cmd_user_add, "add a user (password from stdin or --password-file)"),
        ("passwd", cmd_user_password, "set a user's password (from stdin or --password-file)"),
    ):
        sub = add(user_commands, name, handler, help)
        sub.add_argument("name")
        sub.add_argument("--password-file", help="read the password from the first line of this file")
    add(user_commands, "list", cmd_user_list, "list users", listing=True, paged="the first 100")
    for name, verb, method, suffix, help in (
        ("remove", "removed", "DELETE", "", "remove a user"),
        ("disable", "disabled", "POST", "/disable", "forbid a user to enroll devices"),
        ("enable", "enabled", "POST", "/enable", "allow a disabled user to enroll again"),
    ):
        add(user_commands, name, _user_action(verb, method, suffix), help).add_argument("name")

    cert = commands.add_parser("cert", help="inspect and revoke issued certificates")
    cert_commands = cert.add_subparsers(dest="cert_command", metavar="ACTION", parser_class=_Parser)
    cert_commands.required = True
    cert_list = add(cert_commands, "list", cmd_cert_list, "list issued certificates", listing=True, paged="the first 100")
    cert_list.add_argument("--device", help="only this device's certificates (oldest first)")
    cert_list.add_argument("--status", choices=("valid", "revoked"), help="only certificates in this status")
    add(cert_commands, "show", cmd_cert_show, "show one certificate", listing=True).add_argument(
        "serial", help="serial number in hex"
    )
    revoke = add(cert_commands, "revoke", cmd_cert_revoke, "revoke a certificate")
    revoke.add_argument("serial", help="serial number in hex")
    revoke.add_argument(
        "--reason",
        default="unspecified",
        help="RFC 5280 reason: unspecified, keyCompromise, affiliationChanged, superseded, "
        "cessationOfOperation, certificateHold, privilegeWithdrawn",
    )
    device = commands.add_parser("device", help="register, inspect, set and remove devices")
    device_commands = device.add_subparsers(dest="device_command", metavar="ACTION", parser_class=_Parser)
    device_commands.required = True
    device_list = add(device_commands, "list", cmd_device_list, "list devices", listing=True, paged="the first 100")
    device_list.add_argument("--kind", choices=("windows", "omadm"), help="only devices of this kind")
    device_list.add_argument(
        "--status", choices=("enrolled", "unenrolled", "removed"), help="only devices in this status"
    )
    device_list.add_argument("--user", help="only devices this user enrolled")
    device_list.add_argument(
        "--contact-before", metavar="WHEN",
        help="only devices whose last contact was before WHEN (or never): a date, 2025-01-31 or "
        "2025-01-31T12:00:00Z, or an age, 7d, 12h, 30m",
    )
    device_list.add_argument(
        "--contact-after", metavar="WHEN", help="only devices in contact since WHEN (as --contact-before)"
    )
    add(
        device_commands, "show", cmd_device_show,
        "show a device: enrollment facts, certificate, DM account (secrets only as set or not), "
        "last contact",
        listing=True,
    ).add_argument("device", help="the DeviceID")
    add(
        device_commands, "remove", cmd_device_remove,
        "remove a device: its certificate is revoked and its DM sessions refused",
    ).add_argument("device", help="the DeviceID")

    device_add = add(
        device_commands, "add", cmd_device_add,
        "register a classic OMA DM device with its DM account; secrets not given are generated "
        "and shown once (or written to --secrets-file)",
        listing=True,
    )
    device_add.add_argument("device", help="the DeviceID (./DevInfo/DevId, e.g. IMEI:490154203237518)")
    device_add.add_argument(
        "--kind", default="omadm", choices=("omadm", "windows"),
        help="omadm (Windows devices are made by their enrollment)",
    )
    _account_arguments(device_add, adding=True)
    bootstrap = add(
        device_commands, "bootstrap", cmd_device_bootstrap,
        "send a classic OMA DM device its DM account (OMA Client Provisioning over WAP push SMS), "
        "authenticated with a USERPIN (from stdin or --userpin-file) or the NETWPIN (its IMSI)",
        listing=True,
    )
    bootstrap.add_argument("device", help="the DeviceID")
    pins = bootstrap.add_mutually_exclusive_group()
    pins.add_argument("--netwpin", action="store_true", help="authenticate with the device's IMSI (NETWPIN)")
    pins.add_argument(
        "--userpin-file", help="read the USERPIN (4 to 16 digits) from the first line of this file"
    )
    device_set = add(device_commands, "set", cmd_device_set, "change a device's DM account and properties")
    device_set.add_argument("device", help="the DeviceID")
    _account_arguments(device_set, adding=False)

    device_import = add(
        device_commands, "import", cmd_device_import,
        "register classic OMA DM devices from a CSV file (header row of named columns, see the "
        "README): every row is checked first, every bad row reported, and nothing imported "
        "unless all are good",
    )
    device_import.add_argument("file", help="the CSV file")
    device_import.add_argument(
        "--secrets-file", metavar="PATH",
        help="write the completed rows, generated secrets included, to this new file (mode "
        "0600); needed when a row has no secret",
    )
    device_import.add_argument(
        "--dry-run", action="store_true", help="check every row and say what would be done; import nothing"
    )

    for verb_name, run, text in (
        ("wipe", _device_action("wipe", {"protected": "wipe-protected", "keep_provisioning": "wipe-keep-provisioning",
                                          "factory_reset": "factory-reset"}),
         "erase a device (Windows: RemoteWipe doWipe; classic: LAWMO Wipe); --yes is required"),
        ("lock", _device_action("lock", {"partial": "partial-lock"}),
         "lock a device's screen (Windows: RemoteLock, needs a PIN set; classic: LAWMO FullyLock)"),
        ("unlock", _device_action("unlock"), "unlock a classic OMA DM device (LAWMO UnLock; Windows has none)"),
        ("reboot", _device_action("reboot"), "reboot a Windows device (Reboot CSP RebootNow)"),
    ):
        sub = add(device_commands, verb_name, run, text, listing=True)
        sub.add_argument("device", help="the DeviceID")
        sub.add_argument("--push", action="store_true", help="wake the device now (else at its next check-in)")
        if verb_name == "wipe":
            sub.add_argument("--yes", action="store_true", help="confirm: the device is erased")
            kinds = sub.add_mutually_exclusive_group()
            kinds.add_argument("--protected", action="store_true",
                               help="Windows doWipeProtected: also cleans the drive (may leave some devices unable to boot)")
            kinds.add_argument("--keep-provisioning", action="store_true",
                               help="Windows doWipePersistProvisionedData: provisioning data is kept and applied again")
            kinds.add_argument("--factory-reset", action="store_true", help="classic devices: LAWMO FactoryReset")
        if verb_name == "lock":
            sub.add_argument("--partial", action="store_true", help="classic devices: LAWMO PartiallyLock")
    add(device_commands, "actions", cmd_device_actions, "list a device's actions and their outcome",
        listing=True).add_argument("device", help="the DeviceID")

    group = commands.add_parser("group", help="manage groups of devices (static or by rule)")
    group_commands = group.add_subparsers(dest="group_command", metavar="ACTION", parser_class=_Parser)
    group_commands.required = True
    add(group_commands, "list", cmd_group_list, "list groups: built-in (all, windows, omadm), static and rule groups",
        listing=True)
    group_show = add(group_commands, "show", cmd_group_show, "show a group and a page of its members", listing=True)
    group_show.add_argument("name")
    group_show.add_argument("--limit", type=int, default=100, help="members per page")
    group_show.add_argument("--after", help="the page after this DeviceID")
    group_add = add(
        group_commands, "add", cmd_group_add,
        "make a static group (with DEVICEs as members), add DEVICEs to one, or make a rule group (--rule)",
    )
    group_add.add_argument("name")
    group_add.add_argument("devices", nargs="*", metavar="DEVICE")
    group_add.add_argument("--rule", help='a rule over inventory facts, e.g. "DevDetail/SwV >= 10.0.22000"')
    group_add.add_argument("--description")
    group_remove = add(group_commands, "remove", cmd_group_remove, "remove DEVICEs from a static group, or the group itself")
    group_remove.add_argument("name")
    group_remove.add_argument("devices", nargs="*", metavar="DEVICE")

    profile = commands.add_parser("profile", help="manage profiles (SyncML commands devices are to have)")
    profile_commands = profile.add_subparsers(dest="profile_command", metavar="ACTION", parser_class=_Parser)
    profile_commands.required = True
    for verb_name, run, text in (
        ("add", cmd_profile_add, "add a profile from a file of SyncML command fragments (Replace, Add, Exec, Delete, Atomic)"),
        ("edit", cmd_profile_edit, "make a new version of a profile from a file: its devices converge on it"),
    ):
        sub = add(profile_commands, verb_name, run, text)
        sub.add_argument("name")
        sub.add_argument("file")
        sub.add_argument("--description")
    add(profile_commands, "list", cmd_profile_list, "list profiles with their groups and device counts", listing=True)
    show = add(profile_commands, "show", cmd_profile_show, "show a profile and its source", listing=True)
    show.add_argument("name")
    show.add_argument("--version", type=int, help="an older version")
    add(profile_commands, "remove", cmd_profile_remove, "remove a profile: devices undo it").add_argument("name")
    for verb_name, run, text in (
        ("assign", cmd_profile_assign, "assign a profile to a group (its devices get it at their next check-in)"),
        ("unassign", cmd_profile_unassign, "unassign a profile from a group (its devices undo it)"),
    ):
        sub = add(profile_commands, verb_name, run, text)
        sub.add_argument("name")
        sub.add_argument("--group", required=True)
        if verb_name == "assign":
            sub.add_argument("--push", action="store_true", help="also wake the group's devices now (in batches)")
    status = add(profile_commands, "status", cmd_profile_status, "a profile's devices and their state", listing=True)
    status.add_argument("name")
    status.add_argument("--state", choices=("pending", "sent", "verifying", "verified", "failed", "drifted", "removing", "retained"))
    status.add_argument("--limit", type=int, default=100)
    status.add_argument("--after", help="the page after this DeviceID (with --state)")
    report = add(commands, "report", cmd_report, "compliance: per profile, devices per state; devices not verified",
                 listing=True)
    report.add_argument("--device", help="one device's profiles")
    report.add_argument("--limit", type=int, default=100, help="devices not verified listed at most")

    cmd = add(
        commands,
        "cmd",
        cmd_queue_command,
        "queue an OMA DM command for one or more devices (sent at their next session)",
    )
    cmd.add_argument("devices", metavar="DEVICE[,DEVICE...]", help="DeviceID(s), comma-separated")
    verbs = cmd.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True
    for verb, help in (
        ("get", "read a node"),
        ("add", "create a node"),
        ("replace", "set a node's value"),
        ("delete", "delete a node and its subtree"),
        ("exec", "execute a node"),
    ):
        sub = verbs.add_parser(verb, help=help, description=help)
        sub.add_argument("uri", help="the node, e.g. ./Device/Vendor/MSFT/... (URL-encoded as needed)")
        if verb in ("add", "replace", "exec"):
            sub.add_argument("--data", help="the value")
            sub.add_argument(
                "--format", choices=("chr", "int", "bool", "b64", "xml", "node", "null", "float", "date", "time", "bin"),
                help="the value's format (Meta Format)",
            )
            sub.add_argument("--type", help="the value's MIME type (Meta Type)")
    for verb, help in (
        ("atomic", "queue an Atomic group (all or nothing) read from --file"),
        ("sequence", "queue a Sequence group (in order) read from --file"),
    ):
        sub = verbs.add_parser(verb, help=help, description=help)
        sub.add_argument(
            "--file", required=True,
            help='JSON list of commands, e.g. [{"verb": "Replace", "target": "./...", "data": "1", "format": "int"}]',
        )
    verbs.add_parser("cancel", help="withdraw a queued command before it is sent").add_argument(
        "seq", help="the command number (mdmctl queue DEVICE)"
    )
    add(
        commands, "queue", cmd_queue, "list a device's queued, sent and accepted (202) commands", listing=True,
        paged="all",
    ).add_argument("device", help="the DeviceID")
    results = add(
        commands, "results", cmd_results,
        "list a device's finished commands with their status codes and results", listing=True,
    )
    results.add_argument("device", help="the DeviceID")
    results.add_argument("--limit", type=int, default=0, metavar="N", help="only the last N commands (0: all)")
    results.add_argument("--state", choices=("done", "failed", "cancelled"), help="only commands in this state")
    _paged_arguments(results, None)

    push = add(
        commands, "push", cmd_push,
        "wake devices now (WNS for Windows devices with a channel, else OMA DM package #0 as WAP "
        "push SMS), or show pushes: 'push DEVICE...' or 'push status [DEVICE]'",
        listing=True,
    )
    push.usage = (
        "mdmctl push [--json] [--via auto|wns|sms|both] [--default-nonce] DEVICE [DEVICE ...]\n"
        "       mdmctl push status [--json] [--limit N] [DEVICE]"
    )
    push.add_argument(
        "targets", nargs="+", metavar="DEVICE",
        help="DeviceIDs to wake; or 'status', optionally followed by one DeviceID",
    )
    push.add_argument("--limit", type=int, default=50, metavar="N", help="push status: the latest N jobs (0: all)")
    push.add_argument(
        "--via", choices=("auto", "wns", "sms", "both"),
        help="how: WNS or else SMS (auto, the default), only WNS, only SMS, or both",
    )
    push.add_argument(
        "--state", choices=("queued", "submitted", "delivered", "answered", "failed", "expired"),
        help="push status: only jobs in this state",
    )
    push.add_argument("--kind", choices=("notification", "bootstrap"), help="push status: only jobs of this kind")
    push.add_argument(
        "--default-nonce", action="store_true",
        help="sign package #0 with the default nonce 0x00000000 (and store it as the device's server nonce): "
        "for a device whose server nonce is out of step, which refuses every push signed with ours",
    )
    _paged_arguments(push, None)

    store = commands.add_parser("store", help="look after the store")
    store_commands = store.add_subparsers(dest="store_command", metavar="ACTION", parser_class=_Parser)
    store_commands.required = True
    pack = add(
        store_commands, "pack", cmd_store_pack,
        "pack the store now, while the daemon serves (the embedded FileStorage; a ZEO or "
        "RelStorage store is packed by its server): waits until it is done",
        listing=True,
    )
    pack.add_argument(
        "--days", type=float, help="days of history to keep (default: [store] pack_keep_days)"
    )

    console = add(
        commands, "manhole", cmd_manhole,
        "open the daemon's manhole (a Python shell, telnet over its UNIX socket or loopback port)",
    )
    console.set_defaults(offline=True)
    console.add_argument("--address", help="unix:PATH or tcp:HOST:PORT instead of the configured one")
    manhole = add(
        commands, "manhole-password", cmd_manhole_password,
        "add a manhole login or change its password (password from stdin or --password-file); "
        "works without the daemon",
    )
    manhole.set_defaults(offline=True)
    manhole.add_argument("name", help="the login name")
    manhole.add_argument(
        "--file", help="the password file (default: [manhole] password_file of the configuration)"
    )
    manhole.add_argument("--password-file", help="read the password from the first line of this file")
    return parser


def main(argv: Sequence[str] | None = None, out: Any = None, err: Any = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.config:
            try:
                with open(args.config, "rb"):
                    pass
            except OSError as e:
                raise CommandError(f"cannot read {args.config}: {e.strerror}{_access_hint(e)}") from None
        try:
            config = mdmd_config.load(args.config)
        except mdmd_config.ConfigErrors as e:
            raise CommandError(f"{args.config}: " + "; ".join(e.errors)) from None
        args.stderr = err
        if getattr(args, "offline", False):
            args.handler(config, args, out)
        else:
            args.handler(AdminClient.from_config(config, args.retry_for), args, out)
        out.flush()
    except CommandError as e:
        for line in e.lines:
            print(_printable(line), file=err)
        print(f"mdmctl: {_printable(e)}", file=err)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (mdmctl ... | head): stop quietly, as a
        # program killed by SIGPIPE would, and keep the interpreter's last
        # flush of stdout from failing again.
        _silence(out)
        return EXIT_BROKEN_PIPE
    return 0


def _silence(out: Any) -> None:
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
