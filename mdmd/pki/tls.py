"""
TLS for the HTTPS listener: TLS 1.2 or later, a client certificate requested
but not required, and a way for resources to read the verified one.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL.crypto import X509, PKey
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.web.iweb import IRequest

from mdmd.errors import PeerError
from mdmd.pki import registry
from mdmd.pki.ca import PrivateKey, serial_hex
from mdmd.pki.registry import CertificateInfo
from mdmd.store.service import StoreService

__all__ = ["server_options", "peer_certificate", "verified_client", "ClientCertificateRefused"]


def server_options(
    key: PrivateKey,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
    client_ca: x509.Certificate,
) -> CertificateOptions:
    """
    Server-side TLS options.

    A client certificate is requested (VERIFY_PEER) and, when presented, must
    chain to C{client_ca} or the handshake fails; presenting none is allowed,
    since discovery and enrollment come before a device has one. Session
    resumption is on, since devices reconnect often: TLS 1.3 resumes only
    with session tickets (Twisted turns them off by default), which also
    serve TLS 1.2. A resumed session keeps its client certificate, and
    revocation is checked per request by L{verified_client} either way.
    """
    return CertificateOptions(
        privateKey=PKey.from_cryptography_key(key),
        certificate=X509.from_cryptography(certificate),
        extraCertChain=[X509.from_cryptography(c) for c in chain] or None,
        verify=True,
        caCerts=[X509.from_cryptography(client_ca)],
        requireCertificate=False,
        enableSessions=True,
        enableSessionTickets=True,
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )


def peer_certificate(request: IRequest) -> x509.Certificate | None:
    """
    The client certificate the TLS layer verified for this request, if any.

    OpenSSL has already checked that it chains to our CA; whether it is still
    valid in our records (not revoked) is for the caller to check.
    """
    transport = getattr(request, "channel", None)
    transport = getattr(transport, "transport", None)
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        return None
    cert = get()
    return None if cert is None else cert.to_cryptography()


class ClientCertificateRefused(PeerError):
    """
    The request carries no client certificate, or one we no longer honour.
    """


async def verified_client(request: IRequest, store: StoreService) -> CertificateInfo:
    """
    The issued-certificate record behind this request's client certificate.

    TLS has checked the chain to our CA; this checks the application's view:
    we issued that serial, to the subject's device, and it is not revoked.

    @raise ClientCertificateRefused: naming what is wrong.
    """
    certificate = peer_certificate(request)
    if certificate is None:
        raise ClientCertificateRefused("a client certificate is required")
    info = await store.read(registry.lookup, certificate.serial_number)
    if info is None:
        raise ClientCertificateRefused(
            f"certificate {serial_hex(certificate.serial_number)} was not issued by this server"
        )
    if info.der != certificate.public_bytes(serialization.Encoding.DER):
        raise ClientCertificateRefused(
            f"certificate {info.serial_hex} does not match the one we issued"
        )
    if info.status != "valid":
        raise ClientCertificateRefused(f"certificate {info.serial_hex} is {info.status}")
    return info
