"""
Tests for L{mdmd.config}.
"""

import os
import re
import socket

from twisted.trial.unittest import SynchronousTestCase

from mdmd import config
from mdmd.config import ConfigErrors, ListenAddress

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "etc", "mdmd.conf")


class LoadTests(SynchronousTestCase):
    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_development_defaults(self) -> None:
        """
        With no file, state lives in ./var, HTTPS on 127.0.0.1:8443, host name localhost.
        """
        base = os.path.abspath(self.mktemp())
        loaded = config.load(None, base_dir=base)
        self.assertEqual(loaded.state_dir, os.path.join(base, "var"))
        self.assertEqual(loaded.https.listen, ListenAddress("tcp", "127.0.0.1", 8443))
        self.assertEqual(loaded.server.hostname, "localhost")
        self.assertEqual(loaded.store_uri, "file://" + os.path.join(base, "var", "Data.fs"))
        self.assertEqual(loaded.admin.listen, ListenAddress("unix", path=os.path.join(base, "var", "admin.sock")))
        self.assertEqual(loaded.admin_token_file, os.path.join(base, "var", "admin.token"))

    def test_values_parsed(self) -> None:
        """
        Options are parsed into typed values; relative paths resolve against the base.
        """
        path = self.write(
            "[server]\nhostname = mdm.example.com\nextra_hostnames = a.example, 10.0.0.1\n"
            "state_dir = /srv/mdmd\n[https]\nlisten = [::1]:443\nmax_body = 0x10000\n"
            "[store]\nuri = zeo://db.example:8100\n[admin]\nlisten = tcp:127.0.0.1:0\n"
        )
        loaded = config.load(path, base_dir="/base")
        self.assertEqual(loaded.server.extra_hostnames, ("a.example", "10.0.0.1"))
        self.assertEqual(loaded.https.listen, ListenAddress("tcp", "::1", 443))
        self.assertEqual(loaded.https.max_body, 65536)
        self.assertEqual(loaded.store_uri, "zeo://db.example:8100")
        self.assertEqual(loaded.admin.listen, ListenAddress("tcp", "127.0.0.1", 0))
        self.assertEqual(loaded.state_dir, "/srv/mdmd")

    def test_empty_hostname_is_the_fqdn(self) -> None:
        """
        An empty host name (the Debian package's default) means this machine's FQDN.
        """
        path = self.write("[server]\nhostname =\n")
        self.assertEqual(config.load(path).server.hostname, socket.getfqdn())

    def test_every_error_reported_at_once(self) -> None:
        """
        All problems of a file are listed together, each naming section and option.
        """
        path = self.write(
            "[server]\nhostname = x\nbogus = 1\n[https]\nlisten = nonsense\nmax_body = big\n"
            "[store]\nuri = mysql://x\npool_size = 0\n[admin]\nlisten = tcp:0.0.0.0:9000\n"
            "[nosuch]\na = b\n"
        )
        with self.assertRaises(ConfigErrors) as caught:
            config.load(path)
        errors = caught.exception.errors
        self.assertEqual(len(errors), 7, errors)
        joined = "\n".join(errors)
        for expected in (
            "[server] bogus: unknown option",
            "[https] listen: expected HOST:PORT",
            "[https] max_body: expected an integer",
            "[store] uri: unsupported store URI scheme 'mysql'",
            "[store] pool_size: must be at least 1",
            "[admin] listen: 0.0.0.0 is not a loopback address",
            "[nosuch]: unknown section",
        ):
            self.assertIn(expected, joined)

    def test_certificate_files_checked(self) -> None:
        """
        An operator certificate needs its key, and both files must exist.
        """
        path = self.write("[https]\ncert_file = /nonexistent/cert.pem\n")
        with self.assertRaises(ConfigErrors) as caught:
            config.load(path)
        joined = "\n".join(caught.exception.errors)
        self.assertIn("set both or neither", joined)
        self.assertIn("/nonexistent/cert.pem does not exist", joined)

    def test_unreadable_file(self) -> None:
        """
        A missing file is one clear error.
        """
        with self.assertRaises(ConfigErrors) as caught:
            config.load("/nonexistent/mdmd.conf")
        self.assertEqual(len(caught.exception.errors), 1)
        self.assertIn("cannot read /nonexistent/mdmd.conf", str(caught.exception))


class ExampleFileTests(SynchronousTestCase):
    def test_example_is_current(self) -> None:
        """
        etc/mdmd.conf is exactly what the schema renders: every option, with its default.
        """
        with open(EXAMPLE) as f:
            self.assertEqual(f.read(), config.render_example())

    def test_example_defaults_are_the_defaults(self) -> None:
        """
        Uncommenting every option of etc/mdmd.conf changes nothing.
        """
        with open(EXAMPLE) as f:
            text = re.sub(r"(?m)^#(\w+ =)", r"\1", f.read())
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        base = os.path.abspath(self.mktemp())
        self.assertEqual(config.load(path, base_dir=base), config.load(None, base_dir=base))
        self.assertEqual(len(re.findall(r"(?m)^#\w+ =", open(EXAMPLE).read())), len(list(config.iter_options())))


class ReadmeTests(SynchronousTestCase):
    def test_reference_is_current(self) -> None:
        """
        README.md's configuration reference is exactly what the schema renders.
        """
        with open(os.path.join(HERE, "..", "README.md")) as f:
            text = f.read()
        block = text.split("<!-- config-reference:start -->\n", 1)[1].split("<!-- config-reference:end -->", 1)[0]
        self.assertEqual(block, config.render_reference())
