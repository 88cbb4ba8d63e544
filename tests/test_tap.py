"""
Tests for L{mdmd.tap}: options validation and the service tree.
"""

import os

from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementedBy

from mdmd.admin.api import MAX_BODY
from mdmd.listeners import ConnectionGuard
from mdmd import settings as mdmd_settings
from mdmd.notify.pkg0 import UIMode
from mdmd.notify.spool import SpoolTransport
from mdmd.settings import Settings
from mdmd.tap import Options, Reactor, build
from mdmd.testing.reactor import ThreadedMemoryReactor

from .logs import logged_events


class OptionsTests(SynchronousTestCase):
    def test_errors_reported_together(self) -> None:
        """
        postOptions validates the whole file and raises one UsageError listing every problem.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[https]\nmax_body = -1\n[admin]\nlisten = tcp:8.8.8.8:1\n")
        options = Options()
        with self.assertRaises(UsageError) as caught:
            options.parseOptions(["--config", path])
        message = str(caught.exception)
        self.assertIn("[https] max_body: must be at least 1024", message)
        self.assertIn("[admin] listen: 8.8.8.8 is not a loopback address", message)

    def test_development_defaults(self) -> None:
        """
        Without --config the development configuration is used.
        """
        options = Options()
        options.parseOptions([])
        self.assertEqual(options.settings.https.listen.port, 8443)
        self.assertEqual(options.settings.server.hostname, "localhost")

    def test_settings_are_typed(self) -> None:
        """
        postOptions leaves the typed settings, not option text: the UI mode an
        enum, the data coding an octet.
        """
        options = Options()
        options.parseOptions([])
        self.assertIsInstance(options.settings, Settings)
        self.assertIs(options.settings.push.jobs.ui_mode, UIMode.BACKGROUND)
        self.assertEqual(options.settings.push.jobs.data_coding, 0x04)


class ReactorTests(SynchronousTestCase):
    def test_installed_reactor_provides_it(self) -> None:
        """
        The reactor twistd installs provides every interface Reactor declares,
        which makeService relies on when it hands it to build().
        """
        from twisted.internet import reactor

        declared = list(implementedBy(Reactor))
        self.assertEqual(
            {i.__name__ for i in declared},
            {"IReactorCore", "IReactorTime", "IReactorTCP", "IReactorSSL", "IReactorUNIX", "IReactorThreads"},
        )
        for interface in declared:
            self.assertTrue(interface.providedBy(reactor), interface)


class BuildTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        self.settings = mdmd_settings.load(None, base_dir=self.base)
        self.reactor = ThreadedMemoryReactor()

    def test_named_tree_starts_nothing(self) -> None:
        """
        build() returns the named services in start order and touches nothing on disk.
        """
        root = build(self.settings, self.reactor)
        self.assertEqual([s.name for s in root], ["store", "ca", "enroll", "dm", "notify", "https", "admin"])
        self.assertFalse(os.path.exists(self.base))
        self.assertEqual(self.reactor.sslServers, [])
        self.assertEqual(self.reactor.unixServers, [])

    def test_components_get_their_settings(self) -> None:
        """
        build() hands each component its settings object as made by postOptions;
        the admin listener takes bodies as large as an import's.
        """
        root = build(self.settings, self.reactor)
        self.assertIs(root.getServiceNamed("ca").settings, self.settings.ca)
        self.assertIs(root.getServiceNamed("enroll").settings, self.settings.enrollment)
        self.assertIs(root.getServiceNamed("dm").settings, self.settings.dm)
        self.assertIs(root.getServiceNamed("store").upkeep, self.settings.store.upkeep)
        self.assertIs(root.getServiceNamed("notify").settings, self.settings.push.jobs)
        admin_site = root.getServiceNamed("admin")._factory
        self.assertIs(admin_site.resource.registration, self.settings.registration)
        self.assertEqual(admin_site.max_body, MAX_BODY)

    def test_limits_wired(self) -> None:
        """
        The HTTPS site gets the head and body timeouts and the idle timeout,
        the enrollment password checker the [limits]; nothing listens yet.
        """
        root = build(self.settings, self.reactor)
        site = root.getServiceNamed("https")._factory
        self.assertEqual(
            (site.header_timeout, site.body_timeout, site.timeOut),
            (self.settings.https.header_timeout, self.settings.https.body_timeout, self.settings.https.idle_timeout),
        )
        self.assertIs(root.getServiceNamed("enroll").policy.checker.limits, self.settings.passwords)
        self.assertEqual(self.reactor.tcpServers, [])

    def test_start_listens(self) -> None:
        """
        Starting the tree opens the store, makes the CA and binds HTTPS and the admin socket.
        """
        root = build(self.settings, self.reactor)
        root.startService()
        self.addCleanup(root.stopService)
        # TLS over TCP, behind the connection guard (refusals come before the handshake)
        (https,) = [
            (port, factory, interface)
            for port, factory, _, interface in self.reactor.tcpServers
            if isinstance(factory, ConnectionGuard)
        ]
        self.assertEqual((https[0], https[2]), (8443, "127.0.0.1"))
        self.assertIsInstance(https[1].wrappedFactory, TLSMemoryBIOFactory)
        self.assertEqual(https[1].limits, self.settings.https.connections)
        self.assertEqual(self.reactor.unixServers[0][0], os.path.join(self.settings.server.state_dir, "admin.sock"))
        self.assertTrue(os.path.exists(os.path.join(self.settings.server.state_dir, "ca", "ca.key")))
        self.assertEqual(os.stat(self.settings.server.state_dir).st_mode & 0o777, 0o700)


class PushAndManholeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.reactor = ThreadedMemoryReactor()

    def load(self, text: str) -> mdmd_settings.Settings:
        path = os.path.join(self.base, "mdmd.conf")
        with open(path, "w") as f:
            f.write(text)
        return mdmd_settings.load(path, base_dir=self.base)

    def test_spool_without_smsc(self) -> None:
        """
        With no SMSC the notifier spools into state_dir/spool and there is no smpp service.
        """
        root = build(mdmd_settings.load(None, base_dir=self.base), self.reactor)
        notifier = root.getServiceNamed("notify")
        self.assertIsInstance(notifier.transport, SpoolTransport)
        self.assertIsNone(notifier.transport.service)
        self.assertEqual(notifier.transport.directory, os.path.join(self.base, "var", "spool"))
        self.assertEqual(notifier.link["state"], "not configured")

    def test_smsc_and_manhole(self) -> None:
        """
        With an SMSC and the manhole enabled, the tree gains smpp (after notify)
        and manhole (last); starting connects to the SMSC with the configured
        bind and binds the manhole's UNIX socket 0600.
        """
        from mdmd.manhole import set_password

        set_password(os.path.join(self.base, "passwd"), "ops", "pw")
        loaded = self.load(
            "[server]\nstate_dir = state\n"
            "[smpp]\nhost = smsc.example\nport = 2776\nsystem_id = mdmd\npassword = pw\n"
            "bind_type = transmitter\nsource_addr = MDMD\nsource_ton = 5\nthroughput = 20\n"
            "[push]\nui_mode = user-interaction\ndata_coding = 0xf5\nconcat_iei = 8\n"
            "[manhole]\nenabled = yes\npassword_file = passwd\n"
        )
        root = build(loaded, self.reactor)
        self.assertEqual(
            [s.name for s in root],
            ["store", "ca", "enroll", "dm", "notify", "smpp", "https", "admin", "manhole"],
        )
        esme = root.getServiceNamed("smpp")
        self.assertIs(root.getServiceNamed("notify").transport.service, esme)
        assert loaded.smpp is not None
        self.assertIs(esme.config, loaded.smpp.session)
        self.assertEqual((esme.config.system_id, esme.config.bind_type.value, esme.config.throughput), ("mdmd", "transmitter", 20.0))
        self.assertEqual((esme.config.source.addr, esme.config.source.ton), ("MDMD", 5))
        settings = root.getServiceNamed("notify").settings
        self.assertEqual((settings.ui_mode, settings.data_coding, settings.concat_iei), (3, 0xF5, 0x08))
        root.startService()
        self.addCleanup(root.stopService)
        # (the memory reactor resolves every name to 127.0.0.1)
        self.assertEqual([port for _, port, *_ in self.reactor.tcpClients], [2776])
        socket_path = os.path.join(self.base, "state", "manhole.sock")
        self.assertIn((socket_path, 0o600), [(path, mode) for path, _, _, mode, _ in self.reactor.unixServers])


    def test_manhole_needs_its_password_file(self) -> None:
        """
        An enabled manhole without its password file stops the start with a
        message saying how to create it.
        """
        from mdmd.listeners import CannotListen

        settings = self.load("[manhole]\nenabled = yes\n")
        root = build(settings, self.reactor)
        with self.assertRaises(CannotListen) as caught:
            root.startService()
        self.assertIn("manhole.passwd does not exist (create it with mdmctl manhole-password", str(caught.exception))
        self.assertFalse(root.running)


class WnsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.reactor = ThreadedMemoryReactor()
        self.secret = os.path.join(self.base, "wns.secret")

    def settings(self, secret_mode: int = 0o600, extra: str = "") -> mdmd_settings.Settings:
        with open(self.secret, "w") as f:
            f.write("s3cret\n")
        os.chmod(self.secret, secret_mode)
        path = os.path.join(self.base, "mdmd.conf")
        with open(path, "w") as f:
            f.write(
                "[wns]\nenabled = yes\npfn = Contoso.Push_1\npackage_sid = ms-app://s-1\n"
                f"secret_file = {self.secret}\n{extra}"
            )
        return mdmd_settings.load(path, base_dir=self.base)

    def test_wns_beside_sms(self) -> None:
        """
        With WNS enabled the notifier has both routes, the tree gains wns
        after notify, and the check-in sets channels up; starting reads the
        secret (the first token is asked for once the reactor runs).
        """
        from mdmd.notify.routes import Route
        from mdmd.notify.wns import WnsTransport

        loaded = self.settings()
        root = build(loaded, self.reactor)
        self.assertEqual([s.name for s in root], ["store", "ca", "enroll", "dm", "notify", "wns", "https", "admin"])
        notifier = root.getServiceNamed("notify")
        self.assertIsInstance(notifier.routes.transports[Route.WNS], WnsTransport)
        self.assertIsInstance(notifier.transport, SpoolTransport)
        self.assertIs(root.getServiceNamed("dm").settings.push_channel, loaded.dm.push_channel)
        root.startService()
        self.addCleanup(root.stopService)
        credentials = notifier.routes.transports[Route.WNS].tokens.credentials
        self.assertEqual(
            (credentials.client_id, credentials.secret, credentials.token_url),
            ("ms-app://s-1", "s3cret", "https://login.live.com/accesstoken.srf"),
        )

    def test_secret_must_be_private(self) -> None:
        """
        A secret file others may read stops the start, saying why.
        """
        from mdmd.notify.wns import WnsSecretError

        root = build(self.settings(secret_mode=0o644), self.reactor)
        with self.assertRaises(WnsSecretError) as caught:
            root.startService()
        self.assertIn("chmod 600", str(caught.exception))
        self.assertFalse(root.running)

    def test_poll_warning_logged(self) -> None:
        """
        A poll schedule at odds with WNS is warned about when the tree is built.
        """
        from tests.logs import logged_events

        seen = logged_events(self)
        build(self.settings(extra="poll_interval = 60\n"), self.reactor)
        self.assertTrue(any("although WNS wakes them" in str(e.get("problem", "")) for e in seen))


class StopOrderTests(SynchronousTestCase):
    def test_children_stop_one_after_the_other(self) -> None:
        """
        The root stops its children in reverse order, each only once the one
        after it has finished stopping.
        """
        from twisted.application.service import Service
        from twisted.internet.defer import Deferred

        from mdmd.listeners import MdmdService

        events: list[str] = []
        pending: dict[str, Deferred[None]] = {}

        class Child(Service):
            name: str  # always given, below

            def stopService(self) -> Deferred[None]:
                super().stopService()
                events.append(f"stop {self.name}")
                pending[self.name] = Deferred()
                return pending[self.name]

        root = MdmdService(os.path.abspath(self.mktemp()), ThreadedMemoryReactor())
        for name in ("first", "second"):
            child = Child()
            child.setName(name)
            child.setServiceParent(root)
        root.startService()
        stopped: list[object] = []
        root.stopService().addCallback(stopped.append)
        self.assertEqual(events, ["stop second"])
        pending["second"].callback(None)
        self.assertEqual(events, ["stop second", "stop first"])
        self.assertEqual(stopped, [])
        pending["first"].callback(None)
        self.assertEqual(stopped, [None])


class PublicURLTests(SynchronousTestCase):
    def test_urls_follow_the_bound_port(self) -> None:
        """
        With public_port 0, enrollment URLs use the port HTTPS bound.
        """
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        path = os.path.join(base, "mdmd.conf")
        with open(path, "w") as f:
            f.write("[server]\nhostname = mdm.example.com\n[https]\nlisten = 127.0.0.1:0\n")
        settings = mdmd_settings.load(path, base_dir=base)
        reactor = ThreadedMemoryReactor()
        root = build(settings, reactor)
        root.startService()
        self.addCleanup(root.stopService)
        enroll = root.getServiceNamed("enroll")
        bound = root.getServiceNamed("https").port.getHost().port
        self.assertEqual(enroll.urls.discovery, f"https://mdm.example.com:{bound}/EnrollmentServer/Discovery.svc")
        self.assertEqual(enroll.account.dm_url, f"https://mdm.example.com:{bound}/ManagementServer/MDM.svc")

    def test_discovery_url_logged_when_running(self) -> None:
        """
        Once the reactor runs, the log says where devices enroll: the whole
        discovery URL, scheme and bound port included.
        """
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        path = os.path.join(base, "mdmd.conf")
        with open(path, "w") as f:
            f.write("[server]\nhostname = mdm.example.com\n[https]\nlisten = 127.0.0.1:0\n")
        reactor = ThreadedMemoryReactor()
        root = build(mdmd_settings.load(path, base_dir=base), reactor)
        root.startService()
        self.addCleanup(root.stopService)
        events = logged_events(self)
        for hook in reactor.whenRunningHooks:
            hook[0](*hook[1], **hook[2])
        bound = root.getServiceNamed("https").port.getHost().port
        urls = [e["url"] for e in events if "url" in e]
        self.assertEqual(urls, [f"https://mdm.example.com:{bound}/EnrollmentServer/Discovery.svc"])


class StartupFailureTests(SynchronousTestCase):
    def test_one_line_for_what_the_operator_fixes(self) -> None:
        """
        twistd's uncaught exception hook, once mdmd is made: a start refused
        for a reason the operator fixes is one critical log line; anything
        else goes to the hook before it, with its traceback.
        """
        from twisted.logger import LogLevel, formatEvent
        from zc.lockfile import LockError

        from mdmd.listeners import StateDirectoryInUse
        from mdmd.tap import _startup_failure_hook

        passed: list[BaseException] = []
        hook = _startup_failure_hook(lambda kind, value, traceback: passed.append(value))
        events = logged_events(self)
        hook(StateDirectoryInUse, StateDirectoryInUse("another mdmd is running on var/ (pid 7)"), None)
        hook(LockError, LockError("Couldn't lock 'var/Data.fs.lock'"), None)
        bug = ValueError("ours")
        hook(ValueError, bug, None)
        self.assertEqual(
            [(e["log_level"], formatEvent(e)) for e in events],
            [
                (LogLevel.critical, "mdmd cannot start: another mdmd is running on var/ (pid 7)"),
                (LogLevel.critical, "mdmd cannot start: Couldn't lock 'var/Data.fs.lock' (is another mdmd using this store?)"),
            ],
        )
        self.assertEqual(passed, [bug])

    def test_refused_configuration_without_usage(self) -> None:
        """
        When the file is refused, the usage text twistd prints before the
        problems is one line pointing at the file, not every option.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[https]\nmax_body = -1\n")
        options = Options()
        self.assertIn("--config", options.getUsage())
        with self.assertRaises(UsageError):
            options.parseOptions(["--config", path])
        self.assertEqual(options.getUsage(), f"(fix {path}; 'twistd mdmd --help' shows the options)")


class PluginTests(SynchronousTestCase):
    def test_twistd_finds_the_plugin(self) -> None:
        """
        twistd's plugin search finds mdmd in this installation (an editable
        one, as pip install -e . makes it: setup.cfg's package_dir puts the
        source tree on sys.path), made from mdmd.tap.
        """
        from twisted.application.service import IServiceMaker
        from twisted.plugin import getPlugins

        found = {plugin.tapname: plugin for plugin in getPlugins(IServiceMaker)}
        self.assertIn("mdmd", found)
        self.assertIs(found["mdmd"].options, Options)
