"""
The C{ca} service: CA and TLS key material on disk, issuance and revocation
recorded in the store, and the current CRL.

On first start it generates the root CA and a server certificate for the
configured host names (unless the operator supplied their own) and writes
private keys readable by the service user only.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.python.failure import Failure

from mdmd.pki import registry
from mdmd.pki.ca import (
    CertificateAuthority,
    RevokedEntries,
    PrivateKey,
    PublicKey,
    certificate_pem,
    generate_rsa_key,
    private_key_pem,
    thumbprint,
)
from mdmd.pki.tls import DEFAULT_CIPHERS, server_options
from mdmd.store.runner import StoreService

__all__ = ["CAService", "CASettings", "IssuedClientCertificate", "SignedCRL", "sign_crl", "write_private"]

log = Logger()

T = TypeVar("T")

#: A generated server certificate this close to expiry is replaced at start.
RENEW_SERVER_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class CASettings:
    """
    What the CA service needs from the configuration.
    """

    state_dir: str
    hostnames: Sequence[str]
    organization: str = "mdmd"
    key_size: int = 3072
    server_key_size: int = 2048
    root_lifetime: datetime.timedelta = datetime.timedelta(days=3650)
    server_lifetime: datetime.timedelta = datetime.timedelta(days=397)
    client_lifetime: datetime.timedelta = datetime.timedelta(days=365)
    crl_lifetime: datetime.timedelta = datetime.timedelta(days=7)
    server_cert_file: str = ""
    server_key_file: str = ""
    server_chain_file: str = ""
    #: CAs of an operator's device PKI, trusted for client certificates besides ours
    device_cas: Sequence[x509.Certificate] = ()
    #: the TLS 1.2 cipher suites of the HTTPS listener (an OpenSSL cipher string)
    tls_ciphers: str = DEFAULT_CIPHERS


@dataclass(frozen=True)
class IssuedClientCertificate:
    certificate: x509.Certificate
    info: registry.CertificateInfo


def write_private(path: str, data: bytes) -> None:
    """
    Write secret C{data} to C{path}, mode 0600, replacing it atomically.
    """
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _write_public(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "wb") as f:
        f.write(data)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def _read_key(path: str) -> PrivateKey:
    with open(path, "rb") as f:
        key = load_pem_private_key(f.read(), password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError(f"{path}: an RSA or EC private key is needed, not {type(key).__name__}")
    return key


def _chain_root(certificate: x509.Certificate, chain: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """
    The self-signed certificate at the end of C{certificate}'s chain, if the chain has one.
    """
    last = chain[-1] if chain else certificate
    if last.issuer != last.subject:
        return None
    try:
        last.verify_directly_issued_by(last)
    except (ValueError, TypeError, InvalidSignature):
        return None
    return last


def _read_certificates(path: str) -> list[x509.Certificate]:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificates(f.read())


class CAService(Service):
    """
    Owns the CA and TLS server key material for the lifetime of the daemon.
    """

    name = "ca"

    def __init__(self, settings: CASettings, store: StoreService, clock: IReactorTime) -> None:
        self.settings = settings
        self._store = store
        self._clock = clock
        self.authority: CertificateAuthority | None = None
        self._tls: CertificateOptions | None = None
        self._server_certificate: x509.Certificate | None = None
        self._server_chain_root: x509.Certificate | None = None
        self._crl: SignedCRL | None = None
        self._crl_number = 0
        self._crl_entries = RevokedEntries()
        self._crl_signing = False
        #: the latest revision a request saw: a signing that lists less is followed by another
        self._crl_wanted = 0
        #: first requests waiting for a CRL at least as recent as the revision they read
        self._crl_waiters: list[tuple[int, Deferred[bytes]]] = []

    # -- paths -------------------------------------------------------------------

    @property
    def ca_key_path(self) -> str:
        return os.path.join(self.settings.state_dir, "ca", "ca.key")

    @property
    def ca_cert_path(self) -> str:
        return os.path.join(self.settings.state_dir, "ca", "ca.crt")

    @property
    def server_key_path(self) -> str:
        return self.settings.server_key_file or os.path.join(self.settings.state_dir, "tls", "server.key")

    @property
    def server_cert_path(self) -> str:
        return self.settings.server_cert_file or os.path.join(self.settings.state_dir, "tls", "server.crt")

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._clock.seconds(), datetime.timezone.utc)

    # -- lifecycle ---------------------------------------------------------------

    def startService(self) -> None:
        self.authority = self._load_or_create_authority()
        key, certificate, chain = self._load_or_create_server_identity(self.authority)
        self._server_certificate = certificate
        self._server_chain_root = _chain_root(certificate, chain) if self.settings.server_cert_file else None
        if self.settings.server_cert_file and self._server_chain_root is None:
            log.warn(
                "the chain of {path} does not end in a self-signed root: devices are not given "
                "a root for it (add the root to [https] chain_file)",
                path=self.settings.server_cert_file,
            )
        self._tls = server_options(
            key,
            certificate,
            chain,
            self.authority.certificate,
            device_cas=self.settings.device_cas,
            ciphers=self.settings.tls_ciphers,
        )
        super().startService()

    def _load_or_create_authority(self) -> CertificateAuthority:
        if os.path.exists(self.ca_key_path) and os.path.exists(self.ca_cert_path):
            key = _read_key(self.ca_key_path)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError(f"{self.ca_key_path}: the CA's key must be an RSA key")
            (certificate,) = _read_certificates(self.ca_cert_path)[:1]
            log.info("CA loaded: {subject} ({thumbprint})", subject=certificate.subject.rfc4514_string(),
                     thumbprint=thumbprint(certificate))
            return CertificateAuthority(key, certificate)
        key = generate_rsa_key(self.settings.key_size)
        authority = CertificateAuthority.create(
            key,
            common_name=f"{self.settings.organization} device CA ({self.settings.hostnames[0]})",
            organization=self.settings.organization,
            lifetime=self.settings.root_lifetime,
            now=self.now(),
        )
        write_private(self.ca_key_path, private_key_pem(key))
        _write_public(self.ca_cert_path, certificate_pem(authority.certificate))
        log.info("CA generated: {path} ({thumbprint})", path=self.ca_cert_path,
                 thumbprint=thumbprint(authority.certificate))
        return authority

    def _load_or_create_server_identity(
        self, authority: CertificateAuthority
    ) -> tuple[PrivateKey, x509.Certificate, list[x509.Certificate]]:
        settings = self.settings
        if settings.server_cert_file:
            certificates = _read_certificates(settings.server_cert_file)
            chain = certificates[1:]
            if settings.server_chain_file:
                chain += _read_certificates(settings.server_chain_file)
            log.info("TLS server certificate from {path}", path=settings.server_cert_file)
            return _read_key(settings.server_key_file), certificates[0], chain
        if os.path.exists(self.server_key_path) and os.path.exists(self.server_cert_path):
            key = _read_key(self.server_key_path)
            certificate = _read_certificates(self.server_cert_path)[0]
            if self._server_certificate_still_good(certificate, key, authority):
                return key, certificate, []
            log.info("replacing the generated TLS server certificate (names, issuer or expiry changed)")
        key = generate_rsa_key(settings.server_key_size)
        certificate = authority.issue_server(
            key.public_key(),
            list(settings.hostnames),
            settings.organization,
            settings.server_lifetime,
            self.now(),
        )
        write_private(self.server_key_path, private_key_pem(key))
        _write_public(self.server_cert_path, certificate_pem(certificate))
        log.info("TLS server certificate generated for {names}", names=", ".join(settings.hostnames))
        return key, certificate, []

    def _server_certificate_still_good(
        self, certificate: x509.Certificate, key: PrivateKey, authority: CertificateAuthority
    ) -> bool:
        if certificate.issuer != authority.name:
            return False
        if certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            return False
        if certificate.not_valid_after_utc - RENEW_SERVER_BEFORE < self.now():
            return False
        try:
            san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            return False
        names = {str(n) for n in san.get_values_for_type(x509.DNSName)}
        names |= {str(n) for n in san.get_values_for_type(x509.IPAddress)}
        return set(self.settings.hostnames) <= names and ExtendedKeyUsageOID.SERVER_AUTH in eku

    # -- what the rest of mdmd uses ---------------------------------------------------

    def _running(self) -> CertificateAuthority:
        if self.authority is None:
            raise RuntimeError("the ca service is not running")
        return self.authority

    @property
    def tls_options(self) -> CertificateOptions:
        """
        TLS options for the HTTPS listener (built once at start).
        """
        if self._tls is None:
            raise RuntimeError("the ca service is not running")
        return self._tls

    @property
    def ca_certificate(self) -> x509.Certificate:
        return self._running().certificate

    @property
    def server_chain_root(self) -> x509.Certificate | None:
        """
        The self-signed root ending an operator-supplied server certificate's chain
        (C{[https] cert_file} and C{chain_file}): devices must trust it. None with
        our own server certificate, or when the chain names no root.
        """
        return self._server_chain_root

    @property
    def server_certificate(self) -> x509.Certificate:
        if self._server_certificate is None:
            raise RuntimeError("the ca service is not running")
        return self._server_certificate

    def issue(
        self,
        subject_key: PublicKey | x509.CertificateSigningRequest,
        device_id: str,
        lifetime: datetime.timedelta | None = None,
    ) -> Deferred[IssuedClientCertificate]:
        """
        Issue a client certificate for C{device_id} and record it in the store.
        """
        return self.transact_issuing(
            lambda root, issue: issue(subject_key, device_id), lifetime=lifetime
        )

    def transact_issuing(
        self,
        fn: Callable[..., T],
        *args: Any,
        lifetime: datetime.timedelta | None = None,
    ) -> Deferred[T]:
        """
        Run C{fn(root, issue, *args)} as one unit of work, where
        C{issue(subject_key, device_id)} signs a client certificate and records
        it in that same transaction.

        Whatever else C{fn} changes (a device record, say) commits together
        with the certificate record or not at all, so a failed unit leaves no
        orphan certificate. The unit is committed in a group with the other
        short units waiting (L{StoreService.transact_grouped}); signing
        happens on the store's committer thread, off the reactor; a unit run
        again signs again (with a new serial).
        """
        authority = self._running()
        lifetime = lifetime or self.settings.client_lifetime
        now = self.now()

        def unit(root: registry.Root, *args: Any) -> T:
            def issue(
                subject_key: PublicKey | x509.CertificateSigningRequest, device_id: str
            ) -> IssuedClientCertificate:
                certificate = authority.issue_client(subject_key, device_id, lifetime, now)
                info = registry.record_issued(root, certificate, device_id, now.timestamp())
                return IssuedClientCertificate(certificate, info)

            return fn(root, issue, *args)

        return self._store.transact_grouped(unit, *args)

    def revoke(self, serial: int, reason: str = "unspecified") -> Deferred[registry.CertificateInfo]:
        """
        Revoke an issued certificate: the HTTPS resources refuse it at once,
        and the CRL of every node sharing the store lists it from its next
        request (its revision moved).
        """
        return self._store.transact(registry.revoke, serial, reason, self._clock.seconds())

    # -- the CRL --------------------------------------------------------------------

    async def crl_der(self) -> bytes:
        """
        The current CRL, DER-encoded.

        It is kept in memory while the store's revision of the revocations
        (one small object, read per request) has not moved and it is younger
        than half its lifetime. Otherwise it is signed again on the store's
        threads, and the one we have is served until the new one is ready;
        only a first request waits.
        """
        self._running()
        revision = await self._store.read(registry.crl_revision)
        self._crl_wanted = max(self._crl_wanted, revision)
        served = self._crl
        if served is not None and served.revision >= revision and not self._aging(served):
            return served.der
        if served is not None:
            self._sign_crl()
            return (self._crl or served).der  # the new one if it was signed at once
        waiter: Deferred[bytes] = Deferred()
        self._crl_waiters.append((revision, waiter))
        self._sign_crl()
        return await waiter

    def _aging(self, crl: SignedCRL) -> bool:
        return self._clock.seconds() >= crl.signed_at + self.settings.crl_lifetime.total_seconds() / 2

    def _sign_crl(self) -> None:
        """
        Sign a CRL of the revocations as they are now, unless a signing is
        under way (another follows it if it lists fewer than a request saw).
        """
        if self._crl_signing:
            return
        self._crl_signing = True
        now = self._clock.seconds()
        # CRL numbers must increase; seconds since the epoch do, across restarts too.
        self._crl_number = max(int(now), self._crl_number + 1)
        signing = self._store.read(
            sign_crl, self._running(), self._crl_entries, self._crl_number, now, self.settings.crl_lifetime
        )
        signing.addBoth(self._crl_signed)

    def _crl_signed(self, result: SignedCRL | Failure) -> None:
        self._crl_signing = False
        waiters, self._crl_waiters = self._crl_waiters, []
        if isinstance(result, Failure):
            log.failure("signing the CRL failed", result)
            for _, waiter in waiters:
                waiter.errback(result)
            return
        if self._crl is None or result.revision >= self._crl.revision:
            self._crl = result
        log.info(
            "CRL {number} signed: {count} revoked certificate(s), {size} bytes",
            number=result.number,
            count=result.entries,
            size=len(result.der),
        )
        for revision, waiter in waiters:
            if result.revision >= revision:
                waiter.callback(result.der)
            else:
                self._crl_waiters.append((revision, waiter))
        if self._crl.revision < self._crl_wanted:
            self._sign_crl()


@dataclass(frozen=True)
class SignedCRL:
    """
    A CRL as served, and the revision of the revocations it lists.
    """

    revision: int
    number: int
    signed_at: float
    entries: int
    der: bytes


def sign_crl(
    root: registry.Root,
    authority: CertificateAuthority,
    entries: RevokedEntries,
    number: int,
    now: float,
    lifetime: datetime.timedelta,
) -> SignedCRL:
    """
    A unit of work that reads the revocations (with their revision, in one
    snapshot) and signs their CRL.
    """
    revision = registry.crl_revision(root)
    listed = entries(registry.revoked(root))
    crl = authority.crl_of_entries(
        listed, number, datetime.datetime.fromtimestamp(now, datetime.timezone.utc), lifetime
    )
    return SignedCRL(revision, number, now, len(listed), crl.public_bytes(serialization.Encoding.DER))
