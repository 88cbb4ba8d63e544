"""
PKCS#7 SignedData renewal requests (L{mdmd.pki.csr.parse_signed_request})
and the PKCS#10 inside, as a renewal reads them. A refusal is an
L{InvalidRequest}: the RST's C{s:CertificateRequest} fault.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from mdmd.pki import csr as pkcs
from mdmd.testing.windows.csr import legacy_csr, modern_csr, renewal_request
from tests.fuzz import mutate
from tests.fuzz.engine import Target
from tests.fuzz.targets._material import DEVICE_ID, device_key, issued
from tests.fuzz.targets.pkcs10 import read_request

__all__ = ["target", "generate_seeds"]


def run(der: bytes) -> str:
    signed = pkcs.parse_signed_request(der)
    signed.signer.public_bytes(serialization.Encoding.DER)
    return read_request(pkcs.request_from_content(signed.content))


def target() -> Target:
    return Target("pkcs7", run, (pkcs.InvalidRequest,), mutate.DER, bounded_inputs=1500)


def generate_seeds() -> dict[str, bytes]:
    _, key, certificate = issued()
    modern = modern_csr(device_key(), DEVICE_ID)
    return {
        "renewal-der": renewal_request(certificate, key, modern),
        "renewal-base64": renewal_request(certificate, key, modern, base64_content=True),
        "renewal-legacy": renewal_request(certificate, key, legacy_csr(device_key(), DEVICE_ID)),
        "renewal-no-attributes": (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(modern)
            .add_signer(certificate, key, hashes.SHA256())
            .sign(
                serialization.Encoding.DER,
                [pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.NoAttributes],
            )
        ),
        "renewal-sha512": (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(modern)
            .add_signer(certificate, key, hashes.SHA512())
            .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
        ),
    }
