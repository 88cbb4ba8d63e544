"""
The states of a queued DM command: everything that affects them lives here.

A command's state changes only through L{TRANSITIONS}, one table keyed by
(state, event)::

    queued ──SEND──► sent ──SUCCEED──► done
      │  ▲            │ │
      │  └──REQUEUE───┘ └──FAIL, GIVE_UP──► failed
      ├──FAIL──► failed      (it cannot be sent at all: too large for the device)
      └──CANCEL──► cancelled (an operator withdrew it)

A command sent in a session that ended without its answer is queued again
(REQUEUE), or given up (GIVE_UP) once it was sent
L{mdmd.dm.queue.MAX_ATTEMPTS} times. Pure: the store's records keep the
plain string value of a L{CommandState}; L{mdmd.dm.queue} applies the table.
"""

from __future__ import annotations

import enum

__all__ = [
    "CommandState",
    "CommandEvent",
    "TRANSITIONS",
    "PENDING",
    "FINISHED",
    "IllegalCommandMove",
    "allows",
    "next_state",
]


class CommandState(enum.Enum):
    #: waiting to be sent
    QUEUED = "queued"
    #: sent in a DM message, its answer not in yet
    SENT = "sent"
    #: the device answered 2xx
    DONE = "done"
    #: the device answered with an error, or it could not be sent, or never got an answer
    FAILED = "failed"
    #: an operator withdrew it before it was sent
    CANCELLED = "cancelled"


class CommandEvent(enum.Enum):
    #: it went out in a DM message
    SEND = "send"
    #: the device answered with a 2xx status
    SUCCEED = "succeed"
    #: the device answered with an error, or the command cannot be sent at all
    FAIL = "fail"
    #: its session ended without its answer: it goes out again
    REQUEUE = "requeue"
    #: its session ended without its answer, and it was sent too many times
    GIVE_UP = "give up"
    #: an operator withdraws it
    CANCEL = "cancel"


TRANSITIONS: dict[tuple[CommandState, CommandEvent], CommandState] = {
    (CommandState.QUEUED, CommandEvent.SEND): CommandState.SENT,
    (CommandState.QUEUED, CommandEvent.FAIL): CommandState.FAILED,
    (CommandState.QUEUED, CommandEvent.CANCEL): CommandState.CANCELLED,
    (CommandState.SENT, CommandEvent.SUCCEED): CommandState.DONE,
    (CommandState.SENT, CommandEvent.FAIL): CommandState.FAILED,
    (CommandState.SENT, CommandEvent.REQUEUE): CommandState.QUEUED,
    (CommandState.SENT, CommandEvent.GIVE_UP): CommandState.FAILED,
}

#: States still waiting for the device (kept in the queue's pending index).
PENDING = frozenset({CommandState.QUEUED, CommandState.SENT})
#: States nothing moves out of.
FINISHED = frozenset({CommandState.DONE, CommandState.FAILED, CommandState.CANCELLED})


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
