"""
Tests for L{mdmd.dm.authentication}: the device's proof, our challenges and our own credential.
"""

from __future__ import annotations

import base64
from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm.authentication import (
    SCHEMES,
    AuthScheme,
    Credentials,
    HeaderVerdict,
    LoginFailures,
    Proof,
    Verdict,
    authenticate,
    challenge,
    header_verdict,
    nonce_per_message,
    offered_nonce,
    response_headers,
    server_cred,
    server_nonce,
)
from mdmd.dm.effects import (
    AuthenticationFailed,
    AuthenticationLocked,
    ClientNonce,
    HeaderRefused,
    LoginFailuresCleared,
    ServerNonce,
    Settings,
)
from mdmd.dm.state import Authentication, Phase, ServerCredential, SessionInput, SessionState
from mdmd.syncml import auth
from mdmd.syncml.codec import XML_CODEC
from mdmd.syncml.model import Chal, Cred, Meta, Status

from ..narrowing import narrowed
from .helpers import GET_SWV, NOW, REPLACE, Harness, commands, statuses


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
        self.assertEqual(narrowed(Chal, header.chal).meta.type, "syncml:auth-md5")
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
        self.assertIsNotNone(narrowed(Chal, statuses(reply)[0].chal).meta.next_nonce)
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
            seen.append(narrowed(Chal, statuses(reply)[0].chal).meta.next_nonce)
        self.assertEqual(len(set(seen)), 3)

    def test_basic(self) -> None:
        """
        auth-basic credentials are accepted for a Basic device.
        """
        h = Harness(REPLACE, scheme=AuthScheme.BASIC)
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
        self.assertEqual(narrowed(Chal, statuses(reply)[0].chal).meta.type, "syncml:auth-MAC")
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

        (The device answers our commands 407 too, as a device that has not
        authenticated us does: they go out again with our Cred. A message
        without commands carries no Cred: see ServerAuthenticationTests.)
        """
        h = Harness(GET_SWV, REPLACE)
        reply = h.send(h.client.package1())
        nonce = b"\x09" * 16
        chal = Chal(meta=Meta(type="syncml:auth-md5", format="b64", next_nonce=base64.b64encode(nonce).decode()))
        h.client.cmd_ids = __import__("itertools").count(1)
        header = h.client.header_status(reply, 407, chal)
        refused = [h.client.status_for(reply, c, 407) for c in commands(reply)]
        reply = h.send(h.client.reply(header, *refused))
        self.assertEqual(h.effects(ServerNonce), [ServerNonce(nonce)])
        cred = narrowed(Cred, reply.header.cred)
        self.assertEqual(narrowed(Meta, cred.meta).type, "syncml:auth-md5")
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


def _random(n: int) -> bytes:
    return b"\x33" * n


CLIENT = Credentials("device-name", "device-secret", b"\x01" * 16)
SERVER = Credentials("mdmd", "server-secret", b"\x02" * 16)


def _state(authentication: Authentication = Authentication.NONE, failures: int = 0) -> SessionState:
    return replace(SessionState.start("D", NOW, 60.0), authentication=authentication, auth_failures=failures)


def _md5_proof(nonce: bytes = CLIENT.nonce, loc_name: str | None = "device-name") -> Proof:
    cred = Cred(meta=Meta(type=auth.AUTH_MD5, format="b64"), data=auth.md5_cred_data(CLIENT.name, nonce, password=CLIENT.secret))
    return Proof(cred, loc_name, None, b"")


def _basic_proof(secret: str = CLIENT.secret) -> Proof:
    cred = Cred(meta=Meta(type=auth.AUTH_BASIC, format="b64"), data=auth.basic_cred_data(CLIENT.name, secret))
    return Proof(cred, None, None, b"")


def _hmac_proof(body: bytes = b"<SyncML/>", mac_body: bytes | None = None) -> Proof:
    mac = auth.hmac_mac(CLIENT.name, CLIENT.nonce, body if mac_body is None else mac_body, password=CLIENT.secret)
    return Proof(None, None, auth.format_hmac_header(CLIENT.name, mac), body)


class SchemeTableTests(SynchronousTestCase):
    def test_every_scheme_has_rules(self) -> None:
        """
        Each AuthScheme has exactly one row: its Meta Type, success code and state-machine input.
        """
        self.assertEqual(set(SCHEMES), set(AuthScheme))
        self.assertEqual(
            {s: (r.meta_type, r.accepted, r.input) for s, r in SCHEMES.items()},
            {
                AuthScheme.BASIC: ("syncml:auth-basic", 212, SessionInput.CREDENTIAL_ACCEPTED),
                AuthScheme.DIGEST: ("syncml:auth-md5", 212, SessionInput.CREDENTIAL_ACCEPTED),
                AuthScheme.HMAC: ("syncml:auth-MAC", 200, SessionInput.HMAC_ACCEPTED),
            },
        )

    def test_values_are_the_old_strings(self) -> None:
        """
        The schemes' values are the words the engine used before the enum.
        """
        self.assertEqual([s.value for s in AuthScheme], ["basic", "digest", "hmac"])

    def test_challenges(self) -> None:
        """
        A Basic challenge has no nonce; digest and HMAC challenges carry a fresh NextNonce.
        """
        chal, nonce = challenge(AuthScheme.BASIC, _random)
        self.assertEqual((chal, nonce), (Chal(meta=Meta(type=auth.AUTH_BASIC, format="b64")), None))
        for scheme in (AuthScheme.DIGEST, AuthScheme.HMAC):
            chal, nonce = challenge(scheme, _random)
            self.assertEqual(nonce, b"\x33" * 16)
            self.assertEqual(chal.meta.type, SCHEMES[scheme].meta_type)
            self.assertEqual(auth.decode_nonce(narrowed(str, chal.meta.next_nonce)), nonce)

    def test_each_verifier(self) -> None:
        """
        Each scheme's verifier accepts its own good proof and refuses a bad one.
        """
        good = {AuthScheme.BASIC: _basic_proof(), AuthScheme.DIGEST: _md5_proof(), AuthScheme.HMAC: _hmac_proof()}
        bad = {
            AuthScheme.BASIC: _basic_proof("wrong"),
            AuthScheme.DIGEST: _md5_proof(nonce=b"\x05" * 16),
            AuthScheme.HMAC: _hmac_proof(mac_body=b"another body"),
        }
        for scheme, rules in SCHEMES.items():
            self.assertTrue(rules.verify(good[scheme], CLIENT), scheme)
            self.assertFalse(rules.verify(bad[scheme], CLIENT), scheme)


class AuthenticateTests(SynchronousTestCase):
    def check(self, state: SessionState, scheme: AuthScheme, proof: Proof, max_failures: int = 3) -> Verdict:
        return authenticate(state, scheme, CLIENT, proof, max_failures, _random)

    def test_digest(self) -> None:
        """
        A good digest: 212, a fresh nonce for the next session, failures forgotten.
        """
        verdict = self.check(_state(failures=2), AuthScheme.DIGEST, _md5_proof())
        self.assertEqual(
            (verdict.code, verdict.input, verdict.failures, verdict.nonce),
            (212, SessionInput.CREDENTIAL_ACCEPTED, 0, b"\x33" * 16),
        )
        self.assertTrue(verdict.accepted)

    def test_digest_names_the_client(self) -> None:
        """
        A digest whose LocName names someone else is refused, even with the right secret.
        """
        verdict = self.check(_state(), AuthScheme.DIGEST, _md5_proof(loc_name="someone"))
        self.assertEqual((verdict.code, verdict.input), (401, SessionInput.REFUSED))

    def test_basic(self) -> None:
        """
        Basic: 212 and no challenge.
        """
        verdict = self.check(_state(), AuthScheme.BASIC, _basic_proof())
        self.assertEqual((verdict.code, verdict.chal, verdict.nonce), (212, None, None))

    def test_other_scheme_refused(self) -> None:
        """
        A credential of another scheme than the device's is refused with the device's challenge.
        """
        verdict = self.check(_state(), AuthScheme.BASIC, _md5_proof())
        self.assertEqual((verdict.code, narrowed(Chal, verdict.chal).meta.type), (401, auth.AUTH_BASIC))

    def test_unreadable_credential(self) -> None:
        """
        A credential that is not even base64 is a refusal, not an error.
        """
        proof = Proof(Cred(meta=Meta(type=auth.AUTH_MD5), data="!!"), None, None, b"")
        self.assertEqual(self.check(_state(), AuthScheme.DIGEST, proof).code, 401)

    def test_missing(self) -> None:
        """
        No credential: 407 with the device's challenge.
        """
        verdict = self.check(_state(), AuthScheme.DIGEST, Proof(None, None, None, b""))
        self.assertEqual((verdict.code, narrowed(Chal, verdict.chal).meta.type, verdict.failures), (407, auth.AUTH_MD5, 1))

    def test_hmac_whatever_the_scheme(self) -> None:
        """
        A good MAC authenticates a digest device: 200, a fresh nonce, failures kept.
        """
        verdict = self.check(_state(failures=1), AuthScheme.DIGEST, _hmac_proof())
        self.assertEqual(
            (verdict.code, verdict.input, verdict.failures, narrowed(Chal, verdict.chal).meta.type),
            (200, SessionInput.HMAC_ACCEPTED, 1, auth.AUTH_MAC),
        )

    def test_hmac_session_needs_a_mac(self) -> None:
        """
        Once a session uses HMAC, a message without a MAC gets 407 and an HMAC challenge.
        """
        verdict = self.check(_state(Authentication.HMAC), AuthScheme.DIGEST, _md5_proof())
        self.assertEqual((verdict.code, narrowed(Chal, verdict.chal).meta.type), (407, auth.AUTH_MAC))

    def test_bad_mac(self) -> None:
        """
        A bad or unreadable MAC gets 401 and an HMAC challenge.
        """
        for proof in (_hmac_proof(mac_body=b"x"), Proof(None, None, "garbage", b"")):
            verdict = self.check(_state(), AuthScheme.DIGEST, proof)
            self.assertEqual((verdict.code, narrowed(Chal, verdict.chal).meta.type), (401, auth.AUTH_MAC))

    def test_already_authenticated(self) -> None:
        """
        After a credential was accepted, no more are needed in the session.
        """
        verdict = self.check(_state(Authentication.CREDENTIAL), AuthScheme.DIGEST, Proof(None, None, None, b""))
        self.assertEqual((verdict.code, verdict.input, verdict.chal), (200, SessionInput.ALREADY_AUTHENTICATED, None))

    def test_give_up(self) -> None:
        """
        Past max_failures the refusal carries no challenge and the session gives up.
        """
        verdict = self.check(_state(failures=3), AuthScheme.DIGEST, Proof(None, None, None, b""))
        self.assertEqual((verdict.input, verdict.chal, verdict.failures), (SessionInput.GIVE_UP, None, 4))
        self.assertFalse(verdict.accepted)


    def test_recent_failures_count(self) -> None:
        """
        The device's failures lately count with the session's: a new session of
        a device that failed 3 times lately gives up at its first failure.
        """
        verdict = authenticate(_state(), AuthScheme.DIGEST, CLIENT, _md5_proof(b"stale"), 3, _random, recent_failures=3)
        self.assertEqual((verdict.code, verdict.input, verdict.chal, verdict.failures), (401, SessionInput.GIVE_UP, None, 4))
        self.assertIs(verdict.failed, AuthScheme.DIGEST)
        verdict = authenticate(_state(), AuthScheme.DIGEST, CLIENT, _md5_proof(b"stale"), 3, _random, recent_failures=1)
        self.assertEqual((verdict.input, verdict.failures, verdict.nonce), (SessionInput.REFUSED, 2, b"\x33" * 16))

    def test_locked_out(self) -> None:
        """
        A device locked out is answered 417 without a look at its proof (the right
        one too) and without a challenge or a nonce; a session it authenticated
        before goes on.
        """
        verdict = authenticate(_state(), AuthScheme.DIGEST, CLIENT, _md5_proof(), 3, _random, locked=True)
        self.assertEqual(
            (verdict.code, verdict.input, verdict.chal, verdict.nonce, verdict.locked, verdict.failed),
            (417, SessionInput.GIVE_UP, None, None, True, None),
        )
        self.assertFalse(verdict.accepted)
        verdict = authenticate(_state(Authentication.CREDENTIAL), AuthScheme.DIGEST, CLIENT, Proof(None, None, None, b""), 3, _random, locked=True)
        self.assertEqual((verdict.code, verdict.locked), (200, False))


class LoginFailuresTests(SynchronousTestCase):
    def test_window(self) -> None:
        """
        Failures count until the device went C{lockout} seconds without one; a
        lockout holds until its end.
        """
        failures = LoginFailures(4, NOW, NOW + 900)
        self.assertEqual((failures.recent(NOW + 899, 900), failures.recent(NOW + 900, 900)), (4, 0))
        self.assertEqual((failures.locked(NOW + 899), failures.locked(NOW + 900)), (True, False))
        self.assertFalse(LoginFailures(2, NOW).locked(NOW))

    def test_plain_record(self) -> None:
        """
        Stored as a dict of plain numbers, read back the same; no record is no failures.
        """
        failures = LoginFailures(2, NOW, 0.0)
        self.assertEqual(failures.to_dict(), {"count": 2, "last": NOW, "locked_until": 0.0})
        self.assertEqual(LoginFailures.from_dict(failures.to_dict()), failures)
        self.assertEqual(LoginFailures.from_dict(None), LoginFailures())


class FailedLoginsAcrossSessionsTests(SynchronousTestCase):
    """
    max_auth_failures holds per device, however often the client starts a session again.
    """

    def impostor(self, h: Harness) -> None:
        h.client.device = replace(h.client.device, client=replace(h.client.device.client, secret="wrong"))

    def test_new_session_ids_do_not_reset_the_count(self) -> None:
        """
        A client that starts a new session (new SessionID, package 1 again) after
        every refusal is challenged max_auth_failures times in all, then refused:
        each failure is reported with its scheme and count, and beyond the
        limit no nonce is minted and the message is answered 417 unread.
        """
        h = Harness(REPLACE, settings=Settings(max_auth_failures=2, auth_lockout=600.0))
        self.impostor(h)
        codes = []
        for session_id in "ABCDEF":
            h.client.session_id = session_id
            reply = h.send(h.client.package1())
            codes.append((statuses(reply)[0].data, statuses(reply)[0].chal is not None))
        self.assertEqual(codes, [("401", True), ("401", True), ("401", False)] + [("417", False)] * 3)
        failed = h.all_effects(AuthenticationFailed)
        self.assertEqual([(f.scheme, f.code, f.failures.count) for f in failed], [(AuthScheme.DIGEST, 401, n) for n in (1, 2, 3)])
        self.assertEqual([f.failures.locked_until for f in failed], [0.0, 0.0, NOW + 2 + 600])
        self.assertEqual(len(h.all_effects(ClientNonce)), 2)
        self.assertEqual(len(h.all_effects(AuthenticationLocked)), 3)
        self.assertEqual(commands(reply), [])
        self.assertEqual({s.data for s in statuses(reply)}, {"417"})

    def test_same_session_id(self) -> None:
        """
        The same holds for a client that sends package 1 again and again under one SessionID.
        """
        h = Harness(settings=Settings(max_auth_failures=2))
        self.impostor(h)
        for _ in range(5):
            reply = h.send(h.client.package1())
        self.assertEqual(statuses(reply)[0].data, "417")
        self.assertEqual(len(h.all_effects(AuthenticationFailed)), 3)

    def test_right_credentials_refused_until_the_lockout_ends(self) -> None:
        """
        While locked out, the right credentials are refused too; after the lockout they are accepted.
        """
        h = Harness(REPLACE, settings=Settings(max_auth_failures=1, auth_lockout=600.0))
        right = h.client.device
        self.impostor(h)
        h.send(h.client.package1())
        h.send(h.client.package1())
        h.client.device = right
        h.client.session_id = "E"
        self.assertEqual(statuses(h.send(h.client.package1()))[0].data, "417")
        h.now += 600
        h.client.session_id = "F"
        reply = h.send(h.client.package1())
        self.assertEqual(statuses(reply)[0].data, "212")
        self.assertEqual(len(commands(reply)), 1)

    def test_success_clears_the_count(self) -> None:
        """
        A device that authenticates (after a stale nonce, say) has its failures forgotten.
        """
        h = Harness(settings=Settings(max_auth_failures=1))
        h.client.nonce = b"stale"
        reply = h.send(h.client.package1())
        self.assertEqual(statuses(reply)[0].data, "401")
        self.assertEqual(h.device.failures.count, 1)
        reply = h.send(h.client.package1())
        self.assertEqual(statuses(reply)[0].data, "212")
        self.assertEqual(h.effects(LoginFailuresCleared), [LoginFailuresCleared()])
        self.assertEqual(h.device.failures, LoginFailures())


class ServerCredentialTests(SynchronousTestCase):
    def test_cred_only_when_owed(self) -> None:
        """
        Our MD5 Cred (CLIENT-level credentials) goes in our SyncHdr only once the device asked.
        """
        self.assertIsNone(server_cred(_state(), SERVER))
        cred = narrowed(Cred, server_cred(replace(_state(), server_credential=ServerCredential.OWED), SERVER))
        self.assertEqual(narrowed(Meta, cred.meta).type, auth.AUTH_MD5)
        self.assertEqual(cred.data, auth.md5_cred_data("mdmd", SERVER.nonce, password="server-secret"))

    def test_mac_only_in_hmac_sessions(self) -> None:
        """
        Our answer carries x-syncml-hmac only in a session that uses HMAC.
        """
        self.assertEqual(response_headers(_state(Authentication.CREDENTIAL), SERVER, b"body"), ())
        ((name, value),) = response_headers(_state(Authentication.HMAC), SERVER, b"body")
        self.assertEqual(name, "x-syncml-hmac")
        self.assertTrue(auth.verify_hmac(auth.parse_hmac_header(value), SERVER.nonce, b"body", password="server-secret"))

    def test_offered_nonce(self) -> None:
        """
        The device's NextNonce is read from its challenge; an absent or unreadable one is None.
        """
        nonce = b"\x09" * 16
        chal = Chal(meta=Meta(next_nonce=base64.b64encode(nonce).decode()))
        self.assertEqual(offered_nonce(Status(chal=chal)), nonce)
        self.assertIsNone(offered_nonce(Status()))
        self.assertIsNone(offered_nonce(Status(chal=Chal(meta=Meta(next_nonce="!!")))))


class OurCredentialTests(SynchronousTestCase):
    """
    Our own credential (w7 CLIENT, DMAcc SRVCRED), in the device's server auth scheme.
    """

    def test_per_scheme(self) -> None:
        """
        While owed: an MD5 Cred for DIGEST, a Basic Cred for BASIC, none for HMAC (it is a MAC header).
        """
        owed = replace(_state(), server_credential=ServerCredential.OWED)
        md5 = narrowed(Cred, server_cred(owed, SERVER, AuthScheme.DIGEST))
        md5_meta = narrowed(Meta, md5.meta)
        self.assertEqual((md5_meta.type, md5_meta.format), ("syncml:auth-md5", "b64"))
        self.assertEqual(md5.data, auth.md5_cred_data("mdmd", SERVER.nonce, password="server-secret"))
        basic = narrowed(Cred, server_cred(owed, SERVER, AuthScheme.BASIC))
        basic_meta = narrowed(Meta, basic.meta)
        self.assertEqual((basic_meta.type, basic_meta.format, basic.data), ("syncml:auth-basic", "b64", "bWRtZDpzZXJ2ZXItc2VjcmV0"))
        self.assertIsNone(server_cred(owed, SERVER, AuthScheme.HMAC))

    def test_not_once_accepted(self) -> None:
        """
        Neither before it is owed nor once the device accepted it (212) is it sent.
        """
        for value in (ServerCredential.NOT_ASKED, ServerCredential.ACCEPTED):
            self.assertIsNone(server_cred(replace(_state(), server_credential=value), SERVER, AuthScheme.DIGEST))

    def test_session_nonce(self) -> None:
        """
        Once the device gave a nonce for its next session, this session's Cred keeps the one it had.
        """
        pinned = replace(_state(), server_credential=ServerCredential.OWED, server_nonce=b"\x05" * 16)
        self.assertEqual(server_nonce(pinned, SERVER), Credentials("mdmd", "server-secret", b"\x05" * 16))
        self.assertIs(server_nonce(_state(), SERVER), SERVER)
        self.assertEqual(
            narrowed(Cred, server_cred(pinned, SERVER)).data, auth.md5_cred_data("mdmd", b"\x05" * 16, password="server-secret")
        )

    def test_our_mac_when_hmac_is_our_scheme(self) -> None:
        """
        With HMAC as our scheme, our answer carries our MAC while we owe it, and not after.
        """
        owed = replace(_state(), server_credential=ServerCredential.OWED)
        ((name, value),) = response_headers(owed, SERVER, b"body", AuthScheme.HMAC)
        self.assertEqual(name, "x-syncml-hmac")
        self.assertTrue(auth.verify_hmac(auth.parse_hmac_header(value), SERVER.nonce, b"body", password="server-secret"))
        self.assertEqual(response_headers(owed, SERVER, b"body", AuthScheme.DIGEST), ())
        accepted = replace(owed, server_credential=ServerCredential.ACCEPTED)
        self.assertEqual(response_headers(accepted, SERVER, b"body", AuthScheme.HMAC), ())

    def test_nonce_per_message(self) -> None:
        """
        Only HMAC (the device's or ours) takes a NextNonce given with 2xx for the next message.
        """
        self.assertFalse(nonce_per_message(_state(), AuthScheme.DIGEST))
        self.assertFalse(nonce_per_message(_state(), AuthScheme.BASIC))
        self.assertTrue(nonce_per_message(_state(), AuthScheme.HMAC))
        self.assertTrue(nonce_per_message(_state(Authentication.HMAC), AuthScheme.DIGEST))


class HeaderVerdictTests(SynchronousTestCase):
    def test_verdicts(self) -> None:
        """
        212 accepts us, other codes below 300 pass, 401/407 challenge, other errors
        refuse, and anything that is not a status code (libdmclient's 0) is invalid.
        """
        cases = {
            "212": (HeaderVerdict.ACCEPTED, 212),
            " 212 ": (HeaderVerdict.ACCEPTED, 212),
            "200": (HeaderVerdict.PASSED, 200),
            "101": (HeaderVerdict.PASSED, 101),
            "401": (HeaderVerdict.CHALLENGED, 401),
            "407": (HeaderVerdict.CHALLENGED, 407),
            "500": (HeaderVerdict.REFUSED, 500),
            "403": (HeaderVerdict.REFUSED, 403),
            "0": (HeaderVerdict.INVALID, None),
            "": (HeaderVerdict.INVALID, None),
            None: (HeaderVerdict.INVALID, None),
            "abc": (HeaderVerdict.INVALID, None),
            "299": (HeaderVerdict.INVALID, None),
        }
        for data, expected in cases.items():
            self.assertEqual(header_verdict(data), expected, data)
