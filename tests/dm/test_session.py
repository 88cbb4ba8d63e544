"""
Tests for L{mdmd.dm.session}: the sans-IO DM session engine.
"""

from __future__ import annotations

import base64
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm import session
from mdmd.dm.session import (
    ClientNonce,
    CommandAnswered,
    CommandFailed,
    CommandSent,
    DevInfoReported,
    HeaderRefused,
    LoginStatus,
    NewSession,
    Phase,
    ServerNonce,
    SessionAborted,
    SessionState,
    Settings,
    Unenrolled,
    handle,
)
from mdmd.syncml import auth
from mdmd.syncml.codec import WBXML_CODEC, XML_CODEC
from mdmd.syncml.model import (
    Alert,
    Atomic,
    Chal,
    Get,
    Item,
    Location,
    Meta,
    Replace,
    Sequence,
    Status,
)

from .helpers import DEVICE_ID, SERVER_URL, Client, device_auth, pending

NOW = 1_800_000_000.0


class Harness:
    """
    Runs the engine message after message, applying its effects the way the adapter does.
    """

    def __init__(self, *specs: dict, codec=XML_CODEC, settings: Settings = Settings(), scheme: str = "digest") -> None:
        self.device = device_auth(scheme)
        self.client = Client(device=self.device)
        self.codec = codec
        self.settings = settings
        self.state: SessionState | None = None
        self.commands = {c.seq: c for c in pending(*specs)}
        self.records: dict[int, dict] = {seq: {"state": "queued"} for seq in self.commands}
        self.now = NOW
        self.outcomes: list[session.Outcome] = []

    def send(self, message, hmac_header=None, body=b"", raw: bytes | None = None):
        # What crosses the wire is bytes: encode and decode with the codec under test.
        message = self.codec.decode(raw if raw is not None else self.codec.encode(message))
        if session.starts_new_session(message, self.state, self.now):
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
            state=self.state,
            commands=pending_commands,
            now=self.now,
            settings=self.settings,
            body=body,
            hmac_header=hmac_header,
            random=lambda n: bytes([len(self.outcomes) + 7]) * n,
        )
        self.now += 1
        self.state = SessionState.from_dict(outcome.state.to_dict())
        for effect in outcome.effects:
            if isinstance(effect, ClientNonce):
                self.device = replace(self.device, client=replace(self.device.client, nonce=effect.nonce))
                self.client.nonce = effect.nonce
            elif isinstance(effect, ServerNonce):
                self.device = replace(self.device, server=replace(self.device.server, nonce=effect.nonce))
            elif isinstance(effect, CommandSent):
                self.records[effect.seq].update(state="sent", sent_in=effect.session_key)
            elif isinstance(effect, CommandAnswered):
                self.records[effect.seq].update(
                    state=effect.state, status=effect.status, statuses=effect.statuses, results=effect.results
                )
            elif isinstance(effect, CommandFailed):
                self.records[effect.seq].update(state="failed", error=effect.error)
        self.outcomes.append(outcome)
        decoded = self.codec.decode(outcome.body)
        self.last = decoded
        return decoded

    def effects(self, kind):
        return [e for e in self.outcomes[-1].effects if isinstance(e, kind)]

    def answer_all(self, server_msg, code: int = 200, results: dict | None = None):
        """
        The client's reply to a server message: SyncHdr status, a status per command (and
        per group member), Results for Gets.
        """
        client = self.client
        replies = []
        client.cmd_ids = __import__("itertools").count(1)
        replies.append(client.header_status(server_msg))

        def answer(command):
            if isinstance(command, (Status, Alert)):
                return
            replies.append(client.status_for(server_msg, command, code))
            for child in getattr(command, "commands", ()):
                answer(child)
            if isinstance(command, Get) and code == 200:
                for item in command.items:
                    value = (results or {}).get(item.target.loc_uri, "value")
                    replies.append(client.results_for(server_msg, command, item.target.loc_uri, value))

        for command in server_msg.body:
            answer(command)
        # A client may not close its package before the server closed its own.
        return client.reply(*replies, final=server_msg.final)


def statuses(message) -> list[Status]:
    return [c for c in message.body if isinstance(c, Status)]


def commands(message) -> list:
    return [c for c in message.body if not isinstance(c, (Status,)) and not (isinstance(c, Alert) and c.data == "1222")]


GET_SWV = {"verb": "Get", "target": "./DevDetail/SwV"}
REPLACE = {"verb": "Replace", "target": "./Vendor/MSFT/Policy/Config/Camera/AllowCamera", "data": "0", "format": "int"}


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


class AuthenticationTests(SynchronousTestCase):
    def test_missing_credentials(self) -> None:
        """
        No Cred: 407 with a challenge, every command answered 407, nothing sent;
        package 1 again with the challenged nonce then succeeds.
        """
        h = Harness(REPLACE)
        reply = h.send(h.client.package1(cred=False))
        header = statuses(reply)[0]
        self.assertEqual(header.data, "407")
        self.assertEqual(header.chal.meta.type, "syncml:auth-md5")
        self.assertEqual({s.data for s in statuses(reply)}, {"407"})
        self.assertEqual(commands(reply), [])
        self.assertIs(h.state.phase, Phase.CHALLENGED)
        reply = h.send(h.client.package1())
        self.assertEqual(statuses(reply)[0].data, "212")
        self.assertEqual(len(commands(reply)), 1)

    def test_wrong_password(self) -> None:
        """
        A wrong digest gets 401 and a new nonce.
        """
        h = Harness(REPLACE)
        h.client.device = replace(h.client.device, client=replace(h.client.device.client, secret="wrong"))
        reply = h.send(h.client.package1())
        self.assertEqual(statuses(reply)[0].data, "401")
        self.assertIsNotNone(statuses(reply)[0].chal.meta.next_nonce)
        self.assertEqual(commands(reply), [])

    def test_old_nonce_stops_working(self) -> None:
        """
        After a successful session the nonce it used is no longer accepted (replay).
        """
        h = Harness()
        old_nonce = h.client.nonce
        h.send(h.client.package1())
        self.assertNotEqual(h.device.client.nonce, old_nonce)
        h.client = replace(h.client, session_id="E", nonce=old_nonce)
        reply = h.send(h.client.package1())
        self.assertEqual(statuses(reply)[0].data, "401")

    def test_new_nonce_every_session(self) -> None:
        """
        Each session issues a different nonce.
        """
        h = Harness()
        seen = []
        for session_id in ("1", "2", "3"):
            h.client.session_id = session_id
            reply = h.send(h.client.package1())
            self.assertEqual(statuses(reply)[0].data, "212")
            seen.append(statuses(reply)[0].chal.meta.next_nonce)
        self.assertEqual(len(set(seen)), 3)

    def test_basic(self) -> None:
        """
        auth-basic credentials are accepted for a Basic device.
        """
        h = Harness(REPLACE, scheme="basic")
        reply = h.send(h.client.package1(scheme="basic"))
        self.assertEqual(statuses(reply)[0].data, "212")
        self.assertEqual(len(commands(reply)), 1)

    def test_gives_up_after_repeated_failures(self) -> None:
        """
        A device that keeps failing is not challenged for ever.
        """
        h = Harness(settings=Settings(max_auth_failures=2))
        h.client.device = replace(h.client.device, client=replace(h.client.device.client, secret="wrong"))
        for _ in range(3):
            reply = h.send(h.client.package1())
        self.assertIsNone(statuses(reply)[0].chal)
        self.assertIs(h.state.phase, Phase.ENDED)

    def test_hmac(self) -> None:
        """
        A valid x-syncml-hmac header authenticates the message: 200 and a fresh nonce,
        and our answer carries our own MAC.
        """
        h = Harness(REPLACE)
        message = h.client.package1(cred=False)
        body = XML_CODEC.encode(message)
        mac = auth.hmac_mac("device-name", h.client.nonce, body, password="device-secret")
        h.codec = XML_CODEC
        reply = h.send(message, hmac_header=f'algorithm=MD5, username="device-name", mac={mac}', body=body)
        self.assertEqual(statuses(reply)[0].data, "200")
        self.assertEqual(statuses(reply)[0].chal.meta.type, "syncml:auth-MAC")
        (name, value), = h.outcomes[-1].headers
        self.assertEqual(name, "x-syncml-hmac")
        parsed = auth.parse_hmac_header(value)
        self.assertTrue(auth.verify_hmac(parsed, h.device.server.nonce, h.outcomes[-1].body, password="server-secret"))
        bad = h.send(message, hmac_header='username="device-name", mac=AAAA', body=body)
        self.assertEqual(statuses(bad)[0].data, "401")

    def test_server_authenticates_when_asked(self) -> None:
        """
        When the device answers our SyncHdr with 407 and a challenge, our next header
        carries an MD5 Cred made with the CLIENT-level credentials and its nonce.
        """
        h = Harness(GET_SWV, REPLACE)
        reply = h.send(h.client.package1())
        nonce = b"\x09" * 16
        chal = Chal(meta=Meta(type="syncml:auth-md5", format="b64", next_nonce=base64.b64encode(nonce).decode()))
        h.client.cmd_ids = __import__("itertools").count(1)
        reply = h.send(h.client.reply(h.client.header_status(reply, 407, chal)))
        self.assertEqual(h.effects(ServerNonce), [ServerNonce(nonce)])
        cred = reply.header.cred
        self.assertEqual(cred.meta.type, "syncml:auth-md5")
        self.assertEqual(cred.data, auth.md5_cred_data("mdmd", nonce, password="server-secret"))

    def test_client_refuses_our_header(self) -> None:
        """
        Windows' Status 500 for our SyncHdr is reported.
        """
        h = Harness(GET_SWV)
        reply = h.send(h.client.package1())
        h.client.cmd_ids = __import__("itertools").count(1)
        h.send(h.client.reply(h.client.header_status(reply, 500)))
        self.assertEqual(h.effects(HeaderRefused), [HeaderRefused(500)])


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
            items=(Item(meta=Meta(type=session.UNENROLL_ALERT, format="int"), data="1"),),
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


class SizeTests(SynchronousTestCase):
    @given(st.integers(min_value=1400, max_value=6000), st.sampled_from([XML_CODEC, WBXML_CODEC]))
    def test_messages_respect_max_msg_size(self, limit, codec) -> None:
        """
        However small MaxMsgSize is, no message is larger, nothing is lost, order is kept.
        """
        specs = [
            {"verb": "Replace", "target": f"./Vendor/MSFT/Policy/Config/Area/Setting{i}", "data": "x" * (i * 37 % 300), "format": "chr"}
            for i in range(25)
        ]
        h = Harness(*specs, codec=codec)
        h.client.max_msg_size = limit
        reply = h.send(h.client.package1())
        sent_order = []
        for _ in range(60):
            self.assertLessEqual(len(h.outcomes[-1].body), limit)
            sent_order += [c.items[0].target.loc_uri for c in commands(reply)]
            if reply.final and not commands(reply):
                break
            reply = h.send(h.answer_all(reply))
        self.assertEqual(sent_order, [s["target"] for s in specs])
        self.assertEqual({r["state"] for r in h.records.values()}, {"done"})

    def test_final_withheld_while_package_continues(self) -> None:
        """
        Commands that do not fit wait for the next message, and Final is withheld meanwhile.
        """
        specs = [{"verb": "Replace", "target": f"./Vendor/X/{i}", "data": "y" * 400} for i in range(10)]
        h = Harness(*specs)
        h.client.max_msg_size = 2000
        reply = h.send(h.client.package1())
        self.assertFalse(reply.final)
        self.assertLess(len(commands(reply)), 10)

    def test_large_object_out(self) -> None:
        """
        A value larger than a message goes in chunks: Meta Size on the first, MoreData on all but the last.
        """
        data = "".join(chr(65 + i % 26) for i in range(5000))
        h = Harness({"verb": "Replace", "target": "./Vendor/Big", "data": data, "format": "chr"})
        h.client.max_msg_size = 1500
        reply = h.send(h.client.package1())
        pieces = []
        for _ in range(20):
            self.assertLessEqual(len(h.outcomes[-1].body), 1500)
            (chunk,) = commands(reply)
            item = chunk.items[0]
            if not pieces:
                self.assertEqual(item.meta.size, 5000)
            pieces.append(item.data)
            c = h.client
            c.cmd_ids = __import__("itertools").count(1)
            code = 213 if item.more_data else 200
            self.assertEqual(reply.final, not item.more_data)
            reply = h.send(c.reply(c.header_status(reply), c.status_for(reply, chunk, code)))
            if code == 200:
                break
        self.assertEqual("".join(pieces), data)
        self.assertGreater(len(pieces), 3)
        self.assertEqual(h.records[1]["state"], "done")

    def test_large_object_in(self) -> None:
        """
        Results arriving in chunks are answered 213 (with Alert 1222) and reassembled.
        """
        h = Harness(GET_SWV)
        reply = h.send(h.client.package1())
        (get,) = commands(reply)
        c = h.client
        c.cmd_ids = __import__("itertools").count(1)
        first = h.send(c.reply(c.header_status(reply), c.status_for(reply, get, 200), c.results_for(reply, get, "./DevDetail/SwV", "abc", more=True, size=6), final=False))
        self.assertEqual([s.data for s in statuses(first)], ["200", "213"])
        self.assertIn("1222", [a.data for a in first.body if isinstance(a, Alert)])
        self.assertFalse(first.final)
        c.cmd_ids = __import__("itertools").count(1)
        h.send(c.reply(c.header_status(first), c.results_for(reply, get, "./DevDetail/SwV", "def")))
        self.assertEqual(h.records[1]["results"][0]["data"], "abcdef")

    def test_large_object_size_mismatch(self) -> None:
        """
        Chunks that do not add up to the announced size get 424.
        """
        h = Harness(GET_SWV)
        reply = h.send(h.client.package1())
        (get,) = commands(reply)
        c = h.client
        c.cmd_ids = __import__("itertools").count(1)
        first = h.send(c.reply(c.header_status(reply), c.status_for(reply, get, 200), c.results_for(reply, get, "./DevDetail/SwV", "abc", more=True, size=10), final=False))
        c.cmd_ids = __import__("itertools").count(1)
        last = h.send(c.reply(c.header_status(first), c.results_for(reply, get, "./DevDetail/SwV", "def")))
        self.assertEqual(statuses(last)[-1].data, "424")

    def test_object_too_big_for_device(self) -> None:
        """
        A value above the device's MaxObjSize fails with a reason instead of being sent.
        """
        h = Harness({"verb": "Replace", "target": "./Vendor/Big", "data": "z" * 3000}, REPLACE)
        h.client = replace(h.client)
        message = h.client.package1()
        message = replace(message, header=replace(message.header, meta=Meta(max_obj_size=1000)))
        reply = h.send(message)
        self.assertIn("MaxObjSize", h.records[1]["error"])
        self.assertEqual([c.items[0].target.loc_uri for c in commands(reply)], [REPLACE["target"]])


class StateTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """
        Session state survives the trip through plain values (as the store keeps it).
        """
        h = Harness(GET_SWV, codec=WBXML_CODEC)
        reply = h.send(h.client.package1())
        c = h.client
        c.cmd_ids = __import__("itertools").count(1)
        (get,) = commands(reply)
        h.send(c.reply(c.header_status(reply), c.status_for(reply, get, 200), c.results_for(reply, get, "./x", b"\x00\xff", more=True, size=4), final=False))
        state = h.outcomes[-1].state
        self.assertEqual(SessionState.from_dict(state.to_dict()), state)
        self.assertIsNotNone(state.incoming)

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
        device = session.DeviceAuth(
            device_id=SAMPLE_DEVICE,
            client=session.Credentials("dummy", "secret", nonce),
            server=session.Credentials("mdmd", "server-secret", b"\x06" * 16),
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
