"""
The OMA DM session's state machine: its states, its inputs, one transition table.

Everything that decides what a session may do next lives in L{SessionState}'s
machine fields, and they change only through L{advance}, by a row of
L{TRANSITIONS} keyed by (phase, input):

 - C{phase}: NEW → OPEN once a message authenticates; NEW → CHALLENGED
   while it does not; OPEN → ENDED when nothing is left, the device aborts,
   takes no more of our commands (214, unenrollment) or is out of step (it
   resends an answered MsgID with another body); any → ENDED after too many
   failed attempts. An ENDED session accepts nothing: it has no row for an
   accepted credential, an HMAC, chunks or a challenge, and every message
   that reaches it (but a package 1, which begins a new session) is out of
   step;
 - C{authentication}: who the device proved to be, and how: not yet, by a
   credential (MD5 or Basic, once per session, 212) or by HMAC (a MAC on
   every message, 200 each time);
 - C{server_credential}: whether our SyncHdr must carry our own credential
   (OMA DM Security: the server authenticates itself to the device). A
   session starts owing it where the device's kind says so (the engine's
   C{send_server_credential} setting) and otherwise once the device
   challenges us (401/407); it is owed until the device accepts it (212),
   after which no more is needed in that session;
 - C{package}: whether our package is open (Final withheld: our commands go
   on in our next message);
 - C{incoming}/C{outgoing}: a large object arriving from the device or going
   to it in chunks (see L{mdmd.dm.chunking}); the row says whether a transfer
   goes on or stops, the input carries the object where it goes on.

An input the table has no row for, in the current phase, is a bug in the
engine and raises L{IllegalTransition}. A message runs three kinds of input,
in this order: how it authenticated (one of the first five, or OUT_OF_STEP
instead, always), what its commands did (a device's challenge, chunks), how
our answer ends (OPEN only).

The rest of L{SessionState} is bookkeeping: message ids, deadlines, what we
sent and what the device said about it. The state is stored as plain
builtins (L{SessionState.to_dict}), pickled into C{DMSession.state} after
every message; L{SessionState.from_dict} also reads the dicts of the engine
before this table (version 1) and before server authentication (version 2),
so a session can span an upgrade. Our answer to the device's last message
is kept beside it (L{LastAnswer}), so that a resent message gets the same
answer again instead of being applied twice.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final, TypeAlias, TypeVar

from mdmd.dm.chunking import IncomingObject, OutgoingObject
from mdmd.syncml.model import Data, Item, Location, Meta

__all__ = [
    "Phase",
    "Authentication",
    "ServerCredential",
    "OurPackage",
    "Transfer",
    "SessionInput",
    "Step",
    "TRANSITIONS",
    "IllegalTransition",
    "advance",
    "SentRef",
    "Answer",
    "ResultValue",
    "SessionState",
    "STATE_VERSION",
    "LastAnswer",
]


class Phase(enum.Enum):
    NEW = "new"
    CHALLENGED = "challenged"
    OPEN = "open"
    ENDED = "ended"


class Authentication(enum.Enum):
    """
    Who the device has proved to be in this session, and how.
    """

    NONE = "none"
    #: An MD5 or Basic Cred was accepted (212): no more credentials this session.
    CREDENTIAL = "credential"
    #: An x-syncml-hmac MAC was accepted: every further message needs one.
    HMAC = "hmac"


class ServerCredential(enum.Enum):
    """
    Whether our SyncHdr must carry our own credential (w7 CLIENT level, DMAcc SRVCRED).
    """

    #: Not sent unless the device asks for it (401/407).
    NOT_ASKED = "not asked"
    #: Our credential goes in every SyncHdr of a message with commands, until the device accepts it.
    OWED = "owed"
    #: The device answered our SyncHdr 212: no more credential in this session.
    ACCEPTED = "accepted"


class OurPackage(enum.Enum):
    """
    Whether the server's package is still open.
    """

    #: Our last message carried Final, or asked for the device's next message.
    CLOSED = "closed"
    #: Final withheld: our commands go on in our next message.
    OPEN = "open"


class Transfer(enum.Enum):
    """
    A large object in one direction: none, or one going on in chunks.
    """

    IDLE = "idle"
    CHUNKING = "chunking"


class SessionInput(enum.Enum):
    """
    What happened, as far as the state machine is concerned.
    """

    # How the message authenticated: exactly one per message, first.
    CREDENTIAL_ACCEPTED = "credential accepted"  # MD5 or Basic Cred (212)
    HMAC_ACCEPTED = "hmac accepted"  # the message's x-syncml-hmac (200)
    ALREADY_AUTHENTICATED = "already authenticated"  # by a credential earlier (200)
    REFUSED = "refused"  # 401/407 with a challenge
    GIVE_UP = "give up"  # refused once too often (the device by us, or we by it): the session ends
    #: Instead of authenticating: a message the session cannot take, read by
    #: nobody (answered 403): it came after the session ended, or it resends
    #: the MsgID we answered last with another body (or one we cannot compare).
    OUT_OF_STEP = "out of step"
    # What the device's commands did.
    DEVICE_CHALLENGED = "device challenged"  # it answered our SyncHdr 401/407
    SERVER_ACCEPTED = "server accepted"  # it answered our SyncHdr 212: our credential holds
    CHUNK_RECEIVED = "chunk received"  # its large object goes on in its next message
    RECEIVING_STOPPED = "receiving stopped"  # ... is whole, broken, too large or cut off
    CHUNK_SENT = "chunk sent"  # our large object goes on in our next message
    SENDING_STOPPED = "sending stopped"  # ... had its last chunk sent, or cannot be sent
    # How our answer ends (an OPEN session's message only).
    ABORTED = "aborted"  # the device sent Alert 1223
    #: The device takes no more of our commands this session: it answered one
    #: 214 (operation cancelled) or it unenrolled (Alert 1226).
    NO_MORE_COMMANDS = "no more commands"
    PACKAGE_CONTINUES = "package continues"  # more of our commands follow: Final withheld
    CONTINUED = "continued"  # we wait for the device's next message
    DONE = "done"  # nothing left to send or to wait for


@dataclass(frozen=True)
class Step:
    """
    One row's outcome: the next phase, and the sub-states it sets (None: unchanged).
    """

    phase: Phase
    authentication: Authentication | None = None
    server_credential: ServerCredential | None = None
    package: OurPackage | None = None
    incoming: Transfer | None = None
    outgoing: Transfer | None = None


_P = Phase
_I = SessionInput
_CREDENTIAL = Authentication.CREDENTIAL
_HMAC = Authentication.HMAC
#: Leaving OPEN for good: our package closes, large objects both ways stop.
_DROPPED: Final = Step(
    _P.ENDED, package=OurPackage.CLOSED, incoming=Transfer.IDLE, outgoing=Transfer.IDLE
)

#: (phase, input) → the step. Anything missing is a bug in the engine.
TRANSITIONS: Final[Mapping[tuple[Phase, SessionInput], Step]] = {
    # -- how the message authenticated: first in every message
    (_P.NEW, _I.CREDENTIAL_ACCEPTED): Step(_P.OPEN, authentication=_CREDENTIAL),
    (_P.CHALLENGED, _I.CREDENTIAL_ACCEPTED): Step(_P.OPEN, authentication=_CREDENTIAL),
    (_P.NEW, _I.HMAC_ACCEPTED): Step(_P.OPEN, authentication=_HMAC),
    (_P.CHALLENGED, _I.HMAC_ACCEPTED): Step(_P.OPEN, authentication=_HMAC),
    (_P.OPEN, _I.HMAC_ACCEPTED): Step(_P.OPEN, authentication=_HMAC),
    (_P.OPEN, _I.ALREADY_AUTHENTICATED): Step(_P.OPEN),
    (_P.NEW, _I.REFUSED): Step(_P.CHALLENGED),
    (_P.CHALLENGED, _I.REFUSED): Step(_P.CHALLENGED),
    (_P.OPEN, _I.REFUSED): Step(_P.OPEN),  # a bad or missing MAC on one message
    (_P.ENDED, _I.REFUSED): Step(_P.ENDED),
    **{(phase, _I.GIVE_UP): _DROPPED for phase in Phase},
    # ... or the session cannot take the message at all
    (_P.OPEN, _I.OUT_OF_STEP): _DROPPED,
    (_P.ENDED, _I.OUT_OF_STEP): Step(_P.ENDED),
    # -- what the device's commands did (read in an OPEN session; once a
    # message gave up, only its statuses are read: the verdict on our SyncHdr)
    (_P.OPEN, _I.DEVICE_CHALLENGED): Step(_P.OPEN, server_credential=ServerCredential.OWED),
    **{
        (phase, _I.SERVER_ACCEPTED): Step(phase, server_credential=ServerCredential.ACCEPTED)
        for phase in (_P.OPEN, _P.ENDED)
    },
    (_P.OPEN, _I.CHUNK_RECEIVED): Step(_P.OPEN, incoming=Transfer.CHUNKING),
    (_P.OPEN, _I.RECEIVING_STOPPED): Step(_P.OPEN, incoming=Transfer.IDLE),
    (_P.OPEN, _I.CHUNK_SENT): Step(_P.OPEN, outgoing=Transfer.CHUNKING),
    (_P.OPEN, _I.SENDING_STOPPED): Step(_P.OPEN, outgoing=Transfer.IDLE),
    # -- how our answer ends
    (_P.OPEN, _I.ABORTED): Step(_P.ENDED, package=OurPackage.CLOSED),
    (_P.OPEN, _I.NO_MORE_COMMANDS): _DROPPED,
    (_P.OPEN, _I.PACKAGE_CONTINUES): Step(_P.OPEN, package=OurPackage.OPEN),
    (_P.OPEN, _I.CONTINUED): Step(_P.OPEN, package=OurPackage.CLOSED),
    (_P.OPEN, _I.DONE): Step(_P.ENDED, package=OurPackage.CLOSED),
}


class IllegalTransition(Exception):
    """
    The engine tried a move its table does not allow (our bug, never the device's).
    """


# -- the state ----------------------------------------------------------------------


@dataclass(frozen=True)
class SentRef:
    """
    A command (or part of one) we sent in this session, waiting for its status.
    """

    msg_id: str
    cmd_id: str
    seq: int
    path: str  # "" for the command itself, "1", "2.1"... for group members
    verb: str
    chunk: bool = False  # a non-final chunk of a large object (answered 213)


#: One item of Results as the queue keeps it: source, format, type, data (and encoding).
ResultValue: TypeAlias = dict[str, str | None]


@dataclass(frozen=True)
class Answer:
    """
    What the device has said so far about one of our commands.
    """

    statuses: tuple[tuple[str, int], ...] = ()
    results: tuple[ResultValue, ...] = ()


#: The format L{SessionState.to_dict} writes. Version 1 (no "version" key) kept
#: the machine as booleans: authenticated, hmac, send_server_cred, server_package_open.
#: Version 2 had no ACCEPTED server credential and no server_nonce,
#: server_cred_sent, server_refusals (their defaults hold for it).
STATE_VERSION: Final = 3


@dataclass(frozen=True, kw_only=True)
class SessionState:
    """
    Everything about a session between two messages (kept in the store).

    C{phase} to C{outgoing} are the machine: change them only with L{advance}.
    """

    key: str
    session_id: str
    started_at: float
    deadline: float
    phase: Phase = Phase.NEW
    authentication: Authentication = Authentication.NONE
    server_credential: ServerCredential = ServerCredential.NOT_ASKED
    package: OurPackage = OurPackage.CLOSED
    incoming: IncomingObject | None = None
    outgoing: OutgoingObject | None = None
    next_msg_id: int = 1
    auth_failures: int = 0
    max_msg_size: int | None = None
    max_obj_size: int | None = None
    user_logged_in: bool = False
    sent: tuple[SentRef, ...] = ()
    answers: tuple[tuple[int, Answer], ...] = ()
    last_client_msg_id: str | None = None
    #: The nonce our credential uses for the rest of this session, once the
    #: device gave a new one with a 2xx (that one is for its next session);
    #: None: the device record's nonce.
    server_nonce: bytes | None = None
    #: Whether our last message carried our credential (so a 401/407 refused it).
    server_cred_sent: bool = False
    #: How often the device refused our credential in this session.
    server_refusals: int = 0

    def evolve(self, **changes: Any) -> SessionState:
        """
        A copy with C{changes}: C{dataclasses.replace}, without running the
        generated C{__init__} (22 frozen fields, a dozen copies a message:
        a measurable part of the engine's time).

        @raise TypeError: for a name that is not a field.
        """
        unknown = changes.keys() - _FIELD_NAMES
        if unknown:
            raise TypeError(f"SessionState has no field {', '.join(sorted(unknown))}")
        copy = object.__new__(type(self))
        fields = copy.__dict__
        fields.update(self.__dict__)
        fields.update(changes)
        return copy

    @classmethod
    def start(
        cls,
        session_id: str,
        now: float,
        timeout: float,
        server_credential: ServerCredential = ServerCredential.NOT_ASKED,
    ) -> SessionState:
        """
        A new session: its key tells it apart from an earlier one with the same SessionID.

        @param server_credential: OWED where our credential goes in the first
            reply unasked (the device's kind says so), else NOT_ASKED.
        """
        return cls(
            key=f"{session_id}@{now:.6f}",
            session_id=session_id,
            started_at=now,
            deadline=now + timeout,
            server_credential=server_credential,
        )

    def to_dict(self) -> dict[str, Any]:
        """
        Plain builtins only (pickled by the store without naming our classes).
        """
        return {
            "version": STATE_VERSION,
            "key": self.key,
            "session_id": self.session_id,
            "started_at": self.started_at,
            "deadline": self.deadline,
            "phase": self.phase.value,
            "authentication": self.authentication.value,
            "server_credential": self.server_credential.value,
            "package": self.package.value,
            "incoming": None if self.incoming is None else _incoming_to_plain(self.incoming),
            "outgoing": None if self.outgoing is None else (self.outgoing.seq, self.outgoing.offset),
            "next_msg_id": self.next_msg_id,
            "auth_failures": self.auth_failures,
            "max_msg_size": self.max_msg_size,
            "max_obj_size": self.max_obj_size,
            "user_logged_in": self.user_logged_in,
            "sent": [(s.msg_id, s.cmd_id, s.seq, s.path, s.verb, s.chunk) for s in self.sent],
            "answers": [(seq, a.statuses, a.results) for seq, a in self.answers],
            "last_client_msg_id": self.last_client_msg_id,
            "server_nonce": self.server_nonce,
            "server_cred_sent": self.server_cred_sent,
            "server_refusals": self.server_refusals,
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> SessionState:
        """
        The state L{to_dict} wrote, in this format or an earlier one.

        @raise ValueError: for a format newer than this code.
        """
        version = value.get("version", 1)
        if version == 1:
            value = _from_version_1(value)
        elif version not in (2, STATE_VERSION):
            raise ValueError(f"session state version {version} is newer than this code ({STATE_VERSION})")
        return cls(
            key=value["key"],
            session_id=value["session_id"],
            started_at=value["started_at"],
            deadline=value["deadline"],
            phase=Phase(value["phase"]),
            authentication=Authentication(value["authentication"]),
            server_credential=ServerCredential(value["server_credential"]),
            package=OurPackage(value["package"]),
            incoming=None if value["incoming"] is None else _incoming_from_plain(value["incoming"]),
            outgoing=None if value["outgoing"] is None else OutgoingObject(*value["outgoing"]),
            next_msg_id=value["next_msg_id"],
            auth_failures=value["auth_failures"],
            max_msg_size=value["max_msg_size"],
            max_obj_size=value["max_obj_size"],
            user_logged_in=value["user_logged_in"],
            sent=tuple(SentRef(*s) for s in value["sent"]),
            answers=tuple(
                (seq, Answer(tuple((path, code) for path, code in statuses), tuple(results)))
                for seq, statuses, results in value["answers"]
            ),
            last_client_msg_id=value["last_client_msg_id"],
            # new in version 3
            server_nonce=value.get("server_nonce"),
            server_cred_sent=value.get("server_cred_sent", False),
            server_refusals=value.get("server_refusals", 0),
        )


@dataclass(frozen=True)
class LastAnswer:
    """
    Our answer to the device's last message of a session, kept so that a resend gets it again.

    A device that lost our answer sends its message again (same SessionID,
    MsgID and bytes): it must get the very same answer, and nothing of that
    message may be applied twice (a chunk sent or appended twice breaks the
    object). Only the last answer is kept (at most the device's MaxMsgSize),
    beside the session state, and only while the session can go on.
    """

    #: The session (L{SessionState.key}) and the device's MsgID it answers.
    key: str
    msg_id: str
    #: SHA-256 of the device's message as received (its x-syncml-hmac header and body).
    digest: bytes
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def digest_of(body: bytes, hmac_header: str | bytes | None = None) -> bytes:
        """
        What tells a resend: the body, and the MAC header that vouches for it (if any).
        """
        mac = hmac_header.encode("latin-1") if isinstance(hmac_header, str) else (hmac_header or b"")
        return hashlib.sha256(len(mac).to_bytes(4, "big") + mac + body).digest()

    def answers(self, state: SessionState, msg_id: str, body: bytes, hmac_header: str | bytes | None = None) -> bool:
        """
        Whether a message with C{msg_id}, C{body} and C{hmac_header}, in C{state}, is the one this answered.
        """
        return (
            self.key == state.key
            and self.msg_id == msg_id
            and self.digest == self.digest_of(body, hmac_header)
        )

    def to_dict(self) -> dict[str, Any]:
        """
        Plain builtins only, like L{SessionState.to_dict}.
        """
        return {
            "key": self.key,
            "msg_id": self.msg_id,
            "digest": self.digest,
            "body": self.body,
            "headers": [list(h) for h in self.headers],
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> LastAnswer:
        return cls(
            key=value["key"],
            msg_id=value["msg_id"],
            digest=value["digest"],
            body=value["body"],
            headers=tuple((name, text) for name, text in value["headers"]),
        )


_FIELD_NAMES: Final = frozenset(field.name for field in fields(SessionState))


def _from_version_1(value: Mapping[str, Any]) -> dict[str, Any]:
    """
    A version-1 dict in today's shape: its booleans become the machine's sub-states.
    """
    if value["hmac"]:
        authentication = Authentication.HMAC
    elif value["authenticated"]:
        authentication = Authentication.CREDENTIAL
    else:
        authentication = Authentication.NONE
    upgraded = {k: v for k, v in value.items() if k not in _VERSION_1_ONLY}
    upgraded.update(
        authentication=authentication.value,
        server_credential=(
            ServerCredential.OWED if value["send_server_cred"] else ServerCredential.NOT_ASKED
        ).value,
        # Older version-1 dicts did not have it: the package was never left open.
        package=(OurPackage.OPEN if value.get("server_package_open", False) else OurPackage.CLOSED).value,
    )
    return upgraded


_VERSION_1_ONLY: Final = frozenset({"authenticated", "hmac", "send_server_cred", "server_package_open"})

_PlainChunk: TypeAlias = tuple[str | None, str | None, str | None, int | None, Data | None, bool]


def _incoming_to_plain(incoming: IncomingObject) -> tuple[Any, ...]:
    chunks: list[_PlainChunk] = [
        (
            c.source.loc_uri if c.source else None,
            c.meta.format if c.meta else None,
            c.meta.type if c.meta else None,
            c.meta.size if c.meta else None,
            c.data,
            c.more_data,
        )
        for c in incoming.chunks
    ]
    return (incoming.command, incoming.msg_ref, incoming.cmd_ref, incoming.source, chunks)


def _incoming_from_plain(value: tuple[Any, ...]) -> IncomingObject:
    command, msg_ref, cmd_ref, source, chunks = value
    items = tuple(
        Item(
            source=Location(loc_uri=uri) if uri is not None else None,
            meta=Meta(format=fmt, type=mime, size=size) if (fmt or mime or size is not None) else None,
            data=data,
            more_data=more,
        )
        for uri, fmt, mime, size, data, more in chunks
    )
    return IncomingObject(command, msg_ref, cmd_ref, source, items)


# -- moving ---------------------------------------------------------------------------


def advance(
    state: SessionState,
    input: SessionInput,
    *,
    incoming: IncomingObject | None = None,
    outgoing: OutgoingObject | None = None,
) -> SessionState:
    """
    C{state} after C{input}, by its row in L{TRANSITIONS}.

    @param incoming: the object arriving, for an input whose row starts or
        continues receiving one (and only then).
    @param outgoing: likewise for an object we send.
    @raise IllegalTransition: if the table has no row for (C{state.phase},
        C{input}), or the objects given do not match the row.
    """
    step = TRANSITIONS.get((state.phase, input))
    if step is None:
        raise IllegalTransition(f"{input.value} is not allowed while {state.phase.value}")
    return state.evolve(
        phase=step.phase,
        authentication=_kept(step.authentication, state.authentication),
        server_credential=_kept(step.server_credential, state.server_credential),
        package=_kept(step.package, state.package),
        incoming=_carried(step.incoming, incoming, state.incoming, input),
        outgoing=_carried(step.outgoing, outgoing, state.outgoing, input),
    )


_E = TypeVar("_E", Authentication, ServerCredential, OurPackage)
_O = TypeVar("_O", IncomingObject, OutgoingObject)


def _kept(new: _E | None, current: _E) -> _E:
    return current if new is None else new


def _carried(transfer: Transfer | None, given: _O | None, current: _O | None, input: SessionInput) -> _O | None:
    """
    The object after a step: the one given where the transfer goes on, none where it stops.
    """
    if transfer is Transfer.CHUNKING:
        if given is None:
            raise IllegalTransition(f"{input.value} needs the object it carries on")
        return given
    if given is not None:
        raise IllegalTransition(f"{input.value} carries no object")
    return None if transfer is Transfer.IDLE else current
