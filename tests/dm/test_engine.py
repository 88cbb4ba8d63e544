"""
Tests for L{mdmd.dm.engine}: one client message in, one server message out.
"""

from __future__ import annotations

import itertools

from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm.authentication import Credentials
from mdmd.dm.effects import (
    ClientNonce,
    CommandSent,
    DeviceAuth,
    DevInfoReported,
    HeaderRefused,
    LoginStatus,
    NewSession,
    ServerInitiated,
    SessionAborted,
    Settings,
    Unenrolled,
)
from mdmd.dm.engine import CLIENT_ALERTS, CLIENT_COMMANDS, UNENROLL_ALERT, handle
from mdmd.dm.state import Phase
from mdmd.syncml import auth, model
from mdmd.syncml.codec import WBXML_CODEC, XML_CODEC
from mdmd.syncml.codes import AlertCode
from mdmd.syncml.model import (
    Add,
    Alert,
    Atomic,
    Command,
    Copy,
    Delete,
    Exec,
    Get,
    Item,
    Location,
    Meta,
    Replace,
    Sequence,
    Status,
)

from .helpers import DEVICE_ID, GET_SWV, NOW, REPLACE, SERVER_URL, Harness, commands, pending, statuses


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
        self.assertEqual(
            (first.cmd_id, first.msg_ref, first.cmd_ref, first.cmd, first.data, first.target_refs, first.source_refs),
            ("1", "1", "0", "SyncHdr", "212", (SERVER_URL,), (DEVICE_ID,)),
        )
        nonce = auth.decode_nonce(first.chal.meta.next_nonce)
        self.assertEqual(h.effects(ClientNonce), [ClientNonce(nonce)])
        self.assertEqual([(s.cmd_ref, s.cmd, s.data) for s in statuses(reply)[1:]], [("2", "Alert", "200"), ("3", "Alert", "200"), ("4", "Replace", "200")])
        sent = commands(reply)
        self.assertEqual([type(c).__name__ for c in sent], ["Get", "Replace"])
        self.assertEqual([c.cmd_id for c in reply.body], ["1", "2", "3", "4", "5", "6"])
        self.assertEqual(sent[1].items[0].meta.format, "int")
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
    def open(self, *specs):
        h = Harness(*specs)
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
        self.assertEqual([c.items[0].target.loc_uri for c in commands(reply)], [REPLACE["target"]])
        h.send(h.answer_all(reply))
        h.client.session_id = "E"
        reply = h.send(h.client.package1(login="user"))
        self.assertEqual([c.items[0].target.loc_uri for c in commands(reply)], [user["target"]])

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
        self.assertIsInstance(atomic, Atomic)
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
    def open(self, *specs):
        h = Harness(*specs, codec=WBXML_CODEC)
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

    def test_ended_session_reads_an_authenticated_message(self) -> None:
        """
        After the end, an authenticated message is still answered command by command, with
        Final and nothing of ours (as the transition table's ENDED rows say).
        """
        h = Harness(REPLACE, GET_SWV)
        reply = h.send(h.client.package1())
        reply = h.send(h.answer_all(reply))
        h.commands[3] = pending(REPLACE, start=3)[0]
        h.records[3] = {"state": "queued"}
        c = h.client
        c.cmd_ids = itertools.count(1)
        reply = h.send(c.reply(c.header_status(reply), Alert(cmd_id="2", data="1224")))
        self.assertIs(h.state.phase, Phase.ENDED)
        self.assertEqual([s.data for s in statuses(reply)], ["200", "200"])
        self.assertEqual(commands(reply), [])
        self.assertTrue(reply.final)

