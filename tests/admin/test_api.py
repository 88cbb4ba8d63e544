"""
Tests for L{mdmd.admin.api} and mdmctl (L{mdmd.admin.cli}) against an in-process admin listener.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from mdmd.admin import cli
from mdmd.admin.api import AdminAPI, AdminToken
from mdmd.admin.cli import AdminClient, CommandError
from mdmd.pki.ca import generate_rsa_key, serial_hex
from mdmd.site import MdmdSite
from mdmd.testing.store import memory_store_service

from ..pki.helpers import started_ca


class AdminTestCase(TestCase):
    def setUp(self):
        self.state_dir = tempfile.mkdtemp(prefix="mdmd-adm-")
        self.addCleanup(shutil.rmtree, self.state_dir, True)
        self.store = memory_store_service()
        self.addCleanup(self.store.stopService)
        self.ca = started_ca(self, state_dir=self.state_dir, store=self.store)
        self.token = AdminToken(os.path.join(self.state_dir, "admin.token"))
        self.token.ensure()
        api = AdminAPI(self.token, self.store, self.ca, reactor, reactor)
        self.socket_path = os.path.join(self.state_dir, "admin.sock")
        d = UNIXServerEndpoint(reactor, self.socket_path, mode=0o600).listen(
            MdmdSite(api, clock=reactor, name="admin")
        )

        def listening(port):
            self.port = port
            self.addCleanup(lambda: port.connected and port.stopListening())

        d.addCallback(listening)
        self.client = AdminClient(f"unix:{self.socket_path}", self.token.value.decode())
        self.config_path = os.path.join(self.state_dir, "mdmd.conf")
        with open(self.config_path, "w") as f:
            f.write(f"[server]\nstate_dir = {self.state_dir}\n")
        return d

    def call(self, method, path, body=None):
        return deferToThread(self.client.request, method, path, body)

    def mdmctl(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        def run():
            out, err = io.StringIO(), io.StringIO()
            old = cli.sys.stdin
            cli.sys.stdin = io.StringIO(stdin)
            try:
                code = cli.main(["--config", self.config_path, *argv], out, err)
            finally:
                cli.sys.stdin = old
            return code, out.getvalue(), err.getvalue()

        return deferToThread(run)


class APITests(AdminTestCase):
    async def test_token_required(self) -> None:
        """
        Without the right bearer token every route answers 401.
        """
        wrong = AdminClient(f"unix:{self.socket_path}", "x" * 43)
        with self.assertRaises(CommandError) as caught:
            await deferToThread(wrong.request, "GET", "/v1/status")
        self.assertIn("refused the admin token", str(caught.exception))

    async def test_token_file_private(self) -> None:
        """
        The token file is written 0600 with a long random token.
        """
        self.assertEqual(os.stat(self.token.path).st_mode & 0o777, 0o600)
        self.assertGreaterEqual(len(self.token.value), 32)

    async def test_status(self) -> None:
        """
        Status reports version, store, CA and counts.
        """
        status = await self.call("GET", "/v1/status")
        self.assertEqual(
            status["counts"],
            {
                "users": 0,
                "certificates": 0,
                "revoked_certificates": 0,
                "enrolled_devices": 0,
                "unenrolled_devices": 0,
                "removed_devices": 0,
            },
        )
        self.assertEqual(status["store"], "memory:")
        self.assertRegex(status["ca"]["thumbprint"], "^[0-9A-F]{40}$")

    async def test_users(self) -> None:
        """
        Users are added (hashed), listed, disabled and removed; duplicates get 409.
        """
        added = await self.call("POST", "/v1/users", {"name": "eve", "password": "pw"})
        self.assertEqual(added["name"], "eve")
        with self.assertRaises(CommandError) as caught:
            await self.call("POST", "/v1/users", {"name": "EVE", "password": "pw"})
        self.assertIn("already exists", str(caught.exception))
        await self.call("POST", "/v1/users/eve/disable")
        listed = await self.call("GET", "/v1/users")
        self.assertEqual([(u["name"], u["enabled"]) for u in listed["users"]], [("eve", False)])
        await self.call("DELETE", "/v1/users/eve")
        self.assertEqual((await self.call("GET", "/v1/users"))["users"], [])

    async def test_bad_requests(self) -> None:
        """
        Malformed bodies, missing fields, unknown routes and methods get specific errors.
        """
        for method, path, body, expected in (
            ("POST", "/v1/users", {"name": "x"}, "missing field 'password'"),
            ("POST", "/v1/users", {"name": 5, "password": "p"}, "must be a str"),
            ("POST", "/v1/users", {"name": "x", "password": ""}, "must not be empty"),
            ("GET", "/v1/nothing", None, "no such API endpoint"),
            ("DELETE", "/v1/status", None, "not allowed"),
            ("POST", "/v1/certs/zz/revoke", {}, "hex expected"),
            ("POST", "/v1/certs/ABCDEF/revoke", {}, "no certificate with serial ABCDEF"),
        ):
            with self.assertRaises(CommandError) as caught:
                await self.call(method, path, body)
            self.assertIn(expected, str(caught.exception))

    async def test_certificates(self) -> None:
        """
        Issued certificates are listed and revoked through the API.
        """
        issued = await self.ca.issue(generate_rsa_key(2048).public_key(), "DEV-9")
        serial = serial_hex(issued.certificate.serial_number)
        listed = await self.call("GET", "/v1/certs")
        self.assertEqual([(c["serial"], c["device_id"], c["status"]) for c in listed["certificates"]], [(serial, "DEV-9", "valid")])
        shown = await self.call("GET", f"/v1/certs/{serial.lower()}")
        self.assertTrue(shown["pem"].startswith("-----BEGIN CERTIFICATE-----"))
        revoked = await self.call("POST", f"/v1/certs/{serial}/revoke", {"reason": "superseded"})
        self.assertEqual((revoked["status"], revoked["revocation_reason"]), ("revoked", "superseded"))


DEVICE_CONTEXT = (
    ("DeviceName", "DESKTOP-7"),
    ("MAC", "00:11:22:33:44:55"),
    ("MAC", "00:11:22:33:44:56"),
    ("OSVersion", "10.0.26100.1"),
    ("EnrollmentType", "Full"),
)


def enroll_device(test: AdminTestCase, device_id: str = "DEV-7") -> Any:
    """
    Enroll a device the way the enrollment service does (one unit of work).
    """
    from mdmd.enroll import devices
    from mdmd.enroll.provisioning import DMCredentials

    facts = devices.EnrollmentFacts(device_id, "alice@example.com", "OnPremise", "User", DEVICE_CONTEXT)
    credentials = DMCredentials.generate(device_id, "mdmd", "DIGEST", os.urandom)
    return test.ca.transact_issuing(devices.enroll, facts, generate_rsa_key(2048).public_key(), credentials, 1000.0)


class DeviceAPITests(AdminTestCase):
    async def test_list_show_remove(self) -> None:
        """
        Devices are listed, shown with their current certificate, and removed
        (certificate revoked, status removed); status counts them.
        """
        enrolled = await enroll_device(self)
        listed = await self.call("GET", "/v1/devices")
        self.assertEqual([(d["device_id"], d["status"], d["user"]) for d in listed["devices"]],
                         [("DEV-7", "enrolled", "alice@example.com")])
        shown = await self.call("GET", "/v1/devices/DEV-7")
        self.assertEqual(shown["mac_addresses"], ["00:11:22:33:44:55", "00:11:22:33:44:56"])
        self.assertEqual(shown["certificate"]["serial"], serial_hex(enrolled.certificate.serial_number))
        self.assertEqual(shown["certificate"]["status"], "valid")
        status = await self.call("GET", "/v1/status")
        self.assertEqual(status["counts"]["enrolled_devices"], 1)
        removed = await self.call("DELETE", "/v1/devices/DEV-7")
        self.assertEqual(removed["status"], "removed")
        shown = await self.call("GET", "/v1/devices/DEV-7")
        self.assertEqual((shown["certificate"]["status"], shown["certificate"]["revocation_reason"]),
                         ("revoked", "cessationOfOperation"))
        status = await self.call("GET", "/v1/status")
        self.assertEqual((status["counts"]["enrolled_devices"], status["counts"]["removed_devices"]), (0, 1))

    async def test_unknown_device(self) -> None:
        """
        Showing or removing an unknown device is a 404 naming it.
        """
        for method in ("GET", "DELETE"):
            with self.assertRaises(CommandError) as caught:
                await self.call(method, "/v1/devices/NOPE")
            self.assertIn("no device 'NOPE'", str(caught.exception))


class MdmctlTests(AdminTestCase):
    async def test_device_verbs(self) -> None:
        """
        mdmctl device list (table and JSON), show and remove.
        """
        enrolled = await enroll_device(self, "{GUID-1}")
        code, out, err = await self.mdmctl("device", "list")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out.splitlines()[0].split(), ["DEVICE", "NAME", "USER", "STATUS", "ENROLLED", "LAST", "CONTACT"])
        self.assertTrue(out.splitlines()[1].startswith("{GUID-1}  DESKTOP-7  alice@example.com  enrolled"))
        code, out, _ = await self.mdmctl("device", "list", "--json")
        self.assertEqual([d["device_id"] for d in json.loads(out)], ["{GUID-1}"])
        code, out, _ = await self.mdmctl("device", "show", "{GUID-1}")
        self.assertEqual(code, 0)
        serial = serial_hex(enrolled.certificate.serial_number)
        self.assertIn(f"certificate:           {serial} (valid), store My\\User", out)
        self.assertIn("mac_addresses:         00:11:22:33:44:55, 00:11:22:33:44:56", out)
        self.assertIn("last_contact:          -", out)
        code, out, _ = await self.mdmctl("device", "remove", "{GUID-1}")
        self.assertEqual((code, out), (0, f"removed device {{GUID-1}}; certificate {serial} revoked\n"))
        code, out, _ = await self.mdmctl("device", "show", "{GUID-1}", "--json")
        self.assertEqual(json.loads(out)["status"], "removed")
        code, _, err = await self.mdmctl("device", "remove", "missing")
        self.assertEqual((code, err), (1, "mdmctl: no device 'missing'\n"))

    async def test_user_add_from_stdin_and_list(self) -> None:
        """
        mdmctl user add reads the password from stdin; user list shows a table or JSON.
        """
        code, out, err = await self.mdmctl("user", "add", "frank", stdin="hunter2\n")
        self.assertEqual((code, out, err), (0, "added user frank\n", ""))
        code, out, _ = await self.mdmctl("user", "list")
        self.assertEqual(out.splitlines()[0].split(), ["NAME", "ENABLED", "CREATED"])
        self.assertTrue(out.splitlines()[1].startswith("frank  yes"))
        code, out, _ = await self.mdmctl("user", "list", "--json")
        self.assertEqual([u["name"] for u in json.loads(out)], ["frank"])

    async def test_password_file(self) -> None:
        """
        --password-file reads the first line of a file.
        """
        path = os.path.join(self.state_dir, "pw")
        with open(path, "w") as f:
            f.write("from-file\nignored\n")
        code, _, err = await self.mdmctl("user", "add", "gina", "--password-file", path)
        self.assertEqual((code, err), (0, ""))
        code, _, err = await self.mdmctl("user", "add", "hank", "--password-file", path + ".missing")
        self.assertEqual(code, 1)
        self.assertIn("cannot read", err)

    async def test_one_line_errors(self) -> None:
        """
        Errors are one line on stderr with exit status 1; usage errors exit 2.
        """
        code, out, err = await self.mdmctl("cert", "revoke", "ABC")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, "mdmctl: no certificate with serial ABC\n")
        code, _, err = await self.mdmctl("user", "add", "x", stdin="\n")
        self.assertEqual((code, err), (1, "mdmctl: the password must not be empty\n"))

    async def test_unreachable_daemon(self) -> None:
        """
        With no daemon on the socket, mdmctl says so in one line.
        """
        await self.port.stopListening()
        code, _, err = await self.mdmctl("status")
        self.assertEqual(code, 1)
        self.assertEqual(len(err.splitlines()), 1)
        self.assertIn("cannot reach mdmd's admin API", err)
        self.assertIn("is the daemon running?", err)

    async def test_missing_token(self) -> None:
        """
        An unreadable token file is reported in one line.
        """
        os.unlink(self.token.path)
        code, _, err = await self.mdmctl("status")
        self.assertEqual(code, 1)
        self.assertIn("cannot read the admin token", err)
