"""
Public PKI documents over HTTPS: the root CA certificate and the current CRL.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from twisted.web.resource import Resource
from twisted.web.server import Request

from mdmd.pki.authority import CAService
from mdmd.site import AsyncResource, Response

__all__ = ["pki_resource"]


class CACertificate(AsyncResource):
    """
    C{/pki/ca.crt}: the root devices and operators can install (DER).
    """

    def __init__(self, ca: CAService) -> None:
        super().__init__()
        self._ca = ca

    async def handle_GET(self, request: Request) -> Response:
        return Response(
            self._ca.ca_certificate.public_bytes(serialization.Encoding.DER),
            content_type=b"application/pkix-cert",
        )


class CertificateRevocationList(AsyncResource):
    """
    C{/pki/crl}: the CRL of every certificate revoked by mdmd (DER).
    """

    def __init__(self, ca: CAService) -> None:
        super().__init__()
        self._ca = ca

    async def handle_GET(self, request: Request) -> Response:
        return Response(await self._ca.crl_der(), content_type=b"application/pkix-crl")


def pki_resource(ca: CAService) -> Resource:
    """
    The C{/pki} subtree.
    """
    pki = Resource()
    pki.putChild(b"ca.crt", CACertificate(ca))
    pki.putChild(b"crl", CertificateRevocationList(ca))
    return pki
