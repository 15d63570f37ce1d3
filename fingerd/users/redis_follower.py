"""The thread that keeps a RedisStore's table in step with the hash: it owns the
subscription to the change channel and the connections, reads the whole hash after every
(re)connect and when asked (HUP, ``reload_interval``: pub/sub drops what is sent while a
subscriber is away), and in between re-reads the names the hints carry.

redis_store.py says why what the follower publishes last for a name is what
Redis holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import redis
from redis.client import PubSub

from fingerd.limits import STORE_TIMEOUT_SECONDS
from fingerd.users.redis_access import (
    HashTooLarge,
    Skipped,
    Writers,
    connect,
    read_fields,
    read_servable,
)
from fingerd.users.redis_schema import (
    EVERYTHING,
    changes_channel,
    hinted_name,
    shown_field,
    users_key,
)
from fingerd.users.table import UserTable, free_gradually
from fingerd.users.usersfile import MAX_REPORTED_ERRORS

if TYPE_CHECKING:
    from fingerd.metrics import Metrics
    from fingerd.users.redis_store import RedisStore

log = logging.getLogger(__name__)

#: What the setter answers after ``ERROR `` while Redis cannot take a write.
UNAVAILABLE = "store unavailable"
#: Seconds between reconnection attempts: the first, doubled up to the cap.
BACKOFF_FIRST = 0.1
BACKOFF_CAP = 5.0
#: Seconds the follower waits for a hint before it looks for a resync request.
HINT_WAIT = 0.1
#: Seconds the subscription may stay quiet before the follower asks Redis for a PONG on
#: it: a Redis that accepts connections and answers nothing is found out within this
#: and STORE_TIMEOUT_SECONDS.
PING_INTERVAL = 1.0
#: Reasons for Redis being away logged in one outage at most: each new one is logged once.
MAX_REASONS = 8
#: Hints the follower takes at once, re-read in one call.
HINT_BATCH = 1000
#: The follower's connections, apart from the sets' so that sets waiting for Redis never
#: hold up what other hosts set: the subscription and its reads.
FOLLOWER_CONNECTIONS = 2


class _Subscription(NamedTuple):
    """The follower's client and its subscription to the hints."""

    reader: redis.Redis
    pubsub: PubSub


class Follower:
    """Follows the hash ``PREFIX:users`` at ``url`` for ``store``, publishing through it;
    opens the client the store's sets write with."""

    def __init__(self, store: RedisStore, url: str, prefix: str, metrics: Metrics,
                 max_entries: int) -> None:
        self._store = store
        self._url = url
        self._key = users_key(prefix)
        self._channel = changes_channel(prefix)
        self._metrics = metrics
        self._max_entries = max_entries
        #: The sets' connections, and the follower's client, with its subscription.
        self.writers: Writers | None = None
        self._subscription: _Subscription | None = None
        #: True while the last call to Redis succeeded; only the follower changes it.
        self.up = False
        #: (field, value) of the entries reported as skipped, so that each is reported once.
        self._reported: frozenset[tuple[bytes, bytes | int]] = frozenset()
        #: Why Redis could not be reached, as logged since it went away.
        self._reasons: set[str] = set()
        #: Why the last whole read refused the hash (too large), until one is served.
        self._refused: str | None = None
        #: When the subscription last brought a message, and when the PING not answered
        #: yet was sent (None: none is waiting), in time.monotonic().
        self._heard = 0.0
        self._pinged: float | None = None
        self._resync = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="fingerd-redis",
                                        daemon=True)

    def read_first(self) -> None:
        """Connect, subscribe and publish the whole hash, before the thread starts.

        Raises HashTooLarge, connected and subscribed, with nothing published,
        when the hash is refused; RedisError, every connection closed, when
        Redis cannot be read. The caller says the store is up (``set_up``).
        """
        try:
            self._read_all(self._open().reader)
        except HashTooLarge as exc:
            self._refused = str(exc)
            raise
        except redis.RedisError:
            self._close()
            raise

    def start(self) -> None:
        self._thread.start()

    def resync(self) -> None:
        """Read the whole hash again soon."""
        self._resync.set()

    def stop(self, timeout: float = STORE_TIMEOUT_SECONDS) -> None:
        """Stop following and close the connections."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._close()

    def _follow(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._stopping.is_set():
            try:
                subscription = self._subscription
                if subscription is None:
                    self._read_again(self._open().reader)
                    self.set_up(True)
                    backoff = BACKOFF_FIRST
                elif self._resync.is_set():
                    self._resync.clear()
                    self._read_again(subscription.reader)
                else:
                    self._read_hinted(subscription)
            except redis.RedisError as exc:
                self._close()
                self.set_up(False, exc)
                count_read(self._metrics, False)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_CAP)

    def _open(self) -> _Subscription:
        """Connect and subscribe, before any read, so that no change goes unnoticed; a
        Redis that does not confirm the subscription raises RedisError, and is not taken
        for reachable."""
        self._resync.clear()
        reader = connect(self._url, max_connections=FOLLOWER_CONNECTIONS)
        subscription = _Subscription(reader, reader.pubsub())
        self._subscription = subscription
        self.writers = Writers(self._url)
        subscription.pubsub.subscribe(self._channel)
        deadline = time.monotonic() + STORE_TIMEOUT_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            message = subscription.pubsub.get_message(timeout=left)
            if message is not None and message["type"] == "subscribe":
                self._heard, self._pinged = time.monotonic(), None
                return subscription
        raise redis.TimeoutError("the subscription to the changes was not confirmed")

    def _close(self) -> None:
        subscription, writers = self._subscription, self.writers
        self._subscription = None
        # The reader's own close() leaves its pool's connection open (the client was
        # given the pool), until the garbage collector finds it: each reconnection
        # Redis took and then refused would leave one more connection behind.
        closings: list[Callable[[], object]] = (
            [] if subscription is None else
            [subscription.pubsub.close, subscription.reader.connection_pool.disconnect])
        if writers is not None:
            closings.append(writers.close)
        for closing in closings:
            try:
                closing()
            except (redis.RedisError, OSError):
                pass

    def _read_again(self, reader: redis.Redis) -> None:
        """``_read_all``, a hash too large refused as a too large users file is: the table
        served kept, the failed read counted, and logged once until a read is served."""
        try:
            self._read_all(reader)
        except HashTooLarge as exc:
            count_read(self._metrics, False)
            if str(exc) != self._refused:
                self._refused = str(exc)
                log.error("%s: %s; keeping %d users", self._store.path, exc,
                          len(self._store.table))

    def _read_all(self, reader: redis.Redis) -> None:
        """Read the whole hash with ``reader`` and publish it, the unservable entries left
        out; raises HashTooLarge, publishing nothing, past the bounds."""
        users, skipped = read_servable(reader, self._key, self._max_entries)
        if self._refused is not None:
            self._refused = None
            log.info("%s: read %d users", self._store.path, len(users))
        self._report(skipped, replace=True)
        if _same(self._store.table, users):
            count_read(self._metrics, True)  # unchanged: the answers made from it stay good
            return
        replaced = self._store.publish_all(UserTable(users.items()))
        count_read(self._metrics, True)
        free_gradually(replaced)

    def _read_hinted(self, subscription: _Subscription) -> None:
        """Re-read the names a set of this host asks for at once; otherwise wait a moment
        for hints, and re-read the names they carry (all, for ``*``)."""
        self._keep_alive(subscription.pubsub)
        names = self._store.take_rereads()
        hinted = self._hints(subscription.pubsub, 0.0 if names else HINT_WAIT)
        if EVERYTHING.encode() in hinted:
            self._read_again(subscription.reader)
            return
        names |= {name for name in map(hinted_name, hinted) if name is not None}
        if not names:
            return
        ordered = list(names)
        values = read_fields(subscription.reader, self._key, ordered)
        self._report(self._store.publish_fields(ordered, values), replace=False)

    def _hints(self, pubsub: PubSub, wait: float) -> set[bytes]:
        """The names hinted at within ``wait`` seconds, at most about HINT_BATCH."""
        message = pubsub.get_message(timeout=wait)
        names: set[bytes] = set()
        while message is not None and len(names) < HINT_BATCH:
            self._heard = time.monotonic()
            if message.get("type") == "message":
                names.add(message["data"])
            elif message.get("type") == "pong":
                self._pinged = None
            message = pubsub.get_message(timeout=0)
        return names

    def _keep_alive(self, pubsub: PubSub) -> None:
        """Ask for a PONG once the subscription has been quiet PING_INTERVAL; raise
        TimeoutError when one asked for has not come in STORE_TIMEOUT_SECONDS."""
        now = time.monotonic()
        if self._pinged is None:
            if now - self._heard >= PING_INTERVAL:
                pubsub.ping()
                self._pinged = now
        elif now - self._pinged > STORE_TIMEOUT_SECONDS:
            raise redis.TimeoutError(f"no answer to a PING in {STORE_TIMEOUT_SECONDS:g} s")

    def _report(self, skipped: list[Skipped], replace: bool) -> None:
        """Log each skipped entry once while it stays so (again when its value changes);
        ``replace`` after a whole read forgets the entries fixed since."""
        found = {(entry.field, entry.value): entry for entry in skipped}
        new = [entry for key, entry in found.items() if key not in self._reported]
        path = self._store.path
        for entry in new[:MAX_REPORTED_ERRORS]:
            log.error("%s: entry %s skipped: %s", path, shown_field(entry.field),
                      entry.problem)
        if len(new) > MAX_REPORTED_ERRORS:
            log.error("%s: %d more entries skipped", path, len(new) - MAX_REPORTED_ERRORS)
        self._reported = (frozenset(found) if replace
                          else self._reported | frozenset(found))

    def set_up(self, up: bool, problem: Exception | None = None) -> None:
        """Say once that Redis went away or came back, and show it on fingerd_store_up."""
        was, self.up = self.up, up
        self._metrics.store_up.set(1 if up else 0)
        served = len(self._store.table)
        if up and not was:
            self._reasons.clear()
            log.info("%s: store reachable; serving its %d users", self._store.path, served)
        elif was and not up:
            self.reported(problem)
            log.error("%s: %s: %s; serving the last copy of %d users and retrying",
                      self._store.path, UNAVAILABLE, problem, served)
        elif not up and self.reported(problem):
            # The reason first logged may be only how the outage began (the connection
            # closed): what keeps Redis away (a password or an ACL refused, a key of
            # another type) is said too, once.
            log.error("%s: still unreachable: %s; retrying", self._store.path, problem)

    def reported(self, problem: Exception | None) -> bool:
        """Note ``problem`` as a reason Redis is away that the log gives: whether it is
        one not noted before in this outage (and within MAX_REASONS)."""
        reason = str(problem)
        if problem is None or reason in self._reasons or len(self._reasons) >= MAX_REASONS:
            return False
        self._reasons.add(reason)
        return True


def count_read(metrics: Metrics, success: bool) -> None:
    """Count a whole read of the hash, or a failure to reach it, as a reload."""
    metrics.reloads.labels("success" if success else "failure").inc()
    if success:
        metrics.last_reload_success.set(time.time())


def _same(table: UserTable, users: dict[str, str]) -> bool:
    """Whether the UserTable ``table`` holds exactly the dict ``users``."""
    return len(table) == len(users) and all(
        table.get(name) == status for name, status in users.items())
