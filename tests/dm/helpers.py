"""
Building client messages for session engine tests, and a harness that runs the engine.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Callable, TypeVar

from mdmd.dm.authentication import AuthScheme, Credentials
from mdmd.dm.commands import parse_spec
from mdmd.dm.authentication import LoginFailures
from mdmd.dm.effects import (
    AuthenticationFailed,
    ClientNonce,
    CommandAnswered,
    CommandFailed,
    CommandRequeued,
    CommandSent,
    DeviceAuth,
    LoginFailuresCleared,
    PendingCommand,
    ServerNonce,
    Settings,
)
from mdmd.dm.engine import Outcome, handle, starts_new_session
from mdmd.dm.state import LastAnswer, SessionState
from mdmd.syncml import auth
from mdmd.syncml.codec import DS_XML_CODEC, XML_CODEC, Codec
from mdmd.testing.omadm import AccountCredential, DMAccount, OMADMDevice, SessionLog
from mdmd.syncml.model import (
    Add,
    Alert,
    Chal,
    Command,
    Copy,
    Cred,
    Data,
    Delete,
    Exec,
    Get,
    Item,
    Location,
    Meta,
    Replace,
    Results,
    Status,
    SyncHdr,
    SyncML,
)

E = TypeVar("E")

SERVER_URL = "https://mdm.example.com/ManagementServer/MDM.svc"
DEVICE_ID = "7BA748C8703E4DF2A74A92984117346A"


def device_auth(scheme: AuthScheme = AuthScheme.DIGEST, nonce: bytes = b"\x01" * 16) -> DeviceAuth:
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

    def header_status(self, server_msg: SyncML, code: int = 200, chal: Chal | None = None) -> Status:
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

    def results_for(self, server_msg: SyncML, get: Command, uri: str, data: Data, more: bool = False, size: int | None = None) -> Results:
        meta = Meta(format="chr", size=size) if size is not None else Meta(format="chr")
        return Results(
            cmd_id=self.next_id(),
            msg_ref=server_msg.header.msg_id,
            cmd_ref=get.cmd_id,
            items=(Item(source=Location(loc_uri=uri), meta=meta, data=data, more_data=more),),
        )


NOW = 1_800_000_000.0
GET_SWV = {"verb": "Get", "target": "./DevDetail/SwV"}
REPLACE = {"verb": "Replace", "target": "./Vendor/MSFT/Policy/Config/Camera/AllowCamera", "data": "0", "format": "int"}


class Harness:
    """
    Runs the engine message after message, applying its effects the way the adapter does.
    """

    def __init__(
        self, *specs: dict, codec: Codec = XML_CODEC, settings: Settings = Settings(), scheme: AuthScheme = AuthScheme.DIGEST
    ) -> None:
        self.device = device_auth(scheme)
        self.client = Client(device=self.device)
        self.codec = codec
        self.settings = settings
        self._state: SessionState | None = None
        self.commands = {c.seq: c for c in pending(*specs)}
        self.records: dict[int, dict[str, Any]] = {seq: {"state": "queued"} for seq in self.commands}
        self.now = NOW
        self.outcomes: list[Outcome] = []
        #: Our answer to the last message, kept beside the state (as the store does).
        self.last_answer: LastAnswer | None = None
        #: Every message sent, as bytes, with its x-syncml-hmac header.
        self.sent_raw: list[tuple[bytes, str | None]] = []

    @property
    def state(self) -> SessionState:
        """
        The session's state after the last message (there is none before the first).
        """
        assert self._state is not None, "no message sent yet"
        return self._state

    @state.setter
    def state(self, value: SessionState) -> None:
        self._state = value

    def resend(self, back: int = 1) -> SyncML:
        """
        Send the bytes (and MAC header) of an earlier message again: the last one by default.
        """
        raw, hmac_header = self.sent_raw[-back]
        return self.send(None, hmac_header=hmac_header, raw=raw)

    def send(
        self, message: SyncML | None, hmac_header: str | None = None, body: bytes = b"", raw: bytes | None = None
    ) -> SyncML:
        # What crosses the wire is bytes: encode and decode with the codec under test.
        if raw is None:
            if not body:
                assert message is not None, "send() needs a message, a body or raw bytes"
                body = self.codec.encode(message)
            raw = body
        body = raw
        self.sent_raw.append((raw, hmac_header))
        message = self.codec.decode(raw)
        if starts_new_session(message, self._state, self.now, self.last_answer, body, hmac_header):
            for record in self.records.values():  # the adapter's requeue_unanswered
                if record["state"] == "sent":
                    record["state"] = "queued"
        pending_commands = [
            replace(c, state=self.records[c.seq]["state"])
            for c in self.commands.values()
            if self.records[c.seq]["state"] in ("queued", "sent")
        ]
        outcome = handle(
            message,
            self.codec,
            device=self.device,
            state=self._state,
            commands=pending_commands,
            now=self.now,
            settings=self.settings,
            body=body,
            hmac_header=hmac_header,
            random=lambda n: bytes([len(self.outcomes) + 7]) * n,
            last=self.last_answer,
        )
        self.now += 1
        self.state = SessionState.from_dict(outcome.state.to_dict())
        if outcome.response is not None:
            self.last_answer = None if outcome.last is None else LastAnswer.from_dict(outcome.last.to_dict())
        for effect in outcome.effects:
            if isinstance(effect, ClientNonce):
                self.device = replace(self.device, client=replace(self.device.client, nonce=effect.nonce))
                self.client.nonce = effect.nonce
            elif isinstance(effect, ServerNonce):
                self.device = replace(self.device, server=replace(self.device.server, nonce=effect.nonce))
            elif isinstance(effect, AuthenticationFailed):
                self.device = replace(self.device, failures=effect.failures)
            elif isinstance(effect, LoginFailuresCleared):
                self.device = replace(self.device, failures=LoginFailures())
            elif isinstance(effect, CommandSent):
                self.records[effect.seq].update(state="sent", sent_in=effect.session_key)
            elif isinstance(effect, CommandAnswered):
                self.records[effect.seq].update(
                    state=effect.state, status=effect.status, statuses=effect.statuses, results=effect.results
                )
            elif isinstance(effect, CommandFailed):
                self.records[effect.seq].update(state="failed", error=effect.error)
            elif isinstance(effect, CommandRequeued):
                self.records[effect.seq].update(state="queued")
        self.outcomes.append(outcome)
        decoded = self.codec.decode(outcome.body)
        self.last = decoded
        return decoded

    def effects(self, kind: type[E]) -> list[E]:
        return [e for e in self.outcomes[-1].effects if isinstance(e, kind)]

    def all_effects(self, kind: type[E]) -> list[E]:
        """
        Every effect of C{kind} in every message so far.
        """
        return [e for outcome in self.outcomes for e in outcome.effects if isinstance(e, kind)]

    def queue(self, *specs: dict) -> None:
        """
        More commands in the device's queue.
        """
        for command in pending(*specs, start=max(self.commands, default=0) + 1):
            self.commands[command.seq] = command
            self.records[command.seq] = {"state": "queued"}

    def converse(self, device: OMADMDevice, first: bytes) -> SessionLog:
        """
        Run a session of the emulated classic device to its end (a session starts later than the last).
        """
        self.now += 3600
        body: bytes | None = first
        while body is not None:
            self.send(None, raw=body)
            body = device.receive(self.outcomes[-1].body)
        return device.log


    def answer_all(self, server_msg: SyncML, code: int = 200, results: dict[str, str] | None = None) -> SyncML:
        """
        The client's reply to a server message: SyncHdr status, a status per command (and
        per group member), Results for Gets.
        """
        client = self.client
        replies: list[Command] = []
        client.cmd_ids = itertools.count(1)
        replies.append(client.header_status(server_msg))

        def answer(command: Command) -> None:
            if isinstance(command, (Status, Alert)):
                return
            replies.append(client.status_for(server_msg, command, code))
            for child in getattr(command, "commands", ()):
                answer(child)
            if isinstance(command, Get) and code == 200:
                for item in command.items:
                    assert item.target is not None
                    value = (results or {}).get(item.target.loc_uri, "value")
                    replies.append(client.results_for(server_msg, command, item.target.loc_uri, value))

        for command in server_msg.body:
            answer(command)
        # A client may not close its package before the server closed its own.
        return client.reply(*replies, final=server_msg.final)


def statuses(message: SyncML) -> list[Status]:
    return [c for c in message.body if isinstance(c, Status)]


def commands(message: SyncML) -> list[Command]:
    return [c for c in message.body if not isinstance(c, (Status,)) and not (isinstance(c, Alert) and c.data == "1222")]


def classic_device(
    h: Harness,
    *,
    server_nonce: bytes | None = None,
    server_scheme: str = "DIGEST",
    codec: Codec = DS_XML_CODEC,
    rotate: str = "with-cred",
) -> OMADMDevice:
    """
    An emulated classic device whose DM account matches the harness's credentials.
    """
    account = DMAccount(
        server_id="mdmd",
        server_uri=SERVER_URL,
        client=AccountCredential("DIGEST", h.device.client.name, h.device.client.secret, h.device.client.nonce),
        server=AccountCredential(
            server_scheme, h.device.server.name, h.device.server.secret,
            h.device.server.nonce if server_nonce is None else server_nonce,
        ),
    )
    return OMADMDevice(DEVICE_ID, account, random=counting_random(), codec=codec, rotate=rotate)


#: The commands that carry items (each names its node in its items' Target).
ITEM_COMMANDS = (Add, Copy, Delete, Exec, Get, Replace)


def first_item(command: Command) -> Item:
    """
    The first item of C{command}, which must be an item command (L{ITEM_COMMANDS}).
    """
    assert isinstance(command, ITEM_COMMANDS), command
    return command.items[0]


def target_uri(command: Command) -> str:
    """
    The node C{command} acts on: its first item's Target.
    """
    target = first_item(command).target
    assert target is not None, command
    return target.loc_uri


def counting_random() -> Callable[[int], bytes]:
    """
    A random source that differs at every call (1, 2, 3... repeated), so each nonce is new.
    """
    calls = itertools.count(1)
    return lambda n: bytes([next(calls) % 256]) * n
