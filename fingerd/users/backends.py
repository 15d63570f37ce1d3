"""Which store holds the statuses: the users file, or a Redis hash shared by several hosts
(``[store] backend``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Optional, Union

from fingerd.users.editing import StoreError
from fingerd.users.store import UserStore

if TYPE_CHECKING:
    from fingerd.config import Config
    from fingerd.metrics import Metrics
    from fingerd.users.fileio import Signature
    from fingerd.users.redis_store import RedisStore
    from fingerd.users.snapshot import Snapshot

    #: The store ``open_store`` builds.
    ConfiguredStore = Union[UserStore, RedisStore]
    #: Writes a status to the users file and logs it: ``writer(path, name, status, by)``,
    #: returning the file's signatures before and after.
    Writer = Callable[[str, str, str, str],
                      tuple[Optional[Signature], Optional[Signature]]]


def open_store(config: Config, metrics: Metrics, writer: Writer | None = None,
               snapshot: Snapshot | None = None) -> ConfiguredStore:
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


def redis_problem() -> str | None:
    """Why the Redis store cannot be used here, or None. Imports it in this process, so
    that a worker forked from it has it before it drops root."""
    try:
        importlib.import_module("fingerd.users.redis_store")
    except ImportError as exc:
        return (f"backend = redis needs the redis client library ({exc}): "
                f"pip install 'fingerd[redis]'")
    return None
