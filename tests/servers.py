"""
Real servers started by tests: a free loopback port, a factory served on
one, a throwaway ZEO server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IProtocolFactory, IReactorSSL, IStreamServerEndpoint
from twisted.internet.ssl import CertificateOptions
from twisted.trial.unittest import SkipTest, SynchronousTestCase


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(
    test: SynchronousTestCase, factory: IProtocolFactory, tls: CertificateOptions | None = None
) -> int:
    """
    Serve C{factory} on a free loopback port (over TLS with C{tls}), closed at cleanup; the port.
    """
    endpoint: IStreamServerEndpoint = (
        TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        if tls is None
        else SSL4ServerEndpoint(IReactorSSL(reactor), 0, tls, interface="127.0.0.1")
    )
    port = test.successResultOf(endpoint.listen(factory))  # TCP and TLS bind at once
    test.addCleanup(port.stopListening)
    address = port.getHost()
    assert isinstance(address, IPv4Address)
    return address.port


def start_zeo(test: SynchronousTestCase) -> int:
    """
    Start a ZEO server on a temporary FileStorage, stopped at cleanup; its port.
    """
    runzeo = os.path.join(os.path.dirname(sys.executable), "runzeo")
    if not os.path.exists(runzeo):
        raise SkipTest("runzeo (ZEO, the mdmd[zeo] extra) is not installed")
    directory = os.path.abspath(test.mktemp())
    os.makedirs(directory)
    port = free_port()
    server = subprocess.Popen(
        [runzeo, "-a", f"127.0.0.1:{port}", "-f", os.path.join(directory, "Data.fs")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    test.addCleanup(server.wait)
    test.addCleanup(server.terminate)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return port
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                test.fail("the ZEO server did not start")
            time.sleep(0.05)
