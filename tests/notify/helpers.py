"""
Shared by the notify tests: jobs as the notifier hands them over, and what it recorded.
"""

from __future__ import annotations

from typing import Any

from mdmd.notify import jobs
from mdmd.notify.jobs import OutgoingPush, PushSettings
from mdmd.testing.devices import add_device
from mdmd.testing.randomness import fixed_random
from mdmd.testing.store import memory_store_service

#: A server id that makes package #0 need three SMS.
LONG_ID = "s" * 250


def job_record(root: Any, device_id: str, seq: int) -> dict[str, Any]:
    """
    A read-only unit of work: a job's record as a plain dict.
    """
    job = root["pushes"][device_id].jobs[seq]
    job._p_activate()
    return dict(vars(job))


def queued_job(device_id: str = "D1", **device: Any) -> OutgoingPush:
    """
    A job as the notifier hands it over: enqueued in a fresh store.
    """
    service = memory_store_service()
    assert service.store is not None
    service.store.run(add_device, device_id, **device)
    (job,) = service.store.run(jobs.enqueue, [device_id], PushSettings(), 1.0, fixed_random(0x1234))
    service.stopService()
    return job
