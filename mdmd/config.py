"""
mdmd's configuration: one INI file, validated whole before anything listens.

The schema is declared once, as frozen dataclasses whose fields carry their
parser and help text; the loader, C{etc/mdmd.conf} (checked by a test) and the
documentation all follow from it. Every problem in a file is reported at once,
so an operator fixes them in one pass.
"""

from __future__ import annotations

import configparser
import dataclasses
import ipaddress
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "Config",
    "ConfigErrors",
    "ListenAddress",
    "load",
    "iter_options",
]


class ConfigErrors(Exception):
    """
    Everything wrong with a configuration file, one problem per entry.
    """

    def __init__(self, errors: list[str]) -> None:
        super().__init__(errors)
        self.errors = errors

    def __str__(self) -> str:
        return "invalid configuration:\n" + "\n".join(f"  - {e}" for e in self.errors)


@dataclass(frozen=True)
class ListenAddress:
    """
    Where a listener binds: a TCP host and port, or a UNIX socket path.
    """

    kind: str  # "tcp" or "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.kind == "unix":
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


# --- value parsers: str -> value, raising ValueError with a short reason ---------


def _str(raw: str) -> str:
    return raw.strip()


def _int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip(), 0)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw.strip()!r}") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum}")
        return value

    return parse


def _float(minimum: float | None = None) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {raw.strip()!r}") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}")
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"expected yes or no, got {raw.strip()!r}")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return parse


def _list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.replace("\n", ",").split(",") if part.strip())


def _tcp_address(raw: str) -> ListenAddress:
    value = raw.strip()
    host, sep, port = value.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]")
    if not host:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return ListenAddress("tcp", host=host, port=_int(0, 65535)(port))


def _listen(raw: str) -> ListenAddress:
    value = raw.strip()
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if not path:
            raise ValueError("unix: needs a socket path")
        return ListenAddress("unix", path=path)
    if value.startswith("tcp:"):
        value = value[len("tcp:") :]
    return _tcp_address(value)


def _store_uri(raw: str) -> str:
    value = raw.strip()
    if not value:
        return ""
    scheme = urlsplit(value).scheme
    if scheme not in ("file", "zeo", "postgresql", "postgres", "memory"):
        raise ValueError(
            f"unsupported store URI scheme {scheme!r} "
            "(expected file://PATH, zeo://HOST:PORT or postgresql://...)"
        )
    return value


def _option(default: Any, parse: Callable[[str], Any], help: str, example: str = "") -> Any:
    return field(default=default, metadata={"parse": parse, "help": help, "example": example})


# --- the schema --------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSection:
    """[server]: who we are and where state lives."""

    hostname: str = _option(
        "localhost",
        _str,
        "Public host name devices use to reach this server. It goes into the enrollment "
        "URLs and the generated server certificate. Empty means this machine's fully "
        "qualified domain name (hostname --fqdn).",
    )
    extra_hostnames: tuple[str, ...] = _option(
        (), _list, "More names (or IP addresses) for the generated server certificate, comma-separated."
    )
    state_dir: str = _option(
        "var",
        _str,
        "Directory holding the store, the CA, the TLS key and the admin token. "
        "Relative paths are taken from the working directory.",
    )


@dataclass(frozen=True)
class HttpsSection:
    """[https]: the one HTTPS listener for enrollment and management."""

    listen: ListenAddress = _option(
        ListenAddress("tcp", "127.0.0.1", 8443),
        _tcp_address,
        "Address and port to listen on (HOST:PORT; port 0 picks a free port).",
    )
    max_body: int = _option(
        1048576, _int(1024), "Largest request body accepted, in bytes; larger requests get 413."
    )
    idle_timeout: int = _option(
        60, _int(1), "Seconds an idle keep-alive connection is kept open."
    )
    cert_file: str = _option(
        "",
        _str,
        "PEM server certificate to use instead of one generated by the built-in CA "
        "(key_file must be set too).",
    )
    key_file: str = _option("", _str, "PEM private key of cert_file.")
    chain_file: str = _option(
        "", _str, "PEM intermediate certificates sent after cert_file (optional)."
    )


@dataclass(frozen=True)
class StoreSection:
    """[store]: the ZODB database."""

    uri: str = _option(
        "",
        _store_uri,
        "Where the ZODB lives: file:///path/Data.fs (embedded FileStorage), zeo://host:port "
        "(ZEO server, needs mdmd[zeo]) or postgresql://user:password@host/dbname (RelStorage, "
        "history-free, needs mdmd[postgresql]). Empty means STATE_DIR/Data.fs.",
    )
    pool_size: int = _option(
        7, _int(1, 64), "Database connections, and threads doing store work."
    )
    conflict_retries: int = _option(
        5, _int(0, 100), "How often a unit of work is retried after a write conflict."
    )


@dataclass(frozen=True)
class CASection:
    """[ca]: the built-in certificate authority."""

    key_size: int = _option(3072, _int(2048, 8192), "RSA key size of the generated root CA.")
    server_key_size: int = _option(
        2048, _int(2048, 8192), "RSA key size of the generated TLS server key."
    )
    root_lifetime_days: int = _option(3650, _int(30), "Validity of the generated root CA.")
    server_cert_lifetime_days: int = _option(
        397, _int(1, 3650), "Validity of the generated TLS server certificate."
    )
    client_cert_lifetime_days: int = _option(
        365, _int(1, 3650), "Validity of client certificates issued to devices."
    )
    crl_lifetime_hours: int = _option(
        168, _int(1, 8760), "How long a published CRL stays valid (its nextUpdate)."
    )
    organization: str = _option(
        "mdmd", _str, "Organization name in the generated CA and server certificates."
    )


@dataclass(frozen=True)
class AdminSection:
    """[admin]: the JSON admin API that mdmctl talks to."""

    listen: ListenAddress = _option(
        ListenAddress("unix", path="admin.sock"),
        _listen,
        "unix:PATH or tcp:HOST:PORT; TCP must be a loopback address. A relative socket "
        "path is taken inside state_dir.",
    )
    token_file: str = _option(
        "",
        _str,
        "File holding the bearer token (written 0600 on first start). Empty means "
        "STATE_DIR/admin.token.",
    )


@dataclass(frozen=True)
class Config:
    """
    A whole, validated configuration. Paths are absolute.
    """

    server: ServerSection = field(default_factory=ServerSection)
    https: HttpsSection = field(default_factory=HttpsSection)
    store: StoreSection = field(default_factory=StoreSection)
    ca: CASection = field(default_factory=CASection)
    admin: AdminSection = field(default_factory=AdminSection)

    @property
    def state_dir(self) -> str:
        return self.server.state_dir

    @property
    def store_uri(self) -> str:
        return self.store.uri or "file://" + os.path.join(self.state_dir, "Data.fs")

    @property
    def admin_token_file(self) -> str:
        return self.admin.token_file or os.path.join(self.state_dir, "admin.token")

    @property
    def listening_file(self) -> str:
        """
        Where the running daemon records the addresses it actually bound.
        """
        return os.path.join(self.state_dir, "listening.json")


def iter_options() -> Iterator[tuple[str, dataclasses.Field[Any]]]:
    """
    Every (section name, option field) of the schema, in declaration order.
    """
    for section in dataclasses.fields(Config):
        for option in dataclasses.fields(_section_type(section.name)):
            yield section.name, option


def _section_type(name: str) -> type:
    return type(getattr(Config(), name))


def format_default(option: dataclasses.Field[Any]) -> str:
    """
    The INI spelling of an option's default value.
    """
    value = option.default
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return ", ".join(value)
    if isinstance(value, ListenAddress):
        if value.kind == "unix":
            return str(value)
        return f"{value.host}:{value.port}"
    return str(value)


def load(path: str | None, base_dir: str | None = None) -> Config:
    """
    Load and validate the INI file at C{path}, or the development defaults when C{path} is None.

    Relative paths in the file (and the default C{state_dir}) are resolved
    against C{base_dir}, the working directory by default.

    @raise ConfigErrors: listing every problem found.
    """
    base = os.path.abspath(base_dir or os.getcwd())
    parser = configparser.ConfigParser(interpolation=None, empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    errors: list[str] = []
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                parser.read_file(f, source=path)
        except OSError as e:
            raise ConfigErrors([f"cannot read {path}: {e.strerror}"]) from None
        except (configparser.Error, UnicodeDecodeError) as e:
            raise ConfigErrors([f"{path}: {e}".replace("\n", " ")]) from None

    known = {f.name: f for f in dataclasses.fields(Config)}
    for name in parser.sections():
        if name not in known:
            errors.append(f"[{name}]: unknown section (known: {', '.join(known)})")

    sections: dict[str, Any] = {}
    for name in known:
        section_type = _section_type(name)
        values: dict[str, Any] = {}
        options = {f.name: f for f in dataclasses.fields(section_type)}
        if parser.has_section(name):
            for key, raw in parser.items(name):
                option = options.get(key)
                if option is None:
                    errors.append(f"[{name}] {key}: unknown option")
                    continue
                try:
                    values[key] = option.metadata["parse"](raw)
                except ValueError as e:
                    errors.append(f"[{name}] {key}: {e}")
        sections[name] = section_type(**values)

    config = Config(**sections)
    config = _resolve_paths(config, base)
    if not config.server.hostname:
        config = dataclasses.replace(
            config, server=dataclasses.replace(config.server, hostname=socket.getfqdn())
        )
    errors.extend(_cross_checks(config))
    if errors:
        raise ConfigErrors(errors)
    return config


def _resolve_paths(config: Config, base: str) -> Config:
    state_dir = os.path.normpath(os.path.join(base, config.server.state_dir))

    def absolute(path: str, relative_to: str = base) -> str:
        return os.path.normpath(os.path.join(relative_to, path)) if path else ""

    admin_listen = config.admin.listen
    if admin_listen.kind == "unix":
        admin_listen = ListenAddress("unix", path=absolute(admin_listen.path, state_dir))
    store_uri = config.store.uri
    if store_uri.startswith("file://"):
        store_uri = "file://" + absolute(store_uri[len("file://") :])
    return dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, state_dir=state_dir),
        https=dataclasses.replace(
            config.https,
            cert_file=absolute(config.https.cert_file),
            key_file=absolute(config.https.key_file),
            chain_file=absolute(config.https.chain_file),
        ),
        store=dataclasses.replace(config.store, uri=store_uri),
        admin=dataclasses.replace(
            config.admin, listen=admin_listen, token_file=absolute(config.admin.token_file)
        ),
    )


def _cross_checks(config: Config) -> list[str]:
    errors = []
    if not config.server.hostname:
        errors.append("[server] hostname: must not be empty")
    if bool(config.https.cert_file) != bool(config.https.key_file):
        errors.append("[https] cert_file and key_file: set both or neither")
    for option in ("cert_file", "key_file", "chain_file"):
        path = getattr(config.https, option)
        if path and not os.path.isfile(path):
            errors.append(f"[https] {option}: {path} does not exist")
    if not config.admin.listen.is_loopback:
        errors.append(
            f"[admin] listen: {config.admin.listen.host} is not a loopback address; "
            "the admin API listens on loopback or a UNIX socket only"
        )
    if config.store.uri.startswith("file://") and config.store.uri == "file://":
        errors.append("[store] uri: file:// needs a path")
    return errors


def render_example() -> str:
    """
    The text of C{etc/mdmd.conf}: every section and option, commented, with its default.
    """
    import textwrap

    lines = [
        "# mdmd configuration. Every option is listed with its default, commented out;",
        "# uncomment and change what you need. Start the daemon with",
        "#   twistd --nodaemon --pidfile= mdmd --config /path/to/mdmd.conf",
        "# Relative paths are taken from the daemon's working directory.",
    ]
    for section in dataclasses.fields(Config):
        section_type = _section_type(section.name)
        lines += ["", f"[{section.name}]"]
        doc = (section_type.__doc__ or "").strip()
        if doc:
            summary = doc.split(":", 1)[-1].strip()
            lines.append(f"# {summary[:1].upper()}{summary[1:]}")
        for option in dataclasses.fields(section_type):
            lines.append("")
            for text in textwrap.wrap(option.metadata["help"], width=86):
                lines.append(f"# {text}")
            lines.append(f"#{option.name} = {format_default(option)}".rstrip())
    return "\n".join(lines) + "\n"


def render_reference() -> str:
    """
    The configuration reference as Markdown (kept in README.md, checked by a test).
    """
    lines = []
    for section in dataclasses.fields(Config):
        section_type = _section_type(section.name)
        summary = (section_type.__doc__ or "").strip().split(":", 1)[-1].strip()
        lines += [f"**[{section.name}]**: {summary}", "", "| option | default | meaning |", "|---|---|---|"]
        for option in dataclasses.fields(section_type):
            default = format_default(option) or "(empty)"
            text = option.metadata["help"].replace("|", "\\|")
            lines.append(f"| `{option.name}` | `{default}` | {text} |")
        lines.append("")
    return "\n".join(lines)
