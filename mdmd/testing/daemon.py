"""
The real mdmd daemon as a subprocess, for end-to-end tests and benchmarks.

It runs C{twistd --nodaemon mdmd --config FILE} with every listener on a free
port (port 0), waits for the daemon to record its bound addresses, and offers
mdmctl (also as a subprocess) against it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography import x509

from mdmd.config import IniParser
from mdmd.testing.store import SynchronousStoreService

__all__ = ["DaemonProcess", "DaemonFailed", "script"]

T = TypeVar("T")


class DaemonFailed(Exception):
    """
    The daemon exited or did not become ready; the message carries its log.
    """


def script(name: str) -> str:
    """
    The path of a console script installed beside this Python (twistd, mdmctl).
    """
    local = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(local):
        return local
    found = shutil.which(name)
    if found is None:
        raise DaemonFailed(f"{name} is not installed")
    return found


@dataclass
class DaemonProcess:
    """
    One mdmd daemon on loopback, with its own state directory.

    C{config} is extra INI text merged into the generated configuration: it
    may add sections and options, and override generated options.
    """

    state_dir: str = ""
    hostname: str = "localhost"
    config: str = ""
    ca_key_size: int = 2048
    #: more twistd options, before the plugin name (e.g. ["--profile=out", "--profiler=cprofile"])
    twistd_args: tuple[str, ...] = ()
    #: the HTTPS port; 0 picks a free one (set it to the bound port to restart on the same one)
    port: int = 0

    def __post_init__(self) -> None:
        if not self.state_dir:
            # short: UNIX socket paths are limited to 108 bytes
            self.state_dir = tempfile.mkdtemp(prefix="mdmd-e2e-")
        self.config_path = os.path.join(self.state_dir, "mdmd.conf")
        self.log_path = os.path.join(self.state_dir, "mdmd.log")
        self.process: subprocess.Popen[bytes] | None = None
        self.addresses: dict[str, str] = {}
        #: where the log of the latest start begins (see L{log_since_start})
        self.log_offset = 0

    def write_config(self) -> None:
        sections: dict[str, dict[str, str]] = {
            "server": {"hostname": self.hostname, "state_dir": self.state_dir},
            "https": {"listen": f"127.0.0.1:{self.port}"},
            "ca": {"key_size": str(self.ca_key_size)},
            "admin": {"listen": "unix:admin.sock"},
        }
        extra = IniParser(interpolation=None)
        extra.read_string(textwrap.dedent(self.config))
        for name in extra.sections():
            sections.setdefault(name, {}).update(extra.items(name))
        with open(self.config_path, "w") as f:
            for name, options in sections.items():
                f.write(f"[{name}]\n")
                f.writelines(f"{key} = {value}\n" for key, value in options.items())
                f.write("\n")

    def start(self, timeout: float = 60.0) -> dict[str, str]:
        """
        Start the daemon and wait until it listens; return its addresses.
        """
        self.write_config()
        listening = os.path.join(self.state_dir, "listening.json")
        if os.path.exists(listening):
            os.unlink(listening)
        log = open(self.log_path, "ab")
        self.log_offset = log.tell()
        self.process = subprocess.Popen(
            [script("twistd"), "--nodaemon", "--pidfile=", *self.twistd_args, "mdmd", "--config", self.config_path],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.state_dir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DaemonFailed(f"mdmd exited with {self.process.returncode}:\n{self.log()}")
            try:
                with open(listening) as f:
                    addresses = json.load(f)
                if addresses.get("pid") == self.process.pid:
                    self.addresses = addresses
                    return addresses
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        self.stop()
        raise DaemonFailed(f"mdmd did not start within {timeout}s:\n{self.log()}")

    def run_offline(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """
        Run a unit of work on the daemon's store (its default FileStorage) while
        the daemon is stopped: e.g. put a device in it before it starts.
        """
        if self.process is not None:
            raise RuntimeError("the daemon is running: its store is locked")
        uri = "file://" + os.path.join(self.state_dir, "Data.fs")
        service = SynchronousStoreService(uri, pool_size=1)
        service.startService()
        try:
            assert service.store is not None
            return service.store.run(fn, *args, **kwargs)
        finally:
            service.stopService()

    def stop(self, timeout: float = 30.0) -> int:
        """
        Stop the daemon with SIGTERM (as systemd does); return its exit status.

        twistd shuts down cleanly on SIGTERM and then re-raises the signal,
        so a clean stop reads as C{-SIGTERM} (systemd counts it as success).
        """
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def kill(self) -> None:
        """
        Kill the daemon with SIGKILL, as a crash or a power cut would: nothing
        is flushed or closed. Its store and addresses file stay as they were.
        """
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_since_start(self) -> str:
        """
        What the daemon logged since it was last started.
        """
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        """
        The process id of the started daemon.
        """
        if self.process is None:
            raise DaemonFailed("the daemon is not running")
        return self.process.pid

    @property
    def https_port(self) -> int:
        return int(self.addresses["https"].rsplit(":", 1)[1])

    @property
    def ca_cert_path(self) -> str:
        return os.path.join(self.state_dir, "ca", "ca.crt")

    def ca_certificate(self) -> x509.Certificate:
        """
        The root CA the daemon generated (what devices are told to trust).
        """
        with open(self.ca_cert_path, "rb") as f:
            return x509.load_pem_x509_certificate(f.read())

    @property
    def discovery_url(self) -> str:
        """
        Where an emulated device starts enrolling with this daemon.
        """
        return f"https://{self.hostname}:{self.https_port}/EnrollmentServer/Discovery.svc"

    def mdmctl(self, *args: str, stdin: str = "", timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """
        Run mdmctl against this daemon.
        """
        return subprocess.run(
            [script("mdmctl"), "--config", self.config_path, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
