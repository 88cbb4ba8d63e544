"""
Check-ins of devices drawn at random from a whole population (``bench/populate.py``), cold.

Each drawn device runs one full DM session as a Windows device does when
its poll is due: a new TLS connection presenting its own client
certificate (the one the CA issued it, rebuilt from the population's
recipe), package 1 with an MD5 credential, the two commands queued for it
answered, the server's final message. Devices are drawn without
replacement among those that have not run a benchmark session yet (so
every session does the same work: two queued commands), from the whole
population, so the daemon's caches are as cold as a real fleet keeps them.

Default mode, all in one run on this machine:

1. starts the real daemon (``twistd mdmd``) on the populated state directory;
2. runs ``--warmup`` sessions (not counted), then ``--sessions`` sessions,
   ``--concurrency`` at a time (a closed loop: a finished session starts the
   next device), sampling the daemon's RSS;
3. replays exactly the messages those sessions sent against the bare
   baseline (``bench/baseline_dm_server.py``, same TLS material), with the
   same connections (one per session, the device's certificate) and concurrency.

``--in-process`` runs the same sessions without daemon, network or TLS: the
messages are decoded and run through the check-in's unit of work
(L{mdmd.dm.checkin.exchange}) in groups of ``--group`` messages from as
many devices (L{mdmd.store.runner.GroupCommit}: one transaction and fsync
per group), to measure and profile (``--cprofile``) what the server does
per message. Either mode writes back what the devices learnt (their next
nonces) and that they ran their session.

    .venv/bin/python bench/bench_checkin.py STATE_DIR [--sessions 3000] [--concurrency 100]
    .venv/bin/python bench/bench_checkin.py STATE_DIR --in-process [--group 16] [--cprofile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import defer, reactor, task
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from mdmd import settings as mdmd_settings  # noqa: E402
from mdmd.dm.checkin import exchange  # noqa: E402
from mdmd.pki.ca import CertificateAuthority  # noqa: E402
from mdmd.store.db import open_db  # noqa: E402
from mdmd.store.runner import GroupCommit, GroupedUnit, Store  # noqa: E402
from mdmd.syncml.codec import codec_for_content_type  # noqa: E402
from mdmd.testing.daemon import DaemonProcess  # noqa: E402
from mdmd.testing.dmclient import DMClient, Post  # noqa: E402
from mdmd.testing.population import DeviceRecord, Population, PopulationFiles  # noqa: E402
from mdmd.testing.windows.device import WindowsDevice  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DM_PATH = "/ManagementServer/MDM.svc"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def cpu_seconds(pid: int) -> float:
    """
    The user and system CPU time a process has used so far.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kib(pid: int, field_name: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


@dataclass
class Drawn:
    """
    One drawn device: its emulator, certificate and key.
    """

    index: int
    record: DeviceRecord
    client: DMClient
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey
    sent: list[tuple[bytes, str]] = field(default_factory=list)


class Fleet:
    """
    The population in a state directory, and the devices drawn from it.
    """

    def __init__(self, state_dir: str, seed: int | None) -> None:
        self.state_dir = state_dir
        self.files = PopulationFiles(state_dir)
        self.population: Population = self.files.population()
        self.settings = mdmd_settings.load(os.path.join(state_dir, "mdmd.conf"), state_dir)
        self.server_name = self.settings.enrollment.account.provider_id
        with open(os.path.join(state_dir, "ca", "ca.key"), "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        with open(os.path.join(state_dir, "ca", "ca.crt"), "rb") as f:
            self.ca_certificate = x509.load_pem_x509_certificate(f.read())
        assert isinstance(key, rsa.RSAPrivateKey)
        self.authority = CertificateAuthority(key, self.ca_certificate)
        self.keys = self.files.keys()
        self.random = random.Random(seed)

    def draw(self, count: int, server_url: str) -> list[Drawn]:
        """
        C{count} devices that have not run a benchmark session yet, at random from the whole population.
        """
        size = self.population.size
        with open(self.files.devices_path, "rb") as f:
            raw = f.read()
        record = len(raw) // size
        fresh = [i for i in range(size) if raw[i * record + record - 1] == 0]
        if len(fresh) < count:
            raise SystemExit(f"only {len(fresh)} devices have not run a benchmark session: populate again")
        indices = self.random.sample(fresh, count)
        records = self.files.read(indices)
        drawn = []
        for index in indices:
            key = self.keys[index % len(self.keys)]
            client = self.population.dm_client(index, server_url, records[index].nonce, self.server_name)
            client._session_ids = itertools.count(records[index].sessions + 2)
            certificate = self.population.certificate(index, self.authority, key.public_key())
            drawn.append(Drawn(index, records[index], client, certificate, key))
        return drawn

    def done(self, drawn: list[Drawn]) -> None:
        """
        Write back what the devices that ran a session learnt.
        """
        records = {}
        for device in drawn:
            records[device.index] = DeviceRecord(device.client.client_nonce, device.record.sessions + 1)
        self.files.write(records)


def recording(post: Post, sent: list[tuple[bytes, str]]) -> Post:
    async def recorded(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        sent.append((body, content_type))
        return await post(body, content_type, headers)

    return recorded


# -- in process -----------------------------------------------------------------------------------


@dataclass
class Writes:
    """
    What the transactions after a point wrote: records by class (count, bytes).
    """

    transactions: int = 0
    size: int = 0
    by_class: dict[str, tuple[int, int]] = field(default_factory=dict)


def written(data_fs: str, after: bytes) -> Writes:
    """
    Tally the data records of the transactions committed after C{after}.
    """
    from ZODB.FileStorage import FileIterator
    from ZODB.utils import get_pickle_metadata, p64, u64

    found = Writes()
    iterator = FileIterator(data_fs, start=p64(u64(after) + 1))
    try:
        for txn in iterator:
            found.transactions += 1
            for record in txn:
                if record.data is None:
                    continue
                module, name = get_pickle_metadata(record.data)
                count, size = found.by_class.get(name, (0, 0))
                found.by_class[name] = (count + 1, size + len(record.data))
                found.size += len(record.data)
    finally:
        iterator.close()
    return found


def in_process(args: argparse.Namespace, fleet: Fleet) -> None:
    """
    Sessions in lock-step, each step's messages run as one group through the unit of work.
    """
    data_fs = os.path.join(fleet.state_dir, "Data.fs")
    db = open_db("file://" + data_fs, pool_size=2, cache_size=args.cache_size)
    first_tid = db.lastTransaction()
    store = Store(db)
    group = GroupCommit(store)
    dm = fleet.settings.dm
    profiler = cProfile.Profile() if args.cprofile else None
    server_time = 0.0
    server_cpu = 0.0
    messages = 0
    drawn = fleet.draw(args.sessions, "https://localhost" + DM_PATH)
    waiting: list[tuple[Drawn, bytes, str, defer.Deferred[tuple[int, dict[str, str], bytes]]]] = []

    def post_for(device: Drawn) -> Post:
        async def post(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            answer: defer.Deferred[tuple[int, dict[str, str], bytes]] = defer.Deferred()
            waiting.append((device, body, content_type, answer))
            return await answer

        return post

    failures: list[Failure] = []
    queue = iter(drawn)
    running = 0

    def start_next() -> None:
        nonlocal running
        device = next(queue, None)
        if device is None:
            return
        running += 1
        d = defer.ensureDeferred(device.client.session(post_for(device)))

        def ended(result: Any) -> None:
            nonlocal running
            running -= 1
            if isinstance(result, Failure):
                failures.append(result)
            start_next()

        d.addBoth(ended)

    for _ in range(args.group):
        start_next()
    started = time.perf_counter()
    while waiting:
        step, waiting[:] = list(waiting), []
        began = time.perf_counter()
        began_cpu = time.process_time()
        if profiler is not None:
            profiler.enable()
        answers: list[Any] = []
        units = []
        for device, body, content_type, _ in step:
            codec = codec_for_content_type(content_type)
            assert codec is not None
            message = codec.decode(body)
            units.append(
                GroupedUnit(
                    exchange,
                    (device.certificate, message, codec, body, None, time.time(), dm),
                    {},
                    answers.append,
                )
            )
        group.run(units)
        if profiler is not None:
            profiler.disable()
        server_time += time.perf_counter() - began
        server_cpu += time.process_time() - began_cpu
        messages += len(step)
        for (device, _, content_type, answer), result in zip(step, answers):
            if isinstance(result, Failure):
                answer.errback(result)
            else:
                answer.callback((200, {"content-type": content_type}, result.body))
    elapsed = time.perf_counter() - started
    group.close()
    db.close()
    writes = written(data_fs, first_tid)
    if failures:
        failures[0].printTraceback()
        raise SystemExit(f"{len(failures)} sessions failed")
    fleet.done(drawn)
    stats = group.stats
    print(f"in process: {len(drawn)} sessions, {messages} messages, groups of {stats.units / stats.groups:.1f}")
    print(
        f"  server side (decode + unit of work + commit): {server_time:.2f} s, "
        f"{server_time / messages * 1000:.2f} ms a message, {messages / server_time:.0f} messages/s; "
        f"CPU {server_cpu / messages * 1000:.2f} ms a message; with the emulators: {elapsed:.2f} s"
    )
    print(f"  objects written per message ({writes.transactions} transactions, "
          f"{writes.size / writes.transactions / 1024:.1f} KiB each):")
    for name, (count, size) in sorted(writes.by_class.items(), key=lambda item: -item[1][1]):
        print(f"    {name:24} {count / messages:5.2f} a message, {size / max(count, 1):6.0f} bytes each")
    if profiler is not None:
        profiler.dump_stats(args.cprofile)
        print(f"  profile of the server side: {args.cprofile}")


# -- against the daemon ---------------------------------------------------------------------------


class DaemonBench:
    def __init__(self, args: argparse.Namespace, fleet: Fleet) -> None:
        self.args = args
        self.fleet = fleet
        extra = args.config.replace("\\n", "\n") if args.config else ""
        self.daemon = DaemonProcess(state_dir=fleet.state_dir, config=extra)
        self.rss_peak = 0

    def device(self, drawn: Drawn) -> WindowsDevice:
        device = WindowsDevice(
            reactor, f"https://localhost:{self.daemon.https_port}/EnrollmentServer/Discovery.svc",
            [self.fleet.ca_certificate], device_id=drawn.client.device_id, key=drawn.key,
        )
        device.certificate = drawn.certificate
        device.dm_agent()  # its TLS context, made before the clock runs
        return device

    async def sessions(
        self, drawn: list[Drawn], url: str, replay: bool = False
    ) -> tuple[float, list[float], int]:
        """
        Every drawn device's session (or the replay of what it sent), C{concurrency} at a time.
        """
        devices = {d.index: self.device(d) for d in drawn}
        latencies: list[float] = []
        messages = 0
        queue = iter(drawn)

        async def worker() -> None:
            nonlocal messages
            for one in queue:
                device = devices[one.index]

                async def post(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
                    reply = await device.request("POST", url, body, content_type=content_type, client_certificate=True)
                    return reply.code, reply.headers, reply.body

                if replay:
                    for body, content_type in one.sent:
                        began = reactor.seconds()
                        code, _, _ = await post(body, content_type, {})
                        assert code == 200, code
                        latencies.append(reactor.seconds() - began)
                        messages += 1
                else:
                    one.client.clock = reactor.seconds
                    log = await one.client.session(recording(post, one.sent))
                    latencies.extend(log.latencies)
                    messages += log.messages
                await device.close()

        started = time.perf_counter()
        await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(self.args.concurrency)])
        return time.perf_counter() - started, latencies, messages

    def sample_rss(self) -> None:
        try:
            self.rss_peak = max(self.rss_peak, proc_status_kib(self.daemon.pid, "VmRSS"))
        except OSError:
            pass

    async def run(self) -> None:
        args = self.args
        population = self.fleet.population
        print(f"population: {population.size} devices in {self.fleet.state_dir}; load average {os.getloadavg()[0]:.2f}")
        started = time.perf_counter()
        await deferToThread(self.daemon.start, 300.0)
        print(f"daemon listening after {time.perf_counter() - started:.1f} s "
              f"(RSS {proc_status_kib(self.daemon.pid, 'VmRSS') / 1024:.0f} MiB)", flush=True)
        url = f"https://localhost:{self.daemon.https_port}{DM_PATH}"
        everyone = self.fleet.draw(args.warmup + args.sessions, url)
        warmup, drawn = everyone[: args.warmup], everyone[args.warmup :]
        used: list[Drawn] = []
        sampler = task.LoopingCall(self.sample_rss)
        sampler.start(0.5)
        try:
            if warmup:
                await self.sessions(warmup, url)
                used += warmup
            cpu = cpu_seconds(self.daemon.pid)
            elapsed, latencies, messages = await self.sessions(drawn, url)
            cpu = cpu_seconds(self.daemon.pid) - cpu
            used += drawn
        finally:
            sampler.stop()
            self.fleet.done(used)
        hwm = proc_status_kib(self.daemon.pid, "VmHWM")
        rate = messages / elapsed
        print(f"daemon:   {len(drawn)} sessions of devices drawn from {population.size}, {args.concurrency} at a time, "
              f"a new TLS connection each")
        print(f"          {messages} messages in {elapsed:.2f} s: {rate:.0f} messages/s, "
              f"{len(drawn) / elapsed:.0f} sessions/s, p50 {percentile(latencies, 50) * 1000:.1f} ms, "
              f"p99 {percentile(latencies, 99) * 1000:.1f} ms; RSS peak {self.rss_peak / 1024:.0f} MiB (VmHWM {hwm / 1024:.0f} MiB)")
        print(f"          daemon CPU {cpu / messages * 1000:.2f} ms a message ({cpu / elapsed * 100:.0f}% of a core)")
        if args.baseline:
            server = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "baseline_dm_server.py"), self.fleet.state_dir],
                stdout=subprocess.PIPE, text=True,
            )
            assert server.stdout is not None
            try:
                port = int(server.stdout.readline())
                elapsed, latencies, messages = await self.sessions(drawn, f"https://localhost:{port}{DM_PATH}", replay=True)
            finally:
                server.terminate()
                server.wait()
            baseline = messages / elapsed
            print(f"baseline: {messages} messages in {elapsed:.2f} s: {baseline:.0f} messages/s, "
                  f"p50 {percentile(latencies, 50) * 1000:.1f} ms, p99 {percentile(latencies, 99) * 1000:.1f} ms")
            print(f"ratio daemon/baseline (messages/s): {rate / baseline:.2f}")
        stopping = time.perf_counter()
        # a clean stop saves the FileStorage index (large at a million devices): give it time
        self.daemon.stop(timeout=600.0)
        print(f"daemon stopped in {time.perf_counter() - stopping:.1f} s")
        grouping = [line for line in self.daemon.log().splitlines() if "group commit:" in line]
        if grouping:
            print("daemon's log:", grouping[-1].split("] ", 1)[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("state_dir")
    parser.add_argument("--sessions", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=200, help="sessions before the clock starts (not counted)")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false")
    parser.add_argument("--seed", type=int, default=None, help="of the draw")
    parser.add_argument("--config", default="", help="more daemon configuration (INI text, \\n for new lines)")
    parser.add_argument("--in-process", action="store_true", help="no daemon: the unit of work in this process")
    parser.add_argument("--group", type=int, default=16, help="--in-process: messages a group commits")
    parser.add_argument("--cache-size", type=int, default=10000, help="--in-process: the connection's cache")
    parser.add_argument("--cprofile", help="--in-process: save a cProfile of the server side here")
    args = parser.parse_args()
    fleet = Fleet(os.path.abspath(args.state_dir), args.seed)
    if args.in_process:
        in_process(args, fleet)
        return
    bench = DaemonBench(args, fleet)
    failed = False

    async def go() -> None:
        nonlocal failed
        try:
            await bench.run()
        except Exception:
            Failure().printTraceback()
            failed = True
        finally:
            bench.daemon.stop(timeout=600.0)

    d = defer.ensureDeferred(go())
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
