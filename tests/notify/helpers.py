"""
Devices in a test store, ready to be woken.
"""

from __future__ import annotations

from typing import Any

from mdmd.store.models import Device

SERVER_SECRET = "server-secret"
SERVER_NONCE = b"\x02" * 16


def add_device(
    root: Any,
    device_id: str,
    msisdn: str = "+491701234567",
    *,
    server_name: str = "mdmd",
    status: str = "enrolled",
    context: tuple[tuple[str, str], ...] = (),
) -> None:
    """
    A unit of work: an enrolled device with DM credentials like those the
    engine tests use (tests.dm.helpers.device_auth).
    """
    device = Device(device_id, 1000.0)
    device.status = status
    device.msisdn = msisdn
    device.context = context
    device.dm_client_name = "device-name"
    device.dm_client_secret = "device-secret"
    device.dm_client_nonce = b"\x01" * 16
    device.dm_server_name = server_name
    device.dm_server_secret = SERVER_SECRET
    device.dm_server_nonce = SERVER_NONCE
    root["devices"][device_id] = device


def job_record(root: Any, device_id: str, seq: int) -> dict[str, Any]:
    """
    A read-only unit of work: a job's record as a plain dict.
    """
    job = root["pushes"][device_id].jobs[seq]
    job._p_activate()
    return dict(vars(job))
