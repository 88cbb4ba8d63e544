"""
A blocking HTTPS client for tests, built on the standard library's ssl and
http.client: an independent TLS/HTTP stack talking to our Twisted server.
Call it through C{deferToThread} from asynchronous tests.
"""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    tls_version: str | None = None


def client_context(
    cafile: str, certfile: str | None = None, keyfile: str | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cafile)
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    return context


def fetch(
    port: int,
    path: str,
    context: ssl.SSLContext,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    host: str = "localhost",
    requests: int = 1,
) -> list[Reply]:
    """
    Send C{requests} identical requests over one (keep-alive) connection.
    """
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=30)
    replies = []
    try:
        for _ in range(requests):
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            replies.append(
                Reply(
                    response.status,
                    {k.lower(): v for k, v in response.getheaders()},
                    data,
                    connection.sock.version() if connection.sock else None,
                )
            )
    finally:
        connection.close()
    return replies
