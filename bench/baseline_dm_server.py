"""
The bare baseline for bench_dm.py: the least a DM server must do per message.

A twisted.web server on the same TLS options as mdmd (client certificate
requested, session resumption on) whose one resource parses each POSTed
SyncML message with the hardened lxml parser, serializes it back compactly,
and answers with Content-Length. No store, no session, no authentication:
what is left when all of mdmd's own work is taken away.

Run as a script it listens on 127.0.0.1, port 0 (or argv[2]), using the CA
and TLS key of an mdmd state directory (argv[1]), and prints its port.
"""

from __future__ import annotations

import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from lxml import etree
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IReactorSSL
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from mdmd.pki.tls import server_options
from mdmd.xmlparser import parse


class Echo(Resource):
    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None  # twisted.web has read the whole body
        tree = parse(request.content.read())
        body = etree.tostring(tree, encoding="utf-8")
        request.setHeader(b"Content-Type", b"application/vnd.syncml.dm+xml")
        return body


def main(state_dir: str, port: int = 0) -> None:
    with open(os.path.join(state_dir, "ca", "ca.crt"), "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(state_dir, "tls", "server.crt"), "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(state_dir, "tls", "server.key"), "rb") as f:
        key = load_pem_private_key(f.read(), None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise SystemExit(f"{state_dir}: the TLS key is neither RSA nor EC")
    root = Resource()
    management = Resource()
    root.putChild(b"ManagementServer", management)
    management.putChild(b"MDM.svc", Echo())
    site = Site(root)
    site.noisy = False
    endpoint = SSL4ServerEndpoint(
        IReactorSSL(reactor), port, server_options(key, cert, [], ca), interface="127.0.0.1"
    )

    def listening(listening_port: IListeningPort) -> None:
        address = listening_port.getHost()
        assert isinstance(address, IPv4Address)
        print(address.port, flush=True)

    endpoint.listen(site).addCallback(listening)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
