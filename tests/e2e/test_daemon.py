"""
End-to-end: the real daemon (twistd mdmd) as a subprocess, driven by mdmctl and HTTPS.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess

from cryptography import x509
from twisted.trial.unittest import SynchronousTestCase

from mdmd.testing.daemon import DaemonFailed, DaemonProcess, script

from ..httpclient import client_context, fetch

#: twistd re-raises the SIGTERM it handled, after a clean shutdown.
CLEAN_EXIT = (0, -signal.SIGTERM)


class DaemonTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.daemon = DaemonProcess()
        self.addCleanup(self.daemon.cleanup)
        self.daemon.start()

    def test_serves_and_is_operated(self) -> None:
        """
        The daemon serves HTTPS with its generated CA, and mdmctl status, user add,
        user list and cert list work against it; state survives a restart.
        """
        context = client_context(self.daemon.ca_cert_path)
        (reply,) = fetch(self.daemon.https_port, "/pki/ca.crt", context)
        self.assertEqual(reply.status, 200)
        with open(self.daemon.ca_cert_path, "rb") as f:
            self.assertEqual(x509.load_der_x509_certificate(reply.body), x509.load_pem_x509_certificate(f.read()))
        (crl,) = fetch(self.daemon.https_port, "/pki/crl", context)
        self.assertEqual(crl.headers["content-type"], "application/pkix-crl")

        status = self.daemon.mdmctl("status", "--json")
        self.assertEqual(status.returncode, 0, status.stderr)
        self.assertEqual(json.loads(status.stdout)["listening"]["https"], self.daemon.addresses["https"])

        added = self.daemon.mdmctl("user", "add", "ops@example.com", stdin="pa55word\n")
        self.assertEqual((added.returncode, added.stdout), (0, "added user ops@example.com\n"), added.stderr)
        listed = self.daemon.mdmctl("user", "list", "--json")
        self.assertEqual([u["name"] for u in json.loads(listed.stdout)], ["ops@example.com"])
        certs = self.daemon.mdmctl("cert", "list")
        self.assertEqual((certs.returncode, certs.stdout), (0, "(none)\n"))

        self.assertIn(self.daemon.stop(), CLEAN_EXIT)
        self.daemon.start()
        listed = self.daemon.mdmctl("user", "list", "--json")
        self.assertEqual([u["name"] for u in json.loads(listed.stdout)], ["ops@example.com"])

    def test_stopped_daemon(self) -> None:
        """
        After a clean stop mdmctl reports that it cannot reach the daemon.
        """
        self.assertIn(self.daemon.stop(), CLEAN_EXIT)
        result = self.daemon.mdmctl("status")
        self.assertEqual(result.returncode, 1)
        self.assertIn("cannot reach mdmd's admin API", result.stderr)


class StartupFailureTests(SynchronousTestCase):
    def test_port_in_use(self) -> None:
        """
        A port that cannot be bound stops the daemon at start, loudly.
        """
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        self.addCleanup(blocker.close)
        port = blocker.getsockname()[1]
        daemon = DaemonProcess(port=port)
        self.addCleanup(daemon.cleanup)
        with self.assertRaises(DaemonFailed) as caught:
            daemon.start()
        self.assertIn(f"cannot listen on https tcp:127.0.0.1:{port}", str(caught.exception))
        self.assertIn("exited with 1", str(caught.exception))

    def test_one_line_for_what_the_operator_fixes(self) -> None:
        """
        A second daemon on the same state directory, and one on a port in
        use, stop with one line saying so, and no traceback.
        """
        first = DaemonProcess()
        self.addCleanup(first.cleanup)
        first.start()
        command = [script("twistd"), "--nodaemon", "--pidfile=", "mdmd", "--config", first.config_path]
        second = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=first.state_dir)
        output = second.stdout + second.stderr
        self.assertEqual(second.returncode, 1, output)
        self.assertNotIn("Traceback", output)
        (line,) = [line for line in output.splitlines() if "cannot start" in line]
        self.assertTrue(line.endswith(f"mdmd cannot start: another mdmd is running on {first.state_dir}/ (pid {first.pid})"), line)

        other = DaemonProcess(port=first.https_port)
        self.addCleanup(other.cleanup)
        other.write_config()
        busy = subprocess.run(
            [script("twistd"), "--nodaemon", "--pidfile=", "mdmd", "--config", other.config_path],
            capture_output=True, text=True, timeout=60, cwd=other.state_dir,
        )
        output = busy.stdout + busy.stderr
        self.assertEqual(busy.returncode, 1, output)
        self.assertNotIn("Traceback", output)
        self.assertIn(
            f"mdmd cannot start: cannot listen on https tcp:127.0.0.1:{first.https_port}: address already in use",
            output,
        )

    def test_config_errors_listed(self) -> None:
        """
        twistd mdmd with a broken file lists every problem and exits non-zero before listening.
        """
        daemon = DaemonProcess()
        self.addCleanup(daemon.cleanup)
        with open(daemon.config_path, "w") as f:
            f.write("[https]\nlisten = nowhere\n[store]\nuri = ftp://x\n[oops]\n")
        result = subprocess.run(
            [script("twistd"), "--nodaemon", "--pidfile=", "mdmd", "--config", daemon.config_path],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertNotEqual(result.returncode, 0)
        output = result.stdout + result.stderr
        for expected in ("[https] listen", "[store] uri", "[oops]: unknown section"):
            self.assertIn(expected, output)
