"""
The C{enroll} service: what the enrollment resources call.

It holds the enrollment settings, the public URLs handed to devices, the
Federated token key and the Certificate-policy trust anchors, authenticates
requests by the configured policy, and runs each operation as: parse (pure
codecs) → authenticate → one unit of work on the store → build the answer
(pure codecs). Each operation returns the response bytes or raises a
L{SoapFault}; anything else is our failure and becomes an internal fault.
"""

from __future__ import annotations

import datetime
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store
from twisted.application.service import Service
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from mdmd.dm import queue as dm_queue
from mdmd.dm.commands import parse_spec
from mdmd.enroll import devices, federated
from mdmd.enroll.discovery import DiscoveryAnswer, discover_response, negotiate_version, parse_discover
from mdmd.enroll.provisioning import (
    DMAccount,
    DMCredentials,
    certificate_store,
    enrollment_document,
    renewal_document,
)
from mdmd.enroll.soap import (
    AuthenticationFault,
    AuthorizationFault,
    CertificateRequestFault,
    InvalidSecurityFault,
    MessageFormatFault,
    SoapRequest,
)
from mdmd.enroll.users import (
    Remembered,
    StaleCredentials,
    StoreUserChecker,
    UserDisabled,
    confirm,
    credentials_of,
)
from mdmd.enroll.wstep import (
    RENEW,
    USER_TOKEN_VALUE_TYPE,
    TokenRequest,
    parse_token_request,
    token_response,
    valid_device_id,
)
from mdmd.enroll.xcep import CertificatePolicy, check_get_policies, get_policies_response
from mdmd.enroll.xmldsig import verify_signed_header
from mdmd.pki import csr as pkcs
from mdmd.pki import registry
from mdmd.pki.ca import serial_hex
from mdmd.pki.authority import CAService, write_private
from mdmd.pki.tls import ClientCertificateRefused, verified_client
from mdmd.store.runner import StoreService

Root = registry.Root

__all__ = [
    "EnrollmentService",
    "EnrollmentSettings",
    "Principal",
    "public_base_url",
    "DISCOVERY_PATH",
    "POLICY_PATH",
    "ENROLLMENT_PATH",
    "AUTHENTICATION_PATH",
    "DM_PATH",
]

log = Logger()

DISCOVERY_PATH = "/EnrollmentServer/Discovery.svc"
POLICY_PATH = "/EnrollmentServer/Policy.svc"
ENROLLMENT_PATH = "/EnrollmentServer/Enrollment.svc"
AUTHENTICATION_PATH = "/EnrollmentServer/Authenticate"
#: Served by the DM session engine; handed to devices as w7 ADDR.
DM_PATH = "/ManagementServer/MDM.svc"

T = TypeVar("T")

ONPREMISE = "OnPremise"
FEDERATED = "Federated"
CERTIFICATE = "Certificate"


def public_base_url(hostname: str, port: int) -> str:
    """
    C{https://host[:port]}, the port left out when it is 443.
    """
    host = f"[{hostname}]" if ":" in hostname else hostname
    return f"https://{host}" if port == 443 else f"https://{host}:{port}"


@dataclass(frozen=True)
class EnrollmentSettings:
    """
    What the enrollment service needs from the configuration.
    """

    state_dir: str
    hostname: str
    public_port: int
    auth_policy: str
    max_enrollment_version: str
    policy: CertificatePolicy
    #: the DM account template; its C{dm_url} is filled in once the port is known
    account: DMAccount
    device_auth_type: str
    federated_token_lifetime: float
    certificate_ca_file: str
    #: DM nodes read with Get after every enrollment (the device's inventory)
    inventory: tuple[str, ...] = ()
    #: enrollment transactions at once (see EnrollmentService._issuing)
    issuing_concurrency: int = 1


@dataclass(frozen=True)
class Principal:
    """
    Who an enrollment request speaks for, as far as the credential shows.

    C{confirm(root)} re-checks, inside a unit of work, what the credential
    alone cannot (the user still exists and is enabled, the certificate is
    not revoked) and returns the user name to record; it raises a
    L{SoapFault}. Running it inside the enrollment's own unit of work means
    one store transaction per request, and no window between the check and
    the issuance. C{confirmed} says the check has just been done already.
    """

    user: str
    auth_policy: str
    confirm: Callable[[Root], str]
    confirmed: bool = False


@dataclass(frozen=True)
class URLs:
    discovery: str
    policy: str
    enrollment: str
    authentication: str
    dm: str


class EnrollmentService(Service):
    """
    Discovery, policy, enrollment and renewal, and the Federated sign-in.
    """

    name = "enroll"

    def __init__(
        self,
        settings: EnrollmentSettings,
        store: StoreService,
        ca: CAService,
        checker: StoreUserChecker,
        clock: IReactorTime,
        https_port: Callable[[], int],
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ca = ca
        self.checker = checker
        self.clock = clock
        self._https_port = https_port
        self.random_bytes = random_bytes
        self._issuing_slots = DeferredSemaphore(settings.issuing_concurrency)
        self._urls: URLs | None = None
        self._account: DMAccount | None = None
        self._root: bytes | None = None
        self.token_key: bytes | None = None
        self._anchors: list[x509.Certificate] = []

    @property
    def token_key_path(self) -> str:
        return os.path.join(self.settings.state_dir, "federation.key")

    def startService(self) -> None:
        if self.settings.auth_policy == FEDERATED:
            self.token_key = self._load_token_key()
        if self.settings.auth_policy == CERTIFICATE:
            self._anchors = [self.ca.ca_certificate]
            if self.settings.certificate_ca_file:
                with open(self.settings.certificate_ca_file, "rb") as f:
                    self._anchors += x509.load_pem_x509_certificates(f.read())
        log.info(
            "enrollment: {policy} policy, discovery at {url}",
            policy=self.settings.auth_policy,
            url=self.settings.hostname + DISCOVERY_PATH,
        )
        super().startService()

    def _load_token_key(self) -> bytes:
        path = self.token_key_path
        if not os.path.exists(path):
            write_private(path, self.random_bytes(federated.KEY_BYTES))
        with open(path, "rb") as f:
            key = f.read()
        if len(key) < federated.KEY_BYTES:
            raise ValueError(f"{path}: the federation key is too short")
        return key

    # -- what devices are told ------------------------------------------------------------

    @property
    def urls(self) -> URLs:
        """
        The public URLs, fixed once the HTTPS listener has bound its port.
        """
        if self._urls is None:
            port = self.settings.public_port or self._https_port()
            base = public_base_url(self.settings.hostname, port)
            self._urls = URLs(
                discovery=base + DISCOVERY_PATH,
                policy=base + POLICY_PATH,
                enrollment=base + ENROLLMENT_PATH,
                authentication=base + AUTHENTICATION_PATH,
                dm=base + DM_PATH,
            )
        return self._urls

    @property
    def account(self) -> DMAccount:
        if self._account is None:
            self._account = replace(self.settings.account, dm_url=self.urls.dm)
        return self._account

    def now(self) -> float:
        return self.clock.seconds()

    # -- operations ----------------------------------------------------------------------

    async def discover(self, soap: SoapRequest, activity_id: str) -> bytes:
        request = parse_discover(soap)
        policy = self.settings.auth_policy
        if request.auth_policies and policy not in request.auth_policies:
            log.info(
                "discovery: {email} offered {offered}, answering {policy} anyway",
                email=request.email_address,
                offered=", ".join(request.auth_policies),
                policy=policy,
            )
        urls = self.urls
        answer = DiscoveryAnswer(
            auth_policy=policy,
            enrollment_version=negotiate_version(
                request.request_version, self.settings.max_enrollment_version
            ),
            policy_service_url=urls.policy,
            enrollment_service_url=urls.enrollment,
            authentication_service_url=urls.authentication if policy == FEDERATED else "",
        )
        return discover_response(answer, soap.message_id, activity_id)

    async def get_policies(self, soap: SoapRequest, request: IRequest, activity_id: str) -> bytes:
        check_get_policies(soap)
        principal = await self.authenticate(soap, request)
        if not principal.confirmed:
            await self.store.read(principal.confirm)
        return get_policies_response(self.settings.policy, soap.message_id, activity_id)

    async def request_token(self, soap: SoapRequest, request: IRequest, activity_id: str) -> bytes:
        token_request = parse_token_request(soap)
        if token_request.request_type == RENEW:
            return await self._renew(soap, token_request, request, activity_id)
        principal = await self.authenticate(soap, request)
        csr = self._certificate_request(token_request.token)
        device_id = token_request.value("DeviceID") or csr.device_id or ""
        if not device_id:
            raise MessageFormatFault(
                "the request carries no DeviceID (AdditionalContext)", "InvalidEnrollmentData"
            )
        if not valid_device_id(device_id):
            raise MessageFormatFault(f"DeviceID {device_id!r} is not usable", "InvalidEnrollmentData")
        request.device_id = device_id  # type: ignore[attr-defined]
        store = certificate_store(token_request.value("EnrollmentType"))
        facts = devices.EnrollmentFacts(
            device_id=device_id,
            user=principal.user,
            auth_policy=principal.auth_policy,
            certificate_store=store,
            context=token_request.context,
        )
        credentials = DMCredentials.generate(
            client_name=device_id,
            server_name=self.settings.account.provider_id,
            client_auth_type=self.settings.device_auth_type,
            random_bytes=self.random_bytes,
        )
        now = self.now()
        try:
            try:
                enrolled = await self._issuing(
                    _confirm_and_enroll, principal, facts, csr.public_key, credentials, now, self.settings.inventory
                )
            except StaleCredentials:
                # the remembered check no longer holds: check the credential afresh, once
                principal = await self.authenticate(soap, request, remembered=False)
                facts = replace(facts, user=principal.user)
                enrolled = await self._issuing(
                    _confirm_and_enroll, principal, facts, csr.public_key, credentials, now, self.settings.inventory
                )
        except devices.DeviceOwnedByAnotherUser as e:
            raise AuthorizationFault(str(e)) from None
        certificate_der = enrolled.certificate.public_bytes(serialization.Encoding.DER)
        document = enrollment_document(
            root_der=self._root_der(),
            client_der=certificate_der,
            store=store,
            device_id=device_id,
            device_name=facts.value("DeviceName"),
            upn=principal.user if principal.auth_policy != CERTIFICATE else "",
            credentials=credentials,
            account=self.account,
        )
        log.info(
            "{action} {device_id} ({name}) for {user}: certificate {serial}, {key} key{replaced}",
            action="re-enrolled" if enrolled.known else "enrolled",
            device_id=device_id,
            name=facts.value("DeviceName") or "unnamed",
            user=principal.user,
            serial=serial_hex(enrolled.certificate.serial_number),
            key=csr.key_description,
            replaced=(
                f", replacing {serial_hex(enrolled.replaced_serial)}"
                if enrolled.replaced_serial is not None
                else ""
            ),
        )
        return token_response(document, soap.message_id, activity_id, now)

    async def _renew(
        self, soap: SoapRequest, token_request: TokenRequest, request: IRequest, activity_id: str
    ) -> bytes:
        try:
            current = await verified_client(request, self.store)
        except ClientCertificateRefused as e:
            raise AuthenticationFault(
                f"renewal needs the device's current MDM certificate over TLS: {e}"
            ) from None
        request.device_id = current.device_id  # type: ignore[attr-defined]
        try:
            signed = pkcs.parse_signed_request(token_request.token)
            inner = pkcs.request_from_content(signed.content)
        except pkcs.InvalidRequest as e:
            raise CertificateRequestFault(str(e)) from None
        if signed.signer.public_bytes(serialization.Encoding.DER) != current.der:
            raise CertificateRequestFault(
                "the renewal request is not signed with the certificate presented over TLS",
                "NotEligibleToRenew",
            )
        csr = self._certificate_request(inner)
        claimed = token_request.value("DeviceID")
        if claimed and claimed != current.device_id:
            raise AuthorizationFault(
                f"the certificate belongs to {current.device_id}, the request claims {claimed}"
            )
        now = self.now()
        opens = current.not_after - self.settings.policy.renewal_seconds
        if now > current.not_after:
            raise CertificateRequestFault("the certificate has expired", "NotEligibleToRenew")
        if now < opens:
            when = datetime.datetime.fromtimestamp(opens, datetime.timezone.utc)
            raise CertificateRequestFault(
                f"the certificate is not due for renewal before {when:%Y-%m-%d %H:%M}Z",
                "NotEligibleToRenew",
            )
        try:
            renewed = await self._issuing(
                devices.renew, current.device_id, current.serial, csr.public_key, now
            )
        except devices.NotEligibleToRenew as e:
            raise CertificateRequestFault(str(e), "NotEligibleToRenew") from None
        document = renewal_document(
            root_der=self._root_der(),
            client_der=renewed.certificate.public_bytes(serialization.Encoding.DER),
            store=renewed.device.certificate_store,
            provider_id=self.settings.account.provider_id,
        )
        log.info(
            "renewed the certificate of {device_id} ({user}): {old} -> {new}",
            device_id=current.device_id,
            user=renewed.device.user,
            old=current.serial_hex,
            new=serial_hex(renewed.certificate.serial_number),
        )
        return token_response(document, soap.message_id, activity_id, now)

    def _issuing(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        """
        C{ca.transact_issuing}, at most C{settings.issuing_concurrency} at a time.

        Every enrollment inserts into the same two BTrees (devices and
        certificates); run side by side, they conflict on bucket splits and
        are retried whole, signing again (16% of enrollments at 32 devices
        at a time, in the benchmark). With an embedded store, whose commits
        are serialized anyway, one at a time costs nothing; with a shared
        store, whose round trips are slower, the connection pool's worth.
        """
        return self._issuing_slots.run(self.ca.transact_issuing, fn, *args)

    def _certificate_request(self, der: bytes) -> pkcs.CertificationRequest:
        try:
            csr = pkcs.parse_csr(der)
            pkcs.check_key(csr, self.settings.policy.min_key_length)
        except pkcs.InvalidRequest as e:
            raise CertificateRequestFault(str(e)) from None
        return csr

    def _root_der(self) -> bytes:
        if self._root is None:
            self._root = self.ca.ca_certificate.public_bytes(serialization.Encoding.DER)
        return self._root

    # -- authentication --------------------------------------------------------------------

    async def authenticate(
        self, soap: SoapRequest, request: IRequest, remembered: bool = True
    ) -> Principal:
        """
        Who a GetPolicies or RequestSecurityToken speaks for, by the configured policy.

        Only the credential itself is checked here (the password, from the
        checker's memory when C{remembered} allows; the token's MAC; the XML
        signature and chain); the caller runs the principal's C{confirm} in
        its unit of work.

        @raise InvalidSecurityFault: if the expected credential is missing.
        @raise AuthenticationFault: if it is wrong.
        @raise AuthorizationFault: if the user may not enroll devices.
        """
        policy = self.settings.auth_policy
        if policy == ONPREMISE:
            principal = await self._password_principal(soap, remembered)
        elif policy == FEDERATED:
            principal = self._token_principal(soap)
        else:
            principal = await self._certificate_principal(soap)
        request.enroll_user = principal.user  # type: ignore[attr-defined]
        return principal

    async def _password_principal(self, soap: SoapRequest, remembered: bool) -> Principal:
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
                    return Principal(
                        entry.display_name,
                        ONPREMISE,
                        functools.partial(_confirm_password, candidate[0], entry),
                    )
        for candidate in candidates:
            try:
                user = str(await self.checker.requestAvatarId(UsernamePassword(*candidate)))
            except UserDisabled:
                raise AuthorizationFault(
                    f"user {candidate[0]} is disabled and may not enroll devices"
                ) from None
            except UnauthorizedLogin:
                continue
            entry = self.checker.remembered(*candidate)
            assert entry is not None
            return Principal(
                user, ONPREMISE, functools.partial(_confirm_password, candidate[0], entry), True
            )
        raise AuthenticationFault(f"unknown user or wrong password for {name}")

    def _token_principal(self, soap: SoapRequest) -> Principal:
        token = soap.token(USER_TOKEN_VALUE_TYPE.rpartition("/")[2])
        if token is None or token.data is None:
            raise InvalidSecurityFault(
                "the Federated policy needs the security token from the sign-in page "
                "(BinarySecurityToken DeviceEnrollmentUserToken)"
            )
        assert self.token_key is not None
        try:
            claims = federated.verify_token(self.token_key, token.data, self.now())
        except federated.InvalidToken as e:
            raise AuthenticationFault(str(e)) from None
        return Principal(claims.user, FEDERATED, functools.partial(_confirm_user, claims.user))

    async def _certificate_principal(self, soap: SoapRequest) -> Principal:
        now = self.now()
        header = verify_signed_header(soap.root, soap.security, now)
        certificate = header.certificate
        moment = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
        verifier = (
            PolicyBuilder()
            .store(Store(self._anchors))
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
            CERTIFICATE,
            functools.partial(_confirm_certificate, user, certificate.serial_number if ours else None),
        )

    # -- the Federated sign-in page ------------------------------------------------------------

    async def sign_in(self, name: str, password: str) -> str:
        """
        Check a user's password and mint their token.

        @raise AuthenticationFault: if the password is wrong.
        @raise AuthorizationFault: if the user is disabled.
        """
        assert self.token_key is not None
        try:
            user = str(await self.checker.requestAvatarId(UsernamePassword(name, password)))
        except UserDisabled:
            raise AuthorizationFault(f"user {name} is disabled and may not enroll devices") from None
        except UnauthorizedLogin:
            raise AuthenticationFault("unknown user or wrong password") from None
        return federated.mint_token(
            self.token_key, user, self.now(), self.settings.federated_token_lifetime,
            self.random_bytes(12),
        )


# --- re-checks run inside units of work ------------------------------------------------------


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


def _confirm_and_enroll(
    root: Root,
    issue: devices.Issue,
    principal: Principal,
    facts: devices.EnrollmentFacts,
    public_key: pkcs.PublicKey,
    credentials: DMCredentials,
    now: float,
    inventory: tuple[str, ...] = (),
) -> devices.Enrolled:
    """
    One unit of work: confirm the principal, then sign, record and enroll,
    and queue the inventory Gets (read in the device's first DM session).
    """
    user = principal.confirm(root)
    enrolled = devices.enroll(root, issue, replace(facts, user=user), public_key, credentials, now)
    for uri in inventory:
        dm_queue.enqueue(root, [facts.device_id], parse_spec({"verb": "Get", "target": uri}), now)
    return enrolled
