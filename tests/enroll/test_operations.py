"""
Tests for L{mdmd.enroll.operations}: public URLs, the policy chosen from the
configuration, and the queue in front of enrollment transactions (settings
from the configuration: tests/test_settings.py).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mdmd import settings as mdmd_settings
from mdmd.enroll import soap
from mdmd.enroll.operations import EnrollmentService, public_base_url
from mdmd.enroll.policies import CertificatePolicy, FederatedPolicy, OnPremisePolicy, SignInUnavailable
from mdmd.testing.windows.soap import discover_message
from mdmd.xmlparser import parse

from .helpers import load_config


class BaseURLTests(SynchronousTestCase):
    def test_base_url(self) -> None:
        """
        The port is left out of URLs at 443; IPv6 literals are bracketed.
        """
        self.assertEqual(public_base_url("mdm.example.com", 443), "https://mdm.example.com")
        self.assertEqual(public_base_url("mdm.example.com", 8443), "https://mdm.example.com:8443")
        self.assertEqual(public_base_url("2001:db8::1", 443), "https://[2001:db8::1]")


class IssuingQueueTests(SynchronousTestCase):
    def test_one_at_a_time(self) -> None:
        """
        A second enrollment transaction waits for the first to finish.
        """
        calls: list[Deferred[Any]] = []

        class FakeCA:
            def transact_issuing(self, fn: Any, *args: Any) -> Deferred[Any]:
                d: Deferred[Any] = Deferred()
                calls.append(d)
                return d

        state_dir = os.path.abspath(self.mktemp())
        os.makedirs(state_dir)
        settings = mdmd_settings.from_config(load_config(state_dir)).enrollment
        service = EnrollmentService(settings, None, FakeCA(), None, None, lambda: 443)  # type: ignore[arg-type]
        first = service._issuing(lambda root, issue: None)
        second = service._issuing(lambda root, issue: None)
        self.assertEqual(len(calls), 1)
        calls[0].callback("one")
        self.assertEqual(self.successResultOf(first), "one")
        self.assertEqual(len(calls), 2)
        calls[1].callback("two")
        self.assertEqual(self.successResultOf(second), "two")


class PolicyChoiceTests(SynchronousTestCase):
    def service(self, policy: str) -> EnrollmentService:
        state_dir = os.path.abspath(self.mktemp())
        os.makedirs(state_dir)
        settings = mdmd_settings.from_config(
            load_config(state_dir, f"[enrollment]\nauth_policy = {policy}\n")
        ).enrollment
        return EnrollmentService(settings, None, None, None, Clock(), lambda: 443)  # type: ignore[arg-type]

    def discovered_sign_in_url(self, service: EnrollmentService) -> str:
        request = soap.parse_request(discover_message(service.urls.discovery, "alice@example.com"))
        answer = parse(self.successResultOf(Deferred.fromCoroutine(service.discover(request, "a-1"))))
        result = soap.child(soap.child(soap.child(answer, "Body"), "DiscoverResponse"), "DiscoverResult")
        self.assertEqual(soap.text(soap.child(result, "AuthPolicy")), service.policy.name)
        return soap.text(soap.child(result, "AuthenticationServiceUrl"))

    def test_configured_policy(self) -> None:
        """
        The service holds the policy its configuration names; Discover
        advertises it, and the sign-in page's URL only for the policy that has one.
        """
        chosen = {name: self.service(name) for name in ("OnPremise", "Federated", "Certificate")}
        self.assertIsInstance(chosen["OnPremise"].policy, OnPremisePolicy)
        self.assertIsInstance(chosen["Federated"].policy, FederatedPolicy)
        self.assertIsInstance(chosen["Certificate"].policy, CertificatePolicy)
        self.assertEqual(
            {name: self.discovered_sign_in_url(service) for name, service in chosen.items()},
            {
                "OnPremise": "",
                "Federated": "https://localhost/EnrollmentServer/Authenticate",
                "Certificate": "",
            },
        )

    def test_no_sign_in_without_a_page(self) -> None:
        """
        A sign-in under a policy without a sign-in page is refused, as not found.
        """
        service = self.service("OnPremise")
        failure = self.failureResultOf(
            Deferred.fromCoroutine(service.sign_in("alice", "pw")), SignInUnavailable
        )
        self.assertEqual(failure.value.http_status, 404)


class ProvisionedRootsTests(SynchronousTestCase):
    def test_roots(self) -> None:
        """
        Devices are given our CA, and the root of an operator's server certificate
        chain when there is one (once, even if it is our CA).
        """
        import datetime

        from cryptography.hazmat.primitives import serialization

        from mdmd.pki.ca import CertificateAuthority, generate_rsa_key

        now = datetime.datetime.now(datetime.timezone.utc)
        ours, theirs = (
            CertificateAuthority.create(generate_rsa_key(2048), name, "o", datetime.timedelta(days=3), now).certificate
            for name in ("ours", "enterprise")
        )

        class FakeCA:
            ca_certificate = ours
            server_chain_root: Any = None

        state_dir = os.path.abspath(self.mktemp())
        os.makedirs(state_dir)
        settings = mdmd_settings.from_config(load_config(state_dir)).enrollment
        der = [c.public_bytes(serialization.Encoding.DER) for c in (ours, theirs)]
        for chain_root, expected in ((None, der[:1]), (ours, der[:1]), (theirs, der)):
            ca = FakeCA()
            ca.server_chain_root = chain_root
            service = EnrollmentService(settings, None, ca, None, None, lambda: 443)  # type: ignore[arg-type]
            self.assertEqual(list(service._root_ders()), expected)
