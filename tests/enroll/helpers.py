"""
Shared set-up for enrollment tests: keys made once, Microsoft's sample
messages, and an in-process enrollment server on a real TLS port.
"""

from __future__ import annotations

import base64
import datetime
import os
import shutil
import tempfile
import textwrap
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import reactor
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IReactorThreads
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from mdmd import config as mdmd_config
from mdmd import settings as mdmd_settings
from mdmd.enroll import users
from mdmd.enroll.resource import enrollment_resource
from mdmd.enroll.operations import EnrollmentService
from mdmd.enroll.users import StoreUserChecker
from mdmd.pki.ca import generate_rsa_key
from mdmd.pki.resource import pki_resource
from mdmd.site import MdmdSite
from mdmd.testing.store import memory_store_service
from mdmd.testing.windows.device import WindowsDevice

from ..pki.helpers import started_ca

HERE = os.path.dirname(os.path.abspath(__file__))

#: Device keys, made once per test run (key generation is the slow part).
KEY: rsa.RSAPrivateKey = generate_rsa_key(2048)
OTHER_KEY: rsa.RSAPrivateKey = generate_rsa_key(2048)
WEAK_KEY: rsa.RSAPrivateKey = rsa.generate_private_key(65537, 1024)

#: One password hash per password, so tests do not pay scrypt for every user.
_HASHES: dict[str, str] = {}


def password_hash(password: str) -> str:
    if password not in _HASHES:
        _HASHES[password] = users.hash_password(password)
    return _HASHES[password]


def sample(name: str, token: bytes | None = None) -> bytes:
    """
    A sample message from C{samples/}, with C{token} (DER) base64-encoded in 64-character lines.
    """
    with open(os.path.join(HERE, "samples", name), "rb") as f:
        data = f.read()
    if token is not None:
        encoded = base64.b64encode(token)
        lines = b"\n            ".join(encoded[i : i + 64] for i in range(0, len(encoded), 64))
        data = data.replace(b"@CSR@", lines)
    return data


def load_config(state_dir: str, extra: str = "") -> mdmd_config.Config:
    path = os.path.join(state_dir, "mdmd.conf")
    with open(path, "w") as f:
        f.write(f"[server]\nstate_dir = {state_dir}\n" + textwrap.dedent(extra))
    return mdmd_config.load(path)


class EnrollmentServerTestCase(TestCase):
    """
    An enrollment server on 127.0.0.1 over TLS (the real resources, service,
    CA and ZODB), and emulated devices talking to it.
    """

    #: INI text added to the configuration (sections other than [server])
    config = ""
    #: what password checks may cost (the daemon's defaults unless a test says otherwise)
    password_limits = users.PasswordLimits()

    def setUp(self) -> Any:
        self.state_dir = tempfile.mkdtemp(prefix="mdmd-enr-")
        self.addCleanup(shutil.rmtree, self.state_dir, True)
        self.configuration = load_config(self.state_dir, self.config)
        self.store = memory_store_service()
        self.addCleanup(self.store.stopService)
        self.ca = started_ca(
            self,
            state_dir=self.state_dir,
            store=self.store,
            client_lifetime=datetime.timedelta(days=self.configuration.ca.client_cert_lifetime_days),
        )
        self.port_number = 0
        self.service = EnrollmentService(
            mdmd_settings.from_config(self.configuration).enrollment,
            self.store,
            self.ca,
            StoreUserChecker(self.store, IReactorThreads(reactor), reactor, limits=self.password_limits),
            reactor,
            lambda: self.port_number,
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)
        root = Resource()
        root.putChild(b"EnrollmentServer", enrollment_resource(self.service))
        root.putChild(b"pki", pki_resource(self.ca))
        endpoint = SSL4ServerEndpoint(reactor, 0, self.ca.tls_options, interface="127.0.0.1")
        d = endpoint.listen(MdmdSite(root, clock=reactor))

        def listening(port: Any) -> None:
            self.port_number = port.getHost().port
            self.addCleanup(port.stopListening)

        return d.addCallback(listening)

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.port_number}"

    @property
    def discovery_url(self) -> str:
        return self.base_url + "/EnrollmentServer/Discovery.svc"

    def add_user(self, name: str = "alice@example.com", password: str = "S3cret!", enabled: bool = True) -> None:
        self.store.store.run(users.add_user, name, password_hash(password), 0.0)  # type: ignore[union-attr]
        if not enabled:
            self.store.store.run(users.set_enabled, name, False)  # type: ignore[union-attr]

    def device(self, **kwargs: Any) -> WindowsDevice:
        kwargs.setdefault("user", "alice@example.com")
        kwargs.setdefault("password", "S3cret!")
        kwargs.setdefault("key", KEY)
        device = WindowsDevice(reactor, self.discovery_url, [self.ca.ca_certificate], **kwargs)
        self.addCleanup(device.close)
        return device

    def read(self, fn: Any, *args: Any) -> Any:
        return self.store.store.read(fn, *args)  # type: ignore[union-attr]
