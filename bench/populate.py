"""
Populate a daemon's store with N enrolled Windows devices (up to a million and more), resumably.

Every device is made through mdmd's own units of work, as a real one gets
there (see L{mdmd.testing.population}): the enrollment's unit of work (a
certificate our CA signed, its record, the device record, its DM
credentials, the six inventory Gets queued), its first DM session (the Gets
answered: six finished commands, the inventory, DevInfo, nonces, the
session record), and two operator commands queued for its next session.
The first session is replayed by default: its effects applied by the
check-in's own handlers, leaving the records a real session leaves (a test
compares them) at a quarter of the cost; ``--real-sessions`` runs it
through the emulator, the XML codec and the engine.

What makes it fast: devices go in batches, one transaction and one commit
per batch, on one connection; the certificates are signed by worker
processes (``--workers``, the CA's RSA signature being the one cost that
parallelises: FileStorage has one writer) a few batches ahead of the
writer. What the population shares: sixteen RSA device keys (made once,
kept in ``population-keys.pem``); every device still has its own
certificate, signed by the CA.

Stop it at any time (Ctrl-C): batches are atomic, and running the same
command again goes on after the last committed device (found by a binary
search of the devices BTree; ids are derived from the index).

    .venv/bin/python bench/populate.py STATE_DIR --devices 1000000 [--batch 250] [--workers 1] [--pack]

The state directory is then one a daemon opens as it is: ``mdmd.conf``
(hostname localhost, a 2048-bit CA), ``Data.fs``, the CA and TLS material
under ``ca/`` and ``tls/``, and the population's files for the benchmark
(``bench/bench_checkin.py``).
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import sys
import time
from typing import Any

import transaction
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet.task import Clock

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from mdmd import settings as mdmd_settings  # noqa: E402
from mdmd.enroll import users  # noqa: E402
from mdmd.pki.authority import CAService  # noqa: E402
from mdmd.pki.ca import CertificateAuthority  # noqa: E402
from mdmd.store.db import open_db  # noqa: E402
from mdmd.store.models import ensure_root  # noqa: E402
from mdmd.testing.population import USER, Population, PopulationFiles, add_devices  # noqa: E402

CONFIG = """\
[server]
hostname = localhost
state_dir = {state_dir}

[ca]
key_size = 2048
"""

# -- the certificate workers -------------------------------------------------------------------

_worker: dict[str, Any] = {}


def _start_worker(state_dir: str) -> None:
    files = PopulationFiles(state_dir)
    with open(os.path.join(state_dir, "ca", "ca.key"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    with open(os.path.join(state_dir, "ca", "ca.crt"), "rb") as f:
        certificate = x509.load_pem_x509_certificate(f.read())
    assert isinstance(key, rsa.RSAPrivateKey)
    _worker["authority"] = CertificateAuthority(key, certificate)
    _worker["population"] = files.population()
    _worker["keys"] = [k.public_key() for k in files.keys()]


def _sign(first: int, stop: int) -> list[tuple[int, bytes]]:
    population: Population = _worker["population"]
    keys = _worker["keys"]
    return [
        (i, population.certificate(i, _worker["authority"], keys[i % len(keys)]).public_bytes(serialization.Encoding.DER))
        for i in range(first, stop)
    ]


# -- the writer --------------------------------------------------------------------------------


def prepare(state_dir: str, devices: int, seed: str, key_count: int) -> PopulationFiles:
    """
    The state directory with its configuration, CA, TLS material and population files.
    """
    files = PopulationFiles(state_dir)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    config_path = os.path.join(state_dir, "mdmd.conf")
    if not os.path.exists(config_path):
        with open(config_path, "w") as f:
            f.write(CONFIG.format(state_dir=state_dir))
    settings = mdmd_settings.load(config_path, state_dir)
    clock = Clock()
    clock.advance(time.time())
    ca = CAService(settings.ca, store=None, clock=clock)  # type: ignore[arg-type]  # starting only loads or makes key material
    ca.startService()
    if files.exists():
        population = files.population()
        if devices and devices != population.size:
            raise SystemExit(f"{state_dir} holds a population of {population.size}, not {devices}")
        return files
    print(f"making {key_count} device keys ...", flush=True)
    keys = [rsa.generate_private_key(65537, 2048) for _ in range(key_count)]
    files.create(Population(seed=seed, size=devices, issued_at=time.time(), keys=key_count), keys)
    return files


def first_missing(root: Any, population: Population) -> int:
    """
    The first device not in the store: batches commit in index order, so a binary search finds it.
    """
    known = root["devices"]
    low, high = 0, population.size
    while low < high:
        middle = (low + high) // 2
        if population.device_id(middle) in known:
            low = middle + 1
        else:
            high = middle
    return low


class Progress:
    def __init__(self, total: int, start: int) -> None:
        self.total = total
        self.start = start
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < (0.5 if self.tty else 30.0):
            return
        self.last = now
        elapsed = now - self.started
        rate = (done - self.start) / elapsed if elapsed else 0.0
        left = (self.total - done) / rate if rate else 0.0
        width = 30
        filled = int(width * done / self.total) if self.total else width
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
            f"{100 * done / max(self.total, 1):5.1f}%  {rate:6.0f} devices/s  "
            f"elapsed {elapsed / 60:5.1f} min  left {left / 60:5.1f} min"
        )
        sys.stderr.write(("\r" + line) if self.tty else (line + "\n"))
        if final and self.tty:
            sys.stderr.write("\n")
        sys.stderr.flush()


def populate(args: argparse.Namespace) -> None:
    state_dir = os.path.abspath(args.state_dir)
    files = prepare(state_dir, args.devices, args.seed, args.keys)
    population = files.population()
    settings = mdmd_settings.load(os.path.join(state_dir, "mdmd.conf"), state_dir)
    server_name = settings.enrollment.account.provider_id
    data_fs = os.path.join(state_dir, "Data.fs")
    db = open_db("file://" + data_fs, pool_size=1, cache_size=args.cache_size)
    manager = transaction.TransactionManager(explicit=True)
    connection = db.open(transaction_manager=manager)
    with manager:
        root = connection.root()
        ensure_root(root)
        if users.user_key(USER) not in root["users"]:
            users.add_user(root, USER, users.hash_password("fleet-password"), population.issued_at)
    with manager:
        start = first_missing(connection.root(), population)
    if start:
        print(f"resuming after {start} devices already in the store", flush=True)
    if start >= population.size:
        print("nothing to do: the population is complete")
    keys = [k.public_key() for k in files.keys()]
    local = CertificateAuthority(*_load_authority(state_dir))
    pool = multiprocessing.get_context("fork").Pool(args.workers, _start_worker, (state_dir,)) if args.workers else None
    batches = [(first, min(first + args.batch, population.size)) for first in range(start, population.size, args.batch)]
    pending: collections.deque[Any] = collections.deque()
    ahead = iter(batches)

    def submit() -> None:
        for first, stop in ahead:
            pending.append(pool.apply_async(_sign, (first, stop)) if pool else (first, stop))
            if len(pending) >= max(2, 3 * args.workers):
                return

    progress = Progress(population.size, start)
    started = time.monotonic()
    writing = 0.0
    try:
        submit()
        done = start
        while pending:
            job = pending.popleft()
            submit()
            if pool is not None:
                certificates = job.get()
            else:
                first, stop = job
                certificates = [
                    (i, population.certificate(i, local, keys[i % len(keys)]).public_bytes(serialization.Encoding.DER))
                    for i in range(first, stop)
                ]
            began = time.monotonic()
            manager.begin()
            nonces = add_devices(
                connection.root(),
                population,
                certificates,
                "https://localhost/ManagementServer/MDM.svc",
                server_name,
                settings.dm,
                settings.enrollment.inventory,
                real_sessions=args.real_sessions,
            )
            # the emulators' nonces are written before the commit: a batch that
            # does not commit is made again, and its nonces written again
            records = files.read(nonces)
            for index, nonce in nonces.items():
                records[index].nonce = nonce
            files.write(records)
            manager.commit()
            writing += time.monotonic() - began
            done = certificates[-1][0] + 1
            progress.show(done)
        progress.show(done, final=True)
    except KeyboardInterrupt:
        manager.abort()
        print("\nstopped; run the same command again to go on", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if pool is not None:
            pool.terminate()
    elapsed = time.monotonic() - started
    made = population.size - start
    connection.close()
    size = os.path.getsize(data_fs)
    print(f"{made} devices in {elapsed:.1f} s: {made / elapsed if elapsed else 0:.0f} devices/s "
          f"(the writer busy {writing:.1f} s: {made / writing if writing else 0:.0f} devices/s)")
    print(f"Data.fs: {size / 2**20:.0f} MiB, {size / population.size / 1024:.2f} KiB per device")
    if args.pack:
        began = time.monotonic()
        db.pack()
        size = os.path.getsize(data_fs)
        print(f"packed in {time.monotonic() - began:.1f} s: {size / 2**20:.0f} MiB, "
              f"{size / population.size / 1024:.2f} KiB per device")
    db.close()


def _load_authority(state_dir: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    with open(os.path.join(state_dir, "ca", "ca.key"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    with open(os.path.join(state_dir, "ca", "ca.crt"), "rb") as f:
        certificate = x509.load_pem_x509_certificate(f.read())
    assert isinstance(key, rsa.RSAPrivateKey)
    return key, certificate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("state_dir")
    parser.add_argument("--devices", type=int, default=0, help="population size (needed the first time)")
    parser.add_argument("--batch", type=int, default=250, help="devices per transaction")
    parser.add_argument("--workers", type=int, default=1, help="certificate-signing processes (0: sign in the writer)")
    parser.add_argument("--seed", default="mdmd-population")
    parser.add_argument("--keys", type=int, default=16, help="device keys the population shares")
    parser.add_argument("--cache-size", type=int, default=20000, help="objects the writer's connection caches")
    parser.add_argument("--pack", action="store_true", help="pack the FileStorage at the end")
    parser.add_argument(
        "--real-sessions", action="store_true",
        help="run every device's first DM session through the codec and the engine (4x slower) instead of replaying it",
    )
    args = parser.parse_args()
    if not args.devices and not PopulationFiles(args.state_dir).exists():
        parser.error("--devices is needed to start a population")
    populate(args)


if __name__ == "__main__":
    main()
