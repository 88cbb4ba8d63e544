"""
Shared set-up for device tests.
"""

from __future__ import annotations

import itertools
from typing import Any

from mdmd.pki import registry
from mdmd.store.models import IssuedCertificate

_serials = itertools.count(1000)


def issued(root: Any, device_id: str, not_after: float = 9999.0) -> registry.CertificateInfo:
    """
    Record a certificate as issued to C{device_id} (no real signing needed here).
    """
    serial = next(_serials)
    root["certs"][serial] = IssuedCertificate(serial, b"DER", device_id, "AB" * 20, 0.0, not_after, 0.0)
    found = registry.lookup(root, serial)
    assert found is not None
    return found
