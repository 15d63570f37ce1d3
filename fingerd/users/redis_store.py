"""The user table kept in step with a Redis hash that several fingerd hosts share.

Redis holds the truth (redis_schema.py says where); each fingerd keeps the
whole table in memory, published as the file store publishes it (one
assignment of a table never changed afterwards), and answers from it, so
queries go on from the last copy while Redis is away. One thread, the
follower, owns the subscription: it reads the whole hash after every
(re)connect, on HUP and every ``reload_interval`` (pub/sub drops what is
sent while a subscriber is away), and in between re-reads the names the
change channel hints at; an entry too long to be a user's is skipped there
without being read (redis_schema's scripts). A set writes Redis from the
worker and publishes its own table only once Redis acknowledged, or, when
the acknowledgement did not come in time, once a read on a fresh connection
finds the value in Redis: the answer says what Redis holds.

The hints arrive in the order Redis applied the writes, and the follower
reads a hinted name after its hint, so what the follower publishes last for
a name is what Redis holds. A set's own publication is the one out of that
order: when the follower published a read of the name while the set was
under way, that read may be newer than the set's value, so the follower
reads the name once more after the set published (SetsUnderWay).

Importing this module imports the ``redis`` client library (the optional
extra ``fingerd[redis]``); fingerd imports it only with ``backend = redis``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

import redis
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.retry import Retry

from fingerd.limits import (
    MAX_STORE_ENTRIES,
    MAX_USERS_FILE_BYTES,
    STORE_TIMEOUT_SECONDS,
)
from fingerd.users.editing import StoreError
from fingerd.users.redis_schema import (
    EVERYTHING,
    FIELDS_SCRIPT,
    LONGEST_FIELD,
    LONGEST_VALUE,
    SCAN_SCRIPT,
    SHOWN_BYTES,
    changes_channel,
    entry_problem,
    hinted_name,
    redacted,
    shown_field,
    unread_problem,
    users_key,
)
from fingerd.users.table import UserTable, free_gradually
from fingerd.users.usersfile import MAX_REPORTED_ERRORS

if TYPE_CHECKING:
    from fingerd.metrics import Metrics
    from fingerd.users.snapshot import Snapshot

log = logging.getLogger(__name__)

#: What the setter answers after ``ERROR `` while Redis cannot take a write.
UNAVAILABLE = "store unavailable"
#: Seconds between reconnection attempts: the first, doubled up to the cap.
BACKOFF_FIRST = 0.1
BACKOFF_CAP = 5.0
#: Seconds the follower waits for a hint before it looks for a resync request.
HINT_WAIT = 0.1
#: Hints the follower takes at once, re-read in one call.
HINT_BATCH = 1000
#: Fields one HSCAN call asks for.
SCAN_BATCH = 1000
#: Connections the sets of one store hold to Redis at most; a set that finds none free
#: waits for one (within the timeout).
SET_CONNECTIONS = 4
#: The follower's connections, apart from the sets' so that sets waiting for Redis never
#: hold up what other hosts set: the subscription and its reads.
FOLLOWER_CONNECTIONS = 2
#: Fields one HSET of ``replace_users`` carries, all in one transaction.
IMPORT_BATCH = 10000


def connect(url: str, max_connections: int = SET_CONNECTIONS,
            timeout: float = STORE_TIMEOUT_SECONDS) -> redis.Redis:
    """A client for ``url`` whose every call and connection gives up after ``timeout``
    seconds, and is never retried behind the caller's back."""
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout, socket_timeout=timeout,
        socket_connect_timeout=min(timeout, STORE_TIMEOUT_SECONDS), socket_keepalive=True,
        retry=Retry(NoBackoff(), 0))
    return redis.Redis(connection_pool=pool)


def replace_users(client: redis.Redis, prefix: str, users: UserTable) -> None:
    """Make the hash hold exactly ``users`` (a checked UserTable) in one transaction
    (MULTI, DEL, HSET..., EXEC), then hint every fingerd to read it all again."""
    key = users_key(prefix)
    items = list(users.items())
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        for start in range(0, len(items), IMPORT_BATCH):
            pipe.hset(key, mapping=dict(items[start:start + IMPORT_BATCH]))
        pipe.publish(changes_channel(prefix), EVERYTHING)
        pipe.execute()


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


class _Subscription(NamedTuple):
    """The follower's client and its subscription to the hints."""

    reader: redis.Redis
    pubsub: PubSub


class SetsUnderWay:
    """The names this host's sets are writing, and which of them the follower published a
    read of meanwhile. Pure bookkeeping, used under the store's lock."""

    def __init__(self) -> None:
        self._writing: dict[str, int] = {}
        self._overtaken: set[str] = set()

    def begin(self, name: str) -> None:
        self._writing[name] = self._writing.get(name, 0) + 1

    def read(self, names: Iterable[str]) -> None:
        """The follower publishes what Redis held for ``names`` at some moment."""
        self._overtaken.update(name for name in names if name in self._writing)

    def read_all(self) -> None:
        """The follower publishes what Redis held for every name."""
        self._overtaken.update(self._writing)

    def end(self, name: str) -> bool:
        """One set of ``name`` ends: whether the follower read it while the set was under
        way (then its value may be older than the follower's, and the name is read again)."""
        overtaken = name in self._overtaken
        left = self._writing.pop(name) - 1
        if left:
            self._writing[name] = left
        else:
            self._overtaken.discard(name)
        return overtaken


class RedisStore:
    """The interface of UserStore (``users``, ``load``, ``reload``, ``set_status``, ``path``)
    over the hash ``PREFIX:users`` at ``url``."""

    def __init__(self, url: str, prefix: str, metrics: Metrics, snapshot: Snapshot | None = None,
                 max_entries: int = MAX_STORE_ENTRIES) -> None:
        #: What logs and the setter's errors name as the store.
        self.path = f"{redacted(url)} {users_key(prefix)}"
        self._url = url
        self._prefix = prefix
        self._key = users_key(prefix)
        self._channel = changes_channel(prefix)
        self._metrics = metrics
        self._snapshot = snapshot
        self._max_entries = max_entries
        self._users = UserTable()
        #: Held to publish a table, and for _sets and _reread; never while waiting for Redis.
        self._lock = threading.Lock()
        self._sets = SetsUnderWay()
        #: Names whose set was overtaken by the follower: it reads them again.
        self._reread: set[str] = set()
        #: The sets' client, and the follower's, with its subscription.
        self._client: redis.Redis | None = None
        self._subscription: _Subscription | None = None
        #: True while the last call to Redis succeeded; only the follower changes it.
        self._up = False
        #: (field, value) of the entries reported as skipped, so that each is reported once.
        self._reported: frozenset[tuple[bytes, bytes | int]] = frozenset()
        self._resync = threading.Event()
        self._stopping = threading.Event()
        self._follower = threading.Thread(target=self._follow, name="fingerd-redis",
                                          daemon=True)

    def users(self) -> UserTable:
        """The current table; callers must not change it."""
        return self._users

    def load(self, fallback: bool = True) -> None:
        """Read the whole hash, then follow it in a thread of its own.

        When Redis cannot be read, a restarted worker serves the table its
        predecessor left (the follower keeps trying), with ``fallback``; a
        first start, or one without, raises StoreError rather than serve an
        empty table.
        """
        try:
            self._read_all(self._open().reader)
        except redis.RedisError as exc:
            self._close()
            if not (fallback and self._load_snapshot(exc)):
                raise StoreError(f"{self.path}: {UNAVAILABLE}: {exc}") from None
        else:
            self._set_up(True)
            self._keep()
        self._follower.start()

    def reload(self, force: bool = False) -> bool:
        """Have the follower read the whole hash again soon (HUP, ``reload_interval``).

        Returns False at once: the table is published by the follower.
        """
        self._resync.set()
        return False

    def set_status(self, name: str, status: str) -> None:
        """Set ``name``'s status in Redis, hint every fingerd, then serve it here.

        Raises StoreError (``store unavailable``), with nothing changed here,
        while Redis is known to be away, or when it does not hold the status
        once the write is done.
        """
        client = self._client
        if not self._up or client is None:
            raise StoreError(UNAVAILABLE)
        with self._lock:
            self._sets.begin(name)
        written = False
        try:
            written = self._write(client, name, status)
        finally:
            with self._lock:
                overtaken = self._sets.end(name)
                if written:
                    self._publish(self._users.with_status(name, status))
                    if overtaken:
                        self._reread.add(name)
        if not written:
            raise StoreError(UNAVAILABLE)

    def _write(self, client: redis.Redis, name: str, status: str) -> bool:
        """Whether Redis holds ``status`` for ``name`` once the write is done.

        A write Redis did not acknowledge in time may have been applied all
        the same (only its reply was late): then Redis is asked again, on a
        fresh connection, so that the answer tells the truth.
        """
        try:
            with client.pipeline(transaction=True) as pipe:
                pipe.hset(self._key, name, status)
                pipe.publish(self._channel, name)
                pipe.execute()
        except redis.ResponseError as exc:  # Redis refused the transaction: nothing applied
            log.warning("%s: a set failed: %s", self.path, exc)
            return False
        except redis.RedisError as exc:
            return self._holds(name, status, exc)
        return True

    def _holds(self, name: str, status: str, problem: Exception) -> bool:
        """After ``problem`` with a write: whether Redis holds ``status`` for ``name``."""
        checker = connect(self._url, max_connections=1)
        try:
            held = checker.hget(self._key, name) == status.encode()
        except redis.RedisError as exc:
            log.warning("%s: a set failed: %s; reading it back failed too: %s", self.path,
                        problem, exc)
            return False
        finally:
            checker.connection_pool.disconnect()
        if held:
            log.warning("%s: a set was acknowledged late (%s); Redis holds it", self.path,
                        problem)
        else:
            log.warning("%s: a set failed: %s", self.path, problem)
        return held

    def close(self, timeout: float = STORE_TIMEOUT_SECONDS) -> None:
        """Stop following and close the connections (tests and tools)."""
        self._stopping.set()
        if self._follower.is_alive():
            self._follower.join(timeout)
        self._close()

    # The follower thread.

    def _follow(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._stopping.is_set():
            try:
                subscription = self._subscription
                if subscription is None:
                    self._read_all(self._open().reader)
                    self._set_up(True)
                    backoff = BACKOFF_FIRST
                elif self._resync.is_set():
                    self._resync.clear()
                    self._read_all(subscription.reader)
                else:
                    self._read_hinted(subscription)
            except redis.RedisError as exc:
                self._close()
                self._set_up(False, exc)
                self._count(False)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_CAP)

    def _open(self) -> _Subscription:
        """Connect and subscribe, before any read, so that no change goes unnoticed."""
        self._resync.clear()
        reader = connect(self._url, max_connections=FOLLOWER_CONNECTIONS)
        subscription = _Subscription(reader, reader.pubsub(ignore_subscribe_messages=True))
        self._subscription = subscription
        self._client = connect(self._url)
        subscription.pubsub.subscribe(self._channel)
        return subscription

    def _close(self) -> None:
        subscription, client = self._subscription, self._client
        self._subscription = None
        closings: list[PubSub | redis.Redis] = (
            [] if subscription is None else [subscription.pubsub, subscription.reader])
        if client is not None:
            closings.append(client)
        for closing in closings:
            try:
                closing.close()
            except (redis.RedisError, OSError):
                pass

    def _read_all(self, reader: redis.Redis) -> None:
        """Read the whole hash with ``reader`` and publish it, the unservable entries left
        out."""
        try:
            users, skipped = read_servable(reader, self._key, self._max_entries)
        except HashTooLarge as exc:
            log.error("%s: %s; keeping %d users", self.path, exc, len(self._users))
            self._count(False)
            return
        self._report(skipped, replace=True)
        if _same(self._users, users):
            self._count(True)  # unchanged: the answers made from it stay good
            return
        table = UserTable(users.items())
        with self._lock:
            replaced = [self._users]
            self._sets.read_all()
            self._publish(table)
        self._count(True)
        free_gradually(replaced)

    def _read_hinted(self, subscription: _Subscription) -> None:
        """Re-read the names a set of this host asks for at once; otherwise wait a moment
        for hints, and re-read the names they carry (all, for ``*``)."""
        with self._lock:
            names = self._reread
            self._reread = set()
        hinted = self._hints(subscription.pubsub, 0.0 if names else HINT_WAIT)
        if EVERYTHING.encode() in hinted:
            self._read_all(subscription.reader)
            return
        names |= {name for name in map(hinted_name, hinted) if name is not None}
        if not names:
            return
        ordered = list(names)
        values = read_fields(subscription.reader, self._key, ordered)
        skipped = []
        with self._lock:
            users = self._users
            for name, value in zip(ordered, values):
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
            self._sets.read(ordered)
            self._publish(users)
        self._report(skipped, replace=False)

    def _hints(self, pubsub: PubSub, wait: float) -> set[bytes]:
        """The names hinted at within ``wait`` seconds, at most about HINT_BATCH."""
        message = pubsub.get_message(timeout=wait)
        names: set[bytes] = set()
        while message is not None and len(names) < HINT_BATCH:
            if message.get("type") == "message":
                names.add(message["data"])
            message = pubsub.get_message(timeout=0)
        return names

    def _publish(self, users: UserTable) -> None:
        self._users = users
        self._metrics.users.set(len(users))

    def _report(self, skipped: list[Skipped], replace: bool) -> None:
        """Log each skipped entry once while it stays so (again when its value changes);
        ``replace`` after a whole read forgets the entries fixed since."""
        found = {(entry.field, entry.value): entry for entry in skipped}
        new = [entry for key, entry in found.items() if key not in self._reported]
        for entry in new[:MAX_REPORTED_ERRORS]:
            log.error("%s: entry %s skipped: %s", self.path, shown_field(entry.field),
                      entry.problem)
        if len(new) > MAX_REPORTED_ERRORS:
            log.error("%s: %d more entries skipped", self.path, len(new) - MAX_REPORTED_ERRORS)
        self._reported = (frozenset(found) if replace
                          else self._reported | frozenset(found))

    def _set_up(self, up: bool, problem: Exception | None = None) -> None:
        """Say once that Redis went away or came back, and show it on fingerd_store_up."""
        was, self._up = self._up, up
        self._metrics.store_up.set(1 if up else 0)
        if up and not was:
            log.info("%s: store reachable; serving its %d users", self.path, len(self._users))
        elif was and not up:
            log.error("%s: %s: %s; serving the last copy of %d users and retrying", self.path,
                      UNAVAILABLE, problem, len(self._users))
            self._keep()

    def _count(self, success: bool) -> None:
        self._metrics.reloads.labels("success" if success else "failure").inc()
        if success:
            self._metrics.last_reload_success.set(time.time())

    # Across worker restarts.

    def _keep(self) -> None:
        """Keep the table for a worker that starts while Redis is away."""
        if self._snapshot is not None:
            try:
                self._snapshot.save_table(self._users)
            except OSError as exc:
                log.warning("cannot keep the table for the next worker: %s", exc)

    def _load_snapshot(self, problem: Exception) -> bool:
        """After ``problem`` at a worker's start: serve the previous worker's table, if any."""
        users = self._snapshot.load_table() if self._snapshot is not None else None
        if users is None:
            return False
        self._publish(users)
        self._metrics.store_up.set(0)
        self._count(False)
        log.error("%s: %s: %s; serving the %d users the previous worker served and retrying",
                  self.path, UNAVAILABLE, problem, len(users))
        return True


def _same(table: UserTable, users: dict[str, str]) -> bool:
    """Whether the UserTable ``table`` holds exactly the dict ``users``."""
    return len(table) == len(users) and all(
        table.get(name) == status for name, status in users.items())
