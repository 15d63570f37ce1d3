"""The configuration file (see fingerd.conf(5)): parsing and validation, no I/O.

INI syntax read by configparser, with ``;`` and ``#`` comments also at the
end of a line. Every key has a default; an unknown section or key, or a
value of the wrong kind, is an error naming the file, the line and the key.
All errors are collected, so one run of ``fingerd -t`` shows them all.
Relative paths are taken from the configuration file's directory.
"""

import configparser
import difflib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fingerd.finger.output import HIGH_BYTES_POLICIES
from fingerd.users.setter_request import POLICIES

DEFAULT_PATH = "/etc/fingerd/fingerd.conf"
DEFAULT_PIDFILE = "/run/fingerd.pid"
MAX_CONFIG_BYTES = 1024 * 1024


class ConfigError(ValueError):
    """An invalid configuration; ``errors`` holds ``FILE:LINE: message`` strings."""

    def __init__(self, errors):
        self.errors = errors
        super().__init__("\n".join(errors))


@dataclass(frozen=True)
class Address:
    """A listening address; ``host`` is an IP address literal."""

    host: str
    port: int

    @property
    def family(self):
        return 6 if ":" in self.host else 4

    def __str__(self):
        return f"[{self.host}]:{self.port}" if self.family == 6 else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Config:
    path: str
    user: str
    group: str
    pidfile: str
    users_file: str
    reload_interval: float
    threads: int
    max_connections: int
    max_per_source: int
    request_timeout: float
    first_byte_timeout: float
    backlog: int
    log_file: str
    access_log: bool
    log_queries: bool
    finger_listen: tuple
    list_users: bool
    forwarding: bool
    forward_allow: tuple
    forward_timeout: float
    finger_proxy_protocol: bool
    finger_proxy_from: tuple
    system_users: bool
    min_uid: int
    max_uid: int
    plan_files: tuple
    plan_max_bytes: int
    utmp_file: str
    wtmp_file: str
    lastlog_file: str
    mail_dir: str
    setter_listen: tuple
    setter_policy: str
    setter_admin_group: str
    setter_socket: str
    setter_rate_limit: float
    metrics_listen: tuple
    web_listen: tuple
    web_proxy_protocol: bool
    web_proxy_from: tuple
    store_backend: str
    redis_url: str
    redis_prefix: str
    high_bytes: str
    replacements: tuple
    key_lines: dict = field(default_factory=dict, compare=False, repr=False)

    def where(self, section, key):
        """``FILE:LINE`` of a key, or ``FILE`` when it took its default."""
        line = self.key_lines.get((section, key))
        return f"{self.path}:{line}" if line else self.path


class _Invalid(ValueError):
    pass


def _number(parse, what, low, high):
    def convert(text, base):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise _Invalid(f"expected {what} from {_plain(low)} to {_plain(high)}")
        return value
    return convert


def _plain(number):
    return str(int(number)) if number == int(number) else str(number)


def _integer(low, high):
    return _number(int, "an integer", low, high)


def _seconds(low, high):
    return _number(float, "seconds", low, high)


def _boolean(text, base):
    try:
        return configparser.ConfigParser.BOOLEAN_STATES[text.lower()]
    except KeyError:
        raise _Invalid("expected yes or no") from None


def _path(text, base):
    return os.path.normpath(os.path.join(base, text)) if text else ""


_ACCOUNT_RE = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*\$?")


def _account(required):
    def convert(text, base):
        if not text and not required:
            return ""
        if not _ACCOUNT_RE.fullmatch(text):
            raise _Invalid("expected an account name")
        return text
    return convert


def parse_address(text):
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
        ip = number = None
    if not colon or ip is None or ip.version != family:
        raise _Invalid(f"expected HOST:PORT with an IP address, as 0.0.0.0:79 or [::]:79, "
                       f"got {text!r}")
    if not 1 <= number <= 65535:
        raise _Invalid(f"port {number} out of range 1 to 65535 in {text!r}")
    return Address(str(ip), number)


def _addresses(required, loopback_only=False):
    def convert(text, base):
        items = [item.strip() for item in text.split(",") if item.strip()]
        if required and not items:
            raise _Invalid("expected at least one HOST:PORT")
        addresses = tuple(parse_address(item) for item in items)
        for address in addresses:
            if loopback_only and not ipaddress.ip_address(address.host).is_loopback:
                raise _Invalid(f"{address} is not a loopback address; the setter must stay "
                               f"local: only a local client's account can be told")
        if len(set(addresses)) != len(addresses):
            raise _Invalid("an address is listed twice")
        return addresses
    return convert


_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?")


def _hosts(text, base):
    hosts = tuple(item.strip().lower() for item in text.split(",") if item.strip())
    for host in hosts:
        if len(host) > 253 or not _HOST_RE.fullmatch(host):
            raise _Invalid(f"expected host names or addresses, got {host!r}")
    return hosts


def _networks(text, base):
    """Addresses or networks (``10.0.0.0/8``), comma-separated."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        return tuple(ipaddress.ip_network(item) for item in items)
    except ValueError:
        raise _Invalid(f"expected IP addresses or networks, got {text.strip()[:60]!r}") \
            from None


_FILE_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")


def _file_names(text, base):
    names = tuple(item.strip() for item in text.split(",") if item.strip())
    for name in names:
        if name in (".", "..") or not _FILE_NAME_RE.fullmatch(name):
            raise _Invalid(f"expected file names in the home directory, got {name!r}")
    return names


def _choice(*choices):
    def convert(text, base):
        if text not in choices:
            raise _Invalid(f"expected one of {', '.join(choices)}")
        return text
    return convert


_REDIS_SCHEMES = ("redis", "rediss", "unix")


def _redis_url(text, base):
    """``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]``, ``rediss://`` (TLS) or
    ``unix:///PATH[?db=DB]``, as the redis client library reads them."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        parts = port = None
    if parts is None or parts.scheme not in _REDIS_SCHEMES:
        raise _Invalid("expected redis://HOST[:PORT][/DB], rediss://... or unix:///PATH")
    if parts.scheme == "unix":
        if not parts.path.startswith("/"):
            raise _Invalid("expected unix:///PATH, an absolute path")
    elif not parts.hostname or (port is not None and not 1 <= port <= 65535):
        raise _Invalid("expected a host and a port from 1 to 65535")
    elif parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise _Invalid(f"expected a database number after the host, got {parts.path!r}")
    return text


_PREFIX_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _redis_prefix(text, base):
    if not _PREFIX_RE.fullmatch(text):
        raise _Invalid("expected 1 to 64 characters of A-Z a-z 0-9 . _ : -")
    return text


#: Most replacement rules in [output] replace.
MAX_REPLACEMENTS = 64


def _replacements(text, base):
    """``OLD => NEW`` pairs, one a line (continuation lines indented under ``replace =``)."""
    rules = []
    for line in text.splitlines():
        if not line.strip():
            continue
        old, arrow, new = line.strip().partition(" => ")
        if not arrow or not old:
            raise _Invalid(f"expected OLD => NEW on each line, got {line.strip()[:60]!r}")
        rules.append((old, new))
    if len(rules) > MAX_REPLACEMENTS:
        raise _Invalid(f"at most {MAX_REPLACEMENTS} replacements")
    return tuple(rules)


# (section, key, default, converter, Config attribute)
SCHEMA = (
    ("fingerd", "user", "nobody", _account(True), "user"),
    ("fingerd", "group", "", _account(False), "group"),
    ("fingerd", "pidfile", DEFAULT_PIDFILE, _path, "pidfile"),
    ("fingerd", "users_file", "/etc/fingerd/users", _path, "users_file"),
    ("fingerd", "reload_interval", "30", _seconds(0.1, 86400), "reload_interval"),
    ("fingerd", "threads", "16", _integer(1, 1024), "threads"),
    ("fingerd", "max_connections", "256", _integer(1, 65536), "max_connections"),
    ("fingerd", "max_per_source", "32", _integer(0, 65536), "max_per_source"),
    ("fingerd", "request_timeout", "10", _seconds(0.1, 3600), "request_timeout"),
    ("fingerd", "first_byte_timeout", "3", _seconds(0.1, 3600), "first_byte_timeout"),
    ("fingerd", "backlog", "1024", _integer(1, 65535), "backlog"),
    ("fingerd", "log_file", "", _path, "log_file"),
    ("fingerd", "access_log", "no", _boolean, "access_log"),
    ("fingerd", "log_queries", "no", _boolean, "log_queries"),
    ("finger", "listen", "0.0.0.0:79", _addresses(True), "finger_listen"),
    ("finger", "list_users", "no", _boolean, "list_users"),
    ("finger", "forwarding", "no", _boolean, "forwarding"),
    ("finger", "forward_allow", "", _hosts, "forward_allow"),
    ("finger", "forward_timeout", "10", _seconds(0.1, 300), "forward_timeout"),
    ("finger", "proxy_protocol", "no", _boolean, "finger_proxy_protocol"),
    ("finger", "proxy_from", "127.0.0.1, ::1", _networks, "finger_proxy_from"),
    ("finger", "system_users", "no", _boolean, "system_users"),
    ("finger", "min_uid", "1000", _integer(0, 2**32 - 2), "min_uid"),
    ("finger", "max_uid", "65533", _integer(0, 2**32 - 2), "max_uid"),
    ("finger", "plan_files", ".plan, .project, .pgpkey", _file_names, "plan_files"),
    ("finger", "plan_max_bytes", "16384", _integer(0, 1024 * 1024), "plan_max_bytes"),
    ("finger", "utmp_file", "/var/run/utmp", _path, "utmp_file"),
    ("finger", "wtmp_file", "/var/log/wtmp", _path, "wtmp_file"),
    ("finger", "lastlog_file", "/var/log/lastlog", _path, "lastlog_file"),
    ("finger", "mail_dir", "/var/mail", _path, "mail_dir"),
    ("setter", "listen", "127.0.0.1:1079", _addresses(True, loopback_only=True),
     "setter_listen"),
    ("setter", "policy", "own", _choice(*POLICIES), "setter_policy"),
    ("setter", "admin_group", "", _account(False), "setter_admin_group"),
    ("setter", "socket", "", _path, "setter_socket"),
    ("setter", "rate_limit", "5", _number(float, "sets a second", 0, 10000),
     "setter_rate_limit"),
    ("metrics", "listen", "127.0.0.1:9179", _addresses(False), "metrics_listen"),
    ("web", "listen", "", _addresses(False), "web_listen"),
    ("web", "proxy_protocol", "no", _boolean, "web_proxy_protocol"),
    ("web", "proxy_from", "127.0.0.1, ::1", _networks, "web_proxy_from"),
    ("store", "backend", "file", _choice("file", "redis"), "store_backend"),
    ("store", "redis_url", "redis://127.0.0.1:6379/0", _redis_url, "redis_url"),
    ("store", "redis_prefix", "fingerd", _redis_prefix, "redis_prefix"),
    ("output", "high_bytes", "pass", _choice(*HIGH_BYTES_POLICIES), "high_bytes"),
    ("output", "replace", "", _replacements, "replacements"),
)

SECTIONS = tuple(dict.fromkeys(section for section, *_ in SCHEMA))


def _line_numbers(text):
    """Map ``(section, key)`` and ``(section, None)`` to the line that holds them."""
    lines = {}
    section = None
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("[") and "]" in stripped:
            section = stripped[1:stripped.index("]")]
            lines.setdefault((section, None), number)
        elif not line[0].isspace():
            key = re.split(r"[=:]", stripped, maxsplit=1)[0].strip().lower()
            lines.setdefault((section, key), number)
    return lines


def parse_config(text, path):
    """A Config from the text of the file at ``path``, or raise ConfigError."""
    parser = configparser.ConfigParser(
        interpolation=None, inline_comment_prefixes=("#", ";"), strict=True,
        default_section="\0no default section")
    try:
        parser.read_string(text, source=path)
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError([f"{path}:{exc.lineno}: a key before any [section]"]) from None
    except configparser.ParsingError as exc:
        raise ConfigError([f"{path}:{line}: cannot parse {bad.strip()[:60]!r}"
                           for line, bad in exc.errors]) from None
    except (configparser.DuplicateSectionError, configparser.DuplicateOptionError) as exc:
        what = (f"[{exc.section}] {exc.option}" if hasattr(exc, "option")
                else f"[{exc.section}]")
        raise ConfigError([f"{path}:{exc.lineno}: {what} given twice"]) from None
    lines = _line_numbers(text)
    known = {(section, key) for section, key, *_ in SCHEMA}
    errors = []
    for section in parser.sections():
        if section not in SECTIONS:
            errors.append(f"{path}:{lines.get((section, None), 0)}: unknown section "
                          f"[{section}]; known: {', '.join(SECTIONS)}")
            continue
        for key in parser[section]:
            if (section, key) not in known:
                errors.append(f"{path}:{lines.get((section, key), 0)}: [{section}] "
                              f"unknown key {key!r}" + _suggestion(section, key))
    base = os.path.dirname(os.path.abspath(path))
    values = {"path": path, "key_lines": lines}
    for section, key, default, convert, attr in SCHEMA:
        given = parser.has_option(section, key) if parser.has_section(section) else False
        raw = parser.get(section, key) if given else default
        try:
            values[attr] = convert(raw.strip(), base)
        except _Invalid as exc:
            line = lines.get((section, key), 0) if given else 0
            errors.append(f"{path}:{line}: [{section}] {key}: {exc}")
    if not errors:
        errors.extend(_shared_addresses(values, lines, path))
    if errors:
        raise ConfigError(errors)
    return Config(**values)


def _suggestion(section, key):
    """``; did you mean 'KEY'?`` for the nearest known key of ``section``, or nothing."""
    keys = [known for known_section, known, *_ in SCHEMA if known_section == section]
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


#: The services' listening keys, by the Config attribute that holds their addresses.
_LISTENERS = tuple((attr, section, key) for section, key, _d, _c, attr in SCHEMA
                   if key == "listen")


def _shared_addresses(values, lines, path):
    """Errors for two services given one address: the second bind would fail at start.

    A wildcard takes its port on every address of its family (IPv6 sockets
    are bound IPv6-only), so it clashes with any other address there.
    """
    errors = []
    seen = []
    for attr, section, key in _LISTENERS:
        for address in values[attr]:
            for other_section, other in seen:
                if other_section != section and _clash(address, other):
                    errors.append(f"{path}:{lines.get((section, key), 0)}: [{section}] {key}: "
                                  f"{address} is also [{other_section}]'s {other}")
            seen.append((section, address))
    return errors


def _clash(a, b):
    if a.port != b.port or a.family != b.family:
        return False
    return a.host == b.host or ipaddress.ip_address(a.host).is_unspecified or \
        ipaddress.ip_address(b.host).is_unspecified


def pidfile_setting(text, path):
    """The ``[fingerd] pidfile`` of a configuration that may be invalid, or None, so
    that a daemon can still be found and stopped when a typo makes the file fail to
    load."""
    return fingerd_path_setting(text, path, "pidfile")


def fingerd_path_setting(text: str, path: str, key: str) -> "str | None":
    """The path ``[fingerd] key`` of a configuration that may be invalid, or None.

    Read line by line, ignoring everything else.
    """
    section = None
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("[") and "]" in stripped:
            section = stripped[1:stripped.index("]")]
        elif section == "fingerd" and not line[:1].isspace():
            name, sep, value = stripped.partition("=")
            if sep and name.strip().lower() == key:
                value = re.split(r"\s[#;]", " " + value)[0].strip()
                return _path(value, os.path.dirname(os.path.abspath(path))) or None
    return None


def load_config(path):
    """Read and validate the configuration file at ``path``; raise ConfigError."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read configuration: {exc.strerror}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: larger than {MAX_CONFIG_BYTES} bytes"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{path}:{line}: not valid UTF-8"]) from None
    return parse_config(text, path)
