"""
Tests for L{mdmd.tap}: options validation and the service tree.
"""

import os

from twisted.internet.testing import MemoryReactorClock
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from mdmd import config as mdmd_config
from mdmd.tap import Options, build


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
        self.assertEqual(options.config.https.listen.port, 8443)
        self.assertEqual(options.config.server.hostname, "localhost")


class BuildTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        self.config = mdmd_config.load(None, base_dir=self.base)
        self.reactor = MemoryReactorClock()

    def test_named_tree_starts_nothing(self) -> None:
        """
        build() returns the named services in start order and touches nothing on disk.
        """
        root = build(self.config, self.reactor)
        self.assertEqual([s.name for s in root], ["store", "ca", "enroll", "dm", "https", "admin"])
        self.assertFalse(os.path.exists(self.base))
        self.assertEqual(self.reactor.sslServers, [])
        self.assertEqual(self.reactor.unixServers, [])

    def test_start_listens(self) -> None:
        """
        Starting the tree opens the store, makes the CA and binds HTTPS and the admin socket.
        """
        root = build(self.config, self.reactor)
        root.startService()
        self.addCleanup(root.stopService)
        self.assertEqual([(port, interface) for port, _, _, _, interface in self.reactor.sslServers], [(8443, "127.0.0.1")])
        self.assertEqual(self.reactor.unixServers[0][0], os.path.join(self.config.state_dir, "admin.sock"))
        self.assertTrue(os.path.exists(os.path.join(self.config.state_dir, "ca", "ca.key")))
        self.assertEqual(os.stat(self.config.state_dir).st_mode & 0o777, 0o700)


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
        configuration = mdmd_config.load(path, base_dir=base)
        reactor = MemoryReactorClock()
        root = build(configuration, reactor)
        root.startService()
        self.addCleanup(root.stopService)
        enroll = root.getServiceNamed("enroll")
        bound = root.getServiceNamed("https").port.getHost().port
        self.assertEqual(enroll.urls.discovery, f"https://mdm.example.com:{bound}/EnrollmentServer/Discovery.svc")
        self.assertEqual(enroll.account.dm_url, f"https://mdm.example.com:{bound}/ManagementServer/MDM.svc")
