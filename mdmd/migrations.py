"""
What this mdmd needs its store to hold, in one list: the counter families
each domain keeps (created before anything is served, so that no hot unit
of work creates one) and the steps that bring an older store's layout up to
L{mdmd.store.models.SCHEMA_VERSION}. L{mdmd.tap} gives it to the store
service, which applies it at start-up (L{mdmd.store.migration.upgrade}).
"""

from __future__ import annotations

from mdmd.devices import lifecycle
from mdmd.dm import queue, sweeper
from mdmd.enroll import users
from mdmd.notify import jobs
from mdmd.pki import registry
from mdmd.store.migration import Schema, Step

__all__ = ["FAMILIES", "SCHEMA"]

#: Every counter family, in the order status shows them.
FAMILIES = (
    lifecycle.STATUSES,
    lifecycle.KINDS,
    registry.STATUSES,
    queue.STATES,
    jobs.STATE_COUNTS,
    users.COUNTS,
)

SCHEMA = Schema(
    families=FAMILIES,
    steps=(
        Step(
            2,
            "counters and indexes",
            (lifecycle.RECOUNT, registry.RECOUNT, queue.RECOUNT, jobs.RECOUNT, users.RECOUNT),
        ),
        Step(3, "due indexes", (sweeper.DUE_INDEX, jobs.DUE_INDEX)),
    ),
)
