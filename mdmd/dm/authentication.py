"""
DM application-layer authentication, both ways, per OMA DM Security and MS-MDM.

The device proves who it is with the scheme it was enrolled with (w7 APPSRV
AAUTHTYPE: an MD5 digest or Basic Cred in package 1, answered 212), or with
a MAC of every message (x-syncml-hmac, answered 200 each time); L{SCHEMES}
says, per L{AuthScheme}, how a proof is checked and what a success or a
challenge carries. L{authenticate} turns one message into a L{Verdict}: the
SyncHdr status, its challenge, and the input for the state machine.

The other way, the device may challenge us (401/407 for our SyncHdr): from
then on our SyncHdr carries our MD5 Cred made with the CLIENT-level
credentials (L{server_cred}), and an HMAC session's answers carry our MAC
(L{response_headers}).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from mdmd.dm.state import Authentication, ServerCredential, SessionInput, SessionState
from mdmd.syncml import auth
from mdmd.syncml.codes import StatusCode
from mdmd.syncml.model import Chal, Cred, Meta, Status

__all__ = [
    "AuthScheme",
    "Credentials",
    "Proof",
    "SchemeRules",
    "SCHEMES",
    "Verdict",
    "authenticate",
    "challenge",
    "server_cred",
    "response_headers",
    "offered_nonce",
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


SCHEMES: Final[Mapping[AuthScheme, SchemeRules]] = {
    AuthScheme.BASIC: SchemeRules(
        auth.AUTH_BASIC,
        _verify_basic,
        StatusCode.AUTHENTICATION_ACCEPTED,
        SessionInput.CREDENTIAL_ACCEPTED,
        nonce=False,
        resets_failures=True,
    ),
    AuthScheme.DIGEST: SchemeRules(
        auth.AUTH_MD5,
        _verify_digest,
        StatusCode.AUTHENTICATION_ACCEPTED,
        SessionInput.CREDENTIAL_ACCEPTED,
        nonce=True,
        resets_failures=True,
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
) -> Verdict:
    """
    Check one message of a device enrolled with C{scheme} and credentials C{client}.

    A message with an x-syncml-hmac header is checked by its MAC, whatever
    the device's scheme; once a session uses HMAC, every message must. A
    session authenticated by a credential needs no more. Otherwise the Cred
    must be of the device's scheme. A failure answers 401 (bad) or 407
    (missing) with a challenge, until more than C{max_failures} in a session.
    """
    if proof.hmac_header is not None:
        return _check(state, AuthScheme.HMAC, client, proof, max_failures, random)
    if state.authentication is Authentication.HMAC:
        return _refuse(state, StatusCode.MISSING_CREDENTIALS, AuthScheme.HMAC, max_failures, random)
    if state.authentication is Authentication.CREDENTIAL:
        return Verdict(StatusCode.OK, SessionInput.ALREADY_AUTHENTICATED, state.auth_failures)
    if proof.cred is None:
        return _refuse(state, StatusCode.MISSING_CREDENTIALS, scheme, max_failures, random)
    meta_type = proof.cred.meta.type if proof.cred.meta is not None else None
    if _CRED_SCHEMES.get(meta_type or "") is not scheme:
        return _refuse(state, StatusCode.INVALID_CREDENTIALS, scheme, max_failures, random)
    return _check(state, scheme, client, proof, max_failures, random)


def _check(
    state: SessionState,
    scheme: AuthScheme,
    client: Credentials,
    proof: Proof,
    max_failures: int,
    random: Callable[[int], bytes],
) -> Verdict:
    rules = SCHEMES[scheme]
    try:
        ok = rules.verify(proof, client)
    except auth.AuthError:
        ok = False
    if not ok:
        return _refuse(state, StatusCode.INVALID_CREDENTIALS, scheme, max_failures, random)
    failures = 0 if rules.resets_failures else state.auth_failures
    chal, nonce = challenge(scheme, random) if rules.nonce else (None, None)
    return Verdict(rules.accepted, rules.input, failures, chal, nonce)


def _refuse(
    state: SessionState,
    code: StatusCode,
    scheme: AuthScheme,
    max_failures: int,
    random: Callable[[int], bytes],
) -> Verdict:
    failures = state.auth_failures + 1
    if failures > max_failures:
        return Verdict(code, SessionInput.GIVE_UP, failures)
    chal, nonce = challenge(scheme, random)
    return Verdict(code, SessionInput.REFUSED, failures, chal, nonce)


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


def server_cred(state: SessionState, server: Credentials) -> Cred | None:
    """
    Our credential for the device's SyncHdr check, once the device asked for it (MD5).
    """
    if state.server_credential is not ServerCredential.OWED:
        return None
    return Cred(
        meta=Meta(type=auth.AUTH_MD5, format="b64"),
        data=auth.md5_cred_data(server.name, server.nonce, password=server.secret),
    )


def response_headers(state: SessionState, server: Credentials, body: bytes) -> tuple[tuple[str, str], ...]:
    """
    The HTTP headers our answer needs: our MAC of C{body} when the session uses HMAC.
    """
    if state.authentication is not Authentication.HMAC:
        return ()
    mac = auth.hmac_mac(server.name, server.nonce, body, password=server.secret)
    return (("x-syncml-hmac", auth.format_hmac_header(server.name, mac)),)

