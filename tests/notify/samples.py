"""
The package #0 of the specification's example, which the pkg0 and WAP tests build on.
"""

from __future__ import annotations

from mdmd.notify.pkg0 import Initiator, UIMode, build_package0

SERVER_ID = "com.mgmtsrv.manage"


def spec_example(**overrides: object) -> bytes:
    """
    The spec appendix example (version 11, background, client-initiated,
    session 0x1234, "com.mgmtsrv.manage") with password "srvpwd" and nonce
    "srvnonce".
    """
    args: dict = dict(
        server_id=SERVER_ID,
        password="srvpwd",
        nonce=b"srvnonce",
        session_id=0x1234,
        ui_mode=UIMode.BACKGROUND,
        initiator=Initiator.CLIENT,
    )
    args.update(overrides)
    return build_package0(**args)
