"""
Tests for L{mdmd.tap}: options validation and the service tree.
"""

import os

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementedBy

from mdmd.admin.api import MAX_BODY
from mdmd import settings as mdmd_settings
from mdmd.notify.pkg0 import UIMode
from mdmd.notify.spool import SpoolTransport
from mdmd.settings import Settings
from mdmd.tap import Options, Reactor, build
from mdmd.testing.reactor import ThreadedMemoryReactor


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

    def test_start_listens(self) -> None:
        """
        Starting the tree opens the store, makes the CA and binds HTTPS and the admin socket.
        """
        root = build(self.settings, self.reactor)
        root.startService()
        self.addCleanup(root.stopService)
        self.assertEqual([(port, interface) for port, _, _, _, interface in self.reactor.sslServers], [(8443, "127.0.0.1")])
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
