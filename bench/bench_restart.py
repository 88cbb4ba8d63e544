"""
Restart time of the daemon after kill -9, with and without a saved FileStorage index.

Give it the state directory of a populated store (``bench/populate.py``
makes one). With the daemon stopped, it first times opening the FileStorage
alone (read-only, in this process): with its index, and without it (the
whole file read to rebuild it). Then, with the real daemon (``twistd
mdmd``, every listener on a free port), it times from the start of the
process to listening (``listening.json`` written) after:

- a clean stop (the index saved on close);
- kill -9 after the periodic save (``[store] index_save_interval``): the
  start reads only what was committed after the save;
- kill -9 with no index at all (as before mdmd saved it: a daemon that ran
  since its last clean stop or pack left an index that old), so the start
  reads the whole file.

Each is repeated ``--runs`` times and the median printed. The page cache is
warm (the file was just read); say so when quoting the figures. The state
directory is left as it was found, but for the index, which is saved again.

    .venv/bin/python bench/bench_restart.py STATE_DIR [--runs 3] [--index-save-interval 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from ZODB.FileStorage import FileStorage  # noqa: E402

from mdmd.testing.daemon import DaemonProcess  # noqa: E402


@dataclass(frozen=True)
class Timing:
    """
    Wall-clock and CPU seconds (the machine may be shared: the CPU time is what the work took).
    """

    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall:.2f} s (CPU {self.cpu:.2f} s)"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_storage(path: str, with_index: bool) -> tuple[Timing, int]:
    """
    How long opening the FileStorage read-only takes (with its saved index,
    or rebuilding it from the whole file), and how many objects it holds.
    """
    index = path + ".index"
    aside = index + ".bench-aside"
    if not with_index:
        os.rename(index, aside)
    try:
        started, cpu = time.perf_counter(), time.process_time()
        storage = FileStorage(path, read_only=True)
        timing = Timing(time.perf_counter() - started, time.process_time() - cpu)
        objects = len(storage)
        storage.close()
    finally:
        if not with_index:
            os.rename(aside, index)
    return timing, objects


class Restarts:
    def __init__(self, state_dir: str, interval: float) -> None:
        self.interval = interval
        self.daemon = DaemonProcess(
            state_dir=state_dir, config=f"[store]\nindex_save_interval = {interval:g}\npack_interval = 0\n"
        )
        self.path = os.path.join(state_dir, "Data.fs")

    def start(self) -> Timing:
        """
        Start the daemon; how long until it listens (and the CPU time it took).
        """
        started = time.perf_counter()
        self.daemon.start(timeout=600.0)
        return Timing(time.perf_counter() - started, cpu_seconds(self.daemon.pid))

    def kill(self) -> None:
        process = self.daemon.process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.daemon.process = None

    def after_clean_stop(self) -> Timing:
        self.daemon.stop()
        return self.start()

    def after_kill_with_saved_index(self) -> Timing:
        saved = os.stat(self.path + ".index").st_mtime
        deadline = time.monotonic() + self.interval * 3 + 30
        while os.stat(self.path + ".index").st_mtime == saved:
            if time.monotonic() > deadline:
                raise SystemExit("the daemon did not save its index")
            time.sleep(0.2)
        time.sleep(0.5)  # the save is written whole before its rename; leave it be
        self.kill()
        return self.start()

    def after_kill_without_index(self) -> Timing:
        self.kill()
        os.unlink(self.path + ".index")
        return self.start()


def median(runs: int, measure: Callable[[], Timing]) -> tuple[Timing, list[Timing]]:
    """
    C{measure} C{runs} times: the medians of wall and CPU time, and every run.
    """
    values = [measure() for _ in range(runs)]
    return Timing(statistics.median(v.wall for v in values), statistics.median(v.cpu for v in values)), values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("state_dir", help="a populated state directory (bench/populate.py)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--index-save-interval", type=float, default=5.0, help="the daemon's [store] index_save_interval"
    )
    args = parser.parse_args()
    state_dir = os.path.abspath(args.state_dir)
    path = os.path.join(state_dir, "Data.fs")
    restarts = Restarts(state_dir, args.index_save_interval)
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    # a first start: the daemon adds what this version keeps (indexes) and saves the index on stop
    first = restarts.start()
    restarts.daemon.stop()
    size = os.path.getsize(path)
    print(f"store: {path}, {size / 2**20:.0f} MiB; first start (store brought up to date): {first}", flush=True)

    with_index, _ = median(args.runs, lambda: open_storage(path, True)[0])
    without_index, _ = median(args.runs, lambda: open_storage(path, False)[0])
    objects = open_storage(path, True)[1]
    index_size = os.path.getsize(path + ".index")
    print(f"objects: {objects}, index {index_size / 2**20:.1f} MiB")
    print(f"FileStorage open, index loaded:     {with_index}")
    print(
        f"FileStorage open, whole file read:  {without_index}, {size / 2**20 / without_index.wall:.0f} MiB/s",
        flush=True,
    )

    restarts.start()
    try:
        for label, measure in (
            ("after a clean stop", restarts.after_clean_stop),
            (f"after kill -9, index saved every {args.index_save_interval:g} s", restarts.after_kill_with_saved_index),
            ("after kill -9, no index saved", restarts.after_kill_without_index),
        ):
            value, values = median(args.runs, measure)
            print(f"daemon listening {label}: {value}  [{', '.join(f'{v.wall:.2f}' for v in values)}]", flush=True)
    finally:
        restarts.daemon.stop()
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
