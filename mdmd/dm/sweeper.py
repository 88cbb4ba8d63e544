"""
The C{dm} service: DM settings for the endpoint, and a periodic sweep of
sessions whose deadline passed (devices that went away mid-session).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from mdmd.dm import queue as dm_queue
from mdmd.dm.checkin import DMSettings
from mdmd.dm.state import SessionState
from mdmd.store.runner import StoreService

__all__ = ["DMService", "expire_sessions"]

log = Logger()

Root = MutableMapping[str, Any]

#: How often stale sessions are looked for.
SWEEP_INTERVAL = 600.0


def expire_sessions(root: Root, now: float) -> tuple[int, int]:
    """
    Drop sessions past their deadline; their unanswered commands go back in the queue.

    Returns (sessions dropped, commands requeued).
    """
    dropped = requeued = 0
    for device_id, record in list(root["sessions"].items()):
        if SessionState.from_dict(record.state).deadline >= now:
            continue
        del root["sessions"][device_id]
        dropped += 1
        queue = root["queues"].get(device_id)
        if queue is not None:
            requeued += len(dm_queue.requeue_unanswered(root, queue, now))
    return dropped, requeued


class DMService(Service):
    """
    Owns the DM settings and sweeps stale sessions every ten minutes.
    """

    name = "dm"

    def __init__(self, settings: DMSettings, store: StoreService, clock: IReactorTime) -> None:
        self.clock = clock
        self.settings = settings
        self._store = store
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self.sweep)
        self._loop.clock = self.clock
        self._loop.start(SWEEP_INTERVAL, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    async def _sweep(self) -> None:
        dropped, requeued = await self._store.transact(expire_sessions, self.clock.seconds())
        if dropped:
            log.info(
                "expired {dropped} stale DM session(s), {requeued} command(s) back in the queue",
                dropped=dropped,
                requeued=requeued,
            )

    def sweep(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._sweep()).addErrback(
            lambda f: log.failure("sweeping DM sessions failed", f)
        )


def dm_facts(root: Root, device_id: str) -> dict[str, Any] | None:
    """
    What DM sessions learnt about a device, and its queue at a glance (plain JSON values).
    """
    device = root["devices"].get(device_id)
    if device is None:
        return None
    counts: dict[str, int] = {}
    queue = root["queues"].get(device_id)
    if queue is not None:
        for command in queue.commands.values():
            counts[command.state] = counts.get(command.state, 0) + 1
    session = root["sessions"].get(device_id)
    return {
        "devinfo": dict(device.devinfo or {}),
        "inventory": dict(device.inventory or {}),
        "login_status": device.login_status,
        "alerts": list(device.alerts),
        "header_events": list(device.header_events),
        "login_failures": dict(device.dm_login_failures) if device.dm_login_failures else None,
        "commands": counts,
        "session": None
        if session is None
        else {k: session.state[k] for k in ("session_id", "phase", "started_at", "deadline")},
    }
