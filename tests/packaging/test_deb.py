"""
The Debian package built, installed on this machine, run as its unit says, and purged.

This is C{make deb-check} inside the test suite: C{tools/build-deb} (which
fails on lintian errors) and C{tools/deb-check}. It takes about two minutes
and changes the machine while it runs (a package, an account, port 443), so
it runs only as root on Debian 12 with the packaging tools, never where mdmd
is installed, and not when C{MDMD_SKIP_DEB_CHECK} is set. With
C{MDMD_DEB_CHECK_NSPAWN} set it also runs C{tools/deb-check-nspawn} (C{make
deb-check-systemd}: the same check under a real systemd in a throwaway
container, about two more minutes; it needs a host that allows nspawn).

The tools' progress is written to stderr as it happens: C{make test} runs
this module on its own, after the rest of the suite, so that it shows on the
terminal (run among trial's parallel workers it lands in a worker's
C{_trial_temp/N/err.log}).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

from twisted.trial.unittest import SynchronousTestCase

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _run(command: list[str], timeout: float, env: dict[str, str]) -> tuple[int, str]:
    """
    Run C{command}, echoing each line of its output to stderr as it comes;
    its exit status and whole output.
    """
    lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as process:
        assert process.stdout is not None
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            for line in process.stdout:
                lines.append(line)
                sys.stderr.write(f"  | {line}")
                sys.stderr.flush()
        finally:
            watchdog.cancel()
        code = process.wait()
    return code, "".join(lines)


def _why_skip() -> str | None:
    if os.environ.get("MDMD_SKIP_DEB_CHECK"):
        return "MDMD_SKIP_DEB_CHECK is set"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "building and installing the Debian package needs root (make deb-check)"
    try:
        with open("/etc/os-release") as f:
            release = dict(line.strip().split("=", 1) for line in f if "=" in line)
    except OSError:
        return "not Debian (no /etc/os-release)"
    if release.get("ID") != "debian" or release.get("VERSION_ID", "").strip('"') != "12":
        return "the package is built for Debian 12"
    for tool in ("dpkg-buildpackage", "dh_virtualenv", "lintian", "systemd-analyze", "unshare", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install dpkg-dev dh-virtualenv lintian systemd util-linux)"
    if any(os.path.lexists(p) for p in ("/etc/mdmd", "/var/lib/mdmd", "/opt/venvs/mdmd")):
        return "mdmd is installed on this machine; the check would disturb it"
    return None


class DebianPackageTests(SynchronousTestCase):
    skip = _why_skip()

    def test_build_install_run_purge(self) -> None:
        """
        make deb (dpkg-buildpackage, lintian without errors) and make deb-check
        (install, systemd-analyze verify, the daemon as the unit's user in its
        sandbox answering HTTPS and mdmctl, remove, purge, nothing left) pass.
        """
        # trial's workers get the test runner's sys.path as PYTHONPATH: the
        # tools use Debian's python3 and must not see the dev venv's modules.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
        out = os.path.abspath(self.mktemp())
        self.addCleanup(shutil.rmtree, out, ignore_errors=True)
        started = time.monotonic()
        sys.stderr.write("\nthe Debian package: build (about a minute), install, run, purge (about a minute)\n")
        code, output = _run([os.path.join(TOP, "tools", "build-deb"), out], 1800, env)
        self.assertEqual(code, 0, output)
        built = time.monotonic()
        (deb,) = [name for name in os.listdir(out) if name.endswith(".deb")]
        code, output = _run([os.path.join(TOP, "tools", "deb-check"), os.path.join(out, deb)], 900, env)
        self.assertEqual(code, 0, output)
        self.assertIn("deb-check: passed", output)
        sys.stderr.write(f"build {built - started:.0f}s, check {time.monotonic() - built:.0f}s\n")
        if os.environ.get("MDMD_DEB_CHECK_NSPAWN"):
            checked = time.monotonic()
            code, output = _run([os.path.join(TOP, "tools", "deb-check-nspawn"), os.path.join(out, deb)], 1800, env)
            self.assertEqual(code, 0, output)
            self.assertIn("deb-check: passed", output)
            sys.stderr.write(f"under systemd-nspawn {time.monotonic() - checked:.0f}s\n")
