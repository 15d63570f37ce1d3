"""The Redis store, in-process, against a real redis-server of the test's own."""

import gc
import logging
import subprocess
import sys
import threading

import pytest

from fingerd.metrics import Metrics
from fingerd.users.editing import StoreError
from fingerd.users.snapshot import Snapshot, create
from fingerd.users.table import UserTable
from tests.support import ROOT
from tests.support.markers import needs_tool
from tests.support.polling import during, wait_until

redis = pytest.importorskip("redis")
pytestmark = needs_tool("redis-server", "redis-server")

# Imported once the skip above has found the client library, which it needs.
from fingerd.users.redis_store import RedisStore, SetsUnderWay  # noqa: E402

KEY = "test:users"
CHANNEL = "test:changes"


@pytest.fixture
def direct(redis_server):
    """A client of the test's own, to write Redis behind the store's back."""
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    client.hset(KEY, mapping={"alice": "Happy", "bob": "Sleeping"})
    yield client
    client.close()


@pytest.fixture
def open_store(redis_server, direct):
    stores = []

    def make(metrics=None, fallback=True, **kw):
        store = RedisStore(redis_server.url, "test", metrics or Metrics(), **kw)
        stores.append(store)
        store.load(fallback)
        return store

    yield make
    for store in stores:
        store.close()


def sample(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels)


def test_load_reads_the_whole_hash(open_store):
    metrics = Metrics()
    store = open_store(metrics)
    assert dict(store.table.items()) == {"alice": "Happy", "bob": "Sleeping"}
    assert sample(metrics, "fingerd_users") == 2
    assert sample(metrics, "fingerd_store_up") == 1
    assert sample(metrics, "fingerd_reloads_total", outcome="success") == 1


def test_a_set_is_acknowledged_by_redis_served_here_and_by_every_other_store(open_store,
                                                                            direct, caplog):
    """And logged by the store that wrote it, with its client."""
    here, there = open_store(), open_store()
    with caplog.at_level(logging.INFO, logger="fingerd.users.redis_store"):
        here.set_status("carol", "New here", "127.0.0.1 (uid 0, root)")
    assert [r.getMessage() for r in caplog.records] == [
        "setter: 127.0.0.1 (uid 0, root) set the status of carol"]
    assert direct.hget(KEY, "carol") == b"New here"
    assert here.table["carol"] == "New here"
    wait_until(lambda: there.table.get("carol") == "New here", timeout=2,
               what="the other store to serve the set")


def test_a_hint_makes_every_store_read_the_name_again(open_store, direct):
    store = open_store()
    direct.hset(KEY, "dave", "Away")
    direct.publish(CHANNEL, "dave")
    wait_until(lambda: store.table.get("dave") == "Away", what="dave served")
    direct.hdel(KEY, "alice")
    direct.publish(CHANNEL, "alice")
    wait_until(lambda: "alice" not in store.table, what="alice gone")


def test_what_was_changed_without_a_hint_is_read_on_reload(open_store, direct):
    store = open_store()
    direct.hset(KEY, "erin", "Quiet")
    direct.hdel(KEY, "bob")
    store.reload(force=True)
    wait_until(lambda: dict(store.table.items()) == {"alice": "Happy", "erin": "Quiet"},
               what="the whole hash read again")


def test_invalid_entries_are_never_served_and_reported_once(open_store, direct, caplog):
    direct.hset(KEY, mapping={"-bad": "x", "frank": "two\nlines", "ok": "fine",
                              "gina": b"\xff"})
    with caplog.at_level(logging.ERROR):
        store = open_store()
        assert dict(store.table.items()) == {"alice": "Happy", "bob": "Sleeping",
                                               "ok": "fine"}
        for _ in range(2):
            store.reload(force=True)
            direct.hset(KEY, "alice", "Sad")
            direct.publish(CHANNEL, "alice")
            wait_until(lambda: store.table["alice"] == "Sad", what="alice read again")
            direct.hset(KEY, "alice", "Happy")
        direct.hset(KEY, "alice", "bell\x07")
        direct.publish(CHANNEL, "alice")
        wait_until(lambda: "alice" not in store.table, what="alice no longer served")

        def skips():
            return [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]

        # A re-read of a hinted name serves the table first and reports after.
        wait_until(lambda: any("'alice'" in m for m in skips()), what="alice reported")
    skipped = skips()
    assert len(skipped) == 4, skipped
    assert any("'-bad'" in m and "invalid user name" in m for m in skipped)
    assert any("'frank'" in m and "control character" in m for m in skipped)
    assert any("'gina'" in m and "UTF-8" in m for m in skipped)


def test_while_redis_is_down_the_last_copy_is_served_and_sets_are_refused(
        open_store, redis_server, direct, caplog):
    metrics = Metrics()
    store = open_store(metrics)
    with caplog.at_level(logging.INFO):
        redis_server.stop()
        wait_until(lambda: sample(metrics, "fingerd_store_up") == 0, what="store down")
        with pytest.raises(StoreError, match="^store unavailable$"):
            store.set_status("alice", "Gone", "a test")
        assert dict(store.table.items()) == {"alice": "Happy", "bob": "Sleeping"}
        redis_server.start()  # no persistence: an empty Redis
        wait_until(lambda: sample(metrics, "fingerd_store_up") == 1, what="store up")
        wait_until(lambda: len(store.table) == 0, what="the empty hash read")
        store.set_status("alice", "Back", "a test")
    assert direct.hget(KEY, "alice") == b"Back"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("store unavailable" in m and "retrying" in m for m in messages) == 1
    assert sum("store reachable" in m for m in messages) == 1


@pytest.fixture
def account(redis_server, direct):
    """A URL of the test's Redis for an ACL account of the test's own, ``fd``."""
    direct.execute_command("ACL", "SETUSER", "fd", "on", ">pw", "~*", "&*", "+@all")
    return f"redis://fd:pw@127.0.0.1:{redis_server.port}/0"


def test_a_subscription_redis_refuses_is_the_store_down_said_once(account, direct, caplog):
    metrics = Metrics()
    store = RedisStore(account, "test", metrics)
    store.load()
    try:
        with caplog.at_level(logging.INFO):
            direct.execute_command("ACL", "SETUSER", "fd", "-subscribe")
            direct.client_kill_filter(_type="pubsub")
            wait_until(lambda: sample(metrics, "fingerd_store_up") == 0, what="store down")
            for _ in during(2.0):
                assert sample(metrics, "fingerd_store_up") == 0
            with pytest.raises(StoreError, match="^store unavailable$"):
                store.set_status("alice", "Refused", "a test")
            direct.execute_command("ACL", "SETUSER", "fd", "+subscribe")
            wait_until(lambda: sample(metrics, "fingerd_store_up") == 1, what="store up")
    finally:
        store.close()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("store unavailable" in m for m in messages) == 1, messages
    assert sum("store reachable" in m for m in messages) == 1, messages
    # The outage began with the connection closed; what kept Redis away is said too, once
    # however many times it was met.
    assert sum("still unreachable" in m and "'subscribe'" in m for m in messages) == 1, \
        messages


def test_a_first_start_where_redis_refuses_the_subscription_fails_with_the_reason(account,
                                                                                  direct):
    direct.execute_command("ACL", "SETUSER", "fd", "-subscribe")
    store = RedisStore(account, "test", Metrics())
    with pytest.raises(StoreError, match="store unavailable: .*'subscribe'"):
        store.load()


def test_a_first_start_without_redis_fails(ports, tmp_path):
    store = RedisStore(f"redis://127.0.0.1:{ports.take()}/0", "test", Metrics())
    with pytest.raises(StoreError, match="store unavailable"):
        store.load()


def test_a_url_the_client_library_cannot_read_fails_the_start_as_a_store_error(ports):
    store = RedisStore(f"redis://127.0.0.1:{ports.take()}/0?db=x", "test", Metrics())
    with pytest.raises(StoreError, match="store unavailable: redis_url: "):
        store.load()


def test_a_restarted_worker_serves_its_predecessors_table_until_redis_is_back(ports):
    snapshot = Snapshot(create())
    snapshot.save_table(UserTable([("alice", "Kept")]))
    metrics = Metrics()
    store = RedisStore(f"redis://127.0.0.1:{ports.take()}/0", "test", metrics,
                       snapshot=snapshot)
    try:
        store.load()
        assert dict(store.table.items()) == {"alice": "Kept"}
        assert sample(metrics, "fingerd_store_up") == 0
    finally:
        store.close()


def test_a_worker_serving_its_predecessors_table_keeps_it_for_its_own_successor(ports):
    previous = Snapshot(create())
    previous.save_table(UserTable([("alice", "Kept")]))
    own = Snapshot(create(), previous=previous.fd)
    store = RedisStore(f"redis://127.0.0.1:{ports.take()}/0", "test", Metrics(), snapshot=own)
    try:
        store.load()
    finally:
        store.close()
    assert dict(Snapshot(create(), previous=own.fd).load_table().items()) == {"alice": "Kept"}


class PausedSave(Snapshot):
    """A snapshot whose whole saves, once ``go`` is cleared, wait for it (``saving`` says
    one does), so that what else writes the snapshot meanwhile is seen."""

    def __init__(self):
        super().__init__(create())
        self.saving, self.go = threading.Event(), threading.Event()
        self.go.set()

    def save(self, data, read_at=None):
        self.saving.set()
        assert self.go.wait(10), "the test never let the save go on"
        super().save(data, read_at)


def test_a_change_published_while_the_table_is_kept_is_kept_too(ports):
    """A set published while the whole table is kept is recorded after that table, not
    wiped by a table taken before it."""
    snapshot = PausedSave()
    store = RedisStore(f"redis://127.0.0.1:{ports.take()}/0", "test", Metrics(),
                       snapshot=snapshot)
    store.publish_all(UserTable([("alice", "Kept")]))
    snapshot.go.clear()
    keeping = threading.Thread(target=store.keep)
    keeping.start()
    assert snapshot.saving.wait(10)
    publishing = threading.Thread(target=store.publish_fields, args=(["carol"], [b"Here"]))
    publishing.start()
    publishing.join(0.5)  # done at once where nothing orders it after the save
    snapshot.go.set()
    keeping.join(10)
    publishing.join(10)
    kept = Snapshot(create(), previous=snapshot.fd).load_table()
    assert dict(kept.items()) == {"alice": "Kept", "carol": "Here"}


def test_a_hash_too_large_is_refused_the_table_kept_and_reported_once(open_store, direct,
                                                                     caplog):
    metrics = Metrics()
    store = open_store(metrics, max_entries=3)
    direct.hset(KEY, mapping={f"u{i}": "x" for i in range(5)})
    with caplog.at_level(logging.INFO):
        for reads in (1, 2):
            store.reload()
            wait_until(lambda: sample(metrics, "fingerd_reloads_total",
                                      outcome="failure") == reads, what="the read refused")
        assert dict(store.table.items()) == {"alice": "Happy", "bob": "Sleeping"}
        direct.delete(KEY)
        direct.hset(KEY, "carol", "Fits again")
        store.reload()
        wait_until(lambda: dict(store.table.items()) == {"carol": "Fits again"},
                   what="the hash served once it fits")
    assert caplog.text.count("more than 3 entries") == 1, caplog.text
    assert "test:users: read 1 users" in caplog.text


def test_a_restarted_worker_whose_hash_is_too_large_serves_its_predecessors_table(
        open_store, direct, caplog):
    direct.hset(KEY, mapping={f"u{i}": "x" for i in range(5)})
    snapshot = Snapshot(create())
    snapshot.save_table(UserTable([("alice", "Kept by the previous worker")]))
    metrics = Metrics()
    with caplog.at_level(logging.ERROR):
        store = open_store(metrics, snapshot=snapshot, max_entries=3)
        store.reload()
        wait_until(lambda: sample(metrics, "fingerd_reloads_total", outcome="failure") == 2,
                   what="the hash read again, and refused again")
    kept = {"alice": "Kept by the previous worker"}
    assert dict(store.table.items()) == kept
    assert dict(snapshot.load_table().items()) == kept, "the snapshot was overwritten"
    assert sample(metrics, "fingerd_users") == 1
    assert sample(metrics, "fingerd_store_up") == 1
    assert caplog.text.count("more than 3 entries") == 1, caplog.text


@pytest.mark.parametrize("fallback", [True, False], ids=["first start", "reload"])
def test_a_start_without_a_table_to_fall_back_on_refuses_a_hash_too_large(
        open_store, direct, fallback):
    direct.hset(KEY, mapping={f"u{i}": "x" for i in range(5)})
    snapshot = Snapshot(create())
    if not fallback:
        snapshot.save_table(UserTable([("alice", "Kept")]))
    with pytest.raises(StoreError, match="test:users: more than 3 entries$"):
        open_store(snapshot=snapshot, max_entries=3, fallback=fallback)


def test_a_set_is_overtaken_only_by_a_read_of_its_name_while_it_is_under_way():
    sets = SetsUnderWay()
    sets.read(["alice"])
    sets.begin("alice")
    sets.begin("bob")
    sets.read(["bob", "carol"])
    sets.begin("alice")
    assert sets.end("alice") is False
    sets.read_all()
    assert sets.end("alice") is True
    assert sets.end("bob") is True
    sets.begin("bob")
    assert sets.end("bob") is False, "forgotten once no set of the name is under way"


def test_entries_too_long_to_be_a_user_s_are_skipped_unread_and_reported_once(
        open_store, direct, caplog):
    direct.hset(KEY, mapping={"n" * 100: "x", "carol": "y" * 1000})
    metrics = Metrics()
    with caplog.at_level(logging.ERROR):
        store = open_store(metrics)
        store.reload()
        wait_until(lambda: sample(metrics, "fingerd_reloads_total", outcome="success") == 2,
                   what="a second full read")
        direct.publish(CHANNEL, "carol")
        direct.hset(KEY, "alice", "Read after the hint")
        direct.publish(CHANNEL, "alice")
        wait_until(lambda: store.table["alice"] == "Read after the hint", what="alice read")
    assert dict(store.table.items()) == {"alice": "Read after the hint", "bob": "Sleeping"}
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 2, skipped
    assert any(f"{'n' * 40!r} skipped: invalid user name (a field of 100 bytes, not read)"
               in m for m in skipped)
    assert any("'carol' skipped: status longer than 256 bytes (1000 bytes, not read)" in m
               for m in skipped)


#: Imports what the worker has imported when it drops root (its own modules, and the
#: Redis store, which the parent imports before it forks the worker), then refuses every
#: import, as an interpreter the service account cannot read does, and connects.
CONNECT_WITHOUT_IMPORTS = """
import sys
import fingerd.process.worker.main
import fingerd.users.redis_store
from fingerd.users.redis_access import connect

class Unreadable:
    def find_spec(self, name, path=None, target=None):
        raise ImportError(f"{name}: not importable once root is dropped")

sys.meta_path.insert(0, Unreadable())
client = connect(sys.argv[1])
print(client.ping())
"""


def test_a_connection_imports_no_module_the_worker_would_import_after_dropping_root(
        redis_server):
    result = subprocess.run([sys.executable, "-c", CONNECT_WITHOUT_IMPORTS, redis_server.url],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0 and result.stdout == "True\n", result.stderr[-3000:]


def test_reconnections_redis_refuses_leave_no_connection_open(open_store, direct):
    metrics = Metrics()
    open_store(metrics)
    # With the collector off, a connection is closed only where fingerd closes it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        direct.delete(KEY)
        direct.set(KEY, "a string, not a hash")  # every whole read refused WRONGTYPE
        direct.publish(CHANNEL, "*")
        wait_until(lambda: sample(metrics, "fingerd_reloads_total", outcome="failure") >= 5,
                   timeout=10, what="five reconnections refused")
        own = direct.client_id()
        others = [c for c in direct.client_list() if int(c["id"]) != own]
    finally:
        if collecting:
            gc.enable()
    # At most the subscription and the reader of a reconnection under way.
    assert len(others) <= 2, others
