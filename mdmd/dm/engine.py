"""
The OMA DM 1.2 session engine: one client message in, one server message out.

Sans-IO, in the h11 manner: L{handle} takes the decoded client message, the
device's credentials, the session state and the device's pending commands,
all plain values, and returns the answer, the new session state and a list
of effects (L{mdmd.dm.effects}) for the adapter to apply in the same store
transaction. It reads no clock (C{now} is passed in) and no randomness but
the C{random} it is given.

One message goes through these steps, each moving the session only through
the transition table of L{mdmd.dm.state}:

 0. a resend of the message answered last, in a session that goes on (same
    session, MsgID and bytes: the device lost our answer), gets that answer
    again (L{LastAnswer}) and changes nothing; a message the session cannot
    take (after it ended, or the last MsgID again with other bytes) is
    answered 403 throughout and read by nobody (OUT_OF_STEP);
 1. authenticate it (L{mdmd.dm.authentication}) and answer its SyncHdr;
 2. answer every client command in order, through L{CLIENT_COMMANDS} (Alerts
    by code through L{CLIENT_ALERTS}), recording what the device says of the
    commands we sent and of our SyncHdr (L{HEADER_VERDICTS}); an
    unauthenticated message only gets its statuses;
 3. settle our commands the device has answered; those it refused because
    it had not authenticated us yet go out again;
 4. in an OPEN session, add the commands that fit the device's MaxMsgSize
    (a value larger than a message in chunks, L{mdmd.dm.chunking}) and end
    the answer: Final, or withheld while our package or the device's goes on;
    none once the device takes no more (it answered 214, or unenrolled):
    the session ends with that answer;
 5. put our credential in our SyncHdr while the session owes it, but only in
    a message with commands: a device that checks it issues a new nonce in
    its answer, and a message without commands gets no answer (libdmclient
    then stores a nonce we never learn, and its next session refuses us).

Everything the device sends is peer input: text it sends as opaque bytes is
decoded leniently (L{_text}), and what we echo back (its LocURIs, MsgID,
CmdIDs) is made carryable by any SyncML encoding first (L{_echo}).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from mdmd.dm import chunking
from mdmd.dm.authentication import (
    HeaderVerdict,
    LoginFailures,
    Verdict,
    Proof,
    authenticate,
    header_verdict,
    nonce_per_message,
    offered_nonce,
    response_headers,
    server_cred,
)
from mdmd.dm.command_state import answered_state, group_status
from mdmd.dm.commands import CommandSpec, sendable
from mdmd.dm.effects import (
    AuthenticationFailed,
    AuthenticationLocked,
    ClientEvent,
    ClientNonce,
    CommandAnswered,
    CommandFailed,
    CommandRequeued,
    CommandSent,
    DeviceAuth,
    DevInfoReported,
    Effect,
    GenericAlert,
    HeaderRefused,
    HeaderStatusInvalid,
    LoginFailuresCleared,
    LoginStatus,
    MessageRefused,
    NewSession,
    PendingCommand,
    ServerChallenged,
    ServerInitiated,
    ServerNonce,
    SessionAborted,
    Settings,
    Unenrolled,
)
from mdmd.dm.state import (
    Answer,
    LastAnswer,
    OurPackage,
    Phase,
    ResultValue,
    SentRef,
    ServerCredential,
    SessionInput,
    SessionState,
    advance,
)
from mdmd.syncml.codec import Codec
from mdmd.syncml.codes import AlertCode, StatusCode
from mdmd.syncml.model import (
    NOT_CARRIED,
    Add,
    Alert,
    Atomic,
    Command,
    Copy,
    Data,
    Delete,
    Exec,
    Get,
    Item,
    ItemCommand,
    Location,
    Meta,
    Replace,
    Results,
    Sequence as SequenceCommand,
    Status,
    SyncHdr,
    SyncML,
    UnknownElement,
)

__all__ = [
    "Outcome",
    "handle",
    "starts_new_session",
    "resends",
    "CLIENT_COMMANDS",
    "CLIENT_ALERTS",
    "HEADER_VERDICTS",
    "UNENROLL_ALERT",
    "LOGIN_STATUS",
]

UNENROLL_ALERT = "com.microsoft:mdm.unenrollment.userrequest"
LOGIN_STATUS = "com.microsoft/MDM/LoginStatus"


@dataclass(frozen=True)
class Outcome:
    #: The response (None when it is the last answer again, for a resend).
    response: SyncML | None
    body: bytes  # the response, encoded with the request's codec
    state: SessionState
    effects: tuple[Effect, ...]
    #: Extra HTTP headers (x-syncml-hmac when the session uses HMAC).
    headers: tuple[tuple[str, str], ...] = ()
    #: What to keep beside the state for a resend of this message (None once
    #: the session ended: it takes nothing more, resends included).
    last: LastAnswer | None = None


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

    def mark(self) -> int:
        """
        Where the next CmdID is, to L{rewind} to if what was built is not sent.
        """
        return self._next

    def rewind(self, mark: int) -> None:
        self._next = mark


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
    ids: _Ids = field(default_factory=_Ids)
    statuses: list[Status | Alert] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    answers: dict[int, Answer] = field(default_factory=dict)
    touched: set[int] = field(default_factory=set)
    sent: list[SentRef] = field(default_factory=list)
    #: The device's package (or a large object of it) goes on: answer with Alert 1222.
    ask_next_message: bool = False
    #: The device sent Alert 1223 in this message.
    aborted: bool = False
    #: The device answered our SyncHdr 401/407 in this message: its 401/407 for
    #: our commands mean "not authenticated yet", and they go out again.
    server_refused: bool = False
    #: Our commands refused for that reason (their seq), to send again.
    requeued: set[int] = field(default_factory=set)
    #: The device answered one of our commands 214: it processes no more of them this session.
    halted: bool = False
    #: The device unenrolled in this message (Alert 1226).
    unenrolled: bool = False

    def status(
        self,
        command: Command,
        code: int,
        *,
        target_refs: tuple[str, ...] = (),
        source_refs: tuple[str, ...] = (),
        items: tuple[Item, ...] = (),
    ) -> int:
        """
        Answer C{command} with C{code}; return where the Status is, to L{recode} it.
        """
        self.statuses.append(
            Status(
                cmd_id=self.ids(),
                msg_ref=_echo(self.message.header.msg_id),
                cmd_ref=_echo(command.cmd_id or ""),
                cmd=_echo(command.name),
                target_refs=target_refs,
                source_refs=source_refs,
                data=str(int(code)),
                items=items,
            )
        )
        return len(self.statuses) - 1

    def recode(self, position: int, code: int) -> None:
        status = self.statuses[position]
        if isinstance(status, Status):
            self.statuses[position] = replace(status, data=str(int(code)))

    def move(
        self,
        input: SessionInput,
        *,
        incoming: chunking.IncomingObject | None = None,
        outgoing: chunking.OutgoingObject | None = None,
    ) -> None:
        self.state = advance(self.state, input, incoming=incoming, outgoing=outgoing)


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
    last: LastAnswer | None = None,
) -> Outcome:
    """
    Answer one client message of a DM session.

    C{body} is the message as received: a resend is recognised by it (and
    HMAC is computed over it); C{last} is our answer to the session's last
    message (L{Outcome.last} of that message). C{hmac_header} matters only
    when the device uses HMAC (C{x-syncml-hmac}); C{commands} are the
    device's pending commands in sequence order (queued or sent), so the
    engine can keep their order.
    """
    header = message.header
    if state is not None and last is not None and resends(message, body, state, last, now, hmac_header):
        return Outcome(None, last.body, state, (), last.headers, last)
    effects: list[Effect] = []
    if state is None or starts_new_session(message, state, now, last, body, hmac_header):
        owed = ServerCredential.OWED if settings.send_server_credential else ServerCredential.NOT_ASKED
        state = SessionState.start(header.session_id, now, settings.session_timeout, owed)
        effects.append(NewSession(state.key, header.session_id))
    meta = header.meta
    if meta is not None:
        state = state.evolve(
            max_msg_size=meta.max_msg_size or state.max_msg_size,
            max_obj_size=meta.max_obj_size or state.max_obj_size,
        )
    work = _Work(state, device, message, codec, settings, effects=effects, answers=dict(state.answers))

    proof = Proof(header.cred, header.source.loc_name, hmac_header, body)
    verdict = authenticate(
        state,
        device.scheme,
        device.client,
        proof,
        settings.max_auth_failures,
        random,
        recent_failures=device.failures.recent(now, settings.auth_lockout),
        locked=device.failures.locked(now),
    )
    work.effects.extend(_login_effects(verdict, device.failures, now, settings))
    refusal = _out_of_step(message, state, last) if verdict.accepted else None
    if refusal is not None:
        work.move(SessionInput.OUT_OF_STEP)
        work.effects.append(MessageRefused(refusal))
        code, chal, accepted = StatusCode.FORBIDDEN, None, False
    else:
        work.move(verdict.input)
        work.state = work.state.evolve(auth_failures=verdict.failures)
        if verdict.nonce is not None:
            work.effects.append(ClientNonce(verdict.nonce))
        code, chal, accepted = verdict.code, verdict.chal, verdict.accepted
    work.statuses.append(
        Status(
            cmd_id=work.ids(),
            msg_ref=_echo(header.msg_id),
            cmd_ref="0",
            cmd="SyncHdr",
            target_refs=(_echo(header.target.loc_uri),),
            source_refs=(_echo(header.source.loc_uri),),
            chal=chal,
            data=str(int(code)),
        )
    )
    if accepted:
        for command in message.body:
            _process(work, command)
    else:
        for command in message.body:
            if not isinstance(command, Status):
                work.status(command, code)
    _complete_answers(work)

    final = True
    if work.state.phase is Phase.OPEN:
        if work.aborted:
            work.move(SessionInput.ABORTED)
            work.effects.append(SessionAborted())
        elif work.halted or work.unenrolled:
            work.move(SessionInput.NO_MORE_COMMANDS)
        else:
            final = _send_commands(work, commands)
            work.move(_how_it_ends(work, final))
    if work.ask_next_message and not work.commands and work.state.phase is Phase.OPEN:
        # The device has more of its package (or of a large object) to send.
        work.statuses.append(Alert(cmd_id=work.ids(), data=str(int(AlertCode.NEXT_MESSAGE))))
        final = False
    if work.unenrolled:
        # Last, so that the adapter closes what is pending after recording this message's answers.
        work.effects.append(Unenrolled())

    answer = (*work.statuses, *work.commands)
    # Our credential only where the device will answer (see the module's step 5).
    with_commands = any(not isinstance(c, Status) for c in answer)
    response = SyncML(header=_response_header(work, accepted, with_commands), body=answer, final=final)
    encoded = codec.encode(response)
    new_state = work.state.evolve(
        next_msg_id=state.next_msg_id + 1,
        deadline=now + settings.session_timeout,
        answers=tuple(sorted(work.answers.items())),
        last_client_msg_id=header.msg_id,
    )
    headers = response_headers(new_state, work.device.server, encoded, device.server_scheme)
    new_state = new_state.evolve(
        server_cred_sent=response.header.cred is not None or _mac_owed(new_state, headers)
    )
    kept = None
    if new_state.phase in _GOING_ON:
        kept = LastAnswer(new_state.key, header.msg_id, LastAnswer.digest_of(body, hmac_header), encoded, headers)
    return Outcome(response, encoded, new_state, tuple(work.effects), headers, kept)


#: The phases of a session that can take another message (and so a resend).
_GOING_ON: Final = (Phase.CHALLENGED, Phase.OPEN)

def _login_effects(verdict: Verdict, failures: LoginFailures, now: float, settings: Settings) -> tuple[Effect, ...]:
    """
    What the device record keeps of this message's authentication: a failure
    counted (the lockout it begins past the limit), a refusal while locked
    out, or its failures forgotten once it authenticated.
    """
    if verdict.locked:
        return (AuthenticationLocked(failures),)
    if verdict.failed is not None:
        until = now + settings.auth_lockout if verdict.input is SessionInput.GIVE_UP else 0.0
        return (AuthenticationFailed(verdict.failed, int(verdict.code), LoginFailures(verdict.failures, now, until)),)
    if verdict.accepted and failures.count and verdict.input is not SessionInput.ALREADY_AUTHENTICATED:
        return (LoginFailuresCleared(),)
    return ()


def _echo(text: str) -> str:
    """
    Device text (a LocURI, MsgID, CmdID) made fit to go back in our answer, whatever the encoding.
    """
    return NOT_CARRIED.sub("\ufffd", text)


def resends(
    message: SyncML,
    body: bytes,
    state: SessionState,
    last: LastAnswer,
    now: float,
    hmac_header: str | bytes | None = None,
) -> bool:
    """
    Whether C{message} is the device's last message again (same session,
    MsgID, bytes and x-syncml-hmac header: it lost our answer), in a session that can go on.

    The adapter asks first: a resend neither begins a session nor requeues anything.
    """
    return (
        state.phase in _GOING_ON
        and state.deadline >= now
        and state.session_id == message.header.session_id
        and last.answers(state, message.header.msg_id, body, hmac_header)
    )


def _out_of_step(message: SyncML, state: SessionState, last: LastAnswer | None) -> str | None:
    """
    Why the session cannot take the authenticated C{message} (it is not a
    resend, not a new session), or None.

    Only an authenticated message gets here: an unauthenticated one is
    refused (401/407) as ever, so a stranger learns nothing of the session.
    """
    if state.phase is Phase.ENDED:
        return f"session {state.session_id} has ended"
    if state.phase is Phase.OPEN and message.header.msg_id == state.last_client_msg_id:
        known = "another message" if last is not None and last.key == state.key else "a message we cannot compare"
        return f"MsgID {message.header.msg_id} was answered already, for {known}"
    return None


def _mac_owed(state: SessionState, headers: tuple[tuple[str, str], ...]) -> bool:
    """
    Whether our answer carries our MAC because we owe the device our credential.
    """
    return bool(headers) and state.server_credential is ServerCredential.OWED


def starts_new_session(
    message: SyncML,
    state: SessionState | None,
    now: float,
    last: LastAnswer | None = None,
    body: bytes = b"",
    hmac_header: str | bytes | None = None,
) -> bool:
    """
    Whether C{message} begins a new session rather than continuing C{state}.

    The adapter asks first: commands sent in the previous session and never
    answered go back in the queue before the new session picks commands.
    A package 1 repeated after a challenge continues its session (OMA DM:
    the client resends package 1 with credentials under the same SessionID),
    and so does a package 1 resent because our answer was lost (L{resends}).
    """
    if state is None or state.session_id != message.header.session_id or state.deadline < now:
        return True
    if last is not None and resends(message, body, state, last, now, hmac_header):
        return False
    return state.phase in (Phase.OPEN, Phase.ENDED) and _is_package1(message)


def _is_package1(message: SyncML) -> bool:
    return any(isinstance(c, Alert) and c.data in ("1200", "1201") for c in message.body)


def _how_it_ends(work: _Work, final: bool) -> SessionInput:
    """
    The input that ends an OPEN session's answer, once our commands are in.
    """
    waiting = bool(work.sent) or work.state.outgoing is not None
    if not (work.commands or waiting or not final or not work.message.final):
        return SessionInput.DONE
    if not final and not work.ask_next_message:
        return SessionInput.PACKAGE_CONTINUES
    return SessionInput.CONTINUED


# --- the client's commands -------------------------------------------------------------------


def _process(work: _Work, command: Command) -> None:
    if command.cmd_id is None:
        # MS-MDM: a command without CmdID gets 400 with an empty CmdRef.
        work.status(command, StatusCode.BAD_REQUEST)
        return
    if work.state.phase is not Phase.OPEN and not isinstance(command, Status):
        # We gave up earlier in this message: the rest is read by nobody, like
        # a message after the session (what the device says of ours still counts).
        work.status(command, StatusCode.FORBIDDEN)
        return
    CLIENT_COMMANDS[type(command)](work, command)


def _client_sequence(work: _Work, command: SequenceCommand) -> None:
    work.status(command, StatusCode.OK)
    for child in command.commands:
        _process(work, child)


def _client_atomic(work: _Work, command: Atomic) -> None:
    _atomic(work, command, nested=False)


def _nested_atomic(work: _Work, command: Atomic) -> None:
    _atomic(work, command, nested=True)


def _atomic(work: _Work, command: Atomic, nested: bool) -> None:
    """
    Windows' rules: a nested Atomic gets 500 and its parent 507; so does a Get inside.

    The members that succeeded in an Atomic that failed are rolled back (216).
    """
    position = work.status(command, StatusCode.OK)
    failed = nested
    members = []
    for child in command.commands:
        refusal = _ATOMIC_REFUSALS.get(type(child))
        if refusal is None and child.cmd_id is not None:
            members.append(len(work.statuses))
            _process(work, child)
        else:
            (refusal or _bad_request)(work, child)
            failed = True
    code = StatusCode.COMMAND_FAILED if nested else (StatusCode.ATOMIC_FAILED if failed else StatusCode.OK)
    work.recode(position, code)
    if failed:
        for index in members:
            status = work.statuses[index]
            if isinstance(status, Status) and status.data == str(int(StatusCode.OK)):
                work.recode(index, StatusCode.ATOMIC_ROLL_BACK_OK)


def _bad_request(work: _Work, command: Command) -> None:
    work.status(command, StatusCode.BAD_REQUEST)


def _command_failed(work: _Work, command: Command) -> None:
    work.status(command, StatusCode.COMMAND_FAILED)


def _not_supported(work: _Work, command: Command) -> None:
    """
    Add, Delete, Exec, Get, Copy from a device: a DM server has no tree to act on.
    """
    work.status(command, StatusCode.OPTIONAL_FEATURE_NOT_SUPPORTED)


def _client_alert(work: _Work, alert: Alert) -> None:
    code = _ALERT_CODES.get(alert.data or "")
    act = CLIENT_ALERTS.get(code) if code is not None else None
    if act is None:
        work.status(alert, StatusCode.OPTIONAL_FEATURE_NOT_SUPPORTED)
        return
    act(work, alert)
    work.status(alert, StatusCode.OK)


def _session_abort(work: _Work, alert: Alert) -> None:
    work.aborted = True


def _accepted(work: _Work, alert: Alert) -> None:
    """
    1201 opens the session; 1222 asks for our next message, which follows anyway.
    """


def _server_initiated(work: _Work, alert: Alert) -> None:
    work.effects.append(ServerInitiated(work.message.header.session_id))


def _client_event(work: _Work, alert: Alert) -> None:
    """
    1224: LoginStatus decides whether ./User commands may go; every other item is kept as an event.
    """
    for item in alert.items:
        meta = item.meta or Meta()
        if meta.type == LOGIN_STATUS:
            value = (_text(item.data) or "").strip().lower()
            work.state = work.state.evolve(user_logged_in=value == "user")
            work.effects.append(LoginStatus(value))
            continue
        work.effects.append(ClientEvent(**_event_fields(alert, item, meta)))


def _generic_alert(work: _Work, alert: Alert) -> None:
    for item in alert.items:
        meta = item.meta or Meta()
        work.effects.append(GenericAlert(**_event_fields(alert, item, meta)))
        if meta.type == UNENROLL_ALERT:
            work.unenrolled = True


def _event_fields(alert: Alert, item: Item, meta: Meta) -> dict[str, str | None]:
    """
    What an alert item reports, as the store keeps it.
    """
    return {
        "type": meta.type,
        "format": meta.format,
        "mark": meta.mark,
        "source": item.source.loc_uri if item.source else None,
        "data": _text(item.data),
        "correlator": alert.correlator,
    }


def _text(data: Data | None) -> str | None:
    """
    Device data as text: opaque bytes that are not UTF-8 come as base64 (peer input, never an error).
    """
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
    items = _receive(work, command, None, None)
    if items is None:
        return
    values = tuple(
        (
            item.source.loc_uri if item.source else (item.target.loc_uri if item.target else ""),
            _text(item.data) or "",
        )
        for item in items
    )
    work.effects.append(DevInfoReported(values))
    work.status(command, StatusCode.OK)


def _receive(
    work: _Work, command: Replace | Results, msg_ref: str | None, cmd_ref: str | None
) -> tuple[Item, ...] | None:
    """
    The command's items (a large object whole), or None once the command is answered.
    """
    before = work.state.incoming
    received = chunking.receive(before, command, msg_ref, cmd_ref, work.settings.max_obj_size)
    if received.cut_off is not None:
        work.statuses.append(
            Alert(
                cmd_id=work.ids(),
                data=str(int(AlertCode.NO_END_OF_DATA)),
                items=(Item(source=Location(loc_uri=_echo(received.cut_off.source or ""))),),
            )
        )
    if received.incoming is not None:
        work.move(SessionInput.CHUNK_RECEIVED, incoming=received.incoming)
        work.ask_next_message = True
    elif before is not None:
        work.move(SessionInput.RECEIVING_STOPPED)
    if received.status is not None:
        work.status(command, received.status)
    return received.items


def _find_sent(work: _Work, msg_ref: str | None, cmd_ref: str | None) -> SentRef | None:
    for ref in work.state.sent:
        if ref.msg_id == msg_ref and ref.cmd_id == cmd_ref:
            return ref
    return None


def _client_status(work: _Work, status: Status) -> None:
    if status.cmd_ref == "0" or status.cmd == "SyncHdr":
        _header_status(work, status)
        return
    code = _code(status.data)
    ref = _find_sent(work, status.msg_ref, status.cmd_ref)
    if ref is None:
        return  # a status for something we do not know (or already settled): nothing to do
    if ref.chunk and code == StatusCode.CHUNKED_ITEM_ACCEPTED:
        work.state = work.state.evolve(sent=tuple(r for r in work.state.sent if r != ref))
        return
    if work.server_refused and code in (StatusCode.INVALID_CREDENTIALS, StatusCode.MISSING_CREDENTIALS):
        _requeue(work, ref.seq, code)
        return
    if code == StatusCode.OPERATION_CANCELLED:
        work.halted = True
    answer = work.answers.get(ref.seq, Answer())
    work.answers[ref.seq] = replace(answer, statuses=answer.statuses + ((ref.path, code),))
    work.touched.add(ref.seq)


def _header_status(work: _Work, status: Status) -> None:
    """
    The device's verdict on our SyncHdr (and so on our credential), through L{HEADER_VERDICTS}.
    """
    verdict, code = header_verdict(status.data)
    HEADER_VERDICTS[verdict](work, status, code)


def _server_accepted(work: _Work, status: Status, code: StatusCode | None) -> None:
    """
    212: our credential holds for the rest of the session; a NextNonce is for its next one.
    """
    work.move(SessionInput.SERVER_ACCEPTED)
    _next_session_nonce(work, status)


def _header_passed(work: _Work, status: Status, code: StatusCode | None) -> None:
    """
    200 (or another code below 300): nothing to change; a NextNonce is for the device's next session.
    """
    _next_session_nonce(work, status)


def _next_session_nonce(work: _Work, status: Status) -> None:
    """
    Store a NextNonce that came with a 2xx; this session keeps the nonce it has
    (unless HMAC renews it per message).
    """
    nonce = offered_nonce(status)
    if nonce is None:
        return
    work.effects.append(ServerNonce(nonce))
    if nonce_per_message(work.state, work.device.server_scheme):
        work.device = replace(work.device, server=replace(work.device.server, nonce=nonce))
    elif work.state.server_nonce is None:
        work.state = work.state.evolve(server_nonce=work.device.server.nonce)


def _server_challenged(work: _Work, status: Status, code: StatusCode | None) -> None:
    """
    401/407: the device wants our credential (w7 CLIENT), made with its NextNonce at once.

    Its 401/407 for our commands in the same message then mean "not
    authenticated yet": they go out again with our credential, until the
    device has refused it more than C{max_auth_failures} times in the session.
    """
    assert code is not None
    sent = work.state.server_cred_sent
    work.effects.append(ServerChallenged(int(code), sent))
    nonce = offered_nonce(status)
    if nonce is not None:
        work.effects.append(ServerNonce(nonce))
        work.device = replace(work.device, server=replace(work.device.server, nonce=nonce))
        work.state = work.state.evolve(server_nonce=None)
    refusals = work.state.server_refusals + (1 if sent else 0)
    work.state = work.state.evolve(server_refusals=refusals)
    if refusals > work.settings.max_auth_failures or work.state.phase is not Phase.OPEN:
        work.move(SessionInput.GIVE_UP)
        return
    work.move(SessionInput.DEVICE_CHALLENGED)
    work.server_refused = True


def _header_refused(work: _Work, status: Status, code: StatusCode | None) -> None:
    assert code is not None
    work.effects.append(HeaderRefused(int(code)))


def _header_invalid(work: _Work, status: Status, code: StatusCode | None) -> None:
    work.effects.append(HeaderStatusInvalid((status.data or "").strip()))


#: What each verdict of the device on our SyncHdr does.
HEADER_VERDICTS: Final[Mapping[HeaderVerdict, Callable[[_Work, Status, StatusCode | None], None]]] = {
    HeaderVerdict.ACCEPTED: _server_accepted,
    HeaderVerdict.PASSED: _header_passed,
    HeaderVerdict.CHALLENGED: _server_challenged,
    HeaderVerdict.REFUSED: _header_refused,
    HeaderVerdict.INVALID: _header_invalid,
}


def _requeue(work: _Work, seq: int, code: int) -> None:
    """
    Our command C{seq} was refused for want of our credential: forget this attempt, send it again.
    """
    work.state = work.state.evolve(sent=tuple(r for r in work.state.sent if r.seq != seq))
    work.answers.pop(seq, None)
    work.touched.discard(seq)
    outgoing = work.state.outgoing
    if outgoing is not None and outgoing.seq == seq:
        work.move(SessionInput.SENDING_STOPPED)  # its chunks start again from the first
    if seq not in work.requeued:
        work.requeued.add(seq)
        work.effects.append(CommandRequeued(seq, code))


def _code(text: str | None) -> int:
    """
    A status code as the device wrote it (ASCII digits: libdmclient answers 0), else 400.
    """
    stripped = (text or "").strip()
    if 0 < len(stripped) <= 9 and stripped.isascii() and stripped.isdigit():
        return int(stripped)
    return int(StatusCode.BAD_REQUEST)


def _client_results(work: _Work, results: Results) -> None:
    ref = _find_sent(work, results.msg_ref, results.cmd_ref)
    items = _receive(work, results, results.msg_ref, results.cmd_ref)
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


def _result_value(item: Item, default: Meta | None) -> ResultValue:
    meta = item.meta or default or Meta()
    value: ResultValue = {
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


#: The client's commands, by type: every command of L{mdmd.syncml.model} has its row.
#: (Each handler takes its own type: the table pairs them, hence C{Any}.)
CLIENT_COMMANDS: Final[Mapping[type[Command], Callable[[_Work, Any], None]]] = {
    Status: _client_status,
    Results: _client_results,
    Alert: _client_alert,
    Replace: _client_replace,
    Atomic: _client_atomic,
    SequenceCommand: _client_sequence,
    UnknownElement: _bad_request,
    Add: _not_supported,
    Copy: _not_supported,
    Delete: _not_supported,
    Exec: _not_supported,
    Get: _not_supported,
}

#: Members of a client Atomic refused whatever their CmdID (a member without one gets 400).
_ATOMIC_REFUSALS: Final[Mapping[type[Command], Callable[[_Work, Any], None]]] = {
    Atomic: _nested_atomic,
    Get: _command_failed,
    UnknownElement: _bad_request,
}

#: The client's alerts, by code, each answered 200 after its action; any other code gets 406.
CLIENT_ALERTS: Final[Mapping[AlertCode, Callable[[_Work, Alert], None]]] = {
    AlertCode.SERVER_INITIATED_MGMT: _server_initiated,
    AlertCode.CLIENT_INITIATED_MGMT: _accepted,
    AlertCode.NEXT_MESSAGE: _accepted,
    AlertCode.SESSION_ABORT: _session_abort,
    AlertCode.CLIENT_EVENT: _client_event,
    AlertCode.GENERIC_ALERT: _generic_alert,
}

#: An alert's code by its exact text (a padded code is not one we know).
_ALERT_CODES: Final[Mapping[str, AlertCode]] = {str(int(code)): code for code in AlertCode}


# --- answers to our commands ---------------------------------------------------------------


def _complete_answers(work: _Work) -> None:
    """
    Turn what the device said this message into command verdicts.

    A command is answered once its own status has come; a Get that
    succeeded also waits for its Results unless they are still arriving
    in chunks. A group (Atomic, Sequence) whose members all have their
    status when the device's package ends, but not the group itself
    (libdmclient never answers an Atomic), is answered from its members'
    (L{group_status}) with a note, rather than sent and executed again.
    """
    candidates = set(work.answers) if work.message.final else work.touched
    for seq in sorted(candidates):
        answer = work.answers[seq]
        top = [code for path, code in answer.statuses if path == ""]
        note = None
        if top:
            code = top[-1]
        else:
            group = _unanswered_group(work, seq, answer)
            if group is None:
                continue
            code = group_status(c for _, c in answer.statuses)
            note = f"the device sent no status for the {group} itself: answered from its members' statuses"
        outgoing = work.state.outgoing
        still_sending = outgoing is not None and outgoing.seq == seq
        incoming = work.state.incoming
        receiving = incoming is not None and any(r.seq == seq for r in _refs_for(work, incoming))
        if still_sending or receiving:
            continue
        del work.answers[seq]
        work.state = work.state.evolve(sent=tuple(r for r in work.state.sent if r.seq != seq))
        work.effects.append(
            CommandAnswered(seq, answered_state(code).value, code, answer.statuses, answer.results, note)
        )


def _unanswered_group(work: _Work, seq: int, answer: Answer) -> str | None:
    """
    The verb of C{seq} if it is a group whose every member (at any depth) has
    its status in C{answer}, at the end of the device's package; else None.
    """
    if not work.message.final:
        return None
    refs = [r for r in work.state.sent if r.seq == seq]
    verbs = {r.path: r.verb for r in refs}
    group = verbs.get("")
    if group not in _GROUP_VERBS:
        return None
    members = {r.path for r in refs if r.path and r.verb not in _GROUP_VERBS}
    answered = {path for path, _ in answer.statuses}
    return group if members and members <= answered else None


def _refs_for(work: _Work, incoming: chunking.IncomingObject) -> Iterator[SentRef]:
    for ref in work.state.sent:
        if ref.msg_id == incoming.msg_ref and ref.cmd_id == incoming.cmd_ref:
            yield ref


# --- our commands ------------------------------------------------------------------------------

_ITEM_VERBS: Final[Mapping[str, type[ItemCommand]]] = {
    "Get": Get,
    "Add": Add,
    "Replace": Replace,
    "Delete": Delete,
    "Exec": Exec,
    "Copy": Copy,
}
_GROUP_VERBS: Final[Mapping[str, type[Atomic] | type[SequenceCommand]]] = {
    "Atomic": Atomic,
    "Sequence": SequenceCommand,
}


#: The verbs whose items always carry Meta/Format and Data for a device that
#: wants them spelt out (L{Settings.explicit_items}).
_VALUE_VERBS: Final = frozenset({"Add", "Replace"})
#: The format OMA DM takes when an item names none.
_DEFAULT_FORMAT: Final = "chr"


def _build(
    spec: CommandSpec, ids: _Ids, seq: int, path: str, refs: list[SentRef], msg_id: str, explicit: bool = False
) -> Command:
    """
    The command for C{spec}, CmdIDs from C{ids}; a L{SentRef} per command and member goes to C{refs}.
    """
    group = _GROUP_VERBS.get(spec.verb)
    if group is None:
        return _build_items(spec, ids, seq, path, refs, msg_id, explicit)
    cmd_id = ids()
    refs.append(SentRef(msg_id, cmd_id, seq, path, spec.verb))
    children = tuple(
        _build(child, ids, seq, f"{path}.{i}" if path else str(i), refs, msg_id, explicit)
        for i, child in enumerate(spec.commands, 1)
    )
    return group(cmd_id=cmd_id, commands=children)


def _build_items(
    spec: CommandSpec, ids: _Ids, seq: int, path: str, refs: list[SentRef], msg_id: str, explicit: bool = False
) -> ItemCommand:
    """
    The item command for C{spec}. With C{explicit}, an Add or Replace item
    spells out the OMA DM defaults (Format chr, an empty Data): libdmclient
    crashes on an item without them.
    """
    cmd_id = ids()
    refs.append(SentRef(msg_id, cmd_id, seq, path, spec.verb))
    spelt = explicit and spec.verb in _VALUE_VERBS
    items = []
    for item in spec.items:
        fmt = item.format or (_DEFAULT_FORMAT if spelt else None)
        items.append(
            Item(
                target=Location(loc_uri=item.target),
                source=Location(loc_uri=item.source) if item.source else None,
                meta=Meta(format=fmt, type=item.type) if (fmt or item.type) else None,
                data="" if spelt and item.data is None else item.data,
            )
        )
    if spec.verb == "Exec" and spec.correlator is not None:
        return Exec(cmd_id=cmd_id, items=tuple(items), correlator=spec.correlator)
    return _ITEM_VERBS[spec.verb](cmd_id=cmd_id, items=tuple(items))


def _response_header(work: _Work, authenticated: bool, with_commands: bool) -> SyncHdr:
    """
    Our SyncHdr: the device's Source as Target and its Target as Source.

    It carries our credential while the session owes it, in a message with
    commands. The Meta announces the largest object we accept (Windows
    ignores Meta in a server's SyncHdr; other DM clients honour it).
    """
    client = work.message.header
    device = work.device
    return SyncHdr(
        session_id=_echo(client.session_id),
        msg_id=str(work.state.next_msg_id),
        target=Location(loc_uri=_echo(client.source.loc_uri)),
        source=Location(loc_uri=_echo(client.target.loc_uri)),
        cred=server_cred(work.state, device.server, device.server_scheme) if with_commands else None,
        meta=Meta(max_obj_size=work.settings.max_obj_size) if authenticated else None,
    )


#: The Alert 1222 a message may have to end with, and its size in each codec (a constant).
_NEXT_MESSAGE = Alert(cmd_id="9999", data=str(int(AlertCode.NEXT_MESSAGE)))
_NEXT_MESSAGE_SIZES: dict[str, int] = {}


def _budget(work: _Work) -> int:
    """
    The bytes left for our commands once the envelope and the statuses are in.
    """
    limit = work.state.max_msg_size or work.settings.default_max_msg_size
    header = _response_header(work, True, True)
    # With Final the envelope is larger (one more element): it bounds both endings.
    used = work.codec.envelope_size(header, True)
    used += sum(work.codec.command_size(c) for c in work.statuses)
    # Room for an Alert 1222 we may have to add.
    alert = _NEXT_MESSAGE_SIZES.get(work.codec.name)
    if alert is None:
        alert = _NEXT_MESSAGE_SIZES[work.codec.name] = work.codec.command_size(_NEXT_MESSAGE)
    return limit - used - alert


def _send_commands(work: _Work, pending: Sequence[PendingCommand]) -> bool:
    """
    Add as many sendable commands as fit; return whether this message ends our package.
    """
    if work.ask_next_message or (not work.message.final and work.state.package is OurPackage.CLOSED):
        # The device's own package goes on: answer "next message", no commands.
        # (Its message without Final is expected while *our* package is open:
        # a client may not close its package before the server closed its own.)
        work.ask_next_message = True
        return False
    if any(not r.chunk for r in work.state.sent):
        return True  # wait for the statuses of what we already sent
    msg_id = str(work.state.next_msg_id)
    by_seq = {c.seq: c for c in pending}
    outgoing = work.state.outgoing
    if outgoing is not None:
        command = by_seq.get(outgoing.seq)
        if command is None:
            work.move(SessionInput.SENDING_STOPPED)
        else:
            return _send_chunk(work, command, outgoing.offset, _budget(work), msg_id)
    answered = {e.seq for e in work.effects if isinstance(e, (CommandAnswered, CommandFailed))}
    view = [
        replace(c, state="done") if c.seq in answered else replace(c, state="queued") if c.seq in work.requeued else c
        for c in pending
    ]
    complete = True
    budget: int | None = None  # measured once there is something to send (encoding it costs)
    for candidate in sendable(view, work.state.user_logged_in):
        refs: list[SentRef] = []
        mark = work.ids.mark()
        built = _build(candidate.spec, work.ids, candidate.seq, "", refs, msg_id, work.settings.explicit_items)
        size = work.codec.command_size(built)
        too_big = chunking.too_big(candidate.spec, work.state.max_obj_size)
        if too_big:
            work.ids.rewind(mark)
            work.effects.append(CommandFailed(candidate.seq, too_big))
            continue
        if budget is None:
            budget = _budget(work)
        if size <= budget:
            work.commands.append(built)
            work.sent.extend(refs)
            work.state = work.state.evolve(sent=work.state.sent + tuple(refs))
            work.effects.append(CommandSent(candidate.seq, work.state.key, msg_id, refs[0].cmd_id))
            budget -= size
            continue
        work.ids.rewind(mark)
        if work.commands:
            complete = False  # the rest goes in the next message of our package
            break
        if chunking.chunkable(candidate.spec):
            return _send_chunk(work, candidate, 0, budget, msg_id)
        work.effects.append(
            CommandFailed(candidate.seq, f"{candidate.spec.verb} of {size} bytes does not fit the device's MaxMsgSize")
        )
    return complete


def _send_chunk(work: _Work, command: PendingCommand, offset: int, budget: int, msg_id: str) -> bool:
    """
    Send the chunk of C{command} that starts at C{offset}; return whether it was the last.
    """
    refs: list[SentRef] = []
    whole = _build_items(command.spec, work.ids, command.seq, "", refs, msg_id, work.settings.explicit_items)
    piece = chunking.next_piece(work.codec, whole, command.seq, offset, budget)
    if piece is None:
        work.move(SessionInput.SENDING_STOPPED)
        work.effects.append(CommandFailed(command.seq, "MaxMsgSize leaves no room for a chunk"))
        return True
    ref = replace(refs[0], chunk=piece.sending is not None)
    work.commands.append(piece.command)
    work.sent.append(ref)
    work.state = work.state.evolve(sent=work.state.sent + (ref,))
    if piece.sending is None:
        work.move(SessionInput.SENDING_STOPPED)
    else:
        work.move(SessionInput.CHUNK_SENT, outgoing=piece.sending)
    if offset == 0:
        work.effects.append(CommandSent(command.seq, work.state.key, msg_id, ref.cmd_id))
    return piece.sending is None
