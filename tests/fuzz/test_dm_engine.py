"""
The DM session engine under fuzzing (issue 12, defect 1): whole sessions of
mutated messages through the check-in's unit of work, as the DM endpoint runs them.

One input is a session script: C{feed(data)} seeds a L{Random} with the
input's bytes, builds a store in memory with a Windows device and a classic
one, queues commands for them (large values that go in chunks, Exec the
device accepts asynchronously, groups, Gets, user-scoped ones), and lets the
project's emulators (L{mdmd.testing.dmclient.DMClient} with lost answers,
forced statuses and completion alerts; L{mdmd.testing.omadm.OMADMDevice},
DS media types, our credential checked) run one to three sessions against
L{mdmd.dm.checkin.exchange}. Between an emulator and the engine each message
may be changed:

 - at the model level: the message decoded and changed (status codes of the
   SyncHdr and of our commands, 202/213/214/215 among them; chunk flags and
   sizes; Chal nonces; alerts of every code with LoginStatus, unenrollment
   and completion items; commands duplicated, dropped, reordered, nested in
   Sequence and Atomic; CmdIDs and MsgIDs missing, repeated or odd; NUL and
   control characters in text (as WBXML ENTITY tokens) and non-UTF-8 opaque
   data; MaxMsgSize and MaxObjSize tiny or huge; Final toggled; HMAC
   headers), then encoded again;
 - at the byte level, through the codecs: bytes flipped, inserted, cut, or a
   sample message of L{mdmd.testing.syncml} spliced in;
 - or resent as it was, or an earlier one resent.

A surface's declared answer is an L{AnsweredError} (a refusal the endpoint
turns into its status); anything else escaping the unit of work, or an
answer of ours its own codec cannot read back, is I{uncaught}: a 500 in the
daemon. L{run} is the long run: inputs until the time is up, and each
uncaught kind (class and innermost mdmd frame) with one example.

    python -m tests.fuzz.test_dm_engine 60 [SEED]
"""

from __future__ import annotations

import base64
import itertools
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from random import Random
from typing import Any, TypeVar

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm import queue as dm_queue
from mdmd.dm.checkin import DMSettings, exchange
from mdmd.dm.commands import parse_spec
from mdmd.dm.effects import Settings
from mdmd.errors import AnsweredError
from mdmd.store.models import ensure_root
from mdmd.syncml import auth
from mdmd.syncml.codec import (
    DS_WBXML_CODEC,
    DS_XML_CODEC,
    WBXML_CODEC,
    XML_CODEC,
    Codec,
    codec_for_content_type,
)
from mdmd.syncml.model import (
    Alert,
    Atomic,
    Chal,
    Command,
    Cred,
    Get,
    Item,
    Location,
    Meta,
    Replace,
    Results,
    Sequence as SequenceCommand,
    Status,
    SyncML,
    SyncMLDecodeError,
    SyncMLEncodeError,
)
from mdmd.testing import syncml as samples
from mdmd.testing.devices import CLIENT_SECRET, SERVER_NONCE, SERVER_SECRET, add_device
from mdmd.testing.dmclient import DMClient, completion_alert
from mdmd.testing.omadm import AccountCredential, DMAccount, OMADMDevice

__all__ = ["DECLARED", "feed", "run", "kind_of", "generate_seeds"]

#: What the DM endpoint answers as a peer's mistake (its status, never a 500).
DECLARED: tuple[type[BaseException], ...] = (AnsweredError,)

WINDOWS = samples.DEVICE_ID
CLASSIC = "IMEI:490154203237518"
SERVER_URL = samples.SERVER_URL
NOW = 1_800_000_000.0
MSI = "./Device/Vendor/MSFT/EnterpriseDesktopAppManagement/MSI/%7BAF9257BA%7D/DownloadInstall"
HOSTED = "./User/Vendor/MSFT/EnterpriseModernAppManagement/AppInstallation/App_1/HostedInstall"
MSI_DONE = "Reversed-Domain-Name:com.microsoft.mdm.win32csp_install"
HOSTED_DONE = "Reversed-Domain-Name:com.microsoft.mdm.EnterpriseHostedAppInstall.result"
UNENROLL = "com.microsoft:mdm.unenrollment.userrequest"
LOGIN = "com.microsoft/MDM/LoginStatus"

#: What an operator may have queued.
MENU: tuple[dict[str, Any], ...] = (
    {"verb": "Get", "target": "./DevDetail/SwV"},
    {"verb": "Get", "target": "./DevInfo/Man"},
    {"verb": "Get", "target": "./Vendor/Missing"},
    {"verb": "Replace", "target": "./Vendor/MSFT/Policy/Config/Camera/AllowCamera", "data": "0", "format": "int"},
    {"verb": "Replace", "target": "./Vendor/Big", "data": "".join(chr(65 + i % 26) for i in range(3000)), "format": "chr"},
    {"verb": "Add", "target": "./Vendor/Blob", "data": "é" * 900, "format": "chr"},
    {"verb": "Exec", "target": MSI, "data": "<MsiInstallJob/>"},
    {"verb": "Exec", "target": HOSTED},
    {"verb": "Exec", "target": "./Vendor/X/Run", "correlator": "job-1"},
    {"verb": "Delete", "target": "./Vendor/Old"},
    {"verb": "Replace", "target": "./User/Vendor/MSFT/Policy/Config/X", "data": "1"},
    {
        "verb": "Atomic",
        "commands": [
            {"verb": "Add", "target": "./Vendor/A", "data": "1"},
            {"verb": "Sequence", "commands": [{"verb": "Exec", "target": "./Vendor/B/Run"}]},
        ],
    },
    {"verb": "Sequence", "commands": [{"verb": "Get", "target": "./DevDetail/OEM"}, {"verb": "Delete", "target": "./Vendor/C"}]},
)

CODES = (
    "200", "200", "201", "202", "204", "212", "213", "214", "215", "216", "401", "404", "407", "418",
    "424", "500", "507", "0", "", " 200 ", "abc", "２００", "²", "9" * 40, "9" * 5000, "-1", "2_00",
)
ALERT_CODES = ("1100", "1200", "1201", "1222", "1223", "1224", "1225", "1226", "1227", "9999", "", "١٢٢٤", "9" * 5000)
NONCE_TEXTS = ("", "AAAA", "!!!", "q83vEjRWeJCrze8SNFZ4kA==", "=" * 10, "é", base64.b64encode(b"\x00" * 64).decode())
#: Text that has hurt parsers, and characters only WBXML carries (marked, written as ENTITY tokens).
POISONS = ("\ue000", "\ue001", "\ue01f", "\ufffe", "\u202e", "&", "<", "]]>", "\r", "%00", "x" * 3000, "", " ", "\U0001f600")
_ENTITY_MARKERS = {"\ue000": 0x00, "\ue001": 0x01, "\ue01f": 0x1F}

T = TypeVar("T")


class OwnAnswerUnreadable(Exception):
    """
    Our answer cannot be read back with the codec it was written in (the device could not either).
    """


class _Stop(Exception):
    """
    Carries an uncaught error out of an emulator's session.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


def _finish(coroutine: Coroutine[Any, Any, T]) -> T:
    """
    Run a coroutine that never waits (its post answers at once) to its end.
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("the session waited for something")


# -- one input --------------------------------------------------------------------------------


class _World:
    """
    A store in memory, the devices' records and queues, and the messages of the sessions so far.
    """

    def __init__(self, rng: Random) -> None:
        self.rng = rng
        self.root: dict[str, Any] = {}
        ensure_root(self.root)
        add_device(self.root, WINDOWS)
        add_device(self.root, CLASSIC, kind="omadm", client_name=CLASSIC)
        for device_id in (WINDOWS, CLASSIC):
            for spec in rng.sample(MENU, rng.randint(0, 6)):
                dm_queue.enqueue(self.root, [device_id], parse_spec(spec), NOW)
        self.settings = DMSettings(
            session=Settings(
                max_obj_size=rng.choice((4 * 1024 * 1024, 2000, 100)),
                max_auth_failures=rng.choice((3, 3, 1, 0)),
                default_max_msg_size=rng.choice((524288, 524288, 1400)),
            ),
            require_client_certificate=False,
        )
        self.now = NOW
        self.sent: list[tuple[bytes, str | None]] = []
        self.last_answer: SyncML | None = None
        self.messages = 0

    def random(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    # -- what crosses the wire

    def post(self, body: bytes, content_type: str) -> bytes | None:
        """
        One message through the endpoint's steps; our answer, or None where it was refused as declared.
        """
        codec = codec_for_content_type(content_type)
        assert codec is not None
        body, hmac_header = self._change(body, codec)
        self.sent.append((body, hmac_header))
        self.messages += 1
        try:
            message = codec.decode(body)
        except SyncMLDecodeError:
            return None  # 400 or 415
        try:
            result = exchange(self.root, None, message, codec, body, hmac_header, self.now, self.settings, self.random)
        except DECLARED:
            return None
        except Exception as e:
            raise _Stop(e) from e
        self.now += self.rng.choice((0.5, 1.0, 1.0, 2.0, 30.0, 2000.0))
        try:
            self.last_answer = codec.decode(result.body)
        except SyncMLDecodeError as e:
            raise _Stop(OwnAnswerUnreadable(f"{e} in {result.body[:200]!r}")) from e
        return result.body

    def _change(self, body: bytes, codec: Codec) -> tuple[bytes, str | None]:
        rng = self.rng
        hmac_header = None
        roll = rng.random()
        if roll < 0.45:
            pass
        elif roll < 0.55 and self.sent:
            return rng.choice(self.sent[-3:])
        elif roll < 0.88:
            body = self._model_change(body, codec)
        else:
            body = _byte_change(body, rng)
        if rng.random() < 0.08:
            hmac_header = self._hmac(body, codec)
        return body, hmac_header

    def _hmac(self, body: bytes, codec: Codec) -> str:
        """
        A MAC header for C{body}: right for the device it names (most of the time), or odd.
        """
        rng = self.rng
        if rng.random() < 0.3:
            return rng.choice(('username="x", mac=AAAA', "garbage", 'algorithm=SHA1, username="a", mac=b', "é" * 10))
        try:
            device_id = codec.decode(body).header.source.loc_uri
        except SyncMLDecodeError:
            return 'username="device-name", mac=AAAA'
        device = self.root["devices"].get(device_id)
        if device is None:
            return 'username="nobody", mac=AAAA'
        mac = auth.hmac_mac(device.dm_client_name, device.dm_client_nonce, body, password=device.dm_client_secret)
        return auth.format_hmac_header(device.dm_client_name, mac)

    def _model_change(self, body: bytes, codec: Codec) -> bytes:
        try:
            message = codec.decode(body)
        except SyncMLDecodeError:
            return body
        for _ in range(self.rng.choice((1, 1, 2, 3))):
            message = self.rng.choice(_MODEL_CHANGES)(self, message)
        try:
            return _encode(codec, message)
        except SyncMLEncodeError:
            return body  # the device's encoder could not write it either


def _encode(codec: Codec, message: SyncML) -> bytes:
    """
    Encode, writing the marked control characters as WBXML ENTITY tokens (our encoder refuses them).
    """
    if codec.name != "wbxml":
        return codec.encode(message)  # XML cannot carry them at all: the markers stay private-use characters
    raw = codec.encode(message)
    for marker, code in _ENTITY_MARKERS.items():
        # end the inline string, the character as an ENTITY, a new inline string
        raw = raw.replace(marker.encode("utf-8"), b"\x00\x02" + bytes((code,)) + b"\x03")
    return raw


def _byte_change(body: bytes, rng: Random) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        what = rng.randrange(6)
        position = rng.randrange(len(data) + 1) if data else 0
        if what == 0 and data:
            data[min(position, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif what == 1:
            data[position:position] = rng.randbytes(rng.randint(1, 8))
        elif what == 2 and data:
            del data[position : position + rng.randint(1, 16)]
        elif what == 3:
            data = data[:position]
        elif what == 4:
            other = rng.choice(_SPLICES)
            start = rng.randrange(len(other))
            data[position:position] = other[start : start + rng.randint(1, 200)]
        else:
            data[position:position] = rng.choice((b"\x00", b"\x01", b"\xff", b"\xc3\x28", b"&#0;", b"\x03\x00\x01"))
    return bytes(data)


# -- model-level changes ------------------------------------------------------------------------


def _set(message: SyncML, index: int, command: Command) -> SyncML:
    body = list(message.body)
    body[index] = command
    return replace(message, body=tuple(body))


def _pick(rng: Random, message: SyncML, kinds: tuple[type, ...]) -> int | None:
    found = [i for i, c in enumerate(message.body) if isinstance(c, kinds)]
    return rng.choice(found) if found else None


def _status_code(world: _World, message: SyncML) -> SyncML:
    index = _pick(world.rng, message, (Status,))
    if index is None:
        return message
    status = message.body[index]
    assert isinstance(status, Status)
    return _set(message, index, replace(status, data=world.rng.choice(CODES)))


def _header_chal(world: _World, message: SyncML) -> SyncML:
    index = _pick(world.rng, message, (Status,))
    if index is None:
        return message
    status = message.body[index]
    assert isinstance(status, Status)
    rng = world.rng
    chal = Chal(meta=Meta(type=rng.choice((auth.AUTH_MD5, auth.AUTH_BASIC, auth.AUTH_MAC, "x")), format="b64", next_nonce=rng.choice(NONCE_TEXTS)))
    return _set(message, index, replace(status, cmd_ref=rng.choice(("0", "0", status.cmd_ref)), data=rng.choice(("401", "407", "212", "200", "0")), chal=chal))


def _status_for_ours(world: _World, message: SyncML) -> SyncML:
    """
    A status for one of the commands of our last answer (or a member of it), with any code.
    """
    rng = world.rng
    answer = world.last_answer
    ours = [c for c in _walk(answer.body) if not isinstance(c, (Status, Alert))] if answer is not None else []
    if not ours or answer is None:
        return message
    target = rng.choice(ours)
    status = Status(
        cmd_id=str(rng.randint(1, 99)),
        msg_ref=rng.choice((answer.header.msg_id, answer.header.msg_id, "1", "")),
        cmd_ref=target.cmd_id,
        cmd=target.name,
        data=rng.choice(CODES),
    )
    return _insert(rng, message, status)


def _results_chunk(world: _World, message: SyncML) -> SyncML:
    """
    Results for a Get of our last answer, whole or a chunk (MoreData, Size), with any data.
    """
    rng = world.rng
    answer = world.last_answer
    gets = [c for c in _walk(answer.body) if isinstance(c, Get)] if answer is not None else []
    if not gets or answer is None:
        return message
    get = rng.choice(gets)
    uri = get.items[0].target.loc_uri if get.items and get.items[0].target else "./x"
    data: str | bytes = rng.choice(("abc", "", "é" * 50, b"\xff\xfe", "x" * 5000))
    meta = Meta(format="chr", size=rng.choice((None, 3, 6, 0, 10**9)))
    item = Item(source=Location(loc_uri=uri), meta=meta, data=data, more_data=rng.random() < 0.5)
    results = Results(cmd_id=str(rng.randint(1, 99)), msg_ref=answer.header.msg_id, cmd_ref=get.cmd_id, items=(item,) * rng.choice((1, 1, 2)))
    changed = _insert(rng, message, results)
    return replace(changed, final=rng.random() < 0.5)


def _item_flags(world: _World, message: SyncML) -> SyncML:
    rng = world.rng
    index = _pick(rng, message, (Replace, Results, Alert))
    if index is None:
        return message
    command = message.body[index]
    items = list(command.items)  # type: ignore[attr-defined]  # the three kinds have items
    if not items:
        return message
    at = rng.randrange(len(items))
    item = items[at]
    meta = item.meta or Meta()
    items[at] = replace(item, more_data=not item.more_data, meta=replace(meta, size=rng.choice((None, 0, 1, 5, 3000, 2**40))))
    return _set(message, index, replace(command, items=tuple(items)))  # type: ignore[type-var]  # a command with items


def _alert(world: _World, message: SyncML) -> SyncML:
    rng = world.rng
    code = rng.choice(ALERT_CODES)
    data: str | bytes
    kind, source = rng.choice(((LOGIN, None), (UNENROLL, None), (MSI_DONE, MSI), (HOSTED_DONE, HOSTED), ("urn:x", "./Vendor/X/Run"), (None, None), ("com.microsoft.mdm.synctype", None)))
    data = rng.choice(("user", "others", "0", "1", "2147942405", b"\xff\xfeuser", b"\xc3\x28", "", "USER\x00"))
    if isinstance(data, str) and "\x00" in data:
        data = data.replace("\x00", "\ue000")
    item = Item(source=Location(loc_uri=source) if source else None, meta=Meta(type=kind, format="int", mark=rng.choice((None, "informational", "fatal"))), data=data)
    alert = Alert(cmd_id=str(rng.randint(1, 99)), data=code, correlator=rng.choice((None, "job-1", "x")), items=(item,) * rng.choice((0, 1, 1, 2, 60)))
    return _insert(rng, message, alert)


def _structure(world: _World, message: SyncML) -> SyncML:
    rng = world.rng
    body = list(message.body)
    if not body:
        return message
    what = rng.randrange(6)
    at = rng.randrange(len(body))
    if what == 0:
        body.insert(at, body[at])
    elif what == 1:
        del body[at]
    elif what == 2:
        rng.shuffle(body)
    elif what == 3:
        body[at] = SequenceCommand(cmd_id=str(rng.randint(1, 99)), commands=(body[at],))
    elif what == 4:
        inner = Atomic(cmd_id=str(rng.randint(1, 99)), commands=(body[at], Get(cmd_id="77")))
        body[at] = Atomic(cmd_id=str(rng.randint(1, 99)), commands=(inner,) * rng.choice((1, 2)))
    else:
        body = body * rng.choice((2, 20))
    return replace(message, body=tuple(body))


def _cmd_id(world: _World, message: SyncML) -> SyncML:
    rng = world.rng
    index = _pick(rng, message, (Command,))
    if index is None:
        return message
    command = message.body[index]
    value = rng.choice((None, "", "0", "1", "9" * 30, "\ue000", "1\ue001"))
    return _set(message, index, replace(command, cmd_id=value))  # type: ignore[type-var]  # every command has a CmdID


def _header(world: _World, message: SyncML) -> SyncML:
    rng = world.rng
    header = message.header
    what = rng.randrange(7)
    if what == 0:
        header = replace(header, msg_id=rng.choice(("1", "0", "", str(int(header.msg_id) - 1) if header.msg_id.isdigit() else "1", "\ue000", "9" * 30)))
    elif what == 1:
        header = replace(header, session_id=rng.choice(("1", "FFFF", "", "\ue000", header.session_id + "\ue001", "9" * 5000, "٣", "0" * 30 + "1")))
    elif what == 2:
        header = replace(header, cred=None)
    elif what == 3:
        header = replace(header, cred=Cred(meta=Meta(type=rng.choice((auth.AUTH_MD5, auth.AUTH_BASIC, "x")), format="b64"), data=rng.choice(("", "!!", "AAAA", b"\xff", "é"))))
    elif what == 4:
        header = replace(header, meta=Meta(max_msg_size=rng.choice((1, 100, 1200, 2**31)), max_obj_size=rng.choice((None, 1, 50, 2**40))))
    elif what == 5:
        header = replace(header, target=Location(loc_uri=header.target.loc_uri + rng.choice(POISONS)))
    else:
        header = replace(header, source=replace(header.source, loc_name=rng.choice((None, "", "other", "\ue000"))))
    return replace(message, header=header)


def _poison_item(world: _World, message: SyncML) -> SyncML:
    """
    An item's LocURI or Data poisoned: control characters, odd text, non-UTF-8 opaque bytes.
    """
    rng = world.rng
    index = _pick(rng, message, (Replace, Results, Alert))
    if index is None:
        return message
    command = message.body[index]
    items = list(command.items)  # type: ignore[attr-defined]  # the three kinds have items
    if not items:
        return message
    at = rng.randrange(len(items))
    item = items[at]
    poison = rng.choice(POISONS)
    if rng.random() < 0.5:
        location = item.source or Location(loc_uri="./x")
        items[at] = replace(item, source=replace(location, loc_uri=location.loc_uri + poison))
    else:
        items[at] = replace(item, data=rng.choice((poison, b"\xff" + poison.encode("utf-8", "surrogatepass"), b"\x00\x80")))
    return _set(message, index, replace(command, items=tuple(items)))  # type: ignore[type-var]  # a command with items


def _final(world: _World, message: SyncML) -> SyncML:
    return replace(message, final=not message.final)


def _insert(rng: Random, message: SyncML, command: Command) -> SyncML:
    body = list(message.body)
    body.insert(rng.randint(0, len(body)), command)
    return replace(message, body=tuple(body))


def _walk(commands: Sequence[Command]) -> list[Command]:
    found: list[Command] = []
    for command in commands:
        found.append(command)
        if isinstance(command, (Atomic, SequenceCommand)):
            found += _walk(command.commands)
    return found


_MODEL_CHANGES: tuple[Callable[[_World, SyncML], SyncML], ...] = (
    _status_code,
    _status_code,
    _header_chal,
    _status_for_ours,
    _status_for_ours,
    _results_chunk,
    _item_flags,
    _alert,
    _alert,
    _structure,
    _cmd_id,
    _header,
    _header,
    _poison_item,
    _final,
)

_SPLICES: tuple[bytes, ...] = (
    samples.WINDOWS_PACKAGE1,
    XML_CODEC.encode(samples.server_message()),
    WBXML_CODEC.encode(samples.server_message()),
    WBXML_CODEC.encode(samples.large_results(2048, 4)),
)


# -- sessions ---------------------------------------------------------------------------------------


def _windows_session(world: _World) -> None:
    rng = world.rng
    device = world.root["devices"][WINDOWS]
    client = DMClient(
        device_id=WINDOWS,
        server_url=SERVER_URL,
        client_name="device-name",
        client_secret=CLIENT_SECRET,
        client_nonce=device.dm_client_nonce,
        codec=rng.choice((XML_CODEC, WBXML_CODEC)),
        login_status=rng.choice(("user", "others")),
        max_msg_size=rng.choice((None, 1500, 4000, 65536)),
        status_for={
            uri: rng.choice((202, 214, 215, 404, 500, 213))
            for uri in rng.sample((MSI, HOSTED, "./Vendor/Big", "./DevDetail/SwV", "./Vendor/A"), rng.randint(0, 3))
        },
        lose=frozenset(rng.sample(range(1, 8), rng.randint(0, 2))),
    )
    for _ in range(rng.choice((0, 0, 1, 2))):
        client.events.append(
            rng.choice(
                (
                    completion_alert(MSI, MSI_DONE, rng.choice(("0", "1603")), code="1224"),
                    completion_alert(HOSTED, HOSTED_DONE, rng.choice(("0", "2147942405"))),
                    completion_alert("./elsewhere", "urn:x", "200", correlator="job-1"),
                )
            )
        )

    async def post(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        answer = world.post(body, content_type)
        if answer is None:
            return 400, {}, b""
        return 200, {"content-type": content_type}, answer

    try:
        _finish(client.session(post, alert=rng.choice(("1201", "1201", "1200")), session_id=rng.choice((None, "1", "A")), max_messages=12))
    except _Stop:
        raise
    except Exception:
        pass  # the emulator gave up (an answer it cannot go on with): the session is over


def _classic_session(world: _World) -> None:
    rng = world.rng
    device = world.root["devices"][CLASSIC]
    account = DMAccount(
        server_id="mdmd",
        server_uri=SERVER_URL,
        client=AccountCredential("DIGEST", CLASSIC, CLIENT_SECRET, device.dm_client_nonce),
        server=AccountCredential("DIGEST", "mdmd", SERVER_SECRET, rng.choice((device.dm_server_nonce, SERVER_NONCE, b"stale"))),
    )
    codec = rng.choice((DS_XML_CODEC, DS_WBXML_CODEC))
    counter = itertools.count(rng.randint(1, 200))
    emulator = OMADMDevice(CLASSIC, account, codec=codec, random=lambda n: bytes([next(counter) % 256]) * n, rotate=rng.choice(("with-cred", "every-reply")))
    body: bytes | None = emulator.start(rng.randint(1, 3))
    for _ in range(12):
        if body is None:
            return
        answer = world.post(body, codec.content_type)
        if answer is None:
            return
        try:
            body = emulator.receive(answer, codec.content_type)
        except Exception:
            return  # the emulator gave up


def feed(data: bytes) -> None:
    """
    One input: one to three sessions, as C{data} scripts them (see the module).

    @raise Exception: only what the endpoint would not answer as declared (a finding).
    """
    rng = Random(data)
    world = _World(rng)
    try:
        for _ in range(rng.choice((1, 1, 2, 3))):
            if rng.random() < 0.7:
                _windows_session(world)
            else:
                _classic_session(world)
            world.now += rng.choice((5.0, 60.0, 4000.0))
    except _Stop as stop:
        raise stop.error from None
    _messages[0] += world.messages


#: Messages fed so far (for the figures).
_messages = [0]


def generate_seeds() -> dict[str, bytes]:
    """
    Seed inputs for a byte-mutating runner: any bytes script a session.
    """
    return {f"session-{n}": Random(n).randbytes(16) for n in range(8)}


# -- the long run -------------------------------------------------------------------------------------


def kind_of(error: BaseException) -> str:
    """
    An uncaught error's kind: its class and the innermost frame of mdmd that raised it.
    """
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "/mdmd/" in f.filename] or frames
    where = ""
    if ours:
        frame = ours[-1]
        where = f" at mdmd/{frame.filename.rsplit('/mdmd/', 1)[-1]}:{frame.lineno} ({frame.name})"
    return f"{type(error).__module__}.{type(error).__qualname__}{where}"


def run(seconds: float, seed: int = 0, inputs: int | None = None) -> tuple[int, dict[str, str]]:
    """
    Feed inputs for C{seconds} (or C{inputs} of them); return how many, and
    each uncaught kind with one example (the error and the input that shows it, in hex).
    """
    rng = Random(seed)
    deadline = time.perf_counter() + seconds
    count = 0
    kinds: dict[str, str] = {}
    while time.perf_counter() < deadline and (inputs is None or count < inputs):
        data = rng.randbytes(16)
        count += 1
        try:
            feed(data)
        except Exception as e:
            kinds.setdefault(kind_of(e), f"{type(e).__name__}: {str(e)[:200]} (input {data.hex()})")
    return count, kinds


# -- the bounded run in the test suite ---------------------------------------------------------------


class DMEngineFuzzTests(SynchronousTestCase):
    def test_bounded(self) -> None:
        """
        A fixed set of mutated sessions (random seed 0): every message is answered
        as declared or read; none raises anything else.
        """
        count, kinds = run(600.0, seed=0, inputs=250)
        self.assertEqual(count, 250)
        self.assertEqual(kinds, {})

    @given(st.binary(min_size=1, max_size=24))
    def test_any_script(self, data: bytes) -> None:
        """
        Whatever bytes script the session, nothing escapes the endpoint's answers.
        """
        feed(data)

    def test_feed_is_deterministic(self) -> None:
        """
        The same input makes the same sessions: the same messages reach the engine.
        """
        seen = []
        for _ in range(2):
            before = _messages[0]
            feed(b"\x01\x02\x03")
            seen.append(_messages[0] - before)
        self.assertEqual(seen[0], seen[1])
        self.assertGreater(seen[0], 0)

    def test_reaches_the_engine(self) -> None:
        """
        The sessions go deep enough to matter: most inputs send several messages.
        """
        before = _messages[0]
        run(600.0, seed=1, inputs=40)
        self.assertGreater(_messages[0] - before, 40 * 2)


def _main(argv: Sequence[str]) -> int:
    seconds = float(argv[0]) if argv else 60.0
    seed = int(argv[1]) if len(argv) > 1 else 1
    before = _messages[0]
    started = time.perf_counter()
    count, kinds = run(seconds, seed)
    spent = time.perf_counter() - started
    messages = _messages[0] - before
    print(f"dm_engine: {count} inputs ({messages} messages) in {spent:.0f} s: {count / spent:,.0f} inputs/s, {messages / spent:,.0f} messages/s, {len(kinds)} uncaught kinds")
    for kind, example in kinds.items():
        print(f"  UNCAUGHT {kind}: {example}")
    return 1 if kinds else 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
