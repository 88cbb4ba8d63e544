"""
The DM session engine's fuzz target (L{tests.fuzz.targets.dm_engine}): a
bounded, deterministic run (the runner's bounded run is in
L{tests.fuzz.test_fuzz}), any script of bytes, and that the scripts reach the
engine. The long run: C{tools/fuzz --target dm_engine}.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.fuzz.targets.dm_engine import _messages, feed, run


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
