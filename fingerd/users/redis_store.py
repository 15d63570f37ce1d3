"""The user table kept in step with a Redis hash that several fingerd hosts share.

Redis holds the truth (redis_schema.py says where); each fingerd keeps the
whole table in memory, published as the file store publishes it (one
assignment of a table never changed afterwards), and answers from it, so
queries go on from the last copy while Redis is away. One thread, the
follower, owns the subscription: it reads the whole hash after every
(re)connect, on HUP and every ``reload_interval`` (pub/sub drops what is
sent while a subscriber is away), and in between re-reads the names the
change channel hints at. A set writes Redis from the worker and publishes
its own table only once Redis acknowledged.

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

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fingerd.limits import (
    MAX_STORE_ENTRIES,
    MAX_USERS_FILE_BYTES,
    STORE_TIMEOUT_SECONDS,
)
from fingerd.users.editing import StoreError
from fingerd.users.redis_schema import (
    EVERYTHING,
    changes_channel,
    entry_problem,
    redacted,
    shown_field,
    users_key,
)
from fingerd.users.table import UserTable, free_gradually
from fingerd.users.usersfile import MAX_REPORTED_ERRORS

log = logging.getLogger(__name__)

#: What the setter answers after ``ERROR `` while Redis cannot take a write.
UNAVAILABLE = "store unavailable"
#: Seconds between reconnection attempts: the first, doubled up to the cap.
BACKOFF_FIRST = 0.1
BACKOFF_CAP = 5.0
#: Seconds the follower waits for a hint before it looks for a resync request.
HINT_WAIT = 0.1
#: Hints the follower takes at once, re-read in one HMGET.
HINT_BATCH = 1000
#: Fields one HSCAN call asks for.
SCAN_BATCH = 1000
#: Connections one store holds to Redis at most: the subscription, the follower's reads
#: and the setters'; a set that finds none free waits for one (within the timeout).
SET_CONNECTIONS = 4
#: Fields one HSET of ``replace_users`` carries, all in one transaction.
IMPORT_BATCH = 10000


def connect(url, max_connections=SET_CONNECTIONS, timeout=STORE_TIMEOUT_SECONDS):
    """A client for ``url`` whose every call and connection gives up after ``timeout``
    seconds, and is never retried behind the caller's back."""
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout, socket_timeout=timeout,
        socket_connect_timeout=min(timeout, STORE_TIMEOUT_SECONDS), socket_keepalive=True,
        retry=Retry(NoBackoff(), 0))
    return redis.Redis(connection_pool=pool)


def replace_users(client, prefix, users):
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


def read_users(client, prefix, max_entries=MAX_STORE_ENTRIES):
    """``(users, unservable)``: the servable entries of the hash as a name to status dict,
    and the others' fields with the reason each is skipped."""
    users = {}
    unservable = {}
    for field, value in read_hash(client, users_key(prefix), max_entries).items():
        name, status, problem = entry_problem(field, value)
        if problem is None:
            users[name] = status
        else:
            unservable[field] = problem
    return users, unservable


class HashTooLarge(redis.RedisError):
    """The hash holds more than MAX_STORE_ENTRIES entries or MAX_USERS_FILE_BYTES bytes."""


def read_hash(client, key, max_entries=MAX_STORE_ENTRIES):
    """Every ``(field, value)`` of the hash at ``key``, as bytes, a batch at a time.

    Not a snapshot: an entry changed during the scan may be seen either way,
    so the caller subscribes to the hints before it reads. Raises
    HashTooLarge, reading no further, past either bound.
    """
    if client.hlen(key) > max_entries:
        raise HashTooLarge(f"more than {max_entries} entries")
    entries = {}
    size = 0
    for field, value in client.hscan_iter(key, count=SCAN_BATCH):
        size += len(field) + len(value) + 2
        entries[field] = value
        if len(entries) > max_entries or size > MAX_USERS_FILE_BYTES:
            raise HashTooLarge(f"more than {max_entries} entries or "
                               f"{MAX_USERS_FILE_BYTES} bytes")
    return entries


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

    def __init__(self, url, prefix, metrics, snapshot=None, max_entries=MAX_STORE_ENTRIES):
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
        self._client = None
        self._pubsub = None
        #: True while the last call to Redis succeeded; only the follower changes it.
        self._up = False
        #: Fields reported as unservable, so that each is reported once.
        self._reported = frozenset()
        self._resync = threading.Event()
        self._stopping = threading.Event()
        self._follower = threading.Thread(target=self._follow, name="fingerd-redis",
                                          daemon=True)

    def users(self):
        """The current table; callers must not change it."""
        return self._users

    def load(self, fallback=True):
        """Read the whole hash, then follow it in a thread of its own.

        When Redis cannot be read, a restarted worker serves the table its
        predecessor left (the follower keeps trying), with ``fallback``; a
        first start, or one without, raises StoreError rather than serve an
        empty table.
        """
        try:
            self._open()
            self._read_all()
        except redis.RedisError as exc:
            self._close()
            if not (fallback and self._load_snapshot(exc)):
                raise StoreError(f"{self.path}: {UNAVAILABLE}: {exc}") from None
        else:
            self._set_up(True)
            self._keep()
        self._follower.start()

    def reload(self, force=False):
        """Have the follower read the whole hash again soon (HUP, ``reload_interval``).

        Returns False at once: the table is published by the follower.
        """
        self._resync.set()
        return False

    def set_status(self, name: str, status: str) -> None:
        """Set ``name``'s status in Redis, hint every fingerd, then serve it here.

        Raises StoreError (``store unavailable``), with nothing changed here,
        while Redis is known to be away or when it does not acknowledge.
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

    def close(self, timeout=STORE_TIMEOUT_SECONDS):
        """Stop following and close the connections (tests and tools)."""
        self._stopping.set()
        if self._follower.is_alive():
            self._follower.join(timeout)
        self._close()

    # The follower thread.

    def _follow(self):
        backoff = BACKOFF_FIRST
        while not self._stopping.is_set():
            try:
                if self._pubsub is None:
                    self._open()
                    self._read_all()
                    self._set_up(True)
                    backoff = BACKOFF_FIRST
                elif self._resync.is_set():
                    self._resync.clear()
                    self._read_all()
                else:
                    self._read_hinted()
            except redis.RedisError as exc:
                self._close()
                self._set_up(False, exc)
                self._count(False)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_CAP)

    def _open(self):
        """Connect and subscribe, before any read, so that no change goes unnoticed."""
        self._resync.clear()
        client = connect(self._url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub = pubsub
        self._client = client
        pubsub.subscribe(self._channel)

    def _close(self):
        pubsub, client = self._pubsub, self._client
        self._pubsub = None
        for closing in (pubsub, client):
            if closing is not None:
                try:
                    closing.close()
                except (redis.RedisError, OSError):
                    pass

    def _read_all(self):
        """Read the whole hash and publish it, the unservable entries left out."""
        try:
            users, unservable = read_users(self._client, self._prefix, self._max_entries)
        except HashTooLarge as exc:
            self._count(False)
            log.error("%s: %s; keeping %d users", self.path, exc, len(self._users))
            return
        self._report(unservable, replace=True)
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

    def _read_hinted(self) -> None:
        """Re-read the names a set of this host asks for at once; otherwise wait a moment
        for hints, and re-read the names they carry (all, for ``*``)."""
        with self._lock:
            names = {name.encode() for name in self._reread}
            self._reread = set()
        hinted = self._hints(0.0 if names else HINT_WAIT)
        if EVERYTHING.encode() in hinted:
            self._read_all()
            return
        names |= hinted
        if not names:
            return
        fields = list(names)
        values = self._client.hmget(self._key, fields)
        unservable = {}
        with self._lock:
            users = self._users
            for field, value in zip(fields, values):
                name, status, problem = entry_problem(field, value or b"")
                if value is not None and problem is None:
                    users = users.with_status(name, status)
                    continue
                if value is not None:
                    unservable[field] = problem
                # Gone, or no longer servable: a name that decodes may be in the table.
                users = users.without(field.decode("utf-8", "replace"))
            self._sets.read(field.decode("utf-8", "replace") for field in fields)
            self._publish(users)
        self._report(unservable, replace=False)

    def _hints(self, wait: float) -> set[bytes]:
        """The names hinted at within ``wait`` seconds, at most about HINT_BATCH."""
        message = self._pubsub.get_message(timeout=wait)
        names: set[bytes] = set()
        while message is not None and len(names) < HINT_BATCH:
            if message.get("type") == "message":
                names.add(message["data"])
            message = self._pubsub.get_message(timeout=0)
        return names

    def _publish(self, users):
        self._users = users
        self._metrics.users.set(len(users))

    def _report(self, unservable, replace):
        """Log each unservable entry once while it stays so; ``replace`` after a whole read
        forgets the entries fixed since."""
        new = [field for field in unservable if field not in self._reported]
        for field in new[:MAX_REPORTED_ERRORS]:
            log.error("%s: entry %s skipped: %s", self.path, shown_field(field),
                      unservable[field])
        if len(new) > MAX_REPORTED_ERRORS:
            log.error("%s: %d more entries skipped", self.path, len(new) - MAX_REPORTED_ERRORS)
        self._reported = (frozenset(unservable) if replace
                          else self._reported | frozenset(unservable))

    def _set_up(self, up, problem=None):
        """Say once that Redis went away or came back, and show it on fingerd_store_up."""
        was, self._up = self._up, up
        self._metrics.store_up.set(1 if up else 0)
        if up and not was:
            log.info("%s: store reachable; serving its %d users", self.path, len(self._users))
        elif was and not up:
            log.error("%s: %s: %s; serving the last copy of %d users and retrying", self.path,
                      UNAVAILABLE, problem, len(self._users))
            self._keep()

    def _count(self, success):
        self._metrics.reloads.labels("success" if success else "failure").inc()
        if success:
            self._metrics.last_reload_success.set(time.time())

    # Across worker restarts.

    def _keep(self):
        """Keep the table for a worker that starts while Redis is away."""
        if self._snapshot is not None:
            try:
                self._snapshot.save_table(self._users)
            except OSError as exc:
                log.warning("cannot keep the table for the next worker: %s", exc)

    def _load_snapshot(self, problem):
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


def _same(table, users):
    """Whether the UserTable ``table`` holds exactly the dict ``users``."""
    return len(table) == len(users) and all(
        table.get(name) == status for name, status in users.items())
