"""
The manhole: a Python shell inside the running daemon, over telnet, for debugging.

It is off unless configured, listens on a UNIX socket (mode 0600) or a
loopback port only (the configuration refuses anything else), and asks for a
name and password checked against a file of scrypt hashes (written by
C{mdmctl manhole-password}, with the hashing of L{mdmd.enroll.users}; the
hash is verified on the thread pool, a refusal is answered after a pause, and
a connection is closed after three refusals). Every login, refusal and logout
is logged with the peer.

Each login gets its own namespace (L{namespace}): the service tree and
helpers that never block the reactor: store work runs on the store's thread
pool and the helpers return Deferreds, which the shell prints when they fire.

Whoever logs in can read every secret the daemon holds: treat a manhole
password like the CA key.
"""

from __future__ import annotations

import os
import socket
import struct
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.application.service import IServiceCollection
from twisted.conch import manhole
from twisted.conch.insults import insults
from twisted.conch.telnet import (
    AuthenticatingTelnetProtocol,
    ITelnetProtocol,
    TelnetBootstrapProtocol,
    TelnetTransport,
)
from twisted.cred.checkers import FilePasswordDB, ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mdmd.desired import actions as device_actions
from mdmd.desired import catalog
from mdmd.desired import report as compliance
from mdmd.desired.profiles import parse_profile
from mdmd.devices import records, registration
from mdmd.dm.csp import DeviceAction
from mdmd.dm import queue as dm_queue
from mdmd.dm.commands import parse_spec
from mdmd.dm.sweeper import dm_facts
from mdmd.enroll.users import hash_password, verify_password
from mdmd.notify import jobs
from mdmd.notify.bootstrap import BootstrapPin
from mdmd.notify.provisioning_doc import to_xml
from mdmd.store.paging import DEFAULT_LIMIT, Cursor, PageRequest

if TYPE_CHECKING:
    from mdmd.settings import Settings

__all__ = [
    "ManholePasswordDB",
    "manhole_factory",
    "namespace",
    "set_password",
    "validate_login_name",
]

log = Logger()

#: Refusals after which the connection is closed.
MAX_REFUSALS = 3


# -- the password file ----------------------------------------------------------------


def validate_login_name(name: str) -> str:
    """
    A manhole login name: printable, without blanks or ":", at most 64 characters.
    """
    if not name or len(name) > 64 or not name.isprintable() or any(c in name for c in ": \t"):
        raise ValueError(
            f"{name!r} is not a manhole login name (1 to 64 printable characters, "
            "no blanks, no ':')"
        )
    return name


def set_password(path: str, name: str, password: str) -> bool:
    """
    Add C{name} to the password file, or replace its hash; return whether it
    was there. The file is rewritten whole (mode 0600 when new; its
    directory is created 0700 if missing).
    """
    name = validate_login_name(name)
    entry = f"{name}:{hash_password(password)}\n"
    lines: list[str] = []
    mode = 0o600
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        pass
    found = False
    kept = []
    for line in lines:
        if line.split(":", 1)[0] == name:
            if not found:
                kept.append(entry)
            found = True
        else:
            kept.append(line if line.endswith("\n") else line + "\n")
    if not found:
        kept.append(entry)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".manhole-passwd-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(kept)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return found


@implementer(ICredentialsChecker)
class ManholePasswordDB:
    """
    Names and scrypt hashes, one C{NAME:HASH} per line, read at every login
    (so edits apply at once); hashes are verified on the reactor's thread pool.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, path: str, reactor: IReactorThreads, clock: IReactorTime, pause: float = 1.0) -> None:
        self._file = FilePasswordDB(path, cache=False)  # only its reading of the file
        self._reactor = reactor
        self._clock = clock
        self._pause = pause

    def requestAvatarId(self, credentials: IUsernamePassword) -> Deferred[bytes | tuple[()]]:
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: IUsernamePassword) -> bytes:
        try:
            name, stored = self._file.getUser(credentials.username)
        except (KeyError, UnauthorizedLogin):
            stored = None
        password = credentials.password
        ok = stored is not None and await deferToThreadPool(
            self._reactor,
            self._reactor.getThreadPool(),
            verify_password,
            stored.decode("utf-8", "replace"),
            password.decode("utf-8", "replace") if isinstance(password, bytes) else password,
        )
        if not ok:
            await deferLater(self._clock, self._pause, lambda: None)
            raise UnauthorizedLogin("unknown name or wrong password")
        return name


# -- telnet ------------------------------------------------------------------------------


def _peer(transport: Any) -> str:
    """
    Who is connected: the TCP address, or for a UNIX socket the peer's uid and pid.
    """
    while not hasattr(transport, "getHandle") and getattr(transport, "transport", None) is not None:
        transport = transport.transport  # the socket under the telnet layer
    try:
        handle = transport.getHandle()
        if handle.family == socket.AF_UNIX:
            creds = handle.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid, uid, _ = struct.unpack("3i", creds)
            return f"unix socket (uid {uid}, pid {pid})"
    except (AttributeError, OSError):
        pass
    peer = transport.getPeer()
    host = getattr(peer, "host", None)
    return f"{host}:{peer.port}" if host is not None else str(peer)


class _Login(AuthenticatingTelnetProtocol):
    """
    Twisted's telnet login, with every attempt logged and a limit on refusals.
    """

    _name = ""
    _refusals = 0

    def telnet_Password(self, line: bytes) -> str:
        self._name = self.username.decode("utf-8", "replace")
        return super().telnet_Password(line)

    def _cbLogin(self, ial: Any) -> None:
        log.info("manhole login by {name} from {peer}", name=self._name, peer=_peer(self.transport))
        super()._cbLogin(ial)

    def _ebLogin(self, failure: Any) -> None:
        self._refusals += 1
        log.warn(
            "manhole login refused for {name!r} from {peer}",
            name=self._name,
            peer=_peer(self.transport),
        )
        if self._refusals >= MAX_REFUSALS:
            assert self.transport is not None  # a login is refused on a connection
            self.transport.write(b"\r\nAuthentication failed\r\n")
            self.transport.loseConnection()
            return
        super()._ebLogin(failure)


_BANNER = (
    "mdmd manhole, logged in as {name}. Code runs in the reactor thread: never block it.\r\n"
    "  devices() device(id) enqueue(id, verb, target, data=..., format=...) push(id, ...)\r\n"
    "  add_device(id, client_auth='digest', msisdn=..., ...) set_device(id, generate=[...], ...)\r\n"
    "  bootstrap(id, userpin=None) bootstrap_document(id) pushes(id=None) status()\r\n"
    "  -- Deferreds, printed when they fire\r\n"
    "  tree (the service tree), service(name), store, notifier, reactor, config\r\n"
)


class _Shell(manhole.Manhole):
    """
    The interactive interpreter, with a banner naming the helpers.
    """

    namespace: dict[str, Any]  # always given, by _Session

    def initializeScreen(self) -> None:
        self.terminal.reset()
        self.terminal.write(_BANNER.format(name=self.namespace.get("whoami", "?")).encode("utf-8"))
        self.terminal.write(self.ps[self.pn])
        self.setInsertMode()


class _Session(TelnetBootstrapProtocol):
    """
    One logged-in shell; its end is logged. (Twisted's login protocol hands
    the connection over and never hears of its end, so the portal's logout
    callable would not run.)
    """

    def __init__(self, name: str, namespace: dict[str, Any]) -> None:
        super().__init__(insults.ServerProtocol, _Shell, namespace)
        self.name = name

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        log.info("manhole logout by {name}", name=self.name)
        super().connectionLost(reason)


@implementer(IRealm)
class _Realm:
    def __init__(self, make_namespace: Callable[[str], dict[str, Any]]) -> None:
        self._make_namespace = make_namespace

    def requestAvatar(
        self, avatar_id: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> tuple[Any, Any, Callable[[], None]]:
        if ITelnetProtocol not in interfaces:
            raise NotImplementedError("the manhole speaks telnet only")
        if not isinstance(avatar_id, bytes):  # anonymous: our checker names every user
            raise NotImplementedError("the manhole has no anonymous login")
        name = avatar_id.decode("utf-8", "replace")
        return ITelnetProtocol, _Session(name, self._make_namespace(name)), lambda: None


def manhole_factory(checker: ManholePasswordDB, make_namespace: Callable[[str], dict[str, Any]]) -> ServerFactory:
    """
    The telnet server: login, then a shell in a fresh C{make_namespace(name)}.
    """
    portal = Portal(_Realm(make_namespace), [checker])
    factory = ServerFactory()
    factory.protocol = lambda: TelnetTransport(_Login, portal)
    return factory


# -- the namespace -------------------------------------------------------------------------


def namespace(tree: IServiceCollection, config: Settings | None, reactor: Any, name: str) -> dict[str, Any]:
    """
    What one login sees: the service tree and helpers returning Deferreds.
    """
    store = tree.getServiceNamed("store")
    notifier = tree.getServiceNamed("notify")
    settings = config.registration if config is not None else registration.RegistrationSettings()

    def devices(
        status: str | None = None,
        kind: str | None = None,
        user: str | None = None,
        after: str | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> Deferred[list[dict[str, Any]]]:
        """
        Devices by DeviceID as JSON values, one page: those after the DeviceID
        C{after}, at most C{limit} (up to 1000), filtered by status, kind, user.
        """
        query = records.DeviceQuery(status=status, kind=kind, user=user)
        request = PageRequest(limit, None if after is None else Cursor(records.LISTING.name, after))
        return store.read(records.device_page, query, request).addCallback(
            lambda page: [d.as_json() for d in page.items]
        )

    def _device(root: Any, device_id: str) -> dict[str, Any] | None:
        info = records.lookup_device(root, device_id)
        if info is None:
            return None
        return {**info.as_json(), "dm": dm_facts(root, device_id), "push": jobs.push_facts(root, device_id)}

    def device(device_id: str) -> Deferred[dict[str, Any] | None]:
        """One device with its DM and push facts (None if unknown)."""
        return store.read(_device, device_id)

    def enqueue(device_id: str, verb: str | dict[str, Any], target: str | None = None, **fields: Any) -> Deferred[list[dict[str, Any]]]:
        """Queue a DM command: enqueue(id, "Get", "./DevDetail/SwV") or enqueue(id, {spec})."""
        raw = dict(verb) if isinstance(verb, dict) else {"verb": verb, "target": target, **fields}
        spec = parse_spec(raw)
        return store.transact(dm_queue.enqueue, [device_id], spec, reactor.seconds()).addCallback(
            lambda queued: [c.as_json() for c in queued]
        )

    def add_device(device_id: str, kind: str = "omadm", **fields: str) -> Deferred[dict[str, Any]]:
        """
        Register a classic OMA DM device, as mdmctl device add does (fields by
        their import column names); generated secrets are in the answer, this once.
        """
        raw = {"device_id": device_id, "kind": kind, **fields}
        return store.transact(registration.register, raw, settings, reactor.seconds(), os.urandom).addCallback(
            lambda registered: registered.as_json()
        )

    def set_device(device_id: str, generate: tuple[str, ...] | list[str] = (), **fields: str) -> Deferred[dict[str, Any]]:
        """
        Change fields of a device's account, as mdmctl device set does; generate=["client_secret"] makes a new one.
        """
        return store.transact(registration.edit_account, device_id, fields, list(generate), os.urandom).addCallback(
            lambda edited: edited.as_json()
        )

    def push(*device_ids: str, default_nonce: bool = False) -> Deferred[list[dict[str, Any]]]:
        """Wake devices now (package #0 over SMS, or to the spool); default_nonce=True signs with 0x00000000."""
        return notifier.push(list(device_ids), default_nonce=default_nonce).addCallback(
            lambda infos: [i.as_json() for i in infos]
        )

    def bootstrap(device_id: str, userpin: str | None = None) -> Deferred[dict[str, Any]]:
        """Send a classic device its DM account: NETWPIN, or with userpin= a USERPIN."""
        pin = BootstrapPin.network() if userpin is None else BootstrapPin.user(userpin)
        return notifier.bootstrap(device_id, pin).addCallback(lambda info: info.as_json())

    def bootstrap_document(device_id: str) -> Deferred[str]:
        """The provisioning document (XML, secrets included) a bootstrap would send now."""
        return store.read(jobs.bootstrap_document, device_id, notifier.dm_server()).addCallback(
            lambda doc: to_xml(doc).decode("utf-8")
        )

    def pushes(device_id: str | None = None, limit: int = 20) -> Deferred[list[dict[str, Any]]]:
        """The latest push jobs (of one device, or all)."""
        return store.read(jobs.list_pushes, device_id, limit).addCallback(
            lambda found: [i.as_json() for i in found]
        )

    def status() -> Deferred[dict[str, Any]]:
        """The SMPP link and the push counts."""
        return notifier.status()

    def groups() -> Deferred[list[dict[str, Any]]]:
        """Every group (built-in, static, rule) with its members and profiles."""
        return store.read(catalog.list_groups).addCallback(lambda found: [g.as_json() for g in found])

    def add_group(name: str, *device_ids: str, rule: str | None = None, description: str = "") -> Deferred[dict[str, Any]]:
        """A static group with these members, or a rule group: add_group("w11", rule="DevDetail/SwV >= 10.0.22000")."""
        return store.transact(catalog.add_group, name, rule, description, list(device_ids), reactor.seconds()).addCallback(
            lambda info: info.as_json()
        )

    def add_members(name: str, *device_ids: str) -> Deferred[dict[str, Any]]:
        """Add devices to a static group."""
        return store.transact(catalog.add_members, name, list(device_ids)).addCallback(lambda r: {**r[0].as_json(), "added": r[1]})

    def remove_members(name: str, *device_ids: str) -> Deferred[dict[str, Any]]:
        """Remove devices from a static group."""
        return store.transact(catalog.remove_members, name, list(device_ids)).addCallback(lambda r: {**r[0].as_json(), "removed": r[1]})

    def profiles() -> Deferred[list[dict[str, Any]]]:
        """Every profile with its groups and device counts."""
        return store.read(catalog.list_profiles).addCallback(lambda found: [p.as_json() for p in found])

    def add_profile(name: str, source: str, description: str = "") -> Deferred[dict[str, Any]]:
        """A new profile from SyncML command fragments (the text of a profile file)."""
        steps = parse_profile(source.encode("utf-8"))
        return store.transact(catalog.add_profile, name, steps, source, description, reactor.seconds()).addCallback(
            lambda info: info.as_json()
        )

    def edit_profile(name: str, source: str, description: str | None = None) -> Deferred[dict[str, Any]]:
        """A new version of a profile: its devices converge on it."""
        steps = parse_profile(source.encode("utf-8"))
        return store.transact(catalog.edit_profile, name, steps, source, description, reactor.seconds()).addCallback(
            lambda info: info.as_json()
        )

    def remove_profile(name: str) -> Deferred[dict[str, Any]]:
        """Remove a profile: devices undo it at their next check-in."""
        return store.transact(catalog.remove_profile, name, reactor.seconds()).addCallback(lambda info: info.as_json())

    def assign(name: str, group: str) -> Deferred[dict[str, Any]]:
        """Assign a profile to a group (its devices converge at their next check-in)."""
        return store.transact(catalog.assign, name, group, reactor.seconds()).addCallback(lambda info: info.as_json())

    def unassign(name: str, group: str) -> Deferred[dict[str, Any]]:
        """Unassign a profile from a group (its devices undo it)."""
        return store.transact(catalog.unassign, name, group, reactor.seconds()).addCallback(lambda info: info.as_json())

    def report(device_id: str | None = None) -> Deferred[dict[str, Any]]:
        """Compliance: per profile, devices per state; or one device's profiles."""
        if device_id is not None:
            return store.read(compliance.device_profiles, device_id)
        return store.read(compliance.report)

    def action(device_id: str, name: str) -> Deferred[dict[str, Any]]:
        """Queue a device action: "wipe", "wipe-protected", "lock", "unlock", "reboot", ..."""
        return store.transact(device_actions.request, device_id, DeviceAction(name), reactor.seconds()).addCallback(
            lambda info: info.as_json()
        )

    def wipe(device_id: str, protected: bool = False) -> Deferred[dict[str, Any]]:
        """Erase a device (RemoteWipe doWipe, or doWipeProtected; LAWMO Wipe)."""
        return action(device_id, "wipe-protected" if protected else "wipe")

    def lock(device_id: str) -> Deferred[dict[str, Any]]:
        """Lock a device's screen (RemoteLock; LAWMO FullyLock)."""
        return action(device_id, "lock")

    def reboot(device_id: str) -> Deferred[dict[str, Any]]:
        """Reboot a Windows device (Reboot CSP RebootNow)."""
        return action(device_id, "reboot")

    return {
        "whoami": name,
        "tree": tree,
        "service": tree.getServiceNamed,
        "store": store,
        "notifier": notifier,
        "reactor": reactor,
        "config": config,
        "devices": devices,
        "device": device,
        "enqueue": enqueue,
        "add_device": add_device,
        "set_device": set_device,
        "push": push,
        "bootstrap": bootstrap,
        "bootstrap_document": bootstrap_document,
        "pushes": pushes,
        "status": status,
        "groups": groups,
        "add_group": add_group,
        "add_members": add_members,
        "remove_members": remove_members,
        "profiles": profiles,
        "add_profile": add_profile,
        "edit_profile": edit_profile,
        "remove_profile": remove_profile,
        "assign": assign,
        "unassign": unassign,
        "report": report,
        "wipe": wipe,
        "lock": lock,
        "reboot": reboot,
        "action": action,
    }
