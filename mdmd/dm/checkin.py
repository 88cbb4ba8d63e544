"""
A DM check-in: the unit of work for one OMA DM message.

L{exchange} checks the client certificate and the device, records the
contact, loads the session state (and our last answer, for a resend) and
the device's pending commands, runs L{mdmd.dm.engine.handle}, applies what
it decided (commands sent and answered, nonces, DevInfo, events and the
completions they report, unenrollment, a push answered) and saves the new
state, all in one transaction. L{mdmd.dm.resource.ManagementResource} only
decodes the request, runs this unit and writes its answer once it committed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography import x509

from mdmd.desired import reconciler as desired
from mdmd.devices import accounts, lifecycle
from mdmd.devices.accounts import DeviceKind
from mdmd.dm import queue as dm_queue
from mdmd.dm.authentication import LoginFailures
from mdmd.dm.command_state import IN_FLIGHT, CommandState
from mdmd.dm.commands import CommandSpec
from mdmd.dm.csp import LAWMO_STATE
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
from mdmd.dm.engine import handle, starts_new_session
from mdmd.dm.state import Authentication, LastAnswer, SessionState
from mdmd.errors import PeerError
from mdmd.notify import channels
from mdmd.notify.channels import ChannelSettings
from mdmd.notify.jobs import BOOTSTRAP, NOTIFICATION, ROUTE_SMS, ROUTE_WNS, answer_push, answer_session
from mdmd.pki import registry
from mdmd.pki.registry import ClientCertificateRefused
from mdmd.store import due
from mdmd.store.models import CommandQueue, Device, DMSession
from mdmd.syncml.codec import Codec
from mdmd.syncml.model import SyncML

__all__ = ["DMSettings", "DeviceRefused", "Exchanged", "apply_effects", "exchange"]

Root = MutableMapping[str, Any]

#: How many pending commands a message considers (enough to fill any message).
PENDING_WINDOW = 500
#: How many events (generic alerts 1226, client events 1224 other than LoginStatus) a device record keeps.
KEEP_ALERTS = 50
#: Why an unenrolled device's pending commands were cancelled.
UNENROLLED_REASON = "the device unenrolled (Alert 1226)"
#: How many answers to our SyncHdr (refusals, invalid statuses) a device record keeps.
KEEP_HEADER_EVENTS = 20


class DeviceRefused(PeerError):
    """
    The device may not run a DM session (unknown, removed, or not who its certificate says).
    """

    http_status = 403
    syncml_status = 403


@dataclass(frozen=True)
class DMSettings:
    session: Settings = Settings()
    #: whether a Windows device's sessions need a TLS client certificate
    #: (unless the device's own setting says otherwise)
    require_client_certificate: bool = True
    #: the same for a classic OMA DM device
    require_client_certificate_omadm: bool = False
    #: the CAs of an operator's device PKI ([https] device_ca_file): their
    #: certificates are honoured for classic devices they name
    device_cas: tuple[x509.Certificate, ...] = ()

    @property
    def certificate_defaults(self) -> Mapping[DeviceKind, bool]:
        """
        Whether a kind's devices need a client certificate unless they say otherwise.
        """
        return {DeviceKind.WINDOWS: self.require_client_certificate, DeviceKind.OMADM: self.require_client_certificate_omadm}
    #: The device kinds we authenticate ourselves to in the first reply of
    #: every session, unasked (L{Settings.send_server_credential}).
    send_server_credential: frozenset[DeviceKind] = frozenset({DeviceKind.OMADM})
    #: desired state: the verification interval, the server id of $SERVER_ID
    profiles: desired.ProfileSettings = desired.ProfileSettings()

    def session_for(self, kind: DeviceKind) -> Settings:
        """
        The engine's settings for a device of this kind.
        """
        return replace(
            self.session,
            send_server_credential=kind in self.send_server_credential,
            explicit_items=kind is DeviceKind.OMADM,
        )
    #: with WNS: what Windows devices' push channels need (queued at new sessions)
    push_channel: ChannelSettings | None = None


@dataclass(frozen=True)
class Exchanged:
    """
    The plain result of one message's unit of work.
    """

    body: bytes
    headers: tuple[tuple[str, str], ...]
    device_id: str
    notes: tuple[tuple[str, dict[str, Any]], ...]  # (log format, fields), logged by the adapter


def _device_auth(device: Device) -> DeviceAuth:
    account = accounts.account_of(device)
    return DeviceAuth(
        device_id=device.device_id,
        client=account.client,
        server=account.server,
        scheme=account.client_auth,
        server_scheme=account.server_auth,
        failures=LoginFailures.from_dict(device.dm_login_failures),
    )


def _checked_device(
    root: Root, certificate: x509.Certificate | None, device_id: str, settings: DMSettings
) -> Device:
    """
    The record of the device that sent the message, if it may run a session.

    A certificate of ours must be the device's (as issued, not revoked); one
    from a device CA must name the device, a classic one. Without a
    certificate, the device's setting (else its kind's) says whether one is
    needed.
    """
    identity = None
    if certificate is not None:
        identity = registry.check_dm_client(root, certificate, settings.device_cas)
        if device_id not in identity.names:
            raise DeviceRefused(f"the certificate of {identity} was presented for device {device_id}")
    device: Device | None = root["devices"].get(device_id)
    if device is None:
        raise DeviceRefused(f"unknown device {device_id}")
    if not lifecycle.manageable(device):
        raise DeviceRefused(f"device {device_id} is {device.status}")
    if identity is None:
        if accounts.requires_certificate(device.client_certificate, device.kind, settings.certificate_defaults):
            raise ClientCertificateRefused("a client certificate is required")
    elif identity.device_ca and device.kind != DeviceKind.OMADM.value:
        raise ClientCertificateRefused(
            f"device {device_id} is a {device.kind} device: a certificate from a device CA "
            "is honoured for classic OMA DM devices only"
        )
    return device


def exchange(
    root: Root,
    certificate: x509.Certificate | None,
    message: SyncML,
    codec: Codec,
    body: bytes,
    hmac_header: str | None,
    now: float,
    settings: DMSettings,
    random: Callable[[int], bytes] = os.urandom,
) -> Exchanged:
    """
    The unit of work for one DM message.

    @raise ClientCertificateRefused: the TLS client certificate is missing
        (when the device needs one), neither ours nor from a device CA,
        revoked, or from a device CA for a Windows device.
    @raise DeviceRefused: the device is unknown, removed or unenrolled, or
        its certificate names another device.
    """
    device_id = message.header.source.loc_uri
    device = _checked_device(root, certificate, device_id, settings)
    lifecycle.record_contact(device, now)

    record: DMSession | None = root["sessions"].get(device_id)
    state = SessionState.from_dict(record.state) if record is not None else None
    last = None
    if record is not None and record.last_answer is not None:
        last = LastAnswer.from_dict(record.last_answer)
    queue = dm_queue.queue_of(root, device_id)
    notes: list[tuple[str, dict[str, Any]]] = []
    new_session = starts_new_session(message, state, now, last, body, hmac_header)
    if new_session:
        requeued = dm_queue.requeue_unanswered(root, queue, now)
        if requeued:
            notes.append(("{device_id}: {count} unanswered command(s) back in the queue",
                          {"count": len(requeued)}))
        if settings.push_channel is not None:
            for target in channels.plan(root, device, queue, settings.push_channel, now):
                notes.append(("{device_id}: queued {target} (WNS channel)", {"target": target}))
    notes += desired.before_message(root, device, queue, now, settings.profiles, new_session)
    pending = []
    for command in dm_queue.pending_commands(queue):
        if CommandState(command.state) not in IN_FLIGHT:
            continue  # accepted: waiting for the device's alert, not for a session
        pending.append(PendingCommand(command.seq, CommandSpec.from_json(command.spec), command.state))
        if len(pending) >= PENDING_WINDOW:
            break

    outcome = handle(
        message,
        codec,
        device=_device_auth(device),
        state=state,
        commands=pending,
        now=now,
        settings=settings.session_for(DeviceKind(device.kind)),
        body=body,
        hmac_header=hmac_header,
        random=random,
        last=last,
    )
    if outcome.response is None:
        notes.append(("{device_id}: message {msg_id} of session {session_id} resent: our answer again",
                      {"msg_id": message.header.msg_id, "session_id": message.header.session_id}))
        return Exchanged(outcome.body, outcome.headers, device_id, tuple(notes))
    apply_effects(root, device, queue, outcome.effects, now, message.header.session_id, notes)
    moved = [effect.seq for effect in outcome.effects if isinstance(effect, _COMMAND_EFFECTS)]
    notes += desired.after_message(root, device, queue, moved, now, settings.profiles)
    if _authenticates(state, outcome.state):
        for job in answer_session(root, device_id, outcome.state.started_at, now):
            notes.append((_SESSION_ANSWERS[job.kind, job.route], {"seq": job.seq}))
    if record is None:
        record = root["sessions"][device_id] = DMSession(outcome.state.to_dict())
    else:
        record.state = outcome.state.to_dict()
    if outcome.last is not None or record.last_answer is not None:
        record.last_answer = None if outcome.last is None else outcome.last.to_dict()
    # Filed once, at its first deadline (the sweeper moves the entry on): no index write per message.
    due.keep_filed(root["session_deadlines"], record, outcome.state.deadline, device_id)
    return Exchanged(outcome.body, outcome.headers, device_id, tuple(notes))


#: What a job an authenticated session answered (L{answer_session}) leaves in the log, by (kind, route).
_SESSION_ANSWERS: dict[tuple[str, str], str] = {
    (BOOTSTRAP, ROUTE_SMS): "{device_id}: authenticated session ends bootstrap #{seq}",
    (NOTIFICATION, ROUTE_WNS): "{device_id}: authenticated session answers WNS push #{seq}",
}


def _authenticates(before: SessionState | None, after: SessionState) -> bool:
    """
    Whether this message authenticated the device in its session (the first
    that did: a bootstrap it answers is answered once).
    """
    if after.authentication is Authentication.NONE:
        return False
    return before is None or before.key != after.key or before.authentication is Authentication.NONE


# -- applying the engine's effects ------------------------------------------------------------


@dataclass
class _Applying:
    """
    What the effects of one message are applied to, inside its unit of work.
    """

    root: Root
    device: Device
    queue: CommandQueue
    now: float
    #: (log format, fields) for the adapter to log once the transaction committed
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: the SessionID of the message
    session_id: str = ""

    def note(self, text: str, **fields: Any) -> None:
        self.notes.append((text, fields))

    def header_event(self, event: str, status: str, text: str, **fields: Any) -> None:
        """
        Keep what the device answered to our SyncHdr on its record (the last
        L{KEEP_HEADER_EVENTS}), and log it.
        """
        entry = {"time": self.now, "session_id": self.session_id, "event": event, "status": status}
        self.device.header_events = (tuple(self.device.header_events) + (entry,))[-KEEP_HEADER_EVENTS:]
        self.note(text, status=status, session_id=self.session_id, **fields)


def _new_session(work: _Applying, effect: NewSession) -> None:
    pass  # its unanswered commands were requeued before the engine ran (starts_new_session)


def _client_nonce(work: _Applying, effect: ClientNonce) -> None:
    work.device.dm_client_nonce = effect.nonce


def _server_nonce(work: _Applying, effect: ServerNonce) -> None:
    work.device.dm_server_nonce = effect.nonce


def _authentication_failed(work: _Applying, effect: AuthenticationFailed) -> None:
    failures = effect.failures
    work.device.dm_login_failures = failures.to_dict()
    work.note(
        "{device_id}: authentication failed ({code}, {scheme}), {count} failure(s) lately",
        scheme=effect.scheme.value,
        code=effect.code,
        count=failures.count,
    )
    if failures.locked_until:
        work.note(
            "{device_id}: too many failed authentications ({count}): refused for {seconds:.0f} s",
            scheme=effect.scheme.value,
            count=failures.count,
            seconds=failures.locked_until - work.now,
        )


def _authentication_locked(work: _Applying, effect: AuthenticationLocked) -> None:
    work.note(
        "{device_id}: message refused (417) unread: {count} failed authentications, locked out {seconds:.0f} s more",
        count=effect.failures.count,
        seconds=effect.failures.locked_until - work.now,
    )


def _login_failures_cleared(work: _Applying, effect: LoginFailuresCleared) -> None:
    work.device.dm_login_failures = None


def _devinfo(work: _Applying, effect: DevInfoReported) -> None:
    if dict(effect.values) != work.device.devinfo:
        work.device.devinfo = dict(effect.values)
        desired.facts_changed(work.root, work.device)


def _login_status(work: _Applying, effect: LoginStatus) -> None:
    work.device.login_status = effect.value


def _device_event(work: _Applying, code: str, effect: GenericAlert | ClientEvent) -> None:
    """
    Keep an alert item on the device record (the last L{KEEP_ALERTS}), and
    finish the accepted (202) command whose outcome it reports, if any.
    """
    alert = {"time": work.now, "alert": code, **effect.__dict__}
    work.device.alerts = (tuple(work.device.alerts or ()) + (alert,))[-KEEP_ALERTS:]
    work.note("{device_id}: alert {code} {type} {data}", code=code, type=effect.type, data=effect.data)
    completed = dm_queue.complete_accepted(work.root, work.queue, effect.__dict__, work.now)
    if completed is not None:
        work.note("{device_id}: the alert reports the outcome of command {seq}", seq=completed)


def _generic_alert(work: _Applying, effect: GenericAlert) -> None:
    _device_event(work, "1226", effect)


def _client_event(work: _Applying, effect: ClientEvent) -> None:
    _device_event(work, "1224", effect)


def _unenrolled(work: _Applying, effect: Unenrolled) -> None:
    lifecycle.unenroll(work.root, work.device, work.now)
    desired.forget(work.root, work.device.device_id)
    work.note("{device_id}: the user unenrolled the device; its certificate is revoked")
    closed = dm_queue.close_pending(work.root, work.queue, UNENROLLED_REASON, work.now)
    if closed:
        work.note("{device_id}: {count} pending command(s) cancelled: the device left", count=len(closed))


def _message_refused(work: _Applying, effect: MessageRefused) -> None:
    work.note("{device_id}: message refused (403), nothing applied: {reason}", reason=effect.reason)


def _command_sent(work: _Applying, effect: CommandSent) -> None:
    sent_in = (effect.session_key, effect.msg_id, effect.cmd_id)
    dm_queue.mark_sent(work.root, work.queue, effect.seq, sent_in, work.now)


def _command_answered(work: _Applying, effect: CommandAnswered) -> None:
    dm_queue.mark_answered(
        work.root,
        work.queue,
        effect.seq,
        effect.state,
        effect.status,
        effect.statuses,
        effect.results,
        work.now,
        effect.note,
    )
    if effect.note is not None:
        work.note("{device_id}: command {seq} answered {status}: {note}", seq=effect.seq, status=effect.status, note=effect.note)
    if _inventory(work.device, effect.results):
        desired.facts_changed(work.root, work.device)
    if effect.state == CommandState.HALTED.value:
        work.note("{device_id}: command {seq} answered 214: no more commands in this session", seq=effect.seq)
    command = work.queue.commands[effect.seq]
    channels.record_answer(work.device, command.spec, effect.state, effect.status, effect.results, work.now)


def _command_failed(work: _Applying, effect: CommandFailed) -> None:
    dm_queue.mark_failed(work.root, work.queue, effect.seq, effect.error, work.now)
    work.note("{device_id}: command {seq} failed: {error}", seq=effect.seq, error=effect.error)


def _header_refused(work: _Applying, effect: HeaderRefused) -> None:
    work.header_event(
        "error", str(effect.code), "{device_id}: the device answered our SyncHdr with {status} in session {session_id}"
    )


def _header_status_invalid(work: _Applying, effect: HeaderStatusInvalid) -> None:
    work.header_event(
        "invalid",
        effect.data,
        "{device_id}: the device answered our SyncHdr with {status!r}, not a status code, in session "
        "{session_id} (libdmclient answers 0 until the server authenticated itself)",
    )


def _server_challenged(work: _Applying, effect: ServerChallenged) -> None:
    if effect.credential_sent:
        work.header_event(
            "refused", str(effect.code), "{device_id}: the device refused our credential ({status}) in session {session_id}"
        )
    else:
        work.header_event(
            "challenged", str(effect.code), "{device_id}: the device asked for our credential ({status}) in session {session_id}"
        )


def _command_requeued(work: _Applying, effect: CommandRequeued) -> None:
    dm_queue.requeue(work.root, work.queue, effect.seq, work.now)
    work.note(
        "{device_id}: command {seq} answered {status} before the device authenticated us: sent again",
        seq=effect.seq,
        status=effect.status,
    )


def _session_aborted(work: _Applying, effect: SessionAborted) -> None:
    work.note("{device_id}: the device aborted the session")


def _server_initiated(work: _Applying, effect: ServerInitiated) -> None:
    work.device.last_server_initiated = (effect.session_id, work.now)
    answered = answer_push(work.root, work.device.device_id, effect.session_id, work.now)
    if answered is not None:
        work.note(
            "{device_id}: session {session_id} answers push #{seq}",
            session_id=effect.session_id,
            seq=answered.seq,
        )


#: The effects that move one of our commands (desired state follows its own).
_COMMAND_EFFECTS = (CommandSent, CommandAnswered, CommandFailed, CommandRequeued)

#: What each kind of effect does to the store. The handlers differ in the
#: effect type they take, so the table's values are typed loosely.
_EFFECTS: dict[type, Callable[[_Applying, Any], None]] = {
    NewSession: _new_session,
    ClientNonce: _client_nonce,
    ServerNonce: _server_nonce,
    AuthenticationFailed: _authentication_failed,
    AuthenticationLocked: _authentication_locked,
    LoginFailuresCleared: _login_failures_cleared,
    DevInfoReported: _devinfo,
    LoginStatus: _login_status,
    GenericAlert: _generic_alert,
    ClientEvent: _client_event,
    Unenrolled: _unenrolled,
    MessageRefused: _message_refused,
    CommandSent: _command_sent,
    CommandAnswered: _command_answered,
    CommandFailed: _command_failed,
    CommandRequeued: _command_requeued,
    HeaderRefused: _header_refused,
    HeaderStatusInvalid: _header_status_invalid,
    ServerChallenged: _server_challenged,
    SessionAborted: _session_aborted,
    ServerInitiated: _server_initiated,
}


def apply_effects(
    root: Root,
    device: Device,
    queue: CommandQueue,
    effects: Iterable[Effect],
    now: float,
    session_id: str = "",
    notes: list[tuple[str, dict[str, Any]]] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """
    Apply the engine's effects to the device's records, in order, each
    through its handler in L{_EFFECTS}; return the notes to log (appended to C{notes}).
    """
    work = _Applying(root, device, queue, now, [] if notes is None else notes, session_id)
    for effect in effects:
        applier = _EFFECTS.get(type(effect))
        if applier is None:
            raise TypeError(f"no handler for the session effect {effect!r}")
        applier(work, effect)
    return work.notes


_MISSING = object()


def _inventory(device: Device, results: tuple[dict[str, Any], ...]) -> bool:
    """
    Keep the latest value of every DevInfo/DevDetail node (and the LAWMO
    state) the device reported; return whether any changed.
    """
    found = {
        r["source"]: r.get("data")
        for r in results
        if r.get("source", "") and r["source"].startswith(("./DevDetail/", "./DevInfo/", LAWMO_STATE))
    }
    current = device.inventory or {}
    if any(current.get(uri, _MISSING) != value for uri, value in found.items()):
        device.inventory = {**current, **found}
        return True
    return False
