"""Sets after a failover behind a proxy (docs/hosts.md): the primary became a replica, the
proxy sends new connections to the new primary, and the connections made before stay on
the replica, which refuses every write (READONLY)."""

import os

import pytest

from tests.support.engines import RedisServer
from tests.support.markers import needs_tool
from tests.support.resp_relay import ExecDelayRelay

redis = pytest.importorskip("redis")
pytestmark = needs_tool("redis-server", "redis-server")

# Imported once the skip above has found the client library, which it needs.
from fingerd.users.redis_access import SET_CONNECTIONS  # noqa: E402

PREFIX = "failover"


@pytest.fixture
def second_redis(public_dir, ports):
    """A second redis-server of the test's own, in a directory of its own."""
    directory = os.path.join(public_dir, "second")
    os.mkdir(directory)
    server = RedisServer(directory, ports.take())
    yield server.start()
    server.stop()


@pytest.fixture
def proxy(redis_server, ports):
    """A relay that passes everything on at once, to ``redis_server`` until switched."""
    relay = ExecDelayRelay(ports.take(), redis_server.port, 0.0).start()
    yield relay
    relay.stop()


def test_sets_after_a_failover_go_to_the_new_primary(make_daemon, redis_server,
                                                     second_redis, proxy):
    old = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    new = redis.Redis.from_url(second_redis.url, socket_timeout=5)
    try:
        new.replicaof("127.0.0.1", redis_server.port)
        d = make_daemon(store__backend="redis", store__redis_url=proxy.url,
                        store__redis_prefix=PREFIX).start()
        # Every connection the sets write on is made, to the old primary.
        for i in range(SET_CONNECTIONS):
            assert d.setter(f"alice\r\nBefore {i}\r\n".encode()) == b"OK\r\n"
        new.replicaof("no", "one")
        old.replicaof("127.0.0.1", second_redis.port)
        proxy.switch(second_redis.port)
        answers = [d.setter(f"alice\r\nAfter {i}\r\n".encode())
                   for i in range(2 * SET_CONNECTIONS)]
        assert answers == [b"OK\r\n"] * len(answers), d.log()
        assert new.hget(f"{PREFIX}:users", "alice") == f"After {len(answers) - 1}".encode()
    finally:
        old.replicaof("no", "one")
        old.close()
        new.close()
