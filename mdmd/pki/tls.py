"""
TLS for the HTTPS listener: TLS 1.2 or later with forward-secret AEAD cipher
suites only, a client certificate requested but not required, and a way for
resources to read the verified one.

Client certificates are verified against mdmd's CA and, when the operator
names them (C{[https] device_ca_file}), the CAs of an existing device PKI.
TLS only says "it chains to one of them": which devices may present which
certificate is the application's to decide (L{mdmd.pki.registry.check_client}
for ours, L{mdmd.pki.registry.check_dm_client} for a DM session).
"""

from __future__ import annotations

from collections.abc import Sequence
from weakref import WeakKeyDictionary

from cryptography import x509
from OpenSSL.crypto import X509, PKey
from twisted.internet.ssl import AcceptableCiphers, CertificateOptions, TLSVersion
from twisted.web.iweb import IRequest

from mdmd.pki import registry
from mdmd.pki.ca import PrivateKey
from mdmd.pki.registry import CertificateInfo, ClientCertificateRefused
from mdmd.store.runner import StoreService

__all__ = [
    "DEFAULT_CIPHERS",
    "server_options",
    "peer_certificate",
    "verified_client",
    "ClientCertificateRefused",
]

#: The TLS 1.2 cipher suites offered ([https] ciphers), in OpenSSL's
#: notation: ECDHE key exchange (forward secrecy) with AES-GCM or
#: ChaCha20-Poly1305 only, so no static RSA key exchange, no CBC and no
#: SHA-1 MACs. With an RSA server key that is ECDHE-RSA-AES256-GCM-SHA384,
#: ECDHE-RSA-AES128-GCM-SHA256 and ECDHE-RSA-CHACHA20-POLY1305 (the ECDSA
#: ones with an ECDSA key). TLS 1.3 keeps OpenSSL's suites, all AEAD and
#: forward secret.
DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def server_options(
    key: PrivateKey,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
    client_ca: x509.Certificate,
    device_cas: Sequence[x509.Certificate] = (),
    ciphers: str = DEFAULT_CIPHERS,
) -> CertificateOptions:
    """
    Server-side TLS options: TLS 1.2 and 1.3, the TLS 1.2 suites of C{ciphers}
    (an OpenSSL cipher string).

    A client certificate is requested (VERIFY_PEER) and, when presented, must
    chain to C{client_ca} (ours) or to one of C{device_cas} or the handshake
    fails; presenting none is allowed, since discovery and enrollment come
    before a device has one, and classic OMA DM devices often have none. Session
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
        caCerts=[X509.from_cryptography(c) for c in (client_ca, *device_cas)],
        requireCertificate=False,
        enableSessions=True,
        enableSessionTickets=True,
        raiseMinimumTo=TLSVersion.TLSv1_2,
        acceptableCiphers=AcceptableCiphers.fromOpenSSLCipherString(ciphers),
    )


#: The peer certificate of a connection never changes: it is converted once
#: per connection (per HTTP channel), not per request (keep-alive DM sessions
#: send many), and forgotten with the connection.
_PEER_CERTIFICATES: WeakKeyDictionary[object, x509.Certificate | None] = WeakKeyDictionary()


def peer_certificate(request: IRequest) -> x509.Certificate | None:
    """
    The client certificate the TLS layer verified for this request, if any.

    OpenSSL has already checked that it chains to our CA; whether it is still
    valid in our records (not revoked) is for the caller to check.
    """
    channel = getattr(request, "channel", None)
    if channel is None:
        return None
    try:
        return _PEER_CERTIFICATES[channel]
    except KeyError:
        pass
    get = getattr(getattr(channel, "transport", None), "getPeerCertificate", None)
    if get is None:
        return None
    cert = get()
    converted: x509.Certificate | None = None if cert is None else cert.to_cryptography()
    _PEER_CERTIFICATES[channel] = converted
    return converted


async def verified_client(request: IRequest, store: StoreService) -> CertificateInfo:
    """
    The issued-certificate record behind this request's client certificate.

    @raise ClientCertificateRefused: when there is none, or we no longer honour it.
    """
    certificate = peer_certificate(request)
    if certificate is None:
        raise ClientCertificateRefused("a client certificate is required")
    return await store.read(registry.check_client, certificate)
