"""
The state of one profile on one device: everything that affects it lives here.

It changes only through L{TRANSITIONS}, one table keyed by (state, event);
C{None} stands for "the device has no record of the profile"::

    (none), removing, retained ──ASSIGN──► pending       (a version to apply)
    any assigned state         ──ASSIGN──► pending       (a newer version, or a retry)
    pending  ──SEND────► sent                            (its first command went out)
    pending, sent, drifted ──APPLIED──► verifying        (every command succeeded; read-backs outstanding)
    pending, sent, verifying, drifted ──VERIFY──► verified  (every read-back matched)
    pending, sent, verifying, drifted ──FAIL──► failed   (a command failed, or a read-back differs)
    verified ──DRIFT──► drifted                          (a periodic read-back found another value)
    any assigned state ──UNASSIGN──► removing            (no longer desired: its reversal is sent)
    removing ──REMOVE──► (none)                          (everything undone: the record goes)
    removing ──RETAIN──► retained                        (done, but some settings stay on the device)

The assigned states are pending, sent, verifying, verified, failed and
drifted. Pure: records keep the plain string value of a L{ProfileState};
L{mdmd.desired.engine} applies the table.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "ProfileState",
    "ProfileEvent",
    "TRANSITIONS",
    "ASSIGNED",
    "COUNTED",
    "IllegalProfileMove",
    "allows",
    "next_state",
]


class ProfileState(enum.Enum):
    #: a version is to be applied; nothing of it has gone out yet
    PENDING = "pending"
    #: some of its commands went out, not every one has been answered
    SENT = "sent"
    #: every command succeeded; the values are being read back
    VERIFYING = "verifying"
    #: every value read back is the one the profile sets
    VERIFIED = "verified"
    #: the device refused a command, or a value read back differs (status and command kept)
    FAILED = "failed"
    #: a periodic read-back found another value: it is being applied again
    DRIFTED = "drifted"
    #: no longer desired: the reversal is on its way
    REMOVING = "removing"
    #: removed, but some settings stay on the device (a CSP that cannot revert, a Delete refused)
    RETAINED = "retained"


class ProfileEvent(enum.Enum):
    ASSIGN = "assign"
    SEND = "send"
    APPLIED = "applied"
    VERIFY = "verify"
    FAIL = "fail"
    DRIFT = "drift"
    UNASSIGN = "unassign"
    REMOVE = "remove"
    RETAIN = "retain"


_S = ProfileState
_E = ProfileEvent

#: The states of a profile the device is to have.
ASSIGNED: Final = frozenset({_S.PENDING, _S.SENT, _S.VERIFYING, _S.VERIFIED, _S.FAILED, _S.DRIFTED})
#: Every state a record can be in (what compliance counts).
COUNTED: Final = tuple(ProfileState)

TRANSITIONS: Final[dict[tuple[ProfileState | None, ProfileEvent], ProfileState | None]] = {
    **{(state, _E.ASSIGN): _S.PENDING for state in (None, *ASSIGNED, _S.REMOVING, _S.RETAINED)},
    (_S.PENDING, _E.SEND): _S.SENT,
    **{(state, _E.APPLIED): _S.VERIFYING for state in (_S.PENDING, _S.SENT, _S.DRIFTED)},
    **{(state, _E.VERIFY): _S.VERIFIED for state in (_S.PENDING, _S.SENT, _S.VERIFYING, _S.DRIFTED)},
    **{(state, _E.FAIL): _S.FAILED for state in (_S.PENDING, _S.SENT, _S.VERIFYING, _S.DRIFTED)},
    (_S.VERIFIED, _E.DRIFT): _S.DRIFTED,
    **{(state, _E.UNASSIGN): _S.REMOVING for state in ASSIGNED},
    (_S.REMOVING, _E.REMOVE): None,
    (_S.REMOVING, _E.RETAIN): _S.RETAINED,
}


class IllegalProfileMove(Exception):
    """
    A move the table forbids was asked for: our bug.
    """

    def __init__(self, state: ProfileState | None, event: ProfileEvent) -> None:
        super().__init__(f"a profile {state.value if state else 'without record'} cannot {event.value}")
        self.state = state
        self.event = event


def allows(state: ProfileState | None, event: ProfileEvent) -> bool:
    return (state, event) in TRANSITIONS


def next_state(state: ProfileState | None, event: ProfileEvent) -> ProfileState | None:
    """
    The state C{event} moves a profile in C{state} to (None: the record goes).

    @raise IllegalProfileMove: if the table has no such move.
    """
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalProfileMove(state, event) from None
