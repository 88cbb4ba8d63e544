"""
Enrollment throughput of the real daemon: full Windows enrollments per second.

Each enrollment is what a device does: GET Discovery.svc, POST Discover,
POST GetPolicies (user name and password), POST RequestSecurityToken (a
PKCS#10), over its own new TLS connection (kept alive across its four
requests, as WinHTTP does), with the provisioning document checked by the
emulator. Device keys and requests are made before timing: key generation is
the device's cost, not the server's.

Prints enrollments/s, latency percentiles, the daemon's CPU time per
enrollment and peak RSS, beside this machine's raw RSA-2048 signing rate
measured in the same run. Client and daemon share the machine's cores.

    .venv/bin/python bench/bench_enroll.py [--devices 2000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from twisted.internet import defer, task

from mdmd.testing.daemon import DaemonProcess, script
from mdmd.testing.windows.csr import modern_csr
from mdmd.testing.windows.device import WindowsDevice

USER, PASSWORD = "bench@example.com", "bench-password"


def rsa_sign_rate(seconds: float = 1.0) -> float:
    """
    RSA-2048 PKCS#1 v1.5 SHA-256 signatures per second on one core.
    """
    key = rsa.generate_private_key(65537, 2048)
    data = b"x" * 1000
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        count += 1
    return count / (time.perf_counter() - start)


def process_cpu(pid: int) -> float:
    """
    User + system CPU seconds the process has used.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def run(reactor: Any, options: argparse.Namespace) -> None:
    load = os.getloadavg()
    sign_rate = rsa_sign_rate()
    profile = ("--profile", options.profile, "--profiler", "cprofile", "--savestats") if options.profile else ()
    daemon = DaemonProcess(hostname=options.hostname, config=options.config, twistd_args=profile)
    try:
        daemon.start()
        added = daemon.mdmctl("user", "add", USER, stdin=PASSWORD + "\n")
        if added.returncode:
            raise SystemExit(added.stderr)
        root = daemon.ca_certificate()
        url = daemon.discovery_url
        pid = daemon.pid

        prepared = time.perf_counter()
        keys = [rsa.generate_private_key(65537, 2048) for _ in range(options.keys)]
        requests = []
        for index in range(options.devices + options.warmup):
            device_id = str(uuid.uuid4()).upper()  # random, as real DeviceIDs are
            key = keys[index % len(keys)]
            requests.append((device_id, key, modern_csr(key, device_id)))
        prepared = time.perf_counter() - prepared

        async def enroll(device_id: str, key: rsa.RSAPrivateKey, csr: bytes) -> float:
            device = WindowsDevice(
                reactor, url, [root], user=USER, password=PASSWORD, device_id=device_id, key=key, csr=csr
            )
            start = time.perf_counter()
            try:
                await device.enroll()
            finally:
                await device.close()
            return time.perf_counter() - start

        async def drive(work: list[tuple[str, rsa.RSAPrivateKey, bytes]]) -> list[float]:
            latencies: list[float] = []
            queue = iter(work)

            async def worker() -> None:
                for item in queue:
                    latencies.append(await enroll(*item))

            await defer.gatherResults(
                [defer.Deferred.fromCoroutine(worker()) for _ in range(options.concurrency)],
                consumeErrors=True,
            )
            return latencies

        await drive(requests[: options.warmup])
        spy = None
        if options.spy:
            spy = subprocess.Popen(
                [script("py-spy"), "record", "--nonblocking", "--gil", "--format", "raw", "--rate", "250",
                 "-o", options.spy, "-p", str(pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            await task.deferLater(reactor, 1.0, lambda: None)
        cpu_before, client_before = process_cpu(pid), time.process_time()
        started = time.perf_counter()
        latencies = await drive(requests[options.warmup :])
        elapsed = time.perf_counter() - started
        if spy is not None:
            spy.send_signal(2)
            spy.wait()
        cpu = process_cpu(pid) - cpu_before
        client_cpu = time.process_time() - client_before
        rss = peak_rss_mib(pid)
    finally:
        daemon.cleanup()

    rate = len(latencies) / elapsed
    print(
        f"machine:            {os.cpu_count()} CPU cores, shared by the client (this process) and the "
        f"daemon; load average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(f"RSA-2048 signing:   {sign_rate:,.0f} signatures/s on one core (cryptography, same run)")
    print(f"ratio:              {rate / sign_rate:.3f} enrollments per RSA-2048 signature")
    print(f"prepared:           {options.keys} device keys, {len(requests)} requests in {prepared:.1f}s (not timed)")
    print(f"enrollments:        {len(latencies)} in {elapsed:.2f}s, {options.concurrency} devices at a time")
    print(f"throughput:         {rate:,.1f} enrollments/s (GET + Discover + GetPolicies + RST, one new TLS connection each)")
    print(
        f"latency:            p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
        f"mean {statistics.fmean(latencies) * 1000:.1f} ms"
    )
    print(
        f"daemon CPU:         {cpu:.2f}s = {cpu / len(latencies) * 1000:.2f} ms per enrollment "
        f"({cpu / elapsed * 100:.0f}% of one core; a core of its own would do "
        f"{len(latencies) / cpu:,.0f} enrollments/s)"
    )
    print(
        f"client CPU:         {client_cpu:.2f}s = {client_cpu / len(latencies) * 1000:.2f} ms per enrollment "
        f"({client_cpu / elapsed * 100:.0f}% of one core)"
    )
    print(f"daemon peak RSS:    {rss:.0f} MiB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=2000, help="timed enrollments (default 2000)")
    parser.add_argument("--concurrency", type=int, default=32, help="devices enrolling at once (default 32)")
    parser.add_argument("--keys", type=int, default=64, help="distinct device keys, reused round robin (default 64)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed enrollments first (default 50)")
    parser.add_argument("--config", default="", help="extra INI text for the daemon's configuration")
    parser.add_argument("--profile", default="", help="profile the daemon with cProfile into this file")
    parser.add_argument("--spy", default="", help="record the daemon with py-spy into this file (collapsed stacks)")
    parser.add_argument(
        "--hostname", default="localhost", help="the daemon's public host name, which devices resolve (default localhost)"
    )
    options = parser.parse_args(argv)
    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor, options)))


if __name__ == "__main__":
    main()
