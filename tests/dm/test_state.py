"""
Tests for L{mdmd.dm.state}: the transition table and the session state as the store keeps it.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm.state import SessionState
from mdmd.syncml.codec import WBXML_CODEC

from .helpers import GET_SWV, Harness, commands


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
