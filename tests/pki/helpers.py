"""
Shared set-up for PKI tests: a started CA service on a temporary state directory.
"""

from __future__ import annotations

import datetime
import os
import tempfile
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase

from mdmd.pki.authority import CAService, CASettings
from mdmd.pki.ca import CertificateAuthority, PublicKey, certificate_pem, generate_rsa_key
from mdmd.testing.store import SynchronousStoreService, memory_store_service


def started_ca(
    test: SynchronousTestCase,
    hostnames: tuple[str, ...] = ("localhost", "127.0.0.1"),
    state_dir: str | None = None,
    store: SynchronousStoreService | None = None,
    **settings: Any,
) -> CAService:
    """
    A running CA service (2048-bit keys, to keep tests quick), stopped at cleanup.
    """
    if state_dir is None:
        state_dir = tempfile.mkdtemp(prefix="mdmd-ca-")
        test.addCleanup(_rmtree, state_dir)
    if store is None:
        store = memory_store_service()
        test.addCleanup(store.stopService)
    service = CAService(
        CASettings(state_dir=state_dir, hostnames=hostnames, key_size=2048, **settings),
        store,
        reactor,
    )
    service.startService()
    test.addCleanup(service.stopService)
    return service


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def mode(path: str) -> int:
    return os.stat(path).st_mode & 0o777


class DevicePKI:
    """
    An operator's own device PKI (not ours): a root CA with its key, issuing
    device certificates named by their subject CN or by SAN URIs and DNS names.
    """

    def __init__(self, name: str = "Acme device CA") -> None:
        self.now = datetime.datetime.now(datetime.timezone.utc)
        self.authority = CertificateAuthority.create(
            generate_rsa_key(2048), name, "Acme", datetime.timedelta(days=30), self.now
        )
        self.certificate = self.authority.certificate

    def issue(
        self, public_key: PublicKey, common_name: str, uris: tuple[str, ...] = (), dns: tuple[str, ...] = ()
    ) -> x509.Certificate:
        """
        A client certificate for C{public_key}, with a SAN when C{uris} or C{dns} are given.
        """
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - datetime.timedelta(minutes=5))
            .not_valid_after(self.now + datetime.timedelta(days=9))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        names = [x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName(d) for d in dns]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.authority.key, hashes.SHA256())

    def pem(self) -> bytes:
        return certificate_pem(self.certificate)
