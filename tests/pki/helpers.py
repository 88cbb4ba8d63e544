"""
Shared set-up for PKI tests: a started CA service on a temporary state directory.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase

from mdmd.pki.authority import CAService, CASettings
from mdmd.testing.store import SynchronousStoreService, memory_store_service


def started_ca(
    test: SynchronousTestCase,
    hostnames: tuple[str, ...] = ("localhost", "127.0.0.1"),
    state_dir: str | None = None,
    store: SynchronousStoreService | None = None,
    **settings: Any,
) -> CAService:
    """
    A running CA service (2048-bit keys, to keep tests quick), stopped at cleanup.
    """
    if state_dir is None:
        state_dir = tempfile.mkdtemp(prefix="mdmd-ca-")
        test.addCleanup(_rmtree, state_dir)
    if store is None:
        store = memory_store_service()
        test.addCleanup(store.stopService)
    service = CAService(
        CASettings(state_dir=state_dir, hostnames=hostnames, key_size=2048, **settings),
        store,
        reactor,
    )
    service.startService()
    test.addCleanup(service.stopService)
    return service


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def mode(path: str) -> int:
    return os.stat(path).st_mode & 0o777
