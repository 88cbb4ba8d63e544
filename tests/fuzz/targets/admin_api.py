"""
Admin API requests (L{mdmd.admin.api.AdminAPI}) with JSON bodies, through
the admin listener's HTTP handling to its handlers and a memory store.

An input is C{METHOD PATH}, a newline, then the JSON body; the request
carries the right token and Content-Length (the token is not what this
fuzzes). A refusal is an L{AnsweredError}, answered with its status; an
uncaught error is what the resource would log with its traceback and
answer 500. The store starts afresh every L{_FRESH_EVERY} inputs, and
passwords are hashed with a cheap scrypt cost while fuzzing (what is
checked is the request, not the hash).
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from mdmd.admin.api import AdminAPI, AdminToken
from mdmd.enroll import users
from mdmd.errors import AnsweredError, PeerError
from mdmd.pki.authority import CAService, CASettings
from mdmd.site import MdmdRequest, MdmdSite
from mdmd.testing.reactor import ThreadedMemoryReactor
from mdmd.testing.store import SynchronousStoreService, memory_store_service
from tests.fuzz import mutate
from tests.fuzz.engine import Target

__all__ = ["target", "generate_seeds", "Uncaught"]

_TOKEN = b"fuzz-admin-token-0123456789abcdef"
_FRESH_EVERY = 2000


class Uncaught(AssertionError):
    """
    The API answered 500 without a failure logged (should not happen).
    """


class Answered(PeerError):
    """
    The API refused the request (its status and message, so that the run sees how far it got).
    """


class _RecordingAPI(AdminAPI):
    """
    The API, with the failures it would log with a traceback kept instead.
    """

    failures: list[Failure]

    def log_failed(self, request: MdmdRequest, failure: Failure) -> None:
        self.failures.append(failure)


class _Api:
    def __init__(self) -> None:
        self.state_dir = tempfile.mkdtemp(prefix="mdmd-fuzz-admin-")
        self.reactor = ThreadedMemoryReactor()
        self.reactor.advance(1767225600.0)
        self.store: SynchronousStoreService = memory_store_service()
        self.ca = CAService(
            CASettings(state_dir=self.state_dir, hostnames=("localhost",), key_size=2048),
            self.store,
            self.reactor,
        )
        self.ca.startService()
        token = AdminToken(f"{self.state_dir}/admin.token")
        with open(token.path, "wb") as f:
            f.write(_TOKEN)
        token.ensure()
        self.api = _RecordingAPI(token, self.store, self.ca, self.reactor, self.reactor)
        self.failures: list[Failure] = []
        self.api.failures = self.failures
        self.site = MdmdSite(self.api, clock=self.reactor, name="admin")
        self.count = 0

    def close(self) -> None:
        self.ca.stopService()
        self.store.stopService()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def request(self, data: bytes) -> bytes:
        self.count += 1
        if self.count % _FRESH_EVERY == 0:
            self.store.stopService()
            self.store.startService()
        head, _, body = data.partition(b"\n")
        method, _, path = head.partition(b" ")
        raw = (
            method + b" " + (path or b"/") + b" HTTP/1.1\r\nHost: localhost\r\n"
            b"Authorization: Bearer " + _TOKEN + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        ) + body
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 12345))
        assert channel is not None
        transport = StringTransport()
        channel.makeConnection(transport)
        self.failures.clear()
        cost = users.SCRYPT_N
        users.SCRYPT_N = 2  # see the module's docstring
        try:
            channel.dataReceived(raw)
        finally:
            users.SCRYPT_N = cost
            channel.connectionLost(Failure(ConnectionError("done")))
        if self.failures:
            self.failures[0].raiseException()
        answer = transport.value()
        status = answer[9:12]
        if status == b"500":
            raise Uncaught(answer[:300].decode("latin-1"))
        if status[:1] in (b"4", b"5"):
            raise Answered(status.decode("latin-1") + " " + answer.partition(b"\r\n\r\n")[2][:200].decode("utf-8", "replace"))
        return answer


@functools.cache
def _api() -> _Api:
    api = _Api()
    atexit.register(api.close)
    return api


def run(data: bytes) -> bytes:
    return _api().request(data)


def target() -> Target:
    return Target("admin_api", run, (AnsweredError,), mutate.JSON_BODY, bounded_inputs=1500)


_DEVICE = "IMEI:490154203237518"


#: A one-setting profile (Policy CSP Camera/AllowCamera).
_PROFILE = (
    "<Replace><CmdID>1</CmdID><Item><Target><LocURI>./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera"
    '</LocURI></Target><Meta><Format xmlns="syncml:metinf">int</Format></Meta><Data>0</Data></Item></Replace>'
)


def _request(method: str, path: str, body: Any = None) -> bytes:
    return f"{method} {path}\n".encode() + (b"" if body is None else json.dumps(body).encode())


def generate_seeds() -> dict[str, bytes]:
    command = {"verb": "Replace", "target": "./Vendor/MSFT/Policy/Config/Camera/AllowCamera", "data": "0", "format": "int"}
    device = {
        "device_id": _DEVICE,
        "kind": "omadm",
        "server_id": "com.example.mdm",
        "client_auth": "digest",
        "client_name": "client",
        "client_secret": "client-secret",
        "msisdn": "+491701234567",
        "imsi": "262011234567890",
    }
    return {
        "add-user": _request("POST", "/v1/users", {"name": "alice@example.com", "password": "a long password"}),
        "set-password": _request("PUT", "/v1/users/alice@example.com/password", {"password": "another one"}),
        "disable-user": _request("POST", "/v1/users/alice@example.com/disable", {}),
        "register-device": _request("POST", "/v1/devices", device),
        "import-devices": _request(
            "POST", "/v1/devices:import", {"devices": [device, dict(device, device_id="IMEI:1")], "dry_run": True}
        ),
        "edit-device": _request("PATCH", f"/v1/devices/{_DEVICE}", {"msisdn": "+491709999999", "generate": ["client_secret"]}),
        "queue-command": _request("POST", f"/v1/devices/{_DEVICE}/commands", command),
        "queue-atomic": _request(
            "POST",
            "/v1/commands",
            {"devices": [_DEVICE], "command": {"verb": "Atomic", "commands": [command, dict(command, verb="Add")]}},
        ),
        "queue-get": _request("POST", f"/v1/devices/{_DEVICE}/commands", {"verb": "Get", "target": "./DevInfo/Mod"}),
        "show-command": _request("GET", f"/v1/devices/{_DEVICE}/commands/1"),
        "cancel-command": _request("DELETE", f"/v1/devices/{_DEVICE}/commands/1"),
        "revoke": _request("POST", "/v1/certs/0A1B/revoke", {"reason": "keyCompromise"}),
        "bootstrap": _request("POST", f"/v1/devices/{_DEVICE}/bootstrap", {"pin": "userpin", "userpin": "1234"}),
        "push": _request("POST", "/v1/pushes", {"devices": [_DEVICE]}),
        "results": _request("GET", f"/v1/devices/{_DEVICE}/results?limit=5"),
        "list-pushes": _request("GET", "/v1/pushes?limit=5&state=queued&device=x"),
        "list-devices": _request("GET", "/v1/devices?kind=omadm"),
        "page-devices": _request(
            "GET", "/v1/devices?status=enrolled&limit=2&order=desc&contact_before=1800000000&cursor=WyJ4Il0"
        ),
        "page-certificates": _request("GET", f"/v1/certs?device={_DEVICE}&status=valid&limit=3"),
        "page-users": _request("GET", "/v1/users?limit=1&order=desc"),
        "status": _request("GET", "/v1/status"),
        "pack": _request("POST", "/v1/store/pack", {"days": 0.25}),
        "add-group": _request("POST", "/v1/groups", {"name": "lab", "devices": [_DEVICE], "description": "the lab"}),
        "add-rule-group": _request("POST", "/v1/groups", {"name": "new", "rule": "DevDetail/SwV >= 10.0.22000"}),
        "group-members": _request("POST", "/v1/groups/lab/members", {"devices": [_DEVICE, "IMEI:1"]}),
        "show-group": _request("GET", "/v1/groups/lab?limit=1&after=A"),
        "add-profile": _request(
            "POST", "/v1/profiles", {"name": "camera", "source": _PROFILE, "description": "camera off"}
        ),
        "edit-profile": _request("POST", "/v1/profiles/camera/versions", {"source": _PROFILE.replace(">0<", ">1<")}),
        "assign-profile": _request("POST", "/v1/profiles/camera/assignments", {"group": "lab", "push": False}),
        "profile-status": _request("GET", "/v1/profiles/camera/status?state=failed&limit=5"),
        "show-profile": _request("GET", "/v1/profiles/camera?version=1"),
        "report": _request("GET", "/v1/report?limit=3"),
        "device-action": _request("POST", f"/v1/devices/{_DEVICE}/actions", {"action": "wipe", "confirm": True}),
    }
