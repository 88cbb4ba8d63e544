"""
Shared helpers for tests of what reads the store: a record that must not be read.
"""

from __future__ import annotations

from typing import Any

from persistent import Persistent


class Tripwire(Persistent):
    """
    A record a sweep must not read: loading it (once the connections'
    caches were emptied, C{db.cacheMinimize()}) fails the unit of work.
    """

    def __setstate__(self, state: Any) -> None:
        raise AssertionError("a record that was not due was read")
