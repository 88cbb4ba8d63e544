"""
Waking a group's devices after an assignment (C{--push}): off the reactor
thread, a page of members at a time.

The assignment itself is answered first (it is O(1)); then the group's
members are read in pages of C{batch} on the store's threads
(L{mdmd.desired.catalog.member_page}: managed devices with a number to push
to) and each page is one push (one unit of work), so the reactor thread
only passes pages along and a large group never becomes one large answer
or one long transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.logger import Logger

from mdmd.desired import catalog
from mdmd.errors import AnsweredError
from mdmd.notify.notifier import Notifier
from mdmd.store.runner import StoreService

__all__ = ["Woken", "wake_group"]

log = Logger()


@dataclass(frozen=True)
class Woken:
    group: str
    #: push jobs made
    pushed: int
    #: devices of pages the notifier refused (named in the log)
    refused: int


async def wake_group(store: StoreService, notifier: Notifier, group: str, batch: int) -> Woken:
    """
    Push every pushable member of C{group}, C{batch} at a time.
    """
    after: str | None = None
    pushed = refused = 0
    while True:
        ids, after = await store.read(catalog.member_page, group, after, batch)
        if ids:
            try:
                pushed += len(await notifier.push(ids))
            except AnsweredError as e:
                refused += len(ids)
                log.warn("waking group {group}: {count} device(s) not pushed: {error}", group=group, count=len(ids), error=str(e))
        if after is None:
            log.info("woke group {group}: {pushed} push(es), {refused} refused", group=group, pushed=pushed, refused=refused)
            return Woken(group, pushed, refused)
