"""
Bringing a store made by an older mdmd to the layout this one reads.

The root's L{StoreSchema} says which layout (L{SCHEMA_VERSION}) a store
has. A L{Step} brings it from one version to the next with L{Pass}es: each
walks one root container in key order and visits every record (to count it,
to index it). L{upgrade} runs at start-up, before anything is served, on the
store's own units of work: a pass goes in batches of at most C{batch}
records, one transaction each, and its progress (the last key done) is
committed with the batch, so that an upgrade stopped halfway (a crash, a
kill) resumes where it was, counting nothing twice. Progress is logged as
it goes.

What the steps do is the domains' business (their records, their counters):
this module only runs them. L{mdmd.migrations} lists the steps and the
counter families of this mdmd.
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from mdmd.store import counters
from mdmd.store.counters import Family
from mdmd.store.models import SCHEMA_VERSION

if TYPE_CHECKING:
    from mdmd.store.runner import Store

__all__ = ["BATCH", "Pass", "Schema", "Step", "StoreTooNew", "NoUpgradePath", "store_version", "upgrade"]

Root = MutableMapping[str, Any]

log = Logger()

#: Records per transaction of an upgrade.
BATCH = 1000
#: Seconds between two progress lines of a pass.
PROGRESS_INTERVAL = 5.0


class StoreTooNew(Exception):
    """
    The store was written by a newer mdmd, whose layout this one does not know.
    """


class NoUpgradePath(Exception):
    """
    The store is older than this mdmd and no step brings it up to date.
    """


def _nothing(root: Root) -> None:
    pass


@dataclass(frozen=True)
class Pass:
    """
    A walk over every record of one root container.
    """

    #: what the log calls the records: "devices"
    title: str
    #: the root container walked, in key order
    container: str
    #: C{visit(root, key, record)}, once for every record
    visit: Callable[[Root, Any, Any], None]
    #: run once before the first record, in its own transaction (zero what the pass recounts)
    start: Callable[[Root], None] = _nothing


@dataclass(frozen=True)
class Step:
    """
    What brings a store from C{version - 1} to C{version}.
    """

    version: int
    title: str
    passes: tuple[Pass, ...]


@dataclass(frozen=True)
class Schema:
    """
    What a store must hold for this mdmd: the counter families to create
    ahead, and the steps from every older layout.
    """

    families: tuple[Family, ...] = ()
    steps: tuple[Step, ...] = field(default=())


def store_version(root: Root) -> int:
    return int(root["schema"].version)


def upgrade(
    store: Store,
    schema: Schema,
    batch: int = BATCH,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """
    Bring the store to L{SCHEMA_VERSION} and create every counter of
    C{schema}; return how many records the upgrade visited (0: it was current).

    @raise StoreTooNew: if a newer mdmd wrote the store.
    @raise NoUpgradePath: if a step between the store's version and ours is missing.
    """
    version = store.read(store_version)
    if version > SCHEMA_VERSION:
        raise StoreTooNew(
            f"the store's layout is version {version}, newer than this mdmd's ({SCHEMA_VERSION}): "
            "run the mdmd that wrote it"
        )
    steps = _steps_from(version, schema.steps)
    visited = 0
    for step in steps:
        visited += _run(store, step, batch, clock)
    store.run(counters.ensure, schema.families)
    return visited


def _steps_from(version: int, steps: Sequence[Step]) -> list[Step]:
    by_version = {step.version: step for step in steps}
    missing = [v for v in range(version + 1, SCHEMA_VERSION + 1) if v not in by_version]
    if missing:
        raise NoUpgradePath(f"no step brings the store from version {missing[0] - 1} to {missing[0]}")
    return [by_version[v] for v in range(version + 1, SCHEMA_VERSION + 1)]


def _run(store: Store, step: Step, batch: int, clock: Callable[[], float]) -> int:
    began = clock()
    log.info(
        "store upgrade to layout {version} ({title}): {passes}",
        version=step.version,
        title=step.title,
        passes=", ".join(p.title for p in step.passes),
    )
    total = 0
    title: str | None = None
    records = 0
    pass_began = shown = began
    while True:
        index, count, done = store.run(_batch, step, batch)
        if done:
            break
        current = step.passes[index].title
        if current != title:
            if title is not None:
                _pass_done(step, title, records, clock() - pass_began)
            title, records, pass_began = current, 0, clock()
        records += count
        total += count
        now = clock()
        if now - shown >= PROGRESS_INTERVAL:
            shown = now
            log.info(
                "store upgrade to layout {version}: {records} {title} so far ({rate:.0f}/s)",
                version=step.version,
                records=records,
                title=title,
                rate=records / max(now - pass_began, 1e-9),
            )
    if title is not None:
        _pass_done(step, title, records, clock() - pass_began)
    log.info(
        "store upgraded to layout {version}: {total} records in {seconds:.1f} s",
        version=step.version,
        total=total,
        seconds=clock() - began,
    )
    return total


def _pass_done(step: Step, title: str, records: int, seconds: float) -> None:
    log.info(
        "store upgrade to layout {version}: {records} {title} in {seconds:.1f} s",
        version=step.version,
        records=records,
        title=title,
        seconds=seconds,
    )


def _batch(root: Root, step: Step, batch: int) -> tuple[int, int, bool]:
    """
    One transaction of an upgrade: start a pass, or visit up to C{batch}
    records of it; returns (pass index, records visited, whether the step is done).
    """
    schema = root["schema"]
    if schema.upgrading is None or schema.upgrading[0] != step.version:
        schema.upgrading = (step.version, 0, False, None)
    _, index, started, last = schema.upgrading
    if index >= len(step.passes):
        schema.version = step.version
        schema.upgrading = None
        return index, 0, True
    current = step.passes[index]
    if not started:
        current.start(root)
        schema.upgrading = (step.version, index, True, None)
        return index, 0, False
    container = root[current.container]
    items = container.items() if last is None else container.items(min=last, excludemin=True)
    count = 0
    for key, record in items:
        current.visit(root, key, record)
        last = key
        count += 1
        if count >= batch:
            schema.upgrading = (step.version, index, True, last)
            return index, count, False
    schema.upgrading = (step.version, index + 1, False, None)
    return index, count, False
