"""
Tests for L{mdmd.desired.convergence}: the device × profile state table.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.desired.convergence import (
    ASSIGNED,
    TRANSITIONS,
    IllegalProfileMove,
    ProfileEvent,
    ProfileState,
    allows,
    next_state,
)


class TableTests(SynchronousTestCase):
    def test_happy_path(self) -> None:
        """
        pending → sent → verifying → verified.
        """
        state = next_state(None, ProfileEvent.ASSIGN)
        for event in (ProfileEvent.SEND, ProfileEvent.APPLIED, ProfileEvent.VERIFY):
            state = next_state(state, event)
        self.assertIs(state, ProfileState.VERIFIED)

    def test_drift_and_back(self) -> None:
        """
        A verified profile drifts, is applied again and verified again (or fails).
        """
        self.assertIs(next_state(ProfileState.VERIFIED, ProfileEvent.DRIFT), ProfileState.DRIFTED)
        self.assertIs(next_state(ProfileState.DRIFTED, ProfileEvent.VERIFY), ProfileState.VERIFIED)
        self.assertIs(next_state(ProfileState.DRIFTED, ProfileEvent.FAIL), ProfileState.FAILED)

    def test_removal(self) -> None:
        """
        Every assigned state can be unassigned; a removal ends without a record, or retained.
        """
        for state in ASSIGNED:
            self.assertIs(next_state(state, ProfileEvent.UNASSIGN), ProfileState.REMOVING)
        self.assertIsNone(next_state(ProfileState.REMOVING, ProfileEvent.REMOVE))
        self.assertIs(next_state(ProfileState.REMOVING, ProfileEvent.RETAIN), ProfileState.RETAINED)

    def test_assign_from_anywhere(self) -> None:
        """
        A new version (or an assignment again) starts over from any state.
        """
        for state in (None, *ProfileState):
            self.assertIs(next_state(state, ProfileEvent.ASSIGN), ProfileState.PENDING)

    def test_illegal(self) -> None:
        """
        A move the table does not have is our bug, said so.
        """
        self.assertFalse(allows(ProfileState.VERIFIED, ProfileEvent.FAIL))
        with self.assertRaises(IllegalProfileMove) as caught:
            next_state(ProfileState.RETAINED, ProfileEvent.VERIFY)
        self.assertIn("retained", str(caught.exception))

    def test_every_state_reachable(self) -> None:
        """
        Every state is the target of some move.
        """
        self.assertEqual({s for s in TRANSITIONS.values() if s is not None}, set(ProfileState))
