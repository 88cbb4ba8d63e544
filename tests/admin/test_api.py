"""
Tests for L{mdmd.admin.api} and mdmctl (L{mdmd.admin.cli}) against an in-process admin listener.
"""

from __future__ import annotations

import contextlib
import base64
import errno
import csv
import http.client
import io
import json
import os
import time
import shutil
import socket
import stat
import sys
import tempfile
from typing import Any

from twisted.internet import reactor, unix
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.interfaces import IListeningPort, IReactorThreads, IReactorTime
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mdmd.admin import cli
from mdmd.admin.api import AdminAPI, AdminToken
from mdmd.admin.cli import AdminClient, CommandError
from mdmd.devices.registration import COLUMNS, RegistrationSettings
from mdmd.enroll import users
from mdmd.errors import InternalError
from mdmd.notify.pkg0 import DEFAULT_NONCE
from mdmd.notify.notifier import Notifier
from mdmd.pki.ca import generate_rsa_key, serial_hex
from mdmd.site import MdmdSite
from mdmd.store.runner import ConflictRetriesExhausted
from mdmd.testing.store import memory_store_service

from ..logs import logged_events
from ..pki.helpers import started_ca


class AdminTestCase(TestCase):
    def setUp(self) -> Any:
        self.state_dir = tempfile.mkdtemp(prefix="mdmd-adm-")
        self.addCleanup(shutil.rmtree, self.state_dir, True)
        self.store = memory_store_service()
        self.addCleanup(self.store.stopService)
        self.ca = started_ca(self, state_dir=self.state_dir, store=self.store)
        self.token = AdminToken(os.path.join(self.state_dir, "admin.token"))
        self.token.ensure()
        api = AdminAPI(self.token, self.store, self.ca, IReactorThreads(reactor), IReactorTime(reactor), notifier=self.make_notifier(), **self.api_options())
        self.socket_path = os.path.join(self.state_dir, "admin.sock")
        d = UNIXServerEndpoint(reactor, self.socket_path, mode=0o600).listen(
            MdmdSite(api, clock=reactor, name="admin")
        )

        def listening(port: IListeningPort) -> None:
            assert isinstance(port, unix.Port)
            self.port = port
            self.addCleanup(lambda: port.connected and port.stopListening())

        d.addCallback(listening)
        self.client = AdminClient(f"unix:{self.socket_path}", self.token.value.decode())
        self.config_path = os.path.join(self.state_dir, "mdmd.conf")
        with open(self.config_path, "w") as f:
            f.write(f"[server]\nstate_dir = {self.state_dir}\n")
        return d

    def make_notifier(self) -> Notifier | None:
        return None

    def api_options(self) -> dict[str, Any]:
        return {}

    def raw(
        self, method: str, path: str, body: bytes = b"", extra: dict[str, str] | None = None
    ) -> Deferred[tuple[int, dict[str, str], Any]]:
        """
        One request with the token, without mdmctl's client: status, headers and JSON body.
        """
        socket_path = self.socket_path
        token = self.token.value.decode()

        def run() -> tuple[int, dict[str, str], Any]:
            connection = http.client.HTTPConnection("localhost", timeout=10)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(socket_path)
            connection.sock = sock
            try:
                connection.request(method, path, body=body, headers={"Authorization": f"Bearer {token}", **(extra or {})})
                response = connection.getresponse()
                headers = {k.lower(): v for k, v in response.getheaders()}
                return response.status, headers, json.loads(response.read())
            finally:
                connection.close()

        return deferToThread(run)

    def call(self, method: str, path: str, body: Any = None) -> Deferred[Any]:
        return deferToThread(self.client.request, method, path, body)

    def mdmctl(self, *argv: str, stdin: str = "") -> Deferred[tuple[int, str, str]]:
        def run() -> tuple[int, str, str]:
            out, err = io.StringIO(), io.StringIO()
            old = sys.stdin
            sys.stdin = io.StringIO(stdin)
            try:
                code = cli.main(["--config", self.config_path, *argv], out, err)
            finally:
                sys.stdin = old
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
        added = await self.call("POST", "/v1/users", {"name": "eve", "password": "pw-of-eve"})
        self.assertEqual(added["name"], "eve")
        with self.assertRaises(CommandError) as caught:
            await self.call("POST", "/v1/users", {"name": "EVE", "password": "pw-of-eve"})
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

    async def test_declared_statuses(self) -> None:
        """
        Each refusal is answered with its error's declared status and a JSON
        message: a missing thing 404, an existing one 409, a bad value 400,
        no route 404, a wrong method 405.
        """
        await self.call("POST", "/v1/users", {"name": "ann", "password": "pw-of-ann"})
        for method, path, body, status, message in (
            ("POST", "/v1/users", b'{"name": "ANN", "password": "pw-of-ann"}', 409, "already exists"),
            ("DELETE", "/v1/users/nobody", b"", 404, "no user 'nobody'"),
            ("POST", "/v1/users", b'{"name": "", "password": "pw-of-ann"}', 400, "a user name must not be empty"),
            ("GET", "/v1/certs/zz", b"", 400, "not a certificate serial (hex expected): 'zz'"),
            ("GET", "/v1/certs/0a", b"", 404, "no certificate with serial A"),
            ("POST", "/v1/certs/0a/revoke", b'{"reason": "whim"}', 400, "unknown revocation reason 'whim'"),
            ("GET", "/v1/devices/NOPE/commands/1", b"", 404, "device NOPE has no command 1"),
            ("DELETE", "/v1/devices/NOPE", b"", 404, "no device 'NOPE'"),
            ("POST", "/v1/devices/NOPE/commands", b'{"verb": "Get", "target": "./DevInfo/Mod"}', 404, "NOPE"),
            ("POST", "/v1/users", b"[", 400, "request body is not JSON"),
            ("GET", "/v1/nothing", b"", 404, "no such API endpoint: /v1/nothing"),
            ("DELETE", "/v1/status", b"", 405, "DELETE is not allowed on /v1/status"),
        ):
            code, _, value = await self.raw(method, path, body)
            self.assertEqual(code, status, (method, path, value))
            self.assertIn(message, value["error"])

    async def test_fuzz_unreadable_requests_are_refused(self) -> None:
        """
        Issue 12, defect 1: what the fuzzer sent that was answered 500 is a
        400: a command number or limit that is not ASCII digits or too long
        to read, a query argument that is not UTF-8, a JSON body holding a
        lone surrogate (which no name, password or URI can hold).
        """
        for method, path, body, message in (
            ("GET", "/v1/devices/NOPE/commands/%C2%B2", b"", "not a command number"),
            ("GET", "/v1/devices/NOPE/commands/" + "9" * 4400, b"", "not a command number"),
            ("GET", "/v1/pushes?limit=" + "9" * 4400, b"", "limit must be a whole number"),
            ("GET", "/v1/devices?kind=%84", b"", "query argument kind is not UTF-8"),
            ("GET", "/v1/pushes?state=%80", b"", "query argument state is not UTF-8"),
            ("GET", "/v1/certs?device=%FF", b"", "query argument device is not UTF-8"),
            ("POST", "/v1/users", b'{"name": "ann", "password": "\\ud800"}', "request body is not JSON"),
            (
                "POST",
                "/v1/devices/NOPE/commands",
                b'{"verb": "Get", "target": "./DevInfo/\\udfff"}',
                "request body is not JSON",
            ),
        ):
            code, _, value = await self.raw(method, path, body)
            self.assertEqual(code, 400, (method, path, value))
            self.assertIn(message, value["error"])

    async def test_revoke_failure_is_ours(self) -> None:
        """
        A failure of the CA or the store while revoking is our 500 (logged with
        its traceback), not the operator's 400: only an unknown reason is.
        """
        issued = await self.ca.issue(generate_rsa_key(2048).public_key(), "DEV-9")
        serial = serial_hex(issued.certificate.serial_number)
        self.patch(self.ca, "revoke", lambda *args: fail(ValueError("the store broke")))
        code, _, value = await self.raw("POST", f"/v1/certs/{serial}/revoke", b"{}")
        self.assertEqual((code, value), (500, {"error": InternalError.public_message}))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    async def test_busy(self) -> None:
        """
        When the store gives up, the API answers 503 with Retry-After and a
        JSON body, and mdmctl says the daemon is busy in one line, exit 1.
        """

        def busy(*args: Any) -> Any:
            raise ConflictRetriesExhausted("user_page conflicted 6 times")

        self.patch(users, "user_page", busy)
        code, headers, value = await self.raw("GET", "/v1/users")
        self.assertEqual((code, headers["retry-after"]), (503, "5"))
        self.assertEqual(value["retry_after"], 5)
        self.assertNotIn("conflicted", value["error"])
        code, out, err = await self.mdmctl("user", "list")
        self.assertEqual((code, out, err), (1, "", "mdmctl: the daemon is busy; try again\n"))
        self.assertEqual(self.flushLoggedErrors(ConflictRetriesExhausted), [])


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
        code, out, err = await self.mdmctl("user", "add", "frank", stdin="hunter2!\n")
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

    async def test_user_policy(self) -> None:
        """
        mdmctl user add refuses a name of no accepted form and a short
        password (user passwd too), each in one line; nothing is added.
        """
        code, out, err = await self.mdmctl("user", "add", "bob smith", stdin="long-enough\n")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(
            err,
            "mdmctl: 'bob smith' is not a valid user name: expected an e-mail address (user@example.com), "
            "or DOMAIN\\user, or a plain name matching [A-Za-z0-9][A-Za-z0-9._-]{0,63}\n",
        )
        code, _, err = await self.mdmctl("user", "add", "CONTOSO\\bob", stdin="abc\n")
        self.assertEqual((code, err), (1, "mdmctl: the password is too short: at least 8 characters\n"))
        self.assertEqual((await self.call("GET", "/v1/users"))["users"], [])
        code, _, err = await self.mdmctl("user", "add", "CONTOSO\\bob", stdin="long-enough\n")
        self.assertEqual((code, err), (0, ""))
        code, _, err = await self.mdmctl("user", "passwd", "CONTOSO\\bob", stdin="short\n")
        self.assertEqual((code, err), (1, "mdmctl: the password is too short: at least 8 characters\n"))

    async def test_output_to_a_closed_pipe(self) -> None:
        """
        mdmctl ... | head: when the reader has gone, mdmctl stops quietly
        with the status of a program stopped by SIGPIPE, no traceback.
        """
        for n in range(3):
            await self.call("POST", "/v1/users", {"name": f"user{n}", "password": "long-enough"})
        read, write = os.pipe()
        os.close(read)
        out = os.fdopen(write, "w")
        self.addCleanup(out.close)
        err = io.StringIO()
        code = await deferToThread(cli.main, ["--config", self.config_path, "user", "list"], out, err)
        self.assertEqual((code, err.getvalue()), (cli.EXIT_BROKEN_PIPE, ""))
        out.write("more" * 10000)
        out.flush()  # the interpreter's last flush no longer fails either

    async def test_unreachable_daemon(self) -> None:
        """
        With no daemon on the socket, mdmctl says so in one line.
        """
        stopped = self.port.stopListening()
        assert stopped is not None
        await stopped
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


class PushAPITests(AdminTestCase):
    """
    Push routes and verbs, with a notifier that writes to a spool directory.
    """

    def make_notifier(self) -> Notifier:
        from twisted.internet.task import Clock

        from mdmd.notify.jobs import PushSettings
        from mdmd.notify.notifier import Notifier
        from mdmd.notify.spool import SpoolTransport

        self.spool = os.path.join(self.state_dir, "spool")
        notifier = Notifier(self.store, PushSettings(), Clock(), transport=SpoolTransport(self.spool))
        notifier.startService()
        self.addCleanup(notifier.stopService)
        return notifier

    async def test_msisdn_and_push_routes(self) -> None:
        """
        PATCH sets a valid MSISDN (shown with the device); a push is spooled and
        listed; a device without a number is a 409 naming it; status shows the
        link and the counts.
        """
        await enroll_device(self, "DEV-1")
        await enroll_device(self, "DEV-2")
        changed = await self.call("PATCH", "/v1/devices/DEV-1", {"msisdn": "+49 170 1234567"})
        self.assertEqual(changed["push"]["msisdn"], "+491701234567")
        for body, message in (
            ({"msisdn": "call me"}, "is not a phone number"),
            ({"msisdn": 49}, "must be a string or null"),
            ({"name": "x"}, "cannot set name"),
            ({}, "nothing to set"),
        ):
            with self.assertRaises(CommandError) as caught:
                await self.call("PATCH", "/v1/devices/DEV-1", body)
            self.assertIn(message, str(caught.exception))
        with self.assertRaises(CommandError) as caught:
            await self.call("PATCH", "/v1/devices/NOPE", {"msisdn": "+1555123"})
        self.assertIn("no device 'NOPE'", str(caught.exception))
        shown = await self.call("GET", "/v1/devices/DEV-1")
        self.assertEqual((shown["push"]["msisdn"], shown["push"]["msisdn_source"]), ("+491701234567", "operator"))

        pushed = await self.call("POST", "/v1/devices/DEV-1/pushes")
        (job,) = pushed["jobs"]
        self.assertEqual((job["device_id"], job["seq"], job["state"], job["via"]), ("DEV-1", 1, "submitted", "spool"))
        self.assertEqual(pushed["link"]["state"], "not configured")
        self.assertTrue(job["spool_file"].startswith(self.spool))
        with self.assertRaises(CommandError) as caught:
            await self.call("POST", "/v1/pushes", {"devices": ["DEV-1", "DEV-2"]})
        self.assertIn("device DEV-2 has no MSISDN", str(caught.exception))
        listed = await self.call("GET", "/v1/pushes")
        self.assertEqual([(j["device_id"], j["seq"]) for j in listed["jobs"]], [("DEV-1", 1)])
        listed = await self.call("GET", "/v1/devices/DEV-2/pushes")
        self.assertEqual(listed["jobs"], [])
        with self.assertRaises(CommandError) as caught:
            await self.call("GET", "/v1/pushes?state=lost")
        self.assertIn("unknown state 'lost'", str(caught.exception))
        status = await self.call("GET", "/v1/status")
        self.assertEqual(status["push"]["link"]["state"], "not configured")
        self.assertEqual(status["push"]["counts"]["submitted"], 1)

    async def test_push_with_the_default_nonce(self) -> None:
        """
        "default_nonce": true signs package #0 with the default nonce, which
        becomes the device's server nonce; a value that is not a boolean is refused.
        """
        await enroll_device(self, "DEV-1")
        await self.call("PATCH", "/v1/devices/DEV-1", {"msisdn": "+491701234567"})
        await self.call("POST", "/v1/devices/DEV-1/pushes", {"default_nonce": True})
        nonce = await self.store.read(lambda root: root["devices"]["DEV-1"].dm_server_nonce)
        self.assertEqual(nonce, DEFAULT_NONCE)
        with self.assertRaises(CommandError) as caught:
            await self.call("POST", "/v1/pushes", {"devices": ["DEV-1"], "default_nonce": "yes"})
        self.assertIn("field 'default_nonce' must be a bool", str(caught.exception))

    async def test_mdmctl_push_verbs(self) -> None:
        """
        mdmctl device set --msisdn, push DEVICE (says where it went), push
        status (table and JSON), and status showing the SMPP link and counts.
        """
        await enroll_device(self, "DEV-1")
        code, out, err = await self.mdmctl("device", "set", "DEV-1", "--msisdn", "+447700900123")
        self.assertEqual((code, out, err), (0, "DEV-1: msisdn +447700900123\n", ""))
        code, out, _ = await self.mdmctl("device", "show", "DEV-1")
        self.assertIn("msisdn:                +447700900123", out)
        code, out, err = await self.mdmctl("push", "DEV-1")
        self.assertEqual((code, err), (0, ""))
        self.assertRegex(out, r"^push #1 for DEV-1 \(session id [0-9A-F]{1,4}, to \+447700900123\): written to " + self.spool + "/push-DEV-1-")
        code, out, _ = await self.mdmctl("push", "status")
        header, row = out.splitlines()
        self.assertEqual(header.split()[:5], ["DEVICE", "SEQ", "STATE", "SESSION", "MSISDN"])
        self.assertEqual(row.split()[:3], ["DEV-1", "1", "submitted"])
        code, out, _ = await self.mdmctl("push", "status", "DEV-1", "--json")
        self.assertEqual([j["state"] for j in json.loads(out)], ["submitted"])
        code, out, _ = await self.mdmctl("status")
        self.assertIn(f"SMPP:       not configured (pushes are written to {self.spool})", out)
        self.assertIn("pushes:     1 submitted", out)
        code, _, err = await self.mdmctl("push", "status", "a", "b")
        self.assertEqual((code, err), (1, "mdmctl: push status takes at most one device\n"))
        code, _, err = await self.mdmctl("device", "set", "DEV-1")
        self.assertEqual(code, 1)
        self.assertIn("nothing to set", err)
        code, out, _ = await self.mdmctl("device", "set", "DEV-1", "--msisdn", "")
        self.assertEqual(out, "DEV-1: msisdn cleared\n")


class BootstrapAPITests(AdminTestCase):
    """
    The bootstrap route and verb, with a notifier that writes to a spool directory.
    """

    def make_notifier(self) -> Notifier:
        from twisted.internet.task import Clock

        from mdmd.notify.jobs import PushSettings
        from mdmd.notify.notifier import Notifier
        from mdmd.notify.provisioning_doc import DMServer
        from mdmd.notify.spool import SpoolTransport

        self.spool = os.path.join(self.state_dir, "spool")
        server = DMServer("mdmd", "mdmd", "https://mdm.example.com/ManagementServer/MDM.svc")
        notifier = Notifier(self.store, PushSettings(), Clock(), transport=SpoolTransport(self.spool), dm_server=lambda: server)
        notifier.startService()
        self.addCleanup(notifier.stopService)
        return notifier

    def spooled_push(self, path: str) -> Any:
        from mdmd.notify.bootstrap import parse_bootstrap_push
        from mdmd.notify.wap import reassemble

        with open(path) as f:
            document = json.load(f)
        return parse_bootstrap_push(reassemble([bytes.fromhex(s["short_message"]) for s in document["segments"]])[2])

    async def test_route(self) -> None:
        """
        POST /v1/devices/ID/bootstrap with a NETWPIN or a USERPIN: 201 with a
        bootstrap job (no session id) spooled with the MAC of that key; the
        jobs list with their kind.
        """
        from mdmd.notify.bootstrap import Sec, netwpin_key

        from ..notify.cp import IMSI, add_classic_device

        await self.store.transact(add_classic_device, "C1")
        result = await self.call("POST", "/v1/devices/C1/bootstrap", {"pin": "netwpin"})
        job = result["job"]
        self.assertEqual(
            (job["device_id"], job["seq"], job["kind"], job["state"], job["via"], job["session_id"]),
            ("C1", 1, "bootstrap", "submitted", "spool", None),
        )
        self.assertEqual(result["link"]["state"], "not configured")
        push = self.spooled_push(job["spool_file"])
        self.assertEqual(push.sec, Sec.NETWPIN)
        self.assertTrue(push.verify(netwpin_key(IMSI)))
        code, _, value = await self.raw("POST", "/v1/devices/C1/bootstrap", b'{"pin": "userpin", "userpin": "13572468"}')
        self.assertEqual(code, 201)
        push = self.spooled_push(value["job"]["spool_file"])
        self.assertEqual(push.sec, Sec.USERPIN)
        self.assertTrue(push.verify(b"13572468"))
        listed = await self.call("GET", "/v1/pushes?device=C1")
        self.assertEqual([(j["seq"], j["kind"]) for j in listed["jobs"]], [(1, "bootstrap"), (2, "bootstrap")])

    async def test_refusals(self) -> None:
        """
        A body without a valid pin choice is a 400 (a bad USERPIN never
        echoed), an unknown device a 404, a Windows device or one without
        an IMSI for NETWPIN a 409; the USERPIN appears in no log line.
        """
        from twisted.logger import formatEvent

        from ..notify.cp import add_classic_device

        logged = logged_events(self)
        await enroll_device(self, "WIN-1")
        await self.store.transact(add_classic_device, "C2", imsi="")
        for path, body, status, message in (
            ("C2", b"{}", 400, "missing field 'pin'"),
            ("C2", b'{"pin": "x"}', 400, "field 'pin' must be 'netwpin' or 'userpin'"),
            ("C2", b'{"pin": "userpin"}', 400, "missing field 'userpin'"),
            ("C2", b'{"pin": "userpin", "userpin": 24681357}', 400, "field 'userpin' must be a str"),
            ("C2", b'{"pin": "userpin", "userpin": "2468x357"}', 400, "a USERPIN is 4 to 16 decimal digits"),
            ("C2", b'{"pin": "netwpin", "userpin": "24681357"}', 400, "'userpin' goes with pin 'userpin' only"),
            ("C2", b'{"pin": "netwpin", "imsi": "1"}', 400, "unknown field 'imsi'"),
            ("NOPE", b'{"pin": "userpin", "userpin": "24681357"}', 404, "no device 'NOPE'"),
            ("WIN-1", b'{"pin": "userpin", "userpin": "24681357"}', 409, "is a Windows device"),
            ("C2", b'{"pin": "netwpin"}', 409, "device C2 has no IMSI"),
        ):
            code, _, value = await self.raw("POST", f"/v1/devices/{path}/bootstrap", body)
            self.assertEqual(code, status, (path, body, value))
            self.assertIn(message, value["error"])
            self.assertNotIn("2468", value["error"])
        await self.call("POST", "/v1/devices/C2/bootstrap", {"pin": "userpin", "userpin": "24681357"})
        self.assertFalse([e for e in logged if "2468" in formatEvent(e)])

    async def test_mdmctl(self) -> None:
        """
        mdmctl device bootstrap: --netwpin, --userpin-file, or the USERPIN
        on stdin; it says where the job went; push status shows the kind and
        no session id; a PIN is never an argument.
        """
        from ..notify.cp import add_classic_device

        await self.store.transact(add_classic_device, "C1")
        code, out, err = await self.mdmctl("device", "bootstrap", "C1", "--netwpin")
        self.assertEqual((code, err), (0, ""))
        self.assertRegex(out, r"^bootstrap #1 for C1 \(NETWPIN, \d SMS to \+491701234567\): written to " + self.spool + "/push-C1-")
        pin_file = os.path.join(self.state_dir, "pin")
        with open(pin_file, "w") as f:
            f.write("97531\n")
        code, out, err = await self.mdmctl("device", "bootstrap", "C1", "--userpin-file", pin_file)
        self.assertEqual((code, err), (0, ""))
        self.assertTrue(out.startswith("bootstrap #2 for C1 (USERPIN, "), out)
        code, out, err = await self.mdmctl("device", "bootstrap", "C1", "--json", stdin="86420\n")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(json.loads(out)["job"]["seq"], 3)
        self.assertTrue(self.spooled_push(json.loads(out)["job"]["spool_file"]).verify(b"86420"))
        code, out, err = await self.mdmctl("device", "bootstrap", "C1", stdin="\n")
        self.assertEqual((code, err), (1, "mdmctl: the USERPIN must not be empty\n"))
        code, out, err = await self.mdmctl("device", "bootstrap", "C1", stdin="12\n")
        self.assertEqual((code, err), (1, "mdmctl: a USERPIN is 4 to 16 decimal digits\n"))
        for argv, message in (
            (["--netwpin", "--userpin-file", pin_file], "not allowed with argument"),
            (["1234"], "unrecognized arguments: 1234"),
        ):
            usage = io.StringIO()
            with self.assertRaises(SystemExit) as caught, contextlib.redirect_stderr(usage):
                cli.build_parser().parse_args(["device", "bootstrap", "C1", *argv])
            self.assertEqual(caught.exception.code, 2)
            self.assertIn(message, usage.getvalue())
        code, out, _ = await self.mdmctl("push", "status", "C1")
        header, *rows = out.splitlines()
        self.assertEqual(header.split()[:6], ["DEVICE", "SEQ", "STATE", "SESSION", "MSISDN", "KIND"])
        self.assertEqual([row.split()[:6] for row in rows], [["C1", str(n), "submitted", "-", "+491701234567", "bootstrap"] for n in (1, 2, 3)])


class WnsAPITests(AdminTestCase):
    """
    Pushes by route (SMS to the spool, WNS to a fake transport), and what operators see of WNS.
    """

    URI = "https://db5p.notify.windows.com/w/?token=AwYAAAB"

    def make_notifier(self) -> Notifier:
        from twisted.internet.task import Clock

        from mdmd.notify.jobs import PushSettings
        from mdmd.notify.notifier import Notifier
        from mdmd.notify.routes import PushRoutes, Route
        from mdmd.notify.spool import SpoolTransport
        from mdmd.notify.transport import Sent
        from mdmd.testing.push import FakePushTransport

        self.spool = os.path.join(self.state_dir, "spool")
        self.wns = FakePushTransport("wns", at_once=lambda job: Sent(("M1",), (None,), carrier=(("status", "received"),)))
        self.wns.link = {
            "state": "ready", "flow": "classic", "token_url": "https://login.live.com/accesstoken.srf",
            "token": {"state": "valid", "valid_until": 1_800_000_000.0, "last_error": None},
            "answers": {"accepted": 3, "throttled": 1}, "detail": "WNS answered 406",
        }
        routes = PushRoutes({Route.SMS: SpoolTransport(self.spool), Route.WNS: self.wns})
        notifier = Notifier(self.store, PushSettings(), Clock(), routes=routes)
        notifier.startService()
        self.addCleanup(notifier.stopService)
        return notifier

    def with_channel(self, device_id: str, **values: Any) -> Any:
        from mdmd.notify.channels import Channel

        plain = Channel(**{"pfn": "Contoso.Push_1", "pfn_via": "enrollment", "uri": self.URI, "status": 0,
                           "since": 1000.0, "read_at": 1000.0, **values}).as_plain()

        def set_channel(root: Any) -> None:
            root["devices"][device_id].wns_channel = plain

        return self.store.transact(set_channel)

    async def test_push_by_route(self) -> None:
        """
        A Windows device with a channel is pushed by WNS; via sms by SMS; an
        unknown via is refused; the device shows its channel.
        """
        await enroll_device(self, "DEV-1")
        await self.call("PATCH", "/v1/devices/DEV-1", {"msisdn": "+491701234567"})
        await self.with_channel("DEV-1", since=time.time(), read_at=time.time())
        (job,) = (await self.call("POST", "/v1/devices/DEV-1/pushes"))["jobs"]
        self.assertEqual((job["route"], job["via"], job["state"], job["carrier"]), ("wns", "wns", "submitted", {"status": "received"}))
        (job,) = (await self.call("POST", "/v1/pushes", {"devices": ["DEV-1"], "via": "sms"}))["jobs"]
        self.assertEqual((job["route"], job["via"]), ("sms", "spool"))
        jobs = (await self.call("POST", "/v1/devices/DEV-1/pushes", {"via": "both"}))["jobs"]
        self.assertEqual(sorted(j["route"] for j in jobs), ["sms", "wns"])
        for body, message in (({"via": "pigeon"}, "unknown push route 'pigeon'"), ({"via": 1}, "field 'via' must be a str")):
            with self.assertRaises(CommandError) as caught:
                await self.call("POST", "/v1/devices/DEV-1/pushes", body)
            self.assertIn(message, str(caught.exception))
        shown = await self.call("GET", "/v1/devices/DEV-1")
        self.assertEqual((shown["wns"]["uri"], shown["wns"]["status_meaning"], shown["wns"]["problem"]), (self.URI, "success", None))

    async def test_mdmctl(self) -> None:
        """
        mdmctl push --via, device show's WNS lines (channel, age, expiry, a
        failed status with its meaning) and status's WNS line.
        """
        await enroll_device(self, "DEV-1")
        await self.with_channel("DEV-1")
        code, out, err = await self.mdmctl("push", "DEV-1", "--via", "wns")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out, "push #1 for DEV-1 (to its WNS channel): submitted (WNS)\n")
        code, _, err = await self.mdmctl("push", "DEV-1", "--via", "sms")
        self.assertEqual(code, 1)
        self.assertIn("device DEV-1 has no MSISDN", err)
        code, out, _ = await self.mdmctl("push", "status", "DEV-1")
        self.assertEqual(out.splitlines()[1].split()[3:7], ["-", "WNS", "notification", "M1"])
        code, out, _ = await self.mdmctl("device", "show", "DEV-1")
        self.assertIn("wns pfn:               Contoso.Push_1 (set at enrollment)", out)
        self.assertIn(f"wns channel:           {self.URI} (read 1970-01-01 00:16:40Z", out)
        self.assertIn("expires 1970-01-31 00:16:40Z)", out)
        self.assertIn("wns status:            0 (success)", out)
        await self.with_channel("DEV-1", status=5)
        code, out, _ = await self.mdmctl("device", "show", "DEV-1")
        self.assertIn("wns status:            5 (the channel URI has expired)", out)
        self.assertIn("wns:                   cannot push: device has a failed WNS channel", out)
        code, out, _ = await self.mdmctl("status")
        self.assertIn(
            "WNS:        token valid until 2027-01-15 08:00:00Z (classic flow); answers: 3 accepted, 1 throttled; "
            "last problem: WNS answered 406",
            out,
        )


class NoNotifierTests(AdminTestCase):
    async def test_push_unavailable(self) -> None:
        """
        Without a notifier the push routes answer 503.
        """
        await enroll_device(self, "DEV-1")
        with self.assertRaises(CommandError) as caught:
            await self.call("POST", "/v1/pushes", {"devices": ["DEV-1"]})
        self.assertIn("push notifications are not available", str(caught.exception))

    async def test_bootstrap_unavailable(self) -> None:
        """
        Without a notifier the bootstrap route answers 503.
        """
        code, _, value = await self.raw("POST", "/v1/devices/DEV-1/bootstrap", b'{"pin": "netwpin"}')
        self.assertEqual(code, 503)
        self.assertIn("push notifications are not available", value["error"])


class StorePackTests(AdminTestCase):
    async def test_pack(self) -> None:
        """
        POST /v1/store/pack packs the store and answers, once done, what it
        did; mdmctl store pack prints it (or its JSON).
        """
        code, out, _ = await self.mdmctl("store", "pack", "--days", "3", "--json")
        self.assertEqual(json.loads(out)["days"], 3)
        code, out, _ = await self.mdmctl("store", "pack", "--days", "1.5", "--json")
        self.assertEqual(json.loads(out)["days"], 1.5)
        code, out, err = await self.mdmctl("store", "pack")
        self.assertEqual((code, err), (0, ""))
        self.assertRegex(out, r"^store packed in [0-9.]+ s, keeping 1 day\(s\) of history: [0-9.]+ \S+ → [0-9.]+ \S+\n$")
        code, _, report = await self.raw("POST", "/v1/store/pack", b'{"days": 0}')
        self.assertEqual(code, 200)
        self.assertEqual(report["days"], 0)
        self.assertEqual(sorted(report), ["days", "seconds", "size_after", "size_before", "started_at"])

    async def test_days_checked(self) -> None:
        """
        Days must be a finite number, 0 to ten years (further back than any store).
        """
        for body in (
            b'{"days": -1}',
            b'{"days": -0.5}',
            b'{"days": "x"}',
            b'{"days": true}',
            b'{"days": 3651}',
            b'{"days": NaN}',
            b'{"days": 1e999}',
        ):
            code, _, value = await self.raw("POST", "/v1/store/pack", body)
            self.assertEqual(code, 400, body)
            self.assertIn("days", value["error"])

    async def test_refused_for_a_shared_store(self) -> None:
        """
        A store mdmd does not pack (a ZEO client) is refused with 409, saying who packs it.
        """
        self.patch(self.store, "uri", "zeo://127.0.0.1:8100")
        code, out, err = await self.mdmctl("store", "pack")
        self.assertEqual(code, 1)
        self.assertIn("zeopack", err)


class ManholePasswordTests(AdminTestCase):
    async def test_works_without_the_daemon(self) -> None:
        """
        mdmctl manhole-password writes a scrypt entry without talking to the
        daemon, to --file or to the configured password file.
        """
        from mdmd.enroll.users import verify_password

        config = os.path.join(self.state_dir, "offline.conf")
        with open(config, "w") as f:
            f.write(f"[server]\nstate_dir = {self.state_dir}/nowhere\n")
        path = os.path.join(self.state_dir, "manhole.passwd")

        def run(*argv: str, stdin: str) -> tuple[int, str, str]:
            out, err = io.StringIO(), io.StringIO()
            old = sys.stdin
            sys.stdin = io.StringIO(stdin)
            try:
                return cli.main(["--config", config, *argv], out, err), out.getvalue(), err.getvalue()
            finally:
                sys.stdin = old

        code, out, err = await deferToThread(run, "manhole-password", "ops", "--file", path, stdin="s3cret\n")
        self.assertEqual((code, out, err), (0, f"added manhole login ops in {path}\n", ""))
        with open(path) as f:
            name, hashed = f.read().strip().split(":", 1)
        self.assertEqual(name, "ops")
        self.assertTrue(verify_password(hashed, "s3cret"))
        code, out, _ = await deferToThread(run, "manhole-password", "ops", stdin="other\n")
        default = os.path.join(self.state_dir, "nowhere", "manhole.passwd")
        self.assertEqual(out, f"added manhole login ops in {default}\n")
        code, _, err = await deferToThread(run, "manhole-password", "a:b", "--file", path, stdin="x\n")
        self.assertEqual(code, 1)
        self.assertIn("is not a manhole login name", err)


SETTINGS = RegistrationSettings(server_id="mdmd", inventory=("./DevInfo/Man", "./DevDetail/FwV"))


class RegistrationAPITests(AdminTestCase):
    """
    Registering classic OMA DM devices, importing them, editing their accounts.
    """

    def api_options(self) -> dict[str, Any]:
        return {"registration": SETTINGS}

    def post(self, path: str, body: Any) -> Deferred[tuple[int, dict[str, str], Any]]:
        return self.raw("POST", path, json.dumps(body).encode())

    async def test_register(self) -> None:
        """
        POST /v1/devices answers 201 with the record (no secrets), the
        generated secrets once and the whole account row; showing the device
        never shows them again; the list filters by kind.
        """
        code, _, value = await self.post("/v1/devices", {"device_id": "IMEI:490154203237518", "msisdn": "+491701234567"})
        self.assertEqual(code, 201)
        secret = value["secrets"]["client_secret"]
        self.assertEqual(sorted(value["secrets"]), ["client_secret", "server_secret"])
        self.assertEqual(value["row"]["client_secret"], secret)
        self.assertEqual((value["device"]["kind"], value["inventory"]), ("omadm", 2))
        self.assertNotIn(secret, json.dumps(value["device"]))
        shown = await self.call("GET", "/v1/devices/IMEI:490154203237518")
        self.assertNotIn(secret, json.dumps(shown))
        self.assertEqual(
            {k: shown["account"][k] for k in ("client_secret", "server_id", "effective_server_id", "certificate_required", "msisdn")},
            {"client_secret": "set", "server_id": "", "effective_server_id": "mdmd", "certificate_required": False,
             "msisdn": "+491701234567"},
        )
        self.assertEqual(shown["push"]["msisdn"], "+491701234567")
        await enroll_device(self, "WIN-1")
        listed = await self.call("GET", "/v1/devices?kind=omadm")
        self.assertEqual([d["device_id"] for d in listed["devices"]], ["IMEI:490154203237518"])
        listed = await self.call("GET", "/v1/devices?kind=windows")
        self.assertEqual([(d["device_id"], d["kind"]) for d in listed["devices"]], [("WIN-1", "windows")])
        code, _, value = await self.raw("GET", "/v1/devices?kind=pager")
        self.assertEqual((code, value["error"]), (400, "unknown kind 'pager' (kinds: windows, omadm)"))

    async def test_register_refusals(self) -> None:
        """
        Bad fields are a 400 naming each; a known device is a 409.
        """
        code, _, value = await self.post("/v1/devices", {"device_id": "X", "client_auth": "md5", "imsi": "1"})
        self.assertEqual(code, 400)
        self.assertEqual(value["error"], "client_auth: expected one of basic, digest, hmac, got 'md5'; imsi: expected 6 to 15 digits, got '1'")
        await enroll_device(self, "WIN-1")
        code, _, value = await self.post("/v1/devices", {"device_id": "WIN-1"})
        self.assertEqual((code, value["error"]), (409, "device WIN-1 is an enrolled Windows device"))

    async def test_import(self) -> None:
        """
        POST /v1/devices:import: a dry run writes nothing; the real import
        registers all (201) and is idempotent (200, unchanged); bad rows are
        one 400 listing each, conflicts only a 409; a large import passes the
        64 KiB limit of the other routes.
        """
        rows = [{"device_id": f"MODEM-{i:04}", "imsi": f"26201{i:010}"} for i in range(300)]
        code, _, checked = await self.post("/v1/devices:import", {"devices": rows, "dry_run": True})
        self.assertEqual((code, checked["dry_run"], len(checked["registered"])), (200, True, 300))
        self.assertEqual(await self.call("GET", "/v1/devices"), {"devices": []})
        complete = [r["row"] for r in checked["rows"]]
        body = json.dumps({"devices": complete}).encode()
        self.assertGreater(len(body), 64 * 1024)
        code, _, imported = await self.raw("POST", "/v1/devices:import", body)
        self.assertEqual((code, len(imported["registered"])), (201, 300))
        code, _, again = await self.raw("POST", "/v1/devices:import", body)
        self.assertEqual((code, again["registered"], len(again["unchanged"])), (200, [], 300))
        code, _, refused = await self.post(
            "/v1/devices:import", {"devices": [{"device_id": "NEW"}, {"device_id": "BAD", "imsi": "x"}, {"device_id": "MODEM-0001", "msisdn": "+491701234567"}]}
        )
        self.assertEqual((code, refused["error"]), (400, "2 bad rows; nothing was imported"))
        self.assertEqual([(r["row"], r["device_id"], r["conflict"]) for r in refused["rows"]], [(1, "BAD", False), (2, "MODEM-0001", True)])
        code, _, refused = await self.post("/v1/devices:import", {"devices": [{"device_id": "MODEM-0001", "client_name": "x"}]})
        self.assertEqual(code, 409)
        for body_value, message in (
            ({"devices": "x"}, "field 'devices' must be a list"),
            ({"devices": [1]}, "'devices' must be a list of JSON objects"),
            ({"devices": [], "dry": True}, "unknown field 'dry'"),
        ):
            code, _, value = await self.post("/v1/devices:import", body_value)
            self.assertEqual(code, 400)
            self.assertIn(message, value["error"])
        code, _, value = await self.raw("POST", "/v1/devices", body)
        self.assertEqual(code, 413)
        self.assertIn("request body too large (at most 65536 bytes)", value["error"])

    async def test_edit(self) -> None:
        """
        PATCH changes account fields and generates new secrets (shown once);
        a Windows device's enrollment fields are refused with a 409.
        """
        await self.call("POST", "/v1/devices", {"device_id": "OMA-1"})
        changed = await self.call("PATCH", "/v1/devices/OMA-1", {"client_auth": "basic", "imsi": "262011234567890", "generate": ["server_secret"]})
        self.assertEqual((changed["device"]["account"]["client_auth"], changed["device"]["account"]["imsi"]), ("basic", "262011234567890"))
        self.assertEqual(list(changed["secrets"]), ["server_secret"])
        await enroll_device(self, "WIN-1")
        code, _, value = await self.raw("PATCH", "/v1/devices/WIN-1", json.dumps({"client_name": "x"}).encode())
        self.assertEqual(code, 409)
        self.assertIn("come from its enrollment", value["error"])
        code, _, value = await self.raw("PATCH", "/v1/devices/OMA-1", json.dumps({"generate": "all"}).encode())
        self.assertEqual((code, value["error"]), (400, "'generate' must be a list of field names"))


class MdmctlAccountTests(AdminTestCase):
    """
    mdmctl device add, set, show, list and import for classic devices.
    """

    def api_options(self) -> dict[str, Any]:
        return {"registration": SETTINGS}

    def path(self, name: str) -> str:
        return os.path.join(self.state_dir, name)

    def stored(self, device_id: str, *names: str) -> tuple[Any, ...]:
        assert self.store.store is not None
        return self.store.store.read(lambda root: tuple(getattr(root["devices"][device_id], n) for n in names))

    async def test_add_shows_generated_secrets_once(self) -> None:
        """
        device add prints the generated secrets once; device show never
        shows them, but everything else of the account.
        """
        code, out, err = await self.mdmctl("device", "add", "IMEI:490154203237518", "--msisdn", "+491701234567")
        self.assertEqual((code, err), (0, ""))
        secrets = self.stored("IMEI:490154203237518", "dm_client_secret", "dm_server_secret")
        self.assertEqual(
            out.splitlines(),
            [
                "registered IMEI:490154203237518 (omadm): server id the configured provider id, client digest "
                "as IMEI:490154203237518, server digest as mdmd; 2 inventory Get(s) queued",
                f"client secret: {secrets[0]}",
                f"server secret: {secrets[1]}",
                "(shown this once: mdmd never shows a secret again)",
            ],
        )
        code, out, _ = await self.mdmctl("device", "show", "IMEI:490154203237518")
        self.assertNotIn(secrets[0], out)
        self.assertNotIn(secrets[1], out)
        nonce = base64.b64encode(self.stored("IMEI:490154203237518", "dm_client_nonce")[0]).decode()
        for line in (
            "kind:                  omadm",
            "server_id:             mdmd (the configured provider id)",
            "client_auth:           digest, name IMEI:490154203237518, secret set",
            f"client_nonce:          {nonce}",
            "server_auth:           digest, name mdmd, secret set",
            "imsi:                  -",
            "client_certificate:    optional (the default for omadm devices)",
            "msisdn:                +491701234567",
            "certificate:           -",
        ):
            self.assertIn(line, out.splitlines())

    async def test_add_with_a_secrets_file(self) -> None:
        """
        With --secrets-file the whole account goes to a new 0600 file in the
        import format and nothing secret to the terminal; an existing file is
        never written over, and then nothing is registered.
        """
        path = self.path("oma-1.csv")
        code, out, err = await self.mdmctl("device", "add", "OMA-1", "--auth", "basic", "--secrets-file", path)
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path, newline="") as f:
            (row,) = list(csv.DictReader(f))
        secrets = self.stored("OMA-1", "dm_client_secret", "dm_server_secret")
        self.assertEqual((row["client_secret"], row["server_secret"], row["client_auth"]), (*secrets, "basic"))
        self.assertNotIn(secrets[0], out)
        self.assertIn(f"its account, secrets included, is in {path} (mode 0600)", out)
        code, _, err = await self.mdmctl("device", "add", "OMA-2", "--secrets-file", path)
        self.assertEqual((code, err), (1, f"mdmctl: {path} exists: secrets are never written over a file\n"))
        self.assertEqual((await self.call("GET", "/v1/devices?kind=omadm"))["devices"][0]["device_id"], "OMA-1")
        self.assertEqual(len((await self.call("GET", "/v1/devices"))["devices"]), 1)

    async def test_secrets_never_on_the_command_line(self) -> None:
        """
        An option that would carry a secret on the command line is refused
        (usage error, the value never repeated) and nothing is registered.
        """
        for argv in (
            ("device", "add", "OMA-1", "--client-secret", "hunter2-xyz"),
            ("device", "add", "OMA-1", "--server-secret=hunter2-xyz"),
            ("device", "add", "OMA-1", "--secret", "hunter2-xyz"),
            ("device", "set", "OMA-1", "--client-secret", "hunter2-xyz"),
            ("device", "set", "OMA-1", "--password", "hunter2-xyz"),
        ):
            out, err = io.StringIO(), io.StringIO()
            with self.assertRaises(SystemExit) as caught:
                cli.main(["--config", self.config_path, *argv], out, err)
            self.assertEqual(caught.exception.code, 2, argv)
        self.assertEqual((await self.call("GET", "/v1/devices"))["devices"], [])

    def test_refusal_message(self) -> None:
        """
        The refusal says why and what to use instead, without the value.
        """
        err = io.StringIO()
        parser = cli.build_parser()
        self.patch(sys, "stderr", err)
        with self.assertRaises(SystemExit):
            parser.parse_args(["device", "add", "X", "--client-secret=hunter2-xyz"])
        self.assertIn("--client-secret: secrets are never taken on the command line", err.getvalue())
        self.assertIn("--client-secret-file", err.getvalue())
        self.assertNotIn("hunter2-xyz", err.getvalue())

    async def test_secrets_from_stdin_and_files(self) -> None:
        """
        Secrets are read from standard input (-) or the first line of a file; nothing is generated then.
        """
        path = self.path("server.secret")
        with open(path, "w") as f:
            f.write("from-a-file\nignored\n")
        code, out, err = await self.mdmctl(
            "device", "add", "OMA-1", "--client-secret-file", "-", "--server-secret-file", path, stdin="from-stdin\n"
        )
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(self.stored("OMA-1", "dm_client_secret", "dm_server_secret"), ("from-stdin", "from-a-file"))
        self.assertNotIn("secret:", out)
        code, _, err = await self.mdmctl("device", "add", "OMA-2", "--client-secret-file", "-", "--server-secret-file", "-")
        self.assertEqual((code, err), (1, "mdmctl: only one secret can come from standard input\n"))

    async def test_set(self) -> None:
        """
        device set changes account fields one line each, replaces secrets and
        prints a generated one once (or writes it to a 0600 file).
        """
        await self.mdmctl("device", "add", "OMA-1", "--secrets-file", self.path("first.csv"))
        code, out, err = await self.mdmctl(
            "device", "set", "OMA-1", "--auth", "hmac", "--client-name", "modem", "--client-certificate", "required",
            "--server-id", "acme", "--new-server-secret",
        )
        self.assertEqual((code, err), (0, ""))
        secret = self.stored("OMA-1", "dm_server_secret")[0]
        self.assertEqual(
            out.splitlines(),
            [
                "OMA-1: server_id acme",
                "OMA-1: client_auth hmac",
                "OMA-1: client_name modem",
                "OMA-1: client_certificate required",
                f"OMA-1: new server secret: {secret} (shown this once)",
            ],
        )
        path = self.path("new.csv")
        code, out, _ = await self.mdmctl("device", "set", "OMA-1", "--new-client-secret", "--secrets-file", path, "--server-id", "")
        self.assertEqual(out.splitlines(), ["OMA-1: server_id cleared", f"OMA-1: new client_secret in {path} (mode 0600)"])
        with open(path, newline="") as f:
            (row,) = list(csv.DictReader(f))
        self.assertEqual(row["client_secret"], self.stored("OMA-1", "dm_client_secret")[0])
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    async def test_list_shows_kinds(self) -> None:
        """
        With classic devices, device list has a KIND column; --kind filters.
        """
        await enroll_device(self, "WIN-1")
        await self.mdmctl("device", "add", "OMA-1", "--secrets-file", self.path("a.csv"))
        code, out, _ = await self.mdmctl("device", "list")
        self.assertEqual(out.splitlines()[0].split()[:3], ["DEVICE", "KIND", "NAME"])
        self.assertEqual([line.split()[:2] for line in out.splitlines()[1:]], [["OMA-1", "omadm"], ["WIN-1", "windows"]])
        code, out, _ = await self.mdmctl("device", "list", "--kind", "windows")
        self.assertEqual(out.splitlines()[0].split()[:2], ["DEVICE", "NAME"])
        self.assertEqual(len(out.splitlines()), 2)

    def write_csv(self, name: str, text: str) -> str:
        path = self.path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    async def test_import_reports_every_bad_row(self) -> None:
        """
        Every bad row is reported with its line and reason (its own fields,
        a duplicate, a wrong number of fields, a known device) and nothing is
        imported.
        """
        await self.mdmctl("device", "add", "KNOWN", "--secrets-file", self.path("known.csv"))
        path = self.write_csv(
            "fleet.csv",
            "device_id, imsi, msisdn\n"
            "GOOD-1, 262011234567890, +491701234567\n"
            "\n"
            "BAD-IMSI, 12,\n"
            "GOOD-1,,\n"
            "SHORT\n"
            "KNOWN,, +491709999999\n"
            '"GOOD-2", 262011234567891, ""\n'
            "bad id,,\n",
        )
        code, out, err = await self.mdmctl("device", "import", path, "--secrets-file", self.path("out.csv"))
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(
            err.splitlines(),
            [
                f"{path}:4: BAD-IMSI: imsi: expected 6 to 15 digits, got '12'",
                f"{path}:5: GOOD-1: also on line 2",
                f"{path}:6: 1 fields, but the header names 3",
                f"{path}:7: KNOWN: device KNOWN is registered already with other values (msisdn)",
                f"{path}:9: bad id: device_id: 'bad id' is not usable (1 to 128 of A-Z a-z 0-9 {{ }} . _ : -)",
                f"mdmctl: 5 bad rows in {path}; nothing was imported",
            ],
        )
        self.assertFalse(os.path.exists(self.path("out.csv")))
        self.assertEqual([d["device_id"] for d in (await self.call("GET", "/v1/devices"))["devices"]], ["KNOWN"])

    async def test_import_writes_secrets_to_a_file_only(self) -> None:
        """
        An import whose rows lack secrets needs --secrets-file (and imports
        nothing without it); with it the completed rows go to a new 0600 file
        and nothing secret to the terminal; that file imports again unchanged.
        """
        path = self.write_csv("fleet.csv", "device_id,client_secret,server_secret,msisdn\nM-1,own-1,own-2,\nM-2,,,+491701234567\n")
        code, _, err = await self.mdmctl("device", "import", path)
        self.assertEqual(code, 1)
        self.assertIn("1 device(s) of", err)
        self.assertIn("--secrets-file PATH", err)
        self.assertEqual((await self.call("GET", "/v1/devices"))["devices"], [])
        code, out, _ = await self.mdmctl("device", "import", path, "--dry-run")
        self.assertEqual((code, out), (0, f"{path}: 2 device(s) to register, 0 unchanged, 1 with generated secrets (a dry run: nothing was imported)\n"))
        secrets_path = self.path("fleet-secrets.csv")
        code, out, err = await self.mdmctl("device", "import", path, "--secrets-file", secrets_path)
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(
            out.splitlines(),
            [f"{path}: 2 device(s) registered, 0 unchanged (registered before with these values)",
             f"their accounts, secrets included, are in {secrets_path} (mode 0600)"],
        )
        self.assertEqual(stat.S_IMODE(os.stat(secrets_path).st_mode), 0o600)
        with open(secrets_path, newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(tuple(rows[0]), cli.IMPORT_COLUMNS)
        stored = self.stored("M-2", "dm_client_secret", "dm_server_secret", "msisdn")
        self.assertEqual((rows[1]["client_secret"], rows[1]["server_secret"], rows[1]["msisdn"]), stored)
        self.assertEqual((rows[0]["client_secret"], rows[0]["server_secret"]), ("own-1", "own-2"))
        self.assertNotIn(stored[0], out)
        code, out, _ = await self.mdmctl("device", "import", secrets_path)
        self.assertEqual(out, f"{secrets_path}: 0 device(s) registered, 2 unchanged (registered before with these values)\n")

    async def test_import_header(self) -> None:
        """
        A header with unknown columns, or without device_id, stops the import at line 1.
        """
        path = self.write_csv("fleet.csv", "\nid,colour\nX,blue\n")
        code, _, err = await self.mdmctl("device", "import", path)
        self.assertEqual(code, 1)
        self.assertIn(f"{path}:2: the header row has unknown column(s) 'id', 'colour'; no device_id column", err)

    def test_columns(self) -> None:
        """
        mdmctl's import columns are the registration's (kept apart for mdmctl's start-up time).
        """
        self.assertEqual(cli.IMPORT_COLUMNS, COLUMNS)


class IdempotencyAPITests(AdminTestCase):
    """
    Idempotency-Key on the creating routes (L{mdmd.admin.idempotency}), and
    mdmctl sending one and retrying a request whose answer was lost.
    """

    def api_options(self) -> dict[str, Any]:
        return {"registration": SETTINGS}

    async def twice(self, path: str, body: Any, key: str) -> tuple[Any, Any]:
        """
        The same request sent twice with C{key}: both answers (status, headers, value).
        """
        encoded = json.dumps(body).encode()
        first = await self.raw("POST", path, encoded, {"Idempotency-Key": key})
        second = await self.raw("POST", path, encoded, {"Idempotency-Key": key})
        return first, second

    async def queue_length(self, device_id: str) -> int:
        return len((await self.call("GET", f"/v1/devices/{device_id}/queue"))["commands"])

    async def test_replayed_not_done_again(self) -> None:
        """
        A user added twice with one key is added once: the second answer is the
        first one, marked Idempotent-Replayed; the key with another body is a
        422; without a key the second add is the usual 409; routes that create
        nothing ignore the header.
        """
        first, second = await self.twice("/v1/users", {"name": "eve", "password": "pw-of-eve"}, "add-eve")
        self.assertEqual((first[0], second[0]), (201, 201))
        self.assertEqual(second[2], first[2])
        self.assertNotIn("idempotent-replayed", first[1])
        self.assertEqual(second[1]["idempotent-replayed"], "true")
        self.assertEqual([u["name"] for u in (await self.call("GET", "/v1/users"))["users"]], ["eve"])
        code, _, value = await self.raw(
            "POST", "/v1/users", b'{"name": "bob", "password": "pw-of-bob"}', {"Idempotency-Key": "add-eve"}
        )
        self.assertEqual((code, value["error"]), (422, "Idempotency-Key 'add-eve' was used for another request"))
        code, _, value = await self.raw("POST", "/v1/users", b'{"name": "eve", "password": "pw-of-eve"}')
        self.assertEqual(code, 409)
        code, _, value = await self.raw("POST", "/v1/users", b"{}", {"Idempotency-Key": " "})
        self.assertEqual((code, value["error"]), (400, "an Idempotency-Key is 1 to 255 printable ASCII characters"))
        for _ in range(2):
            code, headers, value = await self.raw("POST", "/v1/users/eve/disable", b"", {"Idempotency-Key": "off"})
            self.assertEqual((code, value["enabled"]), (200, False))
            self.assertNotIn("idempotent-replayed", headers)

    async def test_every_creating_route(self) -> None:
        """
        Registering a device, importing devices and queuing commands (for one
        device or several) each happen once for two requests with one key.
        """
        await enroll_device(self, "DEV-1")
        for path, body in (
            ("/v1/devices", {"device_id": "IMEI:490154203237518"}),
            ("/v1/devices:import", {"devices": [{"device_id": "MODEM-1"}, {"device_id": "MODEM-2"}]}),
            ("/v1/devices/DEV-1/commands", {"verb": "Get", "target": "./DevInfo/Mod"}),
            ("/v1/commands", {"devices": ["DEV-1"], "command": {"verb": "Get", "target": "./DevInfo/Man"}}),
        ):
            first, second = await self.twice(path, body, f"key {path}")
            self.assertEqual((first[0], second[0], second[2]), (201, 201, first[2]), path)
            self.assertEqual(second[1]["idempotent-replayed"], "true")
        devices = (await self.call("GET", "/v1/devices?kind=omadm"))["devices"]
        self.assertEqual(sorted(d["device_id"] for d in devices), ["IMEI:490154203237518", "MODEM-1", "MODEM-2"])
        self.assertEqual(await self.queue_length("DEV-1"), 2)

    async def test_lost_answer_retried_creates_once(self) -> None:
        """
        A request whose connection closes before its answer is read is carried
        out; sent again with its key, it is answered from the store and creates
        nothing more. mdmctl does that by itself: it sends a key and retries
        when the answer is lost.
        """
        await enroll_device(self, "DEV-1")
        body = b'{"verb": "Get", "target": "./DevInfo/Mod"}'
        request = (
            b"POST /v1/devices/DEV-1/commands HTTP/1.1\r\nHost: localhost\r\n"
            b"Authorization: Bearer " + self.token.value + b"\r\nIdempotency-Key: lost-1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        ) + body

        def send_and_hang_up() -> None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(self.socket_path)
                sock.sendall(request)

        await deferToThread(send_and_hang_up)
        for _ in range(100):
            if await self.queue_length("DEV-1"):
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(await self.queue_length("DEV-1"), 1)
        code, headers, value = await self.raw("POST", "/v1/devices/DEV-1/commands", body, {"Idempotency-Key": "lost-1"})
        self.assertEqual((code, headers["idempotent-replayed"], value["commands"][0]["seq"]), (201, "true", 1))
        self.assertEqual(await self.queue_length("DEV-1"), 1)

        sent: list[int] = []
        real = http.client.HTTPConnection.getresponse

        def lossy(connection: http.client.HTTPConnection) -> http.client.HTTPResponse:
            sent.append(1)  # the request is out: its answer is lost the first time
            if len(sent) == 1:
                assert connection.sock is not None
                connection.sock.close()
                raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
            return real(connection)

        keys: list[str] = []
        real_request = http.client.HTTPConnection.request

        def recording(connection: http.client.HTTPConnection, method: str, url: str, body: Any = None, headers: Any = None) -> None:
            keys.append((headers or {}).get("Idempotency-Key", ""))
            real_request(connection, method, url, body=body, headers=headers or {})

        self.patch(http.client.HTTPConnection, "getresponse", lossy)
        self.patch(http.client.HTTPConnection, "request", recording)
        code, out, err = await self.mdmctl("cmd", "DEV-1", "get", "./DevInfo/Man")
        self.assertEqual((code, out, err), (0, "queued command 2 for DEV-1\n", ""))
        self.assertEqual(len(sent), 2)
        self.assertEqual(len(set(keys)), 1)
        self.assertGreaterEqual(len(keys[0]), 16)
        self.assertEqual(await self.queue_length("DEV-1"), 2)

    async def test_mdmctl_reports_a_lost_answer(self) -> None:
        """
        When every answer is lost after the request was sent (a peer that
        reads and hangs up), mdmctl retries for its time, then says the request
        may have been carried out, in one line.
        """
        path = os.path.join(self.state_dir, "hangup.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(path)
        listener.listen(8)
        accepted: list[int] = []

        def hang_up() -> None:
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                connection.recv(65536)
                accepted.append(1)
                connection.close()

        IReactorThreads(reactor).callInThread(hang_up)
        client = AdminClient(f"unix:{path}", "token", retry_for=0.5)
        with self.assertRaises(CommandError) as caught:
            await deferToThread(client.request, "POST", "/v1/users", {"name": "x", "password": "long-enough"})
        listener.shutdown(socket.SHUT_RDWR)
        self.assertIn(f"cannot reach mdmd's admin API at unix:{path}", str(caught.exception))
        self.assertIn("the request may have been carried out", str(caught.exception))
        self.assertEqual(len(str(caught.exception).splitlines()), 1)
        self.assertGreaterEqual(len(accepted), 2)


class PushIdempotencyTests(PushAPITests):
    """
    Pushes with an Idempotency-Key: the answer is stored in the transaction
    that queues the jobs.
    """

    async def test_push_once(self) -> None:
        """
        Two pushes with one key make one job; the replay shows the job as it
        was queued (the first answer, after the spool wrote it, as submitted).
        """
        await enroll_device(self, "DEV-1")
        await self.call("PATCH", "/v1/devices/DEV-1", {"msisdn": "+491701234567"})
        for path, body in (("/v1/devices/DEV-1/pushes", b""), ("/v1/pushes", b'{"devices": ["DEV-1"]}')):
            first = await self.raw("POST", path, body, {"Idempotency-Key": f"wake {path}"})
            second = await self.raw("POST", path, body, {"Idempotency-Key": f"wake {path}"})
            self.assertEqual((first[0], second[0], second[1]["idempotent-replayed"]), (201, 201, "true"))
            self.assertEqual(first[2]["jobs"][0]["state"], "submitted")
            self.assertEqual(
                [(j["seq"], j["state"]) for j in second[2]["jobs"]], [(first[2]["jobs"][0]["seq"], "queued")]
            )
        listed = await self.call("GET", "/v1/pushes?device=DEV-1")
        self.assertEqual([j["seq"] for j in listed["jobs"]], [1, 2])


class BootstrapIdempotencyTests(BootstrapAPITests):
    """
    A bootstrap with an Idempotency-Key is queued once.
    """

    async def test_bootstrap_once(self) -> None:
        """
        Two bootstraps with one key make one job.
        """
        from ..notify.cp import add_classic_device

        await self.store.transact(add_classic_device, "C1")
        first = await self.raw("POST", "/v1/devices/C1/bootstrap", b'{"pin": "netwpin"}', {"Idempotency-Key": "boot"})
        second = await self.raw("POST", "/v1/devices/C1/bootstrap", b'{"pin": "netwpin"}', {"Idempotency-Key": "boot"})
        self.assertEqual((first[0], second[0], second[1]["idempotent-replayed"]), (201, 201, "true"))
        self.assertEqual(second[2]["job"]["seq"], first[2]["job"]["seq"])
        listed = await self.call("GET", "/v1/pushes?device=C1")
        self.assertEqual([j["seq"] for j in listed["jobs"]], [1])


class PagingAPITests(AdminTestCase):
    """
    Every listing in pages: limits, cursors, order, filters; and mdmctl on top.
    """

    async def fleet(self) -> None:
        from mdmd.devices import lifecycle, records
        from mdmd.notify import jobs
        from mdmd.testing import fleet
        from mdmd.testing.randomness import fixed_random

        ca = fleet.FleetCA()

        def made(root: Any) -> None:
            for n in range(5):
                fleet.enroll(root, ca, f"W{n}", 1000.0, user="bob" if n == 4 else "alice@example.com")
            for n in range(3):
                fleet.register(root, f"C{n}", 1000.0)
            fleet.renew(root, ca, "W1", 1100.0)
            lifecycle.record_contact(root["devices"]["W0"], 5000.0)
            records.remove(root, "W3", 1200.0)
            for n in range(4):
                seq = fleet.queue_get(root, "W0", 1300.0 + n)
                if n < 2:
                    fleet.send_and_answer(root, "W0", seq, 1400.0 + n)
            jobs.enqueue(root, ["C0", "C1"], jobs.PushSettings(), 1500.0, fixed_random())
            jobs.enqueue(root, ["C0"], jobs.PushSettings(), 1600.0, fixed_random())

        await self.store.transact(made)
        for name in ("ann", "Bea", "cid"):
            await self.store.transact(users.add_user, name, "h", 1.0)

    async def every(self, path: str, key: str) -> tuple[list[Any], int]:
        """
        Every record of a listing, following the cursors; and how many pages it took.
        """
        found: list[Any] = []
        pages = 0
        cursor = None
        while True:
            separator = "&" if "?" in path else "?"
            page = await self.call("GET", path + (f"{separator}cursor={cursor}" if cursor else ""))
            found += page[key]
            pages += 1
            cursor = page.get("next")
            if cursor is None:
                return found, pages

    async def test_devices(self) -> None:
        """
        Devices page by DeviceID and filter by status, kind, user and last contact.
        """
        await self.fleet()
        found, pages = await self.every("/v1/devices?limit=3", "devices")
        self.assertEqual([d["device_id"] for d in found], ["C0", "C1", "C2", "W0", "W1", "W2", "W3", "W4"])
        self.assertEqual(pages, 3)
        for query, expected in (
            ("status=removed", ["W3"]),
            ("kind=omadm&limit=2", ["C0", "C1", "C2"]),
            ("kind=windows&status=enrolled", ["W0", "W1", "W2", "W4"]),
            ("user=BOB", ["W4"]),
            ("contact_after=4000", ["W0"]),
            ("contact_before=4000&kind=windows", ["W1", "W2", "W3", "W4"]),
        ):
            found, _ = await self.every(f"/v1/devices?{query}", "devices")
            self.assertEqual([d["device_id"] for d in found], expected, query)

    async def test_refusals(self) -> None:
        """
        A bad cursor, limit, filter value or order is a 400 naming it.
        """
        await self.fleet()
        page = await self.call("GET", "/v1/certs?limit=1")
        for path, message in (
            ("/v1/devices?cursor=garbage", "not a cursor"),
            (f"/v1/devices?cursor={page['next']}", "the cursor is of another listing"),
            ("/v1/devices?limit=ten", "limit must be a whole number"),
            ("/v1/devices?status=lost", "unknown status 'lost' (statuses: enrolled, unenrolled, removed)"),
            ("/v1/devices?kind=phone", "unknown kind 'phone' (kinds: windows, omadm)"),
            ("/v1/devices?contact_before=monday", "contact_before must be a time in POSIX seconds"),
            ("/v1/devices?order=desc", "devices are listed in one order only"),
            ("/v1/devices?order=up", "unknown order 'up'"),
            ("/v1/devices/W0/commands?state=lost", "unknown state 'lost'"),
            ("/v1/certs?status=expired", "unknown status 'expired'"),
            ("/v1/pushes?kind=sms", "unknown kind 'sms'"),
        ):
            code, _, value = await self.raw("GET", path)
            self.assertEqual(code, 400, (path, value))
            self.assertIn(message, value["error"])
        code, _, value = await self.raw("GET", "/v1/devices/NOPE/commands")
        self.assertEqual(code, 404)

    async def test_limits(self) -> None:
        """
        A page holds 100 records unless asked, and never more than 1000; the last page has no cursor.
        """
        from mdmd.testing import fleet

        def register(root: Any) -> None:
            for n in range(1050):
                fleet.register(root, f"C{n:04}", 1.0)

        await self.store.transact(register)
        page = await self.call("GET", "/v1/devices")
        self.assertEqual((len(page["devices"]), "next" in page), (100, True))
        page = await self.call("GET", "/v1/devices?limit=5000")
        self.assertEqual(len(page["devices"]), 1000)
        page = await self.call("GET", f"/v1/devices?limit=5000&cursor={page['next']}")
        self.assertEqual((len(page["devices"]), "next" in page), (50, False))

    async def test_certificates(self) -> None:
        """
        Certificates page by serial (filtered by status), a device's oldest first.
        """
        await self.fleet()
        found, _ = await self.every("/v1/certs?limit=2", "certificates")
        self.assertEqual(len(found), 6)
        self.assertEqual([c["serial"] for c in found], sorted((c["serial"] for c in found), key=lambda s: int(s, 16)))
        found, _ = await self.every("/v1/certs?device=W1&limit=1", "certificates")
        self.assertEqual([(c["issued_at"], c["status"]) for c in found], [(1000.0, "revoked"), (1100.0, "valid")])
        found, _ = await self.every("/v1/certs?status=revoked", "certificates")
        self.assertEqual(sorted(c["device_id"] for c in found), ["W1", "W3"])

    async def test_commands(self) -> None:
        """
        A device's commands, its queue and its results page by sequence number, newest first on asking.
        """
        await self.fleet()
        found, _ = await self.every("/v1/devices/W0/commands?limit=3", "commands")
        self.assertEqual([(c["seq"], c["state"]) for c in found], [(1, "done"), (2, "done"), (3, "queued"), (4, "queued")])
        found, _ = await self.every("/v1/devices/W0/commands?state=done&order=desc&limit=1", "commands")
        self.assertEqual([c["seq"] for c in found], [2, 1])
        found, _ = await self.every("/v1/devices/W0/queue", "commands")
        self.assertEqual([c["seq"] for c in found], [3, 4])
        page = await self.call("GET", "/v1/devices/W0/results?order=desc&limit=1")
        self.assertEqual([c["seq"] for c in page["commands"]], [2])

    async def test_pushes(self) -> None:
        """
        Jobs page in the order they were made, either way, by device, state and kind.
        """
        await self.fleet()
        found, _ = await self.every("/v1/pushes?limit=2", "jobs")
        self.assertEqual([(j["device_id"], j["seq"]) for j in found], [("C0", 1), ("C1", 1), ("C0", 2)])
        page = await self.call("GET", "/v1/pushes?order=desc&limit=1")
        self.assertEqual([(j["device_id"], j["seq"]) for j in page["jobs"]], [("C0", 2)])
        found, _ = await self.every("/v1/devices/C0/pushes?order=desc", "jobs")
        self.assertEqual([j["seq"] for j in found], [2, 1])
        found, _ = await self.every("/v1/pushes?device=C1&state=queued&kind=notification", "jobs")
        self.assertEqual([(j["device_id"], j["seq"]) for j in found], [("C1", 1)])

    async def test_users(self) -> None:
        """
        Users page by name.
        """
        await self.fleet()
        found, pages = await self.every("/v1/users?limit=2", "users")
        self.assertEqual(([u["name"] for u in found], pages), (["ann", "Bea", "cid"], 2))

    async def test_status_counters(self) -> None:
        """
        Status shows every counter: devices by status and kind, certificates,
        commands and pushes by state, users; mdmctl status prints them.
        """
        await self.fleet()
        status = await self.call("GET", "/v1/status")
        counters = status["counters"]
        self.assertEqual(counters["devices.status"], {"enrolled": 7, "unenrolled": 0, "removed": 1})
        self.assertEqual(counters["devices.kind"], {"windows": 5, "omadm": 3})
        self.assertEqual(counters["certificates.status"], {"valid": 4, "revoked": 2})
        self.assertEqual(counters["commands.state"]["done"], 2)
        self.assertEqual(counters["commands.state"]["queued"], 2)
        self.assertEqual(counters["pushes.state"]["queued"], 3)
        self.assertEqual(counters["users"], {"enabled": 3, "disabled": 0})
        self.assertEqual(status["counts"]["revoked_certificates"], 2)
        code, out, _ = await self.mdmctl("status")
        self.assertIn("devices:    kind: 3 omadm, 5 windows; status: 7 enrolled, 1 removed\n", out)
        self.assertIn("commands:   state: 2 done, 2 queued\n", out)
        self.assertIn("users:      3 enabled\n", out)

    async def test_mdmctl(self) -> None:
        """
        mdmctl device list filters and pages; --limit says when there is more;
        --json and --jsonl carry every record.
        """
        await self.fleet()
        code, out, err = await self.mdmctl("device", "list", "--kind", "omadm", "--limit", "2")
        self.assertEqual((code, [line.split()[0] for line in out.splitlines()]), (0, ["DEVICE", "C0", "C1"]))
        self.assertEqual(err, "mdmctl: only the first 2 devices (--limit N for more, --all for every one)\n")
        code, out, err = await self.mdmctl("device", "list", "--status", "removed", "--json")
        self.assertEqual(([d["device_id"] for d in json.loads(out)], err), (["W3"], ""))
        code, out, _ = await self.mdmctl("device", "list", "--all", "--jsonl")
        self.assertEqual(len([json.loads(line) for line in out.splitlines()]), 8)
        code, out, _ = await self.mdmctl("cert", "list", "--device", "W1", "--status", "valid", "--json")
        self.assertEqual([c["issued_at"] for c in json.loads(out)], [1100.0])
        code, out, _ = await self.mdmctl("results", "W0", "--limit", "1", "--json")
        self.assertEqual([c["seq"] for c in json.loads(out)], [2])
        code, out, _ = await self.mdmctl("queue", "W0", "--json")
        self.assertEqual([c["seq"] for c in json.loads(out)], [3, 4])
        code, out, _ = await self.mdmctl("push", "status", "--state", "queued", "--json")
        self.assertEqual(len(json.loads(out)), 3)


class StatusCountsTests(SynchronousTestCase):
    """
    Status reads counters, never records.
    """

    def loads(self, devices: int) -> int:
        """
        Objects status loads from a store of C{devices} enrolled devices with a command each.
        """
        import transaction

        from mdmd.admin.api import status_counts
        from mdmd.migrations import SCHEMA
        from mdmd.store.db import open_db
        from mdmd.store.migration import upgrade
        from mdmd.store.runner import Store
        from mdmd.testing import fleet

        store = Store(open_db("memory:"))
        self.addCleanup(store.db.close)
        store.initialize()
        upgrade(store, SCHEMA)
        ca = fleet.FleetCA()

        def made(root: Any) -> None:
            for n in range(devices):
                fleet.enroll(root, ca, f"D{n:05}", 1.0)
                fleet.queue_get(root, f"D{n:05}", 2.0)

        store.run(made)
        manager = transaction.TransactionManager(explicit=True)
        connection = store.db.open(transaction_manager=manager)
        connection.cacheMinimize()
        try:
            manager.begin()
            counts = status_counts(connection.root())
            loads, _ = connection.getTransferCounts()
            manager.abort()
        finally:
            connection.close()
        self.assertEqual(counts["counts"]["enrolled_devices"], devices)
        return int(loads)

    def test_no_walk(self) -> None:
        """
        Status loads as many objects for 500 devices as for 5: counters only.
        """
        self.assertEqual(self.loads(500), self.loads(5))
CAMERA_PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Camera/AllowCamera: 0 turns the camera off -->
<Replace>
  <CmdID>1</CmdID>
  <Item>
    <Target><LocURI>./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera</LocURI></Target>
    <Meta><Format xmlns="syncml:metinf">int</Format></Meta>
    <Data>0</Data>
  </Item>
</Replace>
"""


class DesiredStateAPITests(AdminTestCase):
    """
    Groups, profiles, assignments, compliance and device actions through mdmctl and the API.
    """

    def make_notifier(self) -> Notifier:
        from twisted.internet.task import Clock

        from mdmd.notify.jobs import PushSettings
        from mdmd.notify.notifier import Notifier
        from mdmd.notify.spool import SpoolTransport

        self.spool = os.path.join(self.state_dir, "spool")
        notifier = Notifier(self.store, PushSettings(), Clock(), transport=SpoolTransport(self.spool))
        notifier.startService()
        self.addCleanup(notifier.stopService)
        return notifier

    def api_options(self) -> dict[str, Any]:
        from mdmd.desired.reconciler import ProfileSettings

        return {"profiles": ProfileSettings(push_batch=2)}

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.state_dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    async def ok(self, *argv: str) -> str:
        code, out, err = await self.mdmctl(*argv)
        self.assertEqual(code, 0, err)
        return out

    async def devices(self, *device_ids: str) -> None:
        from mdmd.testing.devices import add_device

        for device_id in device_ids:
            await self.store.transact(add_device, device_id)

    async def test_profile_lifecycle(self) -> None:
        """
        mdmctl profile add, list, show, edit (a new version), assign, status, unassign, remove.
        """
        await self.devices("D1")
        path = self.write("camera.xml", CAMERA_PROFILE)
        self.assertIn("added profile camera (version 1)", await self.ok("profile", "add", "camera", path, "--description", "no camera"))
        (listed,) = json.loads(await self.ok("profile", "list", "--json"))
        self.assertEqual((listed["name"], listed["latest"], listed["description"]), ("camera", 1, "no camera"))
        shown = await self.ok("profile", "show", "camera")
        self.assertIn("<Data>0</Data>", shown)
        self.assertIn("version:  1 of 1", shown)
        self.assertIn("version 2", await self.ok("profile", "edit", "camera", self.write("v2.xml", CAMERA_PROFILE.replace(">0<", ">1<"))))
        self.assertIn("converge at their next check-in", await self.ok("profile", "assign", "camera", "--group", "windows"))
        self.assertEqual(json.loads(await self.ok("profile", "show", "camera", "--version", "1", "--json"))["version"]["version"], 1)
        status = json.loads(await self.ok("profile", "status", "camera", "--json"))
        self.assertEqual((status["version"], status["devices"]), (2, []))
        self.assertEqual(json.loads(await self.ok("group", "list", "--json"))[1]["profiles"], ["camera"])
        await self.ok("profile", "unassign", "camera", "--group", "windows")
        self.assertIn("removed profile camera", await self.ok("profile", "remove", "camera"))
        self.assertEqual(json.loads(await self.ok("profile", "list", "--json")), [])

    async def test_bad_profile_every_problem(self) -> None:
        """
        A bad profile file is refused with each problem on its own line, with the file and its line number.
        """
        path = self.write("bad.xml", "<Replace><Item><Target><LocURI>./A/$NOPE</LocURI></Target></Item></Replace>\n"
                          "<Get><Item><Target><LocURI>./B</LocURI></Target></Item></Get>\n")
        code, out, err = await self.mdmctl("profile", "add", "bad", path)
        self.assertEqual(code, 1)
        lines = err.splitlines()
        self.assertTrue(lines[0].startswith(f"{path}: line 1: unknown variable $NOPE"), lines)
        self.assertTrue(lines[1].startswith(f"{path}: line 2: <Get>"), lines)
        self.assertIn("2 problem(s); nothing was changed", lines[2])
        status, _, body = await self.raw("POST", "/v1/profiles", json.dumps({"name": "bad", "source": "<x/>"}).encode())
        self.assertEqual(status, 400)
        self.assertEqual(len(body["problems"]), 1)

    async def test_groups(self) -> None:
        """
        Static groups (made with members, added to, removed from), rule groups, list, show, remove.
        """
        await self.devices("D1", "D2")
        self.assertIn("created group lab: 1 member(s)", await self.ok("group", "add", "lab", "D1"))
        self.assertIn("added 1 device(s) to group lab (2 members)", await self.ok("group", "add", "lab", "D2"))
        self.assertIn("removed 1 device(s)", await self.ok("group", "remove", "lab", "D1"))
        self.assertIn("created group w11: rule ./DevDetail/SwV >= 10.0.22000",
                      await self.ok("group", "add", "w11", "--rule", "DevDetail/SwV >= 10.0.22000"))
        shown = json.loads(await self.ok("group", "show", "lab", "--json"))
        self.assertEqual((shown["members"], shown["member_page"]["devices"]), (1, ["D2"]))
        table = await self.ok("group", "list")
        self.assertIn("w11", table)
        self.assertIn("built-in", table)
        code, _, err = await self.mdmctl("group", "add", "w11", "D1")
        self.assertEqual(code, 1)
        self.assertIn("its rule decides its members", err)
        code, _, err = await self.mdmctl("group", "add", "bad", "--rule", "serial = 1")
        self.assertIn("unknown fact", err)
        self.assertIn("removed group lab", await self.ok("group", "remove", "lab"))

    async def test_report(self) -> None:
        """
        The report counts devices per state per profile, and lists one device's profiles.
        """
        await self.devices("D1")
        await self.ok("profile", "add", "camera", self.write("camera.xml", CAMERA_PROFILE))
        found = json.loads(await self.ok("report", "--json"))
        self.assertEqual(found["profiles"][0]["counts"]["verified"], 0)
        self.assertIn("PROFILE", await self.ok("report"))
        self.assertEqual(json.loads(await self.ok("report", "--device", "D1", "--json"))["profiles"], [])
        code, _, err = await self.mdmctl("report", "--device", "nobody")
        self.assertEqual(code, 1)

    async def test_device_actions(self) -> None:
        """
        A wipe needs --yes; it is queued and listed; a reboot of a device whose
        Windows version is unknown is refused (409) with the reason.
        """
        await self.devices("D1")
        code, _, err = await self.mdmctl("device", "wipe", "D1")
        self.assertEqual(code, 1)
        self.assertIn("--yes", err)
        self.assertIn("queued wipe of D1", await self.ok("device", "wipe", "D1", "--yes"))
        code, _, err = await self.mdmctl("device", "reboot", "D1")
        self.assertEqual(code, 1)
        self.assertIn("Windows 10 1607", err)
        (action,) = json.loads(await self.ok("device", "actions", "D1", "--json"))
        self.assertEqual((action["action"], action["state"]), ("wipe", "queued"))
        status, _, body = await self.raw("POST", "/v1/devices/D1/actions", json.dumps({"action": "wipe"}).encode())
        self.assertEqual(status, 400)
        self.assertIn("confirm", body["error"])
        status, _, _ = await self.raw("POST", "/v1/devices/D1/actions", json.dumps({"action": "reboot"}).encode())
        self.assertEqual(status, 409)

    async def test_assign_with_push(self) -> None:
        """
        An assignment with --push is answered at once and wakes the group's
        pushable members afterwards, a page at a time.
        """
        await self.devices("D1", "D2", "D3")
        await self.ok("profile", "add", "camera", self.write("camera.xml", CAMERA_PROFILE))
        out = await self.ok("profile", "assign", "camera", "--group", "all", "--push")
        self.assertIn("waking group all in batches of 2", out)
        from mdmd.notify import jobs

        for _ in range(100):
            found = await self.store.read(jobs.list_pushes, None, 10)
            if len(found) == 3:
                break
            await deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(sorted(j.device_id for j in found), ["D1", "D2", "D3"])
