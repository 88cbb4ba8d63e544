"""
Tests for L{mdmd.dm.engine}: one client message in, one server message out.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any, cast
from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm.authentication import AuthScheme, Credentials
from mdmd.dm.effects import (
    ClientEvent,
    ClientNonce,
    CommandAnswered,
    CommandRequeued,
    CommandSent,
    DeviceAuth,
    DevInfoReported,
    HeaderRefused,
    HeaderStatusInvalid,
    LoginStatus,
    MessageRefused,
    NewSession,
    ServerChallenged,
    ServerInitiated,
    ServerNonce,
    SessionAborted,
    Settings,
    Unenrolled,
)
from mdmd.dm.engine import CLIENT_ALERTS, CLIENT_COMMANDS, UNENROLL_ALERT, handle
from mdmd.dm.state import Authentication, Phase, ServerCredential
from mdmd.syncml import auth, model
from mdmd.syncml.codec import DS_WBXML_CODEC, WBXML_CODEC, XML_CODEC
from mdmd.syncml.codes import AlertCode
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
    Sequence,
    Status,
    SyncML,
)
from mdmd.testing.omadm import AccountCredential

from ..narrowing import narrowed
from .helpers import (
    DEVICE_ID,
    GET_SWV,
    NOW,
    REPLACE,
    SERVER_URL,
    Harness,
    classic_device,
    commands,
    first_item,
    pending,
    statuses,
    target_uri,
)


class Package1Tests(SynchronousTestCase):
    def test_authenticated_package1(self) -> None:
        """
        A Windows-shaped package 1 with a valid MD5 Cred gets 212 with a fresh NextNonce
        first, a status for every command, then the queued commands, and Final.
        """
        h = Harness(GET_SWV, REPLACE)
        reply = h.send(h.client.package1())
        first = reply.body[0]
        self.assertIsInstance(first, Status)
        assert isinstance(first, Status)
        self.assertEqual(
            (first.cmd_id, first.msg_ref, first.cmd_ref, first.cmd, first.data, first.target_refs, first.source_refs),
            ("1", "1", "0", "SyncHdr", "212", (SERVER_URL,), (DEVICE_ID,)),
        )
        nonce = auth.decode_nonce(narrowed(str, narrowed(Chal, first.chal).meta.next_nonce))
        self.assertEqual(h.effects(ClientNonce), [ClientNonce(nonce)])
        self.assertEqual([(s.cmd_ref, s.cmd, s.data) for s in statuses(reply)[1:]], [("2", "Alert", "200"), ("3", "Alert", "200"), ("4", "Replace", "200")])
        sent = commands(reply)
        self.assertEqual([type(c).__name__ for c in sent], ["Get", "Replace"])
        self.assertEqual([c.cmd_id for c in reply.body], ["1", "2", "3", "4", "5", "6"])
        self.assertEqual(narrowed(Meta, first_item(sent[1]).meta).format, "int")
        self.assertTrue(reply.final)
        self.assertEqual((reply.header.session_id, reply.header.msg_id, reply.header.target.loc_uri), ("D", "1", DEVICE_ID))
        devinfo = dict(h.effects(DevInfoReported)[0].values)
        self.assertEqual(devinfo["./DevInfo/Man"], "Contoso")
        self.assertEqual(h.effects(LoginStatus), [LoginStatus("user")])
        self.assertEqual([e.seq for e in h.effects(CommandSent)], [1, 2])
        self.assertIs(h.state.phase, Phase.OPEN)

    def test_whole_session(self) -> None:
        """
        Commands go out, statuses and results come back and are recorded, and the
        session ends with a message that carries only statuses and Final.
        """
        h = Harness(GET_SWV, REPLACE)
        reply = h.send(h.client.package1())
        reply = h.send(h.answer_all(reply, results={"./DevDetail/SwV": "10.0.26100.1"}))
        self.assertEqual(h.records[1]["state"], "done")
        self.assertEqual(h.records[1]["results"][0]["data"], "10.0.26100.1")
        self.assertEqual(h.records[1]["results"][0]["source"], "./DevDetail/SwV")
        self.assertEqual(h.records[2]["status"], 200)
        self.assertEqual(commands(reply), [])
        self.assertTrue(reply.final)
        self.assertEqual(reply.header.msg_id, "2")
        self.assertIs(h.state.phase, Phase.ENDED)
        # every client command got a status, SyncHdr's first
        self.assertEqual(statuses(reply)[0].cmd, "SyncHdr")
        # the SyncHdr, and the Results (Status commands themselves are not answered)
        self.assertEqual([(s.cmd, s.data) for s in statuses(reply)], [("SyncHdr", "200"), ("Results", "200")])

    def test_failed_command(self) -> None:
        """
        A 4xx/5xx status fails the command with its code.
        """
        h = Harness(REPLACE)
        reply = h.send(h.client.package1())
        h.send(h.answer_all(reply, code=404))
        self.assertEqual((h.records[1]["state"], h.records[1]["status"]), ("failed", 404))

    def test_wbxml_session(self) -> None:
        """
        The same session in WBXML.
        """
        h = Harness(GET_SWV, codec=WBXML_CODEC)
        reply = h.send(h.client.package1())
        self.assertEqual(statuses(reply)[0].data, "212")
        h.send(h.answer_all(reply, results={"./DevDetail/SwV": "1.2.3"}))
        self.assertEqual(h.records[1]["results"][0]["data"], "1.2.3")


class RuleTests(SynchronousTestCase):
    def open(self, *specs: dict[str, Any]) -> tuple[Harness, SyncML]:
        """
        A session that goes on after package 1 (something was sent): an ended one reads nothing.
        """
        h = Harness(*(specs or (REPLACE,)))
        reply = h.send(h.client.package1())
        return h, reply

    def test_missing_cmdid_and_unknown_element(self) -> None:
        """
        A command without CmdID gets 400 with an empty CmdRef; an unknown element gets 400.
        """
        h, reply = self.open()
        c = h.client
        c.cmd_ids = __import__("itertools").count(1)
        raw = XML_CODEC.encode(c.reply(c.header_status(reply), Alert(data="1224"))).replace(
            b"</SyncBody>", b"<Frobnicate><CmdID>7</CmdID></Frobnicate><Final/></SyncBody>"
        ).replace(b"<Final/><Frob", b"<Frob")
        reply = h.send(None, raw=raw)
        answers = [(s.cmd_ref, s.cmd, s.data) for s in statuses(reply)[1:]]
        self.assertEqual(answers, [("", "Alert", "400"), ("7", "Frobnicate", "400")])

    def test_client_atomic_rules(self) -> None:
        """
        Nested Atomic: inner 500, outer 507; Get inside Atomic: 500; other members rolled back (216).
        """
        h, reply = self.open()
        c = h.client
        c.cmd_ids = __import__("itertools").count(1)
        c.next_id()
        inner = Atomic(cmd_id="3", commands=(Replace(cmd_id="4", items=(Item(source=Location(loc_uri="./DevInfo/Lang"), data="x"),)),))
        outer = Atomic(
            cmd_id="2",
            commands=(
                inner,
                Get(cmd_id="5", items=(Item(target=Location(loc_uri="./a"),),)),
                Replace(cmd_id="6", items=(Item(source=Location(loc_uri="./DevInfo/Mod"), data="y"),)),
            ),
        )
        reply = h.send(c.reply(c.header_status(reply), outer))
        codes = {s.cmd_ref: s.data for s in statuses(reply)[1:]}
        self.assertEqual(codes["2"], "507")
        self.assertEqual(codes["3"], "500")
        self.assertEqual(codes["5"], "500")
        self.assertEqual(codes["6"], "216")

    def test_user_commands_wait_for_login(self) -> None:
        """
        ./User commands wait for LoginStatus "user"; device commands are not held back.
        """
        user = {"verb": "Replace", "target": "./User/Vendor/MSFT/Policy/Config/X", "data": "1"}
        h = Harness(user, REPLACE)
        reply = h.send(h.client.package1(login="others"))
        self.assertEqual([target_uri(c) for c in commands(reply)], [REPLACE["target"]])
        h.send(h.answer_all(reply))
        h.client.session_id = "E"
        reply = h.send(h.client.package1(login="user"))
        self.assertEqual([target_uri(c) for c in commands(reply)], [user["target"]])

    def test_strict_order(self) -> None:
        """
        A command waits until the device answered the previous ones.
        """
        h = Harness(REPLACE)
        reply = h.send(h.client.package1())
        h.commands[2] = pending(GET_SWV, start=2)[0]
        h.records[2] = {"state": "queued"}
        c = h.client
        c.cmd_ids = __import__("itertools").count(1)
        # the device sends only its header status: the Replace is still unanswered
        reply2 = h.send(c.reply(c.header_status(reply)))
        self.assertEqual(commands(reply2), [])
        self.assertEqual(h.records[2]["state"], "queued")

    def test_abort(self) -> None:
        """
        Alert 1223 ends the session: statuses, no commands, and what was sent goes back next session.
        """
        h = Harness(REPLACE, GET_SWV)
        reply = h.send(h.client.package1())
        c = h.client
        c.cmd_ids = __import__("itertools").count(1)
        reply = h.send(c.reply(c.header_status(reply), Alert(cmd_id="2", data="1223")))
        self.assertEqual(h.effects(SessionAborted), [SessionAborted()])
        self.assertEqual(commands(reply), [])
        self.assertIs(h.state.phase, Phase.ENDED)
        h.client.session_id = "E"
        reply = h.send(h.client.package1())
        self.assertEqual(len(h.effects(NewSession)), 1)
        self.assertEqual(len(commands(reply)), 2)

    def test_unenrollment_alert(self) -> None:
        """
        The user-initiated unenrollment alert is answered 200 and reported.
        """
        h = Harness()
        c = h.client
        c.cmd_ids = __import__("itertools").count(2)
        alert = Alert(
            cmd_id="2",
            data="1226",
            items=(Item(meta=Meta(type=UNENROLL_ALERT, format="int"), data="1"),),
        )
        reply = h.send(session_message := c.reply(Alert(cmd_id="1", data="1201"), alert, cred=True))
        self.assertEqual([s.data for s in statuses(reply)], ["212", "200", "200"])
        self.assertEqual(h.effects(Unenrolled), [Unenrolled()])
        del session_message

    def test_group_commands(self) -> None:
        """
        Atomic and Sequence go out with a CmdID per member, and every member's status is kept.
        """
        spec = {
            "verb": "Atomic",
            "commands": [
                {"verb": "Add", "target": "./Vendor/A", "data": "1", "format": "int"},
                {"verb": "Sequence", "commands": [{"verb": "Exec", "target": "./Vendor/B/Run", "data": "x"}]},
            ],
        }
        h = Harness(spec)
        reply = h.send(h.client.package1())
        (atomic,) = commands(reply)
        assert isinstance(atomic, model.Atomic)
        self.assertIsInstance(atomic, Atomic)
        assert isinstance(atomic, Atomic)
        self.assertIsInstance(atomic.commands[1], Sequence)
        h.send(h.answer_all(reply))
        self.assertEqual(h.records[1]["state"], "done")
        self.assertEqual(sorted(h.records[1]["statuses"]), [("", 200), ("1", 200), ("2", 200), ("2.1", 200)])


class SessionTests(SynchronousTestCase):
    def test_session_id_opaque(self) -> None:
        """
        Hex and zero SessionIDs are echoed verbatim; server MsgIDs count 1, 2, 3 within a session.
        """
        for session_id in ("D", "0", "00A1"):
            h = Harness(REPLACE)
            h.client.session_id = session_id
            reply = h.send(h.client.package1())
            self.assertEqual(reply.header.session_id, session_id)
            ids = [reply.header.msg_id]
            reply = h.send(h.answer_all(reply))
            ids.append(reply.header.msg_id)
            self.assertEqual(ids, ["1", "2"])

    def test_expired_session_restarts(self) -> None:
        """
        A message after the deadline starts a new session.
        """
        h = Harness(REPLACE)
        h.send(h.client.package1())
        h.now += Settings().session_timeout + 1
        h.send(h.client.package1())
        self.assertEqual(len(h.effects(NewSession)), 1)


class GroupWithoutStatusTests(SynchronousTestCase):
    """
    A group the device answered member by member but not as a whole (libdmclient's Atomic).
    """

    ATOMIC = {
        "verb": "Atomic",
        "commands": [
            {"verb": "Replace", "target": "./Vendor/memory/setting", "data": "on", "format": "chr"},
            {"verb": "Add", "target": "./Vendor/memory/new", "data": "1", "format": "chr"},
        ],
    }

    def test_atomic_answered_from_its_members(self) -> None:
        """
        The emulated classic device answers an Atomic's members only: the Atomic
        is recorded answered (200, its members' statuses, a note), not sent again
        in the next session.
        """
        h = Harness(self.ATOMIC, settings=OWING)
        device = classic_device(h)
        h.converse(device, device.start())
        record = h.records[1]
        self.assertEqual((record["state"], record["status"]), ("done", 200))
        self.assertEqual(record["statuses"], (("1", 200), ("2", 200)))
        self.assertEqual([(verb, code) for verb, _, code in device.log.executed], [("Replace", 200), ("Add", 200)])
        (answered,) = h.all_effects(CommandAnswered)
        self.assertEqual(
            answered.note, "the device sent no status for the Atomic itself: answered from its members' statuses"
        )
        log = h.converse(device, device.start(2))
        self.assertEqual(log.executed, [])  # nothing sent again
        self.assertEqual(h.records[1]["state"], "done")

    def test_failed_member(self) -> None:
        """
        A member that failed makes the group's recorded status its own (the group failed).
        """
        h = Harness(self.ATOMIC)
        reply = h.send(h.client.package1())
        (atomic,) = commands(reply)
        assert isinstance(atomic, model.Atomic)
        client = h.client
        client.cmd_ids = itertools.count(1)
        answer = client.reply(
            client.header_status(reply),
            client.status_for(reply, atomic.commands[0], 200),
            client.status_for(reply, atomic.commands[1], 404),
        )
        h.send(answer)
        self.assertEqual((h.records[1]["state"], h.records[1]["status"]), ("failed", 404))

    def test_waits_for_the_end_of_the_package(self) -> None:
        """
        Members answered in a message that does not end the device's package:
        the group's own status may still come, and it wins.
        """
        h = Harness({"verb": "Sequence", "commands": [{"verb": "Exec", "target": "./test/execute"}]})
        reply = h.send(h.client.package1())
        (sequence,) = commands(reply)
        assert isinstance(sequence, model.Sequence)
        client = h.client
        client.cmd_ids = itertools.count(1)
        h.send(client.reply(client.header_status(reply), client.status_for(reply, sequence.commands[0], 200), final=False))
        self.assertEqual(h.records[1]["state"], "sent")
        client.cmd_ids = itertools.count(1)
        h.send(client.reply(client.status_for(reply, sequence, 215)))
        self.assertEqual((h.records[1]["state"], h.records[1]["status"]), ("not-executed", 215))
        self.assertEqual(h.all_effects(CommandAnswered)[0].note, None)

    def test_not_all_members_answered(self) -> None:
        """
        A group with a member still unanswered is not settled.
        """
        h = Harness(self.ATOMIC)
        reply = h.send(h.client.package1())
        (atomic,) = commands(reply)
        assert isinstance(atomic, model.Atomic)
        client = h.client
        client.cmd_ids = itertools.count(1)
        h.send(client.reply(client.header_status(reply), client.status_for(reply, atomic.commands[0], 200)))
        self.assertEqual(h.records[1]["state"], "sent")


class ExplicitItemTests(SynchronousTestCase):
    """
    Settings.explicit_items: Add and Replace items spell out Format chr and an empty Data.
    """

    def sent(self, *specs: dict, explicit: bool) -> list:
        h = Harness(*specs, settings=Settings(explicit_items=explicit))
        return commands(h.send(h.client.package1()))

    def test_defaults_spelt_out(self) -> None:
        """
        Add and Replace (in an Atomic too) get Format chr and Data "" when none
        were given; a given format or value is kept; Get, Delete and Exec are as given.
        """
        sent = self.sent(
            {"verb": "Add", "target": "./Vendor/A"},
            {"verb": "Replace", "target": "./Vendor/B", "data": "x"},
            {"verb": "Replace", "target": "./Vendor/C", "data": "1", "format": "int", "type": "text/plain"},
            {"verb": "Atomic", "commands": [{"verb": "Add", "target": "./Vendor/D"}]},
            {"verb": "Get", "target": "./Vendor/E"},
            {"verb": "Exec", "target": "./Vendor/F"},
            {"verb": "Delete", "target": "./Vendor/G"},
            explicit=True,
        )
        items = [(first_item(c).meta, first_item(c).data) for c in sent if not isinstance(c, model.Atomic)]
        self.assertEqual(
            items,
            [
                (Meta(format="chr"), ""),
                (Meta(format="chr"), "x"),
                (Meta(format="int", type="text/plain"), "1"),
                (None, None),
                (None, None),
                (None, None),
            ],
        )
        (atomic,) = [c for c in sent if isinstance(c, model.Atomic)]
        self.assertEqual((first_item(atomic.commands[0]).meta, first_item(atomic.commands[0]).data), (Meta(format="chr"), ""))

    def test_as_given_otherwise(self) -> None:
        """
        Without the setting (Windows), an item carries only what the operator gave.
        """
        sent = self.sent({"verb": "Add", "target": "./Vendor/A"}, explicit=False)
        self.assertEqual((first_item(sent[0]).meta, first_item(sent[0]).data), (None, None))

    def test_chunks_keep_the_format(self) -> None:
        """
        A large Replace without a format goes in chunks whose first carries Format chr.
        """
        h = Harness({"verb": "Replace", "target": "./Vendor/Big", "data": "q" * 3000}, settings=Settings(explicit_items=True))
        h.client.max_msg_size = 2000
        (first,) = commands(h.send(h.client.package1()))
        self.assertTrue(first_item(first).more_data)
        self.assertEqual(narrowed(Meta, first_item(first).meta).format, "chr")


class WindowsCaptureTests(SynchronousTestCase):
    def test_windows_shaped_package1(self) -> None:
        """
        The raw Windows-shaped package 1 (hex SessionID, xmlns:msft on SyncBody,
        Microsoft's metinfo typo, a Status 500 for our previous SyncHdr) gets
        212, a status per command in order, and compact XML back.
        """
        from mdmd.testing.syncml import DEVICE_ID as SAMPLE_DEVICE, WINDOWS_PACKAGE1

        nonce = b"\x05" * 16
        cred = auth.md5_cred_data("dummy", nonce, password="secret").encode()
        raw = WINDOWS_PACKAGE1.replace(b"Zz6EivR3yeaaENcRN6lpAQ==", cred)
        device = DeviceAuth(
            device_id=SAMPLE_DEVICE,
            client=Credentials("dummy", "secret", nonce),
            server=Credentials("mdmd", "server-secret", b"\x06" * 16),
        )
        outcome = handle(
            XML_CODEC.decode(raw),
            XML_CODEC,
            device=device,
            state=None,
            commands=pending(REPLACE),
            now=NOW,
            random=lambda n: b"\x07" * n,
        )
        reply = XML_CODEC.decode(outcome.body)
        self.assertEqual(reply.header.session_id, "D")
        self.assertEqual(
            [(s.cmd_ref, s.cmd, s.data) for s in statuses(reply)],
            [("0", "SyncHdr", "212"), ("2", "Alert", "200"), ("3", "Alert", "200"), ("4", "Replace", "200")],
        )
        self.assertIn(HeaderRefused(500), outcome.effects)
        self.assertIn(LoginStatus("user"), outcome.effects)
        (devinfo,) = [e for e in outcome.effects if isinstance(e, DevInfoReported)]
        self.assertEqual(dict(devinfo.values)["./DevInfo/Man"], "Contoso Ltd.")
        self.assertTrue(outcome.body.startswith(b'<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr>'))
        self.assertNotIn(b">\n", outcome.body)
        self.assertNotIn(b"> <", outcome.body)
        self.assertEqual([type(c).__name__ for c in commands(reply)], ["Replace"])


def _command_types() -> set[type[Command]]:
    """
    Every command the model can decode: the Command subclasses it exports.
    """
    return {
        value
        for name in model.__all__
        if isinstance(value := getattr(model, name), type) and issubclass(value, Command) and value is not Command
    }


class DispatchTests(SynchronousTestCase):
    def open(self, *specs: dict[str, Any]) -> tuple[Harness, SyncML]:
        """
        A session that goes on after package 1 (something was sent): an ended one reads nothing.
        """
        h = Harness(*(specs or (REPLACE,)), codec=WBXML_CODEC)
        reply = h.send(h.client.package1())
        h.client.cmd_ids = itertools.count(1)
        return h, reply

    def test_every_command_type_has_a_row(self) -> None:
        """
        The client command table covers every command type of mdmd.syncml.model, and nothing else.
        """
        types = _command_types()
        self.assertEqual(len(types), 12)
        self.assertEqual(set(CLIENT_COMMANDS), types)

    def test_commands_a_server_does_not_take(self) -> None:
        """
        Add, Copy, Delete, Exec and Get from a device get 406; an unknown element 400.
        """
        h, reply = self.open()
        c = h.client
        sent = [kind(cmd_id=str(i)) for i, kind in enumerate((Add, Copy, Delete, Exec, Get), 2)]
        reply = h.send(c.reply(c.header_status(reply), *sent))
        self.assertEqual(
            [(s.cmd, s.data) for s in statuses(reply)[1:]],
            [("Add", "406"), ("Copy", "406"), ("Delete", "406"), ("Exec", "406"), ("Get", "406")],
        )

    def test_sequence_members_are_read(self) -> None:
        """
        A client Sequence is answered 200 and each member through the table.
        """
        h, reply = self.open()
        c = h.client
        sequence = Sequence(cmd_id="2", commands=(Alert(cmd_id="3", data="1224"), Get(cmd_id="4")))
        reply = h.send(c.reply(c.header_status(reply), sequence))
        self.assertEqual([(s.cmd_ref, s.data) for s in statuses(reply)[1:]], [("2", "200"), ("3", "200"), ("4", "406")])

    def test_alert_table(self) -> None:
        """
        The alerts a device may send a DM server have their row; every other code gets 406.
        """
        self.assertEqual(
            set(CLIENT_ALERTS),
            {
                AlertCode.SERVER_INITIATED_MGMT,
                AlertCode.CLIENT_INITIATED_MGMT,
                AlertCode.NEXT_MESSAGE,
                AlertCode.SESSION_ABORT,
                AlertCode.CLIENT_EVENT,
                AlertCode.GENERIC_ALERT,
            },
        )
        others = [code for code in AlertCode if code not in CLIENT_ALERTS]
        h, reply = self.open(REPLACE)
        c = h.client
        alerts = [Alert(cmd_id=str(i), data=str(int(code))) for i, code in enumerate(others, 2)]
        alerts.append(Alert(cmd_id="99", data=" 1223"))  # a padded code is not one we know
        reply = h.send(c.reply(c.header_status(reply), *alerts))
        self.assertEqual({s.data for s in statuses(reply)[1:]}, {"406"})
        self.assertEqual(len(statuses(reply)), len(alerts) + 1)
        self.assertEqual(h.effects(SessionAborted), [])

    def test_server_initiated(self) -> None:
        """
        Alert 1200 reports the session as the answer to a notification with its SessionID.
        """
        h = Harness(REPLACE)
        h.client.session_id = "4A2"
        h.send(h.client.package1(alert="1200"))
        self.assertEqual(h.effects(ServerInitiated), [ServerInitiated("4A2")])

    def test_ended_session_accepts_nothing(self) -> None:
        """
        After the end, an authenticated message is answered 403 throughout, with Final
        and nothing of ours, and nothing of it is applied (OUT_OF_STEP: the ENDED rows
        of an accepted credential, chunks and challenges are gone).
        """
        h = Harness(REPLACE, GET_SWV)
        reply = h.send(h.client.package1())
        reply = h.send(h.answer_all(reply))
        h.commands[3] = pending(REPLACE, start=3)[0]
        h.records[3] = {"state": "queued"}
        c = h.client
        c.cmd_ids = itertools.count(1)
        login = Alert(cmd_id="2", data="1224", items=(Item(meta=Meta(type="com.microsoft/MDM/LoginStatus"), data="none"),))
        reply = h.send(c.reply(c.header_status(reply), login))
        self.assertIs(h.state.phase, Phase.ENDED)
        self.assertEqual([s.data for s in statuses(reply)], ["403", "403"])
        self.assertEqual(commands(reply), [])
        self.assertTrue(reply.final)
        self.assertEqual(h.effects(LoginStatus), [])
        self.assertEqual(h.effects(MessageRefused), [MessageRefused("session D has ended")])
        self.assertTrue(h.state.user_logged_in)
        self.assertEqual(h.records[3]["state"], "queued")



def _chal(nonce: bytes) -> Chal:
    return Chal(meta=Meta(type="syncml:auth-md5", format="b64", next_nonce=base64.b64encode(nonce).decode()))


OWING = Settings(send_server_credential=True)
BIG = {"verb": "Replace", "target": "./Vendor/memory/setting", "data": "x" * 3000, "format": "chr"}
EXEC = {"verb": "Exec", "target": "./test/execute"}
SET = {"verb": "Replace", "target": "./Vendor/memory/setting", "data": "on", "format": "chr"}


class ServerAuthenticationTests(SynchronousTestCase):
    """
    We authenticate ourselves to the device (OMA DM Security): the rows of the
    server credential, the nonces, the commands refused before it.
    """

    def md5(self, nonce: bytes) -> str:
        return auth.md5_cred_data("mdmd", nonce, password="server-secret")

    def test_first_reply_carries_our_credential(self) -> None:
        """
        Where the device's kind says so, the first reply (with commands) carries our
        MD5 Cred: the server credential's name and the stored server nonce.
        """
        h = Harness(GET_SWV, settings=OWING)
        reply = h.send(h.client.package1())
        self.assertEqual((narrowed(Meta, narrowed(Cred, reply.header.cred).meta).type, narrowed(Cred, reply.header.cred).data), ("syncml:auth-md5", self.md5(b"\x02" * 16)))
        self.assertEqual((h.state.server_credential, h.state.server_cred_sent), (ServerCredential.OWED, True))

    def test_not_unasked_by_default(self) -> None:
        """
        By default (Windows) our credential waits until the device asks for it.
        """
        h = Harness(GET_SWV)
        reply = h.send(h.client.package1())
        self.assertIsNone(reply.header.cred)
        self.assertEqual((h.state.server_credential, h.state.server_cred_sent), (ServerCredential.NOT_ASKED, False))

    def test_basic_and_hmac(self) -> None:
        """
        A device whose server auth type is BASIC gets a Basic Cred; one whose type is HMAC
        gets no Cred but our MAC of the answer.
        """
        h = Harness(GET_SWV, settings=OWING)
        h.device = replace(h.device, server_scheme=AuthScheme.BASIC)
        reply = h.send(h.client.package1())
        self.assertEqual((narrowed(Meta, narrowed(Cred, reply.header.cred).meta).type, narrowed(Cred, reply.header.cred).data), ("syncml:auth-basic", auth.basic_cred_data("mdmd", "server-secret")))
        h = Harness(GET_SWV, settings=OWING)
        h.device = replace(h.device, server_scheme=AuthScheme.HMAC)
        reply = h.send(h.client.package1())
        self.assertIsNone(reply.header.cred)
        ((name, value),) = h.outcomes[-1].headers
        self.assertEqual(name, "x-syncml-hmac")
        self.assertTrue(auth.verify_hmac(auth.parse_hmac_header(value), b"\x02" * 16, h.outcomes[-1].body, password="server-secret"))
        self.assertTrue(h.state.server_cred_sent)

    def test_sent_until_212(self) -> None:
        """
        A 200 for our SyncHdr leaves our Cred owed (it goes in the next message with
        commands); 212 ends it (SERVER_ACCEPTED): no Cred for the rest of the session.
        """
        h = Harness(GET_SWV, settings=OWING)
        c = h.client
        reply = h.send(c.package1())
        h.queue(REPLACE)
        reply = h.send(h.answer_all(reply))
        self.assertEqual(narrowed(Cred, reply.header.cred).data, self.md5(b"\x02" * 16))
        self.assertIs(h.state.server_credential, ServerCredential.OWED)
        h.queue(EXEC)
        c.cmd_ids = itertools.count(1)
        (replace_,) = commands(reply)
        reply = h.send(c.reply(c.header_status(reply, 212), c.status_for(reply, replace_, 200)))
        self.assertEqual([type(x).__name__ for x in commands(reply)], ["Exec"])
        self.assertIsNone(reply.header.cred)
        self.assertEqual((h.state.server_credential, h.state.server_cred_sent), (ServerCredential.ACCEPTED, False))

    def test_no_credential_without_commands(self) -> None:
        """
        A message with no command carries no Cred, even when owed: the device would
        check it, rotate its nonce and, having nothing to answer, never tell us.
        """
        h = Harness(settings=OWING)
        reply = h.send(h.client.package1())
        self.assertEqual(commands(reply), [])
        self.assertIsNone(reply.header.cred)
        self.assertIs(h.state.phase, Phase.ENDED)
        self.assertFalse(h.state.server_cred_sent)
        # ... also after a challenge that left nothing to send
        h = Harness(GET_SWV)
        reply = h.send(h.client.package1())
        h.client.cmd_ids = itertools.count(1)
        reply = h.send(h.client.reply(h.client.header_status(reply, 407, _chal(b"\x09" * 16))))
        self.assertIs(h.state.server_credential, ServerCredential.OWED)
        self.assertIsNone(reply.header.cred)

    def test_2xx_nonce_is_for_the_next_session(self) -> None:
        """
        A NextNonce with a 2xx SyncHdr status is stored at once (ServerNonce) but this
        session's Cred keeps the nonce it had; the next session's Cred uses it.
        """
        h = Harness(GET_SWV, settings=OWING)
        c = h.client
        reply = h.send(c.package1())
        h.queue(REPLACE)
        c.cmd_ids = itertools.count(1)
        (get,) = commands(reply)
        new = b"\x0a" * 12
        reply = h.send(c.reply(c.header_status(reply, 200, _chal(new)), c.status_for(reply, get, 200), c.results_for(reply, get, "./DevDetail/SwV", "1")))
        self.assertEqual(h.effects(ServerNonce), [ServerNonce(new)])
        self.assertEqual(h.state.server_nonce, b"\x02" * 16)
        self.assertEqual(narrowed(Cred, reply.header.cred).data, self.md5(b"\x02" * 16))
        h.queue(EXEC)
        h.now += 3600
        reply = h.send(c.package1())
        self.assertEqual(narrowed(Cred, reply.header.cred).data, self.md5(new))
        self.assertIsNone(h.state.server_nonce)

    def test_212_nonce(self) -> None:
        """
        212 with a NextNonce: stored for the next session, and our Cred is no longer sent.
        """
        h = Harness(GET_SWV, SET, settings=OWING)
        c = h.client
        reply = h.send(c.package1())
        c.cmd_ids = itertools.count(1)
        get, set_ = commands(reply)
        h.queue(EXEC)
        reply = h.send(c.reply(c.header_status(reply, 212, _chal(b"\x0b" * 12)), c.status_for(reply, get, 200), c.results_for(reply, get, "./DevDetail/SwV", "1"), c.status_for(reply, set_, 200)))
        self.assertEqual(h.effects(ServerNonce), [ServerNonce(b"\x0b" * 12)])
        self.assertEqual(h.device.server.nonce, b"\x0b" * 12)
        self.assertIsNone(reply.header.cred)
        self.assertEqual([type(x).__name__ for x in commands(reply)], ["Exec"])

    def test_challenge_nonce_at_once_and_commands_again(self) -> None:
        """
        401 with a NextNonce: our Cred made with it goes in this very reply, with the
        commands the device answered 401 (not executed: sent again, not failed).
        """
        h = Harness(GET_SWV, SET, settings=OWING)
        c = h.client
        reply = h.send(c.package1())
        c.cmd_ids = itertools.count(1)
        header = c.header_status(reply, 401, _chal(b"\x0c" * 12))
        refused = [c.status_for(reply, x, 401) for x in commands(reply)]
        again = h.send(c.reply(header, *refused))
        self.assertEqual(h.effects(ServerChallenged), [ServerChallenged(401, True)])
        self.assertEqual(h.effects(ServerNonce), [ServerNonce(b"\x0c" * 12)])
        self.assertEqual(h.effects(CommandRequeued), [CommandRequeued(1, 401), CommandRequeued(2, 401)])
        self.assertEqual([e.seq for e in h.effects(CommandSent)], [1, 2])
        self.assertEqual(narrowed(Cred, again.header.cred).data, self.md5(b"\x0c" * 12))
        self.assertEqual([(type(x).__name__, target_uri(x)) for x in commands(again)], [("Get", "./DevDetail/SwV"), ("Replace", "./Vendor/memory/setting")])
        self.assertEqual([h.records[s]["state"] for s in (1, 2)], ["sent", "sent"])
        self.assertEqual(h.state.server_refusals, 1)
        # a command's own 401 under an accepted header is its failure
        c.cmd_ids = itertools.count(1)
        get, set_ = commands(again)
        h.send(c.reply(c.header_status(again, 212), c.status_for(again, get, 401), c.status_for(again, set_, 200)))
        self.assertEqual((h.records[1]["state"], h.records[1]["status"]), ("failed", 401))
        self.assertEqual((h.records[2]["state"], h.records[2]["status"]), ("done", 200))

    def test_invalid_status_recorded(self) -> None:
        """
        libdmclient with a server credential answers 0 to our SyncHdr and to every
        command while we have not authenticated: the 0 is reported (HeaderStatusInvalid)
        and the commands' 0 recorded as their status.
        """
        h = Harness(GET_SWV)  # our Cred waits to be asked: a device that never asks
        device = classic_device(h)
        log = h.converse(device, device.start())
        self.assertEqual(log.verdicts, ["0", "0"])
        self.assertEqual(log.executed, [("Get", "./DevDetail/SwV", 0)])
        self.assertEqual(h.all_effects(HeaderStatusInvalid), [HeaderStatusInvalid("0")])
        self.assertEqual((h.records[1]["state"], h.records[1]["status"]), ("failed", 0))

    def test_md5_both_ways_three_sessions(self) -> None:
        """
        Three sessions with an emulated classic device: each side checks the other's
        MD5 credential; each session renews both nonces (the device's new server nonce
        and our new client nonce are used by the next session); results are recorded.
        """
        h = Harness(GET_SWV, settings=OWING)
        device = classic_device(h)
        client_nonces, server_nonces = [], []
        for n, spec in enumerate((None, SET, EXEC)):
            if spec is not None:
                h.queue(spec)
            log = h.converse(device, device.start(n + 1))
            self.assertEqual(log.checks, [True])
            self.assertEqual(log.verdicts[0], "212")
            self.assertEqual(log.header_statuses[0], "212")
            self.assertEqual([code for _, _, code in log.executed], [200])
            client_nonces.append(device.account.client.nonce)
            server_nonces.append(narrowed(AccountCredential, device.account.server).nonce)
            self.assertEqual(h.device.server.nonce, narrowed(AccountCredential, device.account.server).nonce)
            self.assertEqual(h.device.client.nonce, device.account.client.nonce)
        self.assertEqual(len(set(client_nonces)), 3)
        self.assertEqual(len(set(server_nonces)), 3)
        self.assertEqual([h.records[s]["state"] for s in (1, 2, 3)], ["done"] * 3)
        self.assertEqual(h.records[1]["results"][0]["data"], "2.4.1")
        self.assertEqual(device.tree["./Vendor/memory/setting"].value, "on")

    def test_stale_server_nonce_recovered(self) -> None:
        """
        The device holds another server nonce than ours: it answers 401 and a
        challenge; our next message carries a Cred made with the new nonce and the
        refused commands; it then executes them.
        """
        h = Harness(GET_SWV, SET, settings=OWING)
        device = classic_device(h, server_nonce=b"stale")
        log = h.converse(device, device.start())
        self.assertEqual(log.checks, [False, True])
        self.assertEqual(log.verdicts[:2], ["401", "212"])
        self.assertEqual([code for _, _, code in log.executed], [401, 401, 200, 200])
        self.assertEqual(h.all_effects(ServerChallenged), [ServerChallenged(401, True)])
        self.assertEqual([(h.records[s]["state"], h.records[s]["status"]) for s in (1, 2)], [("done", 200), ("done", 200)])
        self.assertEqual(h.device.server.nonce, narrowed(AccountCredential, device.account.server).nonce)

    def test_refused_too_often(self) -> None:
        """
        A device that refuses our credential every time: the commands go out again
        max_auth_failures times, then the session ends and they fail with its 401.
        """
        h = Harness(GET_SWV, settings=OWING)
        device = classic_device(h)
        narrowed(AccountCredential, device.account.server).secret = "another secret"
        log = h.converse(device, device.start())
        self.assertEqual(log.checks, [False] * 4)
        self.assertEqual(len(h.all_effects(ServerChallenged)), 4)
        self.assertEqual(len(h.all_effects(CommandRequeued)), 3)
        self.assertEqual((h.records[1]["state"], h.records[1]["status"]), ("failed", 401))
        self.assertIs(h.state.phase, Phase.ENDED)

    def test_device_rotating_every_message(self) -> None:
        """
        A device that gives a new server nonce with every reply still accepts every one
        of ours (its 212 holds for the session), in a session of several messages;
        the last nonce is the one stored, and the next session is accepted with it.
        """
        h = Harness(*[BIG] * 8, settings=OWING)
        device = classic_device(h, rotate="every-reply")
        log = h.converse(device, device.start())
        self.assertGreaterEqual(log.messages, 3)
        self.assertEqual(set(log.verdicts), {"212"})
        self.assertEqual(log.checks, [True])
        # a new nonce in every reply it sent (the last server message, statuses only, got none)
        self.assertEqual(len(set(log.server_nonces)), log.messages - 1)
        self.assertEqual([code for _, _, code in log.executed], [200] * 8)
        self.assertEqual(h.device.server.nonce, narrowed(AccountCredential, device.account.server).nonce)
        h.queue(GET_SWV)
        log = h.converse(device, device.start(2))
        self.assertEqual((log.checks, log.executed), ([True], [("Get", "./DevDetail/SwV", 200)]))

    def test_sessions_from_wbxml(self) -> None:
        """
        The same in WBXML: our Cred in the first reply, accepted, the commands executed.
        """
        h = Harness(GET_SWV, SET, codec=WBXML_CODEC, settings=OWING)
        device = classic_device(h, codec=DS_WBXML_CODEC)
        log = h.converse(device, device.start())
        self.assertEqual((log.checks, [c for _, _, c in log.executed]), ([True], [200, 200]))
        self.assertEqual(h.records[1]["results"][0]["data"], "2.4.1")


class ResendTests(SynchronousTestCase):
    """
    A device that lost our answer sends its message again: same SessionID, MsgID and
    bytes. It gets the very same answer, and nothing of that message is applied twice.
    """

    def test_same_answer_nothing_applied(self) -> None:
        """
        The resent package 1 gets the same bytes and headers; no effect, the state and the
        answer kept are unchanged; the session then goes on.
        """
        h = Harness(GET_SWV, REPLACE)
        reply = h.send(h.client.package1())
        first, state, last = h.outcomes[-1], h.state, h.last_answer
        again = h.resend()
        self.assertEqual((h.outcomes[-1].body, h.outcomes[-1].headers), (first.body, first.headers))
        self.assertIsNone(h.outcomes[-1].response)
        self.assertEqual(h.outcomes[-1].effects, ())
        self.assertEqual((h.state, h.last_answer), (state, last))
        self.assertEqual(again, reply)
        h.send(h.answer_all(reply, results={"./DevDetail/SwV": "1"}))
        self.assertEqual([h.records[s]["state"] for s in (1, 2)], ["done", "done"])
        self.assertEqual(len(h.all_effects(CommandSent)), 2)

    def test_chunk_out_not_skipped(self) -> None:
        """
        The issue's "object announced 3000 bytes, chunks carry 2301": the device loses the
        answer carrying a chunk and resends its 213; it gets that chunk again, not the next.
        """
        data = "".join(chr(65 + i % 26) for i in range(3000))
        h = Harness({"verb": "Replace", "target": "./Vendor/Big", "data": data, "format": "chr"})
        h.client.max_msg_size = 1500
        reply = h.send(h.client.package1())
        pieces: list[str] = []
        lost = False
        for _ in range(20):
            (chunk,) = commands(reply)
            item = first_item(chunk)
            pieces.append(narrowed(str, item.data))
            c = h.client
            c.cmd_ids = itertools.count(1)
            code = 213 if item.more_data else 200
            reply = h.send(c.reply(c.header_status(reply), c.status_for(reply, chunk, code)))
            if not lost and len(pieces) == 1:
                lost = True
                self.assertEqual(h.resend(), reply)  # the same chunk again
            if code == 200:
                break
        self.assertTrue(lost)
        self.assertEqual("".join(pieces), data)
        self.assertEqual(h.records[1]["state"], "done")

    def test_chunk_in_not_appended_twice(self) -> None:
        """
        A resent message carrying a chunk of the device's large object is not appended twice.
        """
        h = Harness(GET_SWV)
        reply = h.send(h.client.package1())
        (get,) = commands(reply)
        c = h.client
        c.cmd_ids = itertools.count(1)
        first = h.send(c.reply(c.header_status(reply), c.status_for(reply, get, 200), c.results_for(reply, get, "./DevDetail/SwV", "abc", more=True, size=6), final=False))
        self.assertEqual(h.resend(), first)
        c.cmd_ids = itertools.count(1)
        h.send(c.reply(c.header_status(first), c.results_for(reply, get, "./DevDetail/SwV", "def")))
        self.assertEqual(h.records[1]["results"][0]["data"], "abcdef")

    def test_challenge_resent(self) -> None:
        """
        While challenged, a resend gets the same challenge (the same nonce); a package 1 with
        the same MsgID and new credentials is read as ever.
        """
        h = Harness(REPLACE)
        refused = h.send(h.client.package1(cred=False))
        nonce = narrowed(Chal, statuses(refused)[0].chal).meta.next_nonce
        self.assertEqual(narrowed(Chal, statuses(h.resend())[0].chal).meta.next_nonce, nonce)
        self.assertEqual(len(h.all_effects(ClientNonce)), 1)
        h.client.msg_ids = itertools.count(1)  # a device that resends with the same MsgID
        h.client.nonce = auth.decode_nonce(narrowed(str, nonce))
        reply = h.send(h.client.package1())
        self.assertEqual(statuses(reply)[0].data, "212")
        self.assertEqual(len(commands(reply)), 1)

    def test_hmac_resent(self) -> None:
        """
        In an HMAC session a resend carries the same header too: our same answer and MAC.
        The same bytes with another header are no resend: they are authenticated (401).
        """
        h = Harness(REPLACE)
        message = h.client.package1(cred=False)
        body = XML_CODEC.encode(message)
        mac = auth.hmac_mac("device-name", h.client.nonce, body, password="device-secret")
        h.send(message, hmac_header=f'algorithm=MD5, username="device-name", mac={mac}', body=body)
        first = h.outcomes[-1]
        h.resend()
        self.assertEqual((h.outcomes[-1].body, h.outcomes[-1].headers), (first.body, first.headers))
        forged = h.send(message, hmac_header='username="device-name", mac=AAAA', body=body)
        self.assertEqual(statuses(forged)[0].data, "401")

    def test_other_body_drops_the_session(self) -> None:
        """
        The MsgID answered last, with other bytes: nothing is read (403), the session ends,
        and the next package 1 starts a fresh one where the unanswered commands go again.
        """
        h = Harness(GET_SWV)
        reply = h.send(h.client.package1())
        c = h.client
        c.msg_ids = itertools.count(2)
        c.cmd_ids = itertools.count(1)
        h.send(c.reply(c.header_status(reply), final=False))  # message 2: our Get unanswered yet
        self.assertIs(h.state.phase, Phase.OPEN)
        c.msg_ids = itertools.count(2)
        c.cmd_ids = itertools.count(1)
        (get,) = commands(reply)
        dropped = h.send(c.reply(c.header_status(reply), c.status_for(reply, get, 200)))
        self.assertEqual([s.data for s in statuses(dropped)], ["403"])
        self.assertEqual(commands(dropped), [])
        self.assertIs(h.state.phase, Phase.ENDED)
        self.assertIsNone(h.last_answer)
        self.assertEqual(h.effects(MessageRefused), [MessageRefused("MsgID 2 was answered already, for another message")])
        self.assertEqual(h.records[1]["state"], "sent")
        h.client.session_id = "E"
        reply = h.send(h.client.package1())
        self.assertEqual(len(h.effects(NewSession)), 1)
        self.assertEqual([type(x).__name__ for x in commands(reply)], ["Get"])

    def test_without_the_last_answer(self) -> None:
        """
        A session stored without our last answer (by an older mdmd) cannot tell a resend:
        the last MsgID again is refused (403) and the session ends cleanly.
        """
        h = Harness(GET_SWV)
        reply = h.send(h.client.package1())
        c = h.client
        c.cmd_ids = itertools.count(1)
        h.send(c.reply(c.header_status(reply), Alert(cmd_id="2", data="1222"), final=False))
        h.last_answer = None
        reply = h.resend()
        self.assertEqual([s.data for s in statuses(reply)], ["403", "403"])
        self.assertEqual(h.effects(MessageRefused), [MessageRefused("MsgID 2 was answered already, for a message we cannot compare")])
        self.assertIs(h.state.phase, Phase.ENDED)

    def test_ended_session_keeps_no_answer(self) -> None:
        """
        Once the session ended nothing is kept: its last message again is refused (403),
        not answered and not applied; a package 1 again begins a new session.
        """
        h = Harness(GET_SWV)
        reply = h.send(h.client.package1())
        h.send(h.answer_all(reply, results={"./DevDetail/SwV": "1"}))
        self.assertIs(h.state.phase, Phase.ENDED)
        self.assertIsNone(h.last_answer)
        again = h.resend()
        self.assertEqual({s.data for s in statuses(again)}, {"403"})
        self.assertEqual(h.effects(CommandAnswered), [])
        h.queue(REPLACE)
        reply = h.resend(3)  # package 1 of that session
        self.assertEqual(len(h.effects(NewSession)), 1)
        self.assertEqual(statuses(reply)[0].data, "401")  # its nonce was used up

    def test_ended_session_challenges_strangers(self) -> None:
        """
        An unauthenticated message to an ended session is refused as ever (401 and a
        challenge), so that only the device learns the session is over.
        """
        h = Harness()
        h.send(h.client.package1())
        self.assertIs(h.state.phase, Phase.ENDED)
        c = h.client
        c.cmd_ids = itertools.count(1)
        reply = h.send(c.reply(Alert(cmd_id="1", data="1224")))  # no Cred: the session was CREDENTIAL...
        self.assertEqual(statuses(reply)[0].data, "403")
        h.state = replace(h.state, authentication=Authentication.NONE)
        reply = h.send(c.reply(Alert(cmd_id="1", data="1224")))
        self.assertEqual(statuses(reply)[0].data, "407")
        self.assertIsNotNone(statuses(reply)[0].chal)
        self.assertIs(h.state.phase, Phase.ENDED)


class DeviceStatusTests(SynchronousTestCase):
    """
    202, 214 and 215 for our commands: their own states, and 214 stops our sending.
    """

    def test_202_and_215(self) -> None:
        """
        202 leaves the command accepted (its alert will tell), 215 not executed; the
        session goes on with what is left.
        """
        h = Harness({"verb": "Exec", "target": "./Device/Vendor/MSFT/EnterpriseDesktopAppManagement/MSI/%7BP%7D/DownloadInstall", "data": "<MsiInstallJob/>"}, EXEC, SET)
        reply = h.send(h.client.package1())
        exec1, exec2, set_ = commands(reply)
        c = h.client
        c.cmd_ids = itertools.count(1)
        h.send(c.reply(c.header_status(reply), c.status_for(reply, exec1, 202), c.status_for(reply, exec2, 215), c.status_for(reply, set_, 200)))
        self.assertEqual([h.records[s]["state"] for s in (1, 2, 3)], ["accepted", "not-executed", "done"])
        self.assertEqual([(e.seq, e.state, e.status) for e in h.effects(CommandAnswered)], [(1, "accepted", 202), (2, "not-executed", 215), (3, "done", 200)])

    def test_214_stops_our_sending(self) -> None:
        """
        214: that command halted, no more of ours in the session (what is queued stays
        queued), the session ends with this answer; the next session goes on.
        """
        h = Harness(EXEC, SET)
        reply = h.send(h.client.package1())
        exec_, set_ = commands(reply)
        h.queue(GET_SWV)
        c = h.client
        c.cmd_ids = itertools.count(1)
        reply = h.send(c.reply(c.header_status(reply), c.status_for(reply, exec_, 214), c.status_for(reply, set_, 200)))
        self.assertEqual(commands(reply), [])
        self.assertTrue(reply.final)
        self.assertIs(h.state.phase, Phase.ENDED)
        self.assertEqual([h.records[s]["state"] for s in (1, 2, 3)], ["halted", "done", "queued"])
        h.client.session_id = "E"
        reply = h.send(h.client.package1())
        self.assertEqual([type(x).__name__ for x in commands(reply)], ["Get"])

    def test_214_stops_a_large_object(self) -> None:
        """
        214 for a chunk: the object going out stops; it goes again, from its first chunk,
        in the next session.
        """
        h = Harness({"verb": "Replace", "target": "./Vendor/Big", "data": "q" * 3000, "format": "chr"})
        h.client.max_msg_size = 1500
        reply = h.send(h.client.package1())
        (chunk,) = commands(reply)
        self.assertIsNotNone(h.state.outgoing)
        c = h.client
        c.cmd_ids = itertools.count(1)
        reply = h.send(c.reply(c.header_status(reply), c.status_for(reply, chunk, 214)))
        self.assertEqual(commands(reply), [])
        self.assertIs(h.state.phase, Phase.ENDED)
        self.assertIsNone(h.state.outgoing)
        h.client.session_id = "E"
        reply = h.send(h.client.package1())
        self.assertEqual(len(h.effects(NewSession)), 1)
        self.assertEqual(narrowed(Meta, first_item(commands(reply)[0]).meta).size, 3000)

    def test_accepted_holds_nothing_back(self) -> None:
        """
        An accepted command is not sent again and does not hold back its scope.
        """
        h = Harness(EXEC, SET)
        reply = h.send(h.client.package1())
        exec_, set_ = commands(reply)
        c = h.client
        c.cmd_ids = itertools.count(1)
        h.send(c.reply(c.header_status(reply), c.status_for(reply, exec_, 202), c.status_for(reply, set_, 200)))
        h.queue(GET_SWV)
        h.client.session_id = "E"
        reply = h.send(h.client.package1())
        self.assertEqual([type(x).__name__ for x in commands(reply)], ["Get"])


class UnenrollmentTests(SynchronousTestCase):
    def test_only_statuses(self) -> None:
        """
        In reply to the unenrollment alert we send only statuses (nothing queued goes out),
        the session ends, and Unenrolled is the last effect (after this message's answers).
        """
        h = Harness(GET_SWV, REPLACE)
        reply = h.send(h.client.package1())
        get, _ = commands(reply)
        h.queue(SET)
        c = h.client
        c.cmd_ids = itertools.count(1)
        alert = Alert(cmd_id=c.next_id(), data="1226", items=(Item(meta=Meta(type=UNENROLL_ALERT, format="int"), data="1"),))
        c.cmd_ids = itertools.count(1)
        reply = h.send(c.reply(c.header_status(reply), c.status_for(reply, get, 200), c.results_for(reply, get, "./DevDetail/SwV", "1"), replace(alert, cmd_id="9")))
        self.assertEqual(commands(reply), [])
        self.assertTrue(reply.final)
        self.assertIs(h.state.phase, Phase.ENDED)
        self.assertIsInstance(h.outcomes[-1].effects[-1], Unenrolled)
        self.assertEqual(h.records[1]["state"], "done")
        self.assertEqual(h.records[3]["state"], "queued")


class PeerTextTests(SynchronousTestCase):
    """
    Whatever text a device sends is peer input: decoded leniently, echoed only as any encoding carries it.
    """

    def test_opaque_login_status(self) -> None:
        """
        A LoginStatus whose WBXML opaque data is not UTF-8 is read as base64: not "user",
        no error; every command is answered.
        """
        h = Harness(REPLACE, codec=WBXML_CODEC)
        message = h.client.package1()
        alert = narrowed(Alert, message.body[1])
        odd = replace(alert, items=(replace(alert.items[0], data=b"\xff\xfeuser"),))
        reply = h.send(replace(message, body=(message.body[0], odd, message.body[2])))
        self.assertEqual([s.data for s in statuses(reply)], ["212", "200", "200", "200"])
        self.assertEqual(h.effects(LoginStatus), [LoginStatus(base64.b64encode(b"\xff\xfeuser").decode().lower())])
        self.assertFalse(h.state.user_logged_in)

    def test_client_events_kept(self) -> None:
        """
        Alert 1224 items other than LoginStatus become ClientEvents (opaque data as base64).
        """
        h = Harness(REPLACE)
        reply = h.send(h.client.package1())
        c = h.client
        c.cmd_ids = itertools.count(1)
        items = (
            Item(source=Location(loc_uri="./Device/Vendor/MSFT/X/DownloadInstall"), meta=Meta(type="Reversed-Domain-Name:com.microsoft.mdm.win32csp_install", format="int", mark="informational"), data="0"),
            Item(meta=Meta(type="com.microsoft.mdm.synctype", format="chr"), data=b"\x80device"),
        )
        h.codec = WBXML_CODEC
        reply = h.send(c.reply(c.header_status(reply), Alert(cmd_id="2", data="1224", correlator="c-1", items=items)))
        self.assertEqual(
            h.effects(ClientEvent),
            [
                ClientEvent("Reversed-Domain-Name:com.microsoft.mdm.win32csp_install", "int", "informational", "./Device/Vendor/MSFT/X/DownloadInstall", "0", "c-1"),
                ClientEvent("com.microsoft.mdm.synctype", "chr", None, None, base64.b64encode(b"\x80device").decode(), "c-1"),
            ],
        )
        self.assertEqual(statuses(reply)[-1].data, "200")

    def test_nul_echoed_from_wbxml(self) -> None:
        """
        A WBXML device may put NUL (ENTITY 0, OPAQUE) in its LocURIs and CmdIDs; we echo
        them with U+FFFD instead, so our WBXML answer encodes (it failed to, a 500).
        """
        h = Harness(REPLACE, codec=WBXML_CODEC)
        message = h.client.package1()
        header = replace(message.header, source=replace(message.header.source, loc_uri=DEVICE_ID + "\x00"), target=Location(loc_uri=SERVER_URL + "\x01"))
        odd = replace(message, header=header, body=(replace(narrowed(Alert, message.body[0]), cmd_id="2\x00"),) + message.body[1:])
        raw = wbxml_with_entities(odd)
        reply = h.send(None, raw=raw)
        first = statuses(reply)[0]
        self.assertEqual((first.target_refs, first.source_refs), ((SERVER_URL + "\ufffd",), (DEVICE_ID + "\ufffd",)))
        self.assertEqual(statuses(reply)[1].cmd_ref, "2\ufffd")
        self.assertEqual(reply.header.target.loc_uri, DEVICE_ID + "\ufffd")

    def test_exec_correlator(self) -> None:
        """
        An Exec queued with a correlator carries it (the device echoes it in its alert).
        """
        h = Harness({"verb": "Exec", "target": "./Vendor/X/Run", "correlator": "job-7"})
        reply = h.send(h.client.package1())
        (exec_,) = commands(reply)
        self.assertEqual(narrowed(Exec, exec_).correlator, "job-7")


def wbxml_with_entities(message: SyncML) -> bytes:
    """
    The WBXML of C{message} whose text may hold control characters: written as
    ENTITY tokens (what a device may send), since our encoder refuses them.
    """
    placeholder = {chr(c): f"\ue000{c:02x}" for c in range(0, 32) if chr(c) not in "\t\n\r"}

    def clean(text: str) -> str:
        return "".join(placeholder.get(ch, ch) for ch in text)

    header = message.header
    cleaned = replace(
        message,
        header=replace(
            header,
            source=replace(header.source, loc_uri=clean(header.source.loc_uri)),
            target=replace(header.target, loc_uri=clean(header.target.loc_uri)),
        ),
        # every concrete command is a dataclass (the base Command is not one)
        body=tuple(replace(cast(Any, c), cmd_id=clean(c.cmd_id)) if c.cmd_id else c for c in message.body),
    )
    raw = WBXML_CODEC.encode(cleaned)
    for c in range(0, 32):
        marker = f"\ue000{c:02x}".encode()
        # close the inline string, an ENTITY for the character, open another inline string
        raw = raw.replace(marker, b"\x00\x02" + bytes([c]) + b"\x03")
    return raw


class GiveUpWithinAMessageTests(SynchronousTestCase):
    def test_rest_of_the_message_not_read(self) -> None:
        """
        The device refuses our credential once too often early in a message: the session
        ends there; what the device says of our commands still counts, the rest of the
        message (a chunk, an alert) is answered 403 and not read; a second refusal gives
        up again (no challenge row in an ended session).
        """
        h = Harness(GET_SWV, settings=replace(OWING, max_auth_failures=0))
        reply = h.send(h.client.package1())
        (get,) = commands(reply)
        c = h.client
        c.cmd_ids = itertools.count(1)
        refusal = c.header_status(reply, 401, _chal(b"\x0c" * 12))
        reply = h.send(
            c.reply(
                refusal,
                refusal,
                c.status_for(reply, get, 200),
                c.results_for(reply, get, "./DevDetail/SwV", "abc", more=True, size=6),
                Alert(cmd_id="8", data="1224", items=(Item(meta=Meta(type="com.microsoft/MDM/LoginStatus"), data="none"),)),
                final=False,
            )
        )
        self.assertIs(h.state.phase, Phase.ENDED)
        self.assertEqual([s.data for s in statuses(reply)], ["200", "403", "403"])
        self.assertEqual(h.effects(LoginStatus), [])
        self.assertIsNone(h.state.incoming)
        self.assertEqual(len(h.effects(ServerChallenged)), 2)
        self.assertTrue(reply.final)
