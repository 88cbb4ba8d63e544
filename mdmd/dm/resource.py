"""
The OMA DM endpoint (C{/ManagementServer/MDM.svc}): a thin adapter around the session engine.

Each POST is decoded with the codec its Content-Type names, then one unit of
work checks the client certificate and the device, loads the session state
and the device's pending commands, runs L{mdmd.dm.session.handle}, applies
what it decided (commands sent and answered, nonces, DevInfo, unenrollment)
and saves the new state. The answer goes back, in the request's encoding,
only after that transaction committed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request

from mdmd.dm import queue as dm_queue
from mdmd.dm.commands import CommandSpec
from mdmd.dm.authentication import AuthScheme, Credentials
from mdmd.dm.effects import (
    ClientNonce,
    CommandAnswered,
    CommandFailed,
    CommandSent,
    DeviceAuth,
    DevInfoReported,
    GenericAlert,
    HeaderRefused,
    LoginStatus,
    PendingCommand,
    ServerInitiated,
    ServerNonce,
    SessionAborted,
    Settings,
    Unenrolled,
)
from mdmd.dm.engine import handle, starts_new_session
from mdmd.dm.state import SessionState
from mdmd.errors import PeerError
from mdmd.notify.jobs import answer_push
from mdmd.pki import registry
from mdmd.pki.registry import ClientCertificateRefused
from mdmd.pki.tls import peer_certificate
from mdmd.site import AsyncResource, Response
from mdmd.store.models import DMSession
from mdmd.store.runner import StoreService
from mdmd.syncml.codec import Codec, codec_for_content_type
from mdmd.syncml.model import SyncML, SyncMLDecodeError
from mdmd.syncml.wbxml import WBXMLDecodeError

__all__ = ["ManagementResource", "DMSettings", "DeviceRefused", "exchange"]

log = Logger()

Root = MutableMapping[str, Any]

#: How many pending commands a message considers (enough to fill any message).
PENDING_WINDOW = 500
#: "Last contact" is kept to this many seconds, so that the device record is
#: not rewritten by every message of a session.
LAST_CONTACT_RESOLUTION = 60.0
#: How many generic alerts a device record keeps.
KEEP_ALERTS = 50


class DeviceRefused(PeerError):
    """
    The device may not run a DM session (unknown, removed, or not who its certificate says).
    """


@dataclass(frozen=True)
class DMSettings:
    session: Settings = Settings()
    require_client_certificate: bool = True


@dataclass(frozen=True)
class Exchanged:
    """
    The plain result of one message's unit of work.
    """

    body: bytes
    headers: tuple[tuple[str, str], ...]
    device_id: str
    notes: tuple[tuple[str, dict[str, Any]], ...]  # (log format, fields), logged by the adapter


def _device_auth(device: Any) -> DeviceAuth:
    return DeviceAuth(
        device_id=device.device_id,
        client=Credentials(device.dm_client_name, device.dm_client_secret, device.dm_client_nonce),
        server=Credentials(device.dm_server_name, device.dm_server_secret, device.dm_server_nonce),
        scheme=AuthScheme.BASIC if device.dm_client_auth_type.upper() == "BASIC" else AuthScheme.DIGEST,
    )


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
        (when required), not ours, or revoked.
    @raise DeviceRefused: the device is unknown, removed or unenrolled, or
        its certificate names another device.
    """
    device_id = message.header.source.loc_uri
    if certificate is not None:
        info = registry.check_client(root, certificate)
        if info.device_id != device_id:
            raise DeviceRefused(
                f"the certificate of {info.device_id} was presented for device {device_id}"
            )
    elif settings.require_client_certificate:
        raise ClientCertificateRefused("a client certificate is required")
    device = root["devices"].get(device_id)
    if device is None:
        raise DeviceRefused(f"unknown device {device_id}")
    if device.status != "enrolled":
        raise DeviceRefused(f"device {device_id} is {device.status}")

    record = root["sessions"].get(device_id)
    state = SessionState.from_dict(record.state) if record is not None else None
    queue = dm_queue.queue_of(root, device_id)
    notes: list[tuple[str, dict[str, Any]]] = []
    if starts_new_session(message, state, now):
        requeued = dm_queue.requeue_unanswered(queue, now)
        if requeued:
            notes.append(("{device_id}: {count} unanswered command(s) back in the queue",
                          {"count": len(requeued)}))
    pending = []
    for command in dm_queue.pending_commands(queue):
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
        settings=settings.session,
        body=body,
        hmac_header=hmac_header,
        random=random,
    )
    _apply(root, device, queue, outcome.effects, now, notes)
    if record is None:
        root["sessions"][device_id] = DMSession(outcome.state.to_dict())
    else:
        record.state = outcome.state.to_dict()
    if device.last_contact is None or now - device.last_contact >= LAST_CONTACT_RESOLUTION:
        device.last_contact = now
    return Exchanged(outcome.body, outcome.headers, device_id, tuple(notes))


def _apply(root: Root, device: Any, queue: Any, effects: Any, now: float, notes: list) -> None:
    for effect in effects:
        if isinstance(effect, ClientNonce):
            device.dm_client_nonce = effect.nonce
        elif isinstance(effect, ServerNonce):
            device.dm_server_nonce = effect.nonce
        elif isinstance(effect, DevInfoReported):
            if dict(effect.values) != device.devinfo:
                device.devinfo = dict(effect.values)
        elif isinstance(effect, LoginStatus):
            device.login_status = effect.value
        elif isinstance(effect, GenericAlert):
            alert = {"time": now, **effect.__dict__}
            device.alerts = (tuple(device.alerts or ()) + (alert,))[-KEEP_ALERTS:]
            notes.append(("{device_id}: generic alert {type} {data}", {"type": effect.type, "data": effect.data}))
        elif isinstance(effect, Unenrolled):
            device.status = "unenrolled"
            device.unenrolled_at = now
            if device.cert_serial is not None and device.cert_serial in root["certs"]:
                registry.revoke(root, device.cert_serial, "cessationOfOperation", now)
            notes.append(("{device_id}: the user unenrolled the device; its certificate is revoked", {}))
        elif isinstance(effect, CommandSent):
            dm_queue.mark_sent(queue, effect.seq, (effect.session_key, effect.msg_id, effect.cmd_id), now)
        elif isinstance(effect, CommandAnswered):
            dm_queue.mark_answered(
                queue, effect.seq, effect.state, effect.status, effect.statuses, effect.results, now
            )
            _inventory(device, effect.results)
        elif isinstance(effect, CommandFailed):
            dm_queue.mark_failed(queue, effect.seq, effect.error, now)
            notes.append(("{device_id}: command {seq} failed: {error}", {"seq": effect.seq, "error": effect.error}))
        elif isinstance(effect, HeaderRefused):
            notes.append(("{device_id}: the device answered our SyncHdr with {code}", {"code": effect.code}))
        elif isinstance(effect, SessionAborted):
            notes.append(("{device_id}: the device aborted the session", {}))
        elif isinstance(effect, ServerInitiated):
            device.last_server_initiated = (effect.session_id, now)
            answered = answer_push(root, device.device_id, effect.session_id, now)
            if answered is not None:
                notes.append(("{device_id}: session {session_id} answers push #{seq}",
                              {"session_id": effect.session_id, "seq": answered.seq}))


_MISSING = object()


def _inventory(device: Any, results: Any) -> None:
    """
    Keep the latest value of every DevInfo/DevDetail node the device reported.
    """
    found = {
        r["source"]: r.get("data")
        for r in results
        if r.get("source", "") and r["source"].startswith(("./DevDetail/", "./DevInfo/"))
    }
    current = device.inventory or {}
    if any(current.get(uri, _MISSING) != value for uri, value in found.items()):
        device.inventory = {**current, **found}


class ManagementResource(AsyncResource):
    """
    POST only: SyncML in XML or WBXML, answered in the same encoding.
    """

    def __init__(
        self,
        store: StoreService,
        clock: IReactorTime,
        settings: DMSettings = DMSettings(),
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        super().__init__()
        self._store = store
        self._clock = clock
        self._settings = settings
        self._random = random

    async def handle_POST(self, request: Request) -> Response:
        codec = codec_for_content_type(request.getHeader(b"content-type"))
        if codec is None:
            return Response(
                b"expected application/vnd.syncml.dm+xml or application/vnd.syncml.dm+wbxml\n",
                code=415,
            )
        body = request.content.read()
        message = codec.decode(body)
        request.device_id = message.header.source.loc_uri
        hmac_header = request.getHeader(b"x-syncml-hmac")
        result = await self._store.transact(
            exchange,
            peer_certificate(request),
            message,
            codec,
            body,
            hmac_header.decode("latin-1") if hmac_header else None,
            self._clock.seconds(),
            self._settings,
            self._random,
        )
        for text, fields in result.notes:
            log.info(text, device_id=result.device_id, **fields)
        return Response(
            result.body,
            content_type=codec.content_type.encode("ascii"),
            headers=tuple((k.encode("ascii"), v.encode("latin-1")) for k, v in result.headers),
        )

    def peer_error(self, request: Request, error: PeerError) -> Response:
        device = getattr(request, "device_id", None)
        if isinstance(error, (ClientCertificateRefused, DeviceRefused)):
            log.info("DM session refused for {device_id}: {reason}", device_id=device, reason=str(error))
            return Response(f"{error}\n".encode("utf-8"), code=403)
        if isinstance(error, WBXMLDecodeError):
            log.info("undecodable WBXML from {peer}: {reason}", peer=str(request.getClientAddress()), reason=str(error))
            return Response(f"{error}\n".encode("utf-8"), code=415)
        if isinstance(error, SyncMLDecodeError):
            log.info("undecodable SyncML from {peer}: {reason}", peer=str(request.getClientAddress()), reason=str(error))
        return super().peer_error(request, error)
