"""
One module per peer-facing surface; each has C{target()} (the L{Target}) and
C{generate_seeds()} (its seeds, made by the project's own emulators and
codecs, which C{tools/fuzz --write-seeds} writes under C{tests/fuzz/seeds/}).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["NAMES", "load"]

#: Surface name → module of this package; None: a slot whose target is not written yet.
MODULES: dict[str, str | None] = {
    "soap": "soap",
    "pkcs10": "pkcs10",
    "pkcs7": "pkcs7",
    "xmldsig": "xmldsig",
    "syncml_xml": "syncml_xml",
    "wbxml": "wbxml",
    "smpp_pdu": "smpp_pdu",
    "smpp_session": "smpp_session",
    "admin_api": "admin_api",
    "config": "config",
    # the DM session engine fed whole sessions of mutated messages
    "dm_engine": "dm_engine",
}

NAMES = tuple(MODULES)


def load(name: str) -> ModuleType | None:
    """
    The module of surface C{name}, or None for a slot not filled yet.

    @raise KeyError: for an unknown name.
    """
    module = MODULES[name]
    if module is None:
        return None
    return importlib.import_module(f"{__name__}.{module}")
