"""
Idempotency keys of the admin API: a creating request sent again (its
answer was lost) is answered again, not done again.

A client puts an C{Idempotency-Key} header on a request that creates
something (a user, a device, commands, pushes...). The first time the key
is seen, the request is carried out and its answer (status and JSON body)
is stored with the key and a fingerprint of the request, in the same
transaction as what it created: either both are committed or neither is.
The same key again finds the stored answer and returns it untouched; the
same key on another request is refused (422). Keys expire after
L{IdempotencySettings.keep} seconds; an index ordered by expiry lets each
new key remove a few expired ones, so the table stays as small as the keys
of that period and nothing ever walks it whole.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from mdmd.errors import PeerError
from mdmd.store.models import IdempotentAnswer

__all__ = [
    "HEADER",
    "IdempotencyKey",
    "IdempotencySettings",
    "InvalidIdempotencyKey",
    "IdempotencyKeyReused",
    "Replayed",
    "recall",
    "remember",
    "recorded",
]

Root = MutableMapping[str, Any]
T = TypeVar("T")

#: The request header (the IETF httpapi draft's name, as Stripe and others use it).
HEADER: Final = b"idempotency-key"
#: The answer header that marks a stored answer given again.
REPLAYED_HEADER: Final = b"Idempotent-Replayed"
#: The longest key: a UUID or a random token fits many times.
MAX_KEY: Final = 255
#: Expired keys one new key removes at most (more than one, so the table shrinks after a burst).
SWEEP_BATCH: Final = 8


@dataclass(frozen=True)
class IdempotencySettings:
    """
    @ivar keep: seconds a key and its answer are kept.
    """

    keep: float = 86400.0


class InvalidIdempotencyKey(PeerError):
    """
    The header is empty, too long, or not printable ASCII.
    """


class IdempotencyKeyReused(PeerError):
    """
    The key was used for another request (another route or body).
    """

    http_status = 422


class Replayed(Exception):
    """
    The key was seen before: its stored answer. Raised inside a unit of
    work, it also undoes whatever that unit had done.
    """

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class IdempotencyKey:
    """
    A request's key and the fingerprint of what it asks (method, path, body).
    """

    key: str
    fingerprint: str

    @classmethod
    def of(cls, header: bytes, method: bytes, path: bytes, body: bytes) -> IdempotencyKey:
        try:
            key = header.decode("ascii").strip()
        except UnicodeDecodeError:
            key = ""
        if not key or len(key) > MAX_KEY or not key.isprintable():
            raise InvalidIdempotencyKey(f"an Idempotency-Key is 1 to {MAX_KEY} printable ASCII characters")
        digest = hashlib.sha256()
        for part in (method, path, body):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return cls(key, digest.hexdigest())


def recall(root: Root, key: IdempotencyKey, now: float) -> Replayed | None:
    """
    The answer stored under C{key} (as a L{Replayed}), or None if the key is
    new or has expired.

    @raise IdempotencyKeyReused: if the key came with another request.
    """
    stored: IdempotentAnswer | None = root["idempotency"].get(key.key)
    if stored is None or stored.expires_at <= now:
        return None
    if stored.fingerprint != key.fingerprint:
        raise IdempotencyKeyReused(f"Idempotency-Key {key.key!r} was used for another request")
    return Replayed(stored.status, stored.body)


def remember(root: Root, key: IdempotencyKey, status: int, value: Any, now: float, settings: IdempotencySettings) -> bytes:
    """
    Store the answer to C{key}'s request; its body, encoded.

    @raise Replayed: if the key was stored meanwhile (a concurrent retry
        won): the caller's transaction must not commit its work.
    """
    replayed = recall(root, key, now)
    if replayed is not None:
        raise replayed
    _sweep(root, now)
    body = encode(value)
    answers, expiry = root["idempotency"], root["idempotency_expiry"]
    previous: IdempotentAnswer | None = answers.get(key.key)
    if previous is not None:  # expired, not swept yet
        expiry.remove((previous.expires_at, key.key))
    answer = IdempotentAnswer(key.key, key.fingerprint, status, body, now, now + settings.keep)
    answers[key.key] = answer
    expiry.insert((answer.expires_at, key.key))
    return body


def _sweep(root: Root, now: float) -> None:
    """
    Remove up to L{SWEEP_BATCH} expired keys, oldest first, through the expiry index.
    """
    answers, expiry = root["idempotency"], root["idempotency_expiry"]
    due: list[tuple[float, str]] = []
    for expires_at, key in expiry:
        if expires_at > now or len(due) == SWEEP_BATCH:
            break
        due.append((expires_at, key))
    for entry in due:
        expiry.remove(entry)
        del answers[entry[1]]


def recorded(
    fn: Callable[..., T],
    key: IdempotencyKey,
    answer: Callable[[T], tuple[int, Any]],
    now: float,
    settings: IdempotencySettings,
) -> Callable[..., tuple[int, bytes]]:
    """
    A unit of work doing C{fn(root, *args)} once per key: it returns the
    answer (status, encoded body) that C{answer} makes of C{fn}'s result,
    stored in the same transaction, or raises L{Replayed} with the answer
    stored before.
    """

    def unit(root: Root, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        replayed = recall(root, key, now)
        if replayed is not None:
            raise replayed
        status, value = answer(fn(root, *args, **kwargs))
        return status, remember(root, key, status, value, now, settings)

    unit.__name__ = getattr(fn, "__name__", unit.__name__)  # named as the work it does, in logs
    return unit


def encode(value: Any) -> bytes:
    """
    A JSON answer body, as the admin API writes them (bytes are encoded already).
    """
    if isinstance(value, bytes):
        return value
    return json.dumps(value, indent=None, sort_keys=True).encode("utf-8") + b"\n"
