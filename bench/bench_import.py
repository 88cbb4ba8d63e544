"""
The cost of registering a fleet of classic OMA DM devices in one import (one transaction).

Run from the repository root: .venv/bin/python bench/bench_import.py --devices 5000
Imports DEVICES rows (device id, IMSI, MSISDN; secrets and nonces generated)
into a fresh FileStorage, with the default classic inventory queued for
each, as the admin API's import does: the dry run (checking and completing
every row), the import itself (one transaction), and the same import again
(every row unchanged). Prints seconds for each, the storage's size and the
peak RSS. Not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from mdmd.config import DMSection  # noqa: E402
from mdmd.devices import registration  # noqa: E402
from mdmd.store.db import open_db  # noqa: E402
from mdmd.store.runner import Store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--devices", type=int, default=registration.MAX_IMPORT, help="rows in the import")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="mdmd-bench-import-")
    try:
        path = os.path.join(directory, "Data.fs")
        store = Store(open_db(f"file://{path}", 2, 10000), 0)
        store.initialize()
        settings = registration.RegistrationSettings(inventory=DMSection().inventory_omadm)
        rows = [
            {"device_id": f"MODEM-{i:06}", "imsi": f"26201{i:010}", "msisdn": f"+4917{i:08}"}
            for i in range(args.devices)
        ]
        started = time.perf_counter()
        checked = store.run(registration.import_devices, rows, settings, 1.0, os.urandom, True)
        checked_at = time.perf_counter()
        complete = [row.row for row in checked.rows]
        store.run(registration.import_devices, complete, settings, 1.0, os.urandom, False)
        imported_at = time.perf_counter()
        store.run(registration.import_devices, complete, settings, 1.0, os.urandom, False)
        again_at = time.perf_counter()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"Python {platform.python_version()}, {platform.machine()}; {args.devices} devices, "
              f"{len(settings.inventory)} inventory Gets each")
        print(f"dry run {checked_at - started:.1f} s, import {imported_at - checked_at:.1f} s, "
              f"again (unchanged) {again_at - imported_at:.1f} s; Data.fs {os.path.getsize(path) / 2**20:.0f} MiB, "
              f"peak RSS {peak:.0f} MiB")
        store.db.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
