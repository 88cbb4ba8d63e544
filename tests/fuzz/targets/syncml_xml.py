"""
SyncML XML messages (L{mdmd.syncml.xml.decode}), as the DM endpoint
decodes a device's POST. A refusal is a L{SyncMLDecodeError}: HTTP 400.
"""

from __future__ import annotations

from mdmd.syncml import xml
from mdmd.syncml.model import SyncMLDecodeError
from tests.fuzz import mutate
from tests.fuzz.engine import Target
from tests.fuzz.targets._syncml import messages

__all__ = ["target", "generate_seeds"]


def target() -> Target:
    return Target("syncml_xml", xml.decode, (SyncMLDecodeError,), mutate.XML, bounded_inputs=3000)


def generate_seeds() -> dict[str, bytes]:
    seeds = {name: xml.encode(message) for name, message in messages().items()}
    seeds["with-doctype"] = (
        b'<?xml version="1.0"?><!DOCTYPE SyncML PUBLIC "-//SYNCML//DTD SyncML 1.2//EN" '
        b'"http://www.openmobilealliance.org/tech/DTD/OMA-TS-SyncML_RepPro_DTD-V1_2.dtd">'
        + seeds["client-package1"]
    )
    return seeds
