"""
PKCS#10 certificate requests (L{mdmd.pki.csr.parse_csr}) and what
enrollment reads from one: the key check, the DeviceID extension, the
subject and key the log line shows. A refusal is an L{InvalidRequest}: the
RST's C{s:CertificateRequest} fault.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

from mdmd.pki import csr as pkcs
from mdmd.testing.windows.csr import legacy_csr, modern_csr
from tests.fuzz import mutate
from tests.fuzz.engine import Target
from tests.fuzz.targets._material import DEVICE_ID, device_key, ec_csr, weak_key

__all__ = ["target", "generate_seeds", "read_request"]


def read_request(der: bytes) -> str:
    """
    What enrollment reads from a request (L{mdmd.enroll.operations}).
    """
    csr = pkcs.parse_csr(der)
    pkcs.check_key(csr, 2048)
    return f"{csr.device_id} {csr.subject_text} {csr.key_description} {csr.attributes!r}"


def target() -> Target:
    return Target("pkcs10", read_request, (pkcs.InvalidRequest,), mutate.DER, bounded_inputs=2500)


def generate_seeds() -> dict[str, bytes]:
    key = device_key()
    return {
        "modern-sha256": modern_csr(key, DEVICE_ID),
        "modern-sha512": modern_csr(key, DEVICE_ID, hashes.SHA512()),
        "legacy-oiw-sha1": legacy_csr(key, DEVICE_ID),
        "legacy-sha1": legacy_csr(key, DEVICE_ID, "1.2.840.113549.1.1.5"),
        "weak-1024": modern_csr(weak_key(), DEVICE_ID),
        "ec-p256": ec_csr(),
    }
