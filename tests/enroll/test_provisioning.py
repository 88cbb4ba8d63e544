"""
Tests for L{mdmd.enroll.provisioning}: the provisioning document a device
relies on, read back with the device-side parser and the emulator's checks.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import itertools

from cryptography.hazmat.primitives import serialization
from twisted.trial.unittest import SynchronousTestCase

from mdmd.config import PollSchedule
from mdmd.enroll import provisioning
from mdmd.pki.ca import CertificateAuthority, generate_rsa_key
from mdmd.testing.windows.provisioning import ProvisioningError, check_enrollment_document

from .helpers import KEY

NOW = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)
AUTHORITY = CertificateAuthority.create(generate_rsa_key(2048), "root", "o", datetime.timedelta(days=30), NOW)
DEVICE_ID = "7BA748C8-703E-4DF2-A74A-92984117346A"
CLIENT = AUTHORITY.issue_client(KEY.public_key(), DEVICE_ID, datetime.timedelta(days=10), NOW)
ROOT_DER = AUTHORITY.certificate.public_bytes(serialization.Encoding.DER)
CLIENT_DER = CLIENT.public_bytes(serialization.Encoding.DER)
ACCOUNT = provisioning.DMAccount(
    provider_id="mdmd",
    name="Contoso & Co <MDM>",
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


def _counter() -> object:
    numbers = itertools.count(1)
    return lambda n: bytes([next(numbers)]) * n


def credentials() -> provisioning.DMCredentials:
    return provisioning.DMCredentials.generate(DEVICE_ID, "mdmd", "DIGEST", _counter())  # type: ignore[arg-type]


def document(
    store: str = "User", upn: str = "alice@example.com", account: provisioning.DMAccount = ACCOUNT
) -> provisioning.Characteristic:
    return provisioning.parse_document(
        provisioning.enrollment_document(
            root_der=ROOT_DER,
            client_der=CLIENT_DER,
            store=store,
            device_id=DEVICE_ID,
            device_name="DESKTOP-1",
            upn=upn,
            credentials=credentials(),
            account=account,
        )
    )


class EnrollmentDocumentTests(SynchronousTestCase):
    def test_device_checks_pass(self) -> None:
        """
        The emulator's device-side checks accept it: root, client certificate,
        search criteria, both APPAUTH with distinct nonces, DMClient provider.
        """
        enrollment = check_enrollment_document(document(), DEVICE_ID, KEY, [AUTHORITY.certificate])
        self.assertEqual((enrollment.dm_url, enrollment.provider_id, enrollment.store), (ACCOUNT.dm_url, "mdmd", "User"))
        self.assertEqual(enrollment.client_auth.name, DEVICE_ID)
        self.assertEqual(enrollment.client_auth.nonce, credentials().client_nonce)
        self.assertEqual(enrollment.server_auth.nonce, credentials().server_nonce)

    def test_structure(self) -> None:
        """
        Exactly three top-level characteristics; certificates under their
        upper-case SHA-1 thumbprints; PrivateKeyContainer beside the client certificate.
        """
        doc = document()
        self.assertEqual([c.type for c in doc.children], ["CertificateStore", "APPLICATION", "DMClient"])
        root = doc.get("CertificateStore", "Root", "System", hashlib.sha1(ROOT_DER).hexdigest().upper())
        self.assertEqual(base64.b64decode(root.parm("EncodedCertificate")), ROOT_DER)  # type: ignore[union-attr, arg-type]
        user = doc.get("CertificateStore", "My", "User")
        self.assertEqual(
            [c.type for c in user.children],  # type: ignore[union-attr]
            [hashlib.sha1(CLIENT_DER).hexdigest().upper(), "PrivateKeyContainer"],
        )
        renew = doc.get("CertificateStore", "My", "WSTEP", "Renew")
        self.assertEqual(
            renew.parms,  # type: ignore[union-attr]
            (("ROBOSupport", "true", "boolean"), ("RenewPeriod", "60", "integer"), ("RetryInterval", "4", "integer")),
        )

    def test_application(self) -> None:
        """
        w7 APPLICATION: upper-case names in Microsoft's order, the DM address,
        the escaped display name, search criteria with %-escapes, CLIENT DIGEST
        and APPSRV with name, secret and base64 nonce.
        """
        application = document().get("APPLICATION")
        self.assertEqual(
            [name for name, _, _ in application.parms],  # type: ignore[union-attr]
            ["APPID", "PROVIDER-ID", "NAME", "ADDR", "CONNRETRYFREQ", "INITIALBACKOFFTIME", "MAXBACKOFFTIME",
             "BACKCOMPATRETRYDISABLED", "DEFAULTENCODING", "SSLCLIENTCERTSEARCHCRITERIA"],
        )
        self.assertEqual(application.parm("NAME"), "Contoso & Co <MDM>")  # type: ignore[union-attr]
        self.assertEqual(application.parm("BACKCOMPATRETRYDISABLED"), "")  # type: ignore[union-attr]
        self.assertEqual(
            application.parm("SSLCLIENTCERTSEARCHCRITERIA"),  # type: ignore[union-attr]
            f"Subject=CN%3D{DEVICE_ID}&Stores=My%5CUser",
        )
        client, appsrv = application.all("APPAUTH")  # type: ignore[union-attr]
        creds = credentials()
        self.assertEqual(
            client.parms,
            (("AAUTHLEVEL", "CLIENT", None), ("AAUTHTYPE", "DIGEST", None),
             ("AAUTHSECRET", creds.server_secret, None),
             ("AAUTHDATA", base64.b64encode(creds.server_nonce).decode(), None)),
        )
        self.assertEqual(appsrv.parm("AAUTHNAME"), DEVICE_ID)
        self.assertEqual(base64.b64decode(appsrv.parm("AAUTHDATA")), creds.client_nonce)  # type: ignore[arg-type]

    def test_dmclient(self) -> None:
        """
        DMClient/Provider/<PROVIDER-ID>: EntDMID, the device name, the UPN and the poll schedule.
        """
        provider = document().get("DMClient", "Provider", "mdmd")
        self.assertEqual(provider.parm("EntDMID"), DEVICE_ID)  # type: ignore[union-attr]
        self.assertEqual(provider.parm("UPN"), "alice@example.com")  # type: ignore[union-attr]
        poll = {name: (value, kind) for name, value, kind in provider.get("Poll").parms}  # type: ignore[union-attr]
        self.assertEqual(
            poll,
            {
                "NumberOfFirstRetries": ("5", "integer"),
                "IntervalForFirstSetOfRetries": ("3", "integer"),
                "NumberOfSecondRetries": ("8", "integer"),
                "IntervalForSecondSetOfRetries": ("15", "integer"),
                "NumberOfRemainingScheduledRetries": ("0", "integer"),
                "IntervalForRemainingScheduledRetries": ("480", "integer"),
                "PollOnLogin": ("true", "boolean"),
            },
        )
        self.assertIsNone(document(upn="").get("DMClient", "Provider", "mdmd").parm("UPN"))  # type: ignore[union-attr]

    def test_push_pfn(self) -> None:
        """
        With a push PFN, DMClient/Provider/<PROVIDER-ID>/Push sets it (a
        string), after the poll schedule; the device's checks still pass.
        Without one there is no Push characteristic.
        """
        from dataclasses import replace

        account = replace(ACCOUNT, push_pfn="Contoso.MDMPush_8wekyb3d8bbwe")
        provider = document(account=account).get("DMClient", "Provider", "mdmd")
        assert provider is not None
        self.assertEqual([c.type for c in provider.children], ["Poll", "Push"])
        self.assertEqual(provider.get("Push").parms, (("PFN", "Contoso.MDMPush_8wekyb3d8bbwe", "string"),))  # type: ignore[union-attr]
        check_enrollment_document(document(account=account), DEVICE_ID, KEY, [AUTHORITY.certificate])
        self.assertIsNone(document().get("DMClient", "Provider", "mdmd", "Push"))

    def test_device_store(self) -> None:
        """
        A device-scoped enrollment keeps its certificate in My/System and says so in the criteria.
        """
        self.assertEqual(provisioning.certificate_store("Device"), "System")
        self.assertEqual(provisioning.certificate_store("Full"), "User")
        self.assertEqual(provisioning.certificate_store(""), "User")
        enrollment = check_enrollment_document(document("System"), DEVICE_ID, KEY, [AUTHORITY.certificate])
        self.assertEqual(enrollment.store, "System")
        self.assertTrue(document("System").get("APPLICATION").parm("SSLCLIENTCERTSEARCHCRITERIA").endswith("My%5CSystem"))  # type: ignore[union-attr]

    def test_search_criteria_escaping(self) -> None:
        """
        Spaces become %20 (never +), and reserved characters are escaped.
        """
        self.assertEqual(provisioning.search_criteria("CN=a b+c,O=x", "User"), "Subject=CN%3Da%20b%2Bc%2CO%3Dx&Stores=My%5CUser")

    def test_checks_catch_mistakes(self) -> None:
        """
        The device-side checks refuse a foreign root and someone else's certificate.
        """
        other = CertificateAuthority.create(generate_rsa_key(2048), "other", "o", datetime.timedelta(days=1), NOW)
        with self.assertRaises(ProvisioningError):
            check_enrollment_document(document(), DEVICE_ID, KEY, [other.certificate])
        with self.assertRaises(ProvisioningError):
            check_enrollment_document(document(), "ANOTHER-DEVICE", KEY, [AUTHORITY.certificate])

    def test_fresh_credentials(self) -> None:
        """
        Generated credentials use the random source for two secrets and two 16-byte nonces.
        """
        creds = provisioning.DMCredentials.generate("d", "s", "BASIC", _counter())  # type: ignore[arg-type]
        self.assertEqual((len(creds.client_nonce), len(creds.server_nonce)), (16, 16))
        self.assertNotEqual(creds.client_nonce, creds.server_nonce)
        self.assertNotEqual(creds.client_secret, creds.server_secret)
        self.assertEqual(creds.client_auth_type, "BASIC")


class RenewalDocumentTests(SynchronousTestCase):
    def test_renewal_document(self) -> None:
        """
        The renewal answer holds the root, the new certificate with its
        PrivateKeyContainer, and APPLICATION/PROVIDER-ID only (Microsoft's sample).
        """
        doc = provisioning.parse_document(
            provisioning.renewal_document(root_der=ROOT_DER, client_der=CLIENT_DER, store="System", provider_id="mdmd")
        )
        self.assertEqual([c.type for c in doc.children], ["CertificateStore", "APPLICATION"])
        certificate = doc.get("CertificateStore", "My", "System", hashlib.sha1(CLIENT_DER).hexdigest().upper())
        self.assertIsNotNone(certificate.get("PrivateKeyContainer"))  # type: ignore[union-attr]
        self.assertEqual(doc.get("APPLICATION").parms, (("PROVIDER-ID", "mdmd", None),))  # type: ignore[union-attr]


ENTERPRISE = CertificateAuthority.create(generate_rsa_key(2048), "enterprise root", "o", datetime.timedelta(days=30), NOW)
ENTERPRISE_DER = ENTERPRISE.certificate.public_bytes(serialization.Encoding.DER)


class ChainRootTests(SynchronousTestCase):
    """
    With an operator-supplied server certificate the device must trust its chain's
    root too (issue 12, seed 000): it goes in Root/System after our CA.
    """

    def test_enrollment_document(self) -> None:
        """
        Both roots are in Root/System, each named by its thumbprint, ours first; the
        device's checks pass and it keeps both.
        """
        data = provisioning.enrollment_document(
            root_der=ROOT_DER,
            client_der=CLIENT_DER,
            store="User",
            device_id=DEVICE_ID,
            device_name="DESKTOP-1",
            upn="alice@example.com",
            credentials=credentials(),
            account=ACCOUNT,
            extra_roots=(ENTERPRISE_DER,),
        )
        doc = provisioning.parse_document(data)
        roots = doc.get("CertificateStore", "Root", "System")
        assert roots is not None
        self.assertEqual(
            [(c.type, base64.b64decode(c.parm("EncodedCertificate") or "")) for c in roots.children],
            [(hashlib.sha1(der).hexdigest().upper(), der) for der in (ROOT_DER, ENTERPRISE_DER)],
        )
        enrollment = check_enrollment_document(doc, DEVICE_ID, KEY, [AUTHORITY.certificate, ENTERPRISE.certificate])
        self.assertEqual((enrollment.root, enrollment.roots), (AUTHORITY.certificate, (AUTHORITY.certificate, ENTERPRISE.certificate)))
        with self.assertRaises(ProvisioningError):
            check_enrollment_document(doc, DEVICE_ID, KEY, [AUTHORITY.certificate])

    def test_renewal_document(self) -> None:
        """
        The renewal's document carries the same roots.
        """
        data = provisioning.renewal_document(
            root_der=ROOT_DER, client_der=CLIENT_DER, store="User", provider_id="mdmd", extra_roots=(ENTERPRISE_DER,)
        )
        roots = provisioning.parse_document(data).get("CertificateStore", "Root", "System")
        assert roots is not None
        self.assertEqual(len(list(roots.children)), 2)
