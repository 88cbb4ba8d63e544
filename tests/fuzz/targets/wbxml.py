"""
SyncML WBXML messages (L{mdmd.syncml.wbxml.decode}), as the DM endpoint
decodes a device's POST. A refusal is a L{SyncMLDecodeError}: HTTP 415 or 400.
"""

from __future__ import annotations

from mdmd.syncml import wbxml
from mdmd.syncml.model import SyncMLDecodeError
from tests.fuzz import mutate
from tests.fuzz.engine import Target
from tests.fuzz.targets._syncml import messages

__all__ = ["target", "generate_seeds"]


def target() -> Target:
    return Target("wbxml", wbxml.decode, (SyncMLDecodeError,), mutate.TEXT, bounded_inputs=4000)


def generate_seeds() -> dict[str, bytes]:
    return {name: wbxml.encode(message) for name, message in messages().items()}
