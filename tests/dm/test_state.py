"""
Tests for L{mdmd.dm.state}: the transition table and the session state as the store keeps it.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any
from dataclasses import fields, replace

from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm.chunking import IncomingObject, OutgoingObject
from mdmd.dm.state import (
    STATE_VERSION,
    TRANSITIONS,
    Authentication,
    IllegalTransition,
    LastAnswer,
    OurPackage,
    Phase,
    ServerCredential,
    SessionInput,
    SessionState,
    Transfer,
    advance,
)
from mdmd.syncml import auth
from mdmd.syncml.codec import WBXML_CODEC, XML_CODEC
from mdmd.syncml.model import Chal, Item, Location, Meta

from ..narrowing import narrowed
from .helpers import GET_SWV, NOW, REPLACE, Harness, commands, statuses

INCOMING = IncomingObject("Results", "1", "5", "./x", (Item(source=Location(loc_uri="./x"), data="ab", more_data=True),))
OUTGOING = OutgoingObject(1, 100)


def in_phase(phase: Phase) -> SessionState:
    """
    A state in C{phase} whose every other sub-state differs from the defaults,
    so that a row that leaves one unchanged shows it.
    """
    return replace(
        SessionState.start("D", NOW, 60.0),
        phase=phase,
        authentication=Authentication.CREDENTIAL,
        server_credential=ServerCredential.OWED,
        package=OurPackage.OPEN,
        incoming=INCOMING,
        outgoing=OUTGOING,
    )


def objects_for(input: SessionInput) -> dict:
    """
    The objects an input carries where its row starts or continues a transfer.
    """
    if input is SessionInput.CHUNK_RECEIVED:
        return {"incoming": replace(INCOMING, chunks=INCOMING.chunks * 2)}
    if input is SessionInput.CHUNK_SENT:
        return {"outgoing": OutgoingObject(1, 200)}
    return {}


class TransitionTests(SynchronousTestCase):
    def test_every_pair(self) -> None:
        """
        Every (phase, input) the table has moves to the step it declares, leaving the
        sub-states it does not name as they were; every other pair raises.
        """
        for phase in Phase:
            for input in SessionInput:
                before = in_phase(phase)
                step = TRANSITIONS.get((phase, input))
                if step is None:
                    with self.assertRaises(IllegalTransition, msg=(phase, input)):
                        advance(before, input, **objects_for(input))
                    continue
                carried = objects_for(input)
                after = advance(before, input, **carried)
                self.assertIs(after.phase, step.phase, (phase, input))
                self.assertIs(after.authentication, step.authentication or before.authentication)
                self.assertIs(after.server_credential, step.server_credential or before.server_credential)
                self.assertIs(after.package, step.package or before.package)
                expected_in = {None: before.incoming, Transfer.IDLE: None}.get(step.incoming, carried.get("incoming"))
                expected_out = {None: before.outgoing, Transfer.IDLE: None}.get(step.outgoing, carried.get("outgoing"))
                self.assertEqual((after.incoming, after.outgoing), (expected_in, expected_out), (phase, input))
                untouched = {f.name for f in fields(SessionState)} - {
                    "phase", "authentication", "server_credential", "package", "incoming", "outgoing"
                }
                for name in untouched:
                    self.assertEqual(getattr(after, name), getattr(before, name), name)

    def test_lifecycle(self) -> None:
        """
        The phases move as the module says: NEW → OPEN on a credential, NEW → CHALLENGED while
        refused, OPEN → ENDED when done or aborted, anything → ENDED on giving up.
        """
        expected = {
            (Phase.NEW, SessionInput.CREDENTIAL_ACCEPTED): Phase.OPEN,
            (Phase.NEW, SessionInput.HMAC_ACCEPTED): Phase.OPEN,
            (Phase.NEW, SessionInput.REFUSED): Phase.CHALLENGED,
            (Phase.CHALLENGED, SessionInput.REFUSED): Phase.CHALLENGED,
            (Phase.CHALLENGED, SessionInput.CREDENTIAL_ACCEPTED): Phase.OPEN,
            (Phase.OPEN, SessionInput.REFUSED): Phase.OPEN,
            (Phase.OPEN, SessionInput.CONTINUED): Phase.OPEN,
            (Phase.OPEN, SessionInput.PACKAGE_CONTINUES): Phase.OPEN,
            (Phase.OPEN, SessionInput.DONE): Phase.ENDED,
            (Phase.OPEN, SessionInput.ABORTED): Phase.ENDED,
            **{(phase, SessionInput.GIVE_UP): Phase.ENDED for phase in Phase},
        }
        self.assertEqual({key: TRANSITIONS[key].phase for key in expected}, expected)

    def test_how_authenticated(self) -> None:
        """
        A credential and an HMAC set who is authenticated and how; nothing else does.
        """
        setting = {key: step.authentication for key, step in TRANSITIONS.items() if step.authentication}
        self.assertEqual(
            {input for (_, input) in setting},
            {SessionInput.CREDENTIAL_ACCEPTED, SessionInput.HMAC_ACCEPTED},
        )
        self.assertEqual(
            {input: auth for (_, input), auth in setting.items()},
            {
                SessionInput.CREDENTIAL_ACCEPTED: Authentication.CREDENTIAL,
                SessionInput.HMAC_ACCEPTED: Authentication.HMAC,
            },
        )

    def test_authentication_inputs_come_first(self) -> None:
        """
        Every phase has a row for some outcome of authentication: a message can always be answered.
        """
        for phase in Phase:
            self.assertIn((phase, SessionInput.GIVE_UP), TRANSITIONS)
            self.assertTrue(
                any((phase, i) in TRANSITIONS for i in (SessionInput.REFUSED, SessionInput.CREDENTIAL_ACCEPTED)),
                phase,
            )

    def test_package_open_only_while_open(self) -> None:
        """
        Our package is left open only in an OPEN session: every row into another phase closes it.
        """
        for (phase, input), step in TRANSITIONS.items():
            if step.package is OurPackage.OPEN:
                self.assertIs(step.phase, Phase.OPEN)
            if phase is Phase.OPEN and step.phase is not Phase.OPEN:
                self.assertIs(step.package, OurPackage.CLOSED, input)

    def test_objects_must_match_the_row(self) -> None:
        """
        An input that carries a transfer on needs its object; one that does not, refuses one.
        """
        state = in_phase(Phase.OPEN)
        with self.assertRaises(IllegalTransition):
            advance(state, SessionInput.CHUNK_RECEIVED)
        with self.assertRaises(IllegalTransition):
            advance(state, SessionInput.CHUNK_SENT)
        with self.assertRaises(IllegalTransition):
            advance(state, SessionInput.RECEIVING_STOPPED, incoming=INCOMING)
        with self.assertRaises(IllegalTransition):
            advance(state, SessionInput.CONTINUED, outgoing=OUTGOING)

    def test_server_accepted_rows(self) -> None:
        """
        The device's 212 for our SyncHdr is read where its commands are (OPEN, ENDED)
        and makes our credential ACCEPTED whatever it was; nowhere else has a row.
        """
        rows = {phase for (phase, input) in TRANSITIONS if input is SessionInput.SERVER_ACCEPTED}
        self.assertEqual(rows, {Phase.OPEN, Phase.ENDED})
        for phase in rows:
            for before in ServerCredential:
                state = replace(in_phase(phase), server_credential=before)
                after = advance(state, SessionInput.SERVER_ACCEPTED)
                self.assertEqual((after.phase, after.server_credential), (phase, ServerCredential.ACCEPTED))
        for phase in (Phase.NEW, Phase.CHALLENGED):
            with self.assertRaises(IllegalTransition):
                advance(in_phase(phase), SessionInput.SERVER_ACCEPTED)

    def test_challenge_makes_it_owed_again(self) -> None:
        """
        A 401/407 after a 212 makes our credential owed again (DEVICE_CHALLENGED from any value).
        """
        for before in ServerCredential:
            state = replace(in_phase(Phase.OPEN), server_credential=before)
            self.assertIs(advance(state, SessionInput.DEVICE_CHALLENGED).server_credential, ServerCredential.OWED)

    def test_server_credential_owed_once_challenged(self) -> None:
        """
        The device's challenge is the only row by which we come to owe it our credential
        (a session may also start owing it), and its 212 the only one by which that ends.
        """
        owing = {
            input for (_, input), step in TRANSITIONS.items() if step.server_credential is ServerCredential.OWED
        }
        self.assertEqual(owing, {SessionInput.DEVICE_CHALLENGED})
        accepted = {
            input for (_, input), step in TRANSITIONS.items() if step.server_credential is ServerCredential.ACCEPTED
        }
        self.assertEqual(accepted, {SessionInput.SERVER_ACCEPTED})
        self.assertEqual(
            {input for (_, input), step in TRANSITIONS.items() if step.server_credential is not None},
            {SessionInput.DEVICE_CHALLENGED, SessionInput.SERVER_ACCEPTED},
        )
        self.assertIs(SessionState.start("D", NOW, 60).server_credential, ServerCredential.NOT_ASKED)
        owed = SessionState.start("D", NOW, 60, ServerCredential.OWED)
        self.assertIs(owed.server_credential, ServerCredential.OWED)


class EndedTests(SynchronousTestCase):
    """
    An ended session accepts nothing (issue 12): no row lets it authenticate, read
    chunks or be challenged; every message to it is out of step.
    """

    def test_no_accepting_rows(self) -> None:
        """
        ENDED has no row for an accepted credential, an HMAC, an earlier authentication,
        a device's challenge or chunks: only refusals, giving up, being out of step, and the
        device's verdict on our SyncHdr read after giving up in the same message.
        """
        ended = {input for (phase, input) in TRANSITIONS if phase is Phase.ENDED}
        self.assertEqual(
            ended,
            {SessionInput.REFUSED, SessionInput.GIVE_UP, SessionInput.OUT_OF_STEP, SessionInput.SERVER_ACCEPTED},
        )
        for input in ended:
            self.assertIs(TRANSITIONS[(Phase.ENDED, input)].phase, Phase.ENDED)

    def test_out_of_step(self) -> None:
        """
        OUT_OF_STEP drops an OPEN session (package closed, transfers stopped) and leaves an
        ENDED one as it is; a session that is not open yet is never out of step.
        """
        dropped = advance(in_phase(Phase.OPEN), SessionInput.OUT_OF_STEP)
        self.assertEqual(
            (dropped.phase, dropped.package, dropped.incoming, dropped.outgoing),
            (Phase.ENDED, OurPackage.CLOSED, None, None),
        )
        ended = in_phase(Phase.ENDED)
        self.assertEqual(advance(ended, SessionInput.OUT_OF_STEP), ended)
        for phase in (Phase.NEW, Phase.CHALLENGED):
            self.assertNotIn((phase, SessionInput.OUT_OF_STEP), TRANSITIONS)

    def test_no_more_commands(self) -> None:
        """
        A 214 or the unenrollment ends an OPEN session the way giving up does.
        """
        self.assertEqual(TRANSITIONS[(Phase.OPEN, SessionInput.NO_MORE_COMMANDS)], TRANSITIONS[(Phase.OPEN, SessionInput.GIVE_UP)])
        self.assertEqual([key for key in TRANSITIONS if key[1] is SessionInput.NO_MORE_COMMANDS], [(Phase.OPEN, SessionInput.NO_MORE_COMMANDS)])


class LastAnswerTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """
        The answer kept beside the state is plain builtins and loads as itself.
        """
        h = Harness(GET_SWV)
        h.send(h.client.package1())
        last = h.outcomes[-1].last
        assert last is not None
        plain = last.to_dict()
        self.assertEqual({type(v) for v in plain.values()}, {str, bytes, list})
        self.assertEqual(LastAnswer.from_dict(plain), last)
        self.assertEqual((last.key, last.msg_id, last.body), (h.state.key, "1", h.outcomes[-1].body))

    def test_answers(self) -> None:
        """
        It answers the same session's same MsgID with the same bytes and MAC header only.
        """
        state = in_phase(Phase.OPEN)
        last = LastAnswer(state.key, "3", LastAnswer.digest_of(b"body", "mac=1"), b"answer")
        self.assertTrue(last.answers(state, "3", b"body", "mac=1"))
        self.assertFalse(last.answers(state, "3", b"body", "mac=2"))
        self.assertFalse(last.answers(state, "3", b"body"))
        self.assertFalse(last.answers(state, "3", b"bodx", "mac=1"))
        self.assertFalse(last.answers(state, "4", b"body", "mac=1"))
        self.assertFalse(last.answers(replace(state, key="D@2"), "3", b"body", "mac=1"))

    def test_kept_while_the_session_goes_on(self) -> None:
        """
        Kept after a message that leaves the session challenged or open; none once it ended.
        """
        h = Harness(GET_SWV)
        h.send(h.client.package1(cred=False))
        self.assertIsNotNone(h.outcomes[-1].last)
        reply = h.send(h.client.package1())
        self.assertIsNotNone(h.outcomes[-1].last)
        h.send(h.answer_all(reply))
        self.assertIs(h.state.phase, Phase.ENDED)
        self.assertIsNone(h.outcomes[-1].last)


class EvolveTests(SynchronousTestCase):
    def test_same_as_replace(self) -> None:
        """
        C{evolve} makes the same state as C{dataclasses.replace}, and leaves the original alone.
        """
        state = in_phase(Phase.OPEN)
        changes: dict[str, Any] = {"next_msg_id": 7, "phase": Phase.ENDED, "sent": ()}
        evolved = state.evolve(**changes)
        self.assertEqual(evolved, replace(state, **changes))
        self.assertEqual(hash(evolved), hash(replace(state, **changes)))
        self.assertEqual(state, in_phase(Phase.OPEN))
        self.assertEqual({f.name: getattr(evolved, f.name) for f in fields(SessionState)}, {
            f.name: getattr(replace(state, **changes), f.name) for f in fields(SessionState)
        })

    def test_unknown_field(self) -> None:
        """
        A name that is not a field is refused, as by C{dataclasses.replace}.
        """
        self.assertRaises(TypeError, in_phase(Phase.OPEN).evolve, nxt_msg_id=7)


class SerialisationTests(SynchronousTestCase):
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


    def test_plain_builtins(self) -> None:
        """
        What the store keeps names none of our classes: builtins only, enums by value.
        """
        state = in_phase(Phase.OPEN)

        def check(value: object) -> None:
            self.assertIn(type(value), (dict, list, tuple, str, int, float, bool, bytes, type(None)), value)
            if isinstance(value, dict):
                for key, item in value.items():
                    check(key)
                    check(item)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    check(item)

        plain = state.to_dict()
        check(plain)
        self.assertEqual(plain["version"], STATE_VERSION)
        self.assertEqual(
            (plain["phase"], plain["authentication"], plain["server_credential"], plain["package"]),
            ("open", "credential", "owed", "open"),
        )
        self.assertEqual(SessionState.from_dict(plain), state)

    def test_version_2(self) -> None:
        """
        A version-2 dict (before server authentication) loads with the defaults of what it lacked.
        """
        state = replace(in_phase(Phase.OPEN), server_credential=ServerCredential.OWED)
        plain = {k: v for k, v in state.to_dict().items() if k not in ("server_nonce", "server_cred_sent", "server_refusals")}
        plain["version"] = 2
        self.assertEqual(SessionState.from_dict(plain), state)

    def test_server_bookkeeping_kept(self) -> None:
        """
        The session's server nonce (octets), whether our last message carried our
        credential and how often it was refused survive the store.
        """
        state = replace(
            in_phase(Phase.OPEN),
            server_credential=ServerCredential.ACCEPTED,
            server_nonce=b"\x00\xff" * 6,
            server_cred_sent=True,
            server_refusals=2,
        )
        plain = state.to_dict()
        self.assertEqual((plain["server_credential"], plain["server_nonce"]), ("accepted", b"\x00\xff" * 6))
        self.assertEqual(SessionState.from_dict(plain), state)

    def test_newer_format_refused(self) -> None:
        """
        A state written by a newer mdmd is not misread.
        """
        plain = {**in_phase(Phase.OPEN).to_dict(), "version": STATE_VERSION + 1}
        self.assertRaises(ValueError, SessionState.from_dict, plain)


def _open(h: Harness) -> None:
    h.send(h.client.package1())


def _challenged(h: Harness) -> None:
    h.send(h.client.package1(cred=False))


def _receiving(h: Harness) -> None:
    reply = h.send(h.client.package1())
    c = h.client
    c.cmd_ids = itertools.count(1)
    (get,) = commands(reply)
    h.send(c.reply(c.header_status(reply), c.status_for(reply, get, 200), c.results_for(reply, get, "./x", b"\x00\xff", more=True, size=4), final=False))


def _sending(h: Harness) -> None:
    h.client.max_msg_size = 1500
    h.send(h.client.package1())


def _package_open(h: Harness) -> None:
    h.client.max_msg_size = 2000
    h.send(h.client.package1())


def _server_credential_owed(h: Harness) -> None:
    reply = h.send(h.client.package1())
    nonce = b"\x09" * 16
    chal = Chal(meta=Meta(type="syncml:auth-md5", format="b64", next_nonce=base64.b64encode(nonce).decode()))
    h.client.cmd_ids = itertools.count(1)
    h.send(h.client.reply(h.client.header_status(reply, 407, chal)))


def _hmac(h: Harness) -> None:
    message = h.client.package1(cred=False)
    body = XML_CODEC.encode(message)
    mac = auth.hmac_mac("device-name", h.client.nonce, body, password="device-secret")
    h.send(message, hmac_header=f'algorithm=MD5, username="device-name", mac={mac}', body=body)


def _ended(h: Harness) -> None:
    reply = h.send(h.client.package1())
    h.send(h.answer_all(reply, results={"./DevDetail/SwV": "10.0.26100.1"}))


BIG = {"verb": "Replace", "target": "./Vendor/Big", "data": "".join(chr(65 + i % 26) for i in range(5000)), "format": "chr"}

#: name → (the queued commands, the codec, what the device does): how each VERSION_1 dict came about.
SCENARIOS = {
    "open": ((GET_SWV, REPLACE), XML_CODEC, _open),
    "challenged": ((REPLACE,), XML_CODEC, _challenged),
    "receiving": ((GET_SWV,), WBXML_CODEC, _receiving),
    "sending": ((BIG,), XML_CODEC, _sending),
    "package_open": (
        tuple({"verb": "Replace", "target": f"./Vendor/X/{i}", "data": "y" * 400} for i in range(10)),
        XML_CODEC,
        _package_open,
    ),
    "server_credential_owed": ((GET_SWV, REPLACE), XML_CODEC, _server_credential_owed),
    "hmac": ((REPLACE,), XML_CODEC, _hmac),
    "ended": ((GET_SWV, REPLACE), XML_CODEC, _ended),
}


class Version1Tests(SynchronousTestCase):
    """
    Sessions stored by the engine before the transition table held the machine (version 1).
    """

    def test_every_scenario_recorded(self) -> None:
        """
        Each recorded dict has the scenario that made it.
        """
        self.assertEqual(set(VERSION_1), set(SCENARIOS))

    def test_loads_as_the_same_state(self) -> None:
        """
        A version-1 dict loads as exactly the state this engine reaches by the same messages.
        """
        for name, (specs, codec, run) in SCENARIOS.items():
            h = Harness(*specs, codec=codec)
            run(h)
            self.assertEqual(SessionState.from_dict(VERSION_1[name]), h.outcomes[-1].state, name)

    def test_booleans_become_sub_states(self) -> None:
        """
        authenticated/hmac, send_server_cred and server_package_open map to the machine's sub-states.
        """
        loaded = {name: SessionState.from_dict(value) for name, value in VERSION_1.items()}
        self.assertIs(loaded["challenged"].authentication, Authentication.NONE)
        self.assertIs(loaded["challenged"].phase, Phase.CHALLENGED)
        self.assertIs(loaded["open"].authentication, Authentication.CREDENTIAL)
        self.assertIs(loaded["hmac"].authentication, Authentication.HMAC)
        self.assertIs(loaded["server_credential_owed"].server_credential, ServerCredential.OWED)
        self.assertIs(loaded["open"].server_credential, ServerCredential.NOT_ASKED)
        self.assertIs(loaded["package_open"].package, OurPackage.OPEN)
        self.assertIs(loaded["open"].package, OurPackage.CLOSED)
        self.assertEqual(loaded["sending"].outgoing, OutgoingObject(1, 124))
        self.assertEqual(narrowed(IncomingObject, loaded["receiving"].incoming).chunks[0].data, b"\x00\xff")

    def test_without_server_package_open(self) -> None:
        """
        The first version-1 dicts had no server_package_open: the package was closed.
        """
        value = {k: v for k, v in VERSION_1["package_open"].items() if k != "server_package_open"}
        self.assertIs(SessionState.from_dict(value).package, OurPackage.CLOSED)

    def test_session_goes_on_across_the_upgrade(self) -> None:
        """
        A session stored mid-way by the old engine is continued by this one: the device's
        answers are recorded and the session ends.
        """
        h = Harness(GET_SWV, REPLACE)
        reply = h.send(h.client.package1())
        h.state = SessionState.from_dict(VERSION_1["open"])
        reply = h.send(h.answer_all(reply, results={"./DevDetail/SwV": "10.0.26100.1"}))
        self.assertEqual([s.data for s in statuses(reply)], ["200", "200"])
        self.assertEqual((h.records[1]["state"], h.records[2]["state"]), ("done", "done"))
        self.assertIs(h.state.phase, Phase.ENDED)


#: What the engine before this table wrote (mdmd/dm/session.py), for the scenarios above.
VERSION_1 = {'open': {'key': 'D@1800000000.000000',
          'session_id': 'D',
          'phase': 'open',
          'started_at': 1800000000.0,
          'deadline': 1800001800.0,
          'next_msg_id': 2,
          'auth_failures': 0,
          'authenticated': True,
          'hmac': False,
          'max_msg_size': None,
          'max_obj_size': None,
          'user_logged_in': True,
          'sent': [('1', '5', 1, '', 'Get', False), ('1', '6', 2, '', 'Replace', False)],
          'answers': [],
          'outgoing': None,
          'incoming': None,
          'send_server_cred': False,
          'last_client_msg_id': '1',
          'server_package_open': False},
 'challenged': {'key': 'D@1800000000.000000',
                'session_id': 'D',
                'phase': 'challenged',
                'started_at': 1800000000.0,
                'deadline': 1800001800.0,
                'next_msg_id': 2,
                'auth_failures': 1,
                'authenticated': False,
                'hmac': False,
                'max_msg_size': None,
                'max_obj_size': None,
                'user_logged_in': False,
                'sent': [],
                'answers': [],
                'outgoing': None,
                'incoming': None,
                'send_server_cred': False,
                'last_client_msg_id': '1',
                'server_package_open': False},
 'receiving': {'key': 'D@1800000000.000000',
               'session_id': 'D',
               'phase': 'open',
               'started_at': 1800000000.0,
               'deadline': 1800001801.0,
               'next_msg_id': 3,
               'auth_failures': 0,
               'authenticated': True,
               'hmac': False,
               'max_msg_size': None,
               'max_obj_size': None,
               'user_logged_in': True,
               'sent': [('1', '5', 1, '', 'Get', False)],
               'answers': [(1, (('', 200),), ())],
               'outgoing': None,
               'incoming': ('Results', '1', '5', './x', [('./x', 'chr', None, 4, b'\x00\xff', True)]),
               'send_server_cred': False,
               'last_client_msg_id': '2',
               'server_package_open': False},
 'sending': {'key': 'D@1800000000.000000',
             'session_id': 'D',
             'phase': 'open',
             'started_at': 1800000000.0,
             'deadline': 1800001800.0,
             'next_msg_id': 2,
             'auth_failures': 0,
             'authenticated': True,
             'hmac': False,
             'max_msg_size': 1500,
             'max_obj_size': None,
             'user_logged_in': True,
             'sent': [('1', '5', 1, '', 'Replace', True)],
             'answers': [],
             'outgoing': (1, 124),
             'incoming': None,
             'send_server_cred': False,
             'last_client_msg_id': '1',
             'server_package_open': True},
 'package_open': {'key': 'D@1800000000.000000',
                  'session_id': 'D',
                  'phase': 'open',
                  'started_at': 1800000000.0,
                  'deadline': 1800001800.0,
                  'next_msg_id': 2,
                  'auth_failures': 0,
                  'authenticated': True,
                  'hmac': False,
                  'max_msg_size': 2000,
                  'max_obj_size': None,
                  'user_logged_in': True,
                  'sent': [('1', '5', 1, '', 'Replace', False)],
                  'answers': [],
                  'outgoing': None,
                  'incoming': None,
                  'send_server_cred': False,
                  'last_client_msg_id': '1',
                  'server_package_open': True},
 'server_credential_owed': {'key': 'D@1800000000.000000',
                            'session_id': 'D',
                            'phase': 'ended',
                            'started_at': 1800000000.0,
                            'deadline': 1800001801.0,
                            'next_msg_id': 3,
                            'auth_failures': 0,
                            'authenticated': True,
                            'hmac': False,
                            'max_msg_size': None,
                            'max_obj_size': None,
                            'user_logged_in': True,
                            'sent': [('1', '5', 1, '', 'Get', False), ('1', '6', 2, '', 'Replace', False)],
                            'answers': [],
                            'outgoing': None,
                            'incoming': None,
                            'send_server_cred': True,
                            'last_client_msg_id': '2',
                            'server_package_open': False},
 'hmac': {'key': 'D@1800000000.000000',
          'session_id': 'D',
          'phase': 'open',
          'started_at': 1800000000.0,
          'deadline': 1800001800.0,
          'next_msg_id': 2,
          'auth_failures': 0,
          'authenticated': True,
          'hmac': True,
          'max_msg_size': None,
          'max_obj_size': None,
          'user_logged_in': True,
          'sent': [('1', '5', 1, '', 'Replace', False)],
          'answers': [],
          'outgoing': None,
          'incoming': None,
          'send_server_cred': False,
          'last_client_msg_id': '1',
          'server_package_open': False},
 'ended': {'key': 'D@1800000000.000000',
           'session_id': 'D',
           'phase': 'ended',
           'started_at': 1800000000.0,
           'deadline': 1800001801.0,
           'next_msg_id': 3,
           'auth_failures': 0,
           'authenticated': True,
           'hmac': False,
           'max_msg_size': None,
           'max_obj_size': None,
           'user_logged_in': True,
           'sent': [],
           'answers': [],
           'outgoing': None,
           'incoming': None,
           'send_server_cred': False,
           'last_client_msg_id': '2',
           'server_package_open': False}}
