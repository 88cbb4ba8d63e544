"""
DM application-layer authentication, both ways, per OMA DM Security and MS-MDM.

The device proves who it is with the scheme it was enrolled with (w7 APPSRV
AAUTHTYPE: an MD5 digest or Basic Cred in package 1, answered 212), or with
a MAC of every message (x-syncml-hmac, answered 200 each time); L{SCHEMES}
says, per L{AuthScheme}, how a proof is checked and what a success or a
challenge carries. L{authenticate} turns one message into a L{Verdict}: the
SyncHdr status, its challenge, and the input for the state machine.

The other way, we authenticate ourselves to the device with the CLIENT-level
credentials (DMAcc SRVCRED) in the scheme of its server auth type: an MD5
digest or Basic Cred in our SyncHdr (L{server_cred}) while the session owes
it (from its first reply where the device's kind says so, or once the device
challenges us, until it answers 212), or our MAC of every answer
(L{response_headers}). L{header_verdict} reads what the device answered to
our SyncHdr.

Failed attempts count per device as well as per session (L{LoginFailures},
kept on the device record): a client that starts session after session,
whatever its SessionID, is still stopped once it has failed more than
C{max_failures} times, and refused without a look at its proof (417 Retry
later, no challenge, so no nonce minted) until C{lockout} seconds have
passed since its last failure.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from mdmd.dm.state import Authentication, ServerCredential, SessionInput, SessionState
from mdmd.syncml import auth
from mdmd.syncml.codes import StatusCode, parse_code
from mdmd.syncml.model import Chal, Cred, Meta, Status

__all__ = [
    "AuthScheme",
    "Credentials",
    "LoginFailures",
    "Proof",
    "SchemeRules",
    "SCHEMES",
    "Verdict",
    "authenticate",
    "challenge",
    "server_cred",
    "server_nonce",
    "nonce_per_message",
    "response_headers",
    "offered_nonce",
    "HeaderVerdict",
    "header_verdict",
]


class AuthScheme(enum.Enum):
    """
    How a device proves who it is.
    """

    BASIC = "basic"
    DIGEST = "digest"
    HMAC = "hmac"


@dataclass(frozen=True)
class Credentials:
    """
    One direction's DM credentials; C{nonce} is the one the verifier expects next.
    """

    name: str
    secret: str
    nonce: bytes


@dataclass(frozen=True)
class LoginFailures:
    """
    A device's failed authentications, across its sessions: how many, and when the latest was.

    The count starts afresh after C{lockout} seconds without a failure, and
    when the device authenticates (it knows its secret: what failed were
    stale nonces). Stored on the device record as plain builtins
    (L{to_dict}, L{from_dict}).
    """

    count: int = 0
    last: float = 0.0
    #: Refused until then (0: not locked out); set by the failure that went over the limit.
    locked_until: float = 0.0

    def recent(self, now: float, lockout: float) -> int:
        """
        The failures that still count at C{now}.
        """
        return self.count if now - self.last < lockout else 0

    def locked(self, now: float) -> bool:
        return now < self.locked_until

    def to_dict(self) -> dict[str, float]:
        return {"count": self.count, "last": self.last, "locked_until": self.locked_until}

    @classmethod
    def from_dict(cls, record: Mapping[str, float] | None) -> LoginFailures:
        if not record:
            return cls()
        return cls(int(record.get("count", 0)), float(record.get("last", 0.0)), float(record.get("locked_until", 0.0)))


@dataclass(frozen=True)
class Proof:
    """
    What one message offers as proof of the device's identity.
    """

    cred: Cred | None
    #: SyncHdr/Source/LocName: with a digest it must name the client credential.
    loc_name: str | None
    hmac_header: str | bytes | None
    body: bytes


#: proof, the credentials it must match → whether it does (AuthError: unreadable).
Verifier = Callable[[Proof, Credentials], bool]


def _verify_basic(proof: Proof, client: Credentials) -> bool:
    assert proof.cred is not None
    return auth.verify_basic(proof.cred.data, client.name, client.secret)


def _verify_digest(proof: Proof, client: Credentials) -> bool:
    assert proof.cred is not None
    return (proof.loc_name is None or proof.loc_name == client.name) and auth.verify_md5(
        proof.cred.data, client.name, client.nonce, password=client.secret
    )


def _verify_hmac(proof: Proof, client: Credentials) -> bool:
    assert proof.hmac_header is not None
    parsed = auth.parse_hmac_header(proof.hmac_header)
    return parsed.username == client.name and auth.verify_hmac(
        parsed, client.nonce, proof.body, password=client.secret
    )


@dataclass(frozen=True)
class SchemeRules:
    """
    One scheme: how its proof is checked, and what a success and a challenge carry.
    """

    #: The Meta Type of its Cred and Chal (Format is always b64).
    meta_type: str
    verify: Verifier
    #: The SyncHdr status of a success: 212 (no more credentials this session) or 200.
    accepted: StatusCode
    #: The state machine's input on success.
    input: SessionInput
    #: Challenges and successes carry a fresh NextNonce (the device's next nonce).
    nonce: bool
    #: A success resets the count of failed attempts (HMAC keeps counting for the session).
    resets_failures: bool
    #: Our own credential in this scheme, for the SyncHdr (None: HMAC, a MAC in an HTTP header).
    ours: Callable[[Credentials], Cred] | None = None


def _basic_cred(server: Credentials) -> Cred:
    return Cred(meta=Meta(type=auth.AUTH_BASIC, format="b64"), data=auth.basic_cred_data(server.name, server.secret))


def _md5_cred(server: Credentials) -> Cred:
    return Cred(
        meta=Meta(type=auth.AUTH_MD5, format="b64"),
        data=auth.md5_cred_data(server.name, server.nonce, password=server.secret),
    )


SCHEMES: Final[Mapping[AuthScheme, SchemeRules]] = {
    AuthScheme.BASIC: SchemeRules(
        auth.AUTH_BASIC,
        _verify_basic,
        StatusCode.AUTHENTICATION_ACCEPTED,
        SessionInput.CREDENTIAL_ACCEPTED,
        nonce=False,
        resets_failures=True,
        ours=_basic_cred,
    ),
    AuthScheme.DIGEST: SchemeRules(
        auth.AUTH_MD5,
        _verify_digest,
        StatusCode.AUTHENTICATION_ACCEPTED,
        SessionInput.CREDENTIAL_ACCEPTED,
        nonce=True,
        resets_failures=True,
        ours=_md5_cred,
    ),
    AuthScheme.HMAC: SchemeRules(
        auth.AUTH_MAC,
        _verify_hmac,
        StatusCode.OK,
        SessionInput.HMAC_ACCEPTED,
        nonce=True,
        resets_failures=False,
    ),
}

#: The scheme a Cred's Meta Type names (HMAC travels in an HTTP header, never in a Cred).
_CRED_SCHEMES: Final = {SCHEMES[s].meta_type: s for s in (AuthScheme.BASIC, AuthScheme.DIGEST)}


@dataclass(frozen=True)
class Verdict:
    """
    How one message authenticated: its SyncHdr status and what the session makes of it.
    """

    code: StatusCode
    input: SessionInput
    #: Failed attempts so far in this session.
    failures: int
    chal: Chal | None = None
    #: The nonce C{chal} gives the device for its next credential (store it).
    nonce: bytes | None = None
    #: The scheme whose proof was missing or wrong (None: accepted, or locked out).
    failed: AuthScheme | None = None
    #: Refused unread: the device failed too often lately (L{LoginFailures}).
    locked: bool = False

    @property
    def accepted(self) -> bool:
        """
        Whether the message's commands are read (else each is answered with C{code}).
        """
        return self.code in (StatusCode.OK, StatusCode.AUTHENTICATION_ACCEPTED)


def authenticate(
    state: SessionState,
    scheme: AuthScheme,
    client: Credentials,
    proof: Proof,
    max_failures: int,
    random: Callable[[int], bytes],
    recent_failures: int = 0,
    locked: bool = False,
) -> Verdict:
    """
    Check one message of a device enrolled with C{scheme} and credentials C{client}.

    A message with an x-syncml-hmac header is checked by its MAC, whatever
    the device's scheme; once a session uses HMAC, every message must. A
    session authenticated by a credential needs no more. Otherwise the Cred
    must be of the device's scheme. A failure answers 401 (bad) or 407
    (missing) with a challenge, until more than C{max_failures} in the
    session or lately on the device (C{recent_failures}, L{LoginFailures}).
    A device C{locked} out is answered 417 unread, but in a session it
    authenticated before the lockout.
    """
    if locked and state.authentication is Authentication.NONE:
        return Verdict(StatusCode.RETRY_LATER, SessionInput.GIVE_UP, state.auth_failures, locked=True)
    limit = _Limit(max_failures, recent_failures, random)
    if proof.hmac_header is not None:
        return _check(state, AuthScheme.HMAC, client, proof, limit)
    if state.authentication is Authentication.HMAC:
        return _refuse(state, StatusCode.MISSING_CREDENTIALS, AuthScheme.HMAC, limit)
    if state.authentication is Authentication.CREDENTIAL:
        return Verdict(StatusCode.OK, SessionInput.ALREADY_AUTHENTICATED, state.auth_failures)
    if proof.cred is None:
        return _refuse(state, StatusCode.MISSING_CREDENTIALS, scheme, limit)
    meta_type = proof.cred.meta.type if proof.cred.meta is not None else None
    if _CRED_SCHEMES.get(meta_type or "") is not scheme:
        return _refuse(state, StatusCode.INVALID_CREDENTIALS, scheme, limit)
    return _check(state, scheme, client, proof, limit)


@dataclass(frozen=True)
class _Limit:
    """
    What a failure is counted against: the limit, the device's failures lately, and the nonce source.
    """

    max_failures: int
    recent_failures: int
    random: Callable[[int], bytes]


def _check(state: SessionState, scheme: AuthScheme, client: Credentials, proof: Proof, limit: _Limit) -> Verdict:
    rules = SCHEMES[scheme]
    try:
        ok = rules.verify(proof, client)
    except auth.AuthError:
        ok = False
    if not ok:
        return _refuse(state, StatusCode.INVALID_CREDENTIALS, scheme, limit)
    failures = 0 if rules.resets_failures else state.auth_failures
    chal, nonce = challenge(scheme, limit.random) if rules.nonce else (None, None)
    return Verdict(rules.accepted, rules.input, failures, chal, nonce)


def _refuse(state: SessionState, code: StatusCode, scheme: AuthScheme, limit: _Limit) -> Verdict:
    """
    A failure: challenged again, or (past the limit, in this session or on the device lately) given up, unchallenged.
    """
    failures = max(state.auth_failures, limit.recent_failures) + 1
    if failures > limit.max_failures:
        return Verdict(code, SessionInput.GIVE_UP, failures, failed=scheme)
    chal, nonce = challenge(scheme, limit.random)
    return Verdict(code, SessionInput.REFUSED, failures, chal, nonce, failed=scheme)


def challenge(scheme: AuthScheme, random: Callable[[int], bytes]) -> tuple[Chal, bytes | None]:
    """
    A Chal for C{scheme}, and the fresh nonce it carries (None for Basic).
    """
    rules = SCHEMES[scheme]
    if not rules.nonce:
        return Chal(meta=Meta(type=rules.meta_type, format="b64")), None
    nonce = auth.new_nonce(random)
    return Chal(meta=Meta(type=rules.meta_type, format="b64", next_nonce=auth.encode_nonce(nonce))), nonce


def offered_nonce(status: Status) -> bytes | None:
    """
    The NextNonce the device's challenge in C{status} gives us, or None (absent or unreadable).
    """
    if status.chal is None or not status.chal.meta.next_nonce:
        return None
    try:
        return auth.decode_nonce(status.chal.meta.next_nonce)
    except auth.AuthError:
        return None


def server_nonce(state: SessionState, server: Credentials) -> Credentials:
    """
    C{server} with the nonce our credential uses in this session.

    That is the device record's, unless the device gave a new one with a 2xx
    status for our SyncHdr: that one is for its next session, and the
    session goes on with the nonce it had (L{SessionState.server_nonce}).
    """
    if state.server_nonce is None:
        return server
    return Credentials(server.name, server.secret, state.server_nonce)


def nonce_per_message(state: SessionState, scheme: AuthScheme) -> bool:
    """
    Whether a NextNonce the device gives with a 2xx is used from our next message on.

    HMAC needs a new nonce per message (OMA DM Security 5.1.4.3); for a
    credential (MD5, Basic) a NextNonce that comes with 2xx is for the next session.
    """
    return state.authentication is Authentication.HMAC or scheme is AuthScheme.HMAC


def server_cred(state: SessionState, server: Credentials, scheme: AuthScheme = AuthScheme.DIGEST) -> Cred | None:
    """
    Our credential for the device's SyncHdr check, while the session owes it.

    Made in the device's server auth scheme (MD5 digest or Basic), with the
    session's nonce; None for HMAC, whose MAC travels in an HTTP header.
    """
    if state.server_credential is not ServerCredential.OWED:
        return None
    ours = SCHEMES[scheme].ours
    return None if ours is None else ours(server_nonce(state, server))


def response_headers(
    state: SessionState, server: Credentials, body: bytes, scheme: AuthScheme = AuthScheme.DIGEST
) -> tuple[tuple[str, str], ...]:
    """
    The HTTP headers our answer needs: our MAC of C{body} when the session uses
    HMAC, or when HMAC is how we authenticate to the device and we owe it.
    """
    owed = scheme is AuthScheme.HMAC and state.server_credential is ServerCredential.OWED
    if state.authentication is not Authentication.HMAC and not owed:
        return ()
    mac = auth.hmac_mac(server.name, server.nonce, body, password=server.secret)
    return (("x-syncml-hmac", auth.format_hmac_header(server.name, mac)),)


class HeaderVerdict(enum.Enum):
    """
    What the device answered to our SyncHdr (its Status with CmdRef 0).
    """

    #: 212: our credential holds for the rest of the session.
    ACCEPTED = "accepted"
    #: Another code below 300 (200: this message only).
    PASSED = "passed"
    #: 401 (our credential is wrong) or 407 (missing): it wants our credential.
    CHALLENGED = "challenged"
    #: Any other error (Windows answers 500 when it dislikes something).
    REFUSED = "refused"
    #: Not a status code at all (libdmclient answers 0 until it authenticated us).
    INVALID = "invalid"


_CHALLENGES: Final = frozenset({StatusCode.INVALID_CREDENTIALS, StatusCode.MISSING_CREDENTIALS})


def header_verdict(data: str | bytes | None) -> tuple[HeaderVerdict, StatusCode | None]:
    """
    The device's verdict on our SyncHdr from its Status Data, and the code (None if invalid).
    """
    code = parse_code(StatusCode, data)
    if code is None:
        return HeaderVerdict.INVALID, None
    if code is StatusCode.AUTHENTICATION_ACCEPTED:
        return HeaderVerdict.ACCEPTED, code
    if code in _CHALLENGES:
        return HeaderVerdict.CHALLENGED, code
    return (HeaderVerdict.PASSED if code < 300 else HeaderVerdict.REFUSED), code
