"""
Reading what the notifier recorded, for the notify tests.
"""

from __future__ import annotations

from typing import Any


def job_record(root: Any, device_id: str, seq: int) -> dict[str, Any]:
    """
    A read-only unit of work: a job's record as a plain dict.
    """
    job = root["pushes"][device_id].jobs[seq]
    job._p_activate()
    return dict(vars(job))
