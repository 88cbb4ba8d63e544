"""
The users allowed to enroll devices, with scrypt-hashed passwords, behind a
C{twisted.cred} checker so another backend (LDAP, say) can replace the store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import unicodedata
from collections import OrderedDict
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, DeferredSemaphore, succeed
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mdmd.enroll.throttle import GuessKey, GuessLimits, GuessThrottle, Key, Outcome, Settled
from mdmd.errors import SOAP_AUTHENTICATION, SOAP_AUTHORIZATION, Busy, Conflict, NotFound, PeerError
from mdmd.store.models import User
from mdmd.store.runner import StoreService

__all__ = [
    "UserInfo",
    "UserExists",
    "UnknownUser",
    "UserDisabled",
    "TooManyAttempts",
    "PasswordChecksBusy",
    "PasswordLimits",
    "InvalidUserName",
    "WeakPassword",
    "UserPolicy",
    "NAME_FORMS",
    "hash_password",
    "verify_password",
    "add_user",
    "remove_user",
    "set_enabled",
    "list_users",
    "credentials_of",
    "StoreUserChecker",
    "Remembered",
    "StaleCredentials",
    "confirm",
]

Root = MutableMapping[str, Any]

log = Logger()

#: scrypt cost: about 0.1 s and 32 MiB per hash on current hardware. The
#: parameters are stored with each hash, so raising them later is safe.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
MAX_NAME = 256
MAX_PASSWORD = 1024


class UserExists(Conflict):
    def __str__(self) -> str:
        return f"user {self.args[0]!r} already exists"


class UnknownUser(NotFound):
    def __str__(self) -> str:
        return f"no user {self.args[0]!r}"


class InvalidUserName(PeerError):
    """
    Not a name a user may have (empty, too long, control characters).
    """


class WeakPassword(PeerError):
    """
    A password the configured policy refuses (too short).
    """


#: The shapes a user name may take, as Windows sends them in enrollment: a
#: UPN or e-mail address, a down-level logon name (DOMAIN\user), or a plain
#: name matching the configured pattern.
NAME_FORMS: dict[str, tuple[re.Pattern[str], str]] = {
    "email": (re.compile(r"[^@\s\\]+@[^@\s\\.]+(\.[^@\s\\.]+)*"), "an e-mail address (user@example.com)"),
    "domain": (re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,14}\\[^\\/@\s\[\]:|<>+=;,?*\"]+"), "DOMAIN\\user"),
}
#: The plain names accepted by default: a letter or digit, then letters, digits, . _ -
PLAIN_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"


@dataclass(frozen=True)
class UserPolicy:
    """
    What names and passwords an operator may give users (checked when a
    user is added or a password set; existing users are left as they are).

    @ivar forms: the accepted name forms: C{email}, C{domain}, C{plain}.
    @ivar plain_pattern: the regular expression a plain name must match whole.
    @ivar min_password: the fewest characters of a password.
    """

    forms: tuple[str, ...] = ("email", "domain", "plain")
    plain_pattern: str = PLAIN_NAME
    min_password: int = 8

    def check_name(self, name: str) -> str:
        """
        C{name}, if it has one of the accepted forms.

        @raise InvalidUserName: naming the forms accepted.
        """
        for form in self.forms:
            pattern = re.compile(self.plain_pattern) if form == "plain" else NAME_FORMS[form][0]
            if pattern.fullmatch(name):
                return name
        raise InvalidUserName(f"'{name}' is not a valid user name: expected {self.describe_names()}")

    def describe_names(self) -> str:
        shapes = [
            f"a plain name matching {self.plain_pattern}" if form == "plain" else NAME_FORMS[form][1]
            for form in self.forms
        ]
        return ", or ".join(shapes)

    def check_password(self, password: str) -> str:
        """
        C{password}, if it is long enough.

        @raise WeakPassword: saying how long it must be.
        """
        if len(password) < self.min_password:
            raise WeakPassword(f"the password is too short: at least {self.min_password} characters")
        return password


class UserDisabled(UnauthorizedLogin, PeerError):
    """
    The password is right but the account may not enroll devices.
    """

    http_status = 403
    soap_subcode = SOAP_AUTHORIZATION


class TooManyAttempts(UnauthorizedLogin, PeerError):
    """
    Too many failed password checks of this user name or from this address:
    not checked now (see L{mdmd.enroll.throttle}).
    """

    http_status = 429
    soap_subcode = SOAP_AUTHENTICATION


class PasswordChecksBusy(Busy):
    """
    So many password checks are running and waiting that this one is refused
    (each scrypt takes 32 MiB): try again shortly.
    """


@dataclass(frozen=True)
class UserInfo:
    name: str
    enabled: bool
    created_at: float

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "enabled": self.enabled, "created_at": self.created_at}


def user_key(name: str) -> str:
    """
    The store key of a user name: NFKC and case-folded, as people type names differently.
    """
    return unicodedata.normalize("NFKC", name).casefold()


def validate_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidUserName("a user name must not be empty")
    if len(name) > MAX_NAME:
        raise InvalidUserName(f"a user name is at most {MAX_NAME} characters")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise InvalidUserName("a user name must not contain control characters")
    return name


def hash_password(password: str, salt: bytes | None = None) -> str:
    """
    C{scrypt$N$r$p$salt$hash}, base64 fields.
    """
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"a password is at most {MAX_PASSWORD} characters")
    salt = os.urandom(16) if salt is None else salt
    derived = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        [
            "scrypt",
            str(SCRYPT_N),
            str(SCRYPT_R),
            str(SCRYPT_P),
            base64.b64encode(salt).decode("ascii"),
            base64.b64encode(derived).decode("ascii"),
        ]
    )


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=256 * 1024 * 1024
    )


def verify_password(stored: str, password: str) -> bool:
    """
    Whether C{password} matches C{stored}, in constant time for a given hash.
    """
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != "scrypt":
            return False
        derived = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(derived, base64.b64decode(expected))


# --- units of work on the store ---------------------------------------------------------


def _info(user: User) -> UserInfo:
    return UserInfo(user.name, user.enabled, user.created_at)


def add_user(root: Root, name: str, password_hash: str, now: float) -> UserInfo:
    name = validate_name(name)
    key = user_key(name)
    if key in root["users"]:
        raise UserExists(name)
    user = User(name, password_hash, now)
    root["users"][key] = user
    return _info(user)


def _existing(root: Root, name: str) -> User:
    user = root["users"].get(user_key(name))
    if user is None:
        raise UnknownUser(name)
    return user


def remove_user(root: Root, name: str) -> UserInfo:
    user = _existing(root, name)
    del root["users"][user_key(name)]
    return _info(user)


def set_enabled(root: Root, name: str, enabled: bool) -> UserInfo:
    user = _existing(root, name)
    user.enabled = enabled
    return _info(user)


def set_password(root: Root, name: str, password_hash: str) -> UserInfo:
    user = _existing(root, name)
    user.password_hash = password_hash
    return _info(user)


def list_users(root: Root) -> list[UserInfo]:
    return [_info(u) for u in root["users"].values()]


def credentials_of(root: Root, name: str) -> tuple[str, str, bool] | None:
    """
    (display name, password hash, enabled) of a user, or None.
    """
    user = root["users"].get(user_key(name))
    return None if user is None else (user.name, user.password_hash, user.enabled)


@dataclass(frozen=True)
class Remembered:
    """
    A recent successful check: who, and against which stored hash.
    """

    display_name: str
    password_hash: str
    expires_at: float


#: What an unknown user's password is checked against, so that an unknown
#: user is answered as slowly as a wrong password (no password matches it:
#: its hash is zeros, which scrypt does not produce).
DUMMY_HASH = "$".join(
    [
        "scrypt",
        str(SCRYPT_N),
        str(SCRYPT_R),
        str(SCRYPT_P),
        base64.b64encode(b"mdmd:no-such-usr").decode("ascii"),
        base64.b64encode(bytes(32)).decode("ascii"),
    ]
)


@dataclass(frozen=True)
class PasswordLimits:
    """
    What a password check may cost: guesses (L{GuessLimits}), and how many
    scrypt computations (32 MiB each) run at once and may wait for a turn.
    """

    guesses: GuessLimits = GuessLimits()
    concurrent: int = 1
    queued: int = 128


@implementer(ICredentialsChecker)
class StoreUserChecker:
    """
    Check user names and passwords against the store; the avatar id is the user name.

    scrypt is deliberately slow, and one enrollment checks the same password
    twice (GetPolicies, then RequestSecurityToken), so successful checks are
    remembered for a few minutes, keyed by a hash of the name and password,
    together with the stored hash they matched (a password change
    invalidates the entry). Concurrent checks of the same credentials share
    one hashing (a class of devices enrolling with one account at once does
    not start one 32 MiB scrypt each). Hashing runs on the reactor's thread
    pool, never on the reactor thread, at most C{limits.concurrent} at a
    time with at most C{limits.queued} waiting (beyond that a check is
    refused as L{PasswordChecksBusy}), so guessing cannot take the memory.

    Guessing is throttled per user name and per source address
    (L{mdmd.enroll.throttle}, in this process's memory): a refused check is
    answered L{TooManyAttempts} and a failed one L{UnauthorizedLogin}, each
    after the wait the throttle gives. An unknown user's password is hashed
    too (against L{DUMMY_HASH}), so that how long a refusal takes does not
    tell whether the user exists.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        store: StoreService,
        reactor: IReactorThreads,
        clock: IReactorTime,
        cache_seconds: float = 300.0,
        cache_size: int = 4096,
        limits: PasswordLimits = PasswordLimits(),
    ) -> None:
        self._store = store
        self._reactor = reactor
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._verified: OrderedDict[bytes, Remembered] = OrderedDict()
        self._pending: dict[tuple[bytes, str], list[Deferred[bool]]] = {}
        self._secret = os.urandom(32)
        self.limits = limits
        self.throttle = GuessThrottle(limits.guesses)
        self._hashing = DeferredSemaphore(limits.concurrent)

    # twisted.cred declares avatar ids as bytes; ours are display names (str),
    # which a Portal passes through as they are.
    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[str]:  # type: ignore[override]  # avatar ids are str
        name, password = credentials.username, credentials.password
        return self.check(
            name.decode("utf-8", "replace") if isinstance(name, bytes) else name,
            password.decode("utf-8", "replace") if isinstance(password, bytes) else password,
        )

    def check(self, name: str, password: str, source: str = "") -> Deferred[str]:
        """
        The display name of the user with these credentials.

        @param source: the address the check comes from ("" if none), throttled as well as the name.
        @raise UnauthorizedLogin: unknown user or wrong password.
        @raise UserDisabled: the right password of a disabled user.
        @raise TooManyAttempts: not checked: too many failures of this name or source.
        @raise PasswordChecksBusy: not checked: too many checks at once.
        """
        checking = Deferred.fromCoroutine(self._check([(name, password)], source))
        return checking.addCallback(lambda found: found[0])

    def check_first(self, candidates: Sequence[tuple[str, str]], source: str = "") -> Deferred[tuple[str, int]]:
        """
        The display name of the user whose credentials the first matching
        (name, password) of C{candidates} are, and that candidate's index:
        one attempt for the throttle, however many spellings it tries.

        @raise UnauthorizedLogin: (and the rest) as L{check}.
        """
        return Deferred.fromCoroutine(self._check(candidates, source))

    def _key(self, name: str, password: str) -> bytes:
        return hmac.new(
            self._secret, b"\0".join(s.encode("utf-8") for s in (name, password)), "sha256"
        ).digest()

    def remembered(self, name: str, password: str) -> Remembered | None:
        """
        The recent successful check of exactly these credentials, if any.

        It touches nothing but memory: a caller that trusts it must confirm,
        in its own unit of work, that the user still has that password hash
        and is enabled (see L{confirm}).
        """
        entry = self._verified.get(self._key(name, password))
        if entry is None or entry.expires_at <= self._clock.seconds():
            return None
        return entry

    async def _check(self, candidates: Sequence[tuple[str, str]], source: str) -> tuple[str, int]:
        usable = [
            (index, name, password)
            for index, (name, password) in enumerate(candidates)
            if name and len(name) <= MAX_NAME and len(password) <= MAX_PASSWORD
        ]
        if not usable:
            raise UnauthorizedLogin("unknown user or wrong password")
        keys: list[Key] = list(dict.fromkeys((GuessKey.USER, user_key(name)) for _, name, _ in usable))
        if source:
            keys.append((GuessKey.SOURCE, source))
        # the attempt: the first spelling stands for the others, derived from it
        attempt = self._key(usable[0][1], usable[0][2])
        refused = self.throttle.admit(keys, attempt, self._clock.seconds())
        if refused is not None:
            await self._hold(refused.wait)
            raise TooManyAttempts(
                "too many failed password checks for this user name or address; try again later"
                if not refused.locked
                else "too many failed password checks for this user name or address: locked out "
                f"for up to {self.limits.guesses.lockout:.0f} s"
            )
        outcome = Outcome.ABANDONED
        try:
            for index, name, password in usable:
                found = await self._matching(name, password)
                if found is not None:
                    outcome = Outcome.SUCCEEDED
                    display_name, enabled = found
                    if not enabled:
                        raise UserDisabled(f"user {display_name} is disabled")
                    return display_name, index
            outcome = Outcome.FAILED
        finally:
            settled = self.throttle.settle(keys, attempt, outcome, self._clock.seconds())
            self._log_lockouts(settled, source)
        await self._hold(settled.wait)
        raise UnauthorizedLogin("unknown user or wrong password")

    async def _matching(self, name: str, password: str) -> tuple[str, bool] | None:
        """
        (display name, enabled) of the user C{name} if C{password} is theirs,
        else None; the password is hashed whether or not the user exists.
        """
        found = await self._store.read(credentials_of, name)
        display_name, stored, enabled = found if found is not None else ("", DUMMY_HASH, False)
        key = self._key(name, password)
        entry = self._verified.get(key)
        if entry is None or entry.expires_at <= self._clock.seconds() or entry.password_hash != stored:
            if not await self._verify(key, stored, password) or found is None:
                return None
            self._remember(key, Remembered(display_name, stored, self._clock.seconds() + self._cache_seconds))
        return display_name, enabled

    def _verify(self, key: bytes, stored: str, password: str) -> Deferred[bool]:
        """
        C{verify_password} on the thread pool, shared by concurrent identical
        checks, at most C{limits.concurrent} at once.

        @raise PasswordChecksBusy: if C{limits.queued} checks wait already.
        """
        waiting: Deferred[bool] = Deferred()
        waiters = self._pending.get((key, stored))
        if waiters is not None:
            waiters.append(waiting)
            return waiting
        if self._hashing.tokens == 0 and len(self._hashing.waiting) >= self.limits.queued:
            raise PasswordChecksBusy(
                f"{self.limits.concurrent} password checks running and {self.limits.queued} waiting"
            )
        self._pending[(key, stored)] = [waiting]
        hashing = self._hashing.run(
            deferToThreadPool, self._reactor, self._reactor.getThreadPool(), verify_password, stored, password
        )
        hashing.addBoth(self._settle, (key, stored))
        return waiting

    def _settle(self, result: bool | Failure, pending: tuple[bytes, str]) -> None:
        for waiting in self._pending.pop(pending):
            if isinstance(result, Failure):
                waiting.errback(result)
            else:
                waiting.callback(result)

    def _hold(self, seconds: float) -> Deferred[None]:
        """
        Wait before answering a refused or failed check (nothing when C{seconds} is 0).
        """
        if seconds <= 0:
            return succeed(None)
        return deferLater(self._clock, seconds, lambda: None)

    def _log_lockouts(self, settled: Settled, source: str) -> None:
        for lockout in settled.lockouts:
            kind, value = lockout.key
            log.warn(
                "password guessing: {kind} {value} locked out for {seconds:.0f} s after "
                "{failures} failed checks (the last from {source})",
                kind=kind.value,
                value=value,
                seconds=self.limits.guesses.lockout,
                failures=lockout.failures,
                source=source or "an unknown address",
                guess_key=kind.value,
                locked_until=lockout.until,
            )

    def _remember(self, key: bytes, entry: Remembered) -> None:
        self._verified[key] = entry
        self._verified.move_to_end(key)
        while len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)


class StaleCredentials(PeerError):
    """
    The user's password changed, or the user was disabled or removed, since the remembered check.
    """

    http_status = 401
    soap_subcode = SOAP_AUTHENTICATION


def confirm(root: Root, name: str, remembered: Remembered) -> str:
    """
    Within a unit of work: the user C{name} still exists, is enabled and has
    the password hash a remembered check matched; their display name.

    @raise StaleCredentials: if not.
    """
    found = credentials_of(root, name)
    if found is None or found[1] != remembered.password_hash or not found[2]:
        raise StaleCredentials(name)
    return found[0]
