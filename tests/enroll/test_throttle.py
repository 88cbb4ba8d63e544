"""
Tests for L{mdmd.enroll.throttle}: the guessing rules, without a clock or a network.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mdmd.enroll.throttle import GuessKey, GuessLimits, GuessThrottle, Key, Lockout, Outcome, Refused

ALICE: Key = (GuessKey.USER, "alice")
BOB: Key = (GuessKey.USER, "bob")
HOST: Key = (GuessKey.SOURCE, "192.0.2.7")
OTHER_HOST: Key = (GuessKey.SOURCE, "198.51.100.1")
LIMITS = GuessLimits(user_failures=3, source_failures=6, max_delay=8.0, lockout=100.0, tracked=50)


class ThrottleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.throttle = GuessThrottle(LIMITS)

    def fail(self, keys: list[Key], now: float) -> tuple[float, int]:  # type: ignore[override]  # a helper, not TestCase.fail
        """
        One admitted check of C{keys} that fails at C{now}: (its wait, lockouts begun).
        """
        self.assertIsNone(self.throttle.admit(keys, now))
        settled = self.throttle.settle(keys, Outcome.FAILED, now)
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
        refused = self.throttle.admit([ALICE], now)
        self.assertEqual(refused, Refused(wait=8.0, locked=True, key=ALICE))

    def test_refused_within_the_wait(self) -> None:
        """
        Within a wait a check is refused, told how long is left; after it, admitted.
        """
        for _ in range(4):
            self.fail([ALICE], 10.0)
        self.assertEqual(self.throttle.admit([ALICE], 10.25), Refused(0.75, False, ALICE))
        self.assertIsNone(self.throttle.admit([ALICE], 11.0))

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
        self.assertIsInstance(self.throttle.admit([ALICE], locked_at + 99.0), Refused)
        self.assertIsNone(self.throttle.admit([ALICE], locked_at + 100.0))
        self.throttle.settle([ALICE], Outcome.SUCCEEDED, locked_at + 100.0)
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
        self.assertIsNone(self.throttle.admit([ALICE, HOST], 0.0))
        self.throttle.settle([ALICE, HOST], Outcome.SUCCEEDED, 0.0)
        self.assertEqual((self.throttle.failures(ALICE, 0.0), self.throttle.failures(HOST, 0.0)), (0, 2))

    def test_source_counts_across_user_names(self) -> None:
        """
        A source guessing many user names waits once it passes its own
        allowance, for every name, while another source is not concerned.
        """
        for number in range(6):
            self.assertEqual(self.fail([(GuessKey.USER, f"user{number}"), HOST], 0.0), (0.0, 0))
        self.assertEqual(self.fail([(GuessKey.USER, "user6"), HOST], 0.0), (1.0, 0))
        refused = self.throttle.admit([(GuessKey.USER, "someone"), HOST], 0.5)
        self.assertEqual(refused, Refused(0.5, False, HOST))
        self.assertIsNone(self.throttle.admit([(GuessKey.USER, "someone"), OTHER_HOST], 0.5))

    def test_one_check_at_a_time_once_failing(self) -> None:
        """
        Once a key has used its free failures, a second check of it is
        refused while one is running (parallel guesses cannot share a wait);
        before that, checks run side by side.
        """
        self.assertIsNone(self.throttle.admit([ALICE], 0.0))
        self.assertIsNone(self.throttle.admit([ALICE], 0.0))
        self.throttle.settle([ALICE], Outcome.FAILED, 0.0)
        self.throttle.settle([ALICE], Outcome.FAILED, 0.0)
        self.fail([ALICE], 0.0)
        self.assertIsNone(self.throttle.admit([ALICE], 0.0))
        self.assertEqual(self.throttle.admit([ALICE], 0.0), Refused(1.0, False, ALICE))
        self.throttle.settle([ALICE], Outcome.ABANDONED, 0.0)
        self.assertIsNone(self.throttle.admit([ALICE], 0.0))

    def test_abandoned_counts_nothing(self) -> None:
        """
        A check that could not run (the hashing was busy) leaves no failure.
        """
        self.assertIsNone(self.throttle.admit([ALICE, HOST], 0.0))
        self.assertEqual(self.throttle.settle([ALICE, HOST], Outcome.ABANDONED, 0.0).wait, 0.0)
        self.assertEqual(len(self.throttle), 0)

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
            if self.throttle.admit([BOB], now) is None:
                lockouts += self.throttle.settle([BOB], Outcome.FAILED, now).lockouts
            now += 1.0
        self.assertEqual([(lock.key, lock.failures) for lock in lockouts], [(BOB, 8)])
        self.assertEqual(lockouts[0].until, lockouts[0].until // 1 * 1)
        self.assertGreater(lockouts[0].until, now)
