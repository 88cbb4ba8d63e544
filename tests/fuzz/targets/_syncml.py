"""
SyncML messages for the XML and WBXML seeds: what Windows, the emulated
clients and the server send.
"""

from __future__ import annotations

from mdmd.syncml import xml
from mdmd.syncml.model import SyncML
from mdmd.testing import syncml
from mdmd.testing.dmclient import DMClient
from mdmd.testing.omadm import AccountCredential, DMAccount, OMADMDevice

__all__ = ["messages"]


def messages() -> dict[str, SyncML]:
    client = DMClient(
        device_id=syncml.DEVICE_ID,
        server_url=syncml.SERVER_URL,
        client_name="client",
        client_secret="secret",
        client_nonce=b"0123456789abcdef",
        max_msg_size=65536,
    )
    account = DMAccount(
        server_id="com.example.mdm",
        server_uri="https://mdm.example.com/omadm",
        client=AccountCredential("DIGEST", "IMEI:490154203237518", "client-secret", b"nonce"),
        server=AccountCredential("DIGEST", "com.example.mdm", "server-secret", b"snonce"),
    )
    device = OMADMDevice("IMEI:490154203237518", account, random=lambda n: b"r" * n)
    return {
        "windows-package1": xml.decode(syncml.WINDOWS_PACKAGE1),
        "server-message": syncml.server_message(),
        "large-results": syncml.large_results(2048, 4),
        "client-package1": client.package1("1", 1),
        "client-package1-1200": client.package1("2A", 1, "1200"),
        "classic-package1": xml.decode(device.start()),
    }
