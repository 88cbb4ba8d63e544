"""
The C{enroll} service: what the enrollment resources call.

It holds the enrollment settings, the public URLs handed to devices and the
configured enrollment policy (L{mdmd.enroll.policies}: it authenticates
requests and loads what that needs at start), and runs each operation as:
parse (pure codecs) → authenticate → one unit of work on the store → build
the answer (pure codecs). Each operation returns the response bytes or raises
a L{SoapFault}; anything else is our failure and becomes an internal fault.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mdmd.devices.lifecycle import DeviceStatus
from mdmd.dm import queue as dm_queue
from mdmd.dm.commands import CommandSpec, parse_spec
from mdmd.enroll import devices
from mdmd.enroll.discovery import DiscoveryAnswer, discover_response, negotiate_version, parse_discover
from mdmd.enroll.provisioning import (
    DMAccount,
    DMCredentials,
    certificate_store,
    enrollment_document,
    renewal_document,
)
from mdmd.enroll.policies import (
    FEDERATED,
    IEnrollmentPolicy,
    ISignInPolicy,
    PolicyContext,
    Principal,
    SignInUnavailable,
    make_policy,
)
from mdmd.enroll.soap import (
    AuthenticationFault,
    AuthorizationFault,
    CertificateRequestFault,
    MessageFormatFault,
    SoapRequest,
)
from mdmd.enroll.users import StaleCredentials, StoreUserChecker
from mdmd.enroll.wstep import (
    RENEW,
    TokenRequest,
    parse_token_request,
    token_response,
    valid_device_id,
)
from mdmd.enroll.xcep import CertificatePolicy, check_get_policies, get_policies_response
from mdmd.notify import channels
from mdmd.pki import csr as pkcs
from mdmd.pki import registry
from mdmd.pki.ca import serial_hex
from mdmd.pki.authority import CAService
from mdmd.listeners import peer_source
from mdmd.pki.tls import ClientCertificateRefused, verified_client
from mdmd.site import MdmdRequest
from mdmd.store.runner import StoreService

Root = registry.Root

__all__ = [
    "EnrollmentService",
    "EnrollmentSettings",
    # the sign-in page's resource asks for this policy by name
    "FEDERATED",
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
        self.clock = clock
        self._https_port = https_port
        self.random_bytes = random_bytes
        self._issuing_slots = DeferredSemaphore(settings.issuing_concurrency)
        #: the inventory Gets every enrollment queues, parsed once
        self._inventory = tuple(parse_spec({"verb": "Get", "target": uri}) for uri in settings.inventory)
        self._urls: URLs | None = None
        self._account: DMAccount | None = None
        self._roots: tuple[bytes, ...] | None = None
        #: how requests authenticate: the configured policy, chosen once
        self.policy: IEnrollmentPolicy = make_policy(
            settings.auth_policy,
            PolicyContext(
                checker=checker,
                ca=ca,
                clock=clock,
                random_bytes=random_bytes,
                token_key_path=os.path.join(settings.state_dir, "federation.key"),
                token_lifetime=settings.federated_token_lifetime,
                trust_file=settings.certificate_ca_file,
            ),
        )

    def startService(self) -> None:
        self.policy.start()
        # the discovery URL is logged once HTTPS has bound its port (mdmd.tap)
        log.info("enrollment: {policy} policy", policy=self.policy.name)
        super().startService()

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
        policy = self.policy.name
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
            authentication_service_url=(
                urls.authentication if ISignInPolicy.providedBy(self.policy) else ""
            ),
        )
        return discover_response(answer, soap.message_id, activity_id)

    async def get_policies(self, soap: SoapRequest, request: MdmdRequest, activity_id: str) -> bytes:
        check_get_policies(soap)
        principal = await self.authenticate(soap, request)
        if not principal.confirmed:
            await self.store.read(principal.confirm)
        return get_policies_response(self.settings.policy, soap.message_id, activity_id)

    async def request_token(self, soap: SoapRequest, request: MdmdRequest, activity_id: str) -> bytes:
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
        request.device_id = device_id
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
                    _confirm_and_enroll, principal, facts, csr.public_key, credentials, now, self._inventory,
                    self.settings.account.push_pfn,
                )
            except StaleCredentials:
                # the remembered check no longer holds: check the credential afresh, once
                principal = await self.authenticate(soap, request, remembered=False)
                facts = replace(facts, user=principal.user)
                enrolled = await self._issuing(
                    _confirm_and_enroll, principal, facts, csr.public_key, credentials, now, self._inventory,
                    self.settings.account.push_pfn,
                )
        except devices.DeviceOwnedByAnotherUser as e:
            raise AuthorizationFault(str(e)) from None
        certificate_der = enrolled.certificate.public_bytes(serialization.Encoding.DER)
        document = enrollment_document(
            root_der=self._root_ders()[0],
            extra_roots=self._root_ders()[1:],
            client_der=certificate_der,
            store=store,
            device_id=device_id,
            device_name=facts.value("DeviceName"),
            upn=principal.upn,
            credentials=credentials,
            account=self.account,
        )
        log.info(
            "{action} {device_id} ({name}) for {user}: certificate {serial}, {key} key{replaced}",
            action=f"re-{DeviceStatus.ENROLLED.value}" if enrolled.known else DeviceStatus.ENROLLED.value,
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
        self, soap: SoapRequest, token_request: TokenRequest, request: MdmdRequest, activity_id: str
    ) -> bytes:
        try:
            current = await verified_client(request, self.store)
        except ClientCertificateRefused as e:
            raise AuthenticationFault(
                f"renewal needs the device's current MDM certificate over TLS: {e}"
            ) from None
        request.device_id = current.device_id
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
            root_der=self._root_ders()[0],
            extra_roots=self._root_ders()[1:],
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
        certificates). Its unit of work is committed in a group with the
        other short units waiting (DM messages, other enrollments), run in
        turn on one connection, so enrollments no longer conflict with each
        other there; the limit keeps their signatures (made in the committer,
        between DM messages) from holding up a group for long with the
        embedded store, and allows the connection pool's worth with a shared
        one, where units committed by other nodes can still conflict.
        """
        return self._issuing_slots.run(self.ca.transact_issuing, fn, *args)

    def _certificate_request(self, der: bytes) -> pkcs.CertificationRequest:
        try:
            csr = pkcs.parse_csr(der)
            pkcs.check_key(csr, self.settings.policy.min_key_length)
        except pkcs.InvalidRequest as e:
            raise CertificateRequestFault(str(e)) from None
        return csr

    def _root_ders(self) -> tuple[bytes, ...]:
        """
        The roots a device installs (Root/System): our CA, and the root of an
        operator-supplied server certificate's chain (so the device trusts our TLS).
        """
        if self._roots is None:
            roots = [self.ca.ca_certificate]
            chain_root = self.ca.server_chain_root
            if chain_root is not None and chain_root != roots[0]:
                roots.append(chain_root)
            self._roots = tuple(r.public_bytes(serialization.Encoding.DER) for r in roots)
        return self._roots

    # -- authentication --------------------------------------------------------------------

    async def authenticate(
        self, soap: SoapRequest, request: MdmdRequest, remembered: bool = True
    ) -> Principal:
        """
        Who a GetPolicies or RequestSecurityToken speaks for, by the configured
        policy (see L{IEnrollmentPolicy.authenticate}); the caller runs the
        principal's C{confirm} in its unit of work.
        """
        principal = await self.policy.authenticate(
            soap, remembered, peer_source(request.getClientAddress())
        )
        request.enroll_user = principal.user
        return principal

    # -- the sign-in page ----------------------------------------------------------------------

    async def sign_in(self, name: str, password: str, source: str = "") -> str:
        """
        Check a user's password at the sign-in page (coming from C{source},
        L{mdmd.listeners.peer_source}) and mint their token.

        @raise SignInUnavailable: if the policy signs no one in there.
        @raise AuthenticationFault: if the password is wrong.
        @raise AuthorizationFault: if the user is disabled.
        """
        policy = ISignInPolicy(self.policy, None)
        if policy is None:
            raise SignInUnavailable(f"the {self.policy.name} policy has no sign-in page")
        return await policy.sign_in(name, password, source)


# --- the enrollment's unit of work -------------------------------------------------------------


def _confirm_and_enroll(
    root: Root,
    issue: devices.Issue,
    principal: Principal,
    facts: devices.EnrollmentFacts,
    public_key: pkcs.PublicKey,
    credentials: DMCredentials,
    now: float,
    inventory: tuple[CommandSpec, ...] = (),
    push_pfn: str = "",
) -> devices.Enrolled:
    """
    One unit of work: confirm the principal, then sign, record and enroll,
    and queue the inventory Gets (read in the device's first DM session),
    each once: a device enrolling again with some still unsent keeps those;
    note the WNS push PFN its provisioning document sets, if any.
    """
    user = principal.confirm(root)
    enrolled = devices.enroll(root, issue, replace(facts, user=user), public_key, credentials, now)
    for spec in inventory:
        dm_queue.enqueue_once(root, facts.device_id, spec, now)
    if push_pfn:
        channels.provisioned(root["devices"][facts.device_id], push_pfn, now)
    return enrolled
