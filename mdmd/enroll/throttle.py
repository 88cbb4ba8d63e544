"""
Password guessing, slowed down: failed password checks counted per user
name and per source address, in memory (sans-IO: every call takes C{now}).

A key (a user name as the store keys it, or a source address) may fail
C{free} checks without consequence. Each failure after those makes it wait
before its next check is admitted: 1, 2, 4, … seconds; once that wait would
exceed C{max_delay}, the key is locked out for C{lockout} seconds instead. A
key that has not failed for C{lockout} seconds starts afresh (so does a user
name whose password was right).

Guesses are counted by attempt (a digest of the credentials): checks of the
same credentials that run together are one guess (a class of devices
enrolling with one account at once is not guessing), and checks of
different ones run side by side only while they fit in what is left of the
key's free failures (a user name's always; a source's once it has failed:
many users may share an address) — beyond that, one at a time. So parallel
clients cannot spend one wait, or the free failures, on many guesses.

Callers hold the answer to a refused or failed check for the wait this
gives them (L{Refused.wait}, L{Settled.wait}): a client that waits for its
answers (most do) then guesses at most once per wait, and cheaply. A lockout
is reported once, when it begins (L{Settled.lockouts}), for one log line per
lockout rather than one per guess.

The records live in this process only, in a bounded LRU (C{tracked}
entries: the least recently used key is forgotten first). Behind a load
balancer every node counts its own guesses: the limits are per node.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["GuessLimits", "GuessKey", "GuessThrottle", "Lockout", "Outcome", "Refused", "Settled"]


@dataclass(frozen=True)
class GuessLimits:
    """
    How many failures are free, how long a failing key waits, and for how long it is locked out.

    @ivar user_failures: failed checks of one user name before waits begin.
    @ivar source_failures: failed checks from one source address before waits begin
        (more than a user's: many people may share an address behind a NAT).
    @ivar max_delay: the longest wait between two checks, in seconds; a
        failure whose wait would be longer locks the key out. Also the
        longest an answer is held.
    @ivar lockout: seconds a key stays locked out, and after which a key
        that stopped failing is forgotten.
    @ivar tracked: keys remembered at most (least recently used forgotten first).
    """

    user_failures: int = 5
    source_failures: int = 20
    max_delay: float = 16.0
    lockout: float = 900.0
    tracked: int = 10_000


class GuessKey(enum.Enum):
    """
    What a throttled key names.
    """

    USER = "user"
    SOURCE = "source"


#: A throttled key: its kind and value (a store user key, a source address).
Key = tuple[GuessKey, str]


class Outcome(enum.Enum):
    """
    How an admitted check ended.
    """

    #: the password was right
    SUCCEEDED = "succeeded"
    #: the password was wrong (or the user unknown)
    FAILED = "failed"
    #: no verdict (the check could not run): nothing is counted
    ABANDONED = "abandoned"


@dataclass(frozen=True)
class Refused:
    """
    A check not admitted: hold the answer C{wait} seconds; C{locked} if a key is locked out.
    """

    wait: float
    locked: bool
    key: Key


@dataclass(frozen=True)
class Lockout:
    """
    A key has just been locked out, after C{failures} failed checks, until C{until}.
    """

    key: Key
    failures: int
    until: float


@dataclass(frozen=True)
class Settled:
    """
    What a finished check leaves to do: hold the answer C{wait} seconds, log the C{lockouts}.
    """

    wait: float = 0.0
    lockouts: tuple[Lockout, ...] = ()


@dataclass
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    #: no check is admitted before this moment (a wait, or a lockout's end)
    not_before: float = 0.0
    locked: bool = False
    #: attempts admitted and not yet settled, with how many checks share each
    checking: dict[bytes, int] = field(default_factory=dict)


class GuessThrottle:
    """
    The failure records of user names and source addresses, and the rules above.
    """

    def __init__(self, limits: GuessLimits) -> None:
        self.limits = limits
        self._records: OrderedDict[Key, _Record] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def admit(self, keys: Sequence[Key], attempt: bytes, now: float) -> Refused | None:
        """
        Whether a check of C{attempt} (a digest of the credentials) against
        C{keys} (the user names tried, the source) may run now: None, and
        the check is counted as running until L{settle}; or why not.
        """
        for key in keys:
            record = self._current(key, now)
            if record is None:
                continue
            if now < record.not_before:
                wait = min(record.not_before - now, self.limits.max_delay)
                return Refused(wait, record.locked, key)
            if attempt in record.checking:
                continue  # the same credentials are being checked: one guess
            running = len(record.checking)
            strict = key[0] is GuessKey.USER or record.failures > 0
            if running and strict and record.failures + running >= self._free(key):
                # wait as long as the running checks' failures would make us
                return Refused(self._wait_after(key, record.failures + running), False, key)
        for key in keys:
            checking = self._record(key).checking
            checking[attempt] = checking.get(attempt, 0) + 1
        return None

    def settle(self, keys: Sequence[Key], attempt: bytes, outcome: Outcome, now: float) -> Settled:
        """
        Count the end of a check of C{attempt} that L{admit} let run. A
        failure counts once per attempt, when the last check sharing it ends;
        every one of them is told the wait it makes.
        """
        wait = 0.0
        lockouts: list[Lockout] = []
        for key in keys:
            record = self._record(key)
            sharing = record.checking.pop(attempt, 1) - 1
            if sharing:
                record.checking[attempt] = sharing
            if outcome is Outcome.FAILED:
                if sharing:  # the last check sharing it will count it: the wait it will make
                    wait = max(wait, min(self._delay(key, record.failures + 1), self.limits.max_delay))
                    continue
                if now - record.last_failure >= self.limits.lockout:
                    record.failures = 0
                record.failures += 1
                record.last_failure = now
                record.locked = False
                delay = self._delay(key, record.failures)
                if delay > self.limits.max_delay:
                    record.locked = True
                    record.not_before = now + self.limits.lockout
                    lockouts.append(Lockout(key, record.failures, record.not_before))
                elif delay:
                    record.not_before = now + delay
                wait = max(wait, min(delay, self.limits.max_delay))
            elif outcome is Outcome.SUCCEEDED and key[0] is GuessKey.USER:
                record.failures = 0
            if not record.failures and not record.checking:
                del self._records[key]
        return Settled(wait, tuple(lockouts))

    def failures(self, key: Key, now: float) -> int:
        """
        The failures counted against C{key} (0 once forgotten).
        """
        record = self._current(key, now)
        return 0 if record is None else record.failures

    def _free(self, key: Key) -> int:
        if key[0] is GuessKey.USER:
            return self.limits.user_failures
        return self.limits.source_failures

    def _delay(self, key: Key, failures: int) -> float:
        """
        The wait that a key's C{failures}-th failure imposes: none within the
        free ones, then 1, 2, 4, … seconds (more than C{max_delay} means a lockout).
        """
        excess = failures - self._free(key)
        if excess <= 0:
            return 0.0
        return float(2 ** min(excess - 1, 62))

    def _wait_after(self, key: Key, failures: int) -> float:
        """
        How long to hold an answer given C{failures} failures: their wait, at
        least a second (a refusal answered at once would only be tried again
        at once), at most C{max_delay}.
        """
        return min(max(self._delay(key, failures), 1.0), self.limits.max_delay)

    def _current(self, key: Key, now: float) -> _Record | None:
        """
        The record of C{key}, None if there is none or it has expired (then it is forgotten).
        """
        record = self._records.get(key)
        if record is None:
            return None
        expired = now >= record.not_before and now - record.last_failure >= self.limits.lockout
        if expired and not record.checking:
            del self._records[key]
            return None
        if expired:
            record.failures, record.locked = 0, False
        return record

    def _record(self, key: Key) -> _Record:
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = _Record()
            while len(self._records) > self.limits.tracked:
                self._records.popitem(last=False)
        else:
            self._records.move_to_end(key)
        return record
