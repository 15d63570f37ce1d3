"""Talking to Redis for the store and for fingerd-ctl: connections that never retry behind
the caller's back, the bounded reads of the users hash (redis_schema's server-side scripts
skip an entry too long to be a user's without sending it), and the whole hash replaced at
once.

Importing this module imports the ``redis`` client library (the optional
extra ``fingerd[redis]``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import queue
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fingerd.limits import (
    MAX_STORE_ENTRIES,
    MAX_USERS_FILE_BYTES,
    STORE_TIMEOUT_SECONDS,
)
from fingerd.users.redis_schema import (
    EVERYTHING,
    FIELDS_SCRIPT,
    LONGEST_FIELD,
    LONGEST_VALUE,
    SCAN_SCRIPT,
    SHOWN_BYTES,
    changes_channel,
    entry_problem,
    unread_problem,
    users_key,
)
from fingerd.users.table import UserTable

if TYPE_CHECKING:
    from redis.connection import AbstractConnection

# The client looks its own version up as it connects (redis-py 7 on), and the lookup's
# parsers are imported on first use from Python 3.13 on: used once here, where the worker
# still runs as root, they are loaded for an interpreter the service account cannot read.
with contextlib.suppress(importlib.metadata.PackageNotFoundError):
    importlib.metadata.version("redis")

#: Fields one HSCAN call asks for.
SCAN_BATCH = 1000
#: Connections the sets of one store hold to Redis at most.
SET_CONNECTIONS = 4
#: Fields one HSET of ``replace_users`` carries, all in one transaction.
IMPORT_BATCH = 10000


def connect(url: str, max_connections: int = 1, timeout: float = STORE_TIMEOUT_SECONDS,
            on_connect: Callable[[AbstractConnection], None] | None = None) -> redis.Redis:
    """A client for ``url`` whose every call and connection gives up after ``timeout``
    seconds, and is never retried behind the caller's back; ``on_connect`` sets up each
    connection made, instead of the client library's own ``on_connect``.

    Raises RedisError for a URL the client library cannot read (the configuration
    is checked before, but the library's own reading of it varies with its version).
    """
    try:
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout, socket_timeout=timeout,
            socket_connect_timeout=min(timeout, STORE_TIMEOUT_SECONDS), socket_keepalive=True,
            retry=Retry(NoBackoff(), 0), redis_connect_func=on_connect)
    except ValueError as exc:
        raise redis.RedisError(f"redis_url: {exc}") from None
    return redis.Redis(connection_pool=pool)


class Connection(NamedTuple):
    """A connection as Redis knows it, from CLIENT INFO on it: the id Redis gave it and the
    client address Redis sees for it (``ip:port``; through a proxy, the proxy's)."""

    id: int
    address: str


class Unanswered(redis.RedisError):
    """A write was sent (or may have been) and its reply did not come: Redis may apply
    it still, until the connection it went on, ``connection`` (None when unknown), is
    called off (``call_off``)."""

    def __init__(self, problem: redis.RedisError | str, connection: Connection | None) -> None:
        super().__init__(str(problem))
        self.connection = connection


class _Identity:
    """The connection of a one-connection client as Redis knows it (CLIENT INFO), noted
    each time it connects."""

    def __init__(self) -> None:
        self.connection: Connection | None = None
        #: Whether the client's connection was made and noted, and has not failed since
        #: (its owner says when it did).
        self.ready = False

    def __call__(self, conn: AbstractConnection) -> None:
        self.ready = False
        conn.on_connect()  # type: ignore[no-untyped-call]
        self.connection = None
        conn.send_command("CLIENT", "INFO")  # type: ignore[no-untyped-call]
        try:
            info = conn.read_response()
            fields = dict(item.partition(b"=")[::2] for item in info.split())
            self.connection = Connection(int(fields[b"id"]), fields[b"addr"].decode())
        except (redis.ResponseError, AttributeError, KeyError, TypeError, ValueError):
            # Refused (an ACL, Redis before 6.2) or not in CLIENT INFO's form: the
            # connection serves on, but a write on it cannot be called off.
            pass
        self.ready = True


class Writers:
    """The connections a store's sets write on, SET_CONNECTIONS at most, each used by one
    set at a time, so that the connection a write whose reply did not come went on is
    known; a set that finds none free waits for one (within the timeout)."""

    def __init__(self, url: str) -> None:
        self._free: queue.SimpleQueue[tuple[redis.Redis, _Identity]] = queue.SimpleQueue()
        self._all: list[redis.Redis] = []
        for _ in range(SET_CONNECTIONS):
            identity = _Identity()
            client = connect(url, on_connect=identity)
            self._all.append(client)
            self._free.put((client, identity))

    def set_status(self, key: str, channel: str, name: str, status: str) -> None:
        """Set ``name``'s status in the hash at ``key`` and hint it on ``channel``, in one
        transaction (MULTI, HSET, PUBLISH, EXEC).

        Raises ResponseError when Redis refused it, RedisError when nothing was
        sent, and Unanswered when its reply did not come in time.
        """
        try:
            client, identity = self._free.get(timeout=STORE_TIMEOUT_SECONDS)
        except queue.Empty:
            raise redis.ConnectionError("no connection free for a set") from None
        try:
            try:
                _transaction(client, identity, key, channel, name, status)
            except redis.ReadOnlyError:
                # A replica, no longer the primary: after a failover a proxy (or a name
                # that follows the primary) sends new connections to the new one, and
                # this one would be refused for good. Nothing was applied: it is made
                # again and the set tried once more on it.
                identity.ready = False
                client.connection_pool.disconnect()
                _transaction(client, identity, key, channel, name, status)
        except (redis.ResponseError, _NotConnected):
            raise
        except redis.RedisError as exc:
            identity.ready = False
            raise Unanswered(exc, identity.connection) from None
        finally:
            self._free.put((client, identity))

    def close(self) -> None:
        """Close the connections no set is using; one in use is left to its set."""
        for client in self._all:
            client.connection_pool.disconnect(inuse_connections=False)


def _transaction(client: redis.Redis, identity: _Identity, key: str, channel: str,
                 name: str, status: str) -> None:
    """Set_status's transaction on ``client``, connected first when it is not ready."""
    if not identity.ready:
        # Connected first, apart: a connection that cannot be made or noted (Redis
        # hung, gone) has carried no write, and the set is refused, not left
        # unanswered for a write never sent.
        _connect_now(client, identity)
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(key, name, status)
        pipe.publish(channel, name)
        pipe.execute()


class _NotConnected(redis.ConnectionError):
    """A connection for a write could not be made: nothing was sent."""


def _connect_now(client: redis.Redis, identity: _Identity) -> None:
    """Make ``client``'s connection, noted by ``identity``, with a PING on it; raises
    _NotConnected when it cannot be made (a PING refused on a connection made is not
    a failure)."""
    try:
        client.ping()
    except redis.RedisError as exc:
        if not (isinstance(exc, redis.ResponseError) and identity.ready):
            identity.ready = False
            raise _NotConnected(f"cannot connect for a set: {exc}") from None


def call_off(client: redis.Redis, connection: Connection | None) -> None:
    """Close ``connection`` at Redis, so that nothing more sent on it is applied: once this
    returns, what Redis holds stays so but for other writes. Raises RedisError when that
    cannot be done.

    CLIENT KILL ID id ADDR address closes only a client that has both: a Redis restarted
    since numbers its connections from 1 again, and the id alone may name another client
    then (another host's, anyone's). When none has both, the connection is already gone.
    """
    if connection is None:
        raise redis.RedisError("the connection it went on is unknown (CLIENT INFO refused or "
                               "unreadable)")
    client.client_kill_filter(_id=str(connection.id), addr=connection.address)


def replace_users(url: str, prefix: str, users: UserTable, timeout: float) -> None:
    """Make the hash at ``url`` hold exactly ``users`` (a checked UserTable) in one
    transaction (MULTI, DEL, HSET..., EXEC), then hint every fingerd to read it all again.

    Raises ResponseError when Redis refused it and RedisError when nothing was
    sent, nothing changed either way; Unanswered when its reply did not come within
    ``timeout``: Redis may have applied it, and it is called off first, so that it
    is not applied later (the message says so when that failed).
    """
    key = users_key(prefix)
    items = list(users.items())
    identity = _Identity()
    client = connect(url, timeout=timeout, on_connect=identity)
    try:
        client.ping()  # connected: what fails before this sent nothing
        try:
            with client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                for start in range(0, len(items), IMPORT_BATCH):
                    pipe.hset(key, mapping=dict(items[start:start + IMPORT_BATCH]))
                pipe.publish(changes_channel(prefix), EVERYTHING)
                pipe.execute()
        except redis.ResponseError:
            raise
        except redis.RedisError as exc:
            raise Unanswered(f"{exc}{_call_off_at(url, identity.connection)}",
                             identity.connection) from None
    finally:
        client.connection_pool.disconnect()


def _call_off_at(url: str, connection: Connection | None) -> str:
    """Call off a write on ``connection`` from a fresh connection to ``url``: nothing to
    say when done, else that the write may be applied still, and why."""
    checker = connect(url)
    try:
        call_off(checker, connection)
    except redis.RedisError as exc:
        return f"; it may be applied still, calling it off failed: {exc}"
    finally:
        checker.connection_pool.disconnect()
    return ""


class Skipped(NamedTuple):
    """An entry of the hash that is not served: its field (only the first SHOWN_BYTES when
    it was too long to read), its value or, when too long to read, its length, and why."""

    field: bytes
    value: bytes | int
    problem: str


def read_users(client: redis.Redis, prefix: str, max_entries: int = MAX_STORE_ENTRIES,
               ) -> tuple[dict[str, str], dict[bytes, str]]:
    """``(users, unservable)``: the servable entries of the hash as a name to status dict,
    and the others' fields with the reason each is skipped."""
    users, skipped = read_servable(client, users_key(prefix), max_entries)
    return users, {entry.field: entry.problem for entry in skipped}


def read_servable(client: redis.Redis, key: str, max_entries: int = MAX_STORE_ENTRIES,
                  ) -> tuple[dict[str, str], list[Skipped]]:
    """The servable entries of the hash at ``key`` as a name to status dict, and the others."""
    entries, skipped = read_hash(client, key, max_entries)
    users = {}
    for field, value in entries.items():
        entry = entry_problem(field, value)
        if entry[2] is None:
            name, status, _ = entry
            users[name] = status
        else:
            skipped.append(Skipped(field, value, entry[2]))
    return users, skipped


class HashTooLarge(redis.RedisError):
    """The hash holds more than MAX_STORE_ENTRIES entries or MAX_USERS_FILE_BYTES bytes."""


def read_hash(client: redis.Redis, key: str, max_entries: int = MAX_STORE_ENTRIES,
              ) -> tuple[dict[bytes, bytes], list[Skipped]]:
    """Every ``(field, value)`` of the hash at ``key`` short enough to be a user's, as
    bytes, a batch at a time; and the others, skipped unread.

    Not a snapshot: an entry changed during the scan may be seen either way,
    so the caller subscribes to the hints before it reads. Raises
    HashTooLarge, reading no further, past either bound.
    """
    if client.hlen(key) > max_entries:
        raise HashTooLarge(f"more than {max_entries} entries")
    scan = client.register_script(SCAN_SCRIPT)
    entries: dict[bytes, bytes] = {}
    unread: dict[tuple[bytes, int], Skipped] = {}
    size = 0
    cursor: bytes | int = 0
    while True:
        cursor, kept, longer = scan(keys=[key], args=[cursor, SCAN_BATCH, LONGEST_FIELD,
                                                      LONGEST_VALUE, SHOWN_BYTES])
        for field, value in zip(kept[::2], kept[1::2]):
            size += len(field) + len(value) + 2
            entries[field] = value
        for shown, field_bytes, value_bytes in zip(longer[::3], longer[1::3], longer[2::3]):
            unread[shown, value_bytes] = Skipped(shown, value_bytes,
                                                 unread_problem(field_bytes, value_bytes))
        if len(entries) > max_entries or size > MAX_USERS_FILE_BYTES:
            raise HashTooLarge(f"more than {max_entries} entries or "
                               f"{MAX_USERS_FILE_BYTES} bytes")
        if int(cursor) == 0:
            return entries, list(unread.values())


def read_fields(client: redis.Redis, key: str, names: list[str]) -> list[bytes | int | None]:
    """The value of each of ``names`` in the hash at ``key``: None where there is none, its
    length where it is too long to be a status (it is not read)."""
    values: list[bytes | int | None] = client.register_script(FIELDS_SCRIPT)(
        keys=[key], args=[LONGEST_VALUE, *names])
    return values


def with_fields(users: UserTable, names: list[str], values: list[bytes | int | None],
                ) -> tuple[UserTable, list[Skipped]]:
    """``users`` with what read_fields found for ``names``: a servable value served, a name
    with none or with one no longer servable left out, and the latter skipped."""
    skipped = []
    for name, value in zip(names, values):
        field = name.encode()
        if isinstance(value, bytes):
            entry = entry_problem(field, value)
            if entry[2] is None:
                users = users.with_status(name, entry[1])
                continue
            skipped.append(Skipped(field, value, entry[2]))
        elif value is not None:
            skipped.append(Skipped(field, value, unread_problem(len(field), value)))
        users = users.without(name)  # gone, or no longer servable
    return users, skipped
