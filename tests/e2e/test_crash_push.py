"""
An SMSC outage with pushes queued: the real daemon pushes through the fake
SMSC (L{mdmd.testing.smsc}, which records every PDU it receives); the SMSC
drops its links and refuses connections for a while, pushes are asked for
meanwhile, the daemon is killed with SIGKILL and restarted during the
outage; once the SMSC is back, every job the store holds reached it exactly
once (L{mdmd.testing.crash.audit_pushes}).

The outage lasts C{MDMD_CRASH_OUTAGE} seconds (8 in C{make test}; several
minutes with C{make crash}), for C{MDMD_CRASH_DEVICES} devices.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort, ITCPTransport
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from mdmd.notify import smpp_pdu as p
from mdmd.testing.crash import Message, audit_pushes
from mdmd.testing.daemon import DaemonProcess
from mdmd.testing.devices import add_device
from mdmd.testing.smsc import FakeSmscFactory, Receipts, Scenario

log = Logger()

DEVICES = int(os.environ.get("MDMD_CRASH_DEVICES") or 30)
OUTAGE = float(os.environ.get("MDMD_CRASH_OUTAGE") or 8)


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class SmscOutageTests(TestCase):
    timeout = 240 + 2 * OUTAGE + DEVICES

    def setUp(self) -> None:
        self.smsc = FakeSmscFactory(Scenario(receipts=Receipts.TLV))
        self.port: IListeningPort | None = None
        self.smsc_port = self.listen(0)
        self.addCleanup(self.hang_up)
        self.daemon = DaemonProcess(
            config=f"""
                [smpp]
                host = 127.0.0.1
                port = {self.smsc_port}
                system_id = mdmd
                password = secret
                source_addr = MDMD
                reconnect_max_delay = 2
            """
        )
        self.addCleanup(self.daemon.cleanup)
        self.ids = [f"PUSH-{n:04}" for n in range(DEVICES)]
        self.daemon.write_config()

        def devices(root: Any) -> None:
            for n, device_id in enumerate(self.ids):
                add_device(root, device_id, msisdn=f"+4917000{n:05}")

        self.daemon.run_offline(devices)

    def listen(self, port: int) -> int:
        """
        The SMSC takes connections (again) on C{port}; the port it bound.
        """
        listening = self.successResultOf(TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(self.smsc))
        self.port = listening
        address = listening.getHost()
        assert isinstance(address, IPv4Address)
        return address.port

    async def hang_up(self) -> None:
        """
        The outage: refuse connections and drop every link.
        """
        for connection in self.smsc.connections:
            if connection.transport is not None:
                cast(ITCPTransport, connection.transport).abortConnection()
        port, self.port = self.port, None
        if port is not None:
            await maybeDeferred(port.stopListening)

    async def push(self, device_ids: list[str]) -> list[tuple[str, int]]:
        result = await deferToThread(self.daemon.mdmctl, "--retry-for", "60", "push", "--json", *device_ids)
        self.assertEqual(result.returncode, 0, result.stderr)
        return [(job["device_id"], job["seq"]) for job in json.loads(result.stdout)["jobs"]]

    async def settled(self, count: int, timeout: float) -> None:
        """
        Wait until the SMSC accepted C{count} messages and nothing more moves for a second.
        """
        deadline = time.monotonic() + timeout
        while len(self.smsc.accepted) < count:
            if time.monotonic() > deadline:
                self.fail(f"the SMSC accepted {len(self.smsc.accepted)} of {count} messages")
            await sleep(0.2)
        await sleep(1.0)

    async def test_outage_loses_nothing_sends_nothing_twice(self) -> None:
        """
        Pushes before, during (across a SIGKILL and restart) and after an
        SMSC outage: each job the store holds reached the SMSC exactly once,
        none was lost, every restart was clean, and the jobs end submitted
        or delivered.
        """
        started = time.monotonic()
        await deferToThread(self.daemon.start)
        half = DEVICES // 2
        queued = await self.push(self.ids[:half])
        await self.settled(len(queued), 60)

        await self.hang_up()
        outage = time.monotonic()
        queued += await self.push(self.ids[half:])
        queued += await self.push(self.ids[: half // 2])
        await sleep(OUTAGE / 2)
        await deferToThread(self.daemon.kill)
        await deferToThread(self.daemon.start)
        for _ in range(100):  # the addresses file is written just before the line
            if "mdmd ready" in self.daemon.log_since_start():
                break
            await sleep(0.05)
        restart_log = self.daemon.log_since_start()
        self.assertIn("mdmd ready", restart_log)
        self.assertNotIn("Traceback", restart_log)
        queued += await self.push(self.ids[half // 2 : half])
        await sleep(max(0.0, outage + OUTAGE - time.monotonic()))
        self.listen(self.smsc_port)
        back = time.monotonic()
        await self.settled(len(queued), 60 + OUTAGE)
        recovered = time.monotonic() - back
        queued += await self.push(self.ids[:3])
        await self.settled(len(queued), 60)

        code = await deferToThread(self.daemon.stop)
        self.assertIn(code, (0, -15))
        self.assertNotIn("Traceback", self.daemon.log())

        def jobs(root: Any) -> dict[tuple[str, int], tuple[tuple[Message, ...], str]]:
            found = {}
            for device_id in self.ids:
                for seq, job in root["pushes"][device_id].jobs.items():
                    segments = tuple((job.destination[0], segment[2]) for segment in job.segments)
                    found[(device_id, seq)] = (segments, job.state)
            return found

        stored = self.daemon.run_offline(jobs)
        received = [(submit.destination_addr, submit.short_message) for _, submit in self.smsc.accepted]
        submits = [pdu for pdu in self.smsc.received if isinstance(pdu, p.SubmitSm)]
        problems = audit_pushes({k: v[0] for k, v in stored.items()}, received, queued)
        summary = (
            f"{DEVICES} devices, {len(queued)} pushes, outage {OUTAGE:.0f}s with a SIGKILL: "
            f"{len(submits)} submit_sm received, {len(self.smsc.accepted)} accepted, "
            f"all sent {recovered:.1f}s after the SMSC came back, {time.monotonic() - started:.0f}s in all"
        )
        log.info("SMSC outage test: {summary}", summary=summary)
        self.assertEqual(problems, [], summary)
        self.assertEqual(len(submits), len(self.smsc.accepted), summary)
        self.assertEqual({state for _, state in stored.values()} - {"submitted", "delivered"}, set())
