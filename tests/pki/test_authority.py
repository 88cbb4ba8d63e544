"""
Tests for L{mdmd.pki.authority}: key material on disk, issuance and revocation in the store.
"""

import datetime
import os
import shutil
import subprocess
from collections.abc import Callable
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from mdmd.pki import authority, registry
from mdmd.pki.authority import CAService, CASettings
from mdmd.pki.ca import certificate_pem, generate_rsa_key, private_key_pem
from mdmd.testing.store import SynchronousStoreService, memory_store_service

from ..servers import start_zeo

from .helpers import mode, started_ca

T = TypeVar("T")


class FilesTests(SynchronousTestCase):
    def test_first_start_generates_material(self) -> None:
        """
        The first start writes the CA and server key pairs; private keys are 0600.
        """
        ca = started_ca(self)
        self.assertEqual(mode(ca.ca_key_path), 0o600)
        self.assertEqual(mode(ca.server_key_path), 0o600)
        self.assertEqual(mode(os.path.dirname(ca.ca_key_path)), 0o700)
        names = ca.server_certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(names.get_values_for_type(x509.DNSName), ["localhost"])
        self.assertEqual([str(a) for a in names.get_values_for_type(x509.IPAddress)], ["127.0.0.1"])
        self.assertEqual(ca.server_certificate.issuer, ca.ca_certificate.subject)

    def test_restart_keeps_material(self) -> None:
        """
        A restart loads the same CA and server certificate.
        """
        first = started_ca(self)
        state_dir = first.settings.state_dir
        first.stopService()
        second = started_ca(self, state_dir=state_dir)
        self.assertEqual(second.ca_certificate, first.ca_certificate)
        self.assertEqual(second.server_certificate, first.server_certificate)

    def test_new_hostname_replaces_server_certificate(self) -> None:
        """
        Changing the configured names gets a new server certificate from the same CA.
        """
        first = started_ca(self)
        state_dir = first.settings.state_dir
        first.stopService()
        second = started_ca(self, hostnames=("mdm.example.com",), state_dir=state_dir)
        self.assertEqual(second.ca_certificate, first.ca_certificate)
        names = second.server_certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(names.get_values_for_type(x509.DNSName), ["mdm.example.com"])

    def test_operator_certificate(self) -> None:
        """
        An operator-supplied server certificate is used as is; the CA still issues client certificates.
        """
        from mdmd.pki.ca import CertificateAuthority
        import datetime

        directory = self.mktemp()
        os.makedirs(directory)
        key = generate_rsa_key(2048)
        now = datetime.datetime.now(datetime.timezone.utc)
        other = CertificateAuthority.create(generate_rsa_key(2048), "public CA", "x", datetime.timedelta(days=30), now)
        cert = other.issue_server(key.public_key(), ["mdm.example.com"], "x", datetime.timedelta(days=30), now)
        with open(f"{directory}/cert.pem", "wb") as f:
            f.write(certificate_pem(cert))
        with open(f"{directory}/chain.pem", "wb") as f:
            f.write(certificate_pem(other.certificate))
        with open(f"{directory}/key.pem", "wb") as f:
            f.write(private_key_pem(key))
        ca = started_ca(
            self,
            server_cert_file=f"{directory}/cert.pem",
            server_key_file=f"{directory}/key.pem",
            server_chain_file=f"{directory}/chain.pem",
        )
        self.assertEqual(ca.server_certificate, cert)
        self.assertNotEqual(ca.ca_certificate, other.certificate)
        self.assertFalse(os.path.exists(os.path.join(ca.settings.state_dir, "tls", "server.key")))
        self.assertEqual(ca.server_chain_root, other.certificate)

    def test_operator_chain_root(self) -> None:
        """
        The root devices must trust for an operator's certificate is the self-signed end
        of its chain (cert_file, then chain_file); a chain that names no root gives none
        (and a warning); our own server certificate, none.
        """
        from mdmd.pki.ca import CertificateAuthority
        import datetime

        directory = self.mktemp()
        os.makedirs(directory)
        now = datetime.datetime.now(datetime.timezone.utc)
        root = CertificateAuthority.create(generate_rsa_key(2048), "enterprise root", "x", datetime.timedelta(days=30), now)
        key = generate_rsa_key(2048)
        cert = root.issue_server(key.public_key(), ["mdm.example.com"], "x", datetime.timedelta(days=30), now)
        with open(f"{directory}/key.pem", "wb") as f:
            f.write(private_key_pem(key))
        with open(f"{directory}/cert.pem", "wb") as f:
            f.write(certificate_pem(cert))
        with open(f"{directory}/chain.pem", "wb") as f:
            f.write(certificate_pem(root.certificate))
        cert_file, key_file = f"{directory}/cert.pem", f"{directory}/key.pem"
        ca = started_ca(self, server_cert_file=cert_file, server_key_file=key_file, server_chain_file=f"{directory}/chain.pem")
        self.assertEqual(ca.server_chain_root, root.certificate)
        ca.stopService()
        ca = started_ca(self, server_cert_file=cert_file, server_key_file=key_file)
        self.assertIsNone(ca.server_chain_root)
        ca.stopService()
        self.assertIsNone(started_ca(self).server_chain_root)

    def test_operator_key_of_another_kind(self) -> None:
        """
        An operator-supplied server key that is neither RSA nor EC stops the start, naming the file.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        with open(f"{directory}/cert.pem", "wb") as f:
            f.write(certificate_pem(started_ca(self).server_certificate))
        with open(f"{directory}/key.pem", "wb") as f:
            f.write(
                ed25519.Ed25519PrivateKey.generate().private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        with self.assertRaises(ValueError) as caught:
            started_ca(self, server_cert_file=f"{directory}/cert.pem", server_key_file=f"{directory}/key.pem")
        self.assertIn(f"{directory}/key.pem", str(caught.exception))
        self.assertIn("Ed25519", str(caught.exception))

    def test_ca_key_must_be_rsa(self) -> None:
        """
        A CA key file holding an EC key stops the start: the CA signs with RSA.
        """
        first = started_ca(self)
        first.stopService()
        with open(first.ca_key_path, "wb") as f:
            f.write(private_key_pem(ec.generate_private_key(ec.SECP256R1())))
        with self.assertRaises(ValueError) as caught:
            started_ca(self, state_dir=first.settings.state_dir)
        self.assertIn(first.ca_key_path, str(caught.exception))


class IssueRevokeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = memory_store_service()
        self.addCleanup(self.store.stopService)
        self.ca = started_ca(self, store=self.store)
        self.key = generate_rsa_key(2048)

    def test_issue_records(self) -> None:
        """
        Every issued certificate is recorded with its DER, device id and status.
        """
        issued = self.successResultOf(self.ca.issue(self.key.public_key(), "DEV-1"))
        record = self.successResultOf(self.store.read(registry.lookup, issued.certificate.serial_number))
        assert record is not None
        self.assertEqual(record.device_id, "DEV-1")
        self.assertEqual(record.status, "valid")
        self.assertEqual(record.der, issued.certificate.public_bytes(serialization.Encoding.DER))
        self.assertEqual(record, issued.info)

    def test_revoke_appears_in_crl(self) -> None:
        """
        A revoked certificate is marked in the store and listed by the next CRL.
        """
        issued = self.successResultOf(self.ca.issue(self.key.public_key(), "DEV-1"))
        serial = issued.certificate.serial_number
        before = x509.load_der_x509_crl(self.successResultOf(ensureDeferred(self.ca.crl_der())))
        self.assertIsNone(before.get_revoked_certificate_by_serial_number(serial))
        info = self.successResultOf(self.ca.revoke(serial, "keyCompromise"))
        self.assertEqual(info.status, "revoked")
        self.assertEqual(info.revocation_reason, "keyCompromise")


        after = x509.load_der_x509_crl(self.successResultOf(ensureDeferred(self.ca.crl_der())))
        self.assertIsNotNone(after.get_revoked_certificate_by_serial_number(serial))
        ca_key = self.ca.ca_certificate.public_key()
        assert isinstance(ca_key, rsa.RSAPublicKey)
        self.assertTrue(after.is_signature_valid(ca_key))
        self.assertGreater(
            after.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number,
            before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number,
        )

    def test_revoke_unknown_and_bad_reason(self) -> None:
        """
        Unknown serials and reasons are refused with specific errors.
        """
        self.failureResultOf(self.ca.revoke(12345), registry.UnknownCertificate)
        issued = self.successResultOf(self.ca.issue(self.key.public_key(), "DEV-1"))
        self.failureResultOf(self.ca.revoke(issued.certificate.serial_number, "because"), ValueError)

    def test_openssl_verifies(self) -> None:
        """
        openssl(1) verifies an issued certificate for SSL client use against our root.
        """
        openssl = shutil.which("openssl")
        if openssl is None:
            raise SkipTest("openssl is not installed")
        issued = self.successResultOf(self.ca.issue(self.key.public_key(), "DEV-1"))
        directory = self.mktemp()
        os.makedirs(directory)
        with open(f"{directory}/client.pem", "wb") as f:
            f.write(certificate_pem(issued.certificate))
        result = subprocess.run(
            [openssl, "verify", "-purpose", "sslclient", "-CAfile", self.ca.ca_cert_path, f"{directory}/client.pem"],
            capture_output=True,
            text=True,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn(": OK", result.stdout)


class HeldStore(SynchronousStoreService):
    """
    A synchronous store that holds back the outcome of every CRL signing
    until released, as a signing on the store's threads takes its time.
    """

    def __init__(self) -> None:
        super().__init__("memory:", pool_size=2)
        self.held: list[tuple[Any, Deferred[Any]]] = []
        self.signings = 0

    def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        if fn is not authority.sign_crl:
            return super().read(fn, *args, **kwargs)
        self.signings += 1
        signed = self.successResult(super().read(fn, *args, **kwargs))
        held: Deferred[T] = Deferred()
        self.held.append((signed, held))
        return held

    @staticmethod
    def successResult(d: Deferred[T]) -> T:
        results: list[T] = []
        d.addCallback(results.append)
        return results[0]

    def release(self) -> None:
        """
        Let every signing held back finish.
        """
        held, self.held = self.held, []
        for signed, waiting in held:
            waiting.callback(signed)


def crl_of(der: bytes) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(der)


def crl_number(der: bytes) -> int:
    number: int = crl_of(der).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    return number


class CRLTests(SynchronousTestCase):
    """
    The CRL: kept while the revocations' revision stays, signed again off the
    reactor thread when it moves (the previous one served meanwhile), or when
    it ages.
    """

    def setUp(self) -> None:
        self.store = HeldStore()
        self.store.startService()
        self.addCleanup(self.store.stopService)
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        directory = self.mktemp()
        self.ca = CAService(
            CASettings(state_dir=os.path.abspath(directory), hostnames=("localhost",), key_size=2048,
                       crl_lifetime=datetime.timedelta(hours=2)),
            self.store,
            self.clock,
        )
        self.ca.startService()
        self.addCleanup(self.ca.stopService)
        self.key = generate_rsa_key(2048)

    def crl(self) -> Deferred[bytes]:
        return Deferred.fromCoroutine(self.ca.crl_der())

    def revoked_serial(self) -> int:
        issued = self.successResultOf(self.ca.issue(self.key.public_key(), "DEV-1"))
        serial: int = issued.certificate.serial_number
        self.successResultOf(self.ca.revoke(serial))
        return serial

    def test_first_request_waits(self) -> None:
        """
        The first request waits for the first signing; the next ones get it
        from memory, with no signing.
        """
        first = self.crl()
        self.assertNoResult(first)
        self.store.release()
        der = self.successResultOf(first)
        self.assertEqual(self.successResultOf(self.crl()), der)
        self.assertEqual(self.store.signings, 1)

    def test_previous_served_while_signing(self) -> None:
        """
        After a revocation, requests get the previous CRL at once while the
        new one is signed (once, however many requests come), then the new one.
        """
        self.crl()
        self.store.release()
        old = self.successResultOf(self.crl())
        serial = self.revoked_serial()
        self.assertEqual(self.successResultOf(self.crl()), old)
        self.assertEqual(self.successResultOf(self.crl()), old)
        self.assertEqual(self.store.signings, 2)
        self.store.release()
        new = self.successResultOf(self.crl())
        self.assertIsNotNone(crl_of(new).get_revoked_certificate_by_serial_number(serial))
        self.assertGreater(crl_number(new), crl_number(old))
        self.assertEqual(self.store.signings, 2)

    def test_revocation_during_signing(self) -> None:
        """
        A revocation while a signing is under way gets another signing after it.
        """
        self.crl()
        self.store.release()
        self.revoked_serial()
        self.crl()
        serial = self.revoked_serial()
        self.crl()
        self.store.release()
        self.assertEqual(self.store.signings, 3)
        self.store.release()
        der = self.successResultOf(self.crl())
        self.assertEqual(len(crl_of(der)), 2)
        self.assertIsNotNone(crl_of(der).get_revoked_certificate_by_serial_number(serial))

    def test_signed_again_when_aging(self) -> None:
        """
        A CRL half its lifetime old is signed again (nothing was revoked).
        """
        self.crl()
        self.store.release()
        old = self.successResultOf(self.crl())
        self.clock.advance(3599)
        self.assertEqual(self.successResultOf(self.crl()), old)
        self.assertEqual(self.store.signings, 1)
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(self.crl()), old)
        self.store.release()
        new_update, old_update = crl_of(self.successResultOf(self.crl())).next_update_utc, crl_of(old).next_update_utc
        assert new_update is not None and old_update is not None
        self.assertEqual(new_update - old_update, datetime.timedelta(hours=1))


class SharedStoreCRLTests(SynchronousTestCase):
    def test_revocation_by_another_node(self) -> None:
        """
        Two nodes sharing a ZEO store: a CRL cached by one is signed again
        once the other revoked a certificate, and lists it.
        """
        port = start_zeo(self)
        stores = [SynchronousStoreService(f"zeo://127.0.0.1:{port}", pool_size=2) for _ in range(2)]
        for store in stores:
            store.startService()
            self.addCleanup(store.stopService)
        first = started_ca(self, store=stores[0])
        second = started_ca(self, store=stores[1], state_dir=first.settings.state_dir)
        before = self.successResultOf(Deferred.fromCoroutine(second.crl_der()))
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(second.crl_der())), before)
        issued = self.successResultOf(first.issue(generate_rsa_key(2048).public_key(), "DEV-1"))
        serial = issued.certificate.serial_number
        self.successResultOf(first.revoke(serial))
        after = self.successResultOf(Deferred.fromCoroutine(second.crl_der()))
        self.assertIsNone(crl_of(before).get_revoked_certificate_by_serial_number(serial))
        self.assertIsNotNone(crl_of(after).get_revoked_certificate_by_serial_number(serial))
