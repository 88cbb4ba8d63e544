"""
Certificate-policy requests: the XML signature of the WS-Security header
(L{mdmd.enroll.xmldsig.verify_signed_header}), checked before anything
else authenticates the peer, then the signer's chain as the policy checks
it (L{mdmd.enroll.policies.CertificatePolicy}). A refusal is a
L{PeerError}: C{a:InvalidSecurity} or C{s:Authentication}.
"""

from __future__ import annotations

import functools
import os
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from mdmd.enroll.policies import CertificatePolicy, Principal
from mdmd.enroll.soap import parse_request
from mdmd.enroll.xmldsig import verify_signed_header
from mdmd.errors import PeerError
from mdmd.pki.authority import CAService
from mdmd.testing.windows import soap as windows
from mdmd.testing.windows.csr import modern_csr
from tests.fuzz import mutate
from tests.fuzz.engine import HERE, Target
from tests.fuzz.targets._material import DEVICE_ID, NOW, issued

__all__ = ["target", "generate_seeds", "ANCHOR"]

#: The CA that issued the seeds' signing certificate (written with the seeds).
ANCHOR = os.path.join(HERE, "seeds", "xmldsig-anchor.pem")


class _Anchors:
    """
    What the policy reads of the CA service: its certificate.
    """

    def __init__(self, certificate: x509.Certificate) -> None:
        self.ca_certificate = certificate


@functools.cache
def _policy() -> CertificatePolicy:
    with open(ANCHOR, "rb") as f:
        anchor = x509.load_pem_x509_certificate(f.read())
    clock = Clock()
    clock.advance(NOW)
    # the policy reads only ca_certificate from the CA service
    policy = CertificatePolicy(cast(CAService, _Anchors(anchor)), "", clock)
    policy.start()
    return policy


def run(data: bytes) -> object:
    soap = parse_request(data)
    verify_signed_header(soap.root, soap.security, NOW)
    outcome: list[Principal | Failure] = []
    Deferred.fromCoroutine(_policy().authenticate(soap, True)).addBoth(outcome.append)
    (result,) = outcome  # the policy's check does not wait on anything
    if isinstance(result, Failure):
        result.raiseException()
    return result


def target() -> Target:
    return Target("xmldsig", run, (PeerError,), mutate.XML, bounded_inputs=2000)


def generate_seeds() -> dict[str, bytes]:
    ca, key, certificate = issued()
    with open(ANCHOR, "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    to = "https://mdm.example.com/EnrollmentServer/Policy.svc"
    empty = '<wsse:Security s:mustUnderstand="1"></wsse:Security>'
    message_id = "urn:uuid:72048B64-0F19-448F-8C2E-B4C661860AA0"
    return {
        "getpolicies-signed": windows.signed_security_header(
            windows.get_policies_message(to, empty, message_id), certificate, key, NOW
        ),
        "rst-signed": windows.signed_security_header(
            windows.token_message(
                to, empty, modern_csr(key, DEVICE_ID), [("DeviceID", DEVICE_ID)], message_id=message_id
            ),
            certificate,
            key,
            NOW,
        ),
    }
