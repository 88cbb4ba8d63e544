"""
Crash consistency: the real daemon is killed with SIGKILL at random (seeded)
moments while emulated Windows devices enroll and run DM sessions and
commands are queued through mdmctl; it is restarted each time. Afterwards
every device's journal is held against the store (L{mdmd.testing.crash}):
nothing queued is lost, no acknowledged result is missing, nothing is
carried out again after a 200, every restart is clean.

The size comes from the environment, so the same test runs small in
C{make test} and at the issue's scale by command (C{make crash}):
C{MDMD_CRASH_DEVICES} (30), C{MDMD_CRASH_KILLS} (3), C{MDMD_CRASH_SEED}.
Figures are in docs/performance.md.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from mdmd.devices import records
from mdmd.testing.crash import audit_device, stored_commands
from mdmd.testing.daemon import DaemonProcess
from mdmd.testing.dmclient import DMClient, Post, windows_dm_client, windows_post
from mdmd.testing.windows.device import WindowsDevice

#: the subtree the test's commands address (inventory Gets are left out of the audit)
PREFIX = "./Vendor/MSFT/Crash/"
USER, PASSWORD = "crash@example.com", "crash-test-password"

log = Logger()


def _env(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


DEVICES = _env("MDMD_CRASH_DEVICES", 30)
KILLS = _env("MDMD_CRASH_KILLS", 3)
SEED = _env("MDMD_CRASH_SEED", 12)


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


@dataclass
class Member:
    """
    One device of the fleet: its emulator, its DM side once enrolled, and
    the targets mdmctl confirmed queued for it.
    """

    device: WindowsDevice
    client: DMClient | None = None
    post: Post | None = None
    confirmed: set[str] = field(default_factory=set)
    enrollments: int = 0
    failed_sessions: int = 0


class CrashTests(TestCase):
    timeout = 300 + 4 * DEVICES + 60 * KILLS

    def setUp(self) -> None:
        self.rng = random.Random(SEED)
        self.daemon = DaemonProcess(
            ca_key_size=2048,
            config="""
                [dm]
                inventory_windows = ./DevDetail/SwV
            """,
        )
        self.addCleanup(self.daemon.cleanup)
        self.stopping = False
        self.restarts: list[float] = []

    async def mdmctl(self, *args: str, stdin: str = "") -> Any:
        return await deferToThread(self.daemon.mdmctl, "--retry-for", "60", *args, stdin=stdin, timeout=120)

    # -- the fleet -------------------------------------------------------------------

    async def enroll(self, member: Member, deadline: float) -> None:
        """
        Enroll as Windows does after a failure: start again from the probe.
        """
        while True:
            member.enrollments += 1
            try:
                await member.device.enroll()
                break
            except Exception as e:
                if time.monotonic() > deadline:
                    self.fail(f"{member.device.device_id} could not enroll: {e!r}")
                await member.device.close()
                await sleep(self.rng.uniform(0.2, 1.0))
        device = member.device
        tree = {f"{PREFIX}G{k}": f"{device.device_id}-g{k}" for k in range(200)}
        member.client = windows_dm_client(device, tree=tree)
        member.post = windows_post(device)

    async def run_sessions(self, member: Member) -> None:
        """
        Poll like a device: a session, a pause, another; a session that
        breaks (the daemon died) is abandoned, the next one starts afresh.
        """
        assert member.client is not None and member.post is not None
        while not self.stopping:
            try:
                await member.client.session(member.post)
            except Exception:
                member.failed_sessions += 1
                await member.device.close()
            await sleep(self.rng.uniform(0.2, 1.0))

    async def settle(self, member: Member) -> None:
        """
        Sessions until one brings nothing more.
        """
        assert member.client is not None and member.post is not None
        for _ in range(20):
            try:
                log_ = await member.client.session(member.post)
            except Exception:
                await member.device.close()
                await sleep(0.5)
                continue
            if not log_.received:
                return
        self.fail(f"{member.device.device_id} kept receiving commands")

    async def queue_rounds(self, members: list[Member], rounds: int, done: list[bool]) -> None:
        """
        Queue one command per round for every enrolled device: a Replace of
        a new node, or a Get of a node the device has.
        """
        k = 0
        while k < rounds or not done:
            enrolled = [m for m in members if m.client is not None]
            if enrolled:
                target = f"{PREFIX}R{k}" if k % 2 == 0 else f"{PREFIX}G{k}"
                verb: tuple[str, ...] = ("replace", target, "--data", f"r{k}") if k % 2 == 0 else ("get", target)
                ids = ",".join(m.device.device_id for m in enrolled)
                result = await self.mdmctl("cmd", ids, *verb)
                if result.returncode == 0:
                    for member in enrolled:
                        member.confirmed.add(target)
                else:
                    log.warn("round {k} not confirmed: {err}", k=k, err=result.stderr.strip())
                k += 1
            await sleep(self.rng.uniform(0.3, 1.0))

    async def kill_and_restart(self, kills: int, done: list[bool]) -> None:
        for _ in range(kills):
            await sleep(self.rng.uniform(2.0, 6.0))
            await deferToThread(self.daemon.kill)
            await sleep(self.rng.uniform(0.0, 0.5))
            started = time.monotonic()
            await deferToThread(self.daemon.start)
            self.restarts.append(time.monotonic() - started)
            await self.assert_clean_start()
        done.append(True)

    async def assert_clean_start(self) -> None:
        """
        The daemon just started logged that it is ready, and nothing alarming.
        """
        for _ in range(100):  # the addresses file is written just before the line
            text = self.daemon.log_since_start()
            if "mdmd ready" in text:
                break
            await sleep(0.05)
        self.assertIn("mdmd ready", text)
        for marker in ("Traceback", "#critical]", "Unhandled"):
            self.assertNotIn(marker, text)

    # -- the test ----------------------------------------------------------------------

    async def test_kill_during_sessions_and_enrollments(self) -> None:
        """
        SIGKILL at random moments during concurrent DM sessions, enrollments
        and mdmctl requests: every restart is clean; every device's journal
        agrees with the store (nothing lost, no acknowledged result missing,
        nothing carried out again after a 200); every device holds the
        certificate its record names; nothing is left pending.
        """
        started = time.monotonic()
        self.daemon.start()
        self.daemon.port = self.daemon.https_port
        added = await self.mdmctl("user", "add", USER, stdin=PASSWORD + "\n")
        self.assertEqual(added.returncode, 0, added.stderr)
        root = self.daemon.ca_certificate()
        keys = await gatherResults(
            [deferToThread(rsa.generate_private_key, 65537, 2048) for _ in range(DEVICES)]
        )
        members = [
            Member(WindowsDevice(reactor, self.daemon.discovery_url, [root], user=USER, password=PASSWORD, key=key))
            for key in keys
        ]
        for member in members:
            self.addCleanup(member.device.close)
        deadline = time.monotonic() + self.timeout / 2
        limit = DeferredSemaphore(8)

        # half the fleet enrolls in calm, the other half during the kills
        first, second = members[: DEVICES // 2], members[DEVICES // 2 :]
        await gatherResults([limit.run(self.enroll, m, deadline) for m in first])
        sessions = [Deferred.fromCoroutine(self.run_sessions(m)) for m in first]

        async def enroll_then_poll(member: Member) -> None:
            await sleep(self.rng.uniform(0.0, 4.0 * KILLS))  # spread over the kills
            await limit.run(self.enroll, member, deadline)
            sessions.append(Deferred.fromCoroutine(self.run_sessions(member)))

        killed: list[bool] = []
        chaos = [
            Deferred.fromCoroutine(self.kill_and_restart(KILLS, killed)),
            Deferred.fromCoroutine(self.queue_rounds(members, max(8, 3 * KILLS), killed)),
            *(Deferred.fromCoroutine(enroll_then_poll(m)) for m in second),
        ]
        await gatherResults(chaos, consumeErrors=True)
        self.stopping = True
        await gatherResults(sessions, consumeErrors=True)
        await gatherResults([limit.run(self.settle, m) for m in members], consumeErrors=True)
        code = await deferToThread(self.daemon.stop)
        self.assertIn(code, (0, -15))
        whole_log = self.daemon.log()
        self.assertNotIn("Traceback", whole_log)

        def read(store_root: Any) -> list[tuple[Any, Any]]:
            return [
                (records.lookup_device(store_root, m.device.device_id), stored_commands(store_root, m.device.device_id, PREFIX))
                for m in members
            ]

        facts = self.daemon.run_offline(read)
        problems: list[str] = []
        executions = acknowledged = commands = 0
        for member, (device, stored) in zip(members, facts):
            assert member.client is not None and member.device.certificate is not None
            ident = member.device.device_id
            if device is None or device.status != "enrolled":
                problems.append(f"{ident}: not enrolled in the store ({device and device.status})")
            elif device.cert_serial != member.device.certificate.serial_number:
                problems.append(f"{ident}: the store names another certificate than the device holds")
            problems += audit_device(ident, member.client.journal, stored, member.confirmed, PREFIX)
            mine = [e for e in member.client.journal if e.target.startswith(PREFIX)]
            executions += len(mine)
            acknowledged += sum(e.acknowledged for e in mine)
            commands += len(stored)
        pending = self.daemon.run_offline(
            lambda r: sum(len(r["queues"][m.device.device_id].pending) for m in members if m.device.device_id in r["queues"])
        )
        summary = (
            f"{DEVICES} devices, {KILLS} kills (seed {SEED}): {commands} commands, {executions} executions "
            f"({acknowledged} acknowledged), {sum(m.enrollments for m in members)} enrollment attempts, "
            f"{sum(m.failed_sessions for m in members)} broken sessions, restarts "
            f"{', '.join(f'{s:.1f}s' for s in self.restarts)}, {time.monotonic() - started:.0f}s in all"
        )
        log.info("crash test: {summary}", summary=summary)
        self.assertEqual(problems, [], summary)
        self.assertEqual(pending, 0, summary)
        self.assertEqual(len(self.restarts), KILLS)
        self.assertGreater(commands, DEVICES)
