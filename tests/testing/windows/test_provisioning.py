"""
Tests for L{mdmd.testing.windows.provisioning}: the device-side checks take
the documents mdmd writes and refuse, by name, each way a document could
mislead a device.
"""

from __future__ import annotations

import base64
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.trial.unittest import SynchronousTestCase

from mdmd.config import PollSchedule
from mdmd.enroll import soap as ns
from mdmd.enroll import provisioning
from mdmd.enroll.wstep import token_response
from mdmd.pki.ca import CertificateAuthority, thumbprint
from mdmd.testing.windows.provisioning import (
    AppAuth,
    Enrollment,
    ProvisioningError,
    check_enrollment_document,
    check_renewal_document,
    document_from_answer,
)
from mdmd.xmlparser import parse

NOW = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)
DEVICE_ID = "7BA748C8703E4DF2A74A92984117346A"
KEY = rsa.generate_private_key(65537, 2048)
OTHER_KEY = rsa.generate_private_key(65537, 2048)
AUTHORITY = CertificateAuthority.create(rsa.generate_private_key(65537, 2048), "root", "o", datetime.timedelta(days=30), NOW)
OTHER_AUTHORITY = CertificateAuthority.create(OTHER_KEY, "other", "o", datetime.timedelta(days=30), NOW)
ACCOUNT = provisioning.DMAccount(
    provider_id="mdmd",
    name="mdmd",
    dm_url="https://mdm.example.com/ManagementServer/MDM.svc",
    connection_retries=6,
    initial_backoff_ms=30000,
    max_backoff_ms=120000,
    default_encoding="application/vnd.syncml.dm+xml",
    poll=PollSchedule(3, 5, 15, 8, 480),
    poll_on_login=True,
    renew_period_days=60,
    renew_retry_days=4,
)
CREDENTIALS = provisioning.DMCredentials(
    client_name=DEVICE_ID,
    client_secret="client-secret",
    client_auth_type="DIGEST",
    client_nonce=b"\x01" * 16,
    server_name="mdmd",
    server_secret="server-secret",
    server_nonce=b"\x02" * 16,
)


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def client(key: rsa.RSAPrivateKey = KEY, device_id: str = DEVICE_ID, authority: CertificateAuthority = AUTHORITY) -> x509.Certificate:
    return authority.issue_client(key.public_key(), device_id, datetime.timedelta(days=10), NOW)


CLIENT = client()


def document(
    *, client_der: bytes = der(CLIENT), store: str = "User", replace: tuple[str, str] | None = None
) -> provisioning.Characteristic:
    """
    What mdmd provisions for the device, with one text replacement to break it.
    """
    data = provisioning.enrollment_document(
        root_der=der(AUTHORITY.certificate),
        client_der=client_der,
        store=store,
        device_id=DEVICE_ID,
        device_name="DESKTOP-1",
        upn="alice@example.com",
        credentials=CREDENTIALS,
        account=ACCOUNT,
    )
    if replace is not None:
        old, new = (part.encode() for part in replace)
        assert old in data, old
        data = data.replace(old, new)
    return provisioning.parse_document(data)


def check(doc: provisioning.Characteristic, key: rsa.RSAPrivateKey | None = KEY) -> Enrollment:
    return check_enrollment_document(doc, DEVICE_ID, key, [AUTHORITY.certificate])


class EnrollmentDocumentTests(SynchronousTestCase):
    def refused(self, doc: provisioning.Characteristic, reason: str, key: rsa.RSAPrivateKey | None = KEY) -> None:
        with self.assertRaises(ProvisioningError) as caught:
            check(doc, key)
        self.assertIn(reason, str(caught.exception))

    def test_accepted(self) -> None:
        """
        mdmd's document gives the device its certificate, root, DM address,
        store and both credentials: APPSRV to authenticate itself, CLIENT
        (named by the provider, as it carries no name) to check the server.
        """
        enrollment = check(document())
        self.assertEqual((enrollment.certificate, enrollment.root), (CLIENT, AUTHORITY.certificate))
        self.assertEqual((enrollment.dm_url, enrollment.provider_id, enrollment.store), (ACCOUNT.dm_url, "mdmd", "User"))
        self.assertEqual(enrollment.client_auth, AppAuth("APPSRV", "DIGEST", DEVICE_ID, "client-secret", b"\x01" * 16))
        self.assertEqual(enrollment.server_auth, AppAuth("CLIENT", "DIGEST", "mdmd", "server-secret", b"\x02" * 16))
        self.assertEqual(check(document(store="System")).store, "System")
        self.assertEqual(check(document(), key=None).certificate, CLIENT)

    def test_unexpected_characteristic(self) -> None:
        """
        Anything beside CertificateStore, APPLICATION and DMClient is refused.
        """
        doc = document(replace=('<characteristic type="DMClient">', '<characteristic type="Other"/><characteristic type="DMClient">'))
        self.refused(doc, "unexpected top-level characteristics")

    def test_foreign_root(self) -> None:
        """
        A root other than the server's CA is refused.
        """
        with self.assertRaises(ProvisioningError) as caught:
            check_enrollment_document(document(), DEVICE_ID, KEY, [OTHER_AUTHORITY.certificate])
        self.assertIn("not the server's CA", str(caught.exception))

    def test_thumbprints(self) -> None:
        """
        A certificate's characteristic must be its SHA-1 thumbprint.
        """
        root_thumbprint = thumbprint(der(AUTHORITY.certificate))
        self.refused(document(replace=(root_thumbprint, "00" * 20)), "root's characteristic is not its thumbprint")
        client_thumbprint = thumbprint(der(CLIENT))
        self.refused(document(replace=(client_thumbprint, "00" * 20)), "client certificate's characteristic")

    def test_client_certificate(self) -> None:
        """
        The client certificate must chain to the root, be for client
        authentication, name the device and hold the device's key.
        """
        self.refused(document(client_der=der(client(authority=OTHER_AUTHORITY))), "does not chain to the root")
        self.refused(document(client_der=der(AUTHORITY.certificate)), "no extended key usage")
        self.refused(document(client_der=der(client(device_id="SOMEONE-ELSE"))), "names")
        self.refused(document(client_der=der(client(key=OTHER_KEY))), "not for the device's key")

    def test_dm_address(self) -> None:
        """
        The DM address must be HTTPS.
        """
        self.refused(document(replace=('value="https://mdm', 'value="http://mdm')), "is not HTTPS")

    def test_search_criteria(self) -> None:
        """
        The search criteria must select the client certificate, by subject and store.
        """
        self.refused(document(replace=("Stores=My%5CUser", "Stores=My%5CSystem")), "does not select")
        self.refused(document(replace=(f"CN%3D{DEVICE_ID}", "CN%3DX")), "does not select")

    def test_credentials(self) -> None:
        """
        Both APPAUTH, CLIENT by digest, APPSRV named, nonces base64, long
        enough, and different.
        """
        client_nonce = base64.b64encode(b"\x01" * 16).decode()
        server_nonce = base64.b64encode(b"\x02" * 16).decode()
        self.refused(document(replace=(client_nonce, server_nonce)), "nonces are the same")
        self.refused(document(replace=(client_nonce, "!!")), "AAUTHDATA is not base64")
        self.refused(document(replace=(client_nonce, "AAAA")), "the secret or the nonce is missing")
        self.refused(document(replace=('value="APPSRV"', 'value="OTHER"')), "expected APPAUTH CLIENT and APPSRV")
        self.refused(
            document(replace=('"AAUTHTYPE" value="DIGEST"/><parm name="AAUTHSECRET" value="server', '"AAUTHTYPE" value="BASIC"/><parm name="AAUTHSECRET" value="server')),
            "must be DIGEST",
        )

    def test_provider(self) -> None:
        """
        DMClient must hold a provider named by PROVIDER-ID, with a poll schedule.
        """
        self.refused(document(replace=('"PROVIDER-ID" value="mdmd"', '"PROVIDER-ID" value="other"')), "DMClient/Provider")
        self.refused(document(replace=('<characteristic type="Poll">', '<characteristic type="Pull">')), "DMClient/Provider")


class RenewalDocumentTests(SynchronousTestCase):
    def renewal(self, certificate: x509.Certificate, provider_id: str = "mdmd") -> provisioning.Characteristic:
        return provisioning.parse_document(
            provisioning.renewal_document(
                root_der=der(AUTHORITY.certificate), client_der=der(certificate), store="User", provider_id=provider_id
            )
        )

    def test_accepted(self) -> None:
        """
        mdmd's renewal document gives the new certificate, for the new key.
        """
        enrollment = check(document())
        renewed = client(key=OTHER_KEY)
        self.assertEqual(check_renewal_document(self.renewal(renewed), DEVICE_ID, OTHER_KEY, enrollment), renewed)

    def test_refused(self) -> None:
        """
        A renewal for another key, another device, another provider or with
        no certificate in the enrollment's store is refused.
        """
        enrollment = check(document())
        for doc, key, reason in (
            (self.renewal(client(key=OTHER_KEY)), KEY, "not for the device's key"),
            (self.renewal(client(key=OTHER_KEY, device_id="X")), OTHER_KEY, "names"),
            (self.renewal(client(key=OTHER_KEY), provider_id="other"), OTHER_KEY, "another provider"),
            (document(), OTHER_KEY, "does not hold one new certificate"),
        ):
            with self.assertRaises(ProvisioningError) as caught:
                check_renewal_document(doc, DEVICE_ID, key, enrollment)
            self.assertIn(reason, str(caught.exception))


class AnswerTests(SynchronousTestCase):
    def test_document_from_answer(self) -> None:
        """
        The document is read from the RequestSecurityTokenResponse's BinarySecurityToken.
        """
        data = provisioning.renewal_document(
            root_der=der(AUTHORITY.certificate), client_der=der(CLIENT), store="User", provider_id="mdmd"
        )
        body = parse(token_response(data, "urn:uuid:1", "activity", 0.0)).find(f"{{{ns.SOAP12}}}Body")
        assert body is not None
        self.assertEqual(document_from_answer(body[0]), provisioning.parse_document(data))

    def test_no_token(self) -> None:
        """
        An answer without a BinarySecurityToken is refused.
        """
        with self.assertRaises(ProvisioningError):
            document_from_answer(parse(b"<answer/>"))
