"""
Building client messages for session engine tests.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from mdmd.dm.commands import parse_spec
from mdmd.dm.session import Credentials, DeviceAuth, PendingCommand
from mdmd.syncml import auth
from mdmd.syncml.model import (
    Alert,
    Command,
    Cred,
    Item,
    Location,
    Meta,
    Replace,
    Results,
    Status,
    SyncHdr,
    SyncML,
)

SERVER_URL = "https://mdm.example.com/ManagementServer/MDM.svc"
DEVICE_ID = "7BA748C8703E4DF2A74A92984117346A"


def device_auth(scheme: str = "digest", nonce: bytes = b"\x01" * 16) -> DeviceAuth:
    return DeviceAuth(
        device_id=DEVICE_ID,
        client=Credentials("device-name", "device-secret", nonce),
        server=Credentials("mdmd", "server-secret", b"\x02" * 16),
        scheme=scheme,
    )


def pending(*specs: dict, start: int = 1, state: str = "queued") -> list[PendingCommand]:
    return [PendingCommand(seq, parse_spec(spec), state) for seq, spec in enumerate(specs, start)]


@dataclass
class Client:
    """
    The device side of a session, just enough to drive the engine.
    """

    session_id: str = "D"
    device: DeviceAuth = field(default_factory=device_auth)
    nonce: bytes = b"\x01" * 16
    msg_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    max_msg_size: int | None = None
    cmd_ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def header(self, cred: bool = True, scheme: str = "md5") -> SyncHdr:
        credential = None
        if cred and scheme == "md5":
            credential = Cred(
                meta=Meta(type=auth.AUTH_MD5, format="b64"),
                data=auth.md5_cred_data(
                    self.device.client.name, self.nonce, password=self.device.client.secret
                ),
            )
        elif cred and scheme == "basic":
            credential = Cred(
                meta=Meta(type=auth.AUTH_BASIC, format="b64"),
                data=auth.basic_cred_data(self.device.client.name, self.device.client.secret),
            )
        return SyncHdr(
            session_id=self.session_id,
            msg_id=str(next(self.msg_ids)),
            target=Location(loc_uri=SERVER_URL),
            source=Location(loc_uri=DEVICE_ID, loc_name=self.device.client.name),
            cred=credential,
            meta=Meta(max_msg_size=self.max_msg_size) if self.max_msg_size else None,
        )

    def next_id(self) -> str:
        return str(next(self.cmd_ids))

    def package1(self, cred: bool = True, login: str = "user", scheme: str = "md5", alert: str = "1201") -> SyncML:
        self.cmd_ids = itertools.count(2)
        body: list[Command] = [
            Alert(cmd_id=self.next_id(), data=alert),
            Alert(
                cmd_id=self.next_id(),
                data="1224",
                items=(Item(meta=Meta(type="com.microsoft/MDM/LoginStatus", format="chr"), data=login),),
            ),
            Replace(
                cmd_id=self.next_id(),
                items=tuple(
                    Item(source=Location(loc_uri=uri), data=value)
                    for uri, value in (
                        ("./DevInfo/DevId", DEVICE_ID),
                        ("./DevInfo/Man", "Contoso"),
                        ("./DevInfo/Mod", "Laptop 7"),
                        ("./DevInfo/DmV", "1.3"),
                        ("./DevInfo/Lang", "en-US"),
                        ("./Vendor/MSFT/DMClient/HWDevID", "AB" * 32),
                    )
                ),
            ),
        ]
        return SyncML(header=self.header(cred, scheme), body=tuple(body), final=True)

    def reply(self, *commands: Command, final: bool = True, cred: bool = False) -> SyncML:
        self.cmd_ids = itertools.count(1)
        return SyncML(header=self.header(cred), body=tuple(commands), final=final)

    def status_for(self, server_msg: SyncML, command: Command, code: int) -> Status:
        return Status(
            cmd_id=self.next_id(),
            msg_ref=server_msg.header.msg_id,
            cmd_ref=command.cmd_id,
            cmd=command.name,
            data=str(code),
        )

    def header_status(self, server_msg: SyncML, code: int = 200, chal=None) -> Status:
        return Status(
            cmd_id=self.next_id(),
            msg_ref=server_msg.header.msg_id,
            cmd_ref="0",
            cmd="SyncHdr",
            target_refs=(DEVICE_ID,),
            source_refs=(SERVER_URL,),
            chal=chal,
            data=str(code),
        )

    def results_for(self, server_msg: SyncML, get: Command, uri: str, data, more: bool = False, size: int | None = None) -> Results:
        meta = Meta(format="chr", size=size) if size is not None else Meta(format="chr")
        return Results(
            cmd_id=self.next_id(),
            msg_ref=server_msg.header.msg_id,
            cmd_ref=get.cmd_id,
            items=(Item(source=Location(loc_uri=uri), meta=meta, data=data, more_data=more),),
        )
