"""
Tests for L{mdmd.enroll.users}.
"""

from collections.abc import Callable
from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mdmd.enroll import users
from mdmd.enroll.throttle import GuessKey, GuessLimits
from mdmd.errors import Busy, PeerError
from mdmd.testing.reactor import SynchronousThreadPool, ThreadedMemoryReactor
from mdmd.testing.store import memory_store_service

from ..logs import logged_events
from .helpers import password_hash


class HashTests(SynchronousTestCase):
    def test_hash_and_verify(self) -> None:
        """
        A hash verifies its password only; salts make equal passwords hash differently.
        """
        first = users.hash_password("correct horse")
        second = users.hash_password("correct horse")
        self.assertNotEqual(first, second)
        self.assertTrue(first.startswith("scrypt$32768$8$1$"))
        self.assertTrue(users.verify_password(first, "correct horse"))
        self.assertFalse(users.verify_password(first, "correct horsE"))
        self.assertFalse(users.verify_password("garbage", "x"))


class StoreFunctionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = memory_store_service()
        self.addCleanup(self.store.stopService)

    def test_names_case_insensitive(self) -> None:
        """
        User names are unique regardless of case; the display name is kept.
        """
        self.successResultOf(self.store.transact(users.add_user, "Alice@Example.com", "h", 1.0))
        self.failureResultOf(self.store.transact(users.add_user, "alice@example.COM", "h", 1.0), users.UserExists)
        found = self.successResultOf(self.store.read(users.credentials_of, "ALICE@example.com"))
        self.assertEqual(found, ("Alice@Example.com", "h", True))

    def test_invalid_names(self) -> None:
        """
        Empty names and control characters are refused.
        """
        for name in ("", "   ", "a\nb", "x" * 300):
            self.failureResultOf(self.store.transact(users.add_user, name, "h", 1.0), users.InvalidUserName)

    def test_remove_and_disable(self) -> None:
        """
        Users can be disabled, enabled and removed; unknown users are reported.
        """
        self.successResultOf(self.store.transact(users.add_user, "bob", "h", 1.0))
        self.assertFalse(self.successResultOf(self.store.transact(users.set_enabled, "bob", False)).enabled)
        self.successResultOf(self.store.transact(users.remove_user, "BOB"))
        self.failureResultOf(self.store.transact(users.remove_user, "bob"), users.UnknownUser)
        self.failureResultOf(self.store.transact(users.set_enabled, "bob", True), users.UnknownUser)


class CheckerTests(TestCase):
    def setUp(self) -> None:
        self.store = memory_store_service()
        self.addCleanup(self.store.stopService)
        self.clock = Clock()
        self.checker = users.StoreUserChecker(self.store, IReactorThreads(reactor), self.clock)
        self.successResultOf(
            self.store.transact(users.add_user, "Carol", users.hash_password("s3cret"), 1.0)
        )
        self.calls = 0
        real = users.verify_password

        def counting(stored: str, password: str) -> bool:
            self.calls += 1
            return real(stored, password)

        self.patch(users, "verify_password", counting)

    async def test_right_password(self) -> None:
        """
        The right password yields the display name as avatar id.
        """
        avatar = await self.checker.requestAvatarId(UsernamePassword(b"carol", b"s3cret"))
        self.assertEqual(avatar, "Carol")

    async def test_wrong_password_and_unknown_user(self) -> None:
        """
        Wrong passwords and unknown users fail alike.
        """
        with self.assertRaises(UnauthorizedLogin):
            await self.checker.requestAvatarId(UsernamePassword(b"carol", b"nope"))
        with self.assertRaises(UnauthorizedLogin):
            await self.checker.requestAvatarId(UsernamePassword(b"dave", b"s3cret"))

    async def test_disabled_user(self) -> None:
        """
        A disabled user with the right password gets the distinct UserDisabled error.
        """
        await self.store.transact(users.set_enabled, "carol", False)
        with self.assertRaises(users.UserDisabled):
            await self.checker.requestAvatarId(UsernamePassword(b"carol", b"s3cret"))
        with self.assertRaises(UnauthorizedLogin) as caught:
            await self.checker.requestAvatarId(UsernamePassword(b"carol", b"wrong"))
        self.assertNotIsInstance(caught.exception, users.UserDisabled)

    async def test_success_cached_until_expiry(self) -> None:
        """
        A verified password is not re-hashed within the cache period, and is after it.
        """
        credentials = UsernamePassword(b"carol", b"s3cret")
        await self.checker.requestAvatarId(credentials)
        await self.checker.requestAvatarId(credentials)
        self.assertEqual(self.calls, 1)
        self.clock.advance(301)
        await self.checker.requestAvatarId(credentials)
        self.assertEqual(self.calls, 2)

    async def test_password_change_invalidates_cache(self) -> None:
        """
        After a password change the old password no longer works, even if cached.
        """
        await self.checker.requestAvatarId(UsernamePassword(b"carol", b"s3cret"))
        await self.store.transact(users.set_password, "carol", users.hash_password("n3w"))
        with self.assertRaises(UnauthorizedLogin):
            await self.checker.requestAvatarId(UsernamePassword(b"carol", b"s3cret"))

    async def test_concurrent_checks_share_one_hashing(self) -> None:
        """
        Checks of the same credentials that arrive together hash the password once.
        """
        credentials = UsernamePassword(b"carol", b"s3cret")
        results = await gatherResults([self.checker.requestAvatarId(credentials) for _ in range(5)])
        self.assertEqual(results, ["Carol"] * 5)
        self.assertEqual(self.calls, 1)
        wrong = UsernamePassword(b"carol", b"nope")
        outcomes = await gatherResults(
            [self.checker.requestAvatarId(wrong).addErrback(lambda f: f.type) for _ in range(3)]
        )
        self.assertEqual(outcomes, [UnauthorizedLogin] * 3)
        self.assertEqual(self.calls, 2)

    async def test_remembered_and_confirm(self) -> None:
        """
        A successful check is remembered (in memory only) until it expires;
        confirm() re-checks it against the store within a unit of work.
        """
        self.assertIsNone(self.checker.remembered("carol", "s3cret"))
        await self.checker.requestAvatarId(UsernamePassword(b"carol", b"s3cret"))
        entry = self.checker.remembered("carol", "s3cret")
        self.assertEqual(entry.display_name, "Carol")  # type: ignore[union-attr]
        self.assertIsNone(self.checker.remembered("carol", "other"))
        self.assertEqual(self.successResultOf(self.store.read(users.confirm, "carol", entry)), "Carol")
        await self.store.transact(users.set_enabled, "carol", False)
        self.failureResultOf(self.store.read(users.confirm, "carol", entry), users.StaleCredentials)
        self.clock.advance(301)
        self.assertIsNone(self.checker.remembered("carol", "s3cret"))


class HeldPool(SynchronousThreadPool):
    """
    A thread pool that keeps each call until the test releases it (a hashing still running).
    """

    def __init__(self) -> None:
        super().__init__()
        self.held: list[tuple[Callable[[bool, Any], object] | None, Callable[..., object], tuple[Any, ...]]] = []

    def callInThreadWithCallback(
        self, onResult: Callable[[bool, Any], object] | None, func: Callable[..., object], *args: Any, **kw: Any
    ) -> None:
        self.held.append((onResult, func, args))

    def release(self) -> None:
        held, self.held = self.held, []
        for onResult, func, args in held:
            super().callInThreadWithCallback(onResult, func, *args)


class ThrottledCheckerTests(SynchronousTestCase):
    """
    The checker's limits: guesses throttled, hashing bounded, unknown users hashed too.
    Everything runs at once (the store, the hashing) but the waits, on the reactor's clock.
    """

    LIMITS = users.PasswordLimits(
        guesses=GuessLimits(user_failures=2, source_failures=4, max_delay=4.0, lockout=60.0, tracked=100),
        concurrent=1,
        queued=1,
    )

    def setUp(self) -> None:
        self.service = memory_store_service()
        self.addCleanup(self.service.stopService)
        self.reactor = ThreadedMemoryReactor()
        self.reactor.advance(1000.0)
        self.checker = users.StoreUserChecker(self.service, self.reactor, self.reactor, limits=self.LIMITS)
        self.successResultOf(self.service.transact(users.add_user, "Carol", password_hash("s3cret"), 1.0))
        self.hashed: list[str] = []
        real = users.verify_password

        def recording(stored: str, password: str) -> bool:
            self.hashed.append(stored)
            return real(stored, password)

        self.patch(users, "verify_password", recording)
        self.events = logged_events(self)

    def check(self, name: str, password: str, source: str = "192.0.2.9") -> Deferred[str]:
        return self.checker.check(name, password, source)

    def test_unknown_user_hashed_like_a_wrong_password(self) -> None:
        """
        An unknown user's password is hashed against the dummy hash, of the
        same cost as a real one, so the refusal takes as long as a wrong password's.
        """
        self.failureResultOf(self.check("nobody", "s3cret"), UnauthorizedLogin)
        self.failureResultOf(self.check("carol", "wrong"), UnauthorizedLogin)
        self.assertEqual(self.hashed[0], users.DUMMY_HASH)
        self.assertNotEqual(self.hashed[1], users.DUMMY_HASH)
        self.assertEqual(users.DUMMY_HASH.split("$")[:4], self.hashed[1].split("$")[:4])
        self.assertFalse(users.verify_password(users.DUMMY_HASH, ""))

    def test_guesses_wait_then_lock_out(self) -> None:
        """
        After the free failures a wrong password is answered only after a
        wait; a check during the wait is refused (unchecked) after it;
        failures go on until a lockout, logged once, refuses even the right
        password; once it expires, the right password works.
        """
        for _ in range(2):
            self.failureResultOf(self.check("carol", "wrong"), UnauthorizedLogin)
        waiting = self.check("carol", "wrong")
        self.assertNoResult(waiting)
        during = self.check("carol", "s3cret")
        hashed = len(self.hashed)
        self.reactor.advance(1.0)
        self.failureResultOf(waiting, UnauthorizedLogin)
        self.assertIsInstance(self.failureResultOf(during, users.TooManyAttempts).value, UnauthorizedLogin)
        self.assertEqual(len(self.hashed), hashed)  # refused unchecked
        locked_out = False
        for _ in range(10):
            answer = self.check("carol", "wrong")
            self.reactor.advance(4.0)
            failure = self.failureResultOf(answer, UnauthorizedLogin)
            if failure.check(users.TooManyAttempts):
                locked_out = True
                break
        self.assertTrue(locked_out)
        lockouts = [e for e in self.events if e.get("guess_key") == "user"]
        self.assertEqual(len(lockouts), 1)
        self.assertEqual((lockouts[0]["value"], lockouts[0]["source"]), ("carol", "192.0.2.9"))
        refused = self.check("carol", "s3cret", source="198.51.100.3")
        self.reactor.advance(4.0)
        self.failureResultOf(refused, users.TooManyAttempts)
        self.reactor.advance(60.0)
        self.assertEqual(self.successResultOf(self.check("carol", "s3cret", source="198.51.100.3")), "Carol")

    def test_source_throttled_across_names(self) -> None:
        """
        One address guessing many names is throttled for every name, another address is not.
        """
        for number in range(4):
            self.failureResultOf(self.check(f"user{number}", "x"), UnauthorizedLogin)
        waiting = self.check("user9", "x")
        self.assertNoResult(waiting)
        refused = self.check("carol", "s3cret")
        self.reactor.advance(1.0)
        self.failureResultOf(waiting, UnauthorizedLogin)
        self.failureResultOf(refused, users.TooManyAttempts)
        self.assertEqual(self.successResultOf(self.check("carol", "s3cret", source="198.51.100.3")), "Carol")

    def test_right_password_clears_the_name(self) -> None:
        """
        The right password forgets the user name's failures.
        """
        self.failureResultOf(self.check("carol", "wrong"), UnauthorizedLogin)
        self.successResultOf(self.check("carol", "s3cret"))
        self.assertEqual(self.checker.throttle.failures((GuessKey.USER, "carol"), self.reactor.seconds()), 0)

    def test_hashing_bounded(self) -> None:
        """
        Beyond the hashings allowed at once and those allowed to wait, a check
        is refused as busy (503) and counts as no failure; identical checks
        share one hashing and are never refused.
        """
        pool = HeldPool()
        self.reactor.pool = pool
        first = self.check("carol", "s3cret")
        same = self.check("carol", "s3cret")
        queued = self.check("dave", "other")
        busy = self.check("erin", "third")
        error = self.failureResultOf(busy, users.PasswordChecksBusy).value
        self.assertEqual((error.http_status, error.soap_subcode, error.retry_after), (503, "s:EnrollmentServer", 5))
        self.assertEqual(len(pool.held), 1)
        pool.release()
        self.assertEqual(self.successResultOf(first), "Carol")
        self.assertEqual(self.successResultOf(same), "Carol")
        pool.release()
        self.failureResultOf(queued, UnauthorizedLogin)
        now = self.reactor.seconds()
        self.assertEqual(
            [self.checker.throttle.failures((GuessKey.USER, name), now) for name in ("carol", "dave", "erin")],
            [0, 1, 0],
        )

    def test_refusals_declared(self) -> None:
        """
        TooManyAttempts is the peer's (429, s:Authentication) and a failed
        login to twisted.cred; PasswordChecksBusy is "busy".
        """
        self.assertTrue(issubclass(users.TooManyAttempts, PeerError))
        self.assertEqual((users.TooManyAttempts.http_status, users.TooManyAttempts.soap_subcode), (429, "s:Authentication"))
        self.assertTrue(issubclass(users.PasswordChecksBusy, Busy))


class UserPolicyTests(SynchronousTestCase):
    def test_name_forms(self) -> None:
        """
        By default a name is an e-mail address, DOMAIN\\user or a plain name;
        anything else is refused naming the accepted forms.
        """
        policy = users.UserPolicy()
        for name in ("bob@example.com", "bob@contoso", "CONTOSO\\alice", "corp.example\\bob", "eve", "x", "a.b-c_d"):
            self.assertEqual(policy.check_name(name), name)
        for name in ("a b", "@example.com", "bob@", "CONTOSO\\", "A\\b\\c", "-eve", "x" * 65, "bob@ex ample.com"):
            with self.assertRaises(users.InvalidUserName) as caught:
                policy.check_name(name)
            self.assertEqual(
                str(caught.exception),
                f"'{name}' is not a valid user name: expected an e-mail address (user@example.com), "
                "or DOMAIN\\user, or a plain name matching [A-Za-z0-9][A-Za-z0-9._-]{0,63}",
            )
            self.assertEqual(caught.exception.http_status, 400)

    def test_configured_forms(self) -> None:
        """
        The accepted forms and the plain pattern are configurable.
        """
        emails = users.UserPolicy(forms=("email",))
        self.assertRaises(users.InvalidUserName, emails.check_name, "eve")
        self.assertRaises(users.InvalidUserName, emails.check_name, "CONTOSO\\eve")
        with self.assertRaises(users.InvalidUserName) as caught:
            emails.check_name("eve")
        self.assertIn("expected an e-mail address (user@example.com)", str(caught.exception))
        digits = users.UserPolicy(forms=("plain",), plain_pattern="[0-9]{6}")
        self.assertEqual(digits.check_name("123456"), "123456")
        self.assertRaises(users.InvalidUserName, digits.check_name, "12345")
        self.assertRaises(users.InvalidUserName, digits.check_name, "bob@example.com")

    def test_password_length(self) -> None:
        """
        A password shorter than the configured minimum (8 by default) is refused with how long it must be.
        """
        self.assertEqual(users.UserPolicy().check_password("8 chars!"), "8 chars!")
        with self.assertRaises(users.WeakPassword) as caught:
            users.UserPolicy().check_password("abc")
        self.assertEqual(str(caught.exception), "the password is too short: at least 8 characters")
        self.assertEqual(caught.exception.http_status, 400)
        self.assertEqual(users.UserPolicy(min_password=3).check_password("abc"), "abc")
