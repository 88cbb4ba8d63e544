"""
The OMA DM 1.2 session engine: one client message in, one server message out.

Sans-IO, in the h11 manner: L{handle} takes the decoded client message, the
device's credentials, the session state and the device's pending commands,
all plain values, and returns the answer, the new session state and a list
of effects (commands sent, answered, DevInfo reported, nonce rotated, ...)
for the adapter to apply in the same store transaction. It reads no clock
(C{now} is passed in) and no randomness but the C{random} it is given.

The session's phase changes only through L{TRANSITIONS}, one table:

    NEW --authenticated--> OPEN --nothing left--> ENDED
    NEW --refused--> CHALLENGED --authenticated--> OPEN
    OPEN --Alert 1223--> ENDED

What a message may do in each phase follows from it: commands go out only
in OPEN; an unauthenticated message only gets its statuses (401/407 with a
challenge); a message arriving in ENDED with the same SessionID is answered
with statuses and Final.
"""

from __future__ import annotations

import base64
import enum
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import astuple, dataclass, field, replace
from typing import Any

from mdmd.dm.commands import CommandSpec, sendable
from mdmd.syncml import auth
from mdmd.syncml.codec import ChunkError, Codec, data_size, next_chunk, reassemble
from mdmd.syncml.codes import AlertCode, StatusCode
from mdmd.syncml.model import (
    Add,
    Alert,
    Atomic,
    Chal,
    Command,
    Copy,
    Cred,
    Delete,
    Exec,
    Get,
    Item,
    Location,
    Meta,
    Replace,
    Results,
    Sequence as SequenceCommand,
    Status,
    SyncHdr,
    SyncML,
    UnknownElement,
    data_text,
)

__all__ = [
    "Phase",
    "TRANSITIONS",
    "Credentials",
    "DeviceAuth",
    "Settings",
    "PendingCommand",
    "SessionState",
    "Outcome",
    "handle",
    "starts_new_session",
    "NewSession",
    "ClientNonce",
    "ServerNonce",
    "DevInfoReported",
    "LoginStatus",
    "GenericAlert",
    "Unenrolled",
    "SessionAborted",
    "CommandSent",
    "CommandAnswered",
    "CommandFailed",
    "HeaderRefused",
    "ServerInitiated",
    "UNENROLL_ALERT",
    "LOGIN_STATUS",
]

UNENROLL_ALERT = "com.microsoft:mdm.unenrollment.userrequest"
LOGIN_STATUS = "com.microsoft/MDM/LoginStatus"
SYNC_TYPE = "com.microsoft.mdm.synctype"

_VERBS: dict[str, type] = {
    "Get": Get,
    "Add": Add,
    "Replace": Replace,
    "Delete": Delete,
    "Exec": Exec,
    "Copy": Copy,
}


# --- the phase table ---------------------------------------------------------------


class Phase(enum.Enum):
    NEW = "new"
    CHALLENGED = "challenged"
    OPEN = "open"
    ENDED = "ended"


class Event(enum.Enum):
    AUTHENTICATED = "authenticated"
    REFUSED = "refused"
    GIVE_UP = "give up"  # too many failed attempts
    CONTINUED = "continued"  # an authenticated message, more to come
    DONE = "done"  # nothing left to send or to wait for
    ABORTED = "aborted"  # Alert 1223


TRANSITIONS: dict[tuple[Phase, Event], Phase] = {
    (Phase.NEW, Event.AUTHENTICATED): Phase.OPEN,
    (Phase.NEW, Event.REFUSED): Phase.CHALLENGED,
    (Phase.NEW, Event.GIVE_UP): Phase.ENDED,
    (Phase.CHALLENGED, Event.AUTHENTICATED): Phase.OPEN,
    (Phase.CHALLENGED, Event.REFUSED): Phase.CHALLENGED,
    (Phase.CHALLENGED, Event.GIVE_UP): Phase.ENDED,
    (Phase.OPEN, Event.CONTINUED): Phase.OPEN,
    (Phase.OPEN, Event.DONE): Phase.ENDED,
    (Phase.OPEN, Event.ABORTED): Phase.ENDED,
    (Phase.OPEN, Event.REFUSED): Phase.OPEN,  # a bad HMAC on one message
    (Phase.OPEN, Event.GIVE_UP): Phase.ENDED,
    (Phase.ENDED, Event.DONE): Phase.ENDED,
}


def _advance(phase: Phase, event: Event) -> Phase:
    try:
        return TRANSITIONS[(phase, event)]
    except KeyError:
        raise AssertionError(f"no transition from {phase} on {event}") from None


# --- inputs --------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """
    One direction's DM credentials; C{nonce} is the one the verifier expects next.
    """

    name: str
    secret: str
    nonce: bytes


@dataclass(frozen=True)
class DeviceAuth:
    """
    What the engine knows of the device: its id and both credentials from enrollment.

    C{client} (w7 APPAUTH level APPSRV) is how the device authenticates to us;
    C{server} (level CLIENT) is how we authenticate to the device. C{scheme}
    is the APPSRV AAUTHTYPE: C{digest} or C{basic}.
    """

    device_id: str
    client: Credentials
    server: Credentials
    scheme: str = "digest"


@dataclass(frozen=True)
class Settings:
    session_timeout: float = 1800.0
    #: Used when the device announces no MaxMsgSize (Intune uses the same).
    default_max_msg_size: int = 524288
    #: The largest object we accept from a device (announced in our SyncHdr Meta).
    max_obj_size: int = 4 * 1024 * 1024
    max_auth_failures: int = 3


@dataclass(frozen=True)
class PendingCommand:
    """
    A queued or sent command as the engine sees it.
    """

    seq: int
    spec: CommandSpec
    state: str  # queued | sent

    @property
    def scope(self) -> str:
        return self.spec.scope


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


@dataclass(frozen=True)
class Answer:
    """
    What the device has said so far about one of our commands.
    """

    statuses: tuple[tuple[str, int], ...] = ()
    results: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class OutgoingObject:
    """
    A large object we are sending in chunks: the command and how far we got.
    """

    seq: int
    offset: int


@dataclass(frozen=True)
class Incoming:
    """
    Chunks of a large object the device is sending us.
    """

    command: str  # "Results" or "Replace"
    msg_ref: str | None
    cmd_ref: str | None
    source: str | None
    chunks: tuple[Item, ...]


@dataclass(frozen=True)
class SessionState:
    """
    Everything about a session between two messages (kept in the store).
    """

    key: str
    session_id: str
    phase: Phase
    started_at: float
    deadline: float
    next_msg_id: int = 1
    auth_failures: int = 0
    authenticated: bool = False
    hmac: bool = False
    max_msg_size: int | None = None
    max_obj_size: int | None = None
    user_logged_in: bool = False
    sent: tuple[SentRef, ...] = ()
    answers: tuple[tuple[int, Answer], ...] = ()
    outgoing: OutgoingObject | None = None
    incoming: Incoming | None = None
    send_server_cred: bool = False
    last_client_msg_id: str | None = None
    #: We withheld Final: our package continues in the next message.
    server_package_open: bool = False

    def to_dict(self) -> dict[str, Any]:
        """
        Plain builtins only (pickled by the store without naming our classes).
        """
        return {
            "key": self.key,
            "session_id": self.session_id,
            "phase": self.phase.value,
            "started_at": self.started_at,
            "deadline": self.deadline,
            "next_msg_id": self.next_msg_id,
            "auth_failures": self.auth_failures,
            "authenticated": self.authenticated,
            "hmac": self.hmac,
            "max_msg_size": self.max_msg_size,
            "max_obj_size": self.max_obj_size,
            "user_logged_in": self.user_logged_in,
            "sent": [astuple(s) for s in self.sent],
            "answers": [(seq, a.statuses, a.results) for seq, a in self.answers],
            "outgoing": None if self.outgoing is None else (self.outgoing.seq, self.outgoing.offset),
            "incoming": None if self.incoming is None else _incoming_to_plain(self.incoming),
            "send_server_cred": self.send_server_cred,
            "last_client_msg_id": self.last_client_msg_id,
            "server_package_open": self.server_package_open,
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> SessionState:
        return cls(
            key=value["key"],
            session_id=value["session_id"],
            phase=Phase(value["phase"]),
            started_at=value["started_at"],
            deadline=value["deadline"],
            next_msg_id=value["next_msg_id"],
            auth_failures=value["auth_failures"],
            authenticated=value["authenticated"],
            hmac=value["hmac"],
            max_msg_size=value["max_msg_size"],
            max_obj_size=value["max_obj_size"],
            user_logged_in=value["user_logged_in"],
            sent=tuple(SentRef(*s) for s in value["sent"]),
            answers=tuple((seq, Answer(tuple(map(tuple, st)), tuple(r))) for seq, st, r in value["answers"]),  # type: ignore[misc]
            outgoing=None if value["outgoing"] is None else OutgoingObject(*value["outgoing"]),
            incoming=None if value["incoming"] is None else _incoming_from_plain(value["incoming"]),
            send_server_cred=value["send_server_cred"],
            last_client_msg_id=value["last_client_msg_id"],
            server_package_open=value.get("server_package_open", False),
        )


def _incoming_to_plain(incoming: Incoming) -> tuple[Any, ...]:
    chunks = [
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


def _incoming_from_plain(value: tuple[Any, ...]) -> Incoming:
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
    return Incoming(command, msg_ref, cmd_ref, source, items)


# --- outputs --------------------------------------------------------------------------


@dataclass(frozen=True)
class NewSession:
    """
    A new session began: commands sent in an earlier one go back in the queue.
    """

    key: str
    session_id: str


@dataclass(frozen=True)
class ClientNonce:
    """
    The nonce the device must use in its next credentials (store it).
    """

    nonce: bytes


@dataclass(frozen=True)
class ServerNonce:
    """
    The device challenged us: the nonce for our credentials from now on.
    """

    nonce: bytes


@dataclass(frozen=True)
class DevInfoReported:
    values: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class LoginStatus:
    value: str  # user | others | none


@dataclass(frozen=True)
class GenericAlert:
    type: str | None
    format: str | None
    mark: str | None
    source: str | None
    data: str | None
    correlator: str | None


@dataclass(frozen=True)
class Unenrolled:
    """
    The user removed the work account on the device (Alert 1226 unenrollment).
    """


@dataclass(frozen=True)
class SessionAborted:
    """
    The device aborted the session (Alert 1223).
    """


@dataclass(frozen=True)
class ServerInitiated:
    """
    The session answers a notification (Alert 1200 with this SessionID).
    """

    session_id: str


@dataclass(frozen=True)
class HeaderRefused:
    """
    The device answered our SyncHdr with an error (Windows sends 500 when it dislikes something).
    """

    code: int


@dataclass(frozen=True)
class CommandSent:
    seq: int
    session_key: str
    msg_id: str
    cmd_id: str


@dataclass(frozen=True)
class CommandAnswered:
    """
    The device's verdict on a command: C{done} when its status is 2xx, else C{failed}.
    """

    seq: int
    state: str
    status: int
    statuses: tuple[tuple[str, int], ...]
    results: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class CommandFailed:
    """
    We could not send a command at all (too large for the device).
    """

    seq: int
    error: str


Effect = Any


@dataclass(frozen=True)
class Outcome:
    response: SyncML
    body: bytes  # the response, encoded with the request's codec
    state: SessionState
    effects: tuple[Effect, ...]
    #: Extra HTTP headers (x-syncml-hmac when the session uses HMAC).
    headers: tuple[tuple[str, str], ...] = ()


# --- the engine ----------------------------------------------------------------------


class _Ids:
    """
    CmdIDs of the message being built: 1, 2, 3...
    """

    def __init__(self) -> None:
        self._next = 1

    def __call__(self) -> str:
        value = str(self._next)
        self._next += 1
        return value


@dataclass
class _Work:
    """
    The mutable scratchpad of one L{handle} call.
    """

    state: SessionState
    device: DeviceAuth
    message: SyncML
    codec: Codec
    settings: Settings
    now: float
    random: Callable[[int], bytes]
    ids: _Ids = field(default_factory=_Ids)
    statuses: list[Command] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    answers: dict[int, Answer] = field(default_factory=dict)
    touched: set[int] = field(default_factory=set)
    sent: list[SentRef] = field(default_factory=list)
    ask_next_message: bool = False
    aborted: bool = False
    header_chal: Chal | None = None

    @property
    def client_msg_id(self) -> str:
        return self.message.header.msg_id

    def status(
        self,
        command: Command,
        code: int,
        *,
        target_refs: tuple[str, ...] = (),
        source_refs: tuple[str, ...] = (),
        items: tuple[Item, ...] = (),
    ) -> None:
        self.statuses.append(
            Status(
                cmd_id=self.ids(),
                msg_ref=self.client_msg_id,
                cmd_ref=command.cmd_id or "",
                cmd=command.name,
                target_refs=target_refs,
                source_refs=source_refs,
                data=str(int(code)),
                items=items,
            )
        )


def handle(
    message: SyncML,
    codec: Codec,
    *,
    device: DeviceAuth,
    state: SessionState | None,
    commands: Sequence[PendingCommand],
    now: float,
    settings: Settings = Settings(),
    body: bytes = b"",
    hmac_header: str | bytes | None = None,
    random: Callable[[int], bytes] = os.urandom,
) -> Outcome:
    """
    Answer one client message of a DM session.

    C{body} and C{hmac_header} matter only when the device uses HMAC
    (C{x-syncml-hmac}); C{commands} are the device's pending commands in
    sequence order (queued or sent), so the engine can keep their order.
    """
    header = message.header
    effects: list[Effect] = []
    if starts_new_session(message, state, now):
        state = SessionState(
            key=f"{header.session_id}@{now:.6f}",
            session_id=header.session_id,
            phase=Phase.NEW,
            started_at=now,
            deadline=now + settings.session_timeout,
        )
        effects.append(NewSession(state.key, header.session_id))

    meta = header.meta
    if meta is not None:
        state = replace(
            state,
            max_msg_size=meta.max_msg_size or state.max_msg_size,
            max_obj_size=meta.max_obj_size or state.max_obj_size,
        )
    work = _Work(state, device, message, codec, settings, now, random, effects=effects)
    work.answers = dict(state.answers)

    header_code, event = _authenticate(work, hmac_header, body)
    work.statuses.append(
        Status(
            cmd_id=work.ids(),
            msg_ref=header.msg_id,
            cmd_ref="0",
            cmd="SyncHdr",
            target_refs=(header.target.loc_uri,),
            source_refs=(header.source.loc_uri,),
            chal=work.header_chal,
            data=str(int(header_code)),
        )
    )
    authenticated = header_code in (StatusCode.OK, StatusCode.AUTHENTICATION_ACCEPTED)
    if authenticated:
        for command in message.body:
            _process(work, command)
    else:
        for command in message.body:
            if not isinstance(command, Status):
                work.status(command, header_code)

    if state.phase is Phase.ENDED:
        phase = _advance(Phase.ENDED, Event.DONE)
    else:
        phase = _advance(state.phase, event)
    _complete_answers(work)

    final = True
    if phase is Phase.OPEN and work.aborted:
        phase = _advance(phase, Event.ABORTED)
        effects.append(SessionAborted())
    elif phase is Phase.OPEN:
        final = _send_commands(work, commands)
        waiting = bool(work.sent) or work.state.outgoing is not None
        more = work.commands or waiting or not final or not message.final
        phase = _advance(phase, Event.CONTINUED if more else Event.DONE)

    if work.ask_next_message and not work.commands:
        # The device has more of its package (or of a large object) to send.
        work.statuses.append(Alert(cmd_id=work.ids(), data=str(int(AlertCode.NEXT_MESSAGE))))
        final = False

    response = SyncML(
        header=_response_header(work, authenticated),
        body=tuple(work.statuses + work.commands),
        final=final,
    )
    encoded = codec.encode(response)
    new_state = replace(
        work.state,
        phase=phase,
        next_msg_id=state.next_msg_id + 1,
        deadline=now + settings.session_timeout,
        answers=tuple(sorted(work.answers.items())),
        last_client_msg_id=header.msg_id,
        server_package_open=phase is Phase.OPEN and not final and not work.ask_next_message,
    )
    headers: tuple[tuple[str, str], ...] = ()
    if new_state.hmac:
        mac = auth.hmac_mac(
            device.server.name, device.server.nonce, encoded, password=device.server.secret
        )
        headers = (("x-syncml-hmac", auth.format_hmac_header(device.server.name, mac)),)
    return Outcome(response, encoded, new_state, tuple(work.effects), headers)


def starts_new_session(message: SyncML, state: SessionState | None, now: float) -> bool:
    """
    Whether C{message} begins a new session rather than continuing C{state}.

    The adapter asks first: commands sent in the previous session and never
    answered go back in the queue before the new session picks commands.
    A package 1 repeated after a challenge continues its session (OMA DM:
    the client resends package 1 with credentials under the same SessionID).
    """
    return (
        state is None
        or state.session_id != message.header.session_id
        or state.deadline < now
        or (state.phase in (Phase.OPEN, Phase.ENDED) and _is_package1(message))
    )


def _is_package1(message: SyncML) -> bool:
    return any(
        isinstance(c, Alert) and c.data in ("1200", "1201") for c in message.body
    )


# --- authentication -----------------------------------------------------------------------


def _challenge(work: _Work, scheme: str) -> Chal:
    if scheme == "basic":
        return Chal(meta=Meta(type=auth.AUTH_BASIC, format="b64"))
    nonce = auth.new_nonce(work.random)
    work.effects.append(ClientNonce(nonce))
    return Chal(
        meta=Meta(
            type=auth.AUTH_MAC if scheme == "hmac" else auth.AUTH_MD5,
            format="b64",
            next_nonce=auth.encode_nonce(nonce),
        )
    )


def _authenticate(work: _Work, hmac_header: str | bytes | None, body: bytes) -> tuple[StatusCode, Event]:
    """
    The SyncHdr status and the phase event, per OMA DM Security and MS-MDM.

    A successful MD5 check answers 212 with a fresh NextNonce (for the next
    session: the old nonce stops working at once); HMAC answers 200 with a
    fresh nonce on every message; a failure answers 401 (bad) or 407
    (missing) with a challenge, inside HTTP 200.
    """
    state, device = work.state, work.device
    client = device.client
    if hmac_header is not None:
        try:
            parsed = auth.parse_hmac_header(hmac_header)
            ok = parsed.username == client.name and auth.verify_hmac(
                parsed, client.nonce, body, password=client.secret
            )
        except auth.AuthError:
            ok = False
        if ok:
            work.state = replace(state, authenticated=True, hmac=True)
            work.header_chal = _challenge(work, "hmac")
            return StatusCode.OK, Event.AUTHENTICATED if state.phase is not Phase.OPEN else Event.CONTINUED
        return _refuse(work, StatusCode.INVALID_CREDENTIALS, "hmac")
    if state.hmac:
        return _refuse(work, StatusCode.MISSING_CREDENTIALS, "hmac")
    if state.authenticated:
        return StatusCode.OK, Event.CONTINUED
    cred = work.message.header.cred
    if cred is None:
        return _refuse(work, StatusCode.MISSING_CREDENTIALS, device.scheme)
    cred_type = cred.meta.type if cred.meta is not None else None
    try:
        if cred_type == auth.AUTH_MD5 and device.scheme == "digest":
            name = work.message.header.source.loc_name
            ok = (name is None or name == client.name) and auth.verify_md5(
                cred.data, client.name, client.nonce, password=client.secret
            )
        elif cred_type == auth.AUTH_BASIC and device.scheme == "basic":
            ok = auth.verify_basic(cred.data, client.name, client.secret)
        else:
            ok = False
    except auth.AuthError:
        ok = False
    if not ok:
        return _refuse(work, StatusCode.INVALID_CREDENTIALS, device.scheme)
    work.state = replace(state, authenticated=True, auth_failures=0)
    work.header_chal = _challenge(work, device.scheme) if device.scheme == "digest" else None
    return StatusCode.AUTHENTICATION_ACCEPTED, Event.AUTHENTICATED


def _refuse(work: _Work, code: StatusCode, scheme: str) -> tuple[StatusCode, Event]:
    failures = work.state.auth_failures + 1
    work.state = replace(work.state, auth_failures=failures)
    if failures > work.settings.max_auth_failures:
        return code, Event.GIVE_UP
    work.header_chal = _challenge(work, scheme)
    return code, Event.REFUSED


def _server_cred(work: _Work) -> Cred | None:
    """
    Our credentials for the device, once it has asked for them (CLIENT level, MD5).
    """
    if not work.state.send_server_cred:
        return None
    server = work.device.server
    return Cred(
        meta=Meta(type=auth.AUTH_MD5, format="b64"),
        data=auth.md5_cred_data(server.name, server.nonce, password=server.secret),
    )


# --- the client's commands -------------------------------------------------------------------


def _process(work: _Work, command: Command) -> None:
    if command.cmd_id is None:
        # MS-MDM: a command without CmdID gets 400 with an empty CmdRef.
        work.status(command, StatusCode.BAD_REQUEST)
        return
    if isinstance(command, Status):
        _client_status(work, command)
    elif isinstance(command, Results):
        _client_results(work, command)
    elif isinstance(command, Alert):
        _client_alert(work, command)
    elif isinstance(command, Replace):
        _client_replace(work, command)
    elif isinstance(command, Atomic):
        _client_atomic(work, command, nested=False)
    elif isinstance(command, SequenceCommand):
        work.status(command, StatusCode.OK)
        for child in command.commands:
            _process(work, child)
    elif isinstance(command, UnknownElement):
        work.status(command, StatusCode.BAD_REQUEST)
    else:
        # Add, Delete, Exec, Get, Copy from a device: a DM server has no tree to act on.
        work.status(command, StatusCode.OPTIONAL_FEATURE_NOT_SUPPORTED)


def _client_atomic(work: _Work, command: Atomic, nested: bool) -> None:
    """
    Windows' rules: a nested Atomic gets 500 and its parent 507; so does a Get inside.
    """
    position = len(work.statuses)
    work.status(command, StatusCode.OK)
    failed = nested
    child_positions = []
    for child in command.commands:
        if isinstance(child, Atomic):
            _client_atomic(work, child, nested=True)
            failed = True
        elif isinstance(child, Get):
            work.status(child, StatusCode.COMMAND_FAILED)
            failed = True
        elif child.cmd_id is None or isinstance(child, UnknownElement):
            work.status(child, StatusCode.BAD_REQUEST)
            failed = True
        else:
            child_positions.append(len(work.statuses))
            _process(work, child)
    code = StatusCode.COMMAND_FAILED if nested else (StatusCode.ATOMIC_FAILED if failed else StatusCode.OK)
    work.statuses[position] = replace(work.statuses[position], data=str(int(code)))  # type: ignore[type-var]
    if failed:
        for index in child_positions:
            status = work.statuses[index]
            if isinstance(status, Status) and status.data == str(int(StatusCode.OK)):
                work.statuses[index] = replace(status, data=str(int(StatusCode.ATOMIC_ROLL_BACK_OK)))


def _client_alert(work: _Work, alert: Alert) -> None:
    code = alert.data
    if code == str(int(AlertCode.SESSION_ABORT)):
        work.aborted = True
    elif code == str(int(AlertCode.NEXT_MESSAGE)):
        pass  # we continue below
    elif code == str(int(AlertCode.SERVER_INITIATED_MGMT)):
        work.effects.append(ServerInitiated(work.message.header.session_id))
    elif code == str(int(AlertCode.CLIENT_EVENT)):
        for item in alert.items:
            kind = item.meta.type if item.meta else None
            value = (data_text(item.data) or "").strip().lower()
            if kind == LOGIN_STATUS:
                work.state = replace(work.state, user_logged_in=value == "user")
                work.effects.append(LoginStatus(value))
    elif code == str(int(AlertCode.GENERIC_ALERT)):
        for item in alert.items:
            meta = item.meta or Meta()
            alert_event = GenericAlert(
                type=meta.type,
                format=meta.format,
                mark=meta.mark,
                source=item.source.loc_uri if item.source else None,
                data=_text(item.data),
                correlator=alert.correlator,
            )
            work.effects.append(alert_event)
            if meta.type == UNENROLL_ALERT:
                work.effects.append(Unenrolled())
    elif code not in ("1201",):
        work.status(alert, StatusCode.OPTIONAL_FEATURE_NOT_SUPPORTED)
        return
    work.status(alert, StatusCode.OK)


def _text(data: Any) -> str | None:
    if isinstance(data, bytes):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(data).decode("ascii")
    return data


def _client_replace(work: _Work, command: Replace) -> None:
    """
    Package 1's DevInfo (and any other values the device reports).
    """
    items = _take_chunks(work, command, "Replace", None, None)
    if items is None:
        return
    values = tuple(
        (item.source.loc_uri if item.source else (item.target.loc_uri if item.target else ""), _text(item.data) or "")
        for item in items
    )
    work.effects.append(DevInfoReported(values))
    work.status(command, StatusCode.OK)


def _take_chunks(
    work: _Work, command: Replace | Results, kind: str, msg_ref: str | None, cmd_ref: str | None
) -> tuple[Item, ...] | None:
    """
    The command's items, with a large object reassembled once its last chunk arrives.

    Returns None while chunks are still coming (the chunk was answered 213)
    or when the object is broken (answered with the error).
    """
    items = command.items
    chunked = [i for i in items if i.more_data]
    incoming = work.state.incoming
    if incoming is not None:
        item = items[0] if items else None
        same = (
            item is not None
            and incoming.command == kind
            and incoming.msg_ref == msg_ref
            and incoming.cmd_ref == cmd_ref
            and (item.source.loc_uri if item.source else None) == incoming.source
        )
        if not same:
            work.state = replace(work.state, incoming=None)
            work.statuses.append(
                Alert(
                    cmd_id=work.ids(),
                    data=str(int(AlertCode.NO_END_OF_DATA)),
                    items=(Item(source=Location(loc_uri=incoming.source or "")),),
                )
            )
            incoming = None
        else:
            chunks = incoming.chunks + (items[0],)
            if item is not None and item.more_data:
                return _buffer(work, command, replace(incoming, chunks=chunks))
            work.state = replace(work.state, incoming=None)
            try:
                whole = reassemble(chunks)
            except ChunkError as e:
                work.status(command, e.status)
                return None
            return (whole,) + items[1:]
    if chunked:
        if len(items) != 1:
            work.status(command, StatusCode.INCOMPLETE_COMMAND)
            return None
        item = items[0]
        size = item.meta.size if item.meta else None
        if size is not None and size > work.settings.max_obj_size:
            work.status(command, StatusCode.REQUEST_ENTITY_TOO_LARGE)
            return None
        source = item.source.loc_uri if item.source else None
        return _buffer(work, command, Incoming(kind, msg_ref, cmd_ref, source, (item,)))
    return items


def _buffer(work: _Work, command: Command, incoming: Incoming) -> None:
    total = sum(data_size(c.data) for c in incoming.chunks if c.data is not None)
    if total > work.settings.max_obj_size:
        work.state = replace(work.state, incoming=None)
        work.status(command, StatusCode.REQUEST_ENTITY_TOO_LARGE)
        return None
    work.state = replace(work.state, incoming=incoming)
    work.status(command, StatusCode.CHUNKED_ITEM_ACCEPTED)
    work.ask_next_message = True
    return None


def _find_sent(work: _Work, msg_ref: str | None, cmd_ref: str | None) -> SentRef | None:
    for ref in work.state.sent:
        if ref.msg_id == msg_ref and ref.cmd_id == cmd_ref:
            return ref
    return None


def _client_status(work: _Work, status: Status) -> None:
    code = _code(status.data)
    if status.cmd_ref == "0" or status.cmd == "SyncHdr":
        _header_status(work, status, code)
        return
    ref = _find_sent(work, status.msg_ref, status.cmd_ref)
    if ref is None:
        return  # a status for something we do not know (or already settled): nothing to do
    if ref.chunk and code == StatusCode.CHUNKED_ITEM_ACCEPTED:
        _settle(work, ref)
        return
    answer = work.answers.get(ref.seq, Answer())
    work.answers[ref.seq] = replace(answer, statuses=answer.statuses + ((ref.path, code),))
    work.touched.add(ref.seq)


def _header_status(work: _Work, status: Status, code: int) -> None:
    if code in (StatusCode.INVALID_CREDENTIALS, StatusCode.MISSING_CREDENTIALS):
        # The device wants us to authenticate (w7 CLIENT credentials).
        chal_meta = status.chal.meta if status.chal else None
        if chal_meta is not None and chal_meta.next_nonce:
            try:
                nonce = auth.decode_nonce(chal_meta.next_nonce)
            except auth.AuthError:
                nonce = None
            if nonce is not None:
                work.effects.append(ServerNonce(nonce))
                work.device = replace(work.device, server=replace(work.device.server, nonce=nonce))
        work.state = replace(work.state, send_server_cred=True)
    elif code >= 300:
        work.effects.append(HeaderRefused(code))
    elif status.chal is not None and status.chal.meta.next_nonce:
        try:
            work.effects.append(ServerNonce(auth.decode_nonce(status.chal.meta.next_nonce)))
        except auth.AuthError:
            pass


def _settle(work: _Work, ref: SentRef) -> None:
    work.state = replace(work.state, sent=tuple(r for r in work.state.sent if r != ref))


def _code(text: str | None) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        return int(StatusCode.BAD_REQUEST)


def _client_results(work: _Work, results: Results) -> None:
    ref = _find_sent(work, results.msg_ref, results.cmd_ref)
    items = _take_chunks(work, results, "Results", results.msg_ref, results.cmd_ref)
    if items is None:
        return
    if ref is None:
        # Results for nothing we asked: accept and drop (they may answer an old session).
        work.status(results, StatusCode.OK)
        return
    found = tuple(_result_value(item, results.meta) for item in items)
    answer = work.answers.get(ref.seq, Answer())
    work.answers[ref.seq] = replace(answer, results=answer.results + found)
    work.touched.add(ref.seq)
    work.status(results, StatusCode.OK)


def _result_value(item: Item, default: Meta | None) -> dict[str, Any]:
    meta = item.meta or default or Meta()
    value: dict[str, Any] = {
        "source": item.source.loc_uri if item.source else None,
        "format": meta.format,
        "type": meta.type,
    }
    if isinstance(item.data, bytes):
        try:
            value["data"] = item.data.decode("utf-8")
        except UnicodeDecodeError:
            value["data"] = base64.b64encode(item.data).decode("ascii")
            value["encoding"] = "base64"
    else:
        value["data"] = item.data
    return value


def _complete_answers(work: _Work) -> None:
    """
    Turn what the device said this message into command verdicts.

    A command is answered once its own status has come; a Get that
    succeeded also waits for its Results unless they are still arriving
    in chunks.
    """
    for seq in sorted(work.touched):
        answer = work.answers[seq]
        top = [code for path, code in answer.statuses if path == ""]
        if not top:
            continue
        code = top[-1]
        outgoing = work.state.outgoing
        still_sending = outgoing is not None and outgoing.seq == seq
        receiving = work.state.incoming is not None and any(
            r.seq == seq for r in _refs_for(work, work.state.incoming)
        )
        if still_sending or receiving:
            continue
        del work.answers[seq]
        work.state = replace(work.state, sent=tuple(r for r in work.state.sent if r.seq != seq))
        state = "done" if 200 <= code < 300 else "failed"
        work.effects.append(CommandAnswered(seq, state, code, answer.statuses, answer.results))


def _refs_for(work: _Work, incoming: Incoming) -> Iterator[SentRef]:
    for ref in work.state.sent:
        if ref.msg_id == incoming.msg_ref and ref.cmd_id == incoming.cmd_ref:
            yield ref


# --- our commands ------------------------------------------------------------------------------


def _build(spec: CommandSpec, work: _Work, seq: int, path: str, refs: list[SentRef], msg_id: str) -> Command:
    cmd_id = work.ids()
    refs.append(SentRef(msg_id, cmd_id, seq, path, spec.verb))
    if spec.verb in ("Atomic", "Sequence"):
        children = tuple(
            _build(child, work, seq, f"{path}.{i}" if path else str(i), refs, msg_id)
            for i, child in enumerate(spec.commands, 1)
        )
        kind = Atomic if spec.verb == "Atomic" else SequenceCommand
        return kind(cmd_id=cmd_id, commands=children)
    items = tuple(
        Item(
            target=Location(loc_uri=item.target),
            source=Location(loc_uri=item.source) if item.source else None,
            meta=Meta(format=item.format, type=item.type) if (item.format or item.type) else None,
            data=item.data,
        )
        for item in spec.items
    )
    return _VERBS[spec.verb](cmd_id=cmd_id, items=items)


def _response_header(work: _Work, authenticated: bool) -> SyncHdr:
    """
    Our SyncHdr: the device's Source as Target and its Target as Source.

    The Meta announces the largest object we accept (Windows ignores Meta in
    a server's SyncHdr; other DM clients honour it).
    """
    client = work.message.header
    return SyncHdr(
        session_id=client.session_id,
        msg_id=str(work.state.next_msg_id),
        target=Location(loc_uri=client.source.loc_uri),
        source=Location(loc_uri=client.target.loc_uri),
        cred=_server_cred(work),
        meta=Meta(max_obj_size=work.settings.max_obj_size) if authenticated else None,
    )


def _budget(work: _Work) -> int:
    limit = work.state.max_msg_size or work.settings.default_max_msg_size
    header = _response_header(work, True)
    used = max(work.codec.envelope_size(header, True), work.codec.envelope_size(header, False))
    used += sum(work.codec.command_size(c) for c in work.statuses)
    # Room for an Alert 1222 we may have to add.
    used += work.codec.command_size(Alert(cmd_id="9999", data="1222"))
    return limit - used


def _send_commands(work: _Work, pending: Sequence[PendingCommand]) -> bool:
    """
    Add as many sendable commands as fit; return whether this message ends our package.
    """
    if work.ask_next_message or (not work.message.final and not work.state.server_package_open):
        # The device's own package goes on: answer "next message", no commands.
        # (Its message without Final is expected while *our* package is open:
        # a client may not close its package before the server closed its own.)
        work.ask_next_message = True
        return False
    if any(not r.chunk for r in work.state.sent):
        return True  # wait for the statuses of what we already sent
    budget = _budget(work)
    msg_id = str(work.state.next_msg_id)
    by_seq = {c.seq: c for c in pending}
    outgoing = work.state.outgoing
    if outgoing is not None:
        command = by_seq.get(outgoing.seq)
        if command is None:
            work.state = replace(work.state, outgoing=None)
        else:
            return _send_chunk(work, command, outgoing.offset, budget, msg_id)
    answered = {e.seq for e in work.effects if isinstance(e, (CommandAnswered, CommandFailed))}
    view = [c if c.seq not in answered else replace(c, state="done") for c in pending]
    complete = True
    for candidate in sendable(view, work.state.user_logged_in):
        refs: list[SentRef] = []
        saved_ids = work.ids._next
        built = _build(candidate.spec, work, candidate.seq, "", refs, msg_id)
        size = work.codec.command_size(built)
        too_big = _object_too_big(work, candidate)
        if too_big:
            work.ids._next = saved_ids
            work.effects.append(CommandFailed(candidate.seq, too_big))
            continue
        if size <= budget:
            work.commands.append(built)
            work.sent.extend(refs)
            work.state = replace(work.state, sent=work.state.sent + tuple(refs))
            work.effects.append(CommandSent(candidate.seq, work.state.key, msg_id, refs[0].cmd_id))
            budget -= size
            continue
        work.ids._next = saved_ids
        if work.commands:
            complete = False  # the rest goes in the next message of our package
            break
        if _chunkable(candidate.spec):
            return _send_chunk(work, candidate, 0, budget, msg_id)
        work.effects.append(
            CommandFailed(candidate.seq, f"{candidate.spec.verb} of {size} bytes does not fit the device's MaxMsgSize")
        )
    return complete


def _chunkable(spec: CommandSpec) -> bool:
    return spec.verb in ("Add", "Replace") and len(spec.items) == 1 and spec.items[0].data is not None


def _object_too_big(work: _Work, command: PendingCommand) -> str | None:
    limit = work.state.max_obj_size
    if limit is None:
        return None
    for spec in command.spec.walk():
        for item in spec.items:
            if item.data is not None and data_size(item.data) > limit:
                return f"{item.target}: {data_size(item.data)} bytes exceed the device's MaxObjSize {limit}"
    return None


def _send_chunk(work: _Work, command: PendingCommand, offset: int, budget: int, msg_id: str) -> bool:
    refs: list[SentRef] = []
    whole = _build(command.spec, work, command.seq, "", refs, msg_id)
    found = next_chunk(work.codec, whole, offset, budget)
    if found is None:
        work.state = replace(work.state, outgoing=None)
        work.effects.append(CommandFailed(command.seq, "MaxMsgSize leaves no room for a chunk"))
        return True
    chunk, new_offset = found
    data = whole.items[0].data  # type: ignore[attr-defined]
    last = new_offset >= len(data)
    ref = replace(refs[0], chunk=not last)
    work.commands.append(chunk)
    work.sent.append(ref)
    work.state = replace(
        work.state,
        sent=work.state.sent + (ref,),
        outgoing=None if last else OutgoingObject(command.seq, new_offset),
    )
    if offset == 0:
        work.effects.append(CommandSent(command.seq, work.state.key, msg_id, ref.cmd_id))
    return last
