"""The configuration file (see fingerd.conf(5)): reading and validation, no I/O but
load_config's one read.

INI syntax as configparser reads it, with ``;`` and ``#`` comments also at the
end of a line (after a blank), read in one pass that keeps each key's line.
Every key has a default (config_keys.py); an unknown section or key, or a
value of the wrong kind, is an error naming the file, the line and the key.
All errors are collected, so one run of ``fingerd -t`` shows them all.
Relative paths are taken from the configuration file's directory.
"""

from __future__ import annotations

import difflib
import errno
import ipaddress
import os
import re
import stat
from dataclasses import dataclass, field

from fingerd.config_keys import (
    DEFAULT_PIDFILE,
    SCHEMA,
    SECTIONS,
    Address,
    InvalidValue,
    Network,
    plain,
    resolve_path,
)

__all__ = ["DEFAULT_PATH", "DEFAULT_PIDFILE", "MAX_CONFIG_BYTES", "SCHEMA", "SECTIONS", "Address",
           "Config", "ConfigError", "config_text", "load_config", "parse_config", "configured_path"]

DEFAULT_PATH = "/etc/fingerd/fingerd.conf"
MAX_CONFIG_BYTES = 1024 * 1024


class ConfigError(ValueError):
    """An invalid configuration; ``errors`` holds ``FILE:LINE: message`` strings."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


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
    finger_listen: tuple[Address, ...]
    list_users: bool
    forwarding: bool
    forward_allow: tuple[str, ...]
    forward_timeout: float
    finger_proxy_protocol: bool
    finger_proxy_from: tuple[Network, ...]
    finger_allow_from: tuple[Network, ...]
    system_users: bool
    min_uid: int
    max_uid: int
    plan_files: tuple[str, ...]
    plan_max_bytes: int
    utmp_file: str
    wtmp_file: str
    lastlog_file: str
    mail_dir: str
    setter_listen: tuple[Address, ...]
    setter_policy: str
    setter_admin_group: str
    setter_socket: str
    setter_rate_limit: float
    metrics_listen: tuple[Address, ...]
    web_listen: tuple[Address, ...]
    web_proxy_protocol: bool
    web_proxy_from: tuple[Network, ...]
    web_allow_from: tuple[Network, ...]
    store_backend: str
    redis_url: str
    redis_password_file: str
    redis_prefix: str
    high_bytes: str
    replacements: tuple[tuple[str, str], ...]
    key_lines: dict[tuple[str, str], int] = field(default_factory=dict, compare=False,
                                                  repr=False)

    def where(self, section: str, key: str) -> str:
        """``FILE:LINE`` of a key, or ``FILE`` when it took its default."""
        line = self.key_lines.get((section, key))
        return f"{self.path}:{line}" if line else self.path


#: The keys whose values may go on over indented lines: lists, whose items are stripped.
#: Any other value spanning lines is a key indented by mistake, which a path took in
#: (``users_file = users`` then ``  threads = 4`` named a file ``users\nthreads = 4``).
_MULTILINE_KEYS = frozenset({"listen", "forward_allow", "proxy_from", "allow_from",
                             "plan_files", "replace"})
_COMMENT_RE = re.compile(r"(?<!\S)[#;]")
_SECTION_RE = re.compile(r"\[(.+)\]")
_OPTION_RE = re.compile(r"(.*?)\s*[=:]\s*(.*)")
#: What some editors (Notepad, among others) write before the first line of a UTF-8 file.
_BYTE_ORDER_MARK = "\ufeff"


@dataclass
class _Text:
    """What one pass over the file's text found; ``fatal`` ends configparser's reading,
    ``unparsed`` lines are reported together at the end."""

    sections: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    section_lines: dict[str, int] = field(default_factory=dict)
    key_lines: dict[tuple[str, str], int] = field(default_factory=dict)
    fatal: tuple[int, str] | None = None
    unparsed: list[tuple[int, str]] = field(default_factory=list)

    def value(self, section: str, key: str) -> str | None:
        """The key's value as given (continuation lines joined), or None."""
        lines = self.sections.get(section, {}).get(key)
        return None if lines is None else "\n".join(lines).rstrip()


def _read_text(text: str) -> _Text:
    """Sections, keys, values and their lines in one pass, as configparser (strict, no
    interpolation, no value-less keys) reads them; after a fatal error the pass goes on
    keeping the first of each thing, for configured_path."""
    found = _Text()
    section: str | None = None
    key: str | None = None
    indent = 0

    def fail(number: int, message: str) -> None:
        found.fatal = found.fatal or (number, message)

    # A byte order mark is no part of the first line, as for configparser with
    # encoding="utf-8-sig", systemd and git: the operator cannot see it to remove it.
    for number, line in enumerate(text.removeprefix(_BYTE_ORDER_MARK).split("\n"), 1):
        comment = _COMMENT_RE.search(line)
        content = line[:comment.start() if comment else None].strip()
        if not content:
            if not comment and section is not None and key:
                found.sections[section][key].append("")
            continue
        this_indent = len(line) - len(line.lstrip())
        if section is not None and key and this_indent > indent:
            found.sections[section][key].append(content)
            continue
        indent = this_indent
        header = _SECTION_RE.match(content)
        option = _OPTION_RE.match(content)
        if header:
            section, key = header.group(1), None
            if section in found.sections:
                fail(number, f"[{section}] given twice")
            found.sections.setdefault(section, {})
            found.section_lines.setdefault(section, number)
        elif section is None:
            fail(number, "a key before any [section]")
        elif option and option.group(1):
            key = option.group(1).lower()
            if key in found.sections[section]:
                fail(number, f"[{section}] {key} given twice")
                key = None
            else:
                found.sections[section][key] = [option.group(2).strip()]
                found.key_lines[section, key] = number
        else:
            found.unparsed.append((number, line.strip()))
            key = None if option else key
    return found


def parse_config(text: str, path: str) -> Config:
    """A Config from the text of the file at ``path``, or raise ConfigError."""
    found = _read_text(text)
    if found.fatal:
        raise ConfigError([f"{path}:{found.fatal[0]}: {found.fatal[1]}"])
    if found.unparsed:
        raise ConfigError([f"{path}:{number}: cannot parse {line[:60]!r}"
                           for number, line in found.unparsed])
    errors = _unknown(found, path)
    base = os.path.dirname(os.path.abspath(path))
    values: dict[str, object] = {"path": path, "key_lines": found.key_lines}
    for section, key, default, convert, attr in SCHEMA:
        given = found.value(section, key)
        try:
            if given is not None and "\0" in given:
                # No path, name or address holds one: the system calls would raise.
                raise InvalidValue("a NUL byte in the value")
            if given is not None and "\n" in given.strip() and key not in _MULTILINE_KEYS:
                # The line taken in, not the value: redis_url's may hold a password.
                taken = "" if key == "redis_url" else \
                    next(line for line in given.strip().split("\n")[1:] if line.strip())
                raise InvalidValue(f"the indented line {taken[:60]!r} after it goes on with its "
                                   f"value; a key of its own is not indented" if taken else
                                   "an indented line after it goes on with its value; a key "
                                   "of its own is not indented")
            values[attr] = convert((default if given is None else given).strip(), base)
        except InvalidValue as exc:
            errors.append(f"{path}:{found.key_lines.get((section, key), 0)}: "
                          f"[{section}] {key}: {exc}")
    if not errors:
        errors.extend(_shared_addresses(values, found.key_lines, path))
        if values["max_uid"] < values["min_uid"]:  # type: ignore[operator]
            key = "max_uid" if ("finger", "max_uid") in found.key_lines else "min_uid"
            errors.append(f"{path}:{found.key_lines[('finger', key)]}: [finger] {key}: "
                          f"max_uid {values['max_uid']} is below min_uid {values['min_uid']}: "
                          f"no account would be shown")
    if errors:
        raise ConfigError(errors)
    return Config(**values)  # type: ignore[arg-type]


def _unknown(found: _Text, path: str) -> list[str]:
    """Errors for the sections and keys the file gives that no one reads."""
    known = {(section, key) for section, key, *_ in SCHEMA}
    errors = []
    for section, keys in found.sections.items():
        if section not in SECTIONS:
            errors.append(f"{path}:{found.section_lines[section]}: unknown section "
                          f"[{section}]; known: {', '.join(SECTIONS)}")
            continue
        errors.extend(f"{path}:{found.key_lines[section, key]}: [{section}] unknown key "
                      f"{key!r}" + _suggestion(section, key)
                      for key in keys if (section, key) not in known)
    return errors


def _suggestion(section: str, key: str) -> str:
    """``; did you mean 'KEY'?`` for the nearest known key of ``section``, or nothing."""
    keys = [known for known_section, known, *_ in SCHEMA if known_section == section]
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


#: The services' listening keys, by the Config attribute that holds their addresses.
_LISTENERS = tuple((attr, section, key) for section, key, _d, _c, attr in SCHEMA
                   if key == "listen")


def _shared_addresses(values: dict[str, object], lines: dict[tuple[str, str], int],
                      path: str) -> list[str]:
    """Errors for two services given one address, or one service's list a wildcard and
    another address of its port: the second bind would fail at start.

    A wildcard takes its port on every address of its family (IPv6 sockets
    are bound IPv6-only), so it clashes with any other address there.
    """
    errors = []
    seen: list[tuple[str, Address]] = []
    for attr, section, key in _LISTENERS:
        addresses = values[attr]
        assert isinstance(addresses, tuple)
        for address in addresses:
            for other_section, other in seen:
                if _clash(address, other):
                    errors.append(f"{path}:{lines.get((section, key), 0)}: [{section}] {key}: "
                                  f"{address} is also [{other_section}]'s {other}")
            seen.append((section, address))
    return errors


def _clash(a: Address, b: Address) -> bool:
    if a.port != b.port or a.family != b.family:
        return False
    return a.host == b.host or ipaddress.ip_address(a.host).is_unspecified or \
        ipaddress.ip_address(b.host).is_unspecified


def fingerd_path_setting(text: str, path: str, key: str) -> str | None:
    """The path ``[fingerd] key`` of a configuration that may be invalid, or None.

    Whatever else is wrong in the file is ignored.
    """
    given = _read_text(text).value("fingerd", key)
    if given is None or "\0" in given:
        return None
    return resolve_path(given.strip(), os.path.dirname(os.path.abspath(path))) or None


def config_text(config: Config) -> str:
    """The configuration in the file's own format, every section and key (defaults
    included, paths resolved): read back, it gives ``config`` again (``fingerd -T``)."""
    lines = [f"# the effective configuration of {os.path.abspath(config.path)}"]
    for section in SECTIONS:
        lines.append(f"\n[{section}]")
        lines.extend(f"{key} ={_written(getattr(config, attr))}"
                     for known, key, _d, _r, attr in SCHEMA if known == section)
    return "\n".join(lines) + "\n"


def _written(value: object) -> str:
    """A value as its key's line ends: `` TEXT``, or indented lines of OLD => NEW rules.

    No value read from a file holds a blank followed by ``#`` or ``;`` (a comment), and
    only a replacement rule may start with one: as the first, on the key's line."""
    if isinstance(value, bool):
        return " yes" if value else " no"
    if isinstance(value, float):
        return f" {plain(value)}"
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        rules = [f"{old} => {new}" for old, new in value]
        first = rules.pop(0) if rules[0].startswith(("#", ";")) else ""
        return first + "".join(f"\n    {rule}" for rule in rules)
    if isinstance(value, tuple):
        return " " + ", ".join(map(_item, value)) if value else ""
    return f" {value}" if value != "" else ""


def _item(item: object) -> str:
    """An item of a list as written: a network of one address as that address."""
    if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)) and \
            item.num_addresses == 1:
        return str(item.network_address)
    return str(item)


def read_config_file(path: str) -> bytes:
    """At most MAX_CONFIG_BYTES + 1 bytes of the configuration file at ``path``
    (``read_regular``). Raises OSError."""
    return read_regular(path, MAX_CONFIG_BYTES + 1)


def read_regular(path: str, limit: int) -> bytes:
    """At most ``limit`` bytes of the file at ``path``, a file the configuration is or
    names, which must be a regular file: a FIFO or a device named by mistake (or by
    another account) is refused, never waited on; a directory is refused as one, its
    descriptor closed (open() would keep it: one more at each reload). Raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        with open(fd, "rb", closefd=False) as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            return f.read(limit)
    finally:
        os.close(fd)


def load_config(path: str) -> Config:
    """Read and validate the configuration file at ``path``; raise ConfigError."""
    try:
        data = read_config_file(path)
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


def configured_log_file(config_path: str) -> str:
    """The ``log_file`` of the configuration at ``config_path``, found line by line
    even when the file does not load; "" when it is not set or not readable."""
    return configured_path(config_path, "log_file") or ""


def configured_path(config_path: str, key: str) -> str | None:
    """The path ``[fingerd] key`` of the configuration at ``config_path``, found line by
    line even when the file does not load (a typo must not keep the log from a failed
    start, nor fingerd-ctl from the daemon's pidfile); None when it is not set or the
    file not readable."""
    try:
        text = read_config_file(config_path)[:MAX_CONFIG_BYTES].decode("utf-8", "replace")
    except OSError:
        return None
    return fingerd_path_setting(text, config_path, key)
