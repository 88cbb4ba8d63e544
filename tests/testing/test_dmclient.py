"""
Tests for L{mdmd.testing.dmclient}: the emulated DM client speaks OMA DM 1.2
as a device does, against a scripted server in memory.

Every message it sends is decoded with mdmd's codecs (and, in WBXML, read by
libwbxml's wbxml2xml too) and checked against the rules of the protocol: a
SyncHdr addressed to the server, unique command ids, a Status first for the
server's header, then one for each command it sent, Results for each Get,
Final only once the server has closed its package.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mdmd.enroll.provisioning import parse_document
from mdmd.syncml import auth
from mdmd.syncml.codec import WBXML_CODEC, XML_CODEC, Codec
from mdmd.syncml.model import (
    Add,
    Alert,
    Atomic,
    Chal,
    Command,
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
    SyncML,
)
from mdmd.testing.dmclient import DMClient, DMSessionFailed, windows_dm_client, windows_post
from mdmd.testing.syncml import DEVICE_ID, SERVER_URL, header, targeted
from mdmd.testing.windows.device import Reply
from mdmd.testing.windows.provisioning import AppAuth, Enrollment

NONCE = b"\x01" * 16
WBXML2XML = shutil.which("wbxml2xml")

#: A server message's commands, given the client's message it answers.
Script = Callable[[SyncML], SyncML]


def client(codec: Codec = XML_CODEC, **options: Any) -> DMClient:
    return DMClient(
        device_id=DEVICE_ID,
        server_url=SERVER_URL,
        client_name="device-name",
        client_secret="device-secret",
        client_nonce=NONCE,
        codec=codec,
        **options,
    )


def answer(*commands: Command, final: bool = True, code: str = "200", chal: Chal | None = None) -> Script:
    """
    A server message: the Status for the client's SyncHdr, then C{commands}.
    """

    def script(message: SyncML) -> SyncML:
        status = Status(
            cmd_id="1",
            msg_ref=message.header.msg_id,
            cmd_ref="0",
            cmd="SyncHdr",
            target_refs=(SERVER_URL,),
            source_refs=(DEVICE_ID,),
            chal=chal,
            data=code,
        )
        msg_id = str(int(message.header.msg_id))
        return SyncML(
            header=header(DEVICE_ID, SERVER_URL, message.header.session_id, msg_id),
            body=(status, *commands),
            final=final,
        )

    return script


class Server:
    """
    Answers each client message with the next script, recording what it decoded.
    """

    def __init__(self, *scripts: Script, codec: Codec = XML_CODEC) -> None:
        self.scripts = list(scripts)
        self.codec = codec
        self.received: list[SyncML] = []
        self.sent: list[SyncML] = []
        self.bodies: list[bytes] = []

    async def post(self, body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        assert content_type == self.codec.content_type, content_type
        self.bodies.append(body)
        message = self.codec.decode(body)
        self.received.append(message)
        reply = self.scripts.pop(0)(message)
        self.sent.append(reply)
        return 200, {"content-type": self.codec.content_type}, self.codec.encode(reply)


def status_codes(commands: Iterable[Command]) -> list[str | None]:
    """
    The codes of C{commands}, which must all be Status.
    """
    codes = []
    for command in commands:
        assert isinstance(command, Status), command
        codes.append(command.data)
    return codes


def flatten(commands: tuple[Command, ...]) -> list[Command]:
    out: list[Command] = []
    for command in commands:
        out.append(command)
        if isinstance(command, (Atomic, Sequence)):
            out += flatten(command.commands)
    return out


class ProtocolTests(TestCase):
    def assert_valid(self, server: Server) -> None:
        """
        Every client message is a valid DM 1.2 message answering the server's previous one.
        """
        session_ids = {m.header.session_id for m in server.received}
        self.assertEqual(len(session_ids), 1)
        for number, message in enumerate(server.received, 1):
            header = message.header
            self.assertEqual((header.ver_dtd, header.ver_proto, header.msg_id), ("1.2", "DM/1.2", str(number)))
            self.assertEqual((header.target.loc_uri, header.source.loc_uri), (SERVER_URL, DEVICE_ID))
            ids = [int(c.cmd_id) for c in flatten(message.body)]  # type: ignore[arg-type]
            self.assertEqual(len(ids), len(set(ids)), f"CmdIDs must be unique in a message: {ids}")
            self.assertNotIn(0, ids)
            if number == 1:
                continue
            previous = server.sent[number - 2]
            first = message.body[0]
            assert isinstance(first, Status)
            self.assertEqual(
                (first.cmd_ref, first.cmd, first.msg_ref, first.target_refs, first.source_refs),
                ("0", "SyncHdr", previous.header.msg_id, (DEVICE_ID,), (SERVER_URL,)),
            )
            commands = [c for c in flatten(previous.body) if not isinstance(c, Status)]
            statuses = [c for c in message.body[1:] if isinstance(c, Status)]
            self.assertEqual([(s.cmd_ref, s.cmd) for s in statuses], [(c.cmd_id, c.name) for c in commands])
            self.assertEqual({s.msg_ref for s in statuses}, {previous.header.msg_id} if statuses else set())
            results = [c for c in message.body if isinstance(c, Results)]
            gets = {c.cmd_id for c, s in zip(commands, statuses) if isinstance(c, Get) and s.data == "200"}
            self.assertEqual({r.cmd_ref for r in results}, gets)
            self.assertEqual(message.final, previous.final)

    async def test_package1(self) -> None:
        """
        Package 1: Alert 1201, Alert 1224 with the login status, the DevInfo
        nodes in a Replace, an MD5 credential over the client nonce, Final.
        """
        server = Server(answer())
        log = await client().session(server.post)
        (package1,) = server.received
        self.assertEqual((log.session_id, log.messages, log.header_statuses), ("1", 1, ["200"]))
        self.assertEqual(package1.header.source.loc_name, "device-name")
        cred = package1.header.cred
        assert cred is not None and cred.meta is not None
        self.assertEqual((cred.meta.type, cred.meta.format), (auth.AUTH_MD5, "b64"))
        self.assertTrue(auth.verify_md5(cred.data, "device-name", NONCE, password="device-secret"))
        alert, login, devinfo = package1.body
        self.assertEqual((alert.name, alert.data), ("Alert", "1201"))  # type: ignore[attr-defined]
        self.assertEqual((login.data, login.items[0].data), ("1224", "user"))  # type: ignore[attr-defined]
        self.assertEqual(
            [(i.source.loc_uri, i.data) for i in devinfo.items],  # type: ignore[attr-defined]
            [("./DevInfo/DevId", DEVICE_ID), ("./DevInfo/Man", "mdmd emulator"), ("./DevInfo/Mod", "Virtual PC"),
             ("./DevInfo/DmV", "1.3"), ("./DevInfo/Lang", "en-US")],
        )
        self.assertTrue(package1.final)
        self.assert_valid(server)

    async def test_management(self) -> None:
        """
        Every management command gets its Status (Atomic and Sequence, then
        their commands), a Get its Results; the tree follows Add, Replace and
        Delete; the session ends when the server sends nothing more.
        """
        management = answer(
            targeted(Get, 2, "./DevInfo/Man"),
            targeted(Get, 3, "./Vendor/Missing"),
            targeted(Replace, 4, "./Vendor/Policy", "1", "int"),
            targeted(Add, 5, "./Vendor/New", "added", "chr"),
            Atomic(cmd_id="6", commands=(targeted(Replace, 7, "./Vendor/Other", "2", "int"),)),
            Sequence(cmd_id="8", commands=(targeted(Delete, 9, "./DevDetail/OEM"),)),
            targeted(Delete, 10, "./Vendor/Missing"),
            targeted(Exec, 11, "./Vendor/MSFT/Reboot/RebootNow"),
        )
        server = Server(management, answer())
        dm = client()
        log = await dm.session(server.post, alert="1200")
        self.assertEqual((log.messages, len(log.received)), (2, 8))
        self.assert_valid(server)
        reply = server.received[1]
        self.assertEqual(
            [s.data for s in reply.body if isinstance(s, Status)][1:],
            ["200", "404", "200", "200", "200", "200", "200", "200", "404", "200"],
        )
        (results,) = [c for c in reply.body if isinstance(c, Results)]
        self.assertEqual([(i.source.loc_uri, i.data) for i in results.items], [("./DevInfo/Man", "mdmd emulator")])  # type: ignore[union-attr]
        self.assertEqual(
            {uri: dm.tree.get(uri) for uri in ("./Vendor/Policy", "./Vendor/New", "./Vendor/Other", "./DevDetail/OEM")},
            {"./Vendor/Policy": "1", "./Vendor/New": "added", "./Vendor/Other": "2", "./DevDetail/OEM": None},
        )

    async def test_package_left_open(self) -> None:
        """
        While the server's package is open (no Final), the client's replies leave theirs open too.
        """
        server = Server(answer(targeted(Get, 2, "./DevInfo/Lang"), final=False), answer())
        await client().session(server.post)
        self.assertEqual([m.final for m in server.received], [True, False])
        self.assert_valid(server)

    async def test_large_object(self) -> None:
        """
        A large object's chunks are answered 213 until the last, then 200, and stored whole.
        """
        first = Replace(
            cmd_id="2",
            items=(Item(target=Location(loc_uri="./Vendor/Big"), meta=Meta(size=6), data="abc", more_data=True),),
        )
        last = Replace(cmd_id="2", items=(Item(target=Location(loc_uri="./Vendor/Big"), data="def"),))
        server = Server(answer(first, final=False), answer(last), answer())
        dm = client()
        await dm.session(server.post)
        self.assertEqual([status_codes(m.body[1:]) for m in server.received[1:]], [["213"], ["200"]])
        self.assertEqual(dm.tree["./Vendor/Big"], "abcdef")
        self.assert_valid(server)

    async def test_journal(self) -> None:
        """
        Every command carried out is journaled with its session, the MsgID of
        the reply that reported it, its status and what it read or wrote; it
        is acknowledged once the server accepted that reply (200 for its
        SyncHdr), not before, and not when its answer never came.
        """
        server = Server(
            answer(
                targeted(Get, 2, "./DevInfo/Man"),
                Atomic(cmd_id="3", commands=(targeted(Replace, 4, "./Vendor/A", "1", "int"),)),
                targeted(Get, 5, "./Vendor/Missing"),
            ),
            answer(),
        )
        dm = client()
        await dm.session(server.post, session_id="S1")
        self.assertEqual(
            [(e.session_id, e.msg_id, e.verb, e.target, e.data, e.status, e.result, e.acknowledged) for e in dm.journal],
            [
                ("S1", "2", "Get", "./DevInfo/Man", None, 200, "mdmd emulator", True),
                ("S1", "2", "Replace", "./Vendor/A", "1", 200, None, True),
                ("S1", "2", "Get", "./Vendor/Missing", None, 404, None, True),
            ],
        )

        lost = Server(answer(targeted(Get, 2, "./DevInfo/Lang")))

        async def answer_lost(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            if lost.received:
                raise ConnectionError("the daemon died")
            return await lost.post(body, content_type, headers)

        with self.assertRaises(ConnectionError):
            await dm.session(answer_lost, session_id="S2")
        refused = Server(answer(targeted(Get, 2, "./DevInfo/Lang"), final=False), answer(code="401"), answer(code="401"), answer(code="401"))
        with self.assertRaises(DMSessionFailed):
            await dm.session(refused.post, session_id="S3")
        self.assertEqual(
            [(e.session_id, e.target, e.acknowledged) for e in dm.journal[3:]],
            [("S2", "./DevInfo/Lang", False), ("S3", "./DevInfo/Lang", False)],
        )

    async def test_status_for(self) -> None:
        """
        C{status_for} makes a node answer with another status (to emulate failures).
        """
        server = Server(answer(targeted(Replace, 2, "./Vendor/Locked", "1")), answer())
        await client(status_for={"./Vendor/Locked": 405}).session(server.post)
        self.assertEqual(status_codes(server.received[1].body[1:2]), ["405"])

    async def test_handlers(self) -> None:
        """
        A node handler serves its nodes: Gets read it (absent: 404), Adds and
        Replaces answer its status; other nodes stay in the tree.
        """

        class Handler:
            def __init__(self) -> None:
                self.values: dict[str, str] = {"./Vendor/CSP/Read": "r"}

            def owns(self, uri: str) -> bool:
                return uri.startswith("./Vendor/CSP/")

            def get(self, uri: str) -> str | None:
                return self.values.get(uri)

            def set(self, uri: str, value: str) -> int:
                if uri == "./Vendor/CSP/Read":
                    return 405
                self.values[uri] = value
                return 200

        handler = Handler()
        server = Server(
            answer(
                targeted(Get, 2, "./Vendor/CSP/Read"),
                targeted(Get, 3, "./Vendor/CSP/Absent"),
                targeted(Replace, 4, "./Vendor/CSP/Read", "x", "chr"),
                targeted(Replace, 5, "./Vendor/CSP/Written", "w", "chr"),
                targeted(Replace, 6, "./Vendor/Plain", "p", "chr"),
            ),
            answer(),
        )
        dm = client(handlers=[handler])
        await dm.session(server.post)
        statuses = [c.data for c in server.received[1].body[1:] if isinstance(c, Status)]
        self.assertEqual(statuses, ["200", "404", "405", "200", "200"])
        (results,) = [c for c in server.received[1].body if isinstance(c, Results)]
        self.assertEqual(results.items[0].data, "r")
        self.assertEqual(handler.values["./Vendor/CSP/Written"], "w")
        self.assertEqual((dm.tree.get("./Vendor/Plain"), "./Vendor/CSP/Written" in dm.tree), ("p", False))
        self.assert_valid(server)

    async def test_challenge(self) -> None:
        """
        A 401 with a NextNonce is answered with package 1 again, credentials
        over the new nonce, in the same session; a third challenge ends it.
        """
        nonce = b"\x07" * 16
        chal = Chal(meta=Meta(type=auth.AUTH_MD5, format="b64", next_nonce=auth.encode_nonce(nonce)))
        server = Server(answer(code="401", chal=chal), answer(code="212"))
        dm = client()
        log = await dm.session(server.post)
        self.assertEqual(log.header_statuses, ["401", "212"])
        self.assertEqual(dm.client_nonce, nonce)
        again = server.received[1]
        alert = again.body[0]
        assert isinstance(alert, Alert) and again.header.cred is not None
        self.assertEqual((again.header.msg_id, alert.data), ("2", "1201"))
        self.assertTrue(auth.verify_md5(again.header.cred.data, "device-name", nonce, password="device-secret"))
        refused = answer(code="401")
        with self.assertRaises(DMSessionFailed):
            await client().session(Server(refused, refused, refused).post)

    async def test_refuses(self) -> None:
        """
        A non-200 answer, another content type, a message over MaxMsgSize and
        a session that does not end are failures.
        """

        async def error(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            return 500, {}, b"oops"

        async def html(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            return 200, {"content-type": "text/html"}, b"<html/>"

        with self.assertRaises(DMSessionFailed):
            await client().session(error)
        with self.assertRaises(DMSessionFailed):
            await client().session(html)
        big = answer(targeted(Replace, 2, "./Vendor/Big", "x" * 2000))
        with self.assertRaises(DMSessionFailed):
            await client(max_msg_size=1024).session(Server(big).post)
        endless = answer(targeted(Get, 2, "./DevInfo/Lang"), final=False)
        with self.assertRaises(DMSessionFailed):
            await client().session(Server(*[endless] * 3).post, max_messages=3)

    async def test_wbxml(self) -> None:
        """
        A WBXML client sends WBXML, valid to mdmd's decoder and to the same rules.
        """
        server = Server(answer(targeted(Get, 2, "./DevInfo/Lang")), answer(), codec=WBXML_CODEC)
        await client(WBXML_CODEC).session(server.post)
        self.assertEqual(len(server.received), 2)
        self.assert_valid(server)


class LibwbxmlTests(TestCase):
    if WBXML2XML is None:
        skip = "libwbxml2-utils (wbxml2xml) is not installed"

    async def test_libwbxml_reads_the_client(self) -> None:
        """
        libwbxml's wbxml2xml reads every WBXML message of a session into the
        SyncML document mdmd decoded from it.
        """
        server = Server(answer(targeted(Get, 2, "./DevInfo/Lang"), targeted(Replace, 3, "./Vendor/X", "1")), answer(),
                        codec=WBXML_CODEC)
        await client(WBXML_CODEC).session(server.post)
        directory = self.mktemp()
        os.makedirs(directory)
        for n, (body, decoded) in enumerate(zip(server.bodies, server.received)):
            source, target = os.path.join(directory, f"{n}.wbxml"), os.path.join(directory, f"{n}.xml")
            with open(source, "wb") as f:
                f.write(body)
            done = subprocess.run(
                [WBXML2XML, "-k", "-m", "0", "-o", target, source], capture_output=True, timeout=30  # type: ignore[list-item]
            )
            self.assertEqual(done.returncode, 0, done.stderr + done.stdout)
            with open(target, "rb") as f:
                self.assertEqual(XML_CODEC.decode(f.read()), decoded)


def _enrolled(encoding: str | None) -> SimpleNamespace:
    parm = f'<parm name="DEFAULTENCODING" value="{encoding}"/>' if encoding else ""
    document = parse_document(
        f'<wap-provisioningdoc version="1.1"><characteristic type="APPLICATION">{parm}'
        "</characteristic></wap-provisioningdoc>".encode()
    )
    enrollment = Enrollment(
        certificate=None,  # type: ignore[arg-type]
        root=None,  # type: ignore[arg-type]
        document=document,
        dm_url=SERVER_URL,
        provider_id="mdmd",
        store="User",
        client_auth=AppAuth("APPSRV", "DIGEST", "device-name", "device-secret", NONCE),
        server_auth=AppAuth("CLIENT", "DIGEST", "mdmd", "server-secret", b"\x02" * 16),
    )
    return SimpleNamespace(device_id=DEVICE_ID, enrollment=enrollment, dm_url=SERVER_URL)


class WindowsTests(TestCase):
    def test_client_from_enrollment(self) -> None:
        """
        An enrolled device's DM client has its DeviceID, the DM address, the
        APPSRV credentials and the DEFAULTENCODING's codec (XML by default).
        """
        dm = windows_dm_client(_enrolled("application/vnd.syncml.dm+wbxml"))
        self.assertEqual(
            (dm.device_id, dm.server_url, dm.client_name, dm.client_secret, dm.client_nonce, dm.codec),
            (DEVICE_ID, SERVER_URL, "device-name", "device-secret", NONCE, WBXML_CODEC),
        )
        self.assertIs(windows_dm_client(_enrolled(None)).codec, XML_CODEC)
        self.assertIs(windows_dm_client(_enrolled(None), codec=WBXML_CODEC).codec, WBXML_CODEC)
        with self.assertRaises(RuntimeError):
            windows_dm_client(SimpleNamespace(enrollment=None))

    async def test_post(self) -> None:
        """
        DM messages go over the device's mutual-TLS connection to the DM
        address; an answer without its Content-Length is a failure.
        """
        calls: list[tuple[Any, ...]] = []
        replies = iter([Reply(200, {"content-type": "x"}, b"abc", 3), Reply(200, {}, b"abc", None)])

        async def request(method: str, url: str, body: bytes, content_type: str, client_certificate: bool) -> Reply:
            calls.append((method, url, body, content_type, client_certificate))
            return next(replies)

        device = _enrolled(None)
        device.request = request
        post = windows_post(device)
        self.assertEqual(await post(b"msg", "application/vnd.syncml.dm+xml", {}), (200, {"content-type": "x"}, b"abc"))
        self.assertEqual(calls, [("POST", SERVER_URL, b"msg", "application/vnd.syncml.dm+xml", True)])
        with self.assertRaises(DMSessionFailed):
            await post(b"msg", "application/vnd.syncml.dm+xml", {})


class ClockTests(SynchronousTestCase):
    def test_latencies_and_sizes(self) -> None:
        """
        With a clock, the session log holds each message's latency and size.
        """
        ticks = itertools.count(0.0, 0.5)
        server = Server(answer(targeted(Get, 2, "./DevInfo/Lang")), answer())
        log = self.successResultOf(Deferred.fromCoroutine(client(clock=lambda: next(ticks)).session(server.post)))
        self.assertEqual(log.latencies, [0.5, 0.5])
        self.assertEqual(log.sizes, [len(body) for body in server.bodies])


class IssueTwelveClientTests(TestCase):
    async def test_lost_answer_resent(self) -> None:
        """
        A message whose answer is lost goes again, the same bytes, once; the session goes on.
        """
        server = Server(answer(), answer(targeted(Get, 2, "./DevInfo/Lang")), answer())
        log = await client(lose=frozenset({1})).session(server.post)
        self.assertEqual((log.messages, log.resent), (2, 1))
        self.assertEqual(server.bodies[0], server.bodies[1])
        self.assertEqual([m.header.msg_id for m in server.received], ["1", "1", "2"])

    async def test_214_then_215(self) -> None:
        """
        After the command it answers 214, the client executes nothing more of the message (215).
        """
        server = Server(answer(targeted(Exec, 2, "./Vendor/Stop"), targeted(Replace, 3, "./Vendor/X", "1")), answer())
        dm = client(status_for={"./Vendor/Stop": 214})
        await dm.session(server.post)
        self.assertEqual(status_codes(server.received[1].body[1:]), ["214", "215"])
        self.assertNotIn("./Vendor/X", dm.tree)

    async def test_events_in_package1(self) -> None:
        """
        Events go in the next package 1, after the DevInfo, and are forgotten once reported.
        """
        from mdmd.testing.dmclient import completion_alert

        dm = client()
        dm.events.append(completion_alert("./Vendor/X/Install", "urn:done", "0", code="1224"))
        server = Server(answer(), answer())
        await dm.session(server.post)
        event = server.received[0].body[-1]
        assert isinstance(event, Alert)
        self.assertEqual((event.cmd_id, event.data, event.items[0].source.loc_uri, event.items[0].meta.type), ("5", "1224", "./Vendor/X/Install", "urn:done"))  # type: ignore[union-attr]
        await dm.session(server.post)
        self.assertEqual(len(server.received[1].body), 3)
