"""
Configuration files (L{mdmd.config.load}): what an operator writes, read
at start and by mdmctl. A refusal is a L{ConfigErrors} listing every
problem (one line each, never a traceback).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile

from mdmd import config
from tests.fuzz import mutate
from tests.fuzz.engine import HERE, Target

__all__ = ["target", "generate_seeds"]


@functools.cache
def _directory() -> str:
    directory = tempfile.mkdtemp(prefix="mdmd-fuzz-config-")
    atexit.register(shutil.rmtree, directory, True)
    return directory


def run(data: bytes) -> config.Config:
    path = os.path.join(_directory(), "mdmd.conf")
    with open(path, "wb") as f:
        f.write(data)
    return config.load(path, base_dir=_directory())


def target() -> Target:
    return Target("config", run, (config.ConfigErrors,), mutate.INI, bounded_inputs=2000)


def generate_seeds() -> dict[str, bytes]:
    root = os.path.dirname(os.path.dirname(HERE))
    with open(os.path.join(root, "debian", "mdmd.conf"), "rb") as f:
        packaged = f.read()
    return {
        "example": config.render_example().encode("utf-8"),
        "debian": packaged,
        "small": (
            b"[server]\nhostname = mdm.example.com\nstate_dir = var\n"
            b"[https]\nlisten = tcp:0.0.0.0:8443\nmax_body = 1048576\n"
            b"[smpp]\nhost = smsc.example.com\nport = 2775\nsystem_id = mdmd\npassword = secret\n"
            b"[dm]\ninventory_omadm = ./DevInfo/Mod, ./DevDetail/SwV\n"
            b"[enrollment]\npoll_schedule = 3x5, 15x8, 480\nenrollment_version = 5.0\n"
        ),
    }
