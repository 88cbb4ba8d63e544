"""
Tests for L{mdmd.enroll.throttle}: the guessing rules, without a clock or a network.
"""

from __future__ import annotations

import itertools

from twisted.trial.unittest import SynchronousTestCase

from mdmd.enroll.throttle import GuessKey, GuessLimits, GuessThrottle, Key, Lockout, Outcome, Refused

ALICE: Key = (GuessKey.USER, "alice")
BOB: Key = (GuessKey.USER, "bob")
HOST: Key = (GuessKey.SOURCE, "192.0.2.7")
OTHER_HOST: Key = (GuessKey.SOURCE, "198.51.100.1")
LIMITS = GuessLimits(user_failures=3, source_failures=6, max_delay=8.0, lockout=100.0, tracked=50)


_ATTEMPTS = (b"guess-%d" % n for n in itertools.count())


def guess() -> bytes:
    """
    A new attempt (other credentials than any before).
    """
    return next(_ATTEMPTS)


class ThrottleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.throttle = GuessThrottle(LIMITS)

    def fail(self, keys: list[Key], now: float) -> tuple[float, int]:  # type: ignore[override]  # a helper, not TestCase.fail
        """
        One admitted check of new credentials against C{keys} that fails at C{now}: (its wait, lockouts begun).
        """
        attempt = guess()
        self.assertIsNone(self.throttle.admit(keys, attempt, now))
        settled = self.throttle.settle(keys, attempt, Outcome.FAILED, now)
        return settled.wait, len(settled.lockouts)

    def test_free_failures_then_doubling_waits_then_lockout(self) -> None:
        """
        The first failures cost nothing; each further one waits twice as long
        as the last (1, 2, 4, 8 s) until the next wait would pass max_delay:
        that failure locks the key out, once, and its answer waits max_delay.
        """
        now = 0.0
        outcomes = []
        for _ in range(8):
            wait, lockouts = self.fail([ALICE], now)
            outcomes.append((wait, lockouts))
            now += wait
        self.assertEqual(
            outcomes,
            [(0.0, 0), (0.0, 0), (0.0, 0), (1.0, 0), (2.0, 0), (4.0, 0), (8.0, 0), (8.0, 1)],
        )
        refused = self.throttle.admit([ALICE], guess(), now)
        self.assertEqual(refused, Refused(wait=8.0, locked=True, key=ALICE))

    def test_refused_within_the_wait(self) -> None:
        """
        Within a wait a check is refused, told how long is left; after it, admitted.
        """
        for _ in range(4):
            self.fail([ALICE], 10.0)
        self.assertEqual(self.throttle.admit([ALICE], guess(), 10.25), Refused(0.75, False, ALICE))
        self.assertIsNone(self.throttle.admit([ALICE], guess(), 11.0))

    def test_lockout_expires_and_the_count_starts_afresh(self) -> None:
        """
        A locked key is refused (the right password too: nothing is checked)
        until the lockout ends; then it is admitted and its count starts again.
        """
        now = 0.0
        locked_at = None
        while locked_at is None:
            wait, lockouts = self.fail([ALICE], now)
            if lockouts:
                locked_at = now
            now += wait
        right = guess()
        self.assertIsInstance(self.throttle.admit([ALICE], right, locked_at + 99.0), Refused)
        self.assertIsNone(self.throttle.admit([ALICE], right, locked_at + 100.0))
        self.throttle.settle([ALICE], right, Outcome.SUCCEEDED, locked_at + 100.0)
        self.assertEqual(self.throttle.failures(ALICE, locked_at + 100.0), 0)
        self.assertEqual(len(self.throttle), 0)

    def test_quiet_key_forgotten(self) -> None:
        """
        A key that has not failed for the lockout duration is forgotten.
        """
        self.fail([ALICE], 0.0)
        self.fail([ALICE], 1.0)
        self.assertEqual(self.throttle.failures(ALICE, 100.0), 2)
        self.assertEqual(self.throttle.failures(ALICE, 101.0), 0)
        self.assertEqual(len(self.throttle), 0)

    def test_success_forgets_the_user_not_the_source(self) -> None:
        """
        The right password clears the user name's failures; the source's stay
        (a guesser holding one account must not clear its address).
        """
        for _ in range(2):
            self.fail([ALICE, HOST], 0.0)
        right = guess()
        self.assertIsNone(self.throttle.admit([ALICE, HOST], right, 0.0))
        self.throttle.settle([ALICE, HOST], right, Outcome.SUCCEEDED, 0.0)
        self.assertEqual((self.throttle.failures(ALICE, 0.0), self.throttle.failures(HOST, 0.0)), (0, 2))

    def test_source_counts_across_user_names(self) -> None:
        """
        A source guessing many user names waits once it passes its own
        allowance, for every name, while another source is not concerned.
        """
        for number in range(6):
            self.assertEqual(self.fail([(GuessKey.USER, f"user{number}"), HOST], 0.0), (0.0, 0))
        self.assertEqual(self.fail([(GuessKey.USER, "user6"), HOST], 0.0), (1.0, 0))
        refused = self.throttle.admit([(GuessKey.USER, "someone"), HOST], guess(), 0.5)
        self.assertEqual(refused, Refused(0.5, False, HOST))
        self.assertIsNone(self.throttle.admit([(GuessKey.USER, "someone"), OTHER_HOST], guess(), 0.5))

    def test_parallel_guesses_fit_the_allowance(self) -> None:
        """
        Different credentials for one user name run side by side only while
        they fit in its free failures; beyond, a check waits as long as the
        running ones' failures would make it (a parallel burst cannot spend
        the allowance or a wait on many guesses).
        """
        first, second, third = guess(), guess(), guess()
        self.assertIsNone(self.throttle.admit([ALICE], first, 0.0))
        self.assertIsNone(self.throttle.admit([ALICE], second, 0.0))
        self.assertIsNone(self.throttle.admit([ALICE], third, 0.0))
        self.assertEqual(self.throttle.admit([ALICE], guess(), 0.0), Refused(1.0, False, ALICE))
        for attempt in (first, second, third):
            self.throttle.settle([ALICE], attempt, Outcome.FAILED, 0.0)
        fourth = guess()
        self.assertIsNone(self.throttle.admit([ALICE], fourth, 0.0))  # failing: one at a time
        self.assertEqual(self.throttle.admit([ALICE], guess(), 0.0), Refused(1.0, False, ALICE))
        self.throttle.settle([ALICE], fourth, Outcome.ABANDONED, 0.0)
        self.assertIsNone(self.throttle.admit([ALICE], guess(), 0.0))

    def test_same_credentials_one_guess(self) -> None:
        """
        Checks of the same credentials running together are one guess: all
        admitted, however many, counted once, each told the wait it makes.
        """
        for _ in range(LIMITS.user_failures):
            self.fail([ALICE], 0.0)
        same = guess()
        for _ in range(10):
            self.assertIsNone(self.throttle.admit([ALICE], same, 0.0))
        waits = [self.throttle.settle([ALICE], same, Outcome.FAILED, 0.0).wait for _ in range(10)]
        self.assertEqual(waits, [1.0] * 10)
        self.assertEqual(self.throttle.failures(ALICE, 0.0), LIMITS.user_failures + 1)

    def test_source_parallel_while_not_failing(self) -> None:
        """
        Many users behind one address check side by side while the address
        has no failure; once it has, its checks fit its allowance.
        """
        attempts = [guess() for _ in range(LIMITS.source_failures + 5)]
        for number, attempt in enumerate(attempts):
            self.assertIsNone(self.throttle.admit([(GuessKey.USER, f"user{number}"), HOST], attempt, 0.0))
        self.throttle.settle([(GuessKey.USER, "user0"), HOST], attempts[0], Outcome.FAILED, 0.0)
        refused = self.throttle.admit([(GuessKey.USER, "late"), HOST], guess(), 0.0)
        self.assertEqual((refused.key, refused.locked), (HOST, False))  # type: ignore[union-attr]

    def test_records_bounded(self) -> None:
        """
        No more than `tracked` keys are remembered, the least recently used forgotten first.
        """
        for number in range(200):
            self.fail([(GuessKey.USER, f"user{number}")], 0.0)
        self.assertEqual(len(self.throttle), LIMITS.tracked)
        self.assertEqual(self.throttle.failures((GuessKey.USER, "user0"), 0.0), 0)
        self.assertEqual(self.throttle.failures((GuessKey.USER, "user199"), 0.0), 1)

    def test_lockout_reported_once(self) -> None:
        """
        Refusals during a lockout are not failures: the lockout is reported
        when it begins only, with the key, the count and its end.
        """
        now = 0.0
        lockouts: list[Lockout] = []
        for _ in range(20):
            attempt = guess()
            if self.throttle.admit([BOB], attempt, now) is None:
                lockouts += self.throttle.settle([BOB], attempt, Outcome.FAILED, now).lockouts
            now += 1.0
        self.assertEqual([(lock.key, lock.failures) for lock in lockouts], [(BOB, 8)])
        self.assertEqual(lockouts[0].until, lockouts[0].until // 1 * 1)
        self.assertGreater(lockouts[0].until, now)
