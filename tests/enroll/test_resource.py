"""
Tests for the enrollment resources and service: emulated Windows devices and
Microsoft's sample messages over real TLS to an in-process server, and every
refusal answered with the right fault.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

from urllib.parse import urlencode

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import LogLevel

from mdmd.devices import records
from mdmd.enroll import devices, soap, users
from mdmd.enroll.policies import FederatedPolicy
from mdmd.enroll.provisioning import parse_document
from mdmd.enroll.throttle import GuessLimits
from mdmd.enroll.wstep import RSTRC_ACTION
from mdmd.pki import registry
from mdmd.pki.ca import CertificateAuthority, generate_rsa_key
from mdmd.store.runner import ConflictRetriesExhausted
from mdmd.testing.windows.csr import modern_csr, renewal_request
from mdmd.testing.windows.device import APPRU, EnrollmentFault, WindowsDevice
from mdmd.testing.windows.provisioning import check_enrollment_document
from mdmd.testing.windows.soap import (
    discover_message,
    get_policies_message,
    token_message,
    username_security,
)
from mdmd.xmlparser import parse

from ..logs import logged_events
from .helpers import KEY, OTHER_KEY, WEAK_KEY, EnrollmentServerTestCase, sample

SOAP = "application/soap+xml; charset=utf-8"


def _plain_csr() -> bytes:
    """
    A request without Microsoft's DeviceID extension.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plain")]))
        .sign(KEY, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.DER)


def _body(reply: Any) -> Any:
    body = soap.child(parse(reply.body), "Body")
    assert body is not None
    return body[0]


class EnrollmentTests(EnrollmentServerTestCase):
    async def test_full_enrollment(self) -> None:
        """
        A Windows 11 device enrolls: GET probe, Discover, GetPolicies, RST; its
        provisioning document passes the device's checks; its record holds the facts.
        """
        self.add_user()
        device = self.device()
        enrollment = await device.enroll()
        self.assertEqual(device.discovery.auth_policy, "OnPremise")  # type: ignore[union-attr]
        self.assertEqual(device.discovery.enrollment_version, "3.0")  # type: ignore[union-attr]
        self.assertEqual(device.discovery.policy_url, self.base_url + "/EnrollmentServer/Policy.svc")  # type: ignore[union-attr]
        self.assertEqual(device.min_key_length, 2048)
        self.assertEqual(enrollment.root, self.ca.ca_certificate)
        self.assertEqual(enrollment.dm_url, self.base_url + "/ManagementServer/MDM.svc")
        record = self.read(records.lookup_device, device.device_id)
        self.assertEqual((record.user, record.status, record.device_name), ("alice@example.com", "enrolled", device.device_name))
        self.assertEqual(record.cert_serial, enrollment.certificate.serial_number)
        self.assertEqual([v for n, v in record.context if n == "MAC"], list(device.mac_addresses))
        credentials = self.read(devices.dm_credentials, device.device_id)
        self.assertEqual(
            (credentials.client_name, credentials.client_secret, credentials.client_nonce),
            (device.client_auth.name, device.client_auth.secret, device.client_auth.nonce),
        )
        self.assertEqual(
            (credentials.server_secret, credentials.server_nonce),
            (device.server_auth.secret, device.server_auth.nonce),
        )

    async def test_legacy_request_and_device_scope(self) -> None:
        """
        An older client's request (PrintableString with ! and NUL, ISO SHA-1
        OID) enrolls; a device-scoped enrollment gets its certificate in My/System.
        """
        self.add_user()
        device = self.device(csr_shape="legacy", enrollment_type="Device", request_version="4.0")
        enrollment = await device.enroll()
        self.assertEqual(enrollment.store, "System")
        self.assertEqual(self.read(records.lookup_device, device.device_id).certificate_store, "System")

    async def test_nonces_differ_between_devices(self) -> None:
        """
        Two devices get different secrets and nonces.
        """
        self.add_user()
        first, second = self.device(), self.device(key=OTHER_KEY)
        await first.enroll()
        await second.enroll()
        self.assertNotEqual(first.client_auth.nonce, second.client_auth.nonce)
        self.assertNotEqual(first.server_auth.nonce, second.server_auth.nonce)
        self.assertNotEqual(first.client_auth.secret, second.client_auth.secret)

    async def test_probe_and_headers(self) -> None:
        """
        GET Discovery.svc answers 200 with an empty body; SOAP answers carry
        the SOAP content type and a Content-Length, never chunked.
        """
        device = self.device()
        probe = await device.request("GET", self.discovery_url)
        self.assertEqual((probe.code, probe.body, probe.length), (200, b"", 0))
        reply = await device.request("POST", self.discovery_url, discover_message(self.discovery_url, ""))
        self.assertEqual(reply.headers["content-type"], SOAP)
        self.assertEqual(reply.length, len(reply.body))
        self.assertNotIn("transfer-encoding", reply.headers)

    async def test_microsoft_samples(self) -> None:
        """
        Microsoft's Discover, GetPolicies and RequestSecurityToken samples, a
        real CSR inserted, are answered: RelatesTo echoes each MessageID, the
        padded password of the RST sample is accepted, the sample's DeviceID is enrolled.
        """
        self.add_user("user@contoso.com", "mypassword")
        device = self.device()
        policy_url = self.base_url + "/EnrollmentServer/Policy.svc"
        enroll_url = self.base_url + "/EnrollmentServer/Enrollment.svc"
        for url, message, relates_to in (
            (self.discovery_url, sample("discover-onpremise.xml"), "urn:uuid: 748132ec-a575-4329-b01b-6171a9cf8478"),
            (policy_url, sample("getpolicies-onpremise.xml"), "urn:uuid:72048B64-0F19-448F-8C2E-B4C661860AA0"),
            (enroll_url, sample("rst-onpremise.xml", modern_csr(KEY, "7BA748C8-703E-4DF2-A74A-92984117346A")),
             "urn:uuid:0d5a1441-5891-453b-becf-a2e5f6ea3749"),
        ):
            reply = await device.request("POST", url, message)
            self.assertEqual((reply.code, reply.headers["content-type"]), (200, SOAP), reply.body)
            header = soap.child(parse(reply.body), "Header")
            self.assertEqual(soap.text(soap.child(header, "RelatesTo")), relates_to)
        discover = _body(await device.request("POST", self.discovery_url, sample("discover-onpremise.xml")))
        self.assertEqual(soap.text(discover[0][1]), "3.0")  # EnrollmentVersion: the sample asks 3.0
        token = parse(reply.body).find(f".//{{{soap.WSSE}}}BinarySecurityToken")
        enrollment = check_enrollment_document(
            parse_document(base64.b64decode(token.text)), "7BA748C8-703E-4DF2-A74A-92984117346A", KEY,
            [self.ca.ca_certificate],
        )
        self.assertEqual(enrollment.provider_id, "mdmd")
        record = self.read(records.lookup_device, "7BA748C8-703E-4DF2-A74A-92984117346A")
        self.assertEqual((record.user, record.device_name, record.os_edition), ("user@contoso.com", "MY_WINDOWS_DEVICE", "4"))

    async def test_re_enrollment(self) -> None:
        """
        Enrolling again revokes the first certificate and keeps the record.
        """
        self.add_user()
        device = self.device()
        first = await device.enroll()
        again = self.device(device_id=device.device_id, key=OTHER_KEY)
        second = await again.enroll()
        self.assertEqual(self.read(registry.lookup, first.certificate.serial_number).status, "revoked")
        record = self.read(records.lookup_device, device.device_id)
        self.assertEqual((record.enrollment_count, record.cert_serial), (2, second.certificate.serial_number))

    async def test_domain_user(self) -> None:
        """
        A domain\\user name is accepted when the store knows the user without the domain.
        """
        self.add_user("bob", "pw")
        await self.device(user="CONTOSO\\bob", password="pw").enroll()


class FaultTests(EnrollmentServerTestCase):
    async def fault(
        self, url: str, message: bytes, device: WindowsDevice | None = None, code: int = 500, **kw: Any
    ) -> EnrollmentFault:
        device = device or self.device()
        try:
            await device.soap(url, message, **kw)
        except EnrollmentFault as e:
            self.assertEqual(e.code, code)
            root = parse(e.body)
            header = soap.child(root, "Header")
            self.assertTrue(soap.text(soap.child(header, "Action")))
            return e
        self.fail("no fault")

    def rst(self, csr: bytes, user: str = "alice@example.com", password: str = "S3cret!", device_id: str = "DEV-1") -> bytes:
        url = self.base_url + "/EnrollmentServer/Enrollment.svc"
        return token_message(url, username_security(user, password), csr, [("DeviceID", device_id)])

    @property
    def enroll_url(self) -> str:
        return self.base_url + "/EnrollmentServer/Enrollment.svc"

    async def test_wrong_password(self) -> None:
        """
        A wrong password is an Authentication fault (on GetPolicies and RST), naming the user.
        """
        self.add_user()
        device = self.device(password="wrong")
        await device.discover()
        with self.assertRaises(EnrollmentFault) as caught:
            await device.get_policies()
        self.assertEqual((caught.exception.code, caught.exception.subcode), (500, "s:Authentication"))
        self.assertIn("alice@example.com", caught.exception.reason)
        fault = await self.fault(self.enroll_url, self.rst(modern_csr(KEY, "DEV-1"), password="nope"))
        self.assertEqual(fault.subcode, "s:Authentication")
        self.assertIsNone(self.read(records.lookup_device, "DEV-1"))

    async def test_disabled_user(self) -> None:
        """
        A disabled user's right password is an Authorization fault.
        """
        self.add_user(enabled=False)
        fault = await self.fault(self.enroll_url, self.rst(modern_csr(KEY, "DEV-1")))
        self.assertEqual(fault.subcode, "s:Authorization")
        self.assertIn("disabled", fault.reason)

    async def test_certificate_request_faults(self) -> None:
        """
        A request with a wrong signature, a 1024-bit key, or garbage base64 is
        a CertificateRequest fault; nothing is recorded.
        """
        self.add_user()
        genuine = modern_csr(KEY, "DEV-1")
        forged = genuine[:-256] + modern_csr(OTHER_KEY, "DEV-1")[-256:]
        for message, expected in (
            (self.rst(forged), "signature does not verify"),
            (self.rst(modern_csr(WEAK_KEY, "DEV-1")), "1024 bits; at least 2048"),
            (self.rst(genuine).replace(base64.b64encode(genuine)[:64], b"!!notbase64!!"), "not base64"),
            (self.rst(b"\x30\x03\x02\x01\x00"), "not a PKCS#10"),
        ):
            fault = await self.fault(self.enroll_url, message)
            self.assertEqual(fault.subcode, "s:CertificateRequest", fault.reason)
            self.assertIn(expected, fault.reason)
        self.assertEqual(self.read(registry.list_certificates), [])
        self.assertEqual(self.read(records.list_devices), [])

    async def test_message_format_faults(self) -> None:
        """
        Malformed XML, a Discover without RequestVersion, a wrong action and a
        missing DeviceID are MessageFormat faults; RelatesTo echoes the MessageID when known.
        """
        self.add_user()
        bad_discover = discover_message(self.discovery_url, "x", message_id="urn:uuid:m-1").replace(
            b"<RequestVersion>9.0</RequestVersion>", b""
        )
        for url, message, expected in (
            (self.discovery_url, b"<s:Envelope><unclosed>", "not well-formed"),
            (self.discovery_url, bad_discover, "no RequestVersion"),
            (self.enroll_url, discover_message(self.enroll_url, "x"), "does not handle action"),
            (self.enroll_url, self.rst(_plain_csr()).replace(b'Name="DeviceID"', b'Name="Other"'), "no DeviceID"),
            (self.enroll_url, self.rst(_plain_csr(), device_id="../etc"), "is not usable"),
        ):
            fault = await self.fault(url, message)
            self.assertEqual(fault.subcode, "s:MessageFormat", fault.reason)
            self.assertIn(expected, fault.reason)
        fault = await self.fault(self.discovery_url, bad_discover)
        self.assertEqual(soap.text(soap.child(soap.child(parse(fault.body), "Header"), "RelatesTo")), "urn:uuid:m-1")

    async def test_device_id_from_request_extension(self) -> None:
        """
        Without a DeviceID context item, the DeviceID in the request's Microsoft extension is used.
        """
        self.add_user()
        message = self.rst(modern_csr(KEY, "FROM-CSR")).replace(b'Name="DeviceID"', b'Name="Other"')
        device = self.device()
        await device.soap(self.enroll_url, message)
        self.assertIsNotNone(self.read(records.lookup_device, "FROM-CSR"))

    async def test_other_users_device(self) -> None:
        """
        A user cannot re-enroll a device another user enrolled: Authorization fault.
        """
        self.add_user()
        self.add_user("mallory", "pw")
        device = self.device()
        await device.enroll()
        fault = await self.fault(self.enroll_url, self.rst(modern_csr(KEY, device.device_id), "mallory", "pw", device.device_id))
        self.assertEqual(fault.subcode, "s:Authorization")
        self.assertIn("enrolled by alice@example.com", fault.reason)

    async def test_user_changes_between_policy_and_enrollment(self) -> None:
        """
        The user is re-checked in the enrollment's own transaction: disabled
        after GetPolicies, the RST is an Authorization fault; with the password
        changed, the remembered check is stale and the old password fails.
        """
        self.add_user()
        device = self.device()
        await device.discover()
        await device.get_policies()
        self.store.store.run(users.set_enabled, "alice@example.com", False)  # type: ignore[union-attr]
        with self.assertRaises(EnrollmentFault) as caught:
            await device.request_certificate()
        self.assertEqual(caught.exception.subcode, "s:Authorization")
        self.store.store.run(users.set_enabled, "alice@example.com", True)  # type: ignore[union-attr]
        self.store.store.run(users.set_password, "alice@example.com", users.hash_password("n3w"))  # type: ignore[union-attr]
        with self.assertRaises(EnrollmentFault) as caught:
            await device.request_certificate()
        self.assertEqual(caught.exception.subcode, "s:Authentication")
        self.assertEqual(self.read(registry.list_certificates), [])

    async def test_internal_failures(self) -> None:
        """
        Our own failures are InternalServiceFault (a bug, HTTP 500, logged
        with its traceback) or EnrollmentServer (the store gave up: HTTP 503,
        a warning without traceback), with a trace id and no details; nothing
        is left behind.
        """
        self.add_user()

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("secret detail")

        self.patch(devices, "enroll", broken)
        fault = await self.fault(self.enroll_url, self.rst(modern_csr(KEY, "DEV-1")))
        self.assertEqual(fault.subcode, "a:InternalServiceFault")
        self.assertNotIn(b"secret detail", fault.body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

        def busy(*args: Any, **kwargs: Any) -> Any:
            raise ConflictRetriesExhausted("enroll conflicted 6 times")

        self.patch(devices, "enroll", busy)
        events = logged_events(self)
        fault = await self.fault(self.enroll_url, self.rst(modern_csr(KEY, "DEV-1")), code=503)
        self.assertEqual(fault.subcode, "s:EnrollmentServer")
        self.assertNotIn(b"conflicted", fault.body)
        self.assertEqual(len(self.flushLoggedErrors(ConflictRetriesExhausted)), 0)
        (warning,) = [e for e in events if e.get("subcode") == "s:EnrollmentServer"]
        self.assertEqual((warning["log_level"], warning.get("log_failure")), (LogLevel.warn, None))
        self.assertEqual(self.read(registry.list_certificates), [])
        self.assertEqual(soap.text(soap.child(soap.child(parse(fault.body), "Header"), "Action")), RSTRC_ACTION)

    async def test_content_type_checked(self) -> None:
        """
        A SOAP endpoint takes application/soap+xml or SOAP 1.1's text/xml;
        another type is a MessageFormat fault.
        """
        device = self.device()
        message = discover_message(self.discovery_url, "x@example.com")
        for content_type, code in (("application/x-www-form-urlencoded", 500), ("text/plain", 500), ("text/xml; charset=utf-8", 200)):
            reply = await device.request("POST", self.discovery_url, message, content_type=content_type)
            self.assertEqual(reply.code, code, content_type)
        reply = await device.request("POST", self.discovery_url, message, content_type="text/plain")
        self.assertIn(b"s:MessageFormat", reply.body)
        self.assertIn(b"application/soap+xml", reply.body)

    async def test_message_id_not_echoed_unbounded(self) -> None:
        """
        A 900 KB MessageID is a MessageFormat fault without RelatesTo, and
        the answer stays small.
        """
        message = discover_message(self.discovery_url, "x", message_id="urn:" + "m" * 900_000)
        fault = await self.fault(self.discovery_url, message)
        self.assertEqual(fault.subcode, "s:MessageFormat")
        self.assertIsNone(soap.child(soap.child(parse(fault.body), "Header"), "RelatesTo"))
        self.assertLess(len(fault.body), 4096)

    async def test_request_version_not_a_number_to_echo(self) -> None:
        """
        RequestVersion 1e-999999 (a number, not a version) is a MessageFormat
        fault in a small answer, where it was once answered with a 1 MB version.
        """
        fault = await self.fault(self.discovery_url, discover_message(self.discovery_url, "x", request_version="1e-999999"))
        self.assertEqual(fault.subcode, "s:MessageFormat")
        self.assertIn("not a version number", fault.reason)
        self.assertLess(len(fault.body), 4096)

    async def test_wide_request_refused(self) -> None:
        """
        A request of 100,000 sibling elements is refused as too large before any lookup.
        """
        message = discover_message(self.discovery_url, "x").replace(b"<EmailAddress>", b"<x/>" * 100_000 + b"<EmailAddress>")
        fault = await self.fault(self.discovery_url, message)
        self.assertIn("more than", fault.reason)


class RenewalTests(EnrollmentServerTestCase):
    config = """
        [ca]
        client_cert_lifetime_days = 30
        [enrollment]
        renewal_period_days = 30
        renewal_retry_days = 2
    """

    async def enrolled(self, **kwargs: Any) -> WindowsDevice:
        self.add_user()
        device = self.device(**kwargs)
        await device.enroll()
        return device

    async def test_renewal(self) -> None:
        """
        ROBO renewal over TLS with the current certificate: a new certificate
        for the new key, the old one revoked, the DM credentials kept.
        """
        device = await self.enrolled()
        old = device.certificate
        credentials = self.read(devices.dm_credentials, device.device_id)
        new = await device.renew(OTHER_KEY)
        self.assertNotEqual(new.serial_number, old.serial_number)  # type: ignore[union-attr]
        self.assertEqual(self.read(registry.lookup, old.serial_number).revocation_reason, "superseded")  # type: ignore[union-attr]
        record = self.read(records.lookup_device, device.device_id)
        self.assertEqual(record.cert_serial, new.serial_number)
        self.assertIsNotNone(record.renewed_at)
        self.assertEqual(self.read(devices.dm_credentials, device.device_id), credentials)
        again = await device.renew(KEY, base64_content=True)  # user-initiated form, with the renewed certificate
        self.assertNotEqual(again.serial_number, new.serial_number)

    async def test_renewal_sample(self) -> None:
        """
        Microsoft's renewal sample, with a real PKCS#7 inserted, is answered over mutual TLS.
        """
        device = await self.enrolled()
        signed = renewal_request(device.certificate, device.key, modern_csr(OTHER_KEY, device.device_id))  # type: ignore[arg-type]
        payload = await device.soap(self.base_url + "/EnrollmentServer/Enrollment.svc", sample("rst-renew.xml", signed), client_certificate=True)
        self.assertEqual(soap.local(payload), "RequestSecurityTokenResponseCollection")

    async def test_refusals(self) -> None:
        """
        No client certificate: Authentication. Signed by another certificate:
        CertificateRequest. A claimed DeviceID change: Authorization. A removed
        device (revoked certificate): Authentication.
        """
        device = await self.enrolled()
        url = self.base_url + "/EnrollmentServer/Enrollment.svc"
        signed = renewal_request(device.certificate, device.key, modern_csr(OTHER_KEY, device.device_id))  # type: ignore[arg-type]
        authority = CertificateAuthority.create(generate_rsa_key(2048), "x", "x", datetime.timedelta(days=1),
                                                datetime.datetime.now(datetime.timezone.utc))
        stranger = authority.issue_client(OTHER_KEY.public_key(), device.device_id, datetime.timedelta(days=1),
                                          datetime.datetime.now(datetime.timezone.utc))
        for message, kw, subcode, expected in (
            (token_message(url, "", signed, [], renew=True), {}, "s:Authentication", "current MDM certificate"),
            (token_message(url, "", renewal_request(stranger, OTHER_KEY, modern_csr(OTHER_KEY, "X")), [], renew=True),
             {"client_certificate": True}, "s:CertificateRequest", "not signed with the certificate"),
            (token_message(url, "", signed, [("DeviceID", "SOMEONE-ELSE")], renew=True),
             {"client_certificate": True}, "s:Authorization", "claims SOMEONE-ELSE"),
        ):
            try:
                await device.soap(url, message, **kw)
            except EnrollmentFault as e:
                self.assertEqual((e.subcode, e.code), (subcode, 500), e.reason)
                self.assertIn(expected, e.reason)
            else:
                self.fail(f"no fault for {expected}")
        self.store.store.run(records.remove, device.device_id, reactor.seconds())  # type: ignore[union-attr]
        with self.assertRaises(EnrollmentFault) as caught:
            await device.renew(OTHER_KEY)
        self.assertEqual(caught.exception.subcode, "s:Authentication")
        self.assertIn("revoked", caught.exception.reason)


    async def test_expired_certificate(self) -> None:
        """
        An expired certificate cannot renew: the TLS handshake refuses it, so
        no request reaches the service.
        """
        device = await self.enrolled()
        past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=3)
        expired = self.ca.authority.issue_client(  # type: ignore[union-attr]
            device.key.public_key(), device.device_id, datetime.timedelta(days=1), past  # type: ignore[union-attr]
        )

        def swap(root: Any) -> None:
            registry.record_issued(root, expired, device.device_id, past.timestamp())
            root["devices"][device.device_id].cert_serial = expired.serial_number

        self.store.store.run(swap)  # type: ignore[union-attr]
        device.certificate = expired
        device._agents.pop(True, None)
        with self.assertRaises(Exception) as caught:
            await device.renew(OTHER_KEY)
        self.assertNotIsInstance(caught.exception, EnrollmentFault)
        self.assertEqual(self.read(records.lookup_device, device.device_id).cert_serial, expired.serial_number)


class EarlyRenewalTests(EnrollmentServerTestCase):
    async def test_not_yet_due(self) -> None:
        """
        A certificate outside its renewal period (60 days before a 365-day
        expiry) is NotEligibleToRenew.
        """
        self.add_user()
        device = self.device()
        await device.enroll()
        with self.assertRaises(EnrollmentFault) as caught:
            await device.renew(OTHER_KEY)
        self.assertEqual((caught.exception.subcode, caught.exception.error_type), ("s:CertificateRequest", "NotEligibleToRenew"))
        self.assertIn("not due for renewal", caught.exception.reason)


class FederatedTests(EnrollmentServerTestCase):
    config = """
        [enrollment]
        auth_policy = Federated
        display_name = Contoso MDM
    """

    async def test_federated_enrollment(self) -> None:
        """
        Discovery points at our sign-in page; the device signs in there, gets
        the token back through appru, and enrolls with it.
        """
        self.add_user()
        device = self.device()
        enrollment = await device.enroll()
        self.assertEqual(device.discovery.auth_policy, "Federated")  # type: ignore[union-attr]
        self.assertEqual(device.discovery.authentication_url, self.base_url + "/EnrollmentServer/Authenticate")  # type: ignore[union-attr]
        self.assertTrue(device.user_token.startswith(b"mdmd1."))  # type: ignore[union-attr]
        record = self.read(records.lookup_device, device.device_id)
        self.assertEqual((record.user, record.auth_policy), ("alice@example.com", "Federated"))
        self.assertEqual(enrollment.document.get("APPLICATION").parm("NAME"), "Contoso MDM")  # type: ignore[union-attr]

    async def test_sign_in_refusals(self) -> None:
        """
        A wrong password shows the form again with a message; a foreign appru is refused with 400.
        """
        self.add_user()
        device = self.device(password="wrong")
        await device.discover()
        with self.assertRaises(EnrollmentFault) as caught:
            await device.sign_in()
        self.assertIn(b"incorrect", caught.exception.body)
        url = self.base_url + "/EnrollmentServer/Authenticate?appru=https%3A%2F%2Fevil.example%2F"
        reply = await device.request("GET", url)
        self.assertEqual(reply.code, 400)

    async def test_bad_tokens(self) -> None:
        """
        GetPolicies without a token is InvalidSecurity; with a forged token, Authentication.
        """
        self.add_user()
        device = self.device()
        await device.discover()
        url = self.base_url + "/EnrollmentServer/Policy.svc"
        with self.assertRaises(EnrollmentFault) as caught:
            await device.soap(url, get_policies_message(url, ""))
        self.assertEqual(caught.exception.subcode, "a:InvalidSecurity")
        device.user_token = b"mdmd1.eyJzdWIiOiJhbGljZSJ9.AAAA"
        with self.assertRaises(EnrollmentFault) as caught:
            await device.get_policies()
        self.assertEqual(caught.exception.subcode, "s:Authentication")

    async def test_user_disabled_after_sign_in(self) -> None:
        """
        A valid token of a user disabled since signing in is an Authorization fault.
        """
        self.add_user()
        device = self.device()
        await device.discover()
        await device.sign_in()
        self.store.store.run(users.set_enabled, "alice@example.com", False)  # type: ignore[union-attr]
        with self.assertRaises(EnrollmentFault) as caught:
            await device.get_policies()
        self.assertEqual(caught.exception.subcode, "s:Authorization")

    async def test_key_file(self) -> None:
        """
        The token key is kept 0600 in the state directory.
        """
        import os

        assert isinstance(self.service.policy, FederatedPolicy)
        self.assertEqual(os.stat(self.service.policy.key_path).st_mode & 0o777, 0o600)


class FederatedBoundsTests(EnrollmentServerTestCase):
    config = """
        [enrollment]
        auth_policy = Federated
    """
    password_limits = users.PasswordLimits(
        guesses=GuessLimits(user_failures=1, source_failures=100, max_delay=1.0, lockout=60.0)
    )

    @property
    def sign_in_url(self) -> str:
        return self.base_url + "/EnrollmentServer/Authenticate"

    async def test_form_read_by_the_page(self) -> None:
        """
        The sign-in page reads its own url-encoded form (twisted.web parses
        none): one larger than a sign-in needs is refused with 413, a
        multipart body is no form (so appru is missing: 400).
        """
        device = self.device()
        form = "application/x-www-form-urlencoded"
        big = urlencode({"appru": APPRU, "username": "a", "password": "p" * 9000}).encode()
        reply = await device.request("POST", self.sign_in_url, big, content_type=form)
        self.assertEqual(reply.code, 413)
        many = "&".join(f"f{n}=1" for n in range(20)).encode()
        self.assertEqual((await device.request("POST", self.sign_in_url, many, content_type=form)).code, 413)
        multipart = (
            b'--b\r\nContent-Disposition: form-data; name="appru"\r\n\r\n'
            + APPRU.encode()
            + b"\r\n--b--\r\n"
        )
        reply = await device.request("POST", self.sign_in_url, multipart, content_type="multipart/form-data; boundary=b")
        self.assertEqual(reply.code, 400)

    async def test_guessing_shown_on_the_page(self) -> None:
        """
        Once a user name is being guessed, the page says to try later (the
        right password is not checked meanwhile), and the wrong-password
        message is kept for wrong passwords.
        """
        self.add_user()
        wrong, right = self.device(password="wrong"), self.device()
        for device in (wrong, right):
            await device.discover()
        with self.assertRaises(EnrollmentFault) as caught:
            await wrong.sign_in()
        self.assertIn(b"incorrect", caught.exception.body)
        guessing = Deferred.fromCoroutine(wrong.sign_in())
        with self.assertRaises(EnrollmentFault) as caught:
            await right.sign_in()
        self.assertIn(b"Too many failed sign-ins", caught.exception.body)
        with self.assertRaises(EnrollmentFault) as caught:
            await guessing
        self.assertIn(b"incorrect", caught.exception.body)


class SignInUnavailableTests(EnrollmentServerTestCase):
    async def test_not_federated(self) -> None:
        """
        With the OnPremise policy the sign-in page answers 404.
        """
        reply = await self.device().request("GET", self.base_url + "/EnrollmentServer/Authenticate?appru=ms-app://x")
        self.assertEqual(reply.code, 404)


class CertificatePolicyTests(EnrollmentServerTestCase):
    config = """
        [enrollment]
        auth_policy = Certificate
    """

    async def test_certificate_enrollment(self) -> None:
        """
        A device holding a provisioning certificate from our CA enrolls; its user is the certificate's subject.
        """
        issued = await self.ca.issue(OTHER_KEY.public_key(), "bulk-enrollment")
        device = self.device(provisioning_certificate=(issued.certificate, OTHER_KEY))
        await device.enroll()
        record = self.read(records.lookup_device, device.device_id)
        self.assertEqual((record.user, record.auth_policy), ("certificate:CN=bulk-enrollment", "Certificate"))
        self.assertIsNone(device.enrollment.document.get("DMClient", "Provider", "mdmd").parm("UPN"))  # type: ignore[union-attr]

    async def test_untrusted_or_revoked(self) -> None:
        """
        A certificate from a foreign CA, or one we revoked, is an Authentication fault.
        """
        now = datetime.datetime.now(datetime.timezone.utc)
        foreign = CertificateAuthority.create(generate_rsa_key(2048), "foreign", "x", datetime.timedelta(days=1), now)
        stranger = foreign.issue_client(OTHER_KEY.public_key(), "bulk", datetime.timedelta(days=1), now)
        device = self.device(provisioning_certificate=(stranger, OTHER_KEY))
        with self.assertRaises(EnrollmentFault) as caught:
            await device.enroll()
        self.assertEqual(caught.exception.subcode, "s:Authentication")
        self.assertIn("not trusted", caught.exception.reason)
        issued = await self.ca.issue(OTHER_KEY.public_key(), "bulk")
        await self.ca.revoke(issued.certificate.serial_number)
        device = self.device(provisioning_certificate=(issued.certificate, OTHER_KEY))
        with self.assertRaises(EnrollmentFault) as caught:
            await device.enroll()
        self.assertIn("revoked", caught.exception.reason)

