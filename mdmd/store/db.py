"""
Open a ZODB database from the URI in the configuration.

C{file://PATH} is the embedded FileStorage (one process). C{zeo://HOST:PORT}
and C{postgresql://...} (RelStorage, history-free) let several mdmd nodes
share one database. C{memory:} is a MappingStorage for tests.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

import ZODB
from ZODB.FileStorage import FileStorage
from ZODB.MappingStorage import MappingStorage

__all__ = ["StoreURIError", "open_db", "describe"]


class StoreURIError(ValueError):
    """
    The store URI cannot be opened as given (bad form or a missing extra).
    """


def open_db(uri: str, pool_size: int = 7) -> ZODB.DB:
    """
    Open the database named by C{uri} with a connection pool of C{pool_size}.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme
    if scheme == "memory":
        storage = MappingStorage()
    elif scheme == "file":
        path = parts.netloc + parts.path if parts.netloc else parts.path
        if not path:
            raise StoreURIError(f"{uri}: file URI needs a path")
        directory = os.path.dirname(path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        storage = FileStorage(path)
    elif scheme == "zeo":
        storage = _zeo(parts.hostname, parts.port, parse_qs(parts.query))
    elif scheme in ("postgresql", "postgres"):
        storage = _relstorage(uri)
    else:
        raise StoreURIError(f"{uri}: unsupported scheme {scheme!r}")
    return ZODB.DB(storage, pool_size=pool_size, database_name="mdmd")


def describe(uri: str) -> str:
    """
    The URI with any password replaced, for logs and status output.
    """
    parts = urlsplit(uri)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return uri


def _zeo(host: str | None, port: int | None, query: dict[str, list[str]]) -> object:
    try:
        from ZEO.ClientStorage import ClientStorage
    except ImportError:
        raise StoreURIError("zeo:// needs ZEO installed (pip install 'mdmd[zeo]')") from None
    if not host or not port:
        raise StoreURIError("zeo:// needs HOST:PORT")
    storage_name = query.get("storage", ["1"])[0]
    # server_sync: every transaction starts with a round trip, so it sees what
    # other nodes committed before it (read-your-writes across nodes).
    return ClientStorage((host, port), storage=storage_name, wait_timeout=30, server_sync=True)


def _relstorage(uri: str) -> object:
    try:
        from relstorage.adapters.postgresql import PostgreSQLAdapter
        from relstorage.options import Options
        from relstorage.storage import RelStorage
    except ImportError:
        raise StoreURIError(
            "postgresql:// needs RelStorage installed (pip install 'mdmd[postgresql]')"
        ) from None
    options = Options(keep_history=False)
    adapter = PostgreSQLAdapter(dsn=uri, options=options)
    return RelStorage(adapter, options=options)
