"""The Redis password kept out of the configuration file (``[store] redis_password_file``).

Every account reads the configuration file (``fingerd-ctl set`` finds the setter in it),
so a password in ``redis_url`` is every local account's, and with it the shared hash,
past the setter's policy. The file this key names is read by the root parent when it
reads the configuration (at start, at each reload, for ``fingerd -t``) and by
``fingerd-ctl import`` and ``export``; the worker, which may not read it, inherits the
URL with the password in it, hidden as every password of a Redis URL is in messages.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from fingerd.config import ConfigError, read_regular

if TYPE_CHECKING:
    from fingerd.config import Config

#: Most bytes of a password file: Redis's own passwords are far shorter.
MAX_PASSWORD_BYTES = 4096
#: The key, as messages name it.
KEY = "[store] redis_password_file"


def read_password(path: str) -> str:
    """The password in the file at ``path``: its one line, without the line break. The
    file must be a regular file (a FIFO is refused, never waited on). Raises OSError,
    with ``strerror`` saying what is wrong."""
    data = read_regular(path, MAX_PASSWORD_BYTES + 1)
    if len(data) > MAX_PASSWORD_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_PASSWORD_BYTES} bytes")
    line = data[:-1] if data.endswith(b"\n") else data
    line = line[:-1] if line.endswith(b"\r") else line
    if not line:
        raise OSError(errno.EINVAL, "empty: expected the password on one line")
    if b"\n" in line or b"\r" in line:
        raise OSError(errno.EINVAL, "more than one line: expected the password alone")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise OSError(errno.EINVAL, "not valid UTF-8") from None


def with_password(config: Config) -> Config:
    """``config`` with the password of its ``redis_password_file`` in ``redis_url``, or
    as it is when that key is empty or the store is not Redis. Raises ConfigError naming
    the key's line: a file that cannot be read, or a URL that gives a password too."""
    path = config.redis_password_file
    if config.store_backend != "redis" or not path:
        return config
    where = config.where("store", "redis_password_file")
    if gives_password(config.redis_url):
        raise ConfigError([f"{where}: {KEY}: redis_url gives a password too; "
                           "give it in one place"])
    try:
        password = read_password(path)
    except OSError as exc:
        raise ConfigError([f"{where}: {KEY}: {path}: {exc.strerror or exc}"]) from None
    parts = urlsplit(config.redis_url)
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return dataclasses.replace(config, redis_url=urlunsplit(parts._replace(netloc=netloc)))


def exposed(config: Config) -> str | None:
    """A warning when ``redis_url`` holds a password and every account may read the
    configuration file, or None."""
    if config.store_backend != "redis" or not gives_password(config.redis_url):
        return None
    try:
        if not os.stat(config.path).st_mode & stat.S_IROTH:
            return None
    except OSError:
        return None
    return (f"{config.where('store', 'redis_url')}: [store] redis_url holds the Redis "
            f"password, and every account may read {config.path}; put the password in a "
            f"file only root reads, named by redis_password_file")


def gives_password(url: str) -> bool:
    """Whether ``url`` gives a password, after the user name or as a query option."""
    parts = urlsplit(url)
    return parts.password is not None or any(
        name == "password" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
