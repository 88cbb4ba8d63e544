"""
An emulated classic OMA DM 1.2 device (a handset, a modem), for tests and benchmarks.

It behaves like Intel's libdmclient, the independent DM client mdmd is
checked against (as it was observed to behave: nothing of its code is
here), including what a server must get right for such a device to do
anything:

 - its DM account (L{DMAccount}) holds a client credential (CLCRED: how it
   authenticates to the server, MD5 digest or Basic) and usually a server
   credential (SRVCRED: how the server must authenticate to it);
 - it sends its credential in every message until the server's SyncHdr
   status is 200 or 212, takes the NextNonce of any challenge in that status
   at once, and sends again those of its commands the server answered 401/407;
 - with a server credential it starts I{not} trusting the server: it checks
   the server's credential in every message that carries one (212 or 401,
   sticky for the session), answers a literal C{0} to the SyncHdr and to
   every command until the server authenticated, executes nothing before,
   and never asks for the credential; each checked credential rotates the
   server nonce, which it announces in a challenge with its status;
 - it answers every server command (one Status per Item, Results after a
   Get's Status), ends the session when its reply would hold nothing but the
   status for the server's SyncHdr, and never sends Alert 1222/1223;
 - it reads package #0 (version 11, the digest over its server credential,
   retried with the default nonce C{0x00000000}) and echoes the session id
   in upper-case hex.

L{OMADMDevice} is sans-IO: C{start}/C{start_from_package0} give the first
message's bytes, C{receive} takes the server's answer and gives the next
message (or None: the session is over). L{run_session} drives it through a
C{post} coroutine; L{HTTPSPoster} is one over HTTPS with server-authenticated
TLS only (a classic device presents no certificate).

What libdmclient does that would crash it (a server Cred without Meta, a
Cred to a device without server credential, Sequence, an Add or Replace item
without Data or Meta Format) raises L{DeviceCrashed} here, so a test sees it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import itertools
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from mdmd.syncml.codec import DS_XML_CODEC, Codec
from mdmd.syncml.model import (
    Add,
    Alert,
    Atomic,
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
    Sequence as SequenceCommand,
    Status,
    SyncHdr,
    SyncML,
    data_text,
)
from mdmd.testing.dmclient import DMSessionFailed, Post

__all__ = [
    "AUTH_TYPES",
    "DEFAULT_NONCE",
    "MAX_MSG_SIZE",
    "AccountCredential",
    "DMAccount",
    "DeviceCrashed",
    "HTTPSPoster",
    "Node",
    "OMADMDevice",
    "Package0Refused",
    "SessionAborted",
    "SessionLog",
    "basic_data",
    "classic_tree",
    "decode_nonce",
    "md5_data",
    "package0_digest",
    "run_session",
]

#: The MaxMsgSize it announces (libdmclient's, fixed).
MAX_MSG_SIZE = 16384
#: A server message larger than this aborts the session (libdmclient's SyncML workspace).
WORKSPACE = 40000
#: The nonce a package #0 is checked with again when the stored one fails (ASCII, as libdmclient has it).
DEFAULT_NONCE = b"0x00000000"
#: AAuthType → the Meta Type of its Cred and Chal.
AUTH_TYPES = {"DIGEST": "syncml:auth-md5", "BASIC": "syncml:auth-basic"}
#: The alerts it shows the user (the rest it answers 500): display → 200, confirm → 304 (nobody confirms).
UI_ALERTS = {"1100": 200, "1101": 304}


class DeviceCrashed(Exception):
    """
    The server sent what makes libdmclient crash (it would segfault).
    """


class Package0Refused(Exception):
    """
    The device does not accept this package #0 (it opens no session).
    """


class SessionAborted(Exception):
    """
    The device gave up the session without answering (a message too large for it).
    """


# -- credentials, computed here independently of mdmd -------------------------------------


def md5_data(name: str, secret: str, nonce: bytes) -> str:
    """
    C{B64(MD5(B64(MD5(name:secret)) ":" nonce))}, the Data of an auth-md5 Cred.
    """
    inner = base64.b64encode(hashlib.md5(f"{name}:{secret}".encode()).digest())
    return base64.b64encode(hashlib.md5(inner + b":" + nonce).digest()).decode("ascii")


def basic_data(name: str, secret: str) -> str:
    """
    C{B64(name:secret)}, the Data of an auth-basic Cred.
    """
    return base64.b64encode(f"{name}:{secret}".encode()).decode("ascii")


def package0_digest(name: str, secret: str, nonce: bytes, trigger: bytes) -> bytes:
    """
    The package #0 digest as the device checks it: MD5 over its server credential and the trigger.
    """
    inner = base64.b64encode(hashlib.md5(f"{name}:{secret}".encode()).digest())
    return hashlib.md5(inner + b":" + nonce + b":" + base64.b64encode(hashlib.md5(trigger).digest())).digest()


def decode_nonce(text: str, faithful: bool = True) -> bytes:
    """
    A NextNonce's octets as libdmclient's decoder reads them.

    Its decoder gives nothing for text whose length is not a multiple of 4
    or that ends with exactly one C{=} (a nonce of 3n+2 octets): the device
    then uses an empty nonce. C{faithful=False} decodes correctly.
    """
    raw = text.strip().encode("ascii", "replace")
    if faithful and (len(raw) % 4 or (raw.endswith(b"=") and not raw.endswith(b"=="))):
        return b""
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return b""


# -- the DM account and the tree -------------------------------------------------------


@dataclass
class AccountCredential:
    """
    One AppAuth entry of the DMAcc account (CLCRED or SRVCRED); C{nonce} is AAuthData's octets.
    """

    auth_type: str  # DIGEST | BASIC
    name: str
    secret: str
    nonce: bytes = b""

    def cred(self) -> Cred:
        """
        This credential as a SyncHdr Cred.
        """
        data = md5_data(self.name, self.secret, self.nonce) if self.auth_type == "DIGEST" else basic_data(self.name, self.secret)
        return Cred(meta=Meta(format="b64", type=AUTH_TYPES[self.auth_type]), data=data)

    def accepts(self, cred: Cred) -> bool:
        """
        Whether C{cred} proves this credential (Type of our AAuthType, Data as expected).
        """
        assert cred.meta is not None
        if cred.meta.type != AUTH_TYPES[self.auth_type]:
            return False
        expected = self.cred().data
        assert isinstance(expected, str)
        return hmac.compare_digest((data_text(cred.data) or "").strip().encode(), expected.encode())


@dataclass
class DMAccount:
    """
    The device's account for one server (DMAcc): what an operator provisions, and the nonces it keeps.
    """

    server_id: str
    server_uri: str
    client: AccountCredential
    #: None: the device trusts the server without checking it (a server Cred would crash it).
    server: AccountCredential | None


@dataclass
class Node:
    """
    A node of the device's tree: a leaf with a value, or an interior node (C{value} None).

    C{acl} is the node's own ACL (C{Get=*&Replace=mdmd}; None: inherited).
    A node may be written (Replace, Delete) and executed only if it says so:
    otherwise the ACL may allow a command the node cannot do (405).
    """

    value: str | None = None
    format: str = "chr"
    type: str | None = "text/plain"
    acl: str | None = None
    writable: bool = False
    #: Exec runs this: it may return a generic alert (its Meta Type, Format, Data).
    action: Callable[[Exec], tuple[str, str, str] | None] | None = None


def _execute_test(command: Exec) -> tuple[str, str, str]:
    """
    What libdmclient's test node ./test/execute does: queue a generic alert.
    """
    return ("urn:test", "text/plain", "200")


def classic_tree(device_id: str, account: DMAccount) -> dict[str, Node]:
    """
    A tree like the one of libdmclient's test client: DevInfo, DevDetail, the
    DMAcc account (secrets hidden by ACL), a writable ./Vendor/memory,
    ./test/execute (Exec queues a generic alert) and an Inbox that takes
    nothing. Node values of its own; the shape and ACLs like the real one.
    """
    sid = account.server_id
    tree: dict[str, Node] = {
        ".": Node(acl="Get=*"),
        "./DevInfo": Node(acl="Get=*"),
        "./DevInfo/DevId": Node(device_id),
        "./DevInfo/Man": Node("mdmd test kit"),
        "./DevInfo/Mod": Node("classic-emulator"),
        "./DevInfo/DmV": Node("1.2"),
        "./DevInfo/Lang": Node("en-US"),
        "./DevInfo/Ext": Node(),
        "./DevInfo/Ext/Emulator": Node("libdmclient-like"),
        "./DevDetail": Node(acl="Get=*"),
        "./DevDetail/DevTyp": Node("modem"),
        "./DevDetail/OEM": Node("mdmd"),
        "./DevDetail/FwV": Node("1.0"),
        "./DevDetail/SwV": Node("2.4.1"),
        "./DevDetail/HwV": Node("A"),
        "./DevDetail/LrgObj": Node("true", format="bool"),
        "./DevDetail/URI": Node(),
        "./DevDetail/URI/MaxDepth": Node("0", format="int"),
        "./DMAcc": Node(acl=f"Get={sid}"),
        "./DMAcc/mdmd": Node(),
        "./DMAcc/mdmd/ServerID": Node(sid),
        "./DMAcc/mdmd/AppAddr": Node(),
        "./DMAcc/mdmd/AppAddr/url": Node(),
        "./DMAcc/mdmd/AppAddr/url/Addr": Node(account.server_uri),
        "./DMAcc/mdmd/AppAddr/url/AddrType": Node("URI"),
        "./DMAcc/mdmd/AppAuth": Node(),
        "./DMAcc/mdmd/AppAuth/toserver": Node(),
        "./DMAcc/mdmd/AppAuth/toserver/AAuthLevel": Node("CLCRED"),
        "./DMAcc/mdmd/AppAuth/toserver/AAuthType": Node(account.client.auth_type),
        "./DMAcc/mdmd/AppAuth/toserver/AAuthName": Node(account.client.name),
        "./DMAcc/mdmd/AppAuth/toserver/AAuthSecret": Node("", acl=""),
        "./Vendor": Node(),
        "./Vendor/memory": Node(acl="Add=*&Get=*&Replace=*&Delete=*"),
        "./Vendor/memory/setting": Node("initial", writable=True),
        "./Inbox": Node(acl="Add=*"),
        "./test": Node(acl="Get=*&Exec=*"),
        "./test/execute": Node("", action=_execute_test),
    }
    if account.server is not None:
        tree.update(
            {
                "./DMAcc/mdmd/AppAuth/toclient": Node(),
                "./DMAcc/mdmd/AppAuth/toclient/AAuthLevel": Node("SRVCRED"),
                "./DMAcc/mdmd/AppAuth/toclient/AAuthType": Node(account.server.auth_type),
                "./DMAcc/mdmd/AppAuth/toclient/AAuthName": Node(account.server.name),
                "./DMAcc/mdmd/AppAuth/toclient/AAuthSecret": Node("", acl=""),
            }
        )
    return tree


# -- what a session did --------------------------------------------------------------------


@dataclass
class SessionLog:
    """
    One session as the device saw it, for assertions.
    """

    session_id: str
    #: Server messages received.
    messages: int = 0
    #: The device's verdict on the server in each server message (its SyncHdr Status Data: 0, 212, 401).
    verdicts: list[str] = field(default_factory=list)
    #: Each server Cred checked: whether it was right.
    checks: list[bool] = field(default_factory=list)
    #: The server's SyncHdr statuses for the device's messages.
    header_statuses: list[str] = field(default_factory=list)
    #: (command name, target, status) of every server command answered.
    executed: list[tuple[str, str, int]] = field(default_factory=list)
    #: Server nonces the device issued (the last one is the one it holds).
    server_nonces: list[bytes] = field(default_factory=list)
    #: Content types of the server's answers (libdmclient reads none).
    content_types: list[str] = field(default_factory=list)


@dataclass
class _Sent:
    """
    One of our own commands in a message we sent (to resend it after 401/407).
    """

    msg_id: str
    cmd_id: str
    command: Command


# -- the device ------------------------------------------------------------------------------


class OMADMDevice:
    """
    The DM side of a classic device, sans-IO.

    @param random: where the server nonces it issues come from (libdmclient
        takes 8 octets of C{rand()} and the stack; the nonce is their base64 text).
    @param rotate: C{"with-cred"} issues a new server nonce with every checked
        server credential, stored at once even when no reply goes out
        (libdmclient); C{"every-reply"} with every reply it sends, a stricter
        device that rotates on every message.
    @param session_id_format: how the SessionID is written: C{"upper"} hex
        (libdmclient, the specification), C{"lower"} hex, or C{"decimal"}.
    """

    def __init__(
        self,
        device_id: str,
        account: DMAccount,
        *,
        codec: Codec = DS_XML_CODEC,
        tree: dict[str, Node] | None = None,
        random: Callable[[int], bytes] = os.urandom,
        rotate: str = "with-cred",
        session_id_format: str = "upper",
        faithful_base64: bool = True,
    ) -> None:
        if rotate not in ("with-cred", "every-reply"):
            raise ValueError(f"rotate: {rotate!r}")
        if session_id_format not in ("upper", "lower", "decimal"):
            raise ValueError(f"session_id_format: {session_id_format!r}")
        self.device_id = device_id
        self.account = account
        self.codec = codec
        self.tree = classic_tree(device_id, account) if tree is None else tree
        self.random = random
        self.rotate = rotate
        self.session_id_format = session_id_format
        self.faithful_base64 = faithful_base64
        self.log = SessionLog("")
        self._session_id = 0
        self._server_uri = account.server_uri
        self._msg_ids: Iterator[int] = itertools.count(1)
        self._clt_auth = 0
        self._srv_auth = 0
        self._reply_ref = "0"
        self._pending: list[Command] = []
        self._sent: list[_Sent] = []

    # -- starting ---------------------------------------------------------------------------

    def start(self, session_id: int = 1) -> bytes:
        """
        Open a client-initiated session (Alert 1201); libdmclient's test client always uses 1.
        """
        return self._open(session_id, "1201")

    def start_from_package0(self, data: bytes) -> bytes:
        """
        Open the session a package #0 asks for (Alert 1200, its session id).

        @raise Package0Refused: not version 11, no server id, no account with
            that ServerID, no server credential, or a digest that matches
            neither the stored server nonce nor the default one.
        """
        session_id, server_id, trigger, digest = _read_package0(data)
        if server_id != self.account.server_id:
            raise Package0Refused(f"no account with ServerID {server_id!r}")
        server = self.account.server
        if server is None:
            raise Package0Refused("no server credential to check the digest with")
        if not hmac.compare_digest(digest, package0_digest(server.name, server.secret, server.nonce, trigger)):
            if not hmac.compare_digest(digest, package0_digest(server.name, server.secret, DEFAULT_NONCE, trigger)):
                raise Package0Refused("the digest does not match")
            # Resynchronisation: both credentials fall back to the default nonce.
            server.nonce = DEFAULT_NONCE
            self.account.client.nonce = DEFAULT_NONCE
        return self._open(session_id, "1200")

    def _open(self, session_id: int, alert: str) -> bytes:
        self._session_id = session_id
        self._server_uri = self.account.server_uri
        self._msg_ids = itertools.count(1)
        self._clt_auth = 0
        self._srv_auth = 0 if self.account.server is not None else 212
        self._reply_ref = "0"
        self._sent = []
        self.log = SessionLog(self.session_id_text)
        self._pending = [Alert(data=alert), Replace(items=self._devinfo_items())]
        message = self._next_message()
        assert message is not None
        return message

    @property
    def session_id_text(self) -> str:
        if self.session_id_format == "decimal":
            return str(self._session_id)
        text = format(self._session_id, "X")
        return text.lower() if self.session_id_format == "lower" else text

    @property
    def server_authenticated(self) -> bool:
        """
        Whether the device trusts the server in this session.
        """
        return self._srv_auth == 212

    def _data(self, text: str) -> Data:
        """
        Text as libdmclient puts it in Data: PCDATA in XML, OPAQUE in WBXML.
        """
        return text.encode("utf-8") if self.codec.name == "wbxml" else text

    def _devinfo_items(self) -> tuple[Item, ...]:
        """
        Package 1's DevInfo: the mandatory nodes, then every node of Bearer and Ext
        (interior ones too), all in reverse order, as libdmclient prepends them.
        """
        uris = ["./DevInfo/Mod", "./DevInfo/Man", "./DevInfo/DevId", "./DevInfo/Lang", "./DevInfo/DmV"]
        uris += [u for u in self.tree if u.startswith(("./DevInfo/Bearer", "./DevInfo/Ext"))]
        items = [self._value_item(uri, self.tree[uri]) for uri in uris]
        return tuple(reversed(items))

    def _value_item(self, uri: str, node: Node) -> Item:
        if node.value is None:
            return Item(source=Location(loc_uri=uri), meta=Meta(format="node"), data=self._data("/".join(self._children(uri))))
        return Item(source=Location(loc_uri=uri), meta=Meta(format=node.format, type=node.type), data=self._data(node.value))

    # -- messages -----------------------------------------------------------------------------

    def _next_message(self) -> bytes | None:
        """
        Our next message from what is pending, or None when it would hold only
        the status for the server's SyncHdr (the session is over).
        """
        to_send = -1
        body: list[Command] = []
        msg_id = str(next(self._msg_ids))
        for cmd_id, command in enumerate(self._pending, 1):
            numbered = replace(command, cmd_id=str(cmd_id))  # type: ignore[type-var]  # every Command is a dataclass
            body.append(numbered)
            if isinstance(command, Status):
                to_send += 1
            else:
                to_send = 1
                if not isinstance(command, Results):
                    self._sent.append(_Sent(msg_id, str(cmd_id), command))
        self._pending = []
        if to_send <= 0:
            return None
        header = SyncHdr(
            session_id=self.session_id_text,
            msg_id=msg_id,
            target=Location(loc_uri=self._server_uri),
            source=Location(loc_uri=self.device_id),
            cred=None if self._clt_auth in (200, 212) else self.account.client.cred(),
            meta=Meta(max_msg_size=MAX_MSG_SIZE),
        )
        return self.codec.encode(SyncML(header=header, body=tuple(body), final=True))

    def receive(self, body: bytes, content_type: str = "") -> bytes | None:
        """
        Take the server's answer; return our next message, or None when the session is over.

        @raise SessionAborted: the message is larger than the device's workspace.
        @raise DeviceCrashed: the message would crash libdmclient.
        """
        if len(body) > WORKSPACE:
            raise SessionAborted(f"a server message of {len(body)} bytes does not fit the device's workspace")
        message = self.codec.decode(body)
        self.log.messages += 1
        self.log.content_types.append(content_type)
        header = message.header
        self._reply_ref = header.msg_id
        unchecked = self.rotate == "every-reply" and header.cred is None
        before = self.account.server.nonce if self.account.server is not None else b""
        chal = self._check_server(header)
        if header.resp_uri:
            self._server_uri = header.resp_uri
        self.log.verdicts.append(str(self._srv_auth))
        self._pending.append(
            Status(
                msg_ref=header.msg_id,
                cmd_ref="0",
                cmd="SyncHdr",
                target_refs=(header.target.loc_uri,),
                source_refs=(header.source.loc_uri,),
                chal=chal,
                data=str(self._srv_auth),
            )
        )
        for command in message.body:
            self._take(command)
        reply = self._next_message()
        server = self.account.server
        if reply is None and unchecked and server is not None and chal is not None:
            # A device that rotates with every reply keeps no nonce it never sent.
            server.nonce = before
            self.log.server_nonces.pop()
        return reply

    def _check_server(self, header: SyncHdr) -> Chal | None:
        """
        Check the server's Cred if it sent one; the challenge (with a new server nonce) for our status.
        """
        server = self.account.server
        if header.cred is None:
            if self.rotate == "every-reply" and server is not None and server.auth_type == "DIGEST":
                return self._rotate(server)
            return None
        if server is None:
            raise DeviceCrashed("a server Cred sent to a device without server credential")
        if header.cred.meta is None or header.cred.meta.type is None:
            raise DeviceCrashed("a server Cred without Meta Type")
        ok = server.accepts(header.cred)
        self.log.checks.append(ok)
        self._srv_auth = 212 if ok else 401
        if server.auth_type == "DIGEST":
            return self._rotate(server)
        return Chal(meta=Meta(format="b64", type=AUTH_TYPES["BASIC"]))

    def _rotate(self, server: AccountCredential) -> Chal:
        """
        A new server nonce, stored at once: the base64 text of 8 random octets (12 ASCII octets).
        """
        server.nonce = base64.b64encode(self.random(8))
        self.log.server_nonces.append(server.nonce)
        next_nonce = base64.b64encode(server.nonce).decode("ascii")
        return Chal(meta=Meta(format="b64", type=AUTH_TYPES["DIGEST"], next_nonce=next_nonce))

    # -- the server's commands --------------------------------------------------------------------

    def _take(self, command: Command) -> None:
        if isinstance(command, Status):
            self._server_status(command)
            return
        if isinstance(command, Results):
            return
        if isinstance(command, SequenceCommand):
            raise DeviceCrashed("Sequence (freed at its start, used at its end)")
        if self._srv_auth != 212:
            # Not executed: one status with the verdict on the server, no TargetRef.
            self._status(command, self._srv_auth)
            self.log.executed.append((command.name, _target(command), self._srv_auth))
            return
        if isinstance(command, Atomic):
            for child in command.commands:  # no status of its own, no rollback
                self._take(child)
            return
        if isinstance(command, Alert):
            code = UI_ALERTS.get(command.data or "", 500)
            self._status(command, code)
            self.log.executed.append(("Alert", command.data or "", code))
            return
        if isinstance(command, Copy):
            self._status(command, 501)
            self.log.executed.append(("Copy", _target(command), 501))
            return
        act = _ITEM_ACTIONS.get(type(command))
        if act is None:
            self._status(command, 406)
            return
        items: Sequence[Item] = getattr(command, "items", ())
        for item in items:
            uri = item.target.loc_uri if item.target is not None else ""
            code = act(self, command, item, uri)
            self.log.executed.append((command.name, uri, code))

    def _server_status(self, status: Status) -> None:
        if status.cmd_ref == "0":
            self._clt_auth = int(status.data or "0") if (status.data or "").strip().isdigit() else 0
            self.log.header_statuses.append(status.data or "")
            meta = status.chal.meta if status.chal is not None else None
            if meta is not None and meta.type in AUTH_TYPES.values():
                client = self.account.client
                client.auth_type = next(t for t, v in AUTH_TYPES.items() if v == meta.type)
                client.nonce = decode_nonce(meta.next_nonce or "", self.faithful_base64)
            return
        for sent in self._sent:
            if sent.msg_id == status.msg_ref and sent.cmd_id == status.cmd_ref:
                if (status.data or "").strip() in ("401", "407"):
                    self._pending.append(sent.command)
                return

    def _status(self, command: Command, code: int, target: str | None = None) -> None:
        self._pending.append(
            Status(
                msg_ref=self._reply_ref,
                cmd_ref=command.cmd_id,
                cmd=command.name,
                target_refs=(target,) if target is not None else (),
                data=str(code),
            )
        )

    # -- the tree ----------------------------------------------------------------------------------

    def _children(self, uri: str) -> list[str]:
        prefix = uri.rstrip("/") + "/"
        return [u[len(prefix) :] for u in self.tree if u.startswith(prefix) and "/" not in u[len(prefix) :]]

    def _allowed(self, uri: str, verb: str) -> bool:
        """
        Whether the ACL in force at C{uri} (its own, or the nearest ancestor's) grants C{verb} to the server.
        """
        path = uri
        while True:
            node = self.tree.get(path)
            if node is not None and node.acl is not None:
                for grant in node.acl.split("&"):
                    name, _, servers = grant.partition("=")
                    if name == verb and ("*" in servers.split("+") or self.account.server_id in servers.split("+")):
                        return True
                return False
            if path == ".":
                return False
            path = path.rsplit("/", 1)[0] or "."

    def _get(self, command: Command, item: Item, uri: str) -> int:
        path, _, query = uri.partition("?")
        node = self.tree.get(path)
        code = 404 if node is None else 425 if not self._allowed(path, "Get") else 200
        if code == 200 and query and query != "prop=ACL":
            code = 406  # ?list=Struct, ?prop=Title...; Format/Type carry a NUL in libdmclient
        self._status(command, code, uri)
        if code != 200:
            return code
        assert node is not None
        if query:
            value = Item(source=Location(loc_uri=uri), meta=Meta(format="chr", type="text/plain"), data=self._data(node.acl or ""))
        else:
            value = self._value_item(path, node)
        self._pending.append(Results(msg_ref=self._reply_ref, cmd_ref=command.cmd_id, items=(value,)))
        return code

    def _checked_value(self, item: Item) -> str:
        if item.data is None:
            raise DeviceCrashed("an Add or Replace item without Data")
        if item.meta is None or item.meta.format is None:
            raise DeviceCrashed("an Add or Replace item without Meta Format")
        return data_text(item.data) or ""

    def _add(self, command: Command, item: Item, uri: str) -> int:
        value = self._checked_value(item)
        parent = uri.rsplit("/", 1)[0]
        if uri in self.tree:
            code = 418
        elif parent not in self.tree:
            code = 404
        elif not self._allowed(parent, "Add"):
            code = 425
        elif uri.startswith("./Inbox/"):
            code = 406  # the Inbox takes Add by ACL and refuses everything
        else:
            assert item.meta is not None
            interior = item.meta.format == "node"
            self.tree[uri] = Node(
                None if interior else value, format=item.meta.format or "chr", type=item.meta.type, writable=True
            )
            code = 200
        self._status(command, code, uri)
        return code

    def _replace(self, command: Command, item: Item, uri: str) -> int:
        value = self._checked_value(item)
        node = self.tree.get(uri)
        code = 404 if node is None else 425 if not self._allowed(uri, "Replace") else 405 if not node.writable else 200
        if code == 200:
            assert node is not None and item.meta is not None
            node.value, node.format, node.type = value, item.meta.format or node.format, item.meta.type
        self._status(command, code, uri)
        return code

    def _delete(self, command: Command, item: Item, uri: str) -> int:
        node = self.tree.get(uri)
        code = 404 if node is None else 425 if not self._allowed(uri, "Delete") else 405 if not node.writable else 200
        if code == 200:
            for path in [u for u in self.tree if u == uri or u.startswith(uri + "/")]:
                del self.tree[path]
        self._status(command, code, uri)
        return code

    def _exec(self, command: Command, item: Item, uri: str) -> int:
        node = self.tree.get(uri)
        code = 404 if node is None else 425 if not self._allowed(uri, "Exec") else 405 if node.action is None else 200
        if code == 200:
            assert node is not None and node.action is not None and isinstance(command, Exec)
            alert = node.action(command)
            if alert is not None:  # queued before the Exec's status, as libdmclient does
                kind, fmt, data = alert
                self._pending.append(
                    Alert(
                        data="1226",
                        correlator=command.correlator,
                        items=(Item(source=Location(loc_uri=uri), meta=Meta(format=fmt, type=kind), data=self._data(data)),),
                    )
                )
        self._status(command, code, uri)
        return code


def _target(command: Command) -> str:
    items: Sequence[Item] = getattr(command, "items", ())
    return items[0].target.loc_uri if items and items[0].target is not None else ""


_ITEM_ACTIONS: dict[type, Callable[[OMADMDevice, Command, Item, str], int]] = {
    Get: OMADMDevice._get,
    Add: OMADMDevice._add,
    Replace: OMADMDevice._replace,
    Delete: OMADMDevice._delete,
    Exec: OMADMDevice._exec,
}


def _read_package0(data: bytes) -> tuple[int, str, bytes, bytes]:
    """
    (session id, server id, trigger, digest) of a package #0, read as libdmclient reads it.

    @raise Package0Refused: too short, not version 11, or no server id.
    """
    if len(data) < 16 + 8 + 1:
        raise Package0Refused(f"a package #0 of {len(data)} octets")
    digest, trigger = data[:16], data[16:]
    (header,) = struct.unpack(">Q", trigger[:8])
    if header >> 54 != 11:
        raise Package0Refused(f"version {header >> 54}, not 11")
    length = header & 0xFF
    server_id = trigger[8 : 8 + length]
    if length == 0 or len(server_id) != length:
        raise Package0Refused("no server id")
    return (header >> 8) & 0xFFFF, server_id.decode("utf-8", "replace"), trigger, digest


# -- over HTTP -----------------------------------------------------------------------------------


async def run_session(device: OMADMDevice, post: Post, first: bytes, max_messages: int = 50) -> SessionLog:
    """
    Run a session that starts with C{first} (from C{start} or C{start_from_package0}) to its end.

    Like libdmclient, it stops at any HTTP status but 200 (here: L{DMSessionFailed})
    and reads the answer whatever its Content-Type says.
    """
    body: bytes | None = first
    sent = 0
    while body is not None:
        if sent >= max_messages:
            raise DMSessionFailed(f"session {device.session_id_text} did not end after {max_messages} messages")
        code, headers, answer = await post(body, device.codec.content_type, {})
        sent += 1
        if code != 200:
            raise DMSessionFailed(f"HTTP {code}: {answer[:200]!r}")
        body = device.receive(answer, headers.get("content-type", ""))
    return device.log


class HTTPSPoster:
    """
    POST DM messages over HTTPS, trusting C{roots} for the server and presenting
    no client certificate (one connection kept alive, as libcurl does).
    """

    def __init__(self, reactor: Any, url: str, roots: Sequence[x509.Certificate]) -> None:
        trust = trustRootFromCertificates(
            [Certificate.loadPEM(r.public_bytes(serialization.Encoding.PEM)) for r in roots]
        )
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.retryAutomatically = False
        self._agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trust), pool=self._pool)
        self.url = url

    async def __call__(self, body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        request_headers = Headers({b"Accept": [b"*/*"], b"Content-Type": [content_type.encode("ascii")]})
        for name, value in headers.items():
            request_headers.addRawHeader(name.encode("ascii"), value.encode("latin-1"))
        response = await self._agent.request(b"POST", self.url.encode("ascii"), request_headers, FileBodyProducer(io.BytesIO(body)))
        data = await readBody(response)
        found = {k.decode().lower(): v[-1].decode("latin-1") for k, v in response.headers.getAllRawHeaders()}
        return response.code, found, data

    async def close(self) -> None:
        await self._pool.closeCachedConnections()
