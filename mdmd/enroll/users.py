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
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from zope.interface import implementer

from mdmd.errors import SOAP_AUTHENTICATION, SOAP_AUTHORIZATION, Conflict, NotFound, PeerError
from mdmd.store.models import User
from mdmd.store.runner import StoreService

__all__ = [
    "UserInfo",
    "UserExists",
    "UnknownUser",
    "UserDisabled",
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
    pool, never on the reactor thread.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        store: StoreService,
        reactor: IReactorThreads,
        clock: IReactorTime,
        cache_seconds: float = 300.0,
        cache_size: int = 4096,
    ) -> None:
        self._store = store
        self._reactor = reactor
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._verified: OrderedDict[bytes, Remembered] = OrderedDict()
        self._pending: dict[tuple[bytes, str], list[Deferred[bool]]] = {}
        self._secret = os.urandom(32)

    # twisted.cred declares avatar ids as bytes; ours are display names (str),
    # which a Portal passes through as they are.
    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[str]:  # type: ignore[override]  # avatar ids are str
        name, password = credentials.username, credentials.password
        return self.check(
            name.decode("utf-8", "replace") if isinstance(name, bytes) else name,
            password.decode("utf-8", "replace") if isinstance(password, bytes) else password,
        )

    def check(self, name: str, password: str) -> Deferred[str]:
        """
        The display name of the user with these credentials.

        @raise UnauthorizedLogin: unknown user or wrong password.
        @raise UserDisabled: the right password of a disabled user.
        """
        return Deferred.fromCoroutine(self._check(name, password))

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

    async def _check(self, name: str, password: str) -> str:
        if not name or len(name) > MAX_NAME or len(password) > MAX_PASSWORD:
            raise UnauthorizedLogin("unknown user or wrong password")
        found = await self._store.read(credentials_of, name)
        if found is None:
            raise UnauthorizedLogin("unknown user or wrong password")
        display_name, stored, enabled = found
        key = self._key(name, password)
        now = self._clock.seconds()
        entry = self._verified.get(key)
        if entry is None or entry.expires_at <= now or entry.password_hash != stored:
            if not await self._verify(key, stored, password):
                raise UnauthorizedLogin("unknown user or wrong password")
            self._remember(key, Remembered(display_name, stored, self._clock.seconds() + self._cache_seconds))
        if not enabled:
            raise UserDisabled(f"user {display_name} is disabled")
        return display_name

    def _verify(self, key: bytes, stored: str, password: str) -> Deferred[bool]:
        """
        C{verify_password} on the thread pool, shared by concurrent identical checks.
        """
        waiting: Deferred[bool] = Deferred()
        waiters = self._pending.get((key, stored))
        if waiters is not None:
            waiters.append(waiting)
            return waiting
        self._pending[(key, stored)] = [waiting]
        hashing = deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), verify_password, stored, password
        )
        hashing.addBoth(self._settle, (key, stored))
        return waiting

    def _settle(self, result: bool | Failure, pending: tuple[bytes, str]) -> None:
        for waiting in self._pending.pop(pending):
            if isinstance(result, Failure):
                waiting.errback(result)
            else:
                waiting.callback(result)

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
