"""
Tests for L{mdmd.dm.command_state}: the table every change of a queued command's state goes through.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.dm import command_state
from mdmd.dm.command_state import CommandEvent, CommandState, IllegalCommandMove, next_state

QUEUED, SENT, DONE, FAILED, CANCELLED = (
    CommandState.QUEUED,
    CommandState.SENT,
    CommandState.DONE,
    CommandState.FAILED,
    CommandState.CANCELLED,
)

#: Every legal (state, event), written out.
EXPECTED = {
    (QUEUED, CommandEvent.SEND): SENT,
    (QUEUED, CommandEvent.FAIL): FAILED,
    (QUEUED, CommandEvent.CANCEL): CANCELLED,
    (SENT, CommandEvent.SUCCEED): DONE,
    (SENT, CommandEvent.FAIL): FAILED,
    (SENT, CommandEvent.REQUEUE): QUEUED,
    (SENT, CommandEvent.GIVE_UP): FAILED,
}


class CommandStateTests(SynchronousTestCase):
    def test_every_pair(self) -> None:
        """
        Each legal (state, event) leads where the table says; every other pair
        raises IllegalCommandMove naming both.
        """
        self.assertEqual(command_state.TRANSITIONS, EXPECTED)
        for state in CommandState:
            for event in CommandEvent:
                expected = EXPECTED.get((state, event))
                self.assertEqual(command_state.allows(state, event), expected is not None)
                if expected is not None:
                    self.assertIs(next_state(state, event), expected)
                    continue
                with self.assertRaises(IllegalCommandMove) as caught:
                    next_state(state, event)
                self.assertEqual((caught.exception.state, caught.exception.event), (state, event))

    def test_finished_states_are_final(self) -> None:
        """
        Nothing moves a done, failed or cancelled command; pending and finished split the states.
        """
        self.assertEqual(command_state.PENDING | command_state.FINISHED, set(CommandState))
        self.assertFalse(command_state.PENDING & command_state.FINISHED)
        self.assertFalse([key for key in EXPECTED if key[0] in command_state.FINISHED])

    def test_message(self) -> None:
        """
        The error says what was asked of a command in which state.
        """
        self.assertEqual(str(IllegalCommandMove(DONE, CommandEvent.CANCEL)), "a done command cannot cancel")
