"""
Tests for L{mdmd.testing.store}: the synchronous store service keeps the
contract of L{mdmd.store.runner.StoreService}, which the same tests check on
the real service (its thread pool, on the reactor).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from twisted.internet import reactor
from twisted.internet.interfaces import IReactorFromThreads
from twisted.trial.unittest import SynchronousTestCase, TestCase
from ZODB.POSException import ConflictError

from mdmd.store.models import ROOT_CONTAINERS, User
from mdmd.store.runner import ConflictRetriesExhausted, StoreService
from mdmd.testing.store import SynchronousStoreService, memory_store_service

if TYPE_CHECKING:
    _MixinBase = TestCase
else:
    _MixinBase = object


def _add_user(root: Any, name: str, created_at: float = 1.0) -> str:
    root["users"][name] = User(name, "hash", created_at)
    return name


def _user_names(root: Any) -> list[str]:
    return list(root["users"].keys())


class _StoreServiceContract(_MixinBase):
    """
    What a store service promises the code that runs units of work on it;
    subclasses say which service.
    """

    def make_service(self, uri: str = "memory:", retries: int = 5) -> StoreService:
        raise NotImplementedError

    def started(self, uri: str = "memory:", retries: int = 5) -> StoreService:
        service = self.make_service(uri, retries)
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.store is not None else None)
        return service

    async def test_starts_with_every_container(self) -> None:
        """
        A started service's database has every top-level container.
        """
        service = self.started()
        names = await service.read(lambda root: sorted(root.keys()))
        self.assertEqual(names, sorted(ROOT_CONTAINERS))

    async def test_transact_commits(self) -> None:
        """
        C{transact} runs C{fn(root, *args, **kwargs)}, gives its value and
        commits what it changed.
        """
        service = self.started()
        self.assertEqual(await service.transact(_add_user, "alice", created_at=5.0), "alice")
        created = await service.read(lambda root: root["users"]["alice"].created_at)
        self.assertEqual(created, 5.0)

    async def test_failure_aborts(self) -> None:
        """
        A unit of work that raises fails the Deferred with its exception and
        leaves nothing behind.
        """
        service = self.started()

        def broken(root: Any) -> None:
            _add_user(root, "alice")
            raise ValueError("no")

        with self.assertRaises(ValueError):
            await service.transact(broken)
        self.assertEqual(await service.read(_user_names), [])

    async def test_conflict_retried(self) -> None:
        """
        A unit of work that conflicts is run again from the start.
        """
        service = self.started()
        attempts: list[int] = []

        def flaky(root: Any) -> int:
            attempts.append(1)
            _add_user(root, "alice", float(len(attempts)))
            if len(attempts) < 3:
                raise ConflictError()
            return len(attempts)

        self.assertEqual(await service.transact(flaky), 3)
        self.assertEqual(await service.read(lambda root: root["users"]["alice"].created_at), 3.0)

    async def test_conflict_retries_exhausted(self) -> None:
        """
        A unit of work that keeps conflicting is given up after the service's
        retries, as L{ConflictRetriesExhausted}.
        """
        service = self.started(retries=1)
        attempts: list[int] = []

        def hopeless(root: Any) -> None:
            attempts.append(1)
            raise ConflictError()

        with self.assertRaises(ConflictRetriesExhausted):
            await service.transact(hopeless)
        self.assertEqual(len(attempts), 2)

    async def test_persistent_result_refused(self) -> None:
        """
        A persistent object never leaves a unit of work: the unit fails with
        L{TypeError} and its changes are not committed.
        """
        service = self.started()

        def leaky(root: Any) -> User:
            _add_user(root, "alice")
            return root["users"]["alice"]

        with self.assertRaises(TypeError):
            await service.transact(leaky)
        self.assertEqual(await service.read(_user_names), [])

    async def test_read_does_not_commit(self) -> None:
        """
        C{read} gives the unit's value and aborts whatever it changed.
        """
        service = self.started()
        self.assertEqual(await service.read(_add_user, "alice"), "alice")
        self.assertEqual(await service.read(_user_names), [])

    async def test_grouped_commits(self) -> None:
        """
        C{transact_grouped} runs C{fn(root, *args, **kwargs)}, gives its
        value and commits what it changed, as C{transact} does.
        """
        service = self.started()
        self.assertEqual(await service.transact_grouped(_add_user, "alice", created_at=5.0), "alice")
        self.assertEqual(await service.read(lambda root: root["users"]["alice"].created_at), 5.0)

    async def test_grouped_failure_aborts(self) -> None:
        """
        A grouped unit that raises fails its Deferred and leaves nothing behind.
        """
        service = self.started()

        def broken(root: Any) -> None:
            _add_user(root, "alice")
            raise ValueError("no")

        with self.assertRaises(ValueError):
            await service.transact_grouped(broken)
        self.assertEqual(await service.read(_user_names), [])

    async def test_grouped_conflict_retried(self) -> None:
        """
        A grouped unit that conflicts is run again (alone, as C{transact} would).
        """
        service = self.started()
        attempts: list[int] = []

        def flaky(root: Any) -> int:
            attempts.append(1)
            _add_user(root, "alice", float(len(attempts)))
            if len(attempts) < 2:
                raise ConflictError()
            return len(attempts)

        self.assertEqual(await service.transact_grouped(flaky), 2)
        self.assertEqual(await service.read(lambda root: root["users"]["alice"].created_at), 2.0)

    async def test_grouped_persistent_result_refused(self) -> None:
        """
        A grouped unit's persistent result is refused as C{transact} refuses it.
        """
        service = self.started()

        def leaky(root: Any) -> User:
            _add_user(root, "alice")
            return root["users"]["alice"]

        with self.assertRaises(TypeError):
            await service.transact_grouped(leaky)
        self.assertEqual(await service.read(_user_names), [])

    async def test_survives_restart(self) -> None:
        """
        What a unit committed to a file store is there after the service restarts.
        """
        uri = f"file://{self.mktemp()}/Data.fs"
        first = self.started(uri)
        await first.transact(_add_user, "alice")
        first.stopService()
        second = self.started(uri)
        self.assertEqual(await second.read(_user_names), ["alice"])

    def test_not_running(self) -> None:
        """
        Work given to a service that is not running is refused at once, with
        L{RuntimeError}, before and after it runs.
        """
        service = self.make_service()
        self.assertRaises(RuntimeError, service.transact, _add_user, "alice")
        self.assertRaises(RuntimeError, service.transact_grouped, _add_user, "alice")
        self.assertRaises(RuntimeError, service.read, _user_names)
        service.startService()
        service.stopService()
        self.assertRaises(RuntimeError, service.transact, _add_user, "alice")
        self.assertRaises(RuntimeError, service.transact_grouped, _add_user, "alice")
        self.assertRaises(RuntimeError, service.read, _user_names)


class SynchronousStoreServiceContractTests(_StoreServiceContract, TestCase):
    """
    The fake keeps the contract.
    """

    def make_service(self, uri: str = "memory:", retries: int = 5) -> StoreService:
        return SynchronousStoreService(uri, pool_size=2, retries=retries)


class StoreServiceContractTests(_StoreServiceContract, TestCase):
    """
    The real service, on its thread pool, keeps the contract the fake is held to.
    """

    def make_service(self, uri: str = "memory:", retries: int = 5) -> StoreService:
        return StoreService(uri, IReactorFromThreads(reactor), pool_size=2, retries=retries)


class SynchronousTests(SynchronousTestCase):
    def test_runs_at_once_in_the_calling_thread(self) -> None:
        """
        What the fake adds: a unit of work has run, in the caller's thread,
        when C{transact} or C{read} returns, and the Deferred has fired.
        """
        service = memory_store_service()
        self.addCleanup(service.stopService)
        self.assertEqual(
            self.successResultOf(service.transact(lambda root: threading.current_thread())),
            threading.current_thread(),
        )
        self.assertEqual(self.successResultOf(service.read(_user_names)), [])

    def test_failure_is_a_failed_deferred(self) -> None:
        """
        A failing unit of work gives an already failed Deferred, as the real
        service's would fail later: the caller's errbacks see it.
        """
        service = memory_store_service()
        self.addCleanup(service.stopService)
        self.failureResultOf(service.transact(lambda root: 1 / 0), ZeroDivisionError)

    def test_memory_store_service_is_fresh(self) -> None:
        """
        Each memory store service is started on its own empty database.
        """
        first, second = memory_store_service(), memory_store_service()
        self.addCleanup(first.stopService)
        self.addCleanup(second.stopService)
        self.successResultOf(first.transact(_add_user, "alice"))
        self.assertTrue(first.running)
        self.assertEqual(self.successResultOf(second.read(_user_names)), [])
