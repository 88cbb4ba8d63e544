"""
WNS transport throughput: raw notifications per second to the fake WNS for
1,000 devices, with kept-alive connections or a new one per notification,
at a configurable concurrency; the same through the notifier (jobs queued
and recorded in an in-memory store); and what the token cache saves.

    .venv/bin/python bench/bench_wns.py [--runs 3] [--devices 1000] [--concurrency 50]

The fake WNS (mdmd.testing.wns) runs in its own process (python -m
mdmd.testing.wns), over real loopback HTTPS with its throwaway CA, so the
figures are this process's: the transport (token cache, Twisted's HTTP/1.1
client, TLS) on one core. CPU seconds of this process are printed beside
the wall-clock rates. Prints medians of --runs runs; not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.web.client import BrowserLikePolicyForHTTPS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mdmd.notify.channels import Channel  # noqa: E402
from mdmd.notify.jobs import OutgoingPush, PushInfo, PushSettings, push_counts  # noqa: E402
from mdmd.notify.notifier import Notifier  # noqa: E402
from mdmd.notify.routes import PushRoutes, Route  # noqa: E402
from mdmd.notify.smpp_session import Address  # noqa: E402
from mdmd.notify.transport import Sent  # noqa: E402
from mdmd.notify.wns import WnsSettings, WnsTransport  # noqa: E402
from mdmd.notify.wns_http import AgentClient  # noqa: E402
from mdmd.notify.wns_protocol import TokenCache, TokenFlow  # noqa: E402
from mdmd.testing.devices import add_device  # noqa: E402
from mdmd.testing.push import FakePushTransport  # noqa: E402
from mdmd.testing.store import memory_store_service  # noqa: E402

CLIENT, SECRET = "ms-app://s-1-15-2-1", "secret"


class _FakeWnsProcess(ProcessProtocol):
    def __init__(self) -> None:
        self.ready: defer.Deferred[dict[str, str]] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self._buffer = b""

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        if b"\n" in self._buffer and not self.ready.called:
            self.ready.callback(json.loads(self._buffer.split(b"\n")[0]))

    def processEnded(self, reason: object) -> None:
        self.ended.callback(None)


def channel(index: int) -> str:
    return f"https://db5p.notify.windows.com/w/?token=chan-{index}"


def job(index: int, now: float) -> OutgoingPush:
    info = PushInfo(
        device_id=f"D{index}", seq=1, kind="notification", state="queued", session_id=None, msisdn="",
        segments=0, via=None, spool_file=None, message_ids=(None,), receipts=(None,), attempts=0, error=None,
        created_at=now, updated_at=now, expires_at=now + 3600, submitted_at=None, delivered_at=None,
        answered_at=None, finished_at=None, route="wns", channel_uri=channel(index),
    )
    return OutgoingPush(info, Address("", 0, 0), ())


def transport(reactor: Any, fake: dict[str, str], concurrency: int, persistent: bool) -> WnsTransport:
    with open(fake["ca_file"], "rb") as f:
        trust = trustRootFromCertificates([Certificate.loadPEM(f.read())])
    http = AgentClient(
        reactor, tls=BrowserLikePolicyForHTTPS(trustRoot=trust), connections=concurrency, persistent=persistent
    )
    settings = WnsSettings(
        TokenFlow.CLASSIC, CLIENT, "", fake["token_url"], notify_url=fake["url"], concurrency=concurrency
    )
    carrier = WnsTransport(settings, http, reactor, secret=lambda: SECRET, close=http.close)
    carrier.start()
    return carrier


async def sends_per_second(reactor: Any, carrier: WnsTransport, devices: int) -> tuple[float, float]:
    """
    (notifications/s, CPU ms per notification) for one batch sent at once.
    """
    await carrier.tokens.get()  # the token is not what is measured here
    now = reactor.seconds()
    jobs = [job(i, now) for i in range(devices)]
    cpu, wall = time.process_time(), time.perf_counter()
    outcomes = await defer.gatherResults([carrier.send(j) for j in jobs])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    refused = [o for o in outcomes if not isinstance(o, Sent)]
    if refused:
        raise RuntimeError(f"{len(refused)} not sent, e.g. {refused[0]}")
    return devices / wall, cpu * 1000 / devices


async def through_the_notifier(reactor: Any, carrier: WnsTransport, devices: int) -> tuple[float, float]:
    """
    (jobs/s, CPU ms per job): queued by one push for every device, sent,
    and recorded as submitted, in an in-memory store (run on this thread).
    """
    store = memory_store_service()
    assert store.store is not None

    def populate(root: Any) -> None:
        for index in range(devices):
            add_device(root, f"D{index}")
            root["devices"][f"D{index}"].wns_channel = Channel(uri=channel(index), status=0, since=reactor.seconds()).as_plain()

    store.store.run(populate)
    routes = PushRoutes({Route.SMS: FakePushTransport("smpp"), Route.WNS: carrier})
    notifier = Notifier(store, PushSettings(expiry=3600.0), reactor, routes=routes)
    notifier.startService()
    await carrier.tokens.get()
    cpu, wall = time.process_time(), time.perf_counter()
    await notifier.push([f"D{i}" for i in range(devices)])
    while store.store.read(push_counts)["submitted"] < devices:
        await task.deferLater(reactor, 0.05, lambda: None)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await notifier.stopService()
    store.stopService()
    return devices / wall, cpu * 1000 / devices


async def token_costs(reactor: Any, carrier: WnsTransport, fetches: int) -> tuple[float, float]:
    """
    (µs per cached token, ms per token fetched from the fake's token endpoint).
    """
    cache = TokenCache()
    await carrier.tokens.get()
    assert carrier.tokens.cache.token is not None
    cache.got(carrier.tokens.cache.token)
    now = reactor.seconds()
    started = time.perf_counter()
    for _ in range(100_000):
        cache.current(now)
    cached = (time.perf_counter() - started) * 1e6 / 100_000
    started = time.perf_counter()
    for _ in range(fetches):
        carrier.tokens.cache.token = None
        await carrier.tokens.get()
    fetched = (time.perf_counter() - started) * 1000 / fetches
    return cached, fetched


async def main(reactor: Any, args: argparse.Namespace) -> None:
    peer = _FakeWnsProcess()
    process = reactor.spawnProcess(
        peer,
        sys.executable,
        [sys.executable, "-m", "mdmd.testing.wns", "--channels", str(args.devices), "--client", f"{CLIENT}={SECRET}"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        fake = await peer.ready
        print(f"fake WNS at {fake['url']} (its own process); {args.devices} devices, {args.runs} runs")
        rows: list[tuple[str, list[tuple[float, float]]]] = []
        for label, persistent, concurrency, devices in [
            (f"kept-alive, concurrency {args.concurrency}", True, args.concurrency, args.devices),
            ("kept-alive, concurrency 10", True, 10, args.devices),
            (f"new connection each, concurrency {args.concurrency}", False, args.concurrency, args.devices // 4),
        ]:
            results = []
            for _ in range(args.runs):
                carrier = transport(reactor, fake, concurrency, persistent)
                results.append(await sends_per_second(reactor, carrier, devices))
                await carrier.stop()
            rows.append((f"transport, {label} ({devices} notifications)", results))
        results = []
        for _ in range(args.runs):
            carrier = transport(reactor, fake, args.concurrency, True)
            results.append(await through_the_notifier(reactor, carrier, args.devices))
            await carrier.stop()
        rows.append((f"notifier + memory store, concurrency {args.concurrency}", results))
        print(f"{'what':<72} {'median/s':>9} {'min/s':>8} {'max/s':>8} {'CPU ms each':>12} {'per CPU-s':>10}")
        for label, found in rows:
            rates = [r for r, _ in found]
            cpu = statistics.median(c for _, c in found)
            print(
                f"{label:<72} {statistics.median(rates):>9.0f} {min(rates):>8.0f} {max(rates):>8.0f} "
                f"{cpu:>12.3f} {1000 / cpu:>10.0f}"
            )
        carrier = transport(reactor, fake, args.concurrency, True)
        cached, fetched = await token_costs(reactor, carrier, 50)
        await carrier.stop()
        print(f"token: {cached:.2f} µs from the cache, {fetched:.2f} ms fetched (form POST, JSON answer, kept-alive)")
    finally:
        process.signalProcess("TERM")
        await peer.ended


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    arguments = parser.parse_args()
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, arguments)))
