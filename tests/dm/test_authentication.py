"""
Tests for L{mdmd.dm.authentication}: the device's proof, our challenges and our own credential.
"""

from __future__ import annotations

import base64
from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm.authentication import AuthScheme
from mdmd.dm.effects import HeaderRefused, ServerNonce, Settings
from mdmd.dm.state import Phase
from mdmd.syncml import auth
from mdmd.syncml.codec import XML_CODEC
from mdmd.syncml.model import Chal, Meta

from .helpers import GET_SWV, REPLACE, Harness, commands, statuses


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
