"""The user table kept in step with a Redis hash that several fingerd hosts share.

Redis holds the truth (redis_schema.py says where); each fingerd keeps the
whole table in memory, published as the file store publishes it (one
assignment of a table never changed afterwards), and answers from it, so
queries go on from the last copy while Redis is away. One thread, the
follower (redis_follower.py), owns the subscription: it reads the whole hash
after every (re)connect, on HUP and every ``reload_interval`` (pub/sub drops
what is sent while a subscriber is away), and in between re-reads the names
the change channel hints at; an entry too long to be a user's is skipped
there without being read (redis_access.py). A set writes Redis from the
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
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

import redis

from fingerd.limits import MAX_STORE_ENTRIES, STORE_TIMEOUT_SECONDS
from fingerd.users.editing import CHANGE, SET_DONE, OutcomeUnknown, StoreError
from fingerd.users.redis_access import (
    HashTooLarge,
    Skipped,
    Unanswered,
    Writers,
    call_off,
    connect,
    with_fields,
)
from fingerd.users.redis_follower import UNAVAILABLE, Follower, count_read
from fingerd.users.redis_schema import changes_channel, redacted, users_key
from fingerd.users.table import UserTable

if TYPE_CHECKING:
    from fingerd.metrics import Metrics
    from fingerd.users.snapshot import Snapshot

log = logging.getLogger(__name__)


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
    """The interface of UserStore (``table``, ``load``, ``reload``, ``set_status``, ``path``)
    over the hash ``PREFIX:users`` at ``url``."""

    def __init__(self, url: str, prefix: str, metrics: Metrics, snapshot: Snapshot | None = None,
                 max_entries: int = MAX_STORE_ENTRIES) -> None:
        #: What logs and the setter's errors name as the store.
        self.path = f"{redacted(url)} {users_key(prefix)}"
        self._url = url
        self._key = users_key(prefix)
        self._channel = changes_channel(prefix)
        self._metrics = metrics
        self._snapshot = snapshot
        #: The current table, replaced whole under the lock; readers must not change it.
        self.table = UserTable()
        #: Held to publish a table, and for _sets and _reread; never while waiting for Redis.
        self._lock = threading.Lock()
        self._sets = SetsUnderWay()
        #: Names whose set was overtaken by the follower: it reads them again.
        self._reread: set[str] = set()
        self._follower = Follower(self, url, prefix, metrics, max_entries)

    def load(self, fallback: bool = True) -> None:
        """Read the whole hash, then follow it in a thread of its own.

        When Redis cannot be read, or the hash is refused as too large, a
        restarted worker serves the table its predecessor left (the follower
        keeps trying), with ``fallback``; a first start, or one without,
        raises StoreError rather than serve an empty table.
        """
        # Not held: the first read replaces this table and frees it (free_gradually),
        # which would wait a second for a table still held, with the worker not ready.
        before = weakref.ref(self.table)
        try:
            self._follower.read_first()
        except HashTooLarge as exc:
            if not (fallback and self._load_snapshot(str(exc))):
                self._follower.stop()
                raise StoreError(f"{self.path}: {exc}") from None
            self._follower.set_up(True)
        except redis.RedisError as exc:
            if not (fallback and self._load_snapshot(f"{UNAVAILABLE}: {exc}")):
                raise StoreError(f"{self.path}: {UNAVAILABLE}: {exc}") from None
            self._follower.reported(exc)
            self._metrics.store_up.set(0)
        else:
            if self.table is before():  # a read that publishes keeps its table itself
                self.keep()
            self._follower.set_up(True)
        self._follower.start()

    def reload(self, force: bool = False) -> bool:
        """Have the follower read the whole hash again soon (HUP, ``reload_interval``).

        Returns False at once: the table is published by the follower.
        """
        self._follower.resync()
        return False

    def set_status(self, name: str, status: str, by: str) -> None:
        """Set ``name``'s status in Redis, hint every fingerd, then serve it here, and
        log it as made ``by`` this client (setter.who).

        Raises StoreError (``store unavailable``), with nothing changed here,
        while Redis is known to be away, or when it does not hold the status
        once the write is done; OutcomeUnknown when that cannot be told.
        """
        writers = self._follower.writers
        if not self._follower.up or writers is None:
            raise StoreError(UNAVAILABLE)
        with self._lock:
            self._sets.begin(name)
        written = False
        try:
            written = self._write(writers, name, status)
        finally:
            with self._lock:
                overtaken = self._sets.end(name)
                if written:
                    self._publish(self.table.with_status(name, status), [(name, status)])
                    if overtaken:
                        self._reread.add(name)
        if not written:
            raise StoreError(UNAVAILABLE)
        log.info(SET_DONE, by, name, extra=CHANGE)

    def _write(self, writers: Writers, name: str, status: str) -> bool:
        """Whether Redis holds ``status`` for ``name`` once the write is done.

        A write Redis did not acknowledge in time may have been applied all
        the same (only its reply was late), or may be still on its way: then
        it is called off and Redis asked again, on a fresh connection, so that
        the answer tells the truth and stays true.
        """
        try:
            writers.set_status(self._key, self._channel, name, status)
        except Unanswered as exc:
            return self._holds(name, status, exc)
        except redis.RedisError as exc:  # refused, or never sent: nothing applied
            log.warning("%s: a set failed: %s", self.path, exc)
            return False
        return True

    def _holds(self, name: str, status: str, problem: Unanswered) -> bool:
        """After ``problem`` with a write: call it off, then whether Redis holds ``status``
        for ``name``. Raises OutcomeUnknown when either cannot be done: Redis may have
        applied the write, or may still."""
        checker = connect(self._url)
        try:
            call_off(checker, problem.connection)
            held = checker.hget(self._key, name) == status.encode()
        except redis.RedisError as exc:
            raise OutcomeUnknown(f"a set failed: {problem}; calling it off or reading it "
                                 f"back failed too: {exc}") from None
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
        self._follower.stop(timeout)

    # What the follower publishes through.

    def publish_all(self, table: UserTable) -> list[UserTable]:
        """Serve ``table``, a whole read of the hash; returns the replaced table, for
        free_gradually."""
        with self._lock:
            replaced = [self.table]
            self._sets.read_all()
            self._publish(table)
        return replaced

    def publish_fields(self, names: list[str], values: list[bytes | int | None],
                       ) -> list[Skipped]:
        """Serve what read_fields found for ``names``; returns the entries skipped."""
        with self._lock:
            previous = self.table
            users, skipped = with_fields(previous, names, values)
            self._sets.read(names)
            changed = [name for name in names if users.get(name) != previous.get(name)]
            sets = [(name, users[name]) for name in changed if name in users]
            self._publish(users, sets if len(sets) == len(changed) else None)
        return skipped

    def take_rereads(self) -> set[str]:
        """The names a set overtaken by the follower asks it to read again, forgotten here."""
        with self._lock:
            names = self._reread
            self._reread = set()
        return names

    def _publish(self, users: UserTable, sets: list[tuple[str, str]] | None = None) -> None:
        """Serve ``users`` and keep it for the next worker, as the file store does at each
        change (``_keep``). A worker that starts while Redis cannot be reached serves what
        this one served last, not the table it had when it started or when Redis last
        went away."""
        self.table = users
        self._metrics.users.set(len(users))
        self._keep(users, sets)

    # Across worker restarts.

    def keep(self) -> None:
        """Keep the whole table for a worker that starts while Redis is away, where no
        change has kept it."""
        with self._lock:
            self._keep(self.table)

    def _keep(self, users: UserTable, sets: list[tuple[str, str]] | None = None) -> None:
        """Keep ``users`` for a worker that starts while Redis is away: as records of
        ``sets`` when they are all that changed, else whole. Under the lock, as every
        change is: a set published meanwhile would otherwise be written into a table
        being replaced, or wiped by a table taken from before it."""
        if self._snapshot is None:
            return
        try:
            if sets is None or not all(self._snapshot.add_set(*entry) for entry in sets):
                self._snapshot.save_table(users)
        except OSError as exc:
            log.warning("cannot keep the table for the next worker: %s", exc)

    def _load_snapshot(self, problem: str) -> bool:
        """After ``problem`` at a worker's start: serve the previous worker's table, if any."""
        users = self._snapshot.load_table() if self._snapshot is not None else None
        if users is None:
            return False
        self._publish(users)  # kept in this worker's own snapshot, for its successor
        count_read(self._metrics, False)
        log.error("%s: %s; serving the %d users the previous worker served and retrying",
                  self.path, problem, len(users))
        return True
