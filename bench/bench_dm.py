"""
DM check-in throughput and latency: emulated Windows devices against the real daemon.

What it does, all in one run on this machine:

1. starts the real daemon (``twistd mdmd``) as a subprocess and enrolls N
   emulated Windows devices (keys generated before timing);
2. for each of R rounds, queues C commands for every device through the
   admin API, then lets all N devices check in at once: package 1 →
   commands → statuses and results → final message, each device on its own
   TLS keep-alive connection with its client certificate (a closed loop:
   each device sends its next message as soon as it has the answer);
3. replays exactly the messages the devices sent against the bare baseline
   (``bench/baseline_dm_server.py``: twisted.web + lxml parse and
   re-serialize, same TLS options), with the same concurrency;
4. optionally (``--paced``) repeats the daemon check-ins with the devices
   spread over time at a fixed rate, to show latency below saturation.

It prints messages/s, sessions/s, p50/p99 latency per message, the CPU
time the daemon spent per message (and the ZEO server's, with ``--zeo``), the
daemon's peak RSS, and the ratio daemon/baseline of messages/s. The client
(this process) shares the machine's cores with the server: say so when
quoting the figures.

The store is the embedded FileStorage unless ``--zeo`` (a ZEO server started
for the run, on a FileStorage of its own), ``--postgresql`` (RelStorage on a
PostgreSQL cluster started for the run, fsync on) or ``--store URI`` says
otherwise; the CPU time of the store's server is then printed too.

    .venv/bin/python bench/bench_dm.py [--devices 100] [--rounds 5] [--commands 4] [--paced 200] [--zeo | --postgresql | --state-dir DIR]
A populated state directory (``bench/populate.py``) is used with
``--state-dir`` (kept afterwards; the devices enrolled on top).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import defer, reactor, task
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from mdmd import config as mdmd_config  # noqa: E402
from mdmd.admin.cli import AdminClient  # noqa: E402
from mdmd.store.db import describe  # noqa: E402
from mdmd.testing.daemon import DaemonProcess, script  # noqa: E402
from mdmd.testing.dmclient import DMClient, windows_dm_client, windows_post  # noqa: E402
from mdmd.testing.windows.device import WindowsDevice  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """
    The user and system CPU time a process (all its threads) has used.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_zeo(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    """
    A ZEO server on a FileStorage in C{directory}; the process and its store URI.
    """
    port = free_port()
    server = subprocess.Popen(
        [script("runzeo"), "-a", f"127.0.0.1:{port}", "-f", os.path.join(directory, "Data.fs")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"zeo://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the ZEO server did not start") from None
            time.sleep(0.05)


class PostgreSQL:
    """
    A private PostgreSQL cluster for the run (fsync on, as in production),
    listening on a UNIX socket in a temporary directory.
    """

    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not binaries:
            raise SystemExit("--postgresql needs the PostgreSQL server (Debian package postgresql)")
        self.bin = os.path.dirname(binaries[-1])
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.directory = tempfile.mkdtemp(prefix="mdmd-bench-pg-")
        os.chmod(self.directory, 0o755)
        if self.run_as:
            shutil.chown(self.directory, "postgres")
        self.data = os.path.join(self.directory, "data")

    def _run(self, *command: str) -> None:
        subprocess.run([*self.run_as, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> str:
        port = free_port()
        self._run(f"{self.bin}/initdb", "-D", self.data, "-A", "trust", "-U", "mdmd")
        self._run(
            f"{self.bin}/pg_ctl", "-D", self.data, "-w", "-l", os.path.join(self.directory, "log"),
            "-o", f"-k {self.directory} -p {port} -c listen_addresses=''", "start",
        )
        self._run(f"{self.bin}/createdb", "-h", self.directory, "-p", str(port), "-U", "mdmd", "mdmd")
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.pid = int(f.readline())
        return f"postgresql://mdmd@/mdmd?host={self.directory}&port={port}"

    def cpu_seconds(self) -> float:
        """
        The CPU time of the server's processes (the postmaster and its backends).
        """
        total = 0.0
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(entry) == self.pid or int(fields[1]) == self.pid:
                    total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        try:
            self._run(f"{self.bin}/pg_ctl", "-D", self.data, "-m", "fast", "stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def rsa_sign_rate() -> float:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    key = rsa.generate_private_key(65537, 2048)
    started = time.perf_counter()
    count = 0
    while time.perf_counter() - started < 1.0:
        key.sign(b"x" * 64, padding.PKCS1v15(), hashes.SHA256())
        count += 1
    return count / (time.perf_counter() - started)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        profile = ("--profile=" + args.cprofile, "--profiler=cprofile", "--savestats") if args.cprofile else ()
        self.zeo: subprocess.Popen[bytes] | None = None
        self.postgresql: PostgreSQL | None = None
        store = args.store
        if args.zeo:
            self.zeo_dir = tempfile.mkdtemp(prefix="mdmd-bench-zeo-")
            self.zeo, store = start_zeo(self.zeo_dir)
        elif args.postgresql:
            self.postgresql = PostgreSQL()
            store = self.postgresql.start()
        # every device from this one address, each with its enrollment's and its DM connection open
        config = "[https]\nmax_connections_per_source = 1000\n[dm]\ninventory =\n" + (
            f"[store]\nuri = {store}\n" if store else ""
        )
        # on a populated state directory (bench/populate.py), kept afterwards; else a fresh one
        self.daemon = DaemonProcess(
            state_dir=os.path.abspath(args.state_dir) if args.state_dir else "",
            config=config,
            twistd_args=profile,
        )
        self.devices: list[WindowsDevice] = []
        self.clients: list[DMClient] = []
        self.recorded: dict[int, list[tuple[bytes, str]]] = {}

    async def setup(self) -> None:
        await deferToThread(self.daemon.start)
        added = await deferToThread(self.daemon.mdmctl, "user", "add", "bench@example.com", stdin="bench-pw\n")
        assert added.returncode == 0 or "exists" in added.stderr, added.stderr  # (a populated store may have it)
        root = self.daemon.ca_certificate()
        keys = [rsa.generate_private_key(65537, 2048) for _ in range(self.args.devices)]
        url = self.daemon.discovery_url
        self.devices = [
            WindowsDevice(reactor, url, [root], user="bench@example.com", password="bench-pw", key=key)
            for key in keys
        ]
        semaphore = defer.DeferredSemaphore(20)
        await defer.gatherResults([semaphore.run(d.enroll) for d in self.devices])
        self.clients = [windows_dm_client(d, clock=reactor.seconds) for d in self.devices]
        self.admin = AdminClient.from_config(mdmd_config.load(self.daemon.config_path))

    def enqueue(self, round_number: int) -> None:
        ids = [d.device_id for d in self.devices]
        specs = [
            {"verb": "Replace", "target": f"./Vendor/MSFT/Policy/Config/Bench/Setting{round_number}_{i}", "data": str(i), "format": "int"}
            if i % 2 == 0
            else {"verb": "Get", "target": "./DevDetail/SwV"}
            for i in range(self.args.commands)
        ]
        for spec in specs:
            self.admin.request("POST", "/v1/commands", {"devices": ids, "command": spec})

    async def check_ins(self, record: bool, spread: float = 0.0) -> tuple[float, list[float], int, int]:
        latencies: list[float] = []
        messages = 0

        async def one(index: int) -> None:
            nonlocal messages
            if spread:
                await task.deferLater(reactor, spread * index / len(self.devices), lambda: None)
            device = self.devices[index]
            post = windows_post(device)
            if record:
                bodies = self.recorded.setdefault(index, [])

                async def recording(body: bytes, content_type: str, headers: dict[str, str]) -> Any:
                    bodies.append((body, content_type))
                    return await post(body, content_type, headers)

                log = await self.clients[index].session(recording)
            else:
                log = await self.clients[index].session(post)
            latencies.extend(log.latencies)
            messages += log.messages

        started = time.perf_counter()
        await defer.gatherResults([defer.ensureDeferred(one(i)) for i in range(len(self.devices))])
        return time.perf_counter() - started, latencies, messages, len(self.devices)

    async def baseline(self) -> tuple[float, list[float], int]:
        server = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "baseline_dm_server.py"), self.daemon.state_dir],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None  # a pipe, as asked
        try:
            port = int(server.stdout.readline())
            url = f"https://localhost:{port}/ManagementServer/MDM.svc"
            latencies: list[float] = []
            messages = 0

            async def replay(index: int) -> None:
                nonlocal messages
                device = self.devices[index]
                for body, content_type in self.recorded[index]:
                    started = reactor.seconds()
                    reply = await device.request("POST", url, body, content_type=content_type, client_certificate=True)
                    assert reply.code == 200, reply.code
                    latencies.append(reactor.seconds() - started)
                    messages += 1

            # warm-up: open each device's TLS connection, as the daemon's warm-up round did
            await defer.gatherResults([defer.ensureDeferred(replay(i)) for i in self.recorded])
            latencies.clear()
            messages = 0
            elapsed = 0.0
            for _ in range(self.args.rounds):
                started = time.perf_counter()
                await defer.gatherResults([defer.ensureDeferred(replay(i)) for i in self.recorded])
                elapsed += time.perf_counter() - started
            return elapsed, latencies, messages
        finally:
            server.terminate()
            server.wait()

    async def run(self) -> None:
        args = self.args
        print(f"rsa-2048 sign rate on this machine: {rsa_sign_rate():.0f}/s (one core); "
              f"load average {os.getloadavg()[0]:.2f}")
        print(f"setting up: daemon + {args.devices} enrolled devices ...", flush=True)
        await self.setup()
        # a warm-up session per device (TLS connections opened, caches filled)
        await self.check_ins(record=False)
        total_elapsed, all_latencies, total_messages, sessions, daemon_cpu = 0.0, [], 0, 0, 0.0
        cpu_start = cpu_seconds(self.daemon.pid)
        server_before = self.server_cpu()
        size_before = self.store_size()
        profiler = None
        if args.profile:
            profiler = subprocess.Popen(
                [script("py-spy"), "record", "--nonblocking", "--gil", "--format", "raw", "--rate", "250", "-o", args.profile,
                 "-p", str(self.daemon.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            await task.deferLater(reactor, 1.0, lambda: None)
        for round_number in range(args.rounds):
            await deferToThread(self.enqueue, round_number)
            cpu_before = cpu_seconds(self.daemon.pid)
            elapsed, latencies, messages, count = await self.check_ins(record=round_number == 0)
            daemon_cpu += cpu_seconds(self.daemon.pid) - cpu_before
            total_elapsed += elapsed
            all_latencies += latencies
            total_messages += messages
            sessions += count
        if profiler is not None:
            profiler.send_signal(2)
            profiler.wait()
            print(f"daemon profile (py-spy, collapsed stacks): {args.profile}")
        cpu = cpu_seconds(self.daemon.pid) - cpu_start
        server_cpu = self.server_cpu() - server_before
        growth = self.store_size() - size_before
        rss = peak_rss_kib(self.daemon.pid)
        daemon_rate = total_messages / total_elapsed
        print(
            f"daemon:   {args.devices} concurrent devices, {args.rounds} rounds, {args.commands} commands per check-in"
        )
        print(
            f"          {total_messages} messages in {total_elapsed:.2f}s: {daemon_rate:.0f} messages/s, "
            f"{sessions / total_elapsed:.0f} sessions/s, p50 {percentile(all_latencies, 50) * 1000:.1f} ms, "
            f"p99 {percentile(all_latencies, 99) * 1000:.1f} ms, peak RSS {rss / 1024:.0f} MiB"
        )
        print(
            f"          store {describe(self.daemon_store())}: daemon CPU {cpu / total_messages * 1000:.2f} ms per message "
            f"({daemon_cpu / total_elapsed * 100:.0f}% of a core while checking in)"
            + (
                f", its server's CPU {server_cpu / total_messages * 1000:.2f} ms per message"
                if self.zeo is not None or self.postgresql is not None
                else ""
            )
            + (f"; Data.fs grew {growth / total_messages / 1024:.1f} KiB per message" if growth else "")
        )
        elapsed, latencies, messages = await self.baseline()
        baseline_rate = messages / elapsed
        print(
            f"baseline: {messages} messages in {elapsed:.2f}s: {baseline_rate:.0f} messages/s, "
            f"p50 {percentile(latencies, 50) * 1000:.1f} ms, p99 {percentile(latencies, 99) * 1000:.1f} ms"
        )
        print(f"ratio daemon/baseline (messages/s): {daemon_rate / baseline_rate:.2f}")
        if args.paced:
            await deferToThread(self.enqueue, args.rounds)
            spread = args.devices / args.paced
            elapsed, latencies, messages, count = await self.check_ins(record=False, spread=spread)
            print(
                f"paced:    {count} check-ins started at {args.paced}/s over {spread:.1f}s: "
                f"{messages} messages, p50 {percentile(latencies, 50) * 1000:.1f} ms, "
                f"p99 {percentile(latencies, 99) * 1000:.1f} ms"
            )
        for device in self.devices:
            await device.close()

    def server_cpu(self) -> float:
        """
        The CPU time of the store's server (ZEO, PostgreSQL), if there is one.
        """
        if self.zeo is not None:
            return cpu_seconds(self.zeo.pid)
        if self.postgresql is not None:
            return self.postgresql.cpu_seconds()
        return 0.0

    def store_size(self) -> int:
        """
        The size of the daemon's FileStorage (0 for another store).
        """
        path = os.path.join(self.daemon.state_dir, "Data.fs")
        return os.path.getsize(path) if os.path.exists(path) else 0

    def daemon_store(self) -> str:
        return mdmd_config.load(self.daemon.config_path).store_uri

    def cleanup(self) -> None:
        if self.args.state_dir:
            self.daemon.stop()
        else:
            self.daemon.cleanup()
        if self.zeo is not None:
            self.zeo.terminate()
            self.zeo.wait()
            shutil.rmtree(self.zeo_dir, ignore_errors=True)
        if self.postgresql is not None:
            self.postgresql.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commands", type=int, default=4)
    parser.add_argument("--paced", type=float, default=0.0, help="also start check-ins at this rate per second")
    parser.add_argument("--profile", help="record the daemon with py-spy during the rounds (collapsed stacks)")
    parser.add_argument("--cprofile", help="run the daemon under cProfile and save its stats here (reactor thread only)")
    stores = parser.add_mutually_exclusive_group()
    stores.add_argument("--zeo", action="store_true", help="the store on a ZEO server started for the run")
    stores.add_argument(
        "--postgresql", action="store_true", help="the store in RelStorage on a PostgreSQL cluster started for the run"
    )
    stores.add_argument("--store", default="", help="the daemon's [store] uri (default: its FileStorage)")
    stores.add_argument(
        "--state-dir", help="run on this populated state directory (bench/populate.py), the devices enrolled on top; kept"
    )
    args = parser.parse_args()
    bench = Bench(args)
    failed = False

    async def go() -> None:
        nonlocal failed
        try:
            await bench.run()
        except Exception:
            Failure().printTraceback()
            failed = True
        finally:
            bench.cleanup()

    d = defer.ensureDeferred(go())
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
