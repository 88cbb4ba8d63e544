"""
The JSON admin API that C{mdmctl} talks to.

It listens on a UNIX socket or a loopback port only, and every request must
carry C{Authorization: Bearer <token>} with the token the daemon wrote into
its state directory. Routes are declared on L{AdminAPI} with L{route}; each
returns C{(status, JSON value)} or raises: the domain's errors (an unknown
device, a user that exists, ...) go through as they are, and L{ApiError}s
are the mistakes only this API can see (its JSON body, a field, the route).
Every error is answered with the status its class declares and a JSON body
C{{"error": message}} (L{mdmd.errors}), plus what an error's C{details}
add (an import's bad rows); "busy" is a 503 with Retry-After.

Bodies are JSON objects of at most L{MAX_JSON_BODY} bytes, except an
import's (L{MAX_IMPORT_BODY}): a fleet of devices in one request, so that
it is registered in one transaction, all or nothing.

Routes that create something (declared with C{creates=True}) honour an
C{Idempotency-Key} header (L{mdmd.admin.idempotency}): the answer is stored
with the key in the transaction that creates, and the same request sent
again with the key gets that answer again (marked C{Idempotent-Replayed:
true}) instead of creating twice. Other routes ignore the header.

Every listing is paged (L{mdmd.store.paging}): C{limit} records at most
(100 unless asked, never more than 1000), C{cursor} the C{next} of the page
before, C{order=desc} newest first where a listing offers it. A page is one
unit of work that reads at most a bounded number of records and encodes its
own JSON on the store's thread, so the reactor only writes bytes. Status
reads counters only (L{status_counts}).
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web.server import Request

import mdmd
from mdmd.admin import idempotency
from mdmd.admin.idempotency import IdempotencyKey, IdempotencySettings, Replayed, encode
from mdmd.devices import accounts, registration
from mdmd.devices import records as devices
from mdmd.devices import lifecycle
from mdmd.devices.accounts import DeviceKind
from mdmd.devices.lifecycle import DeviceStatus
from mdmd.enroll import users
from mdmd.desired import actions as device_actions
from mdmd.desired import catalog, report
from mdmd.desired.profiles import MAX_PROFILE, Step, parse_profile
from mdmd.desired.reconciler import ProfileSettings
from mdmd.desired.wake import Woken, wake_group
from mdmd.errors import AnsweredError, PeerError
from mdmd.dm import queue as dm_queue
from mdmd.dm.command_state import CommandState
from mdmd.dm.csp import DeviceAction
from mdmd.dm.commands import PENDING, CommandSpec, parse_spec
from mdmd.dm.sweeper import dm_facts
from mdmd.config import MAX_PACK_KEEP_DAYS
from mdmd.migrations import FAMILIES
from mdmd.notify import channels
from mdmd.notify import jobs as push_jobs
from mdmd.notify.bootstrap import BootstrapPin
from mdmd.notify.routes import Via, parse_via
from mdmd.notify.notifier import Notifier
from mdmd.pki import registry
from mdmd.pki.ca import parse_serial, serial_hex, thumbprint
from mdmd.pki.authority import CAService, write_private
from mdmd.site import AsyncResource, Response, mdmd_request
from mdmd.store import counters
from mdmd.store.db import describe
from mdmd.store.paging import DEFAULT_LIMIT, MAX_LIMIT, Cursor, Page, PageRequest
from mdmd.store.runner import StoreService

__all__ = [
    "AdminAPI",
    "AdminToken",
    "ApiError",
    "WrongToken",
    "NoSuchEndpoint",
    "MethodNotAllowed",
    "BodyTooLarge",
    "PushUnavailable",
    "route",
    "MAX_JSON_BODY",
    "MAX_IMPORT_BODY",
    "MAX_BODY",
    "page_json",
    "status_counts",
]

JSON = b"application/json"
#: The largest JSON body of a route (but the import's).
MAX_JSON_BODY: Final = 64 * 1024
#: The largest import: registration.MAX_IMPORT devices of a few hundred bytes of JSON each, with room.
MAX_IMPORT_BODY: Final = 8 * 1024 * 1024
#: The largest request body the admin listener takes (its site's cap).
MAX_BODY: Final = MAX_IMPORT_BODY
#: The largest profile upload: its source (at most MAX_PROFILE) as a JSON string, escapes included.
MAX_PROFILE_BODY: Final = min(2 * MAX_PROFILE, MAX_BODY)
#: Actions that erase the device: the request must confirm them.
DESTRUCTIVE: Final = frozenset({DeviceAction.WIPE, DeviceAction.WIPE_PROTECTED, DeviceAction.WIPE_KEEP_PROVISIONING, DeviceAction.FACTORY_RESET})

log = Logger()

Handler = Callable[..., Awaitable[tuple[int, Any]]]
T = TypeVar("T")

#: A command number or a limit: ASCII digits, few enough for int() to read.
_NUMBER: Final = re.compile("[0-9]{1,18}")


class ApiError(PeerError):
    """
    A mistake only the admin API can see: its JSON body, a field, a query
    argument or a path segment (400 unless a subclass says otherwise).
    """


class WrongToken(ApiError):
    """
    The request does not carry the daemon's admin token.
    """

    http_status = 401


class NoSuchEndpoint(ApiError):
    """
    No route has that path.
    """

    http_status = 404


class MethodNotAllowed(ApiError):
    """
    Routes have that path, but not with that method.
    """

    http_status = 405


class BodyTooLarge(ApiError):
    """
    The JSON body is larger than any route takes.
    """

    http_status = 413


class PushUnavailable(ApiError):
    """
    This daemon was built without push notifications.
    """

    http_status = 503


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    creates: bool


_ROUTES: list[tuple[str, str, str, bool]] = []


def route(method: str, path: str, creates: bool = False) -> Callable[[Handler], Handler]:
    """
    Declare an L{AdminAPI} method as the handler of C{method path}.

    C{path} may contain C{{name}} segments, passed to the handler as keyword
    arguments (URL-decoded). A handler that C{creates} is also passed C{key},
    the request's L{IdempotencyKey} or None, and creates through
    L{AdminAPI._create} (or stores its answer with the key in its own
    transaction).
    """

    def register(handler: Handler) -> Handler:
        _ROUTES.append((method, path, handler.__name__, creates))
        return handler

    return register


def page_json(key: str, page: Page[Any]) -> dict[str, Any]:
    """
    A page as the API answers it: its records under C{key}; C{next}, the
    cursor of the next page, only if there may be one; C{partial} only if
    the scan limit ended the page before it was full.
    """
    value: dict[str, Any] = {key: [item.as_json() for item in page.items]}
    if page.next is not None:
        value["next"] = page.next.encode()
    if page.partial:
        value["partial"] = True
    return value


def status_counts(root: registry.Root) -> dict[str, Any]:
    """
    What status counts, from counters only: no record is read, whatever the store's size.
    """
    found = {family.name: family.counts(root) for family in FAMILIES}
    for name, values in counters.read_all(root).items():
        found.setdefault(name, values)
    by_status = found[lifecycle.STATUSES.name]
    certificates = found[registry.STATUSES.name]
    return {
        "counts": {
            "users": sum(found[users.COUNTS.name].values()),
            "certificates": sum(certificates.values()),
            "revoked_certificates": certificates[registry.REVOKED],
            "enrolled_devices": by_status[DeviceStatus.ENROLLED.value],
            "unenrolled_devices": by_status[DeviceStatus.UNENROLLED.value],
            "removed_devices": by_status[DeviceStatus.REMOVED.value],
        },
        "counters": found,
    }


def _compile(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "/?$")


class AdminToken:
    """
    The bearer token of the admin API, kept in a 0600 file in the state directory.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._value: bytes | None = None

    def ensure(self) -> None:
        """
        Read the token, creating it first if this is the first start.
        """
        if not os.path.exists(self.path):
            write_private(self.path, secrets.token_urlsafe(32).encode("ascii") + b"\n")
        with open(self.path, "rb") as f:
            value = f.read().strip()
        if len(value) < 16:
            raise ValueError(f"{self.path}: the admin token is too short (16 characters or more)")
        self._value = value

    @property
    def value(self) -> bytes:
        if self._value is None:
            raise RuntimeError("the admin token has not been loaded")
        return self._value


class AdminAPI(AsyncResource):
    """
    The admin API root (C{/v1/...}).
    """

    def __init__(
        self,
        token: AdminToken,
        store: StoreService,
        ca: CAService,
        reactor: IReactorThreads,
        clock: IReactorTime,
        status_extra: Callable[[], dict[str, Any]] = dict,
        notifier: Notifier | None = None,
        registration: registration.RegistrationSettings = registration.RegistrationSettings(),
        random: Callable[[int], bytes] = os.urandom,
        idempotency: IdempotencySettings = IdempotencySettings(),
        user_policy: users.UserPolicy = users.UserPolicy(),
        profiles: ProfileSettings = ProfileSettings(),
    ) -> None:
        super().__init__()
        self.profiles = profiles
        #: group wake-ups under way (see L{_wake})
        self._wakes: set[Deferred[Woken]] = set()
        self.idempotency = idempotency
        self.user_policy = user_policy
        self.notifier = notifier
        self.registration = registration
        self._random = random
        self._token = token
        self.store = store
        self.ca = ca
        self._reactor = reactor
        self._clock = clock
        self._started = clock.seconds()
        self._status_extra = status_extra
        self._routes = [
            _Route(method, _compile(path), getattr(self, name), creates) for method, path, name, creates in _ROUTES
        ]

    # -- plumbing -----------------------------------------------------------------

    async def handle_GET(self, request: Request) -> Response:
        return await self._dispatch(request)

    handle_POST = handle_PUT = handle_DELETE = handle_PATCH = handle_GET

    async def _dispatch(self, request: Request) -> Response:
        self._authenticate(request)
        method = request.method.decode("ascii")
        path = request.path.decode("utf-8", "replace")
        allowed = []
        for candidate in self._routes:
            match = candidate.pattern.match(path)
            if match is None:
                continue
            if candidate.method != (method if method != "HEAD" else "GET"):
                allowed.append(candidate.method)
                continue
            arguments: dict[str, Any] = {k: unquote(v) for k, v in match.groupdict().items()}
            if not candidate.creates:
                status, value = await candidate.handler(request, **arguments)
                return self._json(status, value)
            key = self._idempotency_key(request)
            try:
                if key is not None:
                    replayed = await self.store.read(idempotency.recall, key, self._clock.seconds())
                    if replayed is not None:
                        raise replayed
                status, value = await candidate.handler(request, key=key, **arguments)
            except Replayed as stored:
                response = self._json(stored.status, stored.body)
                return replace(response, headers=((idempotency.REPLAYED_HEADER, b"true"),))
            return self._json(status, value)
        if allowed:
            raise MethodNotAllowed(f"{method} is not allowed on {path} (allowed: {', '.join(allowed)})")
        raise NoSuchEndpoint(f"no such API endpoint: {path}")

    def _idempotency_key(self, request: Request) -> IdempotencyKey | None:
        """
        The request's Idempotency-Key with its fingerprint, or None.
        """
        header = request.getHeader(idempotency.HEADER)
        if header is None:
            return None
        content = mdmd_request(request).content
        content.seek(0)
        body = content.read()
        content.seek(0)
        return IdempotencyKey.of(header, request.method, request.uri, body)

    async def _create(
        self, key: IdempotencyKey | None, fn: Callable[..., T], *args: Any, answer: Callable[[T], tuple[int, Any]]
    ) -> tuple[int, Any]:
        """
        Run the creating unit of work C{fn(root, *args)}; the answer
        C{answer} makes of its result, stored with C{key} in the same
        transaction when the request has one.

        @raise Replayed: if C{key} was stored meanwhile.
        """
        if key is None:
            return answer(await self.store.transact(fn, *args))
        unit = idempotency.recorded(fn, key, answer, self._clock.seconds(), self.idempotency)
        return await self.store.transact(unit, *args)

    def _authenticate(self, request: Request) -> None:
        header = request.getHeader(b"authorization") or b""
        scheme, _, presented = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(presented.strip(), self._token.value):
            raise WrongToken("missing or wrong admin token")

    @staticmethod
    def _json(status: int, value: Any) -> Response:
        """
        The response: C{value} as JSON (C{bytes} are JSON encoded already, off the reactor thread).
        """
        return Response(encode(value), content_type=JSON, code=status)

    def error_body(self, request: Request, error: AnsweredError, message: str) -> tuple[bytes, bytes]:
        value: dict[str, Any] = {"error": message}
        if error.retry_after is not None:
            value["retry_after"] = error.retry_after
        value.update(error.details)
        return encode(value), JSON

    @staticmethod
    def _raw_body(request: Request, limit: int) -> bytes:
        raw: bytes = mdmd_request(request).content.read(limit + 1)
        if len(raw) > limit:
            raise BodyTooLarge(f"request body too large (at most {limit} bytes)")
        return raw

    @staticmethod
    def _object(raw: bytes) -> dict[str, Any]:
        try:
            value = json.loads(raw or b"{}")
            # JSON can spell a lone surrogate ("\ud800"), which no name, password or URI may hold
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except ValueError as e:  # UnicodeEncodeError is one
            raise ApiError(f"request body is not JSON: {e}") from None
        if not isinstance(value, dict):
            raise ApiError("request body must be a JSON object")
        return value

    @staticmethod
    def _arguments(request: Request, name: bytes) -> list[str]:
        """
        The values of query argument C{name} (UTF-8).
        """
        try:
            return [value.decode("utf-8") for value in request.args.get(name, [])]
        except UnicodeDecodeError:
            raise ApiError(f"query argument {name.decode('ascii')} is not UTF-8") from None

    @classmethod
    def _argument(cls, request: Request, name: bytes) -> str | None:
        """
        The first value of query argument C{name}, or None when it is absent or empty.
        """
        return next(iter(cls._arguments(request, name)), "") or None

    @classmethod
    def body(cls, request: Request) -> dict[str, Any]:
        """
        The request's JSON object body (at most L{MAX_JSON_BODY} bytes).
        """
        return cls._object(cls._raw_body(request, MAX_JSON_BODY))

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), fn, *args)

    @staticmethod
    def field(body: dict[str, Any], name: str, kind: type = str, required: bool = True) -> Any:
        if name not in body:
            if required:
                raise ApiError(f"missing field {name!r}")
            return None
        value = body[name]
        if not isinstance(value, kind):
            raise ApiError(f"field {name!r} must be a {kind.__name__}")
        return value

    # -- status --------------------------------------------------------------------

    @route("GET", "/v1/status")
    async def status(self, request: Request) -> tuple[int, Any]:
        ca = self.ca.ca_certificate
        value = {
            "version": mdmd.__version__,
            "pid": os.getpid(),
            "uptime_seconds": round(self._clock.seconds() - self._started, 3),
            "store": describe(self.store.uri),
            "ca": {
                "subject": ca.subject.rfc4514_string(),
                "thumbprint": thumbprint(ca),
                "not_after": ca.not_valid_after_utc.isoformat(),
            },
            **await self.store.read(status_counts),
        }
        if self.notifier is not None:
            value["push"] = await self.notifier.status()
        value.update(self._status_extra())
        return 200, value

    # -- pages ---------------------------------------------------------------------

    @classmethod
    def _arg(cls, request: Request, name: str) -> str | None:
        """
        A query argument's (first) value; None if absent or empty.
        """
        return cls._argument(request, name.encode("ascii"))

    @classmethod
    def _choices(cls, request: Request, name: str, allowed: tuple[str, ...]) -> frozenset[str] | None:
        """
        A query argument given once or more, each one of C{allowed}; None if absent.
        """
        values = {v for v in cls._arguments(request, name.encode("ascii")) if v}
        unknown = sorted(values - set(allowed))
        if unknown:
            raise cls._unknown(name, unknown[0], allowed)
        return frozenset(values) or None

    @classmethod
    def _choice(cls, request: Request, name: str, allowed: tuple[str, ...]) -> str | None:
        value = cls._arg(request, name)
        if value is not None and value not in allowed:
            raise cls._unknown(name, value, allowed)
        return value

    @staticmethod
    def _unknown(name: str, value: str, allowed: tuple[str, ...]) -> ApiError:
        plural = name + ("es" if name.endswith("s") else "s")
        return ApiError(f"unknown {name} {value!r} ({plural}: {', '.join(allowed)})")

    @classmethod
    def _time(cls, request: Request, name: str) -> float | None:
        """
        A query argument that is a time: POSIX seconds.
        """
        value = cls._arg(request, name)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            raise ApiError(f"{name} must be a time in POSIX seconds") from None

    @classmethod
    def _page_request(cls, request: Request) -> PageRequest:
        """
        C{limit} (at most L{MAX_LIMIT}; 0 or absent: L{DEFAULT_LIMIT}), C{cursor} and C{order}.
        """
        raw = cls._arg(request, "limit") or "0"
        if not _NUMBER.fullmatch(raw):
            raise ApiError("limit must be a whole number")
        limit = min(int(raw), MAX_LIMIT) or DEFAULT_LIMIT
        order = cls._choice(request, "order", ("asc", "desc"))
        cursor = cls._arg(request, "cursor")
        return PageRequest(
            limit=limit,
            cursor=None if cursor is None else Cursor.decode(cursor),
            descending=order == "desc",
        )

    async def _page(
        self, request: Request, key: str, listing: Callable[..., Page[Any]], *args: Any
    ) -> tuple[int, bytes]:
        """
        One page of C{listing(root, *args, page_request)}, encoded on the store's thread.
        """
        asked = self._page_request(request)

        def encoded(root: registry.Root) -> bytes:
            return encode(page_json(key, listing(root, *args, asked)))

        return 200, await self.store.read(encoded)

    # -- users ---------------------------------------------------------------------

    @route("GET", "/v1/users")
    async def list_users(self, request: Request) -> tuple[int, Any]:
        return await self._page(request, "users", users.user_page)

    @route("POST", "/v1/users", creates=True)
    async def add_user(self, request: Request, key: IdempotencyKey | None) -> tuple[int, Any]:
        body = self.body(request)
        name = self.user_policy.check_name(users.validate_name(self.field(body, "name")))
        hashed = await self._hash(self._password(body))
        return await self._create(
            key, users.add_user, name, hashed, self._clock.seconds(), answer=lambda info: (201, info.as_json())
        )

    @route("PUT", "/v1/users/{name}/password")
    async def set_password(self, request: Request, name: str) -> tuple[int, Any]:
        password = self._password(self.body(request))
        hashed = await self._hash(password)
        info = await self.store.transact(users.set_password, name, hashed)
        return 200, info.as_json()

    def _password(self, body: dict[str, Any]) -> str:
        password: str = self.field(body, "password")
        if not password:
            raise ApiError("the password must not be empty")
        if len(password) > users.MAX_PASSWORD:
            raise ApiError(f"a password is at most {users.MAX_PASSWORD} characters")
        return self.user_policy.check_password(password)

    async def _hash(self, password: str) -> str:
        return await deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), users.hash_password, password
        )

    @route("DELETE", "/v1/users/{name}")
    async def remove_user(self, request: Request, name: str) -> tuple[int, Any]:
        info = await self.store.transact(users.remove_user, name)
        return 200, info.as_json()

    @route("POST", "/v1/users/{name}/enable")
    async def enable_user(self, request: Request, name: str) -> tuple[int, Any]:
        return await self._set_enabled(name, True)

    @route("POST", "/v1/users/{name}/disable")
    async def disable_user(self, request: Request, name: str) -> tuple[int, Any]:
        return await self._set_enabled(name, False)

    async def _set_enabled(self, name: str, enabled: bool) -> tuple[int, Any]:
        info = await self.store.transact(users.set_enabled, name, enabled)
        return 200, info.as_json()

    # -- certificates ------------------------------------------------------------------

    @route("GET", "/v1/certs")
    async def list_certificates(self, request: Request) -> tuple[int, Any]:
        query = registry.CertificateQuery(
            device_id=self._arg(request, "device"),
            status=self._choice(request, "status", registry.STATUSES.values),
        )
        return await self._page(request, "certificates", registry.certificate_page, query)

    @route("GET", "/v1/certs/{serial}")
    async def show_certificate(self, request: Request, serial: str) -> tuple[int, Any]:
        number = parse_serial(serial)
        info = await self.store.read(registry.lookup, number)
        if info is None:
            raise registry.UnknownCertificate(serial_hex(number))
        value = info.as_json()
        value["pem"] = (
            x509.load_der_x509_certificate(info.der)
            .public_bytes(serialization.Encoding.PEM)
            .decode("ascii")
        )
        return 200, value

    @route("POST", "/v1/certs/{serial}/revoke")
    async def revoke_certificate(self, request: Request, serial: str) -> tuple[int, Any]:
        body = self.body(request)
        reason = self.field(body, "reason", required=False) or "unspecified"
        info = await self.ca.revoke(parse_serial(serial), reason)
        return 200, info.as_json()

    # -- devices -------------------------------------------------------------------------

    @route("GET", "/v1/devices")
    async def list_devices(self, request: Request) -> tuple[int, Any]:
        """
        Devices by DeviceID, filtered by C{status}, C{kind}, C{user},
        C{contact_before} and C{contact_after} (POSIX seconds).
        """
        query = devices.DeviceQuery(
            status=self._choice(request, "status", lifecycle.STATUSES.values),
            kind=self._choice(request, "kind", tuple(k.value for k in DeviceKind)),
            user=self._arg(request, "user"),
            contact_before=self._time(request, "contact_before"),
            contact_after=self._time(request, "contact_after"),
        )
        return await self._page(request, "devices", devices.device_page, query)

    @route("POST", "/v1/devices", creates=True)
    async def register_device(self, request: Request, key: IdempotencyKey | None) -> tuple[int, Any]:
        """
        Register a classic OMA DM device; the answer shows generated secrets,
        this once (and to a retry of the same request, with its key).
        """
        return await self._create(
            key,
            registration.register,
            self.body(request),
            self.registration,
            self._clock.seconds(),
            self._random,
            answer=lambda registered: (201, registered.as_json()),
        )

    @route("POST", "/v1/devices:import", creates=True)
    async def import_devices(self, request: Request, key: IdempotencyKey | None) -> tuple[int, Any]:
        """
        Register many classic devices in one transaction, all or nothing;
        C{dry_run} checks them and answers what would be done.
        """
        body = await self._in_thread(self._object, self._raw_body(request, MAX_IMPORT_BODY))
        rows = self.field(body, "devices", list)
        if not all(isinstance(row, dict) for row in rows):
            raise ApiError("'devices' must be a list of JSON objects")
        dry_run = self.field(body, "dry_run", bool, required=False) or False
        unknown = sorted(set(body) - {"devices", "dry_run"})
        if unknown:
            raise ApiError(f"unknown field {unknown[0]!r} (fields: devices, dry_run)")

        def answer(imported: registration.Imported) -> tuple[int, Any]:
            value = imported.as_json()
            return (201 if value["registered"] and not dry_run else 200), value

        status, value = await self._create(
            key,
            registration.import_devices,
            rows,
            self.registration,
            self._clock.seconds(),
            self._random,
            dry_run,
            answer=answer,
        )
        # a large answer is encoded off the reactor thread (with a key, the store's thread did it)
        return status, value if isinstance(value, bytes) else await self._in_thread(encode, value)

    @route("GET", "/v1/devices/{device_id}")
    async def show_device(self, request: Request, device_id: str) -> tuple[int, Any]:
        def read(root: registry.Root) -> tuple[devices.DeviceInfo | None, registry.CertificateInfo | None]:
            device = devices.lookup_device(root, device_id)
            if device is None or device.cert_serial is None:
                return device, None
            return device, registry.lookup(root, device.cert_serial)

        device, certificate = await self.store.read(read)
        if device is None:
            raise devices.UnknownDevice(device_id)
        value = device.as_json()
        value["account"]["effective_server_id"] = device.account["server_id"] or self.registration.server_id
        value["account"]["certificate_required"] = accounts.requires_certificate(
            device.account["client_certificate"], device.kind, self.registration.certificate_defaults
        )
        value["certificate"] = None if certificate is None else certificate.as_json()
        value["dm"] = await self.store.read(dm_facts, device_id)
        value["push"] = await self.store.read(push_jobs.push_facts, device_id)
        value["wns"] = await self.store.read(channels.channel_facts, device_id, self._clock.seconds())
        return 200, value

    @route("PATCH", "/v1/devices/{device_id}")
    async def update_device(self, request: Request, device_id: str) -> tuple[int, Any]:
        """
        Change what an operator may set on a device: its account's fields
        (null or "" clears C{msisdn}, C{imsi}, C{server_id},
        C{client_certificate}), and C{generate}: secrets to replace by new
        ones, shown in the answer this once.
        """
        body = self.body(request)
        settable = (*accounts.FIELDS, "generate")
        unknown = sorted(set(body) - set(settable))
        if unknown:
            raise ApiError(f"cannot set {', '.join(unknown)} (settable: {', '.join(settable)})")
        generate = body.pop("generate", None) or []
        if not isinstance(generate, list) or not all(isinstance(name, str) for name in generate):
            raise ApiError("'generate' must be a list of field names")
        if not body and not generate:
            raise ApiError(f"nothing to set (settable: {', '.join(settable)})")
        fields = {name: "" if value is None else value for name, value in body.items()}
        edited = await self.store.transact(registration.edit_account, device_id, fields, generate, self._random)
        facts = await self.store.read(push_jobs.push_facts, device_id)
        return 200, {"device_id": device_id, "push": facts, **edited.as_json()}

    @route("DELETE", "/v1/devices/{device_id}")
    async def remove_device(self, request: Request, device_id: str) -> tuple[int, Any]:
        device = await self.store.transact(devices.remove, device_id, self._clock.seconds())
        return 200, device.as_json()

    # -- the DM command queue ------------------------------------------------------------

    async def _enqueue(self, key: IdempotencyKey | None, device_ids: list[str], spec: CommandSpec) -> tuple[int, Any]:
        return await self._create(
            key,
            dm_queue.enqueue,
            device_ids,
            spec,
            self._clock.seconds(),
            answer=lambda queued: (201, {"commands": [c.as_json() for c in queued]}),
        )

    @route("POST", "/v1/devices/{device_id}/commands", creates=True)
    async def queue_command(self, request: Request, device_id: str, key: IdempotencyKey | None) -> tuple[int, Any]:
        return await self._enqueue(key, [device_id], parse_spec(self.body(request)))

    @route("POST", "/v1/commands", creates=True)
    async def queue_for_devices(self, request: Request, key: IdempotencyKey | None) -> tuple[int, Any]:
        body = self.body(request)
        device_ids = self.field(body, "devices", list)
        if not device_ids or not all(isinstance(d, str) and d for d in device_ids):
            raise ApiError("'devices' must be a non-empty list of device ids")
        return await self._enqueue(key, device_ids, parse_spec(self.field(body, "command", dict)))

    @route("GET", "/v1/devices/{device_id}/commands")
    async def device_commands(self, request: Request, device_id: str) -> tuple[int, Any]:
        """
        A device's commands by sequence number, filtered by C{state} (given once or more).
        """
        states = self._choices(request, "state", tuple(state.value for state in CommandState))
        return await self._commands(request, device_id, states)

    @route("GET", "/v1/devices/{device_id}/queue")
    async def device_queue(self, request: Request, device_id: str) -> tuple[int, Any]:
        return await self._commands(request, device_id, frozenset(PENDING))

    @route("GET", "/v1/devices/{device_id}/results")
    async def device_results(self, request: Request, device_id: str) -> tuple[int, Any]:
        return await self._commands(request, device_id, frozenset(dm_queue.FINISHED))

    async def _commands(self, request: Request, device_id: str, states: frozenset[str] | None) -> tuple[int, Any]:
        await self._known_device(device_id)
        return await self._page(request, "commands", dm_queue.command_page, device_id, states)

    @route("GET", "/v1/devices/{device_id}/commands/{seq}")
    async def show_command(self, request: Request, device_id: str, seq: str) -> tuple[int, Any]:
        found = await self.store.read(dm_queue.get_command, device_id, self._seq(seq))
        return 200, found.as_json()

    @route("DELETE", "/v1/devices/{device_id}/commands/{seq}")
    async def cancel_command(self, request: Request, device_id: str, seq: str) -> tuple[int, Any]:
        found = await self.store.transact(dm_queue.cancel, device_id, self._seq(seq), self._clock.seconds())
        return 200, found.as_json()

    @staticmethod
    def _seq(text: str) -> int:
        # ASCII digits: str.isdigit() also takes "²", which int() refuses
        if not _NUMBER.fullmatch(text):
            raise ApiError(f"not a command number: {text!r}")
        return int(text)

    async def _known_device(self, device_id: str) -> None:
        if await self.store.read(devices.lookup_device, device_id) is None:
            raise devices.UnknownDevice(device_id)

    # -- push notifications -------------------------------------------------------------

    def _notifier(self) -> Notifier:
        if self.notifier is None:
            raise PushUnavailable("push notifications are not available in this daemon")
        return self.notifier

    def _remembered(self, key: IdempotencyKey | None, answer: Callable[[Any], tuple[int, Any]]) -> Callable[[Any, Any], None] | None:
        """
        What the notifier adds to the transaction that queues jobs: the
        answer (as queued) stored with the request's key.
        """
        if key is None:
            return None
        now = self._clock.seconds()

        def also(root: Any, created: Any) -> None:
            status, value = answer(created)
            idempotency.remember(root, key, status, value, now, self.idempotency)

        return also

    async def _push(
        self, key: IdempotencyKey | None, device_ids: list[str], via: Via, default_nonce: bool = False
    ) -> tuple[int, Any]:
        notifier = self._notifier()
        link = notifier.link
        also = self._remembered(key, lambda created: (201, {"jobs": [j.info.as_json() for j in created], "link": link}))
        infos = await notifier.push(device_ids, also, via=via, default_nonce=default_nonce)
        return 201, {"jobs": [i.as_json() for i in infos], "link": notifier.link}

    def _via(self, body: dict[str, Any]) -> Via:
        """
        The optional C{via}: auto (the default), wns, sms or both.
        """
        return parse_via(self.field(body, "via", str, required=False))

    def _default_nonce(self, body: dict[str, Any]) -> bool:
        """
        The optional C{default_nonce}: sign package #0 with the default nonce
        (a device whose server nonce is out of step refuses it signed with ours).
        """
        return bool(self.field(body, "default_nonce", bool, required=False))

    @route("POST", "/v1/devices/{device_id}/pushes", creates=True)
    async def push_device(self, request: Request, device_id: str, key: IdempotencyKey | None) -> tuple[int, Any]:
        body = self.body(request)
        via = self._via(body)
        await self._known_device(device_id)
        return await self._push(key, [device_id], via, self._default_nonce(body))

    @route("POST", "/v1/pushes", creates=True)
    async def push_devices(self, request: Request, key: IdempotencyKey | None) -> tuple[int, Any]:
        body = self.body(request)
        device_ids = self.field(body, "devices", list)
        if not device_ids or not all(isinstance(d, str) and d for d in device_ids):
            raise ApiError("'devices' must be a non-empty list of device ids")
        return await self._push(key, device_ids, self._via(body), self._default_nonce(body))

    @route("POST", "/v1/devices/{device_id}/bootstrap", creates=True)
    async def bootstrap_device(self, request: Request, device_id: str, key: IdempotencyKey | None) -> tuple[int, Any]:
        """
        Send a classic OMA DM device its DM account (OMA CP over WAP push):
        C{{"pin": "netwpin"}}, or C{{"pin": "userpin", "userpin": "DIGITS"}}.
        The USERPIN makes the MAC and goes nowhere else.
        """
        pin = self._bootstrap_pin(self.body(request))
        notifier = self._notifier()
        link = notifier.link
        also = self._remembered(key, lambda created: (201, {"job": created.info.as_json(), "link": link}))
        job = await notifier.bootstrap(device_id, pin, also)
        return 201, {"job": job.as_json(), "link": notifier.link}

    @classmethod
    def _bootstrap_pin(cls, body: dict[str, Any]) -> BootstrapPin:
        unknown = sorted(set(body) - {"pin", "userpin"})
        if unknown:
            raise ApiError(f"unknown field {unknown[0]!r} (fields: pin, userpin)")
        kind = cls.field(body, "pin")
        if kind == "userpin":
            return BootstrapPin.user(cls.field(body, "userpin"))
        if kind != "netwpin":
            raise ApiError("field 'pin' must be 'netwpin' or 'userpin'")
        if "userpin" in body:
            raise ApiError("field 'userpin' goes with pin 'userpin' only")
        return BootstrapPin.network()

    @route("GET", "/v1/pushes")
    async def list_pushes(self, request: Request) -> tuple[int, Any]:
        """
        Push jobs in the order they were made, filtered by C{device},
        C{state} (given once or more) and C{kind}.
        """
        return await self._list_pushes(request, self._arg(request, "device"))

    @route("GET", "/v1/devices/{device_id}/pushes")
    async def device_pushes(self, request: Request, device_id: str) -> tuple[int, Any]:
        await self._known_device(device_id)
        return await self._list_pushes(request, device_id)

    async def _list_pushes(self, request: Request, device_id: str | None) -> tuple[int, Any]:
        query = push_jobs.PushQuery(
            device_id=device_id,
            states=self._choices(request, "state", push_jobs.STATES),
            kind=self._choice(request, "kind", (push_jobs.NOTIFICATION, push_jobs.BOOTSTRAP)),
        )
        return await self._page(request, "jobs", push_jobs.push_page, query)

    # -- store ---------------------------------------------------------------------

    @route("POST", "/v1/store/pack")
    async def pack_store(self, request: Request) -> tuple[int, Any]:
        """
        Pack the store now (optional C{days} of history to keep); answers when
        it is done, with what it did. 409 for a store mdmd does not pack (ZEO,
        RelStorage) or while a pack runs.
        """
        days = self.body(request).get("days")
        if days is not None and (
            isinstance(days, bool)
            or not isinstance(days, (int, float))
            or not 0 <= days <= MAX_PACK_KEEP_DAYS  # NaN fails too
        ):
            raise ApiError(f"field 'days' must be a number of days, 0 to {MAX_PACK_KEEP_DAYS:g}")
        report = await self.store.pack(days)
        return 200, report.as_json()

    # -- desired state: groups, profiles, assignments, compliance, device actions ------------

    def _wake(self, group: str) -> dict[str, Any]:
        """
        Start waking a group's devices, page by page on the store's threads (after the answer).
        """
        notifier = self._notifier()
        done: Deferred[Woken] = Deferred.fromCoroutine(wake_group(self.store, notifier, group, self.profiles.push_batch))
        self._wakes.add(done)

        def finished(result: Any) -> Any:
            self._wakes.discard(done)
            return result

        done.addBoth(finished).addErrback(lambda f: log.failure("waking group {group}", f, group=group))
        return {"group": group, "batch": self.profiles.push_batch, "started": True}

    @route("GET", "/v1/groups")
    async def list_groups(self, request: Request) -> tuple[int, Any]:
        found = await self.store.read(catalog.list_groups)
        return 200, {"groups": [g.as_json() for g in found]}

    @route("POST", "/v1/groups", creates=True)
    async def add_group(self, request: Request, key: IdempotencyKey | None) -> tuple[int, Any]:
        """
        A static group (C{devices}: its first members) or a rule group (C{rule}).
        """
        body = self.body(request)
        self._fields(body, "name", "rule", "description", "devices")
        devices_ = self._device_ids(body, required=False)
        return await self._create(
            key,
            catalog.add_group,
            self.field(body, "name"),
            self.field(body, "rule", required=False),
            self.field(body, "description", required=False) or "",
            devices_,
            self._clock.seconds(),
            answer=lambda info: (201, info.as_json()),
        )

    @route("GET", "/v1/groups/{name}")
    async def show_group(self, request: Request, name: str) -> tuple[int, Any]:
        after = self._arg(request, "after")
        return 200, await self.store.read(catalog.show_group, name, after, self._page_request(request).limit)

    @route("DELETE", "/v1/groups/{name}")
    async def remove_group(self, request: Request, name: str) -> tuple[int, Any]:
        info = await self.store.transact(catalog.remove_group, name, self._clock.seconds())
        return 200, info.as_json()

    @route("POST", "/v1/groups/{name}/members")
    async def add_group_members(self, request: Request, name: str) -> tuple[int, Any]:
        info, changed = await self.store.transact(catalog.add_members, name, self._device_ids(self.body(request)))
        return 200, {**info.as_json(), "added": changed}

    @route("POST", "/v1/groups/{name}/members:remove")
    async def remove_group_members(self, request: Request, name: str) -> tuple[int, Any]:
        info, changed = await self.store.transact(catalog.remove_members, name, self._device_ids(self.body(request)))
        return 200, {**info.as_json(), "removed": changed}

    @route("GET", "/v1/profiles")
    async def list_profiles(self, request: Request) -> tuple[int, Any]:
        found = await self.store.read(catalog.list_profiles)
        return 200, {"profiles": [p.as_json() for p in found]}

    async def _profile_source(self, request: Request) -> tuple[dict[str, Any], str, tuple[Step, ...]]:
        """
        A profile's JSON body and its source, parsed off the reactor thread.
        """
        body = await self._in_thread(self._object, self._raw_body(request, MAX_PROFILE_BODY))
        source = self.field(body, "source")
        steps = await self._in_thread(parse_profile, source.encode("utf-8"))
        return body, source, steps

    @route("POST", "/v1/profiles", creates=True)
    async def add_profile(self, request: Request, key: IdempotencyKey | None) -> tuple[int, Any]:
        """
        A new profile: C{name}, C{source} (SyncML command fragments), C{description}.
        """
        body, source, steps = await self._profile_source(request)
        self._fields(body, "name", "source", "description")
        return await self._create(
            key,
            catalog.add_profile,
            self.field(body, "name"),
            steps,
            source,
            self.field(body, "description", required=False) or "",
            self._clock.seconds(),
            answer=lambda info: (201, info.as_json()),
        )

    @route("POST", "/v1/profiles/{name}/versions", creates=True)
    async def edit_profile(self, request: Request, name: str, key: IdempotencyKey | None) -> tuple[int, Any]:
        """
        A new version of a profile (C{source}, optionally a new C{description}).
        """
        body, source, steps = await self._profile_source(request)
        self._fields(body, "source", "description")
        return await self._create(
            key,
            catalog.edit_profile,
            name,
            steps,
            source,
            self.field(body, "description", required=False),
            self._clock.seconds(),
            answer=lambda info: (201, info.as_json()),
        )

    @route("GET", "/v1/profiles/{name}")
    async def show_profile(self, request: Request, name: str) -> tuple[int, Any]:
        raw = self._arg(request, "version")
        if raw is not None and not _NUMBER.fullmatch(raw):
            raise ApiError("version must be a whole number")
        return 200, await self.store.read(catalog.show_profile, name, int(raw) if raw else None)

    @route("DELETE", "/v1/profiles/{name}")
    async def remove_profile(self, request: Request, name: str) -> tuple[int, Any]:
        info = await self.store.transact(catalog.remove_profile, name, self._clock.seconds())
        return 200, info.as_json()

    @route("POST", "/v1/profiles/{name}/assignments")
    async def assign_profile(self, request: Request, name: str) -> tuple[int, Any]:
        """
        Assign a profile to a group (O(1): its devices converge at their next
        check-in); C{push}: also wake the group's devices, in pages, after answering.
        """
        body = self.body(request)
        self._fields(body, "group", "push")
        group = self.field(body, "group")
        push = self.field(body, "push", bool, required=False) or False
        if push:
            self._notifier()
        info = await self.store.transact(catalog.assign, name, group, self._clock.seconds())
        value = info.as_json()
        if push:
            value["push"] = self._wake(group)
        return 200, value

    @route("DELETE", "/v1/profiles/{name}/assignments/{group}")
    async def unassign_profile(self, request: Request, name: str, group: str) -> tuple[int, Any]:
        info = await self.store.transact(catalog.unassign, name, group, self._clock.seconds())
        return 200, info.as_json()

    @route("GET", "/v1/profiles/{name}/status")
    async def profile_status(self, request: Request, name: str) -> tuple[int, Any]:
        state = self._arg(request, "state")
        after = self._arg(request, "after")
        return 200, await self.store.read(report.profile_status, name, state, after, self._page_request(request).limit)

    @route("GET", "/v1/report")
    async def compliance_report(self, request: Request) -> tuple[int, Any]:
        return 200, await self.store.read(report.report, self._page_request(request).limit)

    @route("GET", "/v1/devices/{device_id}/profiles")
    async def device_profiles(self, request: Request, device_id: str) -> tuple[int, Any]:
        return 200, await self.store.read(report.device_profiles, device_id)

    @route("POST", "/v1/devices/{device_id}/actions", creates=True)
    async def device_action(self, request: Request, device_id: str, key: IdempotencyKey | None) -> tuple[int, Any]:
        """
        Wipe, lock, unlock or reboot a device: C{action} (see L{DeviceAction}),
        C{confirm} true for a wipe or reset, C{push} to wake it now.
        """
        body = self.body(request)
        self._fields(body, "action", "confirm", "push", "via")
        raw = self.field(body, "action")
        try:
            action = DeviceAction(raw)
        except ValueError:
            raise ApiError(f"unknown action {raw!r} (actions: {', '.join(a.value for a in DeviceAction)})") from None
        if action in DESTRUCTIVE and self.field(body, "confirm", bool, required=False) is not True:
            raise ApiError(f"{action.value} erases the device: confirm it with \"confirm\": true")
        push = self.field(body, "push", bool, required=False) or False
        via = self._via(body)
        status, value = await self._create(
            key, device_actions.request, device_id, action, self._clock.seconds(), answer=lambda info: (201, info.as_json())
        )
        if push:
            try:
                value = {**value, "push": (await self._push(None, [device_id], via))[1]}
            except AnsweredError as e:
                value = {**value, "push": {"error": str(e)}}
        return status, value

    @route("GET", "/v1/devices/{device_id}/actions")
    async def list_device_actions(self, request: Request, device_id: str) -> tuple[int, Any]:
        found = await self.store.read(device_actions.list_actions, device_id)
        return 200, {"actions": [a.as_json() for a in found]}

    @staticmethod
    def _fields(body: dict[str, Any], *known: str) -> None:
        unknown = sorted(set(body) - set(known))
        if unknown:
            raise ApiError(f"unknown field {unknown[0]!r} (fields: {', '.join(known)})")

    def _device_ids(self, body: dict[str, Any], required: bool = True) -> list[str]:
        device_ids = self.field(body, "devices", list, required=required) or []
        if (required and not device_ids) or not all(isinstance(d, str) and d for d in device_ids):
            raise ApiError("'devices' must be a non-empty list of device ids")
        return device_ids
