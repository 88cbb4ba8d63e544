"""
Tests for L{mdmd.pki.ca}: certificates checked with cryptography's own path validation.
"""

import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from twisted.trial.unittest import SynchronousTestCase

from mdmd.pki.ca import (
    CertificateAuthority,
    Revocation,
    RevokedEntries,
    generate_rsa_key,
    parse_serial,
    serial_hex,
    thumbprint,
)

NOW = datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.timezone.utc)
YEAR = datetime.timedelta(days=365)

_KEYS = [generate_rsa_key(2048) for _ in range(3)]


def client_policy(ca: CertificateAuthority, when: datetime.datetime) -> PolicyBuilder:
    """
    The Web PKI client profile, except that a subjectAltName is optional: device
    certificates name the device in their subject (Windows matches it there).
    """
    ee = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    return (
        PolicyBuilder()
        .store(Store([ca.certificate]))
        .time(when)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee)
    )


def make_ca(key_index: int = 0, name: str = "test CA") -> CertificateAuthority:
    return CertificateAuthority.create(_KEYS[key_index], name, "mdmd tests", 10 * YEAR, NOW)


class RootTests(SynchronousTestCase):
    def test_root_extensions(self) -> None:
        """
        The root is a CA (critical BasicConstraints, pathlen 0), may sign certificates and CRLs.
        """
        ca = make_ca()
        cert = ca.certificate
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(bc.critical)
        self.assertTrue(bc.value.ca)
        self.assertEqual(bc.value.path_length, 0)
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        self.assertTrue(ku.critical)
        self.assertTrue(ku.value.key_cert_sign and ku.value.crl_sign)
        self.assertEqual(cert.issuer, cert.subject)
        assert cert.signature_hash_algorithm is not None
        self.assertEqual(cert.signature_hash_algorithm.name, "sha256")
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        self.assertGreaterEqual(key.key_size, 2048)


class ClientCertificateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = make_ca()
        self.device_key = _KEYS[1]
        self.cert = self.ca.issue_client(self.device_key.public_key(), "DEVICE-1", YEAR, NOW)

    def test_verifies_against_root(self) -> None:
        """
        cryptography's client verifier accepts the certificate for client authentication.
        """
        verifier = client_policy(self.ca, NOW + datetime.timedelta(days=1)).build_client_verifier()
        verified = verifier.verify(self.cert, [])
        self.assertEqual(verified.chain[-1], self.ca.certificate)

    def test_foreign_root_rejected(self) -> None:
        """
        A certificate from another CA does not verify against ours.
        """
        other = make_ca(2, "other CA")
        foreign = other.issue_client(self.device_key.public_key(), "DEVICE-1", YEAR, NOW)
        verifier = client_policy(self.ca, NOW).build_client_verifier()
        self.assertRaises(VerificationError, verifier.verify, foreign, [])
        expired = client_policy(self.ca, NOW + 2 * YEAR).build_client_verifier()
        self.assertRaises(VerificationError, expired.verify, self.cert, [])

    def test_extensions(self) -> None:
        """
        CA=false (critical), KeyUsage (critical), EKU clientAuth, SKI and AKI linked to the root.
        """
        extensions = self.cert.extensions
        bc = extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(bc.critical)
        self.assertFalse(bc.value.ca)
        ku = extensions.get_extension_for_class(x509.KeyUsage)
        self.assertTrue(ku.critical)
        self.assertTrue(ku.value.digital_signature)
        self.assertTrue(ku.value.key_encipherment)
        self.assertFalse(ku.value.key_cert_sign)
        eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(eku), [ExtendedKeyUsageOID.CLIENT_AUTH])
        ski = extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        self.assertEqual(ski, x509.SubjectKeyIdentifier.from_public_key(self.device_key.public_key()))
        aki = extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        root_ski = self.ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        self.assertEqual(aki.key_identifier, root_ski.digest)

    def test_subject_and_validity(self) -> None:
        """
        CN is the device id; validity starts a few minutes before now and lasts the lifetime.
        """
        cn = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        self.assertEqual([a.value for a in cn], ["DEVICE-1"])
        self.assertEqual(self.cert.not_valid_before_utc, NOW - datetime.timedelta(minutes=5))
        self.assertEqual(self.cert.not_valid_after_utc, NOW + YEAR)

    def test_random_serials(self) -> None:
        """
        Serial numbers are large and random.
        """
        serials = {
            self.ca.issue_client(self.device_key.public_key(), "D", YEAR, NOW).serial_number
            for _ in range(20)
        }
        self.assertEqual(len(serials), 20)
        self.assertTrue(all(s.bit_length() > 64 for s in serials))

    def test_csr_takes_key_only(self) -> None:
        """
        Issuing from a CSR uses its key, never its subject.
        """
        from cryptography.hazmat.primitives import hashes

        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker-chosen")]))
            .sign(self.device_key, hashes.SHA256())
        )
        cert = self.ca.issue_client(csr, "DEVICE-2", YEAR, NOW)
        self.assertEqual(cert.subject.rfc4514_string(), "CN=DEVICE-2")
        self.assertEqual(cert.public_key(), self.device_key.public_key())

    def test_ec_key(self) -> None:
        """
        EC keys get a certificate without keyEncipherment.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.ca.issue_client(key.public_key(), "EC", YEAR, NOW)
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertFalse(ku.key_encipherment)

    def test_thumbprint(self) -> None:
        """
        Thumbprints are 40 upper-case hex digits of SHA-1 over the DER.
        """
        import hashlib

        from cryptography.hazmat.primitives.serialization import Encoding

        self.assertEqual(
            thumbprint(self.cert), hashlib.sha1(self.cert.public_bytes(Encoding.DER)).hexdigest().upper()
        )
        self.assertRegex(thumbprint(self.cert), "^[0-9A-F]{40}$")


class ServerCertificateTests(SynchronousTestCase):
    def test_server_certificate_for_names(self) -> None:
        """
        The TLS server certificate names every host (DNS and IP) and verifies as a server.
        """
        ca = make_ca()
        cert = ca.issue_server(_KEYS[1].public_key(), ["mdm.example.com", "127.0.0.1"], "o", YEAR, NOW)
        verifier = (
            PolicyBuilder()
            .store(Store([ca.certificate]))
            .time(NOW)
            .build_server_verifier(x509.DNSName("mdm.example.com"))
        )
        verifier.verify(cert, [])
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(eku), [ExtendedKeyUsageOID.SERVER_AUTH])


class CRLTests(SynchronousTestCase):
    def test_crl_lists_revocations(self) -> None:
        """
        The CRL is signed by the CA and lists each revoked serial with its reason.
        """
        ca = make_ca()
        crl = ca.crl(
            [Revocation(10, NOW, "keyCompromise"), Revocation(11, NOW)],
            number=7,
            now=NOW,
            lifetime=datetime.timedelta(days=7),
        )
        self.assertTrue(crl.is_signature_valid(ca.key.public_key()))
        revoked = crl.get_revoked_certificate_by_serial_number(10)
        assert revoked is not None
        self.assertEqual(revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason, x509.ReasonFlags.key_compromise)
        self.assertIsNotNone(crl.get_revoked_certificate_by_serial_number(11))
        self.assertIsNone(crl.get_revoked_certificate_by_serial_number(12))
        self.assertEqual(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number, 7)
        self.assertEqual(crl.next_update_utc, NOW + datetime.timedelta(days=7))


    def test_entries_built_once(self) -> None:
        """
        RevokedEntries builds an entry once, from the revocation as the store
        keeps it, and hands it out again for the next CRL; entries no longer
        listed are forgotten; a CRL of them lists what crl() lists.
        """
        at = NOW.timestamp()
        entries = RevokedEntries()
        first = entries([(10, at, "keyCompromise"), (11, at, "unspecified")])
        second = entries([(10, at, "keyCompromise"), (12, at, "unspecified")])
        self.assertIs(second[0], first[0])
        self.assertEqual([e.serial_number for e in second], [10, 12])
        third = entries([(11, at, "unspecified")])
        self.assertIsNot(third[0], first[1])
        ca = make_ca()
        lifetime = datetime.timedelta(days=1)
        of_entries = ca.crl_of_entries(entries([(10, at, "keyCompromise"), (12, at, "unspecified")]), 1, NOW, lifetime)
        direct = ca.crl([Revocation(10, NOW, "keyCompromise"), Revocation(12, NOW)], 1, NOW, lifetime)

        def listed(crl: x509.CertificateRevocationList) -> list[tuple[int, datetime.datetime, list[x509.Extension[x509.ExtensionType]]]]:
            return [(e.serial_number, e.revocation_date_utc, list(e.extensions)) for e in crl]

        self.assertEqual(listed(of_entries), listed(direct))


class SerialTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """
        Serials are shown in hex and read back with or without decoration.
        """
        self.assertEqual(serial_hex(0xABCDEF), "ABCDEF")
        for text in ("ABCDEF", "abcdef", "0xabcdef", "AB:CD:EF", " abcdef "):
            self.assertEqual(parse_serial(text), 0xABCDEF)
        for bad in ("", "xyz", "0x", "1" * 41):
            self.assertRaises(ValueError, parse_serial, bad)
