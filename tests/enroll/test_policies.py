"""
Tests for L{mdmd.enroll.policies}: each enrollment policy on its own, with
the real store (in memory, run synchronously), the real user checker (its
hashing run at once) and the real CA.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mdmd.enroll import federated, users
from mdmd.enroll.discovery import AUTH_POLICIES
from mdmd.enroll.policies import (
    POLICIES,
    CertificatePolicy,
    FederatedPolicy,
    IEnrollmentPolicy,
    ISignInPolicy,
    OnPremisePolicy,
    PolicyContext,
    Principal,
    make_policy,
)
from mdmd.enroll.soap import (
    AuthenticationFault,
    AuthorizationFault,
    InvalidSecurityFault,
    SoapRequest,
    parse_request,
)
from mdmd.enroll.throttle import GuessKey, GuessLimits
from mdmd.enroll.users import StaleCredentials, StoreUserChecker
from mdmd.pki.ca import CertificateAuthority, generate_rsa_key
from mdmd.testing.reactor import ThreadedMemoryReactor
from mdmd.testing.store import memory_store_service
from mdmd.testing.windows.soap import (
    get_policies_message,
    signed_security_header,
    user_token_security,
    username_security,
)

from ..pki.helpers import started_ca
from .helpers import OTHER_KEY, password_hash

T = TypeVar("T")

#: one free failure per user name, two per source
TIGHT = users.PasswordLimits(
    guesses=GuessLimits(user_failures=1, source_failures=2, max_delay=4.0, lockout=60.0, tracked=100)
)

URL = "https://mdm.example.com/EnrollmentServer/Policy.svc"
ALICE, PASSWORD = "alice@example.com", "S3cret!"


def policies_request(security: str) -> SoapRequest:
    return parse_request(get_policies_message(URL, security))


class PolicyTestCase(SynchronousTestCase):
    """
    A store with the user alice, and a checker over it.
    """

    def setUp(self) -> None:
        self.service = memory_store_service()
        self.addCleanup(self.service.stopService)
        assert self.service.store is not None
        self.store = self.service.store
        self.clock = Clock()
        self.clock.advance(time.time())
        self.checker = StoreUserChecker(self.service, ThreadedMemoryReactor(), self.clock)
        self.store.run(users.add_user, ALICE, password_hash(PASSWORD), 0.0)

    def result(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def failure(self, coroutine: Coroutine[Any, Any, object], *kinds: type[BaseException]) -> BaseException:
        return self.failureResultOf(Deferred.fromCoroutine(coroutine), *kinds).value

    def confirm(self, principal: Principal) -> str:
        return self.store.run(principal.confirm)


class OnPremisePolicyTests(PolicyTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.policy = OnPremisePolicy(self.checker)

    def test_provides_the_interface(self) -> None:
        """
        OnPremise is an enrollment policy without a sign-in page.
        """
        self.assertTrue(verifyObject(IEnrollmentPolicy, self.policy))
        self.assertFalse(ISignInPolicy.providedBy(self.policy))
        self.assertEqual(self.policy.name, "OnPremise")

    def test_password(self) -> None:
        """
        The right password yields the user, already confirmed, as the UPN too;
        confirming in a unit of work gives the stored name.
        """
        principal = self.result(self.policy.authenticate(policies_request(username_security(ALICE, PASSWORD)), True))
        self.assertEqual(
            (principal.user, principal.auth_policy, principal.upn, principal.confirmed),
            (ALICE, "OnPremise", ALICE, True),
        )
        self.assertEqual(self.confirm(principal), ALICE)

    def test_remembered_check(self) -> None:
        """
        A second request with the same credential is answered from the
        checker's memory, left to be confirmed; once the password changed,
        confirming it fails as stale, and checking afresh refuses it.
        """
        request = policies_request(username_security(ALICE, PASSWORD))
        self.result(self.policy.authenticate(request, True))
        principal = self.result(self.policy.authenticate(request, True))
        self.assertFalse(principal.confirmed)
        self.assertEqual(self.confirm(principal), ALICE)
        self.store.run(users.set_password, ALICE, password_hash("changed"))
        self.assertRaises(StaleCredentials, self.confirm, principal)
        self.failure(self.policy.authenticate(request, False), AuthenticationFault)

    def test_domain_and_blanks(self) -> None:
        """
        A domain-qualified name is also tried without its domain, and a
        password without surrounding blanks.
        """
        request = policies_request(username_security("CONTOSO\\" + ALICE, f" {PASSWORD} "))
        self.assertEqual(self.result(self.policy.authenticate(request, True)).user, ALICE)

    def test_refusals(self) -> None:
        """
        No UsernameToken is InvalidSecurity; a wrong password, Authentication;
        a disabled user, Authorization.
        """
        self.failure(self.policy.authenticate(policies_request(""), True), InvalidSecurityFault)
        wrong = policies_request(username_security(ALICE, "wrong"))
        self.failure(self.policy.authenticate(wrong, True), AuthenticationFault)
        self.store.run(users.set_enabled, ALICE, False)
        right = policies_request(username_security(ALICE, PASSWORD))
        self.failure(self.policy.authenticate(right, True), AuthorizationFault)

    def test_one_attempt_whatever_the_spellings(self) -> None:
        """
        A wrong password tried with and without the domain and blanks is one
        failure for each user name it names, and one for the source.
        """
        request = policies_request(username_security("CONTOSO\\" + ALICE, " wrong "))
        self.failure(self.policy.authenticate(request, True, "192.0.2.1"), AuthenticationFault)
        now = self.clock.seconds()
        self.assertEqual(
            [
                self.checker.throttle.failures(key, now)
                for key in ((GuessKey.USER, "contoso\\" + ALICE), (GuessKey.USER, ALICE), (GuessKey.SOURCE, "192.0.2.1"))
            ],
            [1, 1, 1],
        )

    def test_guessing_refused_as_such(self) -> None:
        """
        Once guessing is throttled, a request is refused with TooManyAttempts
        (after its wait), not as a wrong password, the right one included.
        """
        policy = OnPremisePolicy(StoreUserChecker(self.service, ThreadedMemoryReactor(), self.clock, limits=TIGHT))
        wrong = policies_request(username_security(ALICE, "wrong"))
        self.failure(policy.authenticate(wrong, True, "192.0.2.1"), AuthenticationFault)
        held = Deferred.fromCoroutine(policy.authenticate(wrong, True, "192.0.2.1"))
        right = Deferred.fromCoroutine(policy.authenticate(policies_request(username_security(ALICE, PASSWORD)), True))
        self.clock.advance(1.0)
        self.failureResultOf(held, AuthenticationFault)
        self.failureResultOf(right, users.TooManyAttempts)


class FederatedPolicyTests(PolicyTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.key_path = os.path.join(os.path.abspath(self.mktemp()), "federation.key")
        os.makedirs(os.path.dirname(self.key_path))
        self.policy = FederatedPolicy(self.checker, self.key_path, 600.0, self.clock, os.urandom)

    def token_request(self, token: bytes) -> SoapRequest:
        return policies_request(user_token_security(token))

    def test_provides_the_interfaces(self) -> None:
        """
        Federated is an enrollment policy with a sign-in page.
        """
        self.assertTrue(verifyObject(ISignInPolicy, self.policy))
        self.assertTrue(IEnrollmentPolicy.providedBy(self.policy))
        self.assertEqual(self.policy.name, "Federated")

    def test_key_made_once_and_kept(self) -> None:
        """
        Starting makes the token key (0600) if there is none and keeps the one there is.
        """
        self.policy.start()
        self.assertEqual(os.stat(self.key_path).st_mode & 0o777, 0o600)
        with open(self.key_path, "rb") as f:
            key = f.read()
        self.assertEqual((len(key), self.policy.key), (federated.KEY_BYTES, key))
        again = FederatedPolicy(self.checker, self.key_path, 600.0, self.clock)
        again.start()
        self.assertEqual(again.key, key)

    def test_short_key_refused(self) -> None:
        """
        A key file too short to be a key stops the start.
        """
        with open(self.key_path, "wb") as f:
            f.write(b"short")
        self.assertRaises(ValueError, self.policy.start)

    def test_sign_in_then_enroll(self) -> None:
        """
        The token minted at sign-in authenticates the user (also the UPN)
        until it expires; confirming refuses a user since removed.
        """
        self.policy.start()
        token = self.result(self.policy.sign_in(ALICE, PASSWORD))
        principal = self.result(self.policy.authenticate(self.token_request(token.encode()), True))
        self.assertEqual((principal.user, principal.auth_policy, principal.upn), (ALICE, "Federated", ALICE))
        self.assertEqual(self.confirm(principal), ALICE)
        self.store.run(users.set_enabled, ALICE, False)
        self.assertRaises(AuthorizationFault, self.confirm, principal)
        self.store.run(users.remove_user, ALICE)
        self.assertRaises(AuthenticationFault, self.confirm, principal)
        self.clock.advance(601.0)
        fault = self.failure(self.policy.authenticate(self.token_request(token.encode()), True), AuthenticationFault)
        self.assertIn("expired", str(fault))

    def test_refusals(self) -> None:
        """
        Signing in with a wrong password is Authentication, as a disabled
        user is Authorization; a request without a token is InvalidSecurity,
        one with a forged token Authentication.
        """
        self.policy.start()
        self.failure(self.policy.sign_in(ALICE, "wrong"), AuthenticationFault)
        self.failure(self.policy.authenticate(policies_request(""), True), InvalidSecurityFault)
        forged = federated.mint_token(b"k" * 32, ALICE, self.clock.seconds(), 600.0, b"n")
        self.failure(self.policy.authenticate(self.token_request(forged.encode()), True), AuthenticationFault)
        self.store.run(users.set_enabled, ALICE, False)
        self.failure(self.policy.sign_in(ALICE, PASSWORD), AuthorizationFault)

    def test_sign_in_throttled_by_source(self) -> None:
        """
        Sign-ins count against their source address too: guessing from one
        address is refused (TooManyAttempts) for any user name.
        """
        checker = StoreUserChecker(self.service, ThreadedMemoryReactor(), self.clock, limits=TIGHT)
        policy = FederatedPolicy(checker, self.key_path, 600.0, self.clock, os.urandom)
        policy.start()
        for name in ("x", "y"):
            self.failure(policy.sign_in(name, "wrong", "192.0.2.5"), AuthenticationFault)
        held = Deferred.fromCoroutine(policy.sign_in("z", "wrong", "192.0.2.5"))
        refused = Deferred.fromCoroutine(policy.sign_in(ALICE, PASSWORD, "192.0.2.5"))
        self.clock.advance(1.0)
        self.failureResultOf(held, AuthenticationFault)
        self.failureResultOf(refused, users.TooManyAttempts)
        self.assertTrue(self.result(policy.sign_in(ALICE, PASSWORD, "192.0.2.6")))


class CertificatePolicyTests(PolicyTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.ca = started_ca(self, store=self.service)

    def signed_request(self, certificate: Any) -> SoapRequest:
        envelope = get_policies_message(URL, '<wsse:Security s:mustUnderstand="1"></wsse:Security>')
        return parse_request(signed_security_header(envelope, certificate, OTHER_KEY, self.clock.seconds()))

    def foreign_certificate(self) -> tuple[Any, CertificateAuthority]:
        now = datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.timezone.utc)
        foreign = CertificateAuthority.create(generate_rsa_key(2048), "foreign", "x", datetime.timedelta(days=1), now)
        return foreign.issue_client(OTHER_KEY.public_key(), "bulk", datetime.timedelta(days=1), now), foreign

    def test_provides_the_interface(self) -> None:
        """
        Certificate is an enrollment policy without a sign-in page.
        """
        policy = CertificatePolicy(self.ca, "", self.clock)
        self.assertTrue(verifyObject(IEnrollmentPolicy, policy))
        self.assertFalse(ISignInPolicy.providedBy(policy))
        self.assertEqual(policy.name, "Certificate")

    def test_ours(self) -> None:
        """
        A request signed with a certificate we issued names the user after
        its subject, with no UPN; once we revoke it, confirming refuses it.
        """
        policy = CertificatePolicy(self.ca, "", self.clock)
        policy.start()
        self.assertEqual(policy.anchors, [self.ca.ca_certificate])
        issued = self.successResultOf(self.ca.issue(OTHER_KEY.public_key(), "bulk-enrollment"))
        principal = self.result(policy.authenticate(self.signed_request(issued.certificate), True))
        self.assertEqual(
            (principal.user, principal.auth_policy, principal.upn),
            ("certificate:CN=bulk-enrollment", "Certificate", ""),
        )
        self.assertEqual(self.confirm(principal), "certificate:CN=bulk-enrollment")
        self.successResultOf(self.ca.revoke(issued.certificate.serial_number))
        fault = self.assertRaises(AuthenticationFault, self.confirm, principal)
        self.assertIn("revoked", str(fault))

    def test_trust_file(self) -> None:
        """
        A foreign CA's certificate is not trusted, unless the trust file
        names that CA; then it authenticates.
        """
        certificate, foreign = self.foreign_certificate()
        untrusting = CertificatePolicy(self.ca, "", self.clock)
        untrusting.start()
        fault = self.failure(untrusting.authenticate(self.signed_request(certificate), True), AuthenticationFault)
        self.assertIn("not trusted", str(fault))
        trust_file = os.path.abspath(self.mktemp())
        with open(trust_file, "wb") as f:
            f.write(foreign.certificate.public_bytes(serialization.Encoding.PEM))
        trusting = CertificatePolicy(self.ca, trust_file, self.clock)
        trusting.start()
        self.assertEqual(trusting.anchors, [self.ca.ca_certificate, foreign.certificate])
        principal = self.result(trusting.authenticate(self.signed_request(certificate), True))
        self.assertEqual(self.confirm(principal), "certificate:CN=bulk")


class ChoiceTests(SynchronousTestCase):
    def test_one_per_name(self) -> None:
        """
        There is one policy for each AuthPolicy Discover knows, made from
        the context and named by its key.
        """
        context = PolicyContext(
            checker=None,  # type: ignore[arg-type]
            ca=None,  # type: ignore[arg-type]
            clock=Clock(),
            random_bytes=os.urandom,
            token_key_path="unused",
            token_lifetime=600.0,
            trust_file="",
        )
        self.assertEqual(sorted(POLICIES), sorted(AUTH_POLICIES))
        for name in AUTH_POLICIES:
            policy = make_policy(name, context)
            self.assertTrue(IEnrollmentPolicy.providedBy(policy))
            self.assertEqual(policy.name, name)
        with self.assertRaises(ValueError):
            make_policy("Kerberos", context)
