"""
Enrollment policies: how a GetPolicies or RequestSecurityToken proves whom
it speaks for.

MS-MDE2 names three, and Discover tells the device which one to use: OnPremise
(the user's name and password in a WS-Security UsernameToken), Federated (a
security token from a sign-in page, here our own: L{mdmd.enroll.federated})
and Certificate (the message signed with a certificate a trusted CA issued).
Each is one class providing L{IEnrollmentPolicy}; the enroll service makes the
configured one once, through L{POLICIES}, and never asks which it holds.

A policy checks the credential itself, outside the store, and yields a
L{Principal} whose C{confirm(root)} re-checks, inside the request's own unit
of work, what the credential alone cannot (the user still exists and is
enabled, the certificate is not revoked): one store transaction per request,
and no window between the check and the issuance.
"""

from __future__ import annotations

import datetime
import functools
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.interfaces import IReactorTime
from zope.interface import Attribute, Interface, implementer

from mdmd.enroll import federated
from mdmd.enroll.soap import (
    AuthenticationFault,
    AuthorizationFault,
    InvalidSecurityFault,
    SoapRequest,
)
from mdmd.enroll.users import (
    Remembered,
    StoreUserChecker,
    TooManyAttempts,
    UserDisabled,
    confirm,
    credentials_of,
)
from mdmd.enroll.wstep import USER_TOKEN_VALUE_TYPE
from mdmd.enroll.xmldsig import verify_signed_header
from mdmd.errors import NotFound
from mdmd.pki import registry
from mdmd.pki.authority import CAService, write_private

__all__ = [
    "CERTIFICATE",
    "FEDERATED",
    "ONPREMISE",
    "POLICIES",
    "CertificatePolicy",
    "FederatedPolicy",
    "IEnrollmentPolicy",
    "ISignInPolicy",
    "OnPremisePolicy",
    "PolicyContext",
    "Principal",
    "SignInUnavailable",
    "make_policy",
]

Root = registry.Root

ONPREMISE = "OnPremise"
FEDERATED = "Federated"
CERTIFICATE = "Certificate"


@dataclass(frozen=True)
class Principal:
    """
    Who an enrollment request speaks for, as far as the credential shows.

    C{confirm(root)} re-checks, inside a unit of work, what the credential
    alone cannot and returns the user name to record; it raises a
    L{SoapFault} (or L{StaleCredentials}, when a remembered password check
    no longer holds). C{confirmed} says the check has just been done already.
    C{upn} is the user principal name the provisioning document carries (""
    when the credential names no user: a certificate).
    """

    user: str
    auth_policy: str
    upn: str
    confirm: Callable[[Root], str]
    confirmed: bool = False


class SignInUnavailable(NotFound):
    """
    A sign-in was asked of a policy that signs no one in at our page.
    """


class IEnrollmentPolicy(Interface):
    """
    One way for enrollment requests to authenticate.
    """

    name = Attribute(
        """
        The MS-MDE2 AuthPolicy: what Discover advertises and a device's
        record keeps ("OnPremise", "Federated", "Certificate").
        """
    )

    def start() -> None:
        """
        Load what checking credentials needs (a key, trust anchors): called
        once, when the enroll service starts, before any request.

        @raise OSError: or ValueError, if that cannot be read; the daemon
            then does not start.
        """

    def authenticate(soap: SoapRequest, remembered: bool, source: str = "") -> Awaitable[Principal]:
        """
        Whom C{soap} (a GetPolicies or RequestSecurityToken) speaks for,
        from the credential it carries; the caller runs the principal's
        C{confirm} in its unit of work.

        @param remembered: whether a recent successful check of the same
            credential may stand in for checking it again (False once a
            remembered check turned out stale).
        @param source: the peer's address (L{mdmd.listeners.peer_source}),
            for throttling password guesses.
        @raise InvalidSecurityFault: if the expected credential is missing.
        @raise AuthenticationFault: if it is wrong.
        @raise AuthorizationFault: if the user may not enroll devices.
        @raise TooManyAttempts: if a password was not checked: too many failures.
        @raise PasswordChecksBusy: if a password was not checked: too many checks at once.
        """


class ISignInPolicy(IEnrollmentPolicy):
    """
    A policy whose users sign in at our AuthenticationServiceUrl: Discover
    advertises that page, and it serves only under such a policy.
    """

    def sign_in(name: str, password: str, source: str = "") -> Awaitable[str]:
        """
        Check a user's password (throttled per name and C{source} address)
        and mint the token the device presents.

        @raise AuthenticationFault: if the password is wrong.
        @raise AuthorizationFault: if the user is disabled.
        @raise TooManyAttempts: if the password was not checked: too many failures.
        @raise PasswordChecksBusy: if it was not checked: too many checks at once.
        """


@dataclass(frozen=True)
class PolicyContext:
    """
    What the policies draw on; each takes what it needs.

    @ivar token_key_path: where the Federated token key is kept (0600).
    @ivar token_lifetime: seconds a Federated token is valid.
    @ivar trust_file: PEM certificates the Certificate policy trusts
        besides our own CA ("" for none).
    """

    checker: StoreUserChecker
    ca: CAService
    clock: IReactorTime
    random_bytes: Callable[[int], bytes]
    token_key_path: str
    token_lifetime: float
    trust_file: str


# -- OnPremise -------------------------------------------------------------------------------


@implementer(IEnrollmentPolicy)
class OnPremisePolicy:
    """
    The user's name and password in the WS-Security UsernameToken, checked
    against the store's users. A name C{domain\\user} may also be known as
    C{user}; a password is also tried without surrounding blanks.
    """

    name = ONPREMISE

    def __init__(self, checker: StoreUserChecker) -> None:
        self.checker = checker

    @classmethod
    def from_context(cls, context: PolicyContext) -> OnPremisePolicy:
        return cls(context.checker)

    def start(self) -> None:
        """
        Nothing to load: users are in the store.
        """

    async def authenticate(self, soap: SoapRequest, remembered: bool, source: str = "") -> Principal:
        token = soap.username_token
        if token is None or not token.username:
            raise InvalidSecurityFault(
                "the OnPremise policy needs a WS-Security UsernameToken with the user's name "
                "and password"
            )
        name, password = token.username, token.password
        candidates = [(name, password), (name, password.strip())]
        if "\\" in name:  # domain\user: the store may know the user without the domain
            short = name.rpartition("\\")[2]
            candidates += [(short, password), (short, password.strip())]
        candidates = [c for i, c in enumerate(candidates) if c[0] and c not in candidates[:i]]
        if remembered:
            for candidate in candidates:
                entry = self.checker.remembered(*candidate)
                if entry is not None:
                    return self._principal(entry.display_name, candidate[0], entry)
        try:
            user, index = await self.checker.check_first(candidates, source)
        except UserDisabled as e:
            raise AuthorizationFault(f"{e} and may not enroll devices") from None
        except TooManyAttempts:
            raise
        except UnauthorizedLogin:
            raise AuthenticationFault(f"unknown user or wrong password for {name}") from None
        candidate = candidates[index]
        entry = self.checker.remembered(*candidate)
        assert entry is not None
        return self._principal(user, candidate[0], entry, confirmed=True)

    def _principal(
        self, user: str, name: str, entry: Remembered, confirmed: bool = False
    ) -> Principal:
        return Principal(
            user, self.name, user, functools.partial(_confirm_password, name, entry), confirmed
        )


# -- Federated -------------------------------------------------------------------------------


@implementer(ISignInPolicy)
class FederatedPolicy:
    """
    A token from our sign-in page (L{mdmd.enroll.federated}): an HMAC over
    the user name and a validity window, keyed with a secret kept 0600 in
    the state directory (made on first start).
    """

    name = FEDERATED

    def __init__(
        self,
        checker: StoreUserChecker,
        key_path: str,
        token_lifetime: float,
        clock: IReactorTime,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.checker = checker
        self.key_path = key_path
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.random_bytes = random_bytes
        self._key: bytes | None = None

    @classmethod
    def from_context(cls, context: PolicyContext) -> FederatedPolicy:
        return cls(
            context.checker,
            context.token_key_path,
            context.token_lifetime,
            context.clock,
            context.random_bytes,
        )

    def start(self) -> None:
        """
        Load the token key, writing a new one (0600) if there is none.

        @raise ValueError: if the key kept is too short.
        """
        path = self.key_path
        if not os.path.exists(path):
            write_private(path, self.random_bytes(federated.KEY_BYTES))
        with open(path, "rb") as f:
            key = f.read()
        if len(key) < federated.KEY_BYTES:
            raise ValueError(f"{path}: the federation key is too short")
        self._key = key

    @property
    def key(self) -> bytes:
        if self._key is None:
            raise RuntimeError("the Federated policy has not been started")
        return self._key

    async def authenticate(self, soap: SoapRequest, remembered: bool, source: str = "") -> Principal:
        token = soap.token(USER_TOKEN_VALUE_TYPE.rpartition("/")[2])
        if token is None or token.data is None:
            raise InvalidSecurityFault(
                "the Federated policy needs the security token from the sign-in page "
                "(BinarySecurityToken DeviceEnrollmentUserToken)"
            )
        try:
            claims = federated.verify_token(self.key, token.data, self.clock.seconds())
        except federated.InvalidToken as e:
            raise AuthenticationFault(str(e)) from None
        return Principal(
            claims.user, self.name, claims.user, functools.partial(_confirm_user, claims.user)
        )

    async def sign_in(self, name: str, password: str, source: str = "") -> str:
        try:
            user = await self.checker.check(name, password, source)
        except UserDisabled:
            raise AuthorizationFault(f"user {name} is disabled and may not enroll devices") from None
        except TooManyAttempts:
            raise
        except UnauthorizedLogin:
            raise AuthenticationFault("unknown user or wrong password") from None
        return federated.mint_token(
            self.key, user, self.clock.seconds(), self.token_lifetime, self.random_bytes(12)
        )


# -- Certificate -----------------------------------------------------------------------------


@implementer(IEnrollmentPolicy)
class CertificatePolicy:
    """
    The request's WS-Security header signed (XML signature) with a
    client-authentication certificate that chains to our CA or to one of
    the C{trust_file}'s; the user is named after the certificate's subject.
    One we issued must not be revoked.
    """

    name = CERTIFICATE

    def __init__(self, ca: CAService, trust_file: str, clock: IReactorTime) -> None:
        self.ca = ca
        self.trust_file = trust_file
        self.clock = clock
        self.anchors: list[x509.Certificate] = []

    @classmethod
    def from_context(cls, context: PolicyContext) -> CertificatePolicy:
        return cls(context.ca, context.trust_file, context.clock)

    def start(self) -> None:
        """
        Trust our CA (started before us) and the trust file's certificates.
        """
        anchors = [self.ca.ca_certificate]
        if self.trust_file:
            with open(self.trust_file, "rb") as f:
                anchors += x509.load_pem_x509_certificates(f.read())
        self.anchors = anchors

    async def authenticate(self, soap: SoapRequest, remembered: bool, source: str = "") -> Principal:
        now = self.clock.seconds()
        header = verify_signed_header(soap.root, soap.security, now)
        certificate = header.certificate
        moment = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
        verifier = (
            PolicyBuilder()
            .store(Store(self.anchors))
            .time(moment)
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        try:
            verifier.verify(certificate, [])
        except Exception as e:  # cryptography's VerificationError is not importable by name
            raise AuthenticationFault(f"the signing certificate is not trusted: {e}") from None
        try:
            usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            if ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
                raise AuthenticationFault("the signing certificate is not for client authentication")
        except x509.ExtensionNotFound:
            pass
        user = "certificate:" + certificate.subject.rfc4514_string()
        ours = certificate.issuer == self.ca.ca_certificate.subject
        return Principal(
            user,
            self.name,
            "",
            functools.partial(_confirm_certificate, user, certificate.serial_number if ours else None),
        )


# -- choosing one ------------------------------------------------------------------------------

#: The policies by their configured name ([enrollment] auth_policy).
POLICIES: Final[Mapping[str, Callable[[PolicyContext], IEnrollmentPolicy]]] = {
    ONPREMISE: OnPremisePolicy.from_context,
    FEDERATED: FederatedPolicy.from_context,
    CERTIFICATE: CertificatePolicy.from_context,
}


def make_policy(name: str, context: PolicyContext) -> IEnrollmentPolicy:
    """
    The policy configured as C{name}.

    @raise ValueError: if there is no such policy.
    """
    try:
        factory = POLICIES[name]
    except KeyError:
        raise ValueError(
            f"unknown enrollment policy {name!r} (expected one of {', '.join(POLICIES)})"
        ) from None
    return factory(context)


# -- re-checks run inside units of work ------------------------------------------------------


def _confirm_password(name: str, remembered: Remembered, root: Root) -> str:
    return confirm(root, name, remembered)


def _confirm_user(name: str, root: Root) -> str:
    found = credentials_of(root, name)
    if found is None:
        raise AuthenticationFault(f"user {name} no longer exists")
    if not found[2]:
        raise AuthorizationFault(f"user {found[0]} is disabled and may not enroll devices")
    return found[0]


def _confirm_certificate(user: str, our_serial: int | None, root: Root) -> str:
    if our_serial is not None:
        record = registry.lookup(root, our_serial)
        if record is not None and record.status != "valid":
            raise AuthenticationFault(f"certificate {record.serial_hex} is {record.status}")
    return user
