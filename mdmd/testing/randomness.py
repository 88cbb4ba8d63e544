"""
Deterministic stand-ins for C{os.urandom}.

mdmd's engines take their random bytes from a C{random(size) -> bytes}
argument (session ids, nonces, secrets), so a test can say which bytes they
get and assert on what follows from them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

__all__ = ["fixed_random"]


def fixed_random(*values: int) -> Callable[[int], bytes]:
    """
    A random source giving these 16-bit values in turn (then 0x4242 for ever).
    """
    source = itertools.chain(values, itertools.repeat(0x4242))
    return lambda size: next(source).to_bytes(size, "big")
