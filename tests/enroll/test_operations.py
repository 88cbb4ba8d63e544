"""
Tests for L{mdmd.enroll.operations}: public URLs, and the queue in front of
enrollment transactions (settings from the configuration: tests/test_settings.py).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from mdmd import settings as mdmd_settings
from mdmd.enroll.operations import EnrollmentService, public_base_url

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
