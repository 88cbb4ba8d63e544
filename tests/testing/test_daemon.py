"""
Tests for L{mdmd.testing.daemon}: how the daemon helper starts, waits for,
reports and stops a daemon, with small stand-ins for twistd and mdmctl (the
real daemon is started by C{tests/e2e}).
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import sys
import textwrap
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from mdmd.config import IniParser
from mdmd.testing import daemon as daemon_module
from mdmd.testing.daemon import DaemonFailed, DaemonProcess, script

#: A twistd that writes the addresses file as mdmd does, records its
#: arguments, and runs until it is signalled.
READY = """
import json, os, sys, time
with open("argv.json", "w") as f:
    json.dump(sys.argv[1:], f)
with open("listening.json", "w") as f:
    json.dump({"pid": os.getpid(), "https": "127.0.0.1:4443"}, f)
print("listening", flush=True)
time.sleep(60)
"""
#: A twistd that fails at start, saying why.
FAILING = """
import sys
print("cannot listen on https tcp:127.0.0.1:4443", file=sys.stderr)
sys.exit(3)
"""
#: A twistd that never becomes ready.
HANGING = """
import time
time.sleep(60)
"""
#: An mdmctl that echoes its arguments and input.
ECHO = """
import json, sys
print(json.dumps([sys.argv[1:], sys.stdin.read()]))
"""


class DaemonProcessTests(SynchronousTestCase):
    def fake(self, name: str, source: str) -> None:
        """
        Make C{script(name)} find an executable running C{source}.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(f"#!{sys.executable}\n{textwrap.dedent(source)}")
        os.chmod(path, 0o755)
        found = {name: path}
        real = daemon_module.script
        self.patch(daemon_module, "script", lambda wanted: found.get(wanted) or real(wanted))

    def daemon(self, **kwargs: Any) -> DaemonProcess:
        daemon = DaemonProcess(**kwargs)
        self.addCleanup(daemon.cleanup)
        return daemon

    def test_start_and_stop(self) -> None:
        """
        C{start} runs twistd in the foreground with the plugin and the
        generated configuration, returns the addresses the daemon recorded
        (C{pid} is known from then on), and C{stop} ends it with SIGTERM.
        """
        self.fake("twistd", READY)
        daemon = self.daemon(twistd_args=("--profile=out",))
        with self.assertRaises(DaemonFailed):
            daemon.pid
        addresses = daemon.start()
        assert daemon.process is not None
        self.assertEqual(addresses, {"pid": daemon.process.pid, "https": "127.0.0.1:4443"})
        self.assertEqual(daemon.pid, daemon.process.pid)
        self.assertEqual((daemon.https_port, daemon.addresses), (4443, addresses))
        self.assertEqual(daemon.discovery_url, "https://localhost:4443/EnrollmentServer/Discovery.svc")
        with open(os.path.join(daemon.state_dir, "argv.json")) as f:
            self.assertEqual(
                json.load(f), ["--nodaemon", "--pidfile=", "--profile=out", "mdmd", "--config", daemon.config_path]
            )
        self.assertEqual(daemon.stop(), -signal.SIGTERM)
        self.assertIsNone(daemon.process)
        self.assertEqual(daemon.stop(), 0)
        self.assertIn("listening", daemon.log())

    def test_kill_and_restart(self) -> None:
        """
        C{kill} ends the daemon with SIGKILL, leaving its addresses file; a
        new start replaces it, and C{log_since_start} is the new run's log only.
        """
        self.fake("twistd", READY.replace('print("listening"', 'print("listening", os.getpid()'))
        daemon = self.daemon()
        daemon.start()
        first = daemon.pid
        process = daemon.process
        daemon.kill()
        assert process is not None
        self.assertEqual(process.returncode, -signal.SIGKILL)
        self.assertIsNone(daemon.process)
        self.assertTrue(os.path.exists(os.path.join(daemon.state_dir, "listening.json")))
        daemon.kill()  # nothing to kill: nothing happens
        daemon.start()
        self.assertNotEqual(daemon.pid, first)
        self.assertEqual(daemon.log_since_start().split(), ["listening", str(daemon.pid)])
        self.assertIn(f"listening {first}", daemon.log())

    def test_exit_at_start_reported(self) -> None:
        """
        A daemon that exits before it is ready fails the start with its exit
        status and its log.
        """
        self.fake("twistd", FAILING)
        daemon = self.daemon()
        with self.assertRaises(DaemonFailed) as caught:
            daemon.start()
        message = str(caught.exception)
        self.assertIn("mdmd exited with 3", message)
        self.assertIn("cannot listen on https tcp:127.0.0.1:4443", message)

    def test_not_ready_reported(self) -> None:
        """
        A daemon that does not become ready in time is stopped and reported
        with its log; an addresses file left from an earlier run does not
        count as ready.
        """
        self.fake("twistd", HANGING)
        daemon = self.daemon()
        with open(os.path.join(daemon.state_dir, "listening.json"), "w") as f:
            json.dump({"pid": 1, "https": "127.0.0.1:1"}, f)
        with self.assertRaises(DaemonFailed) as caught:
            daemon.start(timeout=0.5)
        self.assertIn("did not start within 0.5s", str(caught.exception))
        self.assertIsNone(daemon.process)
        self.assertEqual(daemon.addresses, {})

    def test_configuration(self) -> None:
        """
        The configuration listens on loopback (port 0: a free one) with the
        admin API on a UNIX socket, all state in the state directory; extra
        INI text adds sections and options and overrides generated ones.
        """
        daemon = self.daemon(
            hostname="mdm.example", ca_key_size=3072, config="[https]\nlisten = 127.0.0.1:8443\n[dm]\nMaxMsgSize = 1\n"
        )
        daemon.write_config()
        parser = IniParser(interpolation=None)
        parser.read(daemon.config_path)
        self.assertEqual(
            {name: dict(parser.items(name)) for name in parser.sections()},
            {
                "server": {"hostname": "mdm.example", "state_dir": daemon.state_dir},
                "https": {"listen": "127.0.0.1:8443"},
                "ca": {"key_size": "3072"},
                "admin": {"listen": "unix:admin.sock"},
                "dm": {"MaxMsgSize": "1"},
            },
        )
        plain = self.daemon()
        plain.write_config()
        with open(plain.config_path) as f:
            self.assertIn("listen = 127.0.0.1:0\n", f.read())

    def test_mdmctl(self) -> None:
        """
        mdmctl runs against this daemon's configuration, with the given input.
        """
        self.fake("mdmctl", ECHO)
        daemon = self.daemon()
        result = daemon.mdmctl("user", "add", "ops@example.com", stdin="secret\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            json.loads(result.stdout), [["--config", daemon.config_path, "user", "add", "ops@example.com"], "secret\n"]
        )

    def test_ca_certificate(self) -> None:
        """
        The CA certificate is read from where the daemon writes it.
        """
        daemon = self.daemon()
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mdmd CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        os.makedirs(os.path.dirname(daemon.ca_cert_path))
        with open(daemon.ca_cert_path, "wb") as f:
            f.write(certificate.public_bytes(serialization.Encoding.PEM))
        self.assertEqual(daemon.ca_certificate(), certificate)

    def test_cleanup(self) -> None:
        """
        C{cleanup} removes the state directory it made.
        """
        daemon = DaemonProcess()
        self.assertTrue(os.path.isdir(daemon.state_dir))
        self.assertEqual(daemon.log(), "")
        daemon.cleanup()
        self.assertFalse(os.path.exists(daemon.state_dir))


class ScriptTests(SynchronousTestCase):
    def test_beside_python(self) -> None:
        """
        Console scripts are found beside this Python first (the virtualenv's twistd).
        """
        expected = os.path.join(os.path.dirname(sys.executable), "twistd")
        if not os.path.exists(expected):
            raise SkipTest("twistd is not installed beside this Python")
        self.assertEqual(script("twistd"), expected)

    def test_missing(self) -> None:
        """
        A tool that is not installed is a L{DaemonFailed} naming it.
        """
        with self.assertRaises(DaemonFailed) as caught:
            script("no-such-mdmd-tool")
        self.assertIn("no-such-mdmd-tool is not installed", str(caught.exception))


class RunOfflineTests(SynchronousTestCase):
    def test_unit_of_work_on_the_daemons_store(self) -> None:
        """
        run_offline runs a unit of work on the store the daemon will open
        (state_dir/Data.fs), and refuses while the daemon runs.
        """
        daemon = DaemonProcess(state_dir=os.path.abspath(self.mktemp()))
        os.makedirs(daemon.state_dir)

        def put(root: Any, value: str) -> None:
            root["test-value"] = value

        daemon.run_offline(put, "kept")
        self.assertEqual(daemon.run_offline(lambda root: root["test-value"]), "kept")
        self.assertTrue(os.path.exists(os.path.join(daemon.state_dir, "Data.fs")))
        daemon.process = object()  # type: ignore[assignment]  # stands for a running daemon
        self.addCleanup(setattr, daemon, "process", None)
        self.assertRaises(RuntimeError, daemon.run_offline, put, "again")
