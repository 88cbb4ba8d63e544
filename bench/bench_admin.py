"""
The operator's surfaces at fleet size: status, the first page of the device
list, a whole listing, and what they cost the check-ins running meanwhile.

What it does, in one run on this machine:

1. makes a store of N devices through mdmd's own units of work (each
   enrolled with a certificate, with six answered and two queued commands:
   ``mdmd.testing.fleet``), unless ``--store`` names one already made (by
   ``bench/populate.py``, or by an earlier ``--keep`` run);
2. strips the counters and indexes from it and times the store upgrade that
   rebuilds them (what an older store goes through on its first start);
3. starts the real daemon on it and times ``GET /v1/status`` and the first
   page of ``GET /v1/devices`` (medians of warm calls), the same through
   ``mdmctl`` (whole commands, Python's start-up included, beside the
   start-up alone), and ``mdmctl device list --all --jsonl``;
4. enrolls a few emulated Windows devices and runs their check-ins (each
   device again ``--pause`` seconds after its last session, a load below
   saturation), first with nothing else going on, then while ``mdmctl
   device list --all`` pages through the fleet, and compares the p99
   latency per message (the target: within 25 % of the idle p99).

    .venv/bin/python bench/bench_admin.py --devices 100000 [--store PATH] [--keep]

It prints what it measured; the 1M figures in docs/performance.md come from it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import defer, reactor, task
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from mdmd import config as mdmd_config  # noqa: E402
from mdmd.admin.cli import AdminClient  # noqa: E402
from mdmd.migrations import SCHEMA  # noqa: E402
from mdmd.store.db import open_db  # noqa: E402
from mdmd.store.migration import upgrade  # noqa: E402
from mdmd.store.runner import Store  # noqa: E402
from mdmd.testing import fleet  # noqa: E402
from mdmd.testing.daemon import DaemonProcess, script  # noqa: E402
from mdmd.testing.dmclient import windows_dm_client, windows_post  # noqa: E402
from mdmd.testing.windows.device import WindowsDevice  # noqa: E402

#: Devices made per transaction while populating.
BATCH = 500
RESULT = ({"source": "./DevDetail/SwV", "data": "10.0.22631.2861", "format": "chr"},)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def populate(path: str, devices: int) -> None:
    """
    N devices in the FileStorage at C{path}, each as an enrollment and eight commands leave it.
    """
    store = Store(open_db(f"file://{path}", 1, 20000))
    store.initialize()
    upgrade(store, SCHEMA)
    ca = fleet.FleetCA()
    have = store.read(lambda root: len(root["devices"]))
    started = time.perf_counter()

    def batch(root: Any, first: int, count: int) -> None:
        for n in range(first, first + count):
            device_id = f"{{{n:08X}-BE4C-4B0A-9C2D-000000000000}}"
            fleet.enroll(root, ca, device_id, 1000.0 + n)
            for c in range(8):
                seq = fleet.queue_get(root, device_id, 2000.0 + n, f"./DevDetail/Item{c}")
                if c < 6:
                    fleet.send_and_answer(root, device_id, seq, 3000.0 + n, results=RESULT)

    for first in range(have, devices, BATCH):
        store.run(batch, first, min(BATCH, devices - first))
        done = min(first + BATCH, devices)
        rate = (done - have) / (time.perf_counter() - started)
        print(f"\r  populated {done}/{devices} devices ({rate:.0f}/s)", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    store.db.close()


def time_upgrade(path: str) -> tuple[int, float]:
    """
    Strip what an older mdmd did not keep (counters, member sets, indexes,
    the layout version), then time the upgrade that rebuilds them.
    """
    store = Store(open_db(f"file://{path}", 1, 20000))

    def strip(root: Any) -> int:
        for name in ("counters", "members", "cert_index", "push_index", "schema"):
            del root[name]
        return len(root["devices"])

    devices = store.run(strip)
    store.initialize()
    started = time.perf_counter()
    upgrade(store, SCHEMA)
    elapsed = time.perf_counter() - started
    store.db.pack()
    store.db.close()
    return devices, elapsed


def timed(fn: Any, *args: Any, repeat: int = 20) -> tuple[float, float]:
    """
    (first call, median of the next C{repeat}) in seconds.
    """
    started = time.perf_counter()
    fn(*args)
    first = time.perf_counter() - started
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - started)
    return first, statistics.median(times)


def count_lines(stream: Any) -> int:
    """
    How many lines C{stream} gives until it ends.
    """
    count = 0
    for _ in stream:
        count += 1
    return count


def command(daemon: DaemonProcess, *argv: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [script("mdmctl"), "--config", daemon.config_path, *argv],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
    )
    return time.perf_counter() - started


class Bench:
    def __init__(self, args: argparse.Namespace, store_path: str) -> None:
        self.args = args
        self.daemon = DaemonProcess(config=f"[store]\nuri = file://{store_path}\n[dm]\ninventory =\n")
        self.devices: list[WindowsDevice] = []

    async def setup_devices(self) -> None:
        added = await deferToThread(self.daemon.mdmctl, "user", "add", "bench@example.com", stdin="bench-pw\n")
        assert added.returncode == 0 or "already exists" in added.stderr, added.stderr  # a kept store has it
        root = self.daemon.ca_certificate()
        keys = [rsa.generate_private_key(65537, 2048) for _ in range(self.args.checkin_devices)]
        self.devices = [
            WindowsDevice(reactor, self.daemon.discovery_url, [root], user="bench@example.com", password="bench-pw", key=key)
            for key in keys
        ]
        await defer.gatherResults([defer.ensureDeferred(d.enroll()) for d in self.devices])
        self.clients = [windows_dm_client(d, clock=reactor.seconds) for d in self.devices]

    async def check_ins(self, until: Any) -> list[float]:
        """
        Every device checks in again and again, C{--pause} seconds after its
        last session ended, until C{until()}; the latencies per message.
        """
        latencies: list[float] = []

        async def loop(index: int) -> None:
            post = windows_post(self.devices[index])
            while not until():
                log = await self.clients[index].session(post)
                latencies.extend(log.latencies)
                if self.args.pause:
                    await task.deferLater(reactor, self.args.pause, lambda: None)

        await defer.gatherResults([defer.ensureDeferred(loop(i)) for i in range(len(self.devices))])
        return latencies

    async def run(self, devices: int) -> None:
        args = self.args
        await deferToThread(self.daemon.start, 600.0)
        admin = AdminClient.from_config(mdmd_config.load(self.daemon.config_path))

        first, median = await deferToThread(timed, admin.request, "GET", "/v1/status")
        print(f"GET /v1/status:              first {first * 1000:7.1f} ms, median {median * 1000:7.1f} ms")
        first, median = await deferToThread(timed, admin.request, "GET", "/v1/devices")
        print(f"GET /v1/devices (first page): first {first * 1000:7.1f} ms, median {median * 1000:7.1f} ms")
        startup = statistics.median([await deferToThread(command, self.daemon, "--version") for _ in range(5)])
        status = statistics.median([await deferToThread(command, self.daemon, "status") for _ in range(5)])
        listing = statistics.median([await deferToThread(command, self.daemon, "device", "list") for _ in range(5)])
        print(f"mdmctl --version (start-up): {startup * 1000:7.1f} ms")
        print(f"mdmctl status:               {status * 1000:7.1f} ms ({(status - startup) * 1000:.1f} ms past start-up)")
        print(f"mdmctl device list:          {listing * 1000:7.1f} ms ({(listing - startup) * 1000:.1f} ms past start-up)")
        if not args.no_whole:
            whole = await deferToThread(command, self.daemon, "device", "list", "--all", "--jsonl")
            print(f"mdmctl device list --all --jsonl: {whole:.1f} s, {devices / whole:.0f} devices/s")

        await self.setup_devices()
        deadline = reactor.seconds() + 2.0
        await self.check_ins(lambda: reactor.seconds() > deadline)  # warm-up
        deadline = reactor.seconds() + args.seconds
        idle = await self.check_ins(lambda: reactor.seconds() > deadline)
        lister = subprocess.Popen(
            [script("mdmctl"), "--config", self.daemon.config_path, "device", "list", "--all", "--jsonl"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        listed = deferToThread(count_lines, lister.stdout)  # devices received
        started = reactor.seconds()
        finished: list[float] = []
        def ended(count: int) -> int:
            finished.append(reactor.seconds() - started)
            return count

        listed.addCallback(ended)
        stop_at = started + args.busy_seconds if args.busy_seconds else float("inf")
        busy = await self.check_ins(lambda: bool(finished) or reactor.seconds() > stop_at)
        if not finished:
            finished.append(reactor.seconds() - started)
        lister.kill()
        received = await listed
        print(f"device list --all during the check-ins: {received} devices in {finished[0]:.1f} s")
        idle_p99, busy_p99 = percentile(idle, 99), percentile(busy, 99)
        print(
            f"check-ins of {len(self.devices)} devices, {args.pause} s apart, idle ({args.seconds:.0f} s): {len(idle)} messages, "
            f"p50 {percentile(idle, 50) * 1000:.1f} ms, p99 {idle_p99 * 1000:.1f} ms"
        )
        print(
            f"check-ins during device list --all ({finished[0]:.1f} s): {len(busy)} messages, "
            f"p50 {percentile(busy, 50) * 1000:.1f} ms, p99 {busy_p99 * 1000:.1f} ms, max {max(busy) * 1000:.1f} ms"
        )
        print(f"p99 during / idle: {busy_p99 / idle_p99:.2f} (target: at most 1.25)")
        for device in self.devices:
            await device.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10000, help="fleet size, made if the store has fewer")
    parser.add_argument("--store", help="a FileStorage to use (and fill up to --devices); default: a new one")
    parser.add_argument("--keep", action="store_true", help="keep the new store (its path is printed)")
    parser.add_argument("--no-upgrade", action="store_true", help="skip timing the store upgrade")
    parser.add_argument("--no-whole", action="store_true", help="skip timing a whole listing alone")
    parser.add_argument(
        "--busy-seconds", type=float, default=0.0,
        help="measure the check-ins during the listing for at most this long (0: until it ends)",
    )
    parser.add_argument("--checkin-devices", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the idle check-ins run")
    parser.add_argument(
        "--pause", type=float, default=0.25,
        help="seconds between a device's sessions (0: a closed loop that saturates the daemon, whose "
        "latency then grows with any other work it does)",
    )
    args = parser.parse_args()
    directory = None
    path = args.store
    if path is None:
        directory = tempfile.mkdtemp(prefix="mdmd-bench-admin-")
        path = os.path.join(directory, "Data.fs")
    path = os.path.abspath(path)
    print(f"store {path}: filling to {args.devices} devices ...", flush=True)
    populate(path, args.devices)
    devices = args.devices
    if not args.no_upgrade:
        devices, elapsed = time_upgrade(path)
        print(
            f"store upgrade (recount of {devices} devices, their certificates and commands): {elapsed:.1f} s, "
            f"{elapsed / devices * 100000:.1f} s per 100k devices"
        )
    print(f"Data.fs: {os.path.getsize(path) / 2**20:.0f} MiB")
    bench = Bench(args, path)
    failed = False

    async def go() -> None:
        nonlocal failed
        try:
            await bench.run(devices)
        except Exception:
            Failure().printTraceback(file=sys.stderr)
            failed = True
        finally:
            bench.daemon.cleanup()

    d = defer.ensureDeferred(go())
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    if directory is not None and not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
    elif directory is not None:
        print(f"kept {path}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
