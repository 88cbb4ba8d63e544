"""
The C{dm} service: DM settings for the endpoint, and a periodic sweep of
sessions whose deadline passed (devices that went away mid-session).

The sweep reads the deadline index (C{session_deadlines}, L{mdmd.store.due}),
never the whole of C{sessions}: only the entries whose minute has begun, a
batch per transaction, each session's real deadline checked again (a check-in
files a session once, at its first deadline, and the deadline moves on with
every message).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from mdmd.dm import queue as dm_queue
from mdmd.dm.checkin import DMSettings
from mdmd.dm.state import SessionState
from mdmd.store import due
from mdmd.store.migration import Pass
from mdmd.store.runner import StoreService

__all__ = ["DUE_INDEX", "DMService", "SessionSweep", "expire_sessions"]

log = Logger()

Root = MutableMapping[str, Any]

#: How often stale sessions are looked for.
SWEEP_INTERVAL = 600.0
#: How many index entries one sweep transaction takes at most.
SWEEP_BATCH = 200


@dataclass(frozen=True)
class SessionSweep:
    """
    What one batch of the sweep did.
    """

    dropped: int
    requeued: int
    #: where the next batch starts; None when nothing more is due
    cursor: due.Entry | None


def expire_sessions(
    root: Root, now: float, limit: int | None = SWEEP_BATCH, after: due.Entry | None = None
) -> SessionSweep:
    """
    Drop the sessions past their deadline among the next C{limit} due
    entries of the deadline index (from just after C{after}); their
    unanswered commands go back in the queue. A session not due yet is filed
    again at its deadline; an entry whose session is gone, or is filed
    elsewhere, is dropped.
    """
    index = root["session_deadlines"]
    sessions = root["sessions"]
    entries, cursor = due.due_entries(index, now, limit, after)
    dropped = requeued = 0
    for entry in entries:
        slot, device_id = entry
        record = sessions.get(device_id)
        if record is None or record.due_slot not in (None, slot):
            index.remove(entry)
            continue
        deadline = SessionState.from_dict(record.state).deadline
        if deadline >= now:
            filed = due.refile(index, entry, deadline)
            if record.due_slot != filed:
                record.due_slot = filed
            continue
        index.remove(entry)
        del sessions[device_id]
        dropped += 1
        queue = root["queues"].get(device_id)
        if queue is not None:
            requeued += len(dm_queue.requeue_unanswered(root, queue, now))
    return SessionSweep(dropped, requeued, cursor)



def _file_session(root: Root, device_id: str, session: Any) -> None:
    # due at once: the sweep reads the session's deadline and files it there
    root["session_deadlines"].add((0, device_id))


#: The store upgrade's pass filing every session in the deadline index.
DUE_INDEX = Pass("sessions", "sessions", _file_session)

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
        now = self.clock.seconds()
        dropped = requeued = 0
        cursor: due.Entry | None = None
        while True:
            batch = await self._store.transact(expire_sessions, now, SWEEP_BATCH, cursor)
            dropped += batch.dropped
            requeued += batch.requeued
            if batch.cursor is None or not self.running:
                break
            cursor = batch.cursor
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
