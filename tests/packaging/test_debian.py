"""
The files in debian/ agree with each other and with mdmd: the unit runs the
daemon the issue asks for, with the production configuration the package
ships, under the account the maintainer scripts create.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import socket

from twisted.trial.unittest import SynchronousTestCase

import mdmd
from mdmd import config
from mdmd.config import ListenAddress

DEBIAN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "debian")


def read(name: str) -> str:
    with open(os.path.join(DEBIAN, name)) as f:
        return f.read()


def unit_settings() -> dict[str, list[str]]:
    """
    The unit's [Service] settings, every value of each.
    """
    settings: dict[str, list[str]] = {}
    section = ""
    for line in read("mdmd.service").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


class UnitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.unit = unit_settings()

    def one(self, key: str) -> str:
        values = self.unit.get(key, [])
        self.assertEqual(len(values), 1, f"{key}= set {len(values)} times")
        return values[0]

    def test_exec_start(self) -> None:
        """
        twistd from the venv, in the foreground, without a pid file, with the packaged configuration.
        """
        self.assertEqual(
            self.one("ExecStart"),
            "/opt/venvs/mdmd/bin/twistd --nodaemon --pidfile= mdmd --config /etc/mdmd/mdmd.conf",
        )
        self.assertEqual(self.one("Restart"), "on-failure")

    def test_directories_match_the_configuration(self) -> None:
        """
        The configuration puts state in StateDirectory= and the admin socket in
        RuntimeDirectory=, and is read from ConfigurationDirectory=: the only
        places ProtectSystem=strict lets the daemon write, or that it reads.
        """
        loaded = config.load(os.path.join(DEBIAN, "mdmd.conf"))
        self.assertEqual(loaded.state_dir, "/var/lib/" + self.one("StateDirectory"))
        self.assertEqual(self.one("WorkingDirectory"), loaded.state_dir)
        self.assertEqual(os.path.dirname(loaded.admin.listen.path), "/run/" + self.one("RuntimeDirectory"))
        config_path = shlex.split(self.one("ExecStart"))[-1]
        self.assertEqual(os.path.dirname(config_path), "/etc/" + self.one("ConfigurationDirectory"))
        self.assertEqual(self.one("ProtectSystem"), "strict")
        self.assertNotIn("ReadWritePaths", self.unit)

    def test_account(self) -> None:
        """
        The unit runs as the account postinst creates, and the conffile is given to its group.
        """
        self.assertEqual(self.one("User"), "_mdmd")
        self.assertEqual(self.one("Group"), "_mdmd")
        postinst = read("mdmd.postinst")
        self.assertIn("adduser --system --group", postinst)
        self.assertRegex(postinst, r"(?m)--gecos .* _mdmd$")
        self.assertIn("chown root:_mdmd", postinst)

    def test_hardening(self) -> None:
        """
        The sandbox a network daemon holding a CA key deserves.
        """
        expected = {
            "NoNewPrivileges": "yes",
            "PrivateTmp": "yes",
            "PrivateDevices": "yes",
            "ProtectHome": "yes",
            "ProtectKernelTunables": "yes",
            "ProtectKernelModules": "yes",
            "ProtectControlGroups": "yes",
            "RestrictSUIDSGID": "yes",
            "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
            "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
            "UMask": "0077",
            "StateDirectoryMode": "0700",
        }
        self.assertEqual({key: self.one(key) for key in expected}, expected)
        self.assertEqual(self.unit["SystemCallFilter"][0], "@system-service")

    def test_no_trailing_comments(self) -> None:
        """
        systemd takes "# ..." after a value as part of the value.
        """
        for key, values in self.unit.items():
            for value in values:
                self.assertNotIn("#", value, f"{key}={value}")


class ConffileTests(SynchronousTestCase):
    def test_production_values(self) -> None:
        """
        /etc/mdmd/mdmd.conf: state in /var/lib/mdmd, HTTPS on 443, the admin
        socket under /run/mdmd, the host name from the machine until the operator sets it.
        """
        loaded = config.load(os.path.join(DEBIAN, "mdmd.conf"), base_dir="/nonexistent")
        self.assertEqual(loaded.state_dir, "/var/lib/mdmd")
        self.assertEqual(loaded.https.listen, ListenAddress("tcp", "0.0.0.0", 443))
        self.assertEqual(loaded.admin.listen, ListenAddress("unix", path="/run/mdmd/admin.sock"))
        self.assertEqual(loaded.server.hostname, socket.getfqdn())
        self.assertEqual(loaded.store_uri, "file:///var/lib/mdmd/Data.fs")
        self.assertEqual(loaded.admin_token_file, "/var/lib/mdmd/admin.token")

    def test_mentions_only_real_options(self) -> None:
        """
        Every option the file sets or shows commented out exists in its section.
        """
        known = {(section, option.name) for section, option in config.iter_options()}
        section = ""
        for line in read("mdmd.conf").splitlines():
            if line.startswith("["):
                section = line.strip("[]")
            match = re.match(r"^#?(\w+) =", line)
            if match:
                self.assertIn((section, match.group(1)), known, line)

    def test_no_secrets(self) -> None:
        """
        The package ships no key, token or password: they are made on first start.
        """
        installed = read("mdmd.install")
        self.assertEqual(
            sorted(line.split()[0] for line in installed.splitlines() if line.strip()),
            ["debian/mdmctl", "debian/mdmd.conf"],
        )
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(read("mdmd.conf"))
        for section in parser.sections():
            for key, value in parser.items(section):
                self.assertNotRegex(key, "password|token|secret|key_file", f"[{section}] {key} = {value}")


class VersionAndWrapperTests(SynchronousTestCase):
    def test_changelog_version(self) -> None:
        """
        The package's version is mdmd's.
        """
        first = read("changelog").splitlines()[0]
        self.assertEqual(re.match(r"mdmd \(([^)-]+)", first).group(1), mdmd.__version__)  # type: ignore[union-attr]

    def test_mdmctl_wrapper(self) -> None:
        """
        /usr/bin/mdmctl runs the venv's mdmctl with the service's configuration
        unless $MDMD_CONFIG (or --config) names another.
        """
        wrapper = read("mdmctl")
        self.assertIn("MDMD_CONFIG=${MDMD_CONFIG:-/etc/mdmd/mdmd.conf}", wrapper)
        self.assertIn('exec /opt/venvs/mdmd/bin/mdmctl "$@"', wrapper)
        self.assertTrue(os.access(os.path.join(DEBIAN, "mdmctl"), os.X_OK))
