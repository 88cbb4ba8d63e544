"""
An emulated OMA DM 1.2 client (the device side of a DM session), for tests and benchmarks.

It keeps a small DM tree, opens sessions the way a Windows device does
(package 1: Alert 1201 or 1200, Alert 1224 LoginStatus, the DevInfo
Replace, an MD5 credential, and the events it has to report), answers every
server command but Alert with a Status (and Results for Get), reassembles
large objects, takes the server's NextNonce for the next session, and stops
when the server sends Final with no commands. After a command it answers 214
(C{status_for}), it executes none of the rest of that message (215), as
Windows does. It can lose answers (C{lose}): the message goes again, the
same bytes, as a device resends when its connection drops. It talks through
a C{post} coroutine, so the same client runs over a real TLS connection
(L{mdmd.testing.windows.device}) or in memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from mdmd.syncml import auth
from mdmd.syncml.codec import XML_CODEC, Codec, codec_for_content_type, reassemble
from mdmd.testing.windows.tree import SettingsTree
from mdmd.syncml.model import (
    Add,
    Alert,
    Atomic,
    Command,
    Copy,
    Cred,
    Delete,
    Exec,
    Get,
    Item,
    Location,
    Meta,
    Replace,
    Results,
    Sequence,
    Status,
    SyncHdr,
    SyncML,
    data_text,
)

__all__ = [
    "DMClient",
    "Execution",
    "NodeHandler",
    "Post",
    "SessionLog",
    "DMSessionFailed",
    "completion_alert",
    "windows_dm_client",
    "windows_post",
]

#: post(body, content_type, extra_headers) -> (HTTP status, headers, body)
Post = Callable[[bytes, str, dict[str, str]], Awaitable[tuple[int, dict[str, str], bytes]]]


class NodeHandler(Protocol):
    """
    Nodes a CSP of the device serves itself, instead of plain values in the tree
    (e.g. L{mdmd.testing.windows.push.PushNode}).
    """

    def owns(self, uri: str) -> bool:
        """
        Whether C{uri} is one of its nodes.
        """

    def get(self, uri: str) -> str | None:
        """
        The node's value (None: the node does not exist, 404).
        """

    def set(self, uri: str, value: str) -> int:
        """
        An Add or Replace of the node: the status to answer.
        """


class DMSessionFailed(Exception):
    """
    The server answered something a DM client cannot go on with.
    """


@dataclass
class SessionLog:
    """
    What happened in one session, for assertions and benchmarks.
    """

    session_id: str
    messages: int = 0
    header_statuses: list[str] = field(default_factory=list)
    received: list[Command] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    #: How many messages went again because their answer was lost (C{DMClient.lose}).
    resent: int = 0


@dataclass
class Execution:
    """
    One server command the device carried out, as the device remembers it.

    C{acknowledged} turns true once the message carrying its Status (and
    Results) was answered with HTTP 200 and a SyncHdr status that accepts
    it: from then on the server has recorded the outcome and must never send
    the command again.
    """

    session_id: str
    #: the MsgID of the device message that carried the Status
    msg_id: str
    verb: str
    target: str
    #: what an Add or Replace wrote
    data: str | None
    status: int
    #: the value a Get read (None for other verbs, or when it failed)
    result: str | None = None
    acknowledged: bool = False


#: SyncHdr statuses with which the server accepts a device's message.
_ACCEPTED = ("200", "212")


@dataclass
class DMClient:
    """
    The DM side of an emulated device.

    C{client_*} are the w7 APPSRV credentials (how we authenticate to the
    server); C{tree} maps node URIs to values; C{status_for} may override the
    status answered for a URI (to emulate failures, 202 or 214); C{lose} are
    the numbers of the messages of each session (1 is package 1) whose first
    answer is lost: the client posts the same bytes again; C{events} are
    alerts (1224, 1226) the next package 1 reports, forgotten once its session ended;
    C{handlers} serve nodes of their own (a CSP's behaviour).
    """

    device_id: str
    server_url: str
    client_name: str
    client_secret: str
    client_nonce: bytes
    codec: Codec = XML_CODEC
    tree: dict[str, str] = field(default_factory=dict)
    login_status: str = "user"
    max_msg_size: int | None = None
    status_for: dict[str, int] = field(default_factory=dict)
    lose: frozenset[int] = frozenset()
    events: list[Alert] = field(default_factory=list)
    #: a Windows-like tree that carries out item commands instead of C{tree}
    #: (settings keep their formats; 404, 405, 418 as Windows answers them)
    settings: SettingsTree | None = None
    clock: Callable[[], float] | None = None
    #: every command carried out, in order, across sessions (what crash tests audit)
    journal: list[Execution] = field(default_factory=list)
    handlers: list[NodeHandler] = field(default_factory=list)
    _session_ids: Any = field(default_factory=lambda: itertools.count(1))
    _chunks: list[Item] = field(default_factory=list)
    #: the executions whose Status goes in the message being built
    _outgoing: list[Execution] = field(default_factory=list)
    _halted: bool = False

    def __post_init__(self) -> None:
        self.tree.setdefault("./DevInfo/DevId", self.device_id)
        self.tree.setdefault("./DevInfo/Man", "mdmd emulator")
        self.tree.setdefault("./DevInfo/Mod", "Virtual PC")
        self.tree.setdefault("./DevInfo/DmV", "1.3")
        self.tree.setdefault("./DevInfo/Lang", "en-US")
        self.tree.setdefault("./DevDetail/SwV", "10.0.26100.2314")
        self.tree.setdefault("./DevDetail/OEM", "mdmd emulator")
        if self.settings is not None:
            for uri, value in self.tree.items():
                if uri.startswith(("./DevInfo/", "./DevDetail/")):
                    self.settings.values.setdefault(uri, value)

    # -- messages -------------------------------------------------------------------

    def _header(self, session_id: str, msg_id: int, cred: bool) -> SyncHdr:
        return SyncHdr(
            session_id=session_id,
            msg_id=str(msg_id),
            target=Location(loc_uri=self.server_url),
            source=Location(loc_uri=self.device_id, loc_name=self.client_name),
            cred=Cred(
                meta=Meta(type=auth.AUTH_MD5, format="b64"),
                data=auth.md5_cred_data(self.client_name, self.client_nonce, password=self.client_secret),
            )
            if cred
            else None,
            meta=Meta(max_msg_size=self.max_msg_size) if self.max_msg_size else None,
        )

    def package1(self, session_id: str, msg_id: int, alert: str = "1201") -> SyncML:
        ids = itertools.count(2)
        devinfo = tuple(
            Item(source=Location(loc_uri=uri), data=self.tree[uri])
            for uri in ("./DevInfo/DevId", "./DevInfo/Man", "./DevInfo/Mod", "./DevInfo/DmV", "./DevInfo/Lang")
        )
        body = (
            Alert(cmd_id=str(next(ids)), data=alert),
            Alert(
                cmd_id=str(next(ids)),
                data="1224",
                items=(Item(meta=Meta(type="com.microsoft/MDM/LoginStatus", format="chr"), data=self.login_status),),
            ),
            Replace(cmd_id=str(next(ids)), items=devinfo),
            *(replace(event, cmd_id=str(next(ids))) for event in self.events),
        )
        return SyncML(header=self._header(session_id, msg_id, True), body=body, final=True)

    def _answer(self, server: SyncML, msg_id: int, session_id: str, log: SessionLog) -> SyncML | None:
        """
        Our reply to a server message, or None when the session is over.
        """
        ids = itertools.count(1)
        out: list[Command] = [
            Status(
                cmd_id=str(next(ids)),
                msg_ref=server.header.msg_id,
                cmd_ref="0",
                cmd="SyncHdr",
                target_refs=(server.header.target.loc_uri,),
                source_refs=(server.header.source.loc_uri,),
                data="200",
            )
        ]
        results: list[Command] = []
        commands = [c for c in server.body if not isinstance(c, Status)]
        for command in commands:
            if isinstance(command, Alert):
                continue
            log.received.append(command)
            self._execute(command, server, ids, out, results)
        executed, self._outgoing = self._outgoing, []
        for execution in executed:
            execution.session_id, execution.msg_id = session_id, str(msg_id)
        self.journal += executed
        self._halted = False
        if server.final and not [c for c in commands if not isinstance(c, Alert)]:
            return None
        # A client may not close its package before the server closed its own.
        return SyncML(header=self._header(session_id, msg_id, False), body=tuple(out + results), final=server.final)

    def _execute(self, command: Command, server: SyncML, ids: Any, out: list[Command], results: list[Command]) -> None:
        items: tuple[Item, ...] = getattr(command, "items", ())
        uri = items[0].target.loc_uri if items and items[0].target else ""

        def status(code: int, cmd: Command = command, result: str | None = None) -> None:
            out.append(
                Status(cmd_id=str(next(ids)), msg_ref=server.header.msg_id, cmd_ref=cmd.cmd_id, cmd=cmd.name, data=str(code))
            )
            if cmd is command and code != 213 and not isinstance(command, (Atomic, Sequence)):
                written = data_text(items[-1].data) if isinstance(command, (Add, Replace)) and items else None
                self._outgoing.append(Execution("", "", command.name, uri, written, code, result))

        if self._halted:
            status(215)  # after a 214, nothing more of the message is executed
            return
        if isinstance(command, (Atomic, Sequence)):
            status(200)
            for child in command.commands:
                self._execute(child, server, ids, out, results)
            return
        forced = self.status_for.get(uri)
        if isinstance(command, (Add, Replace)) and items and items[0].more_data:
            self._chunks.append(items[0])
            status(213)
            return
        if isinstance(command, (Add, Replace)) and self._chunks:
            items = (reassemble([*self._chunks, items[0]]),)
            self._chunks.clear()
        if forced is not None:
            status(forced)
            self._halted = forced == 214
            return
        if self.settings is not None and not isinstance(command, Copy):
            targets = [i.target.loc_uri for i in items if i.target]
            code, read = self.settings.execute(
                command.name, [(i.target.loc_uri, data_text(i.data), i.meta.format if i.meta else None) for i in items if i.target]
            )
            status(code, result=read[0][1] if len(read) == 1 else None)
            if read:
                # Results name each node as the server wrote it
                results.append(
                    Results(
                        cmd_id=str(next(ids)),
                        msg_ref=server.header.msg_id,
                        cmd_ref=command.cmd_id,
                        items=tuple(
                            Item(source=Location(loc_uri=uri), meta=Meta(format=format), data=value)
                            for uri, (_, value, format) in zip(targets, read)
                        ),
                    )
                )
            return
        if isinstance(command, Get):
            found = [(i.target.loc_uri, self._read(i.target.loc_uri)) for i in items if i.target]
            if any(value is None for _, value in found):
                status(404)
                return
            status(200, result=found[0][1] if len(found) == 1 else None)
            results.append(
                Results(
                    cmd_id=str(next(ids)),
                    msg_ref=server.header.msg_id,
                    cmd_ref=command.cmd_id,
                    items=tuple(Item(source=Location(loc_uri=u), meta=Meta(format="chr"), data=v) for u, v in found),
                )
            )
        elif isinstance(command, (Add, Replace)):
            codes = [
                self._write(item.target.loc_uri, data_text(item.data) or "") for item in items if item.target is not None
            ]
            status(next((code for code in codes if not 200 <= code < 300), 200))
        elif isinstance(command, Delete):
            removed = [self.tree.pop(i.target.loc_uri, None) for i in items if i.target]
            status(200 if all(r is not None for r in removed) else 404)
        elif isinstance(command, (Exec, Copy)):
            status(200)
        else:
            status(406)

    def _acknowledge(self, session_id: str, msg_id: str) -> None:
        """
        The server accepted our message C{msg_id}: what it reported is recorded there.
        """
        for execution in reversed(self.journal):
            if execution.session_id != session_id:
                break
            if execution.msg_id == msg_id:
                execution.acknowledged = True

    def _handler(self, uri: str) -> NodeHandler | None:
        return next((handler for handler in self.handlers if handler.owns(uri)), None)

    def _read(self, uri: str) -> str | None:
        handler = self._handler(uri)
        return self.tree.get(uri) if handler is None else handler.get(uri)

    def _write(self, uri: str, value: str) -> int:
        handler = self._handler(uri)
        if handler is not None:
            return handler.set(uri, value)
        self.tree[uri] = value
        return 200

    # -- sessions ----------------------------------------------------------------------

    async def session(self, post: Post, alert: str = "1201", session_id: str | None = None, max_messages: int = 200) -> SessionLog:
        """
        Run one DM session to its end.
        """
        session_id = session_id or format(next(self._session_ids), "X")
        log = SessionLog(session_id)
        self._chunks.clear()  # a large object a broken session left half-sent is abandoned
        msg_ids = itertools.count(1)
        message: SyncML | None = self.package1(session_id, next(msg_ids), alert)
        challenged = 0
        while message is not None:
            if log.messages >= max_messages:
                raise DMSessionFailed(f"session {session_id} did not end after {max_messages} messages")
            body = self.codec.encode(message)
            log.sizes.append(len(body))
            started = self.clock() if self.clock else 0.0
            if log.messages + log.resent + 1 in self.lose:
                await post(body, self.codec.content_type, {})  # its answer never arrives
                log.resent += 1
            code, headers, answer = await post(body, self.codec.content_type, {})
            if self.clock:
                log.latencies.append(self.clock() - started)
            log.messages += 1
            if code != 200:
                raise DMSessionFailed(f"HTTP {code}: {answer[:200]!r}")
            codec = codec_for_content_type(headers.get("content-type"))
            if codec is not self.codec:
                raise DMSessionFailed(f"answered as {headers.get('content-type')!r}")
            server = codec.decode(answer)
            if self.max_msg_size and len(answer) > self.max_msg_size:
                raise DMSessionFailed(f"server message of {len(answer)} bytes exceeds MaxMsgSize {self.max_msg_size}")
            header_status = next(c for c in server.body if isinstance(c, Status) and c.cmd_ref == "0")
            log.header_statuses.append(header_status.data or "")
            if header_status.data in _ACCEPTED:
                self._acknowledge(session_id, message.header.msg_id)
            if header_status.chal is not None and header_status.chal.meta.next_nonce:
                self.client_nonce = auth.decode_nonce(header_status.chal.meta.next_nonce)
            if header_status.data in ("401", "407"):
                challenged += 1
                if challenged > 2:
                    raise DMSessionFailed(f"authentication failed: {header_status.data}")
                message = self.package1(session_id, next(msg_ids), alert)
                continue
            message = self._answer(server, next(msg_ids), session_id, log)
        self.events = []  # reported
        return log


def completion_alert(uri: str, alert_type: str, result: str = "0", code: str = "1226", correlator: str | None = None) -> Alert:
    """
    The alert a Windows CSP sends when an asynchronous Exec (answered 202) is over:
    C{result} 0 for success, else an error code (MSI DownloadInstall: 1224 and
    C{Reversed-Domain-Name:com.microsoft.mdm.win32csp_install}; HostedInstall:
    1226 and C{...EnterpriseHostedAppInstall.result}). For L{DMClient.events}.
    """
    item = Item(source=Location(loc_uri=uri), meta=Meta(type=alert_type, format="int", mark="informational"), data=result)
    return Alert(cmd_id="0", data=code, correlator=correlator, items=(item,))


def windows_dm_client(device: Any, **options: Any) -> DMClient:
    """
    The DM side of an enrolled L{mdmd.testing.windows.device.WindowsDevice}: its
    DeviceID, the DM address, APPSRV credentials and DEFAULTENCODING from its
    provisioning document.
    """
    enrollment = device.enrollment
    if enrollment is None:
        raise RuntimeError("the device has not enrolled")
    application = enrollment.document.get("APPLICATION")
    encoding = application.parm("DEFAULTENCODING") if application is not None else None
    auth_ = enrollment.client_auth
    options.setdefault("codec", codec_for_content_type(encoding) or XML_CODEC)
    return DMClient(
        device_id=device.device_id,
        server_url=enrollment.dm_url,
        client_name=auth_.name,
        client_secret=auth_.secret,
        client_nonce=auth_.nonce,
        **options,
    )


def windows_post(device: Any) -> Post:
    """
    POST DM messages over the device's mutual-TLS connection.
    """

    async def post(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        reply = await device.request("POST", device.dm_url, body, content_type=content_type, client_certificate=True)
        if reply.length != len(reply.body):
            raise DMSessionFailed("the DM answer was not sent with a Content-Length")
        return reply.code, reply.headers, reply.body

    return post
