"""
Tests for L{mdmd.testing.randomness}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.testing.randomness import fixed_random


class FixedRandomTests(SynchronousTestCase):
    def test_values_in_turn(self) -> None:
        """
        Each call gives the next value, big-endian in the size asked for, then 0x4242 for ever.
        """
        random = fixed_random(0x1234, 0xABCD)
        self.assertEqual([random(2), random(4), random(2), random(2)], [b"\x12\x34", b"\x00\x00\xab\xcd", b"BB", b"BB"])

    def test_independent(self) -> None:
        """
        Each source has its own sequence.
        """
        first, second = fixed_random(1), fixed_random(1)
        self.assertEqual((first(2), second(2)), (b"\x00\x01", b"\x00\x01"))
