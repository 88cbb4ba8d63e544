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
ACCEPTED, HALTED, NOT_EXECUTED = CommandState.ACCEPTED, CommandState.HALTED, CommandState.NOT_EXECUTED

#: Every legal (state, event), written out.
EXPECTED = {
    (QUEUED, CommandEvent.SEND): SENT,
    (QUEUED, CommandEvent.FAIL): FAILED,
    (QUEUED, CommandEvent.CANCEL): CANCELLED,
    (SENT, CommandEvent.SUCCEED): DONE,
    (SENT, CommandEvent.FAIL): FAILED,
    (SENT, CommandEvent.REQUEUE): QUEUED,
    (SENT, CommandEvent.GIVE_UP): FAILED,
    # 202, 214 and 215 (issue 12)
    (SENT, CommandEvent.ACCEPT): ACCEPTED,
    (SENT, CommandEvent.HALT): HALTED,
    (SENT, CommandEvent.SKIP): NOT_EXECUTED,
    (ACCEPTED, CommandEvent.SUCCEED): DONE,
    (ACCEPTED, CommandEvent.FAIL): FAILED,
    # the device unenrolled: what it will never answer is closed
    (QUEUED, CommandEvent.DEVICE_LEFT): CANCELLED,
    (SENT, CommandEvent.DEVICE_LEFT): CANCELLED,
    (ACCEPTED, CommandEvent.DEVICE_LEFT): CANCELLED,
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


class AnswerTests(SynchronousTestCase):
    def test_status_events(self) -> None:
        """
        202, 214 and 215 have their own states; other 2xx are done, anything else failed.
        """
        cases = {
            200: DONE, 201: DONE, 204: DONE, 212: DONE, 216: DONE,
            202: ACCEPTED, 214: HALTED, 215: NOT_EXECUTED,
            0: FAILED, 400: FAILED, 404: FAILED, 500: FAILED, 507: FAILED,
        }
        self.assertEqual({code: command_state.answered_state(code) for code in cases}, cases)

    def test_accepted_waits_without_holding_back(self) -> None:
        """
        An accepted command is pending (it waits for the device's alert) but not in
        flight (a session neither sends it nor waits for it).
        """
        self.assertIn(ACCEPTED, command_state.PENDING)
        self.assertNotIn(ACCEPTED, command_state.IN_FLIGHT)
        self.assertEqual(command_state.IN_FLIGHT, {QUEUED, SENT})
        self.assertEqual(command_state.FINISHED, {DONE, FAILED, CANCELLED, HALTED, NOT_EXECUTED})


class GroupStatusTests(SynchronousTestCase):
    def test_from_members(self) -> None:
        """
        A group answered only member by member: 200 when every member simply
        succeeded, else the first member status that did not (an error, 202, 214, 215).
        """
        self.assertEqual(command_state.group_status([200, 201, 200]), 200)
        self.assertEqual(command_state.group_status([200, 404, 500]), 404)
        self.assertEqual(command_state.group_status([215, 200]), 215)
        self.assertEqual(command_state.group_status([202]), 202)
