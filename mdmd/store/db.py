"""
Open a ZODB database from the URI in the configuration.

C{file://PATH} is the embedded FileStorage (one process). C{zeo://HOST:PORT}
and C{postgresql://...} (RelStorage, history-free) let several mdmd nodes
share one database. C{memory:} is a MappingStorage for tests.

A FileStorage's files hold every secret of the store (device credentials,
password hashes): they are made readable by their owner only (0600) when
the store opens and closes (the index is written at close), whatever the
umask. The files of a transaction that a crash cut off, which FileStorage
moves aside when it opens (C{Data.fs.trN}), are reported each time it opens.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Callable
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import ZODB
from twisted.logger import Logger
from ZODB.FileStorage import FileStorage
from ZODB.MappingStorage import MappingStorage

__all__ = [
    "StoreURIError",
    "BACKENDS",
    "open_db",
    "describe",
    "file_storage_path",
    "restrict_modes",
    "truncated_leftovers",
]

log = Logger()

#: What FileStorage keeps beside its file: its index (and the index being
#: written), lock, commit buffer, and what packing leaves.
_COMPANIONS = ("", ".index", ".index.index_tmp", ".lock", ".tmp", ".old", ".pack")


class StoreURIError(ValueError):
    """
    The store URI cannot be opened as given (bad form or a missing extra).
    """


def open_db(uri: str, pool_size: int = 7, cache_size: int = 10000) -> ZODB.DB:
    """
    Open the database named by C{uri} with a connection pool of C{pool_size},
    each connection caching up to C{cache_size} objects.
    """
    parts = urlsplit(uri)
    opener = BACKENDS.get(parts.scheme)
    if opener is None:
        raise StoreURIError(f"{uri}: unsupported scheme {parts.scheme!r}")
    return ZODB.DB(opener(uri, parts), pool_size=pool_size, cache_size=cache_size, database_name="mdmd")


def describe(uri: str) -> str:
    """
    The URI with any password replaced, for logs and status output.
    """
    parts = urlsplit(uri)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return uri


def libpq_dsn(uri: str) -> str:
    """
    A C{postgresql://} URI as a libpq keyword string (RelStorage appends to it).
    """
    parts = urlsplit(uri)
    fields: dict[str, str] = {}
    if parts.path.strip("/"):
        fields["dbname"] = unquote(parts.path.strip("/"))
    if parts.username:
        fields["user"] = unquote(parts.username)
    if parts.password:
        fields["password"] = unquote(parts.password)
    if parts.hostname:
        fields["host"] = parts.hostname
    if parts.port:
        fields["port"] = str(parts.port)
    for key, values in parse_qs(parts.query).items():
        fields[key] = values[-1]

    def quote(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return " ".join(f"{key}={quote(value)}" for key, value in fields.items())


def _memory(uri: str, parts: SplitResult) -> object:
    return MappingStorage()


def file_storage_path(uri: str) -> str | None:
    """
    The path of the FileStorage a C{file://} URI names (None for other stores).
    """
    parts = urlsplit(uri)
    if parts.scheme != "file":
        return None
    return (parts.netloc + parts.path if parts.netloc else parts.path) or None


def truncated_leftovers(path: str) -> list[str]:
    """
    The C{PATH.trN} files beside a FileStorage: the tails of transactions a
    crash cut off, moved aside by FileStorage when it opened the file.
    """
    return sorted(
        found for found in glob.glob(glob.escape(path) + ".tr*") if found[len(path) + 3 :].isdigit()
    )


def restrict_modes(path: str) -> list[str]:
    """
    Make the files of the FileStorage at C{path} (and its C{.trN}) readable
    and writable by their owner only; the files that were not.
    """
    changed = []
    for name in [path + suffix for suffix in _COMPANIONS] + truncated_leftovers(path):
        try:
            mode = stat.S_IMODE(os.stat(name).st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(name, mode & 0o700)
            changed.append(name)
    return changed


def _file(uri: str, parts: SplitResult) -> object:
    path = parts.netloc + parts.path if parts.netloc else parts.path
    if not path:
        raise StoreURIError(f"{uri}: file URI needs a path")
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    # A pack leaves no Data.fs.old behind: packed daily, it would double the disk used.
    storage = FileStorage(path, pack_keep_old=False)
    for name in restrict_modes(path):
        log.info("{file} was readable by others: now by its owner only", file=name)
    leftovers = truncated_leftovers(path)
    if leftovers:
        log.warn(
            "{files}: the unfinished end of a transaction cut off by a crash, which FileStorage "
            "moved aside when it opened {path}. Nothing in them was committed or acknowledged "
            "(the store holds every committed transaction) and they are never read again: keep "
            "them to investigate the crash, or delete them. They hold secrets (mode 0600).",
            files=", ".join(leftovers),
            path=path,
            leftovers=leftovers,
        )
    return storage


def _zeo(uri: str, parts: SplitResult) -> object:
    try:
        from ZEO.ClientStorage import ClientStorage
    except ImportError:
        raise StoreURIError("zeo:// needs ZEO installed (pip install 'mdmd[zeo]')") from None
    if not parts.hostname or not parts.port:
        raise StoreURIError("zeo:// needs HOST:PORT")
    storage_name = parse_qs(parts.query).get("storage", ["1"])[0]
    # server_sync: every transaction starts with a round trip to the server, so
    # it sees what other nodes committed before (a device's next message may
    # reach another node than its last one).
    return ClientStorage((parts.hostname, parts.port), storage=storage_name, wait_timeout=30, server_sync=True)


def _relstorage(uri: str, parts: SplitResult) -> object:
    try:
        from relstorage.adapters.postgresql import PostgreSQLAdapter
        from relstorage.options import Options
        from relstorage.storage import RelStorage
    except ImportError:
        raise StoreURIError(
            "postgresql:// needs RelStorage installed (pip install 'mdmd[postgresql]')"
        ) from None
    options = Options(keep_history=False)
    adapter = PostgreSQLAdapter(dsn=libpq_dsn(uri), options=options)
    return RelStorage(adapter, options=options)


#: A store backend: the URI and its parts → a ZODB storage. A new backend is
#: one function here and its scheme in this table (and, if it needs a
#: package, an extra in setup.cfg).
Opener = Callable[[str, SplitResult], object]

BACKENDS: dict[str, Opener] = {
    "memory": _memory,
    "file": _file,
    "zeo": _zeo,
    "postgresql": _relstorage,
    "postgres": _relstorage,
}
