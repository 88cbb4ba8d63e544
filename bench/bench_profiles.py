"""
Desired state at scale: assigning a 20-setting profile to N devices, and
what reconciliation costs a check-in.

What it does, all in one run on this machine, for each size N:

1. populates a daemon's state directory with N enrolled Windows devices
   through the test kit's unit of work (L{mdmd.testing.devices.add_device}:
   a device record as an enrollment leaves it, with its DM credentials), a
   thousand per transaction, and adds a profile of 20 Policy CSP settings;
2. ``baseline``: S devices check in twice with nothing for them (no
   profile was ever assigned; each had a first session already): the
   check-in's unit of work (L{mdmd.dm.checkin.exchange}) run in this process
   on the FileStorage, an emulated Windows device
   (L{mdmd.testing.dmclient.DMClient}) on the other side;
3. ``raw``: S other devices get the same 20 Replace and 20 Get commands
   queued as operator commands (``mdmctl cmd``) and check in: the SyncML a
   converging device carries, without desired state;
4. starts the real daemon on that state directory and times the assignment
   request (``POST /v1/profiles/NAME/assignments``, the request mdmctl
   profile assign makes), then stops it;
5. ``converge``: the S devices of the baseline check in: each reconciles (its groups, the
   profile's steps planned for it), gets the 20 settings and their Gets in
   its first answer, and is verified;
5. ``steady``: the same S devices check in twice more, converged: what
   reconciliation costs a check-in that has nothing to do (the desired-state
   revision compared), against their own baseline sessions; then, since
   those were minutes apart on a shared machine, the same check-ins again
   interleaved with identical ones run with the check-in's desired-state
   hooks taken out (``no-hooks``).

It prints the assignment's median latency, and per scenario the server's
time per session (the units of work only; medians of this process's CPU
time, which leaves out the commit's fsync and the machine's other load, and
of wall time) and sessions/s, with the ratios converge/raw and steady/baseline. The emulated devices run in the same
process, outside the timed units of work.

    .venv/bin/python bench/bench_profiles.py [--devices 10000 100000] [--sessions 500] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from twisted.internet.defer import ensureDeferred

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from mdmd.admin.cli import AdminClient  # noqa: E402
from mdmd.desired import catalog  # noqa: E402
from mdmd.desired.profiles import parse_profile  # noqa: E402
from mdmd.dm import checkin  # noqa: E402
from mdmd.dm import queue as dm_queue  # noqa: E402
from mdmd.dm.checkin import DMSettings, exchange  # noqa: E402
from mdmd.dm.commands import parse_spec  # noqa: E402
from mdmd.store.db import open_db  # noqa: E402
from mdmd.store.runner import Store  # noqa: E402
from mdmd.syncml.codec import XML_CODEC  # noqa: E402
from mdmd.testing.daemon import DaemonProcess  # noqa: E402
from mdmd.testing.devices import CLIENT_NONCE, CLIENT_SECRET, add_device  # noqa: E402
from mdmd.testing.dmclient import DMClient, SessionLog  # noqa: E402
from mdmd.testing.windows.tree import SettingsTree  # noqa: E402

SETTINGS = DMSettings(require_client_certificate=False)
#: 20 Policy CSP settings (node, value): what a typical Windows baseline profile holds
POLICIES = [(f"./Device/Vendor/MSFT/Policy/Config/Bench/Setting{i:02d}", str(i % 3)) for i in range(20)]
PROFILE = "".join(
    f"<Replace><Item><Target><LocURI>{node}</LocURI></Target><Meta><Format>int</Format></Meta>"
    f"<Data>{value}</Data></Item></Replace>\n"
    for node, value in POLICIES
)


def device_id(i: int) -> str:
    return f"BENCH{i:08d}"


def populate(root: Any, start: int, count: int) -> None:
    for i in range(start, start + count):
        add_device(root, device_id(i))


def add_profile(root: Any) -> None:
    catalog.add_profile(root, "bench", parse_profile(PROFILE.encode()), PROFILE, "20 Policy CSP settings", 0.0)


def queue_raw(root: Any, device_ids: Sequence[str]) -> None:
    for node, value in POLICIES:
        dm_queue.enqueue(root, device_ids, parse_spec({"verb": "Replace", "target": node, "data": value, "format": "int"}), 0.0)
        dm_queue.enqueue(root, device_ids, parse_spec({"verb": "Get", "target": node}), 0.0)


class CheckIns:
    """
    Devices checking in through the real unit of work, timing the server's
    side only: wall time and this process's CPU time inside the units of
    work (the CPU time leaves out the commit's fsync and other processes).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.nonces: dict[str, bytes] = {}
        self.now = 10_000.0
        self.wall = 0.0
        self.cpu = 0.0
        self.messages = 0

    def session(self, device: str, expect: int) -> tuple[float, float]:
        """
        One session of C{device}; the server's (wall, CPU) seconds in it.
        """
        client = DMClient(device, "https://bench/", "device-name", CLIENT_SECRET, self.nonces.get(device, CLIENT_NONCE),
                          settings=SettingsTree())
        wall = cpu = 0.0

        async def post(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            nonlocal wall, cpu
            message = XML_CODEC.decode(body)
            started, started_cpu = time.perf_counter(), time.process_time()
            result = self.store.run(exchange, None, message, XML_CODEC, body, None, self.now, SETTINGS)
            wall += time.perf_counter() - started
            cpu += time.process_time() - started_cpu
            self.messages += 1
            return 200, {"content-type": XML_CODEC.content_type}, result.body

        done: list[Any] = []
        ensureDeferred(client.session(post)).addBoth(done.append)
        (log,) = done
        if not isinstance(log, SessionLog):
            log.raiseException()
        if len(log.received) != expect:
            raise SystemExit(f"{device} received {len(log.received)} commands, expected {expect}")
        self.nonces[device] = client.client_nonce
        self.now += 0.01
        return wall, cpu


class Scenario:
    """
    The server's times of a scenario's sessions.
    """

    def __init__(self) -> None:
        self.walls: list[float] = []
        self.cpus: list[float] = []

    def add(self, times: tuple[float, float]) -> None:
        self.walls.append(times[0])
        self.cpus.append(times[1])

    def summary(self) -> dict[str, float]:
        return {
            "sessions": len(self.walls),
            "wall_ms": 1000 * statistics.median(self.walls),
            "cpu_ms": 1000 * statistics.median(self.cpus),
            "sessions_per_s": len(self.walls) / sum(self.walls),
        }


def run(checkins: CheckIns, devices: Sequence[str], expect: int, rounds: int = 1) -> dict[str, float]:
    scenario = Scenario()
    for _ in range(rounds):
        for device in devices:
            scenario.add(checkins.session(device, expect))
    return scenario.summary()


@contextlib.contextmanager
def without_desired_state() -> Iterator[None]:
    """
    The check-in with its desired-state hooks taken out (what a check-in costs without them).
    """
    # the check-in module's name for the hooks' module, swapped for the time being (not part of its interface)
    hooks = getattr(checkin, "desired")
    stub = types.SimpleNamespace(
        before_message=lambda *args: [], after_message=lambda *args: [], facts_changed=lambda *args: None,
        forget=lambda *args: None,
    )
    setattr(checkin, "desired", stub)
    try:
        yield
    finally:
        setattr(checkin, "desired", hooks)


def time_assign(state_dir: str, repeats: int) -> list[float]:
    """
    Start the daemon on the populated store and time the assignment request
    to the built-in group of every device (assign, unassign, again); then
    assign the profile to the benchmark's static group.
    """
    daemon = DaemonProcess(state_dir=state_dir, ca_key_size=2048)
    daemon.start(timeout=600)
    try:
        with open(os.path.join(state_dir, "admin.token")) as f:
            client = AdminClient(daemon.addresses["admin"], f.read().strip())
        client.request("GET", "/v1/status")
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            client.request("POST", "/v1/profiles/bench/assignments", {"group": "all"})
            timings.append(time.perf_counter() - started)
            client.request("DELETE", "/v1/profiles/bench/assignments/all")
        client.request("POST", "/v1/profiles/bench/assignments", {"group": "bench"})
        return timings
    finally:
        daemon.stop()


def open_store(uri: str) -> tuple[Any, Store]:
    db = open_db(uri, 2, 50_000)
    store = Store(db, 5)
    store.initialize()
    return db, store


def measure(size: int, sessions: int, keep: str | None, out: Callable[[str], None]) -> dict[str, Any]:
    state_dir = keep or tempfile.mkdtemp(prefix="mdmd-bench-profiles-")
    os.makedirs(state_dir, exist_ok=True)
    uri = "file://" + os.path.join(state_dir, "Data.fs")
    db, store = open_store(uri)
    sample = random.Random(size).sample(range(size), 2 * sessions)
    raw_ids, converge_ids = ([device_id(i) for i in sample[k * sessions : (k + 1) * sessions]] for k in range(2))
    started = time.perf_counter()
    for start in range(0, size, 1000):
        store.run(populate, start, min(1000, size - start))
    store.run(add_profile)
    store.run(catalog.add_group, "bench", None, "the devices that converge", converge_ids, 0.0)
    out(f"  populated {size} devices in {time.perf_counter() - started:.1f}s")

    checkins = CheckIns(store)
    results: dict[str, Any] = {"devices": size}
    # every measured session is a device's second or later: its first makes its session and queue records
    run(checkins, raw_ids + converge_ids, 0)
    results["baseline"] = run(checkins, converge_ids, 0, rounds=2)
    db.close()

    timings = time_assign(state_dir, 7)
    results["assign_ms"] = 1000 * statistics.median(timings)
    results["assign_max_ms"] = 1000 * max(timings)

    db, store = open_store(uri)
    checkins.store = store
    run(checkins, raw_ids, 0)  # after the assignments, they reconcile to nothing once
    started, started_cpu = time.perf_counter(), time.process_time()
    for start in range(0, sessions, 50):
        store.run(queue_raw, raw_ids[start : start + 50])
    results["enqueue"] = {
        "wall_ms": 1000 * (time.perf_counter() - started) / sessions,
        "cpu_ms": 1000 * (time.process_time() - started_cpu) / sessions,
    }
    raw, converge = Scenario(), Scenario()
    for raw_id, converge_id in zip(raw_ids, converge_ids):
        raw.add(checkins.session(raw_id, 40))
        converge.add(checkins.session(converge_id, 40))
    results["raw"], results["converge"] = raw.summary(), converge.summary()
    results["steady"] = run(checkins, converge_ids, 0, rounds=2)
    # the same converged check-ins with and without desired state, interleaved
    hooked, bare = Scenario(), Scenario()
    for device in converge_ids * 2:
        hooked.add(checkins.session(device, 0))
        with without_desired_state():
            bare.add(checkins.session(device, 0))
    results["steady-interleaved"], results["no-hooks"] = hooked.summary(), bare.summary()
    verified = store.read(catalog.profile_counts, "bench")["verified"]
    if verified != sessions:
        raise SystemExit(f"{verified} devices verified, expected {sessions}")
    db.close()
    if keep is None:
        shutil.rmtree(state_dir, ignore_errors=True)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, nargs="+", default=[10_000])
    parser.add_argument("--sessions", type=int, default=300, help="devices per scenario")
    parser.add_argument("--keep", help="populate (and keep) this state directory (one size only)")
    args = parser.parse_args(argv)
    for size in args.devices:
        print(f"== {size} devices, {args.sessions} sessions per scenario", flush=True)
        r = measure(size, args.sessions, args.keep, lambda text: print(text, flush=True))
        print(f"  assign request: median {r['assign_ms']:.1f} ms, max {r['assign_max_ms']:.1f} ms (7 requests)")
        for name in ("baseline", "raw", "converge", "steady", "steady-interleaved", "no-hooks"):
            s = r[name]
            print(f"  {name:<9} {s['cpu_ms']:6.2f} ms CPU, {s['wall_ms']:6.2f} ms wall per session (medians, server)  "
                  f"{s['sessions_per_s']:7.1f} sessions/s")
        enqueue = r["enqueue"]
        print(f"  (queueing the raw commands: {enqueue['cpu_ms']:.2f} ms CPU, {enqueue['wall_ms']:.2f} ms wall per device, "
              "in transactions of 50 devices)")
        r["raw+enqueue"] = {key: r["raw"][key] + enqueue[key] for key in ("cpu_ms", "wall_ms")}
        for label, a, b in (("converging, vs the same sessions of commands queued before", "converge", "raw"),
                            ("converging, vs those sessions and queueing their commands", "converge", "raw+enqueue"),
                            ("converged, vs their sessions before any profile", "steady", "baseline"),
                            ("converged, vs the same sessions without desired state, interleaved", "steady-interleaved", "no-hooks")):
            cpu = r[a]["cpu_ms"] / r[b]["cpu_ms"]
            wall = r[a]["wall_ms"] / r[b]["wall_ms"]
            print(f"  reconciliation cost {label}: {100 * (cpu - 1):+.1f}% CPU, {100 * (wall - 1):+.1f}% wall", flush=True)


if __name__ == "__main__":
    main()
