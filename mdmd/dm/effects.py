"""
What the DM session engine takes besides the message, and the effects it hands back.

The inputs (L{DeviceAuth}, L{PendingCommand}, L{Settings}) are what the
adapter reads from the store for one message; the effects are what the
adapter applies in the same transaction: nonces to store, commands sent and
answered, what the device reported. All are frozen values; L{Effect} is
their union, so an adapter can dispatch on the type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from mdmd.dm.authentication import AuthScheme, Credentials, LoginFailures
from mdmd.dm.commands import CommandSpec
from mdmd.dm.state import ResultValue

__all__ = [
    "DeviceAuth",
    "Settings",
    "PendingCommand",
    "Effect",
    "NewSession",
    "ClientNonce",
    "ServerNonce",
    "AuthenticationFailed",
    "AuthenticationLocked",
    "LoginFailuresCleared",
    "DevInfoReported",
    "LoginStatus",
    "GenericAlert",
    "ClientEvent",
    "Unenrolled",
    "SessionAborted",
    "MessageRefused",
    "ServerInitiated",
    "HeaderRefused",
    "HeaderStatusInvalid",
    "ServerChallenged",
    "CommandSent",
    "CommandRequeued",
    "CommandAnswered",
    "CommandFailed",
]


# -- inputs --------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceAuth:
    """
    What the engine knows of the device: its id and both credentials from enrollment.

    C{client} (w7 APPAUTH level APPSRV, DMAcc CLCRED) is how the device
    authenticates to us; C{server} (level CLIENT, DMAcc SRVCRED) is how we
    authenticate to the device. C{scheme} is the APPSRV AAUTHTYPE (a device
    may switch to HMAC on its own); C{server_scheme} the CLIENT one.
    """

    device_id: str
    client: Credentials
    server: Credentials
    scheme: AuthScheme = AuthScheme.DIGEST
    server_scheme: AuthScheme = AuthScheme.DIGEST
    #: its failed authentications lately, whatever the session (the device record's)
    failures: LoginFailures = LoginFailures()


@dataclass(frozen=True)
class Settings:
    session_timeout: float = 1800.0
    #: Used when the device announces no MaxMsgSize (Intune uses the same).
    default_max_msg_size: int = 524288
    #: The largest object we accept from a device (announced in our SyncHdr Meta).
    max_obj_size: int = 4 * 1024 * 1024
    #: Failed authentications of a device, in a session or across sessions
    #: (L{LoginFailures}), after which it is refused for C{auth_lockout} seconds.
    max_auth_failures: int = 3
    auth_lockout: float = 900.0
    #: Whether our credential goes in the first reply of every session (with
    #: commands) unasked, as OMA DM devices require; otherwise only once the
    #: device challenges us. The adapter sets it per device kind.
    send_server_credential: bool = False
    #: Whether Add and Replace items always carry Meta/Format (chr unless
    #: given) and a Data element (empty unless given), the OMA DM defaults
    #: spelt out: libdmclient crashes without them. The adapter sets it per device kind.
    explicit_items: bool = False


@dataclass(frozen=True)
class PendingCommand:
    """
    A queued or sent command as the engine sees it.
    """

    seq: int
    spec: CommandSpec
    state: str  # queued | sent (an accepted command waits for its alert, not for us)

    @property
    def scope(self) -> str:
        return self.spec.scope


# -- effects --------------------------------------------------------------------------


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
class AuthenticationFailed:
    """
    The device's proof (C{scheme}) was missing (407) or wrong (401): its failures
    now (store them); C{failures.locked_until} is set once they went over the limit.
    """

    scheme: AuthScheme
    code: int
    failures: LoginFailures


@dataclass(frozen=True)
class AuthenticationLocked:
    """
    A message refused unread (417) because the device failed too often lately.
    """

    failures: LoginFailures


@dataclass(frozen=True)
class LoginFailuresCleared:
    """
    The device authenticated: its failures lately are forgotten.
    """


@dataclass(frozen=True)
class DevInfoReported:
    values: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class LoginStatus:
    value: str  # user | others | none


@dataclass(frozen=True)
class GenericAlert:
    """
    One item of a Generic Alert (1226): an event the device reports (a CSP's
    completion, the unenrollment). Data that is not UTF-8 comes as base64.
    """

    type: str | None
    format: str | None
    mark: str | None
    source: str | None
    data: str | None
    correlator: str | None


@dataclass(frozen=True)
class ClientEvent:
    """
    One item of a Client Event alert (1224) other than LoginStatus (the
    sync type, an MSI installation's completion...), fields as in L{GenericAlert}.
    """

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
class MessageRefused:
    """
    The session could not take the message (see L{mdmd.dm.state.SessionInput.OUT_OF_STEP}):
    it was answered 403 and nothing of it was applied.
    """

    reason: str


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
class HeaderStatusInvalid:
    """
    The device answered our SyncHdr with something that is not a status code.

    libdmclient answers a literal 0 until the server has authenticated itself.
    """

    data: str


@dataclass(frozen=True)
class ServerChallenged:
    """
    The device answered our SyncHdr 401 or 407: it refused our credential (if we sent one) or wants one.
    """

    code: int
    #: Whether the message it answered carried our credential.
    credential_sent: bool


@dataclass(frozen=True)
class CommandSent:
    seq: int
    session_key: str
    msg_id: str
    cmd_id: str


@dataclass(frozen=True)
class CommandAnswered:
    """
    The device's verdict on a command: C{state} is the queue state it moves to
    (C{done}, C{failed}, C{accepted}, C{halted}, C{not-executed}: see
    L{mdmd.dm.command_state.answered_state}).
    """

    seq: int
    state: str
    status: int
    statuses: tuple[tuple[str, int], ...]
    results: tuple[ResultValue, ...]
    #: What to know about how it was answered (a group settled without its own status).
    note: str | None = None


@dataclass(frozen=True)
class CommandRequeued:
    """
    The device refused a command (401/407) because it had not authenticated us: it goes out again.
    """

    seq: int
    status: int


@dataclass(frozen=True)
class CommandFailed:
    """
    We could not send a command at all (too large for the device).
    """

    seq: int
    error: str


Effect = Union[
    NewSession,
    ClientNonce,
    ServerNonce,
    AuthenticationFailed,
    AuthenticationLocked,
    LoginFailuresCleared,
    DevInfoReported,
    LoginStatus,
    GenericAlert,
    ClientEvent,
    Unenrolled,
    SessionAborted,
    MessageRefused,
    ServerInitiated,
    HeaderRefused,
    HeaderStatusInvalid,
    ServerChallenged,
    CommandSent,
    CommandAnswered,
    CommandRequeued,
    CommandFailed,
]
