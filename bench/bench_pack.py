"""
Packing a populated FileStorage while units of work go on: how long, how much it frees, what it costs them.

Give it the state directory of a populated store (``bench/populate.py``);
it works on a copy of its ``Data.fs`` (the original is not touched). It
first rewrites ``--history`` random devices (their contact time), as the
history a day of check-ins leaves, then packs the copy (keeping ``--days``
of history) on a thread of its own, as the daemon does, while this thread
runs one small unit of work after another (a device's contact time
written: a read, a write and a commit with its fsync). It prints the pack's
duration, the sizes before and after, the process's peak RSS, and the
latency of the units of work before and during the pack (the longest: the
commit lock the pack takes at its end).

    .venv/bin/python bench/bench_pack.py STATE_DIR [--history 20000] [--days 0]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from mdmd.store import upkeep  # noqa: E402
from mdmd.store.db import open_db  # noqa: E402
from mdmd.store.runner import Root, Store  # noqa: E402


def touch(root: Root, device_id: str, now: float) -> None:
    """
    A unit of work: a device's contact time, as a check-in records it.
    """
    root["devices"][device_id].last_contact = now


def touch_all(root: Root, ids: list[str], now: float) -> None:
    """
    A unit of work: the contact time of many devices.
    """
    for device_id in ids:
        touch(root, device_id, now)


def device_ids(root: Root, count: int, seed: int) -> list[str]:
    """
    C{count} device ids drawn from the whole population.
    """
    ids = list(root["devices"].keys())
    return random.Random(seed).choices(ids, k=count)


def latencies(store: Store, ids: list[str], until: threading.Event | None = None) -> list[float]:
    """
    Run a unit of work per id (or, with C{until}, until it is set); their latencies.
    """
    taken = []
    for device_id in ids:
        if until is not None and until.is_set():
            break
        started = time.perf_counter()
        store.run(touch, device_id, time.time())
        taken.append(time.perf_counter() - started)
    return taken


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"{len(values)} units, p50 {statistics.median(values) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"longest {ordered[-1] * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("state_dir", help="a populated state directory (bench/populate.py)")
    parser.add_argument("--history", type=int, default=20000, help="devices rewritten before the pack")
    parser.add_argument("--days", type=float, default=0.0, help="days of history the pack keeps")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="mdmd-bench-pack-")
    try:
        path = os.path.join(directory, "Data.fs")
        shutil.copyfile(os.path.join(args.state_dir, "Data.fs"), path)
        store = Store(open_db(f"file://{path}", pool_size=2, cache_size=20000))
        store.initialize()
        ids = store.read(device_ids, args.history + 200_000, 1)
        started = time.perf_counter()
        for offset in range(0, args.history, 500):
            store.run(touch_all, ids[offset : offset + 500], time.time())
        print(f"history: {args.history} devices rewritten in {time.perf_counter() - started:.1f} s", flush=True)
        ids = ids[args.history :]
        before = latencies(store, ids[:500])
        print(f"before the pack: {summary(before)}", flush=True)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        done = threading.Event()
        reports: list[upkeep.PackReport] = []
        cpu: list[float] = []

        def pack() -> None:
            try:
                reports.append(upkeep.pack(store.db, args.days, time.time()))
                cpu.append(time.thread_time())
            finally:
                done.set()

        packing = threading.Thread(target=pack)
        packing.start()
        during = latencies(store, ids[500:], until=done)
        packing.join()
        (report,) = reports
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(
            f"pack (keeping {args.days:g} days): {report.seconds:.1f} s (its thread's CPU {cpu[0]:.1f} s), "
            f"{report.size_before / 2**20:.0f} MiB → {report.size_after / 2**20:.0f} MiB, "
            f"peak RSS {rss_before / 1024:.0f} → {rss / 1024:.0f} MiB"
        )
        print(f"during the pack: {summary(during)}")
        store.db.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
