"""
SMPP client throughput: how many submit_sm per second the ESME gets
acknowledged by a local SMSC, with window 1 and window 10, and whether a
configured throughput (50/s) is held.

    .venv/bin/python bench/bench_smpp.py [--runs 5] [--jobs 2000]

Peers: the in-process fake SMSC (mdmd.testing.smsc) over real loopback TCP,
which shares this process's CPU with the ESME, and, when node and
tests/peers/node_modules are there, node-smpp (tests/peers/smsc.js --quiet)
in its own process. Prints medians of --runs runs; not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import ProcessProtocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mdmd.notify import smpp_pdu  # noqa: E402
from mdmd.notify.smpp_client import ESMEService, StateEvent, smsc_endpoint  # noqa: E402
from mdmd.notify.smpp_session import Address, SessionConfig  # noqa: E402
from mdmd.notify.wap import wap_push_segments  # noqa: E402
from mdmd.testing.smsc import FakeSmscFactory  # noqa: E402

DEVICE = Address("491701234567")
SEGMENT = wap_push_segments(bytes(42), concat_ref=1)  # one SMS, like a short package #0


class _TimedList(list):
    """
    The fake SMSC's record of PDUs, with the arrival time of each.
    """

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, pdu: smpp_pdu.Pdu) -> None:
        super().append(pdu)
        if isinstance(pdu, smpp_pdu.SubmitSm):
            self.times.append(time.perf_counter())


class _NodePeer(ProcessProtocol):
    def __init__(self) -> None:
        self.port: defer.Deferred[int] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        if not self.port.called:
            import json

            self.port.callback(json.loads(data.split(b"\n")[0])["port"])

    def processEnded(self, reason: object) -> None:
        self.ended.callback(None)


async def submits_per_second(
    reactor: IReactorTime, endpoint: IStreamClientEndpoint, window: int, jobs: int
) -> float:
    config = SessionConfig(
        system_id="mdmd", password="secret", window=window, registered_delivery=0
    )
    service = ESMEService(endpoint, config, clock=reactor)
    bound: defer.Deferred[None] = defer.Deferred()

    def bind_seen(event: StateEvent) -> None:
        if not bound.called:
            bound.callback(None)

    service.add_state_observer(bind_seen)
    service.startService()
    await bound
    start = time.perf_counter()
    outcomes = await defer.gatherResults([service.submit(n, DEVICE, SEGMENT) for n in range(jobs)])
    elapsed = time.perf_counter() - start
    await service.stopService()
    assert all(o.accepted for o in outcomes)
    return jobs / elapsed


async def paced(
    reactor: IReactorTime,
    endpoint: IStreamClientEndpoint,
    record: _TimedList,
    rate: float,
    seconds: float,
) -> dict[str, float]:
    config = SessionConfig(
        system_id="mdmd", password="secret", window=10, throughput=rate, registered_delivery=0
    )
    service = ESMEService(endpoint, config, clock=reactor)
    service.startService()
    record.times.clear()
    outcomes = await defer.gatherResults(
        [service.submit(("paced", n), DEVICE, SEGMENT) for n in range(int(rate * seconds))]
    )
    await service.stopService()
    assert all(o.accepted for o in outcomes)
    times = record.times
    gaps = [b - a for a, b in zip(times, times[1:])]
    window_counts = [
        sum(1 for t in times if start <= t < start + 1.0)
        for start in times
        if start + 1.0 <= times[-1]
    ]
    return {
        "achieved": (len(times) - 1) / (times[-1] - times[0]),
        "gap_median_ms": statistics.median(gaps) * 1000,
        "gap_stdev_ms": statistics.pstdev(gaps) * 1000,
        "gap_max_ms": max(gaps) * 1000,
        "max_in_any_1s": max(window_counts) if window_counts else float("nan"),
    }


async def main(reactor: Any, runs: int, jobs: int) -> None:  # the installed reactor
    print(
        f"python {sys.version.split()[0]}, runs={runs}, jobs per run={jobs}, one 1-segment push per job"
    )
    record = _TimedList()
    fake = FakeSmscFactory()
    fake.received = record
    port = reactor.listenTCP(0, fake, interface="127.0.0.1")
    peers = {
        "fake SMSC (in-process, loopback TCP)": smsc_endpoint(
            reactor, "127.0.0.1", port.getHost().port
        )
    }

    node = shutil.which("node")
    peer = None
    if node and (ROOT / "tests/peers/node_modules/smpp").is_dir():
        peer = _NodePeer()
        process = reactor.spawnProcess(
            peer,
            node,
            [node, "smsc.js", "--quiet"],
            env=dict(os.environ),
            path=str(ROOT / "tests/peers"),
        )
        peers["node-smpp 0.5.1 (separate process)"] = smsc_endpoint(
            reactor, "127.0.0.1", await peer.port
        )
    else:
        print("node or tests/peers/node_modules missing: node-smpp figures skipped")

    for name, endpoint in peers.items():
        for window in (1, 10):
            rates = [await submits_per_second(reactor, endpoint, window, jobs) for _ in range(runs)]
            print(
                f"{name}: window {window:2d}: median {statistics.median(rates):7.0f} submit_sm/s "
                f"(min {min(rates):.0f}, max {max(rates):.0f})"
            )

    figures = await paced(reactor, peers["fake SMSC (in-process, loopback TCP)"], record, 50.0, 4.0)
    print(
        "throughput 50/s, window 10, 200 submits to the fake SMSC: "
        f"achieved {figures['achieved']:.2f}/s, gap median {figures['gap_median_ms']:.2f} ms, "
        f"stdev {figures['gap_stdev_ms']:.2f} ms, max {figures['gap_max_ms']:.2f} ms, "
        f"at most {figures['max_in_any_1s']:.0f} in any 1 s window"
    )
    await port.stopListening()
    if peer is not None:
        process.signalProcess("TERM")
        await peer.ended


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, args.runs, args.jobs)))
