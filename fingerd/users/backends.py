"""Which store holds the statuses: the users file, or a Redis hash shared by several hosts
(``[store] backend``)."""

import importlib

from fingerd.users.editing import StoreError
from fingerd.users.store import UserStore


def open_store(config, metrics, writer=None, snapshot=None):
    """The configured store, not yet loaded; raises StoreError when it cannot be built.

    The Redis store's module, which imports the client library, is imported only
    for it (at start the parent imported it before the worker dropped root: cli.py
    checks the library is there)."""
    if config.store_backend == "redis":
        try:
            from fingerd.users.redis_store import RedisStore
        except ImportError as exc:  # a HUP chose redis where the library is missing
            raise StoreError(f"backend = redis needs the redis client library ({exc}): "
                             f"pip install 'fingerd[redis]'") from None
        return RedisStore(config.redis_url, config.redis_prefix, metrics, snapshot=snapshot)
    return UserStore(config.users_file, metrics, writer=writer, snapshot=snapshot)


def redis_problem():
    """Why the Redis store cannot be used here, or None. Imports it in this process, so
    that a worker forked from it has it before it drops root."""
    try:
        importlib.import_module("fingerd.users.redis_store")
    except ImportError as exc:
        return (f"backend = redis needs the redis client library ({exc}): "
                f"pip install 'fingerd[redis]'")
    return None
