"""
The states of a queued DM command: everything that affects them lives here.

A command's state changes only through L{TRANSITIONS}, one table keyed by
(state, event)::

    queued ──SEND──► sent ──SUCCEED──► done
      │  ▲            │ │ └─ACCEPT──► accepted ──SUCCEED──► done
      │  └──REQUEUE───┘ │                 └──────FAIL─────► failed
      │                 ├──FAIL, GIVE_UP──► failed
      │                 ├──HALT──► halted          (214)
      │                 └──SKIP──► not-executed    (215)
      ├──FAIL──► failed      (it cannot be sent at all: too large for the device)
      └──CANCEL──► cancelled (an operator withdrew it)

    queued, sent, accepted ──DEVICE_LEFT──► cancelled (the device unenrolled)

A command sent in a session that ended without its answer is queued again
(REQUEUE), or given up (GIVE_UP) once it was sent
L{mdmd.dm.queue.MAX_ATTEMPTS} times. The device's status for a command
picks its event (L{answer_event}): 202 (accepted for processing) means the
device runs it on its own and, for the CSPs that do (see
L{mdmd.dm.completions}), reports the outcome later in an alert, which moves
it on; 214 (operation cancelled) that the device completed it and processes
no more of our commands in that session; 215 that it did not execute it.
A group the device answered member by member but not as a whole is
settled from its members' statuses (L{group_status}) rather than sent again.
Pure: the store's records keep the plain string value of a
L{CommandState}; L{mdmd.dm.queue} applies the table.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Final

from mdmd.syncml.codes import StatusCode

__all__ = [
    "CommandState",
    "CommandEvent",
    "TRANSITIONS",
    "PENDING",
    "FINISHED",
    "IN_FLIGHT",
    "IllegalCommandMove",
    "allows",
    "next_state",
    "answer_event",
    "answered_state",
    "group_status",
]


class CommandState(enum.Enum):
    #: waiting to be sent
    QUEUED = "queued"
    #: sent in a DM message, its answer not in yet
    SENT = "sent"
    #: the device answered 202: it runs it asynchronously; where its CSP
    #: reports the outcome in an alert, that alert finishes it
    ACCEPTED = "accepted"
    #: the device answered 2xx
    DONE = "done"
    #: the device answered with an error, or it could not be sent, or never got an answer
    FAILED = "failed"
    #: the device answered 214: it completed it, and processed no more of our
    #: commands in that session
    HALTED = "halted"
    #: the device answered 215: it did not execute it (the user declined, or an
    #: earlier member of its Sequence failed)
    NOT_EXECUTED = "not-executed"
    #: an operator withdrew it before it was sent, or the device unenrolled
    CANCELLED = "cancelled"


class CommandEvent(enum.Enum):
    #: it went out in a DM message
    SEND = "send"
    #: the device answered with a 2xx status (or its completion alert says it succeeded)
    SUCCEED = "succeed"
    #: the device answered 202: accepted for asynchronous processing
    ACCEPT = "accept"
    #: the device answered 214
    HALT = "halt"
    #: the device answered 215
    SKIP = "skip"
    #: the device answered with an error (or its completion alert does), or the
    #: command cannot be sent at all
    FAIL = "fail"
    #: its session ended without its answer: it goes out again
    REQUEUE = "requeue"
    #: its session ended without its answer, and it was sent too many times
    GIVE_UP = "give up"
    #: an operator withdraws it
    CANCEL = "cancel"
    #: the device unenrolled: nothing pending will be answered
    DEVICE_LEFT = "device left"


_S = CommandState
_E = CommandEvent

TRANSITIONS: dict[tuple[CommandState, CommandEvent], CommandState] = {
    (_S.QUEUED, _E.SEND): _S.SENT,
    (_S.QUEUED, _E.FAIL): _S.FAILED,
    (_S.QUEUED, _E.CANCEL): _S.CANCELLED,
    (_S.SENT, _E.SUCCEED): _S.DONE,
    (_S.SENT, _E.FAIL): _S.FAILED,
    (_S.SENT, _E.REQUEUE): _S.QUEUED,
    (_S.SENT, _E.GIVE_UP): _S.FAILED,
    (_S.SENT, _E.ACCEPT): _S.ACCEPTED,
    (_S.SENT, _E.HALT): _S.HALTED,
    (_S.SENT, _E.SKIP): _S.NOT_EXECUTED,
    (_S.ACCEPTED, _E.SUCCEED): _S.DONE,
    (_S.ACCEPTED, _E.FAIL): _S.FAILED,
    **{(state, _E.DEVICE_LEFT): _S.CANCELLED for state in (_S.QUEUED, _S.SENT, _S.ACCEPTED)},
}

#: States still waiting for the device (kept in the queue's pending index).
PENDING = frozenset({_S.QUEUED, _S.SENT, _S.ACCEPTED})
#: States nothing moves out of.
FINISHED = frozenset({_S.DONE, _S.FAILED, _S.HALTED, _S.NOT_EXECUTED, _S.CANCELLED})
#: States a session still has to send or to hear about (an accepted command
#: waits for the device's alert, in whatever session it comes).
IN_FLIGHT = frozenset({_S.QUEUED, _S.SENT})

#: The statuses that have an event of their own; other 2xx succeed, anything else fails.
_STATUS_EVENTS: Final[Mapping[int, CommandEvent]] = {
    StatusCode.ACCEPTED_FOR_PROCESSING: _E.ACCEPT,
    StatusCode.OPERATION_CANCELLED: _E.HALT,
    StatusCode.NOT_EXECUTED: _E.SKIP,
}


class IllegalCommandMove(Exception):
    """
    A move the table forbids was asked for: our bug.

    Where an operator can ask for one (cancelling a command that was sent),
    L{mdmd.dm.queue} checks first and answers with its own error.
    """

    def __init__(self, state: CommandState, event: CommandEvent) -> None:
        super().__init__(f"a {state.value} command cannot {event.value}")
        self.state = state
        self.event = event


def allows(state: CommandState, event: CommandEvent) -> bool:
    """
    Whether the table has a move for C{event} from C{state}.
    """
    return (state, event) in TRANSITIONS


def next_state(state: CommandState, event: CommandEvent) -> CommandState:
    """
    The state C{event} moves a command in C{state} to.

    @raise IllegalCommandMove: if the table has no such move.
    """
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalCommandMove(state, event) from None


def answer_event(status: int) -> CommandEvent:
    """
    The event of a sent command's final status from the device.
    """
    event = _STATUS_EVENTS.get(status)
    if event is not None:
        return event
    return _E.SUCCEED if 200 <= status < 300 else _E.FAIL


def answered_state(status: int) -> CommandState:
    """
    The state a sent command moves to when the device answers it with C{status}.
    """
    return next_state(_S.SENT, answer_event(status))


def group_status(member_statuses: Iterable[int]) -> int:
    """
    The status a group (Atomic, Sequence) is recorded with when the device
    answered each of its members but never the group itself (libdmclient
    sends no Status for an Atomic): its first member's that did not simply
    succeed, else 200.
    """
    for status in member_statuses:
        if answer_event(status) is not _E.SUCCEED:
            return status
    return int(StatusCode.OK)
