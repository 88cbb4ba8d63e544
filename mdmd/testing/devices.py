"""
Devices in a store as an enrollment (or an operator's registration) leaves them, without running one.

Tests of what happens after enrollment (pushes, DM sessions, the manhole)
need an enrolled device with DM credentials; enrolling one for real takes a
CA and a certificate request. L{add_device} is the unit of work that puts
one in the store directly, with fixed credentials a test can compute with:
a Windows device by default, or a classic OMA DM device (C{kind="omadm"}).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from mdmd.devices import lifecycle
from mdmd.devices.lifecycle import DeviceStatus
from mdmd.store.models import Device

__all__ = ["CLIENT_NONCE", "CLIENT_SECRET", "SERVER_NONCE", "SERVER_SECRET", "add_device"]

#: The secret and nonce every such device authenticates itself with (its client credential).
CLIENT_SECRET = "device-secret"
CLIENT_NONCE = b"\x01" * 16
#: The secret and nonce the server authenticates itself with to every such device.
SERVER_SECRET = "server-secret"
SERVER_NONCE = b"\x02" * 16


def add_device(
    root: MutableMapping[str, Any],
    device_id: str,
    msisdn: str = "+491701234567",
    *,
    server_name: str = "mdmd",
    server_id: str | None = None,
    kind: str = "windows",
    client_name: str = "device-name",
    client_auth_type: str = "DIGEST",
    server_auth_type: str = "DIGEST",
    status: str = DeviceStatus.ENROLLED.value,
    context: tuple[tuple[str, str], ...] = (),
) -> None:
    """
    A unit of work: a device with DM credentials like those the engine tests
    use (tests.dm.helpers.device_auth).

    @param server_name: the name of the server credential (w7 CLIENT, DMAcc SRVCRED AAuthName).
    @param server_id: its DM account's ServerID; by default the server name,
        as an enrollment leaves a Windows device (both are the provider id).
    @param kind: C{windows} or C{omadm}.
    """
    device = Device(device_id, 1000.0)
    device.status = status
    device.kind = kind
    device.msisdn = msisdn
    device.context = context
    device.dm_server_id = server_name if server_id is None else server_id
    device.dm_client_name = client_name
    device.dm_client_secret = CLIENT_SECRET
    device.dm_client_auth_type = client_auth_type
    device.dm_client_nonce = CLIENT_NONCE
    device.dm_server_auth_type = server_auth_type
    device.dm_server_name = server_name
    device.dm_server_secret = SERVER_SECRET
    device.dm_server_nonce = SERVER_NONCE
    root["devices"][device_id] = device
    lifecycle.track(root, device)
