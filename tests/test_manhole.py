"""
Tests for L{mdmd.manhole}: the password file, the checker, the namespace's
helpers, and a telnet login over a real UNIX socket (in process).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import tempfile
from typing import Any, BinaryIO, cast

from twisted.application.service import MultiService
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import reactor
from twisted.internet.endpoints import UNIXClientEndpoint, UNIXServerEndpoint
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mdmd import settings
from mdmd.dm.csp import UnsupportedAction
from mdmd.enroll.users import verify_password
from mdmd.manhole import ManholePasswordDB, manhole_factory, namespace, set_password, validate_login_name
from mdmd.notify.bootstrap import InvalidPin
from mdmd.notify.jobs import CannotBootstrap, PushSettings
from mdmd.notify.notifier import Notifier
from mdmd.notify.provisioning_doc import DMServer
from mdmd.notify.spool import SpoolTransport
from mdmd.testing.devices import add_device
from mdmd.testing.store import memory_store_service
from mdmd.testing.telnet import TelnetClient

from .logs import logged_events
from .notify.cp import add_classic_device


class PasswordFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = os.path.join(os.path.abspath(self.mktemp()))
        os.makedirs(os.path.dirname(self.path), exist_ok=True)

    def entries(self) -> dict[str, str]:
        with open(self.path) as f:
            return dict(line.rstrip("\n").split(":", 1) for line in f)

    def test_add_and_replace(self) -> None:
        """
        Entries are NAME:scrypt-hash lines; setting a name again replaces only
        its line; a new file is mode 0600 and an existing one keeps its mode.
        """
        self.assertFalse(set_password(self.path, "alice", "one"))
        self.assertFalse(set_password(self.path, "bob", "two"))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        os.chmod(self.path, 0o640)
        self.assertTrue(set_password(self.path, "alice", "three"))
        entries = self.entries()
        self.assertEqual(sorted(entries), ["alice", "bob"])
        self.assertTrue(entries["alice"].startswith("scrypt$"))
        self.assertTrue(verify_password(entries["alice"], "three"))
        self.assertTrue(verify_password(entries["bob"], "two"))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)
        self.assertEqual([n for n in os.listdir(os.path.dirname(self.path)) if n.startswith(".")], [])

    def test_names(self) -> None:
        """
        Names with ':' or blanks, empty or overlong names are refused.
        """
        self.assertEqual(validate_login_name("ops-1@example"), "ops-1@example")
        for name in ("", "a:b", "a b", "x" * 65, "tab\there", "new\nline"):
            with self.assertRaises(ValueError):
                validate_login_name(name)


class CheckerTests(TestCase):
    def setUp(self) -> None:
        self.path = os.path.abspath(self.mktemp())
        set_password(self.path, "alice", "right")
        self.clock = Clock()

    async def test_right_password(self) -> None:
        """
        The right password gives the name as avatar id; the file is read at
        every login, so a new entry works at once.
        """
        checker = ManholePasswordDB(self.path, IReactorThreads(reactor), self.clock)
        self.assertEqual(await checker.requestAvatarId(UsernamePassword(b"alice", b"right")), b"alice")
        set_password(self.path, "bob", "pw")
        self.assertEqual(await checker.requestAvatarId(UsernamePassword(b"bob", b"pw")), b"bob")

    async def test_refusals_after_a_pause(self) -> None:
        """
        A wrong password or an unknown name is refused, only after the pause.
        """
        checker = ManholePasswordDB(self.path, IReactorThreads(reactor), self.clock, pause=5.0)
        for name, password in ((b"alice", b"wrong"), (b"mallory", b"right")):
            d = checker.requestAvatarId(UsernamePassword(name, password))
            outcome: list[Any] = []
            d.addBoth(outcome.append)
            while not self.clock.getDelayedCalls():
                await _turn()
            self.assertEqual(outcome, [])
            self.clock.advance(5.0)
            self.assertIsInstance(outcome[0].value, UnauthorizedLogin)


async def _turn() -> None:
    from twisted.internet.task import deferLater

    await deferLater(reactor, 0.01, lambda: None)


def _tree(spool_dir: str) -> tuple[MultiService, Any]:
    store = memory_store_service()
    tree = MultiService()
    store.setName("store")
    store.setServiceParent(tree)
    server = DMServer("mdmd", "mdmd", "https://mdm.example.com/ManagementServer/MDM.svc")
    notifier = Notifier(store, PushSettings(), Clock(), transport=SpoolTransport(spool_dir), dm_server=lambda: server)
    notifier.setServiceParent(tree)
    assert store.store is not None
    store.store.run(add_device, "D1")
    return tree, notifier


class NamespaceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.spool = os.path.abspath(self.mktemp())
        self.tree, self.notifier = _tree(self.spool)
        self.notifier.startService()
        self.addCleanup(self.notifier.stopService)

    def result(self, d: Any) -> Any:
        return self.successResultOf(d)

    def test_each_login_has_its_own(self) -> None:
        """
        Every login gets a fresh namespace naming the user and the services.
        """
        first = namespace(self.tree, None, Clock(), "alice")
        second = namespace(self.tree, None, Clock(), "bob")
        self.assertIsNot(first, second)
        first["scratch"] = 1
        self.assertNotIn("scratch", second)
        self.assertEqual(first["whoami"], "alice")
        self.assertIs(first["service"]("store"), first["store"])
        self.assertIs(first["notifier"], self.notifier)

    def test_helpers(self) -> None:
        """
        devices(), device(), enqueue(), push() and pushes() return Deferreds of plain values.
        """
        ns = namespace(self.tree, None, Clock(), "alice")
        self.assertEqual([d["device_id"] for d in self.result(ns["devices"]())], ["D1"])
        self.assertEqual(self.result(ns["device"]("D1"))["push"]["msisdn"], "+491701234567")
        self.assertIsNone(self.result(ns["device"]("nope")))
        (queued,) = self.result(ns["enqueue"]("D1", "Get", "./DevDetail/SwV"))
        self.assertEqual((queued["seq"], queued["spec"]["verb"]), (1, "Get"))
        (group,) = self.result(ns["enqueue"]("D1", {"verb": "Replace", "target": "./Vendor/MSFT/X", "data": "1"}))
        self.assertEqual(group["seq"], 2)
        (pushed,) = self.result(ns["push"]("D1"))
        self.assertEqual((pushed["state"], pushed["via"]), ("submitted", "spool"))
        self.assertTrue(os.path.exists(pushed["spool_file"]))
        self.assertEqual([p["seq"] for p in self.result(ns["pushes"]("D1"))], [1])
        self.assertEqual(self.result(ns["status"]())["counts"]["submitted"], 1)

    def test_devices_page(self) -> None:
        """
        devices() lists one page, filtered, after a DeviceID.
        """
        assert self.tree.getServiceNamed("store").store is not None
        for device_id in ("D0", "D2", "D3"):
            self.tree.getServiceNamed("store").store.run(add_device, device_id, kind="omadm" if device_id == "D2" else "windows")
        ns = namespace(self.tree, None, Clock(), "alice")
        self.assertEqual([d["device_id"] for d in self.result(ns["devices"](limit=2))], ["D0", "D1"])
        self.assertEqual([d["device_id"] for d in self.result(ns["devices"](after="D1"))], ["D2", "D3"])
        self.assertEqual([d["device_id"] for d in self.result(ns["devices"](kind="omadm"))], ["D2"])
        self.assertEqual(self.result(ns["devices"](status="removed")), [])

    def test_bootstrap_helpers(self) -> None:
        """
        bootstrap() sends a NETWPIN bootstrap, or with userpin= a USERPIN one
        (a bad PIN refused at once); bootstrap_document() shows the w7 XML
        the device would get.
        """
        ns = namespace(self.tree, None, Clock(), "alice")
        self.result(ns["store"].transact(add_classic_device, "C1"))
        job = self.result(ns["bootstrap"]("C1"))
        self.assertEqual((job["kind"], job["state"], job["via"], job["session_id"]), ("bootstrap", "submitted", "spool", None))
        self.assertEqual(self.result(ns["bootstrap"]("C1", userpin="1234"))["seq"], 2)
        with self.assertRaises(InvalidPin):
            ns["bootstrap"]("C1", userpin="12")
        self.assertIsInstance(self.failureResultOf(ns["bootstrap"]("D1")).value, CannotBootstrap)
        text = self.result(ns["bootstrap_document"]("C1"))
        self.assertIn('<parm name="APPID" value="w7"/>', text)
        self.assertIn('<parm name="AAUTHLEVEL" value="APPSRV"/>', text)

    def test_desired_state_helpers(self) -> None:
        """
        The desired-state verbs: a profile, a static group, an assignment,
        the report, and device actions (refused where the device cannot).
        """
        ns = namespace(self.tree, None, Clock(), "alice")
        source = (
            "<Replace><Item><Target><LocURI>./Device/Vendor/MSFT/Policy/Config/Camera/AllowCamera</LocURI></Target>"
            "<Meta><Format>int</Format></Meta><Data>0</Data></Item></Replace>"
        )
        self.assertEqual(self.result(ns["add_profile"]("camera", source))["latest"], 1)
        self.assertEqual(self.result(ns["edit_profile"]("camera", source.replace(">0<", ">1<")))["latest"], 2)
        self.assertEqual(self.result(ns["add_group"]("lab", "D1"))["members"], 1)
        self.assertEqual(self.result(ns["assign"]("camera", "lab"))["groups"], ["lab"])
        self.assertEqual([p["name"] for p in self.result(ns["profiles"]())], ["camera"])
        self.assertEqual([g["name"] for g in self.result(ns["groups"]())][-1], "lab")
        self.assertEqual(self.result(ns["report"]())["profiles"][0]["groups"], ["lab"])
        self.assertEqual(self.result(ns["report"]("D1"))["profiles"], [])
        self.assertEqual(self.result(ns["wipe"]("D1"))["node"], "./Device/Vendor/MSFT/RemoteWipe/doWipe")
        self.assertIsInstance(self.failureResultOf(ns["reboot"]("D1")).value, UnsupportedAction)
        self.assertEqual(self.result(ns["unassign"]("camera", "lab"))["groups"], [])
        self.assertIsNotNone(self.result(ns["remove_profile"]("camera"))["removed_at"])

    def test_registering(self) -> None:
        """
        add_device() registers a classic device as mdmctl device add does,
        with the configured server id and inventory (secrets generated and in
        the answer); set_device() edits its account.
        """
        loaded = settings.load(None, base_dir=os.path.abspath(self.mktemp()))
        loaded = dataclasses.replace(
            loaded, registration=dataclasses.replace(loaded.registration, server_id="acme", inventory=("./DevInfo/Man",))
        )
        ns = namespace(self.tree, loaded, Clock(), "alice")
        registered = self.result(ns["add_device"]("OMA-1", msisdn="+491701234567"))
        self.assertEqual((registered["device"]["kind"], registered["device"]["account"]["server_name"], registered["inventory"]),
                         ("omadm", "acme", 1))
        self.assertEqual(sorted(registered["secrets"]), ["client_secret", "server_secret"])
        edited = self.result(ns["set_device"]("OMA-1", generate=["client_secret"], client_auth="basic"))
        self.assertEqual((edited["device"]["account"]["client_auth"], list(edited["secrets"])), ("basic", ["client_secret"]))
        self.assertNotEqual(edited["secrets"]["client_secret"], registered["secrets"]["client_secret"])
        failure = self.failureResultOf(ns["add_device"]("OMA-1"))
        self.assertEqual(str(failure.value), "device OMA-1 is registered already")


class _Served(TestCase):
    """
    A manhole listening on a UNIX socket, in process; its log events kept.
    """

    def setUp(self) -> Any:
        self.directory = tempfile.mkdtemp(prefix="mdmd-mh-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        passwords = os.path.join(self.directory, "passwd")
        set_password(passwords, "alice", "right")
        tree, notifier = _tree(os.path.join(self.directory, "spool"))
        notifier.startService()
        self.addCleanup(notifier.stopService)
        self.socket = os.path.join(self.directory, "manhole.sock")
        self.events = logged_events(self)
        factory = manhole_factory(
            ManholePasswordDB(passwords, IReactorThreads(reactor), reactor, pause=0.01),
            lambda name: namespace(tree, None, reactor, name),
        )
        d = UNIXServerEndpoint(reactor, self.socket, mode=0o600).listen(factory)
        return d.addCallback(lambda port: self.addCleanup(port.stopListening))

    def logged(self, text: str) -> list[dict[str, Any]]:
        return [e for e in self.events if text in e.get("log_format", "")]


class TelnetTests(_Served):
    """
    Login over a UNIX socket with Twisted's telnet client.
    """

    async def client(self) -> TelnetClient:
        client = await TelnetClient.connect(UNIXClientEndpoint(reactor, self.socket))
        self.addCleanup(client.close)
        await client.expect(b"Username: ", reactor)
        return client

    async def test_wrong_password_then_right(self) -> None:
        """
        A wrong password is refused and logged; the right one opens a shell
        that evaluates Python and prints the helpers' Deferreds when they fire.
        """
        client = await self.client()
        client.send_line(b"alice")
        await client.expect(b"Password: ", reactor)
        client.clear()
        client.send_line(b"wrong")
        await client.expect(b"Authentication failed", reactor)
        self.assertEqual(len(self.logged("manhole login refused")), 1)
        self.assertIn(f"unix socket (uid {os.getuid()}", self.logged("manhole login refused")[0]["peer"])
        await client.expect(b"Username: ", reactor)
        client.send_line(b"alice")
        await client.expect(b"Password: ", reactor)
        client.send_line(b"right")
        await client.expect(b"logged in as alice", reactor)
        self.assertEqual(self.logged("manhole login by")[0]["name"], "alice")
        client.clear()
        client.type_line(b"6 * 7")
        await client.expect(b"42", reactor)
        client.clear()
        client.type_line(b"push('D1')")
        text = await client.expect(b"'via': 'spool'", reactor)
        self.assertIn(b"'state': 'submitted'", text)

    async def test_three_refusals_close(self) -> None:
        """
        After three refusals the connection is closed.
        """
        client = await self.client()
        for attempt in range(3):
            if attempt:
                await client.expect(b"Username: ", reactor)
            client.send_line(b"mallory")
            await client.expect(b"Password: ", reactor)
            client.clear()
            client.send_line(b"guess")
        await client.closed
        self.assertNotIn(b"Username: ", client.received)
        self.assertEqual(len(self.logged("manhole login refused")), 3)


class ConsoleProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        from mdmd.admin.console import TelnetConsole

        self.sent: list[bytes] = []
        self.console = TelnetConsole(self.sent.append, lambda: (132, 255))

    def test_negotiation(self) -> None:
        """
        The server may echo and suppress go-ahead; we do NAWS (with the size,
        IAC doubled), SGA and LINEMODE; anything else is declined; WONT/DONT
        are acknowledged; subnegotiations and commands never reach the terminal.
        """
        from mdmd.admin.console import DO, DONT, ECHO, IAC, LINEMODE, NAWS, SB, SE, SGA, WILL, WONT

        shown = self.console.received(
            b"Hi" + bytes([IAC, WILL, ECHO, IAC, WILL, 24, IAC, DO, NAWS, IAC, DO, 39, IAC, DO, LINEMODE])
            + bytes([IAC, SB, LINEMODE, 1, 3, IAC, SE, IAC, WONT, ECHO, IAC, IAC, IAC, 241]) + b"!"
        )
        self.assertEqual(shown, b"Hi\xff!")
        self.assertEqual(
            b"".join(self.sent),
            bytes([IAC, DO, ECHO, IAC, DONT, 24, IAC, WILL, NAWS, IAC, SB, NAWS, 0, 132, 0, IAC, IAC, IAC, SE])
            + bytes([IAC, WONT, 39, IAC, WILL, LINEMODE, IAC, DONT, ECHO]),
        )
        self.sent.clear()
        self.console.received(bytes([IAC, DONT, SGA]))
        self.assertEqual(self.sent, [bytes([IAC, WONT, SGA])])

    def test_typing(self) -> None:
        """
        Enter (CR, LF or CR LF) goes out as CR LF; 0xFF is doubled.
        """
        self.console.typed(b"a\rb\nc\r\n\xff")
        self.assertEqual(self.sent, [b"a\r\nb\r\nc\r\n\xff\xff"])


class _Screen:
    """
    What the console client writes, shared with the test thread.
    """

    def __init__(self) -> None:
        import threading

        self.data = b""
        self._lock = threading.Lock()

    def write(self, data: bytes) -> int:
        with self._lock:
            self.data += data
        return len(data)

    def flush(self) -> None:
        pass


class ConsoleTests(_Served):
    """
    mdmctl manhole's client against the manhole, through pipes for the keyboard.
    """

    async def screen_shows(self, screen: _Screen, text: bytes, after: int = 0) -> None:
        for _ in range(500):
            if text in screen.data[after:]:
                return
            await _turn()
        self.fail(f"{text!r} never shown; screen: {screen.data!r}")

    async def test_session(self) -> None:
        """
        Log in, evaluate, and leave at the end of the input.
        """
        from twisted.internet.threads import deferToThread

        from mdmd.admin.console import connect, run

        sock = connect(f"unix:{self.socket}")
        self.addCleanup(sock.close)
        keys, keyboard = os.pipe()
        self.addCleanup(os.close, keys)
        screen = _Screen()
        finished = deferToThread(run, sock, keys, cast(BinaryIO, screen))  # run only writes and flushes
        await self.screen_shows(screen, b"Username: ")
        os.write(keyboard, b"alice\n")
        await self.screen_shows(screen, b"Password: ")
        os.write(keyboard, b"right\r")
        await self.screen_shows(screen, b"logged in as alice")
        mark = len(screen.data)
        os.write(keyboard, b"sum(range(10))\r")
        await self.screen_shows(screen, b"45", mark)
        os.close(keyboard)
        await finished
        self.assertEqual(len(self.logged("manhole logout by")), 1)
