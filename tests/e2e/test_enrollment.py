"""
End-to-end enrollment: the real daemon (twistd mdmd) as a subprocess, an
emulated Windows device enrolling and renewing over TLS, and mdmctl operating it.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography import x509
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from mdmd.pki.ca import serial_hex
from mdmd.testing.daemon import DaemonProcess
from mdmd.testing.windows.device import EnrollmentFault, WindowsDevice


class EnrollmentEndToEndTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        # a one-day certificate that may be renewed at once, so renewal runs now
        self.daemon = DaemonProcess(
            config="""
                [ca]
                client_cert_lifetime_days = 1
                [enrollment]
                renewal_period_days = 1
                renewal_retry_days = 1
                display_name = Contoso MDM
            """
        )
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()
        self.root = self.daemon.ca_certificate()

    def mdmctl(self, *args: str, stdin: str = "") -> Any:
        return deferToThread(self.daemon.mdmctl, *args, stdin=stdin)

    async def mdmctl_json(self, *args: str) -> Any:
        result = await self.mdmctl(*args, "--json")
        self.assertEqual(result.returncode, 0, result.stderr)
        return json.loads(result.stdout)

    async def test_enroll_operate_renew_remove(self) -> None:
        """
        mdmctl adds a user; a device enrolls (its provisioning document checked
        by the emulator) and shows up in mdmctl; it renews with its issued
        certificate; mdmctl removes it, after which its certificate is refused
        and listed in the CRL.
        """
        added = await self.mdmctl("user", "add", "alice@example.com", stdin="S3cret!!\n")
        self.assertEqual(added.returncode, 0, added.stderr)

        port = self.daemon.https_port
        device = WindowsDevice(
            reactor,
            self.daemon.discovery_url,
            [self.root],
            user="alice@example.com",
            password="S3cret!!",
            csr_shape="legacy",
        )
        self.addCleanup(device.close)
        enrollment = await device.enroll()
        self.assertEqual(enrollment.dm_url, f"https://localhost:{port}/ManagementServer/MDM.svc")
        self.assertEqual(enrollment.root, self.root)
        enrollment.certificate.verify_directly_issued_by(self.root)
        self.assertEqual(enrollment.document.get("APPLICATION").parm("NAME"), "Contoso MDM")  # type: ignore[union-attr]
        self.assertTrue(device.client_auth.nonce and device.server_auth.nonce)

        listed = await self.mdmctl_json("device", "list")
        self.assertEqual(
            [(d["device_id"], d["user"], d["status"]) for d in listed],
            [(device.device_id, "alice@example.com", "enrolled")],
        )
        shown = await self.mdmctl_json("device", "show", device.device_id)
        self.assertEqual(shown["certificate"]["serial"], serial_hex(enrollment.certificate.serial_number))
        self.assertEqual(shown["device_name"], device.device_name)
        self.assertEqual(shown["mac_addresses"], list(device.mac_addresses))
        text = await self.mdmctl("device", "show", device.device_id)
        self.assertIn(f"certificate:           {serial_hex(enrollment.certificate.serial_number)} (valid)", text.stdout)

        renewed = await device.renew()
        shown = await self.mdmctl_json("device", "show", device.device_id)
        self.assertEqual(shown["certificate"]["serial"], serial_hex(renewed.serial_number))
        certificates = await self.mdmctl_json("cert", "list", "--device", device.device_id)
        self.assertEqual(
            [(c["serial"], c["status"], c["revocation_reason"]) for c in certificates],
            [
                (serial_hex(enrollment.certificate.serial_number), "revoked", "superseded"),
                (serial_hex(renewed.serial_number), "valid", None),
            ],
        )
        status = await self.mdmctl_json("status")
        self.assertEqual(status["counts"]["enrolled_devices"], 1)

        removed = await self.mdmctl("device", "remove", device.device_id)
        self.assertEqual(
            (removed.returncode, removed.stdout),
            (0, f"removed device {device.device_id}; certificate {serial_hex(renewed.serial_number)} revoked\n"),
        )
        with self.assertRaises(EnrollmentFault) as caught:
            await device.renew()
        self.assertEqual(caught.exception.subcode, "s:Authentication")
        self.assertIn("revoked", caught.exception.reason)
        crl = await device.request("GET", f"https://localhost:{port}/pki/crl")
        revoked = {entry.serial_number for entry in x509.load_der_x509_crl(crl.body)}
        self.assertEqual(revoked, {enrollment.certificate.serial_number, renewed.serial_number})
        status = await self.mdmctl_json("status")
        self.assertEqual((status["counts"]["enrolled_devices"], status["counts"]["removed_devices"]), (0, 1))
        log = self.daemon.log()
        self.assertIn(f"enrolled {device.device_id} ({device.device_name}) for alice@example.com", log)
        self.assertIn(f"renewed the certificate of {device.device_id}", log)

    async def test_refusal_is_logged(self) -> None:
        """
        A wrong password gets an Authentication fault and one log line naming the user.
        """
        device = WindowsDevice(
            reactor,
            self.daemon.discovery_url,
            [self.root],
            user="nobody@example.com",
            password="x",
        )
        self.addCleanup(device.close)
        with self.assertRaises(EnrollmentFault) as caught:
            await device.enroll()
        self.assertEqual((caught.exception.code, caught.exception.subcode), (500, "s:Authentication"))
        self.assertIn("policy refused (s:Authentication): unknown user or wrong password for nobody@example.com", self.daemon.log())
