"""
Tests for L{mdmd.migrations}: every domain's counters and indexes agree
with a recount of the records, after any sequence of operations, and an
older store gets them from the upgrade.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mdmd.devices import lifecycle, records
from mdmd.dm import queue as dm_queue
from mdmd.dm.command_state import IllegalCommandMove
from mdmd.enroll import users
from mdmd.errors import PeerError
from mdmd.migrations import FAMILIES, SCHEMA
from mdmd.notify import jobs
from mdmd.notify.smpp_pdu import MessageState
from mdmd.pki import registry
from mdmd.store.db import open_db
from mdmd.store.migration import store_version, upgrade
from mdmd.store.models import SCHEMA_VERSION
from mdmd.store.runner import Store
from mdmd.testing import fleet
from mdmd.testing.randomness import fixed_random

DEVICES = ("D0", "D1")
CA = fleet.FleetCA()
SETTINGS = jobs.PushSettings(expiry=50.0)

Root = Any
Operation = Callable[[Root, str, float], object]


def _first(root: Root, device_id: str, state: str) -> int | None:
    queue = root["queues"].get(device_id)
    if queue is None:
        return None
    return next((c.seq for c in queue.commands.values() if c.state == state), None)


def _send(root: Root, device_id: str, now: float) -> None:
    seq = _first(root, device_id, "queued")
    if seq is not None:
        dm_queue.mark_sent(root, dm_queue.queue_of(root, device_id), seq, ("S", "1", str(seq)), now)


def _answer(verdict: str, status: int) -> Operation:
    def answer(root: Root, device_id: str, now: float) -> None:
        seq = _first(root, device_id, "sent")
        if seq is not None:
            dm_queue.mark_answered(root, dm_queue.queue_of(root, device_id), seq, verdict, status, (), (), now)

    return answer


def _complete(root: Root, device_id: str, now: float) -> None:
    alert = {"source": "./DevDetail/SwV", "correlator": None, "data": "0" if int(now) % 20 else "1"}
    dm_queue.complete_accepted(root, dm_queue.queue_of(root, device_id), alert, now)


def _close(root: Root, device_id: str, now: float) -> None:
    dm_queue.close_pending(root, dm_queue.queue_of(root, device_id), "the device left", now)


def _fail(root: Root, device_id: str, now: float) -> None:
    seq = _first(root, device_id, "queued")
    if seq is not None:
        dm_queue.mark_failed(root, dm_queue.queue_of(root, device_id), seq, "too large", now)


def _cancel(root: Root, device_id: str, now: float) -> None:
    seq = _first(root, device_id, "queued")
    if seq is not None:
        dm_queue.cancel(root, device_id, seq, now)


def _requeue(root: Root, device_id: str, now: float) -> None:
    dm_queue.requeue_unanswered(root, dm_queue.queue_of(root, device_id), now)


def _device(fn: Callable[[Root, Any, float], object]) -> Operation:
    def operation(root: Root, device_id: str, now: float) -> None:
        device = root["devices"].get(device_id)
        if device is not None:
            fn(root, device, now)

    return operation


def _revoke(root: Root, device: Any, now: float) -> None:
    if device.cert_serial is not None:
        registry.revoke(root, device.cert_serial, "keyCompromise", now)


def _open_job(root: Root, device_id: str) -> tuple[str, int] | None:
    return next(iter(jobs._open_refs(root, device_id)), None)


def _submit(root: Root, device_id: str, now: float) -> None:
    ref = _open_job(root, device_id)
    if ref is not None:
        jobs.record_submitted(root, ref, now, via="smpp", message_ids=[f"{device_id}{now}"], keys=[f"{device_id}{now}"])


def _receipt(root: Root, device_id: str, now: float) -> None:
    for key in list(root["push_messages"].keys()):
        if key.startswith(device_id):
            jobs.record_receipt(root, key, MessageState.UNDELIVERABLE if int(now) % 2 else MessageState.DELIVERED, now)


def _answer_push(root: Root, device_id: str, now: float) -> None:
    ref = _open_job(root, device_id)
    if ref is not None:
        session_id = jobs._job(root, ref).session_id
        if session_id is not None:
            jobs.answer_push(root, device_id, f"{session_id:X}", now)


def _push(root: Root, device_id: str, now: float) -> None:
    jobs.set_msisdn(root, device_id, "+491701234567")
    jobs.enqueue(root, [device_id], SETTINGS, now, fixed_random())


def _user(fn: Callable[[Root, str], object]) -> Operation:
    return lambda root, device_id, now: fn(root, "user-" + device_id)


OPERATIONS: dict[str, Operation] = {
    "enroll": lambda root, device_id, now: fleet.enroll(root, CA, device_id, now),
    "enroll as bob": lambda root, device_id, now: fleet.enroll(root, CA, device_id, now, user="bob"),
    "register": lambda root, device_id, now: fleet.register(root, device_id, now),
    "renew": lambda root, device_id, now: fleet.renew(root, CA, device_id, now),
    "unenroll": _device(lifecycle.unenroll),
    "remove": lambda root, device_id, now: records.remove(root, device_id, now),
    "revoke": _device(_revoke),
    "contact": _device(lambda root, device, now: lifecycle.record_contact(device, now)),
    "queue": lambda root, device_id, now: fleet.queue_get(root, device_id, now),
    "send": _send,
    "answer done": _answer("done", 200),
    "answer failed": _answer("failed", 404),
    "answer accepted": _answer("accepted", 202),
    "answer halted": _answer("halted", 214),
    "answer not executed": _answer("not-executed", 215),
    "complete": _complete,
    "close pending": _close,
    "fail": _fail,
    "cancel": _cancel,
    "requeue": _requeue,
    "msisdn": lambda root, device_id, now: jobs.set_msisdn(root, device_id, "+491701234567"),
    "push": lambda root, device_id, now: _push(root, device_id, now),
    "submit": _submit,
    "receipt": _receipt,
    "answer push": _answer_push,
    "refuse": lambda root, device_id, now: [
        jobs.record_refused(root, ref, now, error="no", retry=False) for ref in list(jobs._open_refs(root, device_id))
    ],
    "expire": lambda root, device_id, now: jobs.expire(root, now),
    "purge": lambda root, device_id, now: jobs.purge(root, now - 20.0),
    "add user": _user(lambda root, name: users.add_user(root, name, "h", 1.0)),
    "remove user": _user(users.remove_user),
    "disable user": _user(lambda root, name: users.set_enabled(root, name, False)),
    "enable user": _user(lambda root, name: users.set_enabled(root, name, True)),
}

#: What an operation may refuse: the domain's own refusals, and the tables' (a command or job that cannot move).
REFUSALS = (PeerError, lifecycle.IllegalTransition, IllegalCommandMove, jobs.IllegalPushMove)


def _apply(store: Store, steps: list[tuple[str, str]]) -> None:
    for n, (name, device_id) in enumerate(steps):
        try:
            store.run(OPERATIONS[name], device_id, 100.0 + 10 * n)
        except REFUSALS:
            pass


def _store() -> Store:
    store = Store(open_db("memory:"), sleep=lambda seconds: None)
    store.initialize()
    return store


def _assert_consistent(test: SynchronousTestCase, store: Store) -> None:
    test.assertEqual(store.read(fleet.kept_counts), store.read(fleet.recount))
    test.assertEqual(store.read(fleet.kept_indexes), store.read(fleet.indexes))


STEPS = st.lists(st.tuples(st.sampled_from(sorted(OPERATIONS)), st.sampled_from(DEVICES)), max_size=60)


class CountersTests(SynchronousTestCase):
    @given(STEPS)
    def test_counters_equal_a_recount(self, steps: list[tuple[str, str]]) -> None:
        """
        After any sequence of operations through the units of work, every
        counter equals a recount of the records, and every member set and
        index holds exactly what a walk finds.
        """
        store = _store()
        _apply(store, steps)
        _assert_consistent(self, store)

    def test_every_family_is_listed(self) -> None:
        """
        Every family the recount knows is in FAMILIES (created ahead at start-up, shown by status).
        """
        store = _store()
        _apply(store, [(name, "D0") for name in ("register", "queue", "msisdn", "push", "add user")])
        _apply(store, [("enroll", "D1")])
        self.assertEqual(set(store.read(fleet.recount)), {family.name for family in FAMILIES})


class UpgradeTests(SynchronousTestCase):
    def older(self, steps: list[tuple[str, str]]) -> Store:
        """
        A store made by today's units of work, then stripped of what an older
        mdmd did not keep (counters, member sets, indexes, the layout version).
        """
        store = _store()
        _apply(store, steps)

        def strip(root: Root) -> None:
            for name in ("counters", "members", "cert_index", "push_index", "schema"):
                del root[name]

        store.run(strip)
        store.initialize()
        return store

    @given(STEPS)
    def test_upgrade_recounts(self, steps: list[tuple[str, str]]) -> None:
        """
        An older store upgraded holds the counters and indexes the units of
        work would have kept, and is at this mdmd's layout.
        """
        store = self.older(steps)
        self.assertEqual(store.read(store_version), 1)
        upgrade(store, SCHEMA, batch=3)
        self.assertEqual(store.read(store_version), SCHEMA_VERSION)
        _assert_consistent(self, store)

    def test_upgraded_store_keeps_counting(self) -> None:
        """
        After the upgrade, the units of work go on from the recounted values.
        """
        store = self.older([("enroll", "D0"), ("register", "D1"), ("queue", "D1"), ("add user", "D0")])
        upgrade(store, SCHEMA)
        _apply(store, [("remove", "D0"), ("send", "D1"), ("enroll", "D2"), ("disable user", "D0")])
        _assert_consistent(self, store)
        self.assertEqual(store.read(records.device_counts), {"enrolled": 2, "unenrolled": 0, "removed": 1})
