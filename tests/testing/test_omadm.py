"""
Tests for L{mdmd.testing.omadm}: the emulated classic device behaves as libdmclient does.

The reference values are facts taken from libdmclient's own traffic (its
digests, its nonces, a package #0 it accepted); the shapes and status codes
are those it was seen to send.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase

from mdmd.syncml.codec import DS_WBXML_CODEC, DS_XML_CODEC
from mdmd.syncml.model import (
    Add,
    Alert,
    Atomic,
    Chal,
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
)
from mdmd.testing.dmclient import DMSessionFailed
from mdmd.testing.omadm import (
    DEFAULT_NONCE,
    AccountCredential,
    DeviceCrashed,
    DMAccount,
    OMADMDevice,
    Package0Refused,
    SessionAborted,
    basic_data,
    decode_nonce,
    md5_data,
    package0_digest,
    run_session,
)

from ..narrowing import narrowed

URL = "https://mdm.example.com/dm"
#: A package #0 libdmclient accepted (session 0x1234, server id and SRVCRED name
#: mdmd, secret serverpwd, server nonce /TAZHjDMlhY=), and its default-nonce one (0xAB).
PACKAGE0 = bytes.fromhex("1a299befe7b02dfef362a5d3910b42fc02c80000001234046d646d64")
PACKAGE0_DEFAULT_NONCE = bytes.fromhex("79ed8ae79c7c240e223d655f6993d0ab02c800000000ab046d646d64")


def account(server_nonce: bytes = b"", server: bool = True, server_type: str = "DIGEST") -> DMAccount:
    return DMAccount(
        server_id="mdmd",
        server_uri=URL,
        client=AccountCredential("DIGEST", "DMCtest", "clientpwd", b""),
        server=AccountCredential(server_type, "mdmd", "serverpwd", server_nonce) if server else None,
    )


def device(acc: DMAccount | None = None, **options: Any) -> OMADMDevice:
    calls = itertools.count(1)
    options.setdefault("random", lambda n: bytes([next(calls)]) * n)
    return OMADMDevice("DMCtest", acc or account(), **options)


class Server:
    """
    Builds the server's messages to one emulated device.
    """

    def __init__(self, dev: OMADMDevice) -> None:
        self.dev = dev
        self.msg_ids = itertools.count(1)
        self.cmd_ids = itertools.count(1)

    def cred(self, nonce: bytes | None = None, secret: str = "serverpwd") -> Cred:
        server = self.dev.account.server
        assert server is not None
        value = server.nonce if nonce is None else nonce
        return Cred(meta=Meta(format="b64", type="syncml:auth-md5"), data=md5_data("mdmd", secret, value))

    def message(self, *commands: Command, cred: Cred | None = None, header_status: str = "212", chal: Chal | None = None) -> bytes:
        body: list[Command] = [Status(cmd_id="1", msg_ref="1", cmd_ref="0", cmd="SyncHdr", data=header_status, chal=chal)]
        body += commands
        header = SyncHdr(
            session_id=self.dev.session_id_text,
            msg_id=str(next(self.msg_ids)),
            target=Location(loc_uri="DMCtest"),
            source=Location(loc_uri=URL),
            cred=cred,
        )
        return self.dev.codec.encode(SyncML(header=header, body=tuple(body)))

    def command(self, kind: type, uri: str, data: str | None = None, fmt: str | None = "chr", **fields: Any) -> Command:
        meta = Meta(format=fmt, type="text/plain") if fmt else None
        item = Item(target=Location(loc_uri=uri), meta=meta if kind in (Add, Replace) else None, data=data)
        return kind(cmd_id=str(next(self.cmd_ids)), items=(item,), **fields)


def server_credential(dev: OMADMDevice) -> AccountCredential:
    """
    The device's credential for the server (every device here has one).
    """
    return narrowed(AccountCredential, dev.account.server)


def challenge(message: SyncML) -> Meta:
    """
    The Meta of the challenge in the status of C{message}'s SyncHdr.
    """
    return narrowed(Chal, narrowed(Status, message.body[0]).chal).meta


def decode(dev: OMADMDevice, body: bytes | None) -> SyncML:
    assert body is not None
    return dev.codec.decode(body)


def codes(message: SyncML) -> list[tuple[str | None, str | None]]:
    return [(s.cmd, s.data) for s in message.body if isinstance(s, Status)]


class CredentialTests(SynchronousTestCase):
    def test_libdmclient_values(self) -> None:
        """
        The digests libdmclient sent and accepted: its client Cred with an empty nonce,
        the server's with an empty nonce and with the nonce it issued.
        """
        self.assertEqual(md5_data("DMCtest", "clientpwd", b""), "/Mw6UJ6OmEndBdqto2zgoA==")
        self.assertEqual(md5_data("mdmd", "serverpwd", b""), "YTRuhzEA2oVIwXpkbqWjyA==")
        self.assertEqual(md5_data("mdmd", "serverpwd", b"57QqbjCcm+g="), "gvjZUEeo9UC/1A+dclZuGA==")
        self.assertEqual(basic_data("Bruce2", "OhBehave"), "QnJ1Y2UyOk9oQmVoYXZl")
        trigger = PACKAGE0[16:]
        self.assertEqual(package0_digest("mdmd", "serverpwd", b"/TAZHjDMlhY=", trigger), PACKAGE0[:16])

    def test_nonce_decoding(self) -> None:
        """
        Its NextNonce decoder: the 12 ASCII octets of a server nonce come back; a nonce
        of 3n+2 octets (one '=') or text not a multiple of 4 long decodes to nothing.
        """
        self.assertEqual(decode_nonce("NTdRcWJqQ2NtK2c9"), b"57QqbjCcm+g=")
        self.assertEqual(decode_nonce(base64.b64encode(b"\x01" * 16).decode()), b"\x01" * 16)
        self.assertEqual(decode_nonce(base64.b64encode(b"\x01" * 17).decode()), b"")
        self.assertEqual(decode_nonce(base64.b64encode(b"\x01" * 17).decode(), faithful=False), b"\x01" * 17)
        self.assertEqual(decode_nonce("abcde"), b"")
        self.assertEqual(decode_nonce(""), b"")


class Package1Tests(SynchronousTestCase):
    def test_shape(self) -> None:
        """
        Like libdmclient's: SessionID 1, MsgID 1, Source = DevId without LocName, its
        MD5 Cred, MaxMsgSize 16384, Alert 1201 (CmdID 1) and one Replace (CmdID 2)
        with DevInfo in reverse order, interior nodes as Format node, Final.
        """
        dev = device()
        message = decode(dev, dev.start())
        header = message.header
        self.assertEqual((header.session_id, header.msg_id, header.target.loc_uri), ("1", "1", URL))
        self.assertEqual(header.source, Location(loc_uri="DMCtest"))
        cred = narrowed(Cred, header.cred)
        cred_meta = narrowed(Meta, cred.meta)
        self.assertEqual((cred_meta.type, cred_meta.format, cred.data), ("syncml:auth-md5", "b64", "/Mw6UJ6OmEndBdqto2zgoA=="))
        self.assertEqual(narrowed(Meta, header.meta).max_msg_size, 16384)
        alert, devinfo = message.body
        assert isinstance(alert, Alert) and isinstance(devinfo, Replace)
        self.assertEqual((type(alert), alert.cmd_id, alert.data), (Alert, "1", "1201"))
        self.assertEqual((type(devinfo), devinfo.cmd_id), (Replace, "2"))
        uris = [narrowed(Location, i.source).loc_uri for i in devinfo.items]
        self.assertEqual(uris[-5:], ["./DevInfo/DmV", "./DevInfo/Lang", "./DevInfo/DevId", "./DevInfo/Man", "./DevInfo/Mod"])
        self.assertEqual(uris[:2], ["./DevInfo/Ext/Emulator", "./DevInfo/Ext"])
        self.assertEqual(narrowed(Meta, devinfo.items[1].meta).format, "node")
        self.assertEqual((narrowed(Meta, devinfo.items[-1].meta).format, narrowed(Meta, devinfo.items[-1].meta).type), ("chr", "text/plain"))
        self.assertTrue(message.final)

    def test_wbxml(self) -> None:
        """
        In WBXML (the DS media type it sends) DevInfo values travel as OPAQUE.
        """
        dev = device(codec=DS_WBXML_CODEC)
        self.assertEqual(dev.codec.content_type, "application/vnd.syncml+wbxml")
        body = dev.start()
        self.assertEqual(body[:5], bytes.fromhex("02a4016a00"))
        self.assertEqual(narrowed(Replace, decode(dev, body).body[1]).items[-1].data, b"classic-emulator")


class ServerCheckTests(SynchronousTestCase):
    def test_untrusted_until_the_server_authenticates(self) -> None:
        """
        Before any server Cred it answers 0 to the SyncHdr and to every command, with
        no challenge, and executes nothing.
        """
        dev = device()
        dev.start()
        server = Server(dev)
        reply = decode(dev, dev.receive(server.message(server.command(Replace, "./Vendor/memory/setting", "x"))))
        self.assertEqual(codes(reply), [("SyncHdr", "0"), ("Replace", "0")])
        self.assertIsNone(narrowed(Status, reply.body[0]).chal)
        self.assertEqual(narrowed(Status, reply.body[1]).target_refs, ())
        self.assertEqual(dev.tree["./Vendor/memory/setting"].value, "initial")
        self.assertFalse(dev.server_authenticated)

    def test_good_credential_then_sticky_then_checked_again(self) -> None:
        """
        A right Cred: 212 with a challenge carrying a new server nonce (base64 of its
        12 ASCII octets), commands executed; a message without Cred keeps the 212; a
        message with Cred is checked against the new nonce.
        """
        dev = device()
        dev.start()
        server = Server(dev)
        reply = decode(dev, dev.receive(server.message(server.command(Get, "./DevInfo/Mod"), cred=server.cred())))
        self.assertEqual(codes(reply), [("SyncHdr", "212"), ("Get", "200")])
        chal = challenge(reply)
        self.assertEqual((chal.type, chal.format), ("syncml:auth-md5", "b64"))
        nonce = base64.b64decode(narrowed(str, chal.next_nonce))
        self.assertEqual((len(nonce), nonce, server_credential(dev).nonce), (12, base64.b64encode(b"\x01" * 8), nonce))
        self.assertEqual(narrowed(Status, reply.body[1]).target_refs, ("./DevInfo/Mod",))
        (results,) = [c for c in reply.body if isinstance(c, Results)]
        self.assertEqual((results.cmd_ref, results.items[0].data, narrowed(Meta, results.items[0].meta).format), ("1", "classic-emulator", "chr"))
        reply = decode(dev, dev.receive(server.message(server.command(Get, "./DevInfo/Lang"))))
        self.assertEqual(codes(reply), [("SyncHdr", "212"), ("Get", "200")])
        self.assertIsNone(narrowed(Status, reply.body[0]).chal)
        reply = decode(dev, dev.receive(server.message(server.command(Get, "./DevInfo/Lang"), cred=server.cred(b""))))
        self.assertEqual(codes(reply), [("SyncHdr", "401"), ("Get", "401")])
        self.assertEqual(dev.log.checks, [True, False])
        self.assertEqual(dev.log.verdicts, ["212", "212", "401"])

    def test_wrong_credential(self) -> None:
        """
        A wrong Cred (or one of another type) gets 401 with a new nonce; nothing is executed.
        """
        dev = device()
        dev.start()
        server = Server(dev)
        reply = decode(dev, dev.receive(server.message(server.command(Get, "./DevInfo/Mod"), cred=server.cred(secret="x"))))
        self.assertEqual(codes(reply), [("SyncHdr", "401"), ("Get", "401")])
        self.assertIsNotNone(challenge(reply).next_nonce)
        basic = Cred(meta=Meta(format="b64", type="syncml:auth-basic"), data=basic_data("mdmd", "serverpwd"))
        reply = decode(dev, dev.receive(server.message(server.command(Get, "./DevInfo/Mod"), cred=basic)))
        self.assertEqual(codes(reply)[0], ("SyncHdr", "401"))

    def test_basic_server_credential(self) -> None:
        """
        With a Basic server credential: the Basic Cred is accepted, the challenge has no nonce.
        """
        dev = device(account(server_type="BASIC"))
        dev.start()
        server = Server(dev)
        basic = Cred(meta=Meta(format="b64", type="syncml:auth-basic"), data=basic_data("mdmd", "serverpwd"))
        reply = decode(dev, dev.receive(server.message(server.command(Get, "./DevInfo/Mod"), cred=basic)))
        self.assertEqual(codes(reply), [("SyncHdr", "212"), ("Get", "200")])
        self.assertEqual((challenge(reply).type, challenge(reply).next_nonce), ("syncml:auth-basic", None))

    def test_cred_without_commands_loses_the_nonce(self) -> None:
        """
        A Cred in a message without commands is checked and rotates the nonce, but the
        device answers nothing: the session is over and the server never learns it.
        """
        dev = device()
        dev.start()
        server = Server(dev)
        self.assertIsNone(dev.receive(server.message(cred=server.cred())))
        self.assertEqual(dev.log.checks, [True])
        self.assertEqual(server_credential(dev).nonce, base64.b64encode(b"\x01" * 8))

    def test_rotating_every_reply(self) -> None:
        """
        The stricter device gives a new nonce with every reply it sends, Cred or not,
        and keeps none for a message it does not answer.
        """
        dev = device(rotate="every-reply")
        dev.start()
        server = Server(dev)
        reply = decode(dev, dev.receive(server.message(server.command(Get, "./DevInfo/Mod"), cred=server.cred())))
        first = server_credential(dev).nonce
        reply = decode(dev, dev.receive(server.message(server.command(Get, "./DevInfo/Mod"))))
        self.assertEqual(codes(reply)[0], ("SyncHdr", "212"))
        self.assertEqual(base64.b64decode(narrowed(str, challenge(reply).next_nonce)), server_credential(dev).nonce)
        self.assertNotEqual(server_credential(dev).nonce, first)
        kept = server_credential(dev).nonce
        self.assertIsNone(dev.receive(server.message()))
        self.assertEqual(server_credential(dev).nonce, kept)
        self.assertEqual(len(dev.log.server_nonces), 2)

    def test_crashes(self) -> None:
        """
        What crashes libdmclient raises DeviceCrashed: a Cred without Meta, a Cred to a
        device without server credential, Sequence, Add/Replace without Data or Format.
        """
        dev = device()
        dev.start()
        server = Server(dev)
        with self.assertRaises(DeviceCrashed):
            dev.receive(server.message(cred=Cred(data="x")))
        trusting = device(account(server=False))
        trusting.start()
        with self.assertRaises(DeviceCrashed):
            trusting.receive(Server(trusting).message(cred=Server(dev).cred()))
        for command in (
            Sequence(cmd_id="5", commands=(server.command(Get, "./DevInfo/Mod"),)),
            server.command(Add, "./Vendor/memory/new", None),
            server.command(Replace, "./Vendor/memory/setting", "x", fmt=None),
        ):
            dev = device()
            dev.start()
            server = Server(dev)
            with self.assertRaises(DeviceCrashed, msg=command):
                dev.receive(server.message(command, cred=server.cred()))

    def test_too_large(self) -> None:
        """
        A server message larger than its workspace aborts the session.
        """
        dev = device()
        dev.start()
        server = Server(dev)
        big = server.command(Replace, "./Vendor/memory/setting", "x" * 41000)
        with self.assertRaises(SessionAborted):
            dev.receive(server.message(big, cred=server.cred()))


class ClientAuthenticationTests(SynchronousTestCase):
    def test_cred_until_200_or_212_and_nonce_at_once(self) -> None:
        """
        Its Cred goes in every message until the server's SyncHdr status is 200 or 212;
        a challenge's NextNonce (whatever the code) is its nonce at once.
        """
        dev = device()
        dev.start()
        server = Server(dev)
        new = b"\x07" * 16
        challenge = Chal(meta=Meta(type="syncml:auth-md5", format="b64", next_nonce=base64.b64encode(new).decode()))
        reply = decode(dev, dev.receive(server.message(server.command(Get, "./DevInfo/Mod"), cred=server.cred(), header_status="401", chal=challenge)))
        self.assertEqual(narrowed(Cred, reply.header.cred).data, md5_data("DMCtest", "clientpwd", new))
        self.assertEqual(dev.account.client.nonce, new)
        reply = decode(dev, dev.receive(server.message(server.command(Get, "./DevInfo/Mod"), header_status="200")))
        self.assertIsNone(reply.header.cred)

    def test_resends_only_what_got_401(self) -> None:
        """
        After 401 it sends again those of its commands the server answered 401/407
        (under a new CmdID); a 401 for the SyncHdr alone ends the session.
        """
        dev = device()
        dev.start()
        server = Server(dev)
        refused = [
            Status(cmd_id="2", msg_ref="1", cmd_ref="1", cmd="Alert", data="401"),
            Status(cmd_id="3", msg_ref="1", cmd_ref="2", cmd="Replace", data="401"),
        ]
        reply = decode(dev, dev.receive(server.message(*refused, header_status="401")))
        self.assertEqual([(type(c).__name__, c.cmd_id) for c in reply.body], [("Status", "1"), ("Alert", "2"), ("Replace", "3")])
        self.assertIsNotNone(reply.header.cred)
        self.assertIsNone(dev.receive(server.message(header_status="401")))


class CommandTests(SynchronousTestCase):
    def run_commands(self, *commands: Command) -> SyncML:
        self.dev = device()
        self.dev.start()
        server = Server(self.dev)
        return decode(self.dev, self.dev.receive(server.message(*commands, cred=server.cred())))

    def test_status_codes(self) -> None:
        """
        The codes libdmclient answers: 200, 404 for a missing node, 425 where the ACL
        refuses, 405 where it allows what the node cannot do, 418, 406, 501, 500, 304.
        """
        s = Server(device())
        commands = [
            s.command(Get, "./DevInfo/Mod"),
            s.command(Get, "./DevInfo/Nope"),
            s.command(Get, "./DMAcc/mdmd/AppAuth/toserver/AAuthSecret"),
            s.command(Get, "./DevInfo/Mod?prop=ACL"),
            s.command(Get, "./DevInfo?list=Struct"),
            s.command(Replace, "./DevInfo/Mod", "x"),
            s.command(Replace, "./Vendor/memory/setting", "on"),
            s.command(Add, "./Vendor/memory/setting", "again"),
            s.command(Add, "./Vendor/memory/new", "v"),
            s.command(Add, "./Inbox/x", "1"),
            s.command(Delete, "./DevInfo/Mod"),
            s.command(Exec, "./test"),
            s.command(Exec, "./DevInfo/Nope"),
            s.command(Copy, "./Vendor/memory/new"),
            Alert(cmd_id="50", data="1100"),
            Alert(cmd_id="51", data="1101"),
            Alert(cmd_id="52", data="1222"),
        ]
        reply = self.run_commands(*commands)
        self.assertEqual(
            [code for cmd, code in codes(reply)][1:],
            ["200", "404", "425", "200", "406", "425", "200", "418", "200", "406", "425", "405", "404", "501", "200", "304", "500"],
        )
        self.assertEqual(self.dev.tree["./Vendor/memory/setting"].value, "on")
        self.assertEqual(self.dev.tree["./Vendor/memory/new"].value, "v")

    def test_get_interior_and_delete(self) -> None:
        """
        A Get of an interior node lists its children; a Delete removes a node and a later Get is 404.
        """
        s = Server(device())
        reply = self.run_commands(
            s.command(Get, "./DevInfo"),
            s.command(Delete, "./Vendor/memory/setting"),
            s.command(Get, "./Vendor/memory/setting"),
        )
        (results,) = [c for c in reply.body if isinstance(c, Results)]
        self.assertEqual((narrowed(Meta, results.items[0].meta).format, results.items[0].data), ("node", "DevId/Man/Mod/DmV/Lang/Ext"))
        self.assertEqual(codes(reply)[1:], [("Get", "200"), ("Delete", "200"), ("Get", "404")])

    def test_exec_queues_a_generic_alert(self) -> None:
        """
        Exec ./test/execute: 200, and a generic alert (1226, the Exec's Correlator)
        before the Exec's status, as libdmclient's test node does.
        """
        reply = self.run_commands(Exec(cmd_id="7", correlator="c-1", items=(Item(target=Location(loc_uri="./test/execute")),)))
        alert, status = reply.body[1:]
        assert isinstance(alert, Alert) and isinstance(status, Status)
        self.assertEqual((alert.data, alert.correlator, narrowed(Location, alert.items[0].source).loc_uri, narrowed(Meta, alert.items[0].meta).type), ("1226", "c-1", "./test/execute", "urn:test"))
        self.assertEqual((status.cmd, status.data), ("Exec", "200"))

    def test_atomic_has_no_status_of_its_own(self) -> None:
        """
        An Atomic gets no status; its members run one by one, without rollback.
        """
        s = Server(device())
        atomic = Atomic(cmd_id="9", commands=(s.command(Replace, "./Vendor/memory/setting", "on"), s.command(Replace, "./DevInfo/Mod", "x")))
        reply = self.run_commands(atomic)
        self.assertEqual(codes(reply)[1:], [("Replace", "200"), ("Replace", "425")])
        self.assertEqual(self.dev.tree["./Vendor/memory/setting"].value, "on")


class Package0Tests(SynchronousTestCase):
    def test_accepted(self) -> None:
        """
        The package #0 libdmclient accepted opens session 1234 (upper-case hex) with Alert 1200.
        """
        dev = device(account(server_nonce=b"/TAZHjDMlhY="))
        message = decode(dev, dev.start_from_package0(PACKAGE0))
        self.assertEqual(message.header.session_id, "1234")
        self.assertEqual(narrowed(Alert, message.body[0]).data, "1200")

    def test_session_id_forms(self) -> None:
        """
        Other devices echo the id in lower case or in decimal.
        """
        for form, expected in (("lower", "ab"), ("decimal", "171"), ("upper", "AB")):
            dev = device(account(server_nonce=b"?"), session_id_format=form)
            self.assertEqual(decode(dev, dev.start_from_package0(PACKAGE0_DEFAULT_NONCE)).header.session_id, expected)

    def test_default_nonce_resynchronises(self) -> None:
        """
        A digest over the default nonce (when the stored one fails) is accepted; both
        credentials then use that nonce, the client's Cred in package 1 too.
        """
        dev = device(account(server_nonce=b"other"))
        message = decode(dev, dev.start_from_package0(PACKAGE0_DEFAULT_NONCE))
        self.assertEqual((server_credential(dev).nonce, dev.account.client.nonce), (DEFAULT_NONCE, DEFAULT_NONCE))
        self.assertEqual(narrowed(Cred, message.header.cred).data, md5_data("DMCtest", "clientpwd", DEFAULT_NONCE))

    def test_refused(self) -> None:
        """
        Another version, another server id, a wrong digest, no server credential: refused.
        """
        refusals = {
            "version": (account(server_nonce=b"/TAZHjDMlhY="), PACKAGE0[:16] + bytes([0x03]) + PACKAGE0[17:]),
            "server id": (DMAccount("other", URL, account().client, account().server), PACKAGE0),
            "digest": (account(server_nonce=b"stale"), PACKAGE0),
            "credential": (account(server=False), PACKAGE0),
            "short": (account(), PACKAGE0[:20]),
        }
        for name, (acc, data) in refusals.items():
            with self.assertRaises(Package0Refused, msg=name):
                device(acc).start_from_package0(data)


class RunSessionTests(SynchronousTestCase):
    def test_to_the_end_and_failures(self) -> None:
        """
        run_session posts until the device has nothing to say; any HTTP status but 200 fails it.
        """
        dev = device()
        server = Server(dev)
        answers = [server.message(server.command(Get, "./DevInfo/Mod"), cred=server.cred()), server.message()]
        posted: list[tuple[bytes, str]] = []

        async def post(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            posted.append((body, content_type))
            return 200, {"content-type": "application/vnd.syncml.dm+xml"}, answers[len(posted) - 1]

        log = self.successResultOf(Deferred.fromCoroutine(run_session(dev, post, dev.start())))
        self.assertEqual((log.messages, log.checks), (2, [True]))
        self.assertEqual({ct for _, ct in posted}, {DS_XML_CODEC.content_type})
        self.assertEqual(log.content_types, ["application/vnd.syncml.dm+xml"] * 2)

        async def refuse(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            return 415, {}, b"no"

        failure = self.failureResultOf(ensureDeferred(run_session(device(), refuse, device().start())))
        failure.trap(DMSessionFailed)
        self.assertIn("HTTP 415", str(failure.value))
