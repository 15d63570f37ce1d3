"""The configuration's keys: each one's section, default and reader, and the readers.

Pure: a reader turns a value's text into its typed value, or raises
InvalidValue with what was expected; the file's syntax is config.py's.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union
from urllib.parse import parse_qsl, urlsplit

from fingerd.users.setter_request import POLICIES

DEFAULT_PIDFILE = "/run/fingerd.pid"
#: Most replacement rules in [output] replace.
MAX_REPLACEMENTS = 64
#: What ``[output] high_bytes`` may be (``finger.output.Renderer`` does each): keep
#: UTF-8, drop non-ASCII, or show it as ``cat -v`` does.
HIGH_BYTES_POLICIES = ("pass", "strip", "caret")

#: A value's reader: its text (stripped) and the configuration's directory, to its value.
Reader = Callable[[str, str], Any]
#: An address or network of a ``proxy_from`` or ``allow_from`` list.
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class InvalidValue(ValueError):
    """A value of the wrong kind; the message says what was expected."""


@dataclass(frozen=True)
class Address:
    """A listening address; ``host`` is an IP address literal."""

    host: str
    port: int

    @property
    def family(self) -> int:
        return 6 if ":" in self.host else 4

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family == 6 else f"{self.host}:{self.port}"


def _number(parse: Callable[[str], float], what: str, low: float, high: float) -> Reader:
    def convert(text: str, base: str) -> float:
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise InvalidValue(f"expected {what} from {plain(low)} to {plain(high)}")
        return value
    return convert


def plain(number: float) -> str:
    """A number as written: ``30`` rather than ``30.0``; a float as read back exactly."""
    return str(int(number)) if number == int(number) else str(number)


def _integer(low: int, high: int) -> Reader:
    return _number(int, "an integer", low, high)


def _seconds(low: float, high: float) -> Reader:
    return _number(float, "seconds", low, high)


def _boolean(text: str, base: str) -> bool:
    try:
        return configparser.ConfigParser.BOOLEAN_STATES[text.lower()]
    except KeyError:
        raise InvalidValue("expected yes or no") from None


def resolve_path(text: str, base: str) -> str:
    """A path taken from the directory ``base``; empty stays empty (not set)."""
    return os.path.normpath(os.path.join(base, text)) if text else ""


def _required_path(text: str, base: str) -> str:
    """A path resolve_path takes, which may not be empty: a file the daemon cannot do
    without (an empty one would name the directory it happens to run in)."""
    if not text:
        raise InvalidValue("expected a path; leave the line out for the default")
    return resolve_path(text, base)


#: Most bytes of a Unix socket's path: sockaddr_un's sun_path (108 on Linux) but its NUL.
MAX_UNIX_PATH_BYTES = 107


def _socket_path(text: str, base: str) -> str:
    """A Unix socket's path, as resolve_path takes it, short enough to be bound."""
    path = resolve_path(text, base)
    size = len(os.fsencode(path))
    if size > MAX_UNIX_PATH_BYTES:
        raise InvalidValue(f"a Unix socket's path has at most {MAX_UNIX_PATH_BYTES} bytes; "
                           f"{path[:40]}... has {size}")
    return path


_ACCOUNT_RE = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*\$?")


def _account(required: bool) -> Reader:
    def convert(text: str, base: str) -> str:
        if not text and not required:
            return ""
        if not _ACCOUNT_RE.fullmatch(text):
            raise InvalidValue("expected an account name")
        return text
    return convert


def parse_address(text: str) -> Address:
    """An Address from ``HOST:PORT`` or ``[HOST]:PORT``, HOST an IP address."""
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        family = 6
    else:
        family = 4
    try:
        ip = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        ip = None
        number = 0
    if not colon or ip is None or ip.version != family:
        raise InvalidValue(f"expected HOST:PORT with an IP address, as 0.0.0.0:79 or [::]:79, "
                           f"got {text!r}")
    if not 1 <= number <= 65535:
        raise InvalidValue(f"port {number} out of range 1 to 65535 in {text!r}")
    return Address(str(ip), number)


def _items(text: str) -> tuple[str, ...]:
    """The non-empty items of a comma-separated list, stripped."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _addresses(required: bool, loopback_only: bool = False) -> Reader:
    def convert(text: str, base: str) -> tuple[Address, ...]:
        items = _items(text)
        if required and not items:
            raise InvalidValue("expected at least one HOST:PORT")
        addresses = tuple(parse_address(item) for item in items)
        for address in addresses:
            if loopback_only and not ipaddress.ip_address(address.host).is_loopback:
                raise InvalidValue(f"{address} is not a loopback address; the setter must stay "
                                   f"local: only a local client's account can be told")
        if len(set(addresses)) != len(addresses):
            raise InvalidValue("an address is listed twice")
        return addresses
    return convert


#: Longest host name a forwarded query may name (RFC 1123 2.1, as DNS carries it).
MAX_HOST_CHARS = 253

#: One label of a host name (RFC 1123 2.1). Each label is matched alone: a pattern for
#: the whole name with a repeat inside a repeat backtracks exponentially on a name that
#: fails, and holds the GIL, so every thread of the worker, while it does.
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def valid_host(host: str) -> bool:
    """A host name (labels of letters, digits and inner hyphens, with one final dot or
    none) or an IP address literal, fit to be resolved: what a forwarded query's host
    must be (finger/forward.py), and so what ``forward_allow`` may list."""
    if len(host) > MAX_HOST_CHARS:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        name = host[:-1] if host.endswith(".") else host
        return all(_LABEL_RE.fullmatch(label) for label in name.split("."))


def _hosts(text: str, base: str) -> tuple[str, ...]:
    """Exactly the hosts a forwarded query may name (valid_host), in lower
    case: a query's host is compared with them as written, without regard to case, so
    an entry no query can name would never match."""
    items = _items(text)
    for item in items:
        if not valid_host(item):
            raise InvalidValue(f"expected host names or addresses, got {item[:60]!r}")
    return tuple(item.lower() for item in items)


#: IPv4-mapped IPv6 addresses (RFC 4291 2.5.5.2).
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _networks(text: str, base: str) -> tuple[Network, ...]:
    """Addresses or networks (``10.0.0.0/8``), comma-separated; the error names the first
    item that is neither, which a long list would otherwise hide.

    An entry inside ::ffff:0:0/96 becomes the IPv4 network it maps (``::ffff:192.0.2.0/120``
    is 192.0.2.0/24): a client at an IPv4-mapped address is compared as its IPv4 address,
    which no IPv6 network holds."""
    networks = []
    for item in _items(text):
        try:
            network = ipaddress.ip_network(item)
        except ValueError:
            raise InvalidValue(f"expected IP addresses or networks, got {item[:60]!r}") \
                from None
        if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
            network = ipaddress.IPv4Network((network.network_address.ipv4_mapped,
                                             network.prefixlen - 96))
        networks.append(network)
    return tuple(networks)


_FILE_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")


def _file_names(text: str, base: str) -> tuple[str, ...]:
    names = _items(text)
    for name in names:
        if name in (".", "..") or not _FILE_NAME_RE.fullmatch(name):
            raise InvalidValue(f"expected file names in the home directory, got {name!r}")
    return names


def _choice(*choices: str) -> Reader:
    def convert(text: str, base: str) -> str:
        if text not in choices:
            raise InvalidValue(f"expected one of {', '.join(choices)}")
        return text
    return convert


_REDIS_SCHEMES = ("redis", "rediss", "unix")
#: The query options redis_url may hold, each with its value's pattern and what that
#: says. The client library's others would set what fingerd sets itself (timeouts,
#: retries, the pool) or the kind of its replies.
_REDIS_OPTIONS = {
    "db": ("[0-9]+", "a database number"),
    "username": (".+", "a user name"),
    "password": (".+", "a password"),
}
#: And those of rediss:// (TLS) too.
_TLS_OPTIONS = {
    **_REDIS_OPTIONS,
    **{name: (".+", "a path") for name in ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile",
                                           "ssl_keyfile")},
    "ssl_cert_reqs": ("none|optional|required", "none, optional or required"),
    "ssl_check_hostname": ("(?i:yes|no|true|false|on|off|1|0)", "yes or no"),
}


def _redis_url(text: str, base: str) -> str:
    """``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]``, ``rediss://`` (TLS) or
    ``unix:///PATH[?db=DB]``, as the redis client library reads them, with the query
    options fingerd leaves to it."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidValue("expected redis://HOST[:PORT][/DB], rediss://... or unix:///PATH") \
            from None
    if parts.scheme not in _REDIS_SCHEMES:
        raise InvalidValue("expected redis://HOST[:PORT][/DB], rediss://... or unix:///PATH")
    if parts.scheme == "unix":
        if not parts.path.startswith("/"):
            raise InvalidValue("expected unix:///PATH, an absolute path")
    elif not parts.hostname or (port is not None and not 1 <= port <= 65535):
        raise InvalidValue("expected a host and a port from 1 to 65535")
    elif parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise InvalidValue(f"expected a database number after the host, got {parts.path!r}")
    _redis_options(parts.query, _TLS_OPTIONS if parts.scheme == "rediss" else _REDIS_OPTIONS)
    return text


def _redis_options(query: str, accepted: dict[str, tuple[str, str]]) -> None:
    """Check the query of a redis_url against ``accepted``, as the client library splits
    it; a value is named only when it cannot be a secret."""
    try:
        options = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise InvalidValue("expected query options as ?NAME=VALUE&NAME=VALUE") from None
    for name, value in options:
        if name not in accepted:
            raise InvalidValue(f"query option {name!r} not accepted; expected "
                               f"{', '.join(accepted)}")
        pattern, what = accepted[name]
        if not re.fullmatch(pattern, value):
            shown = f", got {value!r}" if pattern != ".+" else ""
            raise InvalidValue(f"query option {name}: expected {what}{shown}")


_PREFIX_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _redis_prefix(text: str, base: str) -> str:
    if not _PREFIX_RE.fullmatch(text):
        raise InvalidValue("expected 1 to 64 characters of A-Z a-z 0-9 . _ : -")
    return text


def _replacements(text: str, base: str) -> tuple[tuple[str, str], ...]:
    """``OLD => NEW`` pairs, one a line (continuation lines indented under ``replace =``);
    ``OLD =>`` removes OLD (its line's blanks at the end were stripped as it was read)."""
    rules = []
    for line in text.splitlines():
        if not line.strip():
            continue
        old, arrow, new = line.strip().partition(" => ")
        if not arrow and line.strip().endswith(" =>"):
            old, arrow, new = line.strip()[:-3], " =>", ""
        if not arrow or not old:
            raise InvalidValue(f"expected OLD => NEW on each line, got {line.strip()[:60]!r}")
        rules.append((old, new))
    if len(rules) > MAX_REPLACEMENTS:
        raise InvalidValue(f"at most {MAX_REPLACEMENTS} replacements")
    return tuple(rules)


# (section, key, default, reader, Config attribute)
SCHEMA: tuple[tuple[str, str, str, Reader, str], ...] = (
    ("fingerd", "user", "nobody", _account(True), "user"),
    ("fingerd", "group", "", _account(False), "group"),
    ("fingerd", "pidfile", DEFAULT_PIDFILE, _required_path, "pidfile"),
    ("fingerd", "users_file", "/etc/fingerd/users", _required_path, "users_file"),
    ("fingerd", "reload_interval", "30", _seconds(0.1, 86400), "reload_interval"),
    ("fingerd", "threads", "16", _integer(1, 1024), "threads"),
    ("fingerd", "max_connections", "256", _integer(1, 65536), "max_connections"),
    ("fingerd", "max_per_source", "32", _integer(0, 65536), "max_per_source"),
    ("fingerd", "request_timeout", "10", _seconds(0.1, 3600), "request_timeout"),
    ("fingerd", "first_byte_timeout", "3", _seconds(0.1, 3600), "first_byte_timeout"),
    ("fingerd", "backlog", "1024", _integer(1, 65535), "backlog"),
    ("fingerd", "log_file", "", resolve_path, "log_file"),
    ("fingerd", "access_log", "no", _boolean, "access_log"),
    ("fingerd", "log_queries", "no", _boolean, "log_queries"),
    ("finger", "listen", "0.0.0.0:79", _addresses(True), "finger_listen"),
    ("finger", "list_users", "no", _boolean, "list_users"),
    ("finger", "forwarding", "no", _boolean, "forwarding"),
    ("finger", "forward_allow", "", _hosts, "forward_allow"),
    ("finger", "forward_timeout", "10", _seconds(0.1, 300), "forward_timeout"),
    ("finger", "proxy_protocol", "no", _boolean, "finger_proxy_protocol"),
    ("finger", "proxy_from", "127.0.0.1, ::1", _networks, "finger_proxy_from"),
    ("finger", "allow_from", "", _networks, "finger_allow_from"),
    ("finger", "system_users", "no", _boolean, "system_users"),
    ("finger", "min_uid", "1000", _integer(0, 2**32 - 2), "min_uid"),
    ("finger", "max_uid", "4294967293", _integer(0, 2**32 - 2), "max_uid"),
    ("finger", "plan_files", ".plan, .project, .pgpkey", _file_names, "plan_files"),
    ("finger", "plan_max_bytes", "16384", _integer(0, 1024 * 1024), "plan_max_bytes"),
    ("finger", "utmp_file", "/var/run/utmp", resolve_path, "utmp_file"),
    ("finger", "wtmp_file", "/var/log/wtmp", resolve_path, "wtmp_file"),
    ("finger", "lastlog_file", "/var/log/lastlog", resolve_path, "lastlog_file"),
    ("finger", "mail_dir", "/var/mail", resolve_path, "mail_dir"),
    ("setter", "listen", "127.0.0.1:1079", _addresses(True, loopback_only=True),
     "setter_listen"),
    ("setter", "policy", "own", _choice(*POLICIES), "setter_policy"),
    ("setter", "admin_group", "", _account(False), "setter_admin_group"),
    ("setter", "socket", "", _socket_path, "setter_socket"),
    ("setter", "rate_limit", "5", _number(float, "sets a second", 0, 10000),
     "setter_rate_limit"),
    ("metrics", "listen", "127.0.0.1:9179", _addresses(False), "metrics_listen"),
    ("web", "listen", "", _addresses(False), "web_listen"),
    ("web", "proxy_protocol", "no", _boolean, "web_proxy_protocol"),
    ("web", "proxy_from", "127.0.0.1, ::1", _networks, "web_proxy_from"),
    ("web", "allow_from", "", _networks, "web_allow_from"),
    ("store", "backend", "file", _choice("file", "redis"), "store_backend"),
    ("store", "redis_url", "redis://127.0.0.1:6379/0", _redis_url, "redis_url"),
    ("store", "redis_password_file", "", resolve_path, "redis_password_file"),
    ("store", "redis_prefix", "fingerd", _redis_prefix, "redis_prefix"),
    ("output", "high_bytes", "pass", _choice(*HIGH_BYTES_POLICIES), "high_bytes"),
    ("output", "replace", "", _replacements, "replacements"),
)

SECTIONS = tuple(dict.fromkeys(section for section, *_ in SCHEMA))
