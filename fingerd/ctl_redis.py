"""``fingerd-ctl import`` and ``export`` with ``[store] backend = redis``: the Redis hash
replaced by a users file, and printed as one.

``fingerd-ctl`` imports this module for these two commands only, since it imports the
Redis client library, which the other commands neither need nor may find installed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import redis

from fingerd.config import Config
from fingerd.ctl import OutputFailed, out
from fingerd.limits import MAX_USERS_FILE_BYTES
from fingerd.users import redis_access as store
from fingerd.users.redis_password import with_password as with_password  # for ctl.cmd_redis
from fingerd.users.redis_schema import redacted, shown_field, users_key
from fingerd.users.usersfile import UsersFileError, parse_importable

#: Seconds one call to Redis may take for import and export, which move the whole hash.
STORE_TIMEOUT = 60.0


def import_file(config: Config, path: str, complain: Callable[[str], None]) -> bool:
    """Check the file at ``path`` as fingerd checks a users file; only if it is valid,
    make the Redis hash hold exactly its entries, in one transaction. Whether it was
    imported; what went wrong is told to ``complain``."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_USERS_FILE_BYTES + 1)
        users = parse_importable(data, path)
    except OSError as exc:
        complain(f"{path}: cannot read: {exc.strerror or exc}")
        return False
    except UsersFileError as exc:
        print(exc, file=sys.stderr)
        complain(f"nothing imported from {path}")
        return False
    try:
        store.replace_users(config.redis_url, config.redis_prefix, users, STORE_TIMEOUT)
    except store.Unanswered as exc:
        complain(f"{_store_name(config)}: no reply to the import: {exc}; whether {path} was "
                 "imported is unknown; see with: fingerd-ctl export")
        return False
    except redis.RedisError as exc:
        complain(f"{_store_name(config)}: store unavailable: {exc}; nothing imported")
        return False
    out(f"{_store_name(config)}: {len(users)} users imported from {path}")
    return True


def export(config: Config, complain: Callable[[str], None]) -> bool:
    """Print the Redis hash as a users file; entries fingerd would not serve are left out
    and told to ``complain``. Whether every entry was printed."""
    try:
        with store.connect(config.redis_url, max_connections=1, timeout=STORE_TIMEOUT) as conn:
            users, unservable = store.read_users(conn, config.redis_prefix)
    except redis.RedisError as exc:
        complain(f"{_store_name(config)}: store unavailable: {exc}")
        return False
    try:
        sys.stdout.buffer.write("".join(f"{name}:{users[name]}\n" for name in sorted(users))
                                .encode("utf-8"))
        sys.stdout.flush()
    except OSError as exc:
        raise OutputFailed(exc.strerror) from None
    for field, problem in sorted(unservable.items()):
        complain(f"{_store_name(config)}: entry {shown_field(field)} left out: {problem}")
    return not unservable


def _store_name(config: Config) -> str:
    """How messages name the hash."""
    return f"{redacted(config.redis_url)} {users_key(config.redis_prefix)}"
