"""
What a stranger can make the daemon spend: expensive requests before
authentication, oversized request heads, and password guessing while a
legitimate device checks in.

What it does, in one run against the real daemon (``twistd mdmd``, defaults
but ``[dm] inventory_windows`` empty):

1. sends, one at a time, a 1 MiB multipart body of 17,000 parts, a Discover
   of 100,000 sibling elements, a Discover with RequestVersion ``1e-999999``
   and one with a 900 KB MessageID, and prints each answer's status, size
   and time;
2. sends a 20 KB request line and a 100 KB header line on raw TLS
   connections and prints what came back and when the connection closed;
3. enrolls an emulated Windows device, lets it check in every 20 ms for
   ``--idle`` seconds, then for ``--attack`` seconds while 8 clients (from
   127.0.0.2, on keep-alive TLS connections) send GetPolicies with a new
   wrong password for one user as soon as they have the previous answer;
   prints the passwords checked and refused, the daemon's RSS, and the
   check-ins' median and p99 latency idle and attacked.

It imports the daemon of the tree it lies in. To measure another checkout
(one without the limits, say), run a copy of it from outside any tree with
that checkout first on the path: ``cp bench/bench_abuse.py /tmp/ &&
PYTHONPATH=/path/to/other /path/to/other/.venv/bin/python /tmp/bench_abuse.py``.
The client shares the machine's cores with the daemon: say so when quoting
the figures.

    .venv/bin/python bench/bench_abuse.py [--idle 10] [--attack 30]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import ssl
import statistics
import sys
import threading
import time
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from mdmd.testing.daemon import DaemonProcess  # noqa: E402
from mdmd.testing.dmclient import DMClient, Post, windows_dm_client, windows_post  # noqa: E402
from mdmd.testing.windows.device import WindowsDevice  # noqa: E402
from mdmd.testing.windows.soap import discover_message, get_policies_message, username_security  # noqa: E402

SOAP = "application/soap+xml; charset=utf-8"
VICTIM, VICTIM_PASSWORD = "victim@example.com", "right-password"
DEVICE_USER, DEVICE_PASSWORD = "dev@example.com", "dev-password"


def memory_mib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    return 0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def post(port: int, context: ssl.SSLContext, path: str, body: bytes, content_type: str) -> str:
    connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=120)
    started = time.perf_counter()
    try:
        connection.request("POST", path, body, {"Content-Type": content_type})
        response = connection.getresponse()
        answer = response.read()
        return f"{response.status}, {len(answer)} bytes, {(time.perf_counter() - started) * 1000:.0f} ms"
    except (OSError, http.client.HTTPException) as e:
        return f"{type(e).__name__} after {(time.perf_counter() - started) * 1000:.0f} ms"
    finally:
        connection.close()


def raw(port: int, context: ssl.SSLContext, data: bytes) -> str:
    connection = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=120), server_hostname="localhost")
    started = time.perf_counter()
    try:
        connection.sendall(data)
    except OSError:
        pass
    answer = b""
    while True:
        try:
            chunk = connection.recv(65536)
        except (OSError, ssl.SSLError):
            break
        if not chunk:
            break
        answer += chunk
    connection.close()
    first = answer.split(b"\r\n", 1)[0].decode("latin-1") or "nothing"
    return f"{first}, closed after {(time.perf_counter() - started) * 1000:.1f} ms"


def guess(port: int, context: ssl.SSLContext, number: int, stop: threading.Event, answers: list[str]) -> None:
    url = f"https://localhost:{port}/EnrollmentServer/Policy.svc"

    def connect() -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("localhost", port, context=context, timeout=60, source_address=("127.0.0.2", 0))

    connection = connect()
    attempt = 0
    while not stop.is_set():
        attempt += 1
        body = get_policies_message(url, username_security(VICTIM, f"guess-{number}-{attempt}"))
        try:
            connection.request("POST", "/EnrollmentServer/Policy.svc", body, {"Content-Type": SOAP})
            response = connection.getresponse()
            answer = response.read()
            kind = "refused" if b"too many" in answer else "checked" if b"wrong password" in answer else f"HTTP {response.status}"
        except (OSError, http.client.HTTPException):
            kind = "error"
            connection.close()
            connection = connect()
        answers.append(kind)
    connection.close()


async def check_ins(client: DMClient, send: Post, seconds: float) -> list[float]:
    latencies: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        log = await client.session(send)
        latencies += log.latencies
        await task.deferLater(reactor, 0.02, lambda: None)
    return latencies


def describe(latencies: list[float]) -> str:
    return f"n={len(latencies)} median {statistics.median(latencies) * 1000:.1f} ms, p99 {percentile(latencies, 99) * 1000:.1f} ms"


async def run(args: argparse.Namespace) -> None:
    daemon = DaemonProcess(config="[dm]\ninventory_windows =\n")
    await deferToThread(daemon.start)
    try:
        port = daemon.https_port
        context = ssl.create_default_context(cafile=daemon.ca_cert_path)
        discovery = f"https://localhost:{port}/EnrollmentServer/Discovery.svc"
        part = b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n"
        requests: list[tuple[str, bytes, str]] = [
            ("multipart, 1 MiB of 17,000 parts", (part * 17_000)[: 1 << 20] + b"--x--\r\n", "multipart/form-data; boundary=x"),
            ("Discover, 100,000 siblings", discover_message(discovery, "x").replace(b"<EmailAddress>", b"<x/>" * 100_000 + b"<EmailAddress>"), SOAP),
            ("Discover, RequestVersion 1e-999999", discover_message(discovery, "x", request_version="1e-999999"), SOAP),
            ("Discover, 900 KB MessageID", discover_message(discovery, "x", message_id="urn:" + "m" * 900_000), SOAP),
        ]
        for name, body, content_type in requests:
            print(f"{name}: {await deferToThread(post, port, context, '/EnrollmentServer/Discovery.svc', body, content_type)}")
        line = b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n"
        print(f"20 KB request line: {await deferToThread(raw, port, context, line)}")
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n"
        print(f"100 KB header line: {await deferToThread(raw, port, context, head)}", flush=True)

        for user, password in ((VICTIM, VICTIM_PASSWORD), (DEVICE_USER, DEVICE_PASSWORD)):
            added = await deferToThread(daemon.mdmctl, "user", "add", user, stdin=password + "\n")
            assert added.returncode == 0, added.stderr
        device = WindowsDevice(reactor, daemon.discovery_url, [daemon.ca_certificate()], user=DEVICE_USER, password=DEVICE_PASSWORD)
        await device.enroll()
        client = windows_dm_client(device, clock=reactor.seconds)
        send = windows_post(device)
        await check_ins(client, send, 2.0)
        idle = await check_ins(client, send, args.idle)
        before = memory_mib(daemon.pid, "VmRSS")
        stop = threading.Event()
        answers: list[str] = []
        guessers = [threading.Thread(target=guess, args=(port, context, n, stop, answers), daemon=True) for n in range(8)]
        started = time.monotonic()
        for thread in guessers:
            thread.start()
        attacked = await check_ins(client, send, args.attack)
        stop.set()
        elapsed = time.monotonic() - started
        kinds: dict[str, int] = {}
        for kind in answers:
            kinds[kind] = kinds.get(kind, 0) + 1
        print(f"guessing for {elapsed:.0f} s: {kinds}; {kinds.get('checked', 0) / elapsed:.2f} passwords checked/s")
        print(f"daemon RSS before the guessing {before} MiB, peak {memory_mib(daemon.pid, 'VmHWM')} MiB")
        print(f"check-ins idle: {describe(idle)}; guessed at: {describe(attacked)}")
        for thread in guessers:
            thread.join(60)
        await device.close()
    finally:
        await deferToThread(daemon.cleanup)


def main() -> None:
    parser = argparse.ArgumentParser(description="What a stranger can make the daemon spend.")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of check-ins without guessing")
    parser.add_argument("--attack", type=float, default=30.0, help="seconds of check-ins with 8 guessers")
    args = parser.parse_args()
    task.react(lambda _: Deferred.fromCoroutine(run(args)))


if __name__ == "__main__":
    main()
