"""
End-to-end abuse: the real daemon (twistd mdmd) over real TLS, against
password guessers, slow and oversized requests and connection floods, while
a legitimate device keeps checking in.

Clients that must look like other machines connect from other loopback
addresses (127.0.0.2, …): the limits count per source address.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from mdmd.testing.daemon import DaemonProcess
from mdmd.testing.dmclient import DMClient, windows_dm_client, windows_post
from mdmd.testing.windows.device import WindowsDevice
from mdmd.testing.windows.soap import get_policies_message, username_security

SOAP = "application/soap+xml; charset=utf-8"
VICTIM, VICTIM_PASSWORD = "victim@example.com", "the-right-one"
DEVICE_USER, DEVICE_PASSWORD = "dev@example.com", "dev-password"
#: the guessers' address, not the device's
GUESSERS = "127.0.0.2"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def tls_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


@dataclass
class Guessers:
    """
    C{count} clients guessing one user's password with GetPolicies, each on
    its own keep-alive TLS connection from C{source}, each sending its next
    guess once it has the answer to the last. They guess while C{go} is set.

    Every answer is recorded as (time it came, kind): C{checked} (the
    password was checked and is wrong: s:Authentication), C{refused} (not
    checked: too many failures), C{busy}, or C{other}.
    """

    port: int
    context: ssl.SSLContext
    count: int = 8
    source: str = GUESSERS
    go: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[tuple[float, str]] = field(default_factory=list)
    in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for number in range(self.count):
            thread = threading.Thread(target=self._guess, args=(number,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        self.go.set()
        for thread in self._threads:
            thread.join(30)

    def idle(self) -> bool:
        with self._lock:
            return self.in_flight == 0

    def kinds(self, since: float = 0.0) -> dict[str, int]:
        counts: dict[str, int] = {}
        for moment, kind in list(self.answers):
            if moment >= since:
                counts[kind] = counts.get(kind, 0) + 1
        return counts

    def connect(self) -> http.client.HTTPSConnection:
        """
        A keep-alive connection, its TLS handshake done (the discovery probe).
        """
        connection = http.client.HTTPSConnection(
            "localhost", self.port, context=self.context, timeout=30, source_address=(self.source, 0)
        )
        connection.request("GET", "/EnrollmentServer/Discovery.svc")
        connection.getresponse().read()
        return connection

    def _guess(self, number: int) -> None:
        url = f"https://localhost:{self.port}/EnrollmentServer/Policy.svc"
        connection: http.client.HTTPSConnection | None = self.connect()
        attempt = 0
        while True:
            self.go.wait()
            if self.stop.is_set():
                break
            attempt += 1
            body = get_policies_message(url, username_security(VICTIM, f"guess-{number}-{attempt}"))
            with self._lock:
                self.in_flight += 1
            try:
                if connection is None:
                    connection = self.connect()
                connection.request("POST", "/EnrollmentServer/Policy.svc", body, {"Content-Type": SOAP})
                response = connection.getresponse()
                answer = response.read()
                kind = (
                    "refused" if b"too many failed password checks" in answer
                    else "checked" if b"wrong password" in answer
                    else "busy" if response.status == 503
                    else f"other {response.status}"
                )
            except (OSError, http.client.HTTPException):
                kind = "error"
                if connection is not None:
                    connection.close()
                connection = None
            finally:
                with self._lock:
                    self.in_flight -= 1
            self.answers.append((time.monotonic(), kind))
        if connection is not None:
            connection.close()


def get_policies(port: int, context: ssl.SSLContext, password: str) -> tuple[int, bytes]:
    """
    One GetPolicies for the victim from 127.0.0.1: (status, body).
    """
    url = f"https://localhost:{port}/EnrollmentServer/Policy.svc"
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=60)
    try:
        connection.request(
            "POST", "/EnrollmentServer/Policy.svc", get_policies_message(url, username_security(VICTIM, password)),
            {"Content-Type": SOAP},
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


async def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await deferToThread(time.sleep, step)
    return condition()


class GuessingTests(TestCase):
    timeout = 300

    LOCKOUT = 10.0
    ROUNDS = 8
    SESSIONS = 25
    #: measurements of the check-ins' latency made at most (see the test's docstring)
    ATTEMPTS = 3

    def setUp(self) -> None:
        self.daemon = DaemonProcess(
            config=f"""
                [dm]
                inventory_windows =
                [limits]
                password_failures_per_user = 3
                password_failures_per_source = 1000
                password_max_delay = 1
                password_lockout = {self.LOCKOUT:.0f}
            """
        )
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()

    async def check_ins(self, client: DMClient, post: Any, count: int) -> list[float]:
        """
        C{count} DM sessions one after the other: their messages' latencies.
        """
        latencies: list[float] = []
        for _ in range(count):
            log = await client.session(post)
            latencies.extend(log.latencies)
        return latencies

    async def measure(self, client: DMClient, post: Any, guessers: Guessers) -> tuple[list[float], list[float]]:
        """
        ROUNDS rounds of SESSIONS check-ins without, then with the guessers:
        the idle and the attacked latencies.
        """
        idle: list[float] = []
        attacked: list[float] = []
        for _ in range(self.ROUNDS):
            guessers.go.clear()
            self.assertTrue(await wait_until(guessers.idle, 5.0))
            idle += await self.check_ins(client, post, self.SESSIONS)
            guessers.go.set()
            await deferToThread(time.sleep, 0.05)
            attacked += await self.check_ins(client, post, self.SESSIONS)
        return idle, attacked

    def lockout_lines(self) -> list[str]:
        return [line for line in self.daemon.log().splitlines() if re.search(rf"user {re.escape(VICTIM)} locked out", line)]

    async def test_guessing_throttled_check_ins_unaffected(self) -> None:
        """
        Eight clients guess one user's password as fast as they are answered.
        They are throttled: a few guesses are checked, then every answer waits
        and the user is locked out (one log line per lockout, not one per
        guess); during the lockout the right password is refused too, after
        it, it works. Meanwhile a legitimate device's DM check-ins keep their
        latency: median and p99 within 25 % of the same device's idle ones.

        The latencies are compared on a shared 2-core machine whose load from
        other work comes and goes (a load average of 8 while this was
        written), so the idle and attacked samples are taken in interleaved
        phases (ROUNDS rounds of SESSIONS check-ins without, then with the
        guessers), each idle phase starting once the guessers' requests in
        flight have ended: outside load falls on both kinds alike. Each kind
        gets ROUNDS × SESSIONS message latencies, so that p99 is not the one
        worst sample; the bound is the issue's 25 % plus 2 ms (a scheduling
        slice on a loaded VM, so that a 3 ms median may not fail on one late
        wake-up). Even so, one burst of outside load in one phase can move a
        p99 by tens of milliseconds; so the measurement is made up to
        ATTEMPTS times, the guessers going on throughout, and one must hold:
        guessing that really slowed check-ins would fail every one. The
        guessers connect (TLS handshake) before the first measurement, as a
        device would already be connected. The figures are in docs/performance.md.
        """
        port = self.daemon.https_port
        context = tls_context(self.daemon.ca_cert_path)
        for user, password in ((VICTIM, VICTIM_PASSWORD), (DEVICE_USER, DEVICE_PASSWORD)):
            added = await deferToThread(self.daemon.mdmctl, "user", "add", user, stdin=password + "\n")
            self.assertEqual(added.returncode, 0, added.stderr)
        device = WindowsDevice(
            reactor, self.daemon.discovery_url, [self.daemon.ca_certificate()], user=DEVICE_USER, password=DEVICE_PASSWORD
        )
        self.addCleanup(device.close)
        await device.enroll()
        client = windows_dm_client(device, clock=reactor.seconds)
        post = windows_post(device)
        await self.check_ins(client, post, 20)  # warm: TLS session, caches

        guessers = Guessers(port, context)
        await deferToThread(guessers.start)
        self.addCleanup(guessers.finish)
        attack_started = time.monotonic()
        measurements: list[dict[str, Any]] = []
        during_lockout: tuple[int, bytes] | None = None
        for _ in range(self.ATTEMPTS):
            idle, attacked = await self.measure(client, post, guessers)
            if during_lockout is None and self.lockout_lines():
                during_lockout = await deferToThread(get_policies, port, context, VICTIM_PASSWORD)
            figures = {
                "samples": (len(idle), len(attacked)),
                "median ms": (round(statistics.median(idle) * 1000, 2), round(statistics.median(attacked) * 1000, 2)),
                "p99 ms": (round(percentile(idle, 99) * 1000, 2), round(percentile(attacked, 99) * 1000, 2)),
            }
            measurements.append(figures)
            if statistics.median(attacked) <= 1.25 * statistics.median(idle) + 0.002 and percentile(
                attacked, 99
            ) <= 1.25 * percentile(idle, 99) + 0.002:
                break
        else:
            self.fail(f"check-ins slowed down by the guessing in every measurement (idle, attacked): {measurements}")
        guessers.finish()
        attack_time = time.monotonic() - attack_started
        self.assertGreaterEqual(min(measurements[-1]["samples"]), self.ROUNDS * self.SESSIONS)

        # throttled: few guesses checked, many refused unchecked, a lockout logged once each time
        kinds = guessers.kinds()
        lockouts = self.lockout_lines()
        print(f"\nguessing: {kinds}, {len(lockouts)} lockouts in {attack_time:.1f} s; check-ins (idle, attacked): {measurements}")
        self.assertGreaterEqual(len(lockouts), 1, kinds)
        self.assertLessEqual(len(lockouts), 1 + int(attack_time // self.LOCKOUT), lockouts)
        # per lockout: 3 free failures, one that waits 1 s, one that locks out
        self.assertLessEqual(kinds.get("checked", 0), (len(lockouts) + 1) * 5, kinds)
        self.assertGreater(kinds.get("refused", 0), 4 * len(lockouts), kinds)
        self.assertEqual(set(kinds) - {"checked", "refused"}, set(), kinds)

        # refused during the lockout even with the right password; works once it has expired
        assert during_lockout is not None
        self.assertIn(b"too many failed password checks", during_lockout[1])
        last_checked = max((moment for moment, kind in guessers.answers if kind == "checked"), default=attack_started)
        await deferToThread(time.sleep, max(0.0, last_checked + self.LOCKOUT + 1.0 - time.monotonic()))
        status, body = await deferToThread(get_policies, port, context, VICTIM_PASSWORD)
        self.assertEqual(status, 200, body[:400])
        self.assertIn(b"GetPoliciesResponse", body)


def _tls(port: int, context: ssl.SSLContext, source: str) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    try:
        return context.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def _answer(connection: socket.socket) -> tuple[bytes, float]:
    """
    What the server sends until it closes the connection, and when that happened (monotonic).
    """
    chunks = []
    while True:
        try:
            chunk = connection.recv(65536)
        except (ConnectionResetError, ssl.SSLError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks), time.monotonic()


def _drip(connection: ssl.SSLSocket, head: bytes, interval: float) -> tuple[bytes, float, float]:
    """
    Send C{head} then one more header byte every C{interval} s until the
    server answers or closes: (its answer, when the drip started, when it ended).
    """
    started = time.monotonic()
    connection.sendall(head)
    connection.settimeout(interval)
    answer = b""
    while True:
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            try:
                connection.sendall(b"x")
            except OSError:
                break
            continue
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        answer += chunk
    return answer, started, time.monotonic()


class SlowAndOversizedTests(TestCase):
    """
    One daemon with short request timeouts and small connection caps.
    """

    timeout = 180
    HEADER_TIMEOUT = 2.0
    BODY_TIMEOUT = 3.0
    PER_SOURCE = 8
    TOTAL = 40
    #: what a refusal may take beyond its timeout on a loaded machine
    SLACK = 1.5

    def setUp(self) -> None:
        self.daemon = DaemonProcess(
            config=f"""
                [https]
                header_timeout = {self.HEADER_TIMEOUT:.0f}
                body_timeout = {self.BODY_TIMEOUT:.0f}
                max_connections = {self.TOTAL}
                max_connections_per_source = {self.PER_SOURCE}
            """
        )
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()
        self.port = self.daemon.https_port
        self.context = tls_context(self.daemon.ca_cert_path)

    def connect(self, source: str = "127.0.0.1") -> Any:
        return deferToThread(_tls, self.port, self.context, source)

    async def served(self, source: str = "127.0.0.1") -> int:
        """
        The status of a GET of the CA certificate from C{source}.
        """

        def fetch() -> int:
            connection = http.client.HTTPSConnection(
                "localhost", self.port, context=self.context, timeout=30, source_address=(source, 0)
            )
            try:
                connection.request("GET", "/pki/ca.crt")
                return connection.getresponse().status
            finally:
                connection.close()

        return await deferToThread(fetch)

    async def test_oversized_heads_answered_at_once(self) -> None:
        """
        A 20 KB request line is answered 414 and a 100 KB header 431, at once,
        and the connection closed (both were held unanswered for 60 s).
        """
        for head, status in (
            (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n", b"414"),
            (b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n", b"431"),
        ):
            connection = await self.connect()
            self.addCleanup(connection.close)
            started = time.monotonic()
            await deferToThread(connection.sendall, head)
            answer, ended = await deferToThread(_answer, connection)
            print(f"\n{status.decode()} answered and closed in {(ended - started) * 1000:.1f} ms")
            self.assertTrue(answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:80])
            self.assertLess(ended - started, self.SLACK)

    async def test_slow_requests_cut_off(self) -> None:
        """
        Headers dripped a byte every 0.3 s (each byte would reset an idle
        timeout) get 408 and are closed header_timeout after the request
        began; a body dripped after its headers, body_timeout after them.
        """
        connection = await self.connect()
        self.addCleanup(connection.close)
        answer, started, ended = await deferToThread(
            _drip, connection, b"POST /EnrollmentServer/Discovery.svc HTTP/1.1\r\nHost: localhost\r\nX-Slow: ", 0.3
        )
        print(f"\nheader drip: 408 and closed after {ended - started:.2f} s")
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer[:80])
        self.assertLess(ended - started, self.HEADER_TIMEOUT + self.SLACK)
        self.assertGreater(ended - started, self.HEADER_TIMEOUT - 0.5)
        connection = await self.connect()
        self.addCleanup(connection.close)
        head = b"POST /EnrollmentServer/Discovery.svc HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n"
        answer, started, ended = await deferToThread(_drip, connection, head, 0.3)
        print(f"\nbody drip: 408 and closed after {ended - started:.2f} s")
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer[:80])
        self.assertLess(ended - started, self.BODY_TIMEOUT + self.SLACK)

    async def test_connection_caps(self) -> None:
        """
        A source gets PER_SOURCE connections: the next is closed before its
        TLS handshake, while other sources are served; four sources' worth of
        slow clients (32 connections sending nothing) do not keep a device
        from being served, and all of them are closed within the header
        timeout, after which their sources connect again.
        """
        sources = [f"127.0.0.{n}" for n in range(10, 14)]
        held = []
        for source in sources:
            for _ in range(self.PER_SOURCE):
                held.append(await self.connect(source))
        started = time.monotonic()
        for connection in held:
            self.addCleanup(connection.close)
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            extra = await self.connect(sources[0])
            self.addCleanup(extra.close)
        self.assertEqual(await self.served("127.0.0.1"), 200)
        closed = await deferToThread(lambda: [_answer(c) for c in held])
        self.assertEqual({answer for answer, _ in closed}, {b""})  # nothing was asked: nothing answered
        print(f"\n{len(held)} silent connections closed after {min(w for _, w in closed) - started:.2f}–{max(w for _, w in closed) - started:.2f} s")
        self.assertLess(max(when for _, when in closed) - started, self.HEADER_TIMEOUT + self.SLACK)
        # the slow clients keep their sockets: theirs are aborted `linger` (2 s) after being closed
        deadline = started + self.HEADER_TIMEOUT + 2.0 + self.SLACK
        while True:
            try:
                self.assertEqual(await self.served(sources[0]), 200)
                break
            except (ssl.SSLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise
                await deferToThread(time.sleep, 0.1)
        print(f"their source served again {time.monotonic() - started:.2f} s after they connected")
        self.assertLess(time.monotonic() - started, self.HEADER_TIMEOUT + 2.0 + self.SLACK)
        self.assertEqual(self.daemon.log().count("the most one source may: refusing more"), 1)
