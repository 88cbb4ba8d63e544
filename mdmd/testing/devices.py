"""
Devices in a store as an enrollment leaves them, without running one.

Tests of what happens after enrollment (pushes, DM sessions, the manhole)
need an enrolled device with DM credentials; enrolling one for real takes a
CA and a certificate request. L{add_device} is the unit of work that puts
one in the store directly, with fixed credentials a test can compute with.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from mdmd.devices.lifecycle import DeviceStatus
from mdmd.store.models import Device

__all__ = ["SERVER_NONCE", "SERVER_SECRET", "add_device"]

#: The secret and nonce the server authenticates itself with to every such device.
SERVER_SECRET = "server-secret"
SERVER_NONCE = b"\x02" * 16


def add_device(
    root: MutableMapping[str, Any],
    device_id: str,
    msisdn: str = "+491701234567",
    *,
    server_name: str = "mdmd",
    status: str = DeviceStatus.ENROLLED.value,
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
