"""A Redis that accepts connections and answers nothing: fingerd finds it down, says so
once, and refuses sets at once rather than leave each one waiting (CONTRACT section 11)."""

import time

import pytest

from tests.support.markers import needs_tool
from tests.support.polling import wait_until
from tests.support.resp_relay import ExecDelayRelay

redis = pytest.importorskip("redis")
pytestmark = needs_tool("redis-server", "redis-server")

#: Seconds within which a hung Redis is found down: a quiet second before fingerd asks
#: for a PONG (redis_follower.PING_INTERVAL), two for it to come (STORE_TIMEOUT_SECONDS).
NOTICED_WITHIN = 1.0 + 2.0 + 1.0


def test_a_redis_that_answers_nothing_is_found_down_and_sets_are_refused(
        make_daemon, redis_server, ports):
    relay = ExecDelayRelay(ports.take(), redis_server.port, 0.0).start()
    try:
        direct = redis.Redis.from_url(redis_server.url, socket_timeout=5)
        direct.hset("hung:users", "alice", "Before the hang")
        direct.close()
        # No whole read of the hash to come upon the hang: only what watches for one.
        d = make_daemon(fingerd__reload_interval="3600", store__backend="redis",
                        store__redis_url=relay.url, store__redis_prefix="hung").start()
        assert d.metric("fingerd_store_up") == 1
        relay.hang()
        started = time.monotonic()
        wait_until(lambda: d.metric("fingerd_store_up") == 0, timeout=NOTICED_WITHIN + 5,
                   what="the hung store found down")
        took = time.monotonic() - started
        answered = time.monotonic()
        assert d.setter(b"alice\r\nDuring the hang\r\n") == b"ERROR store unavailable\r\n"
        assert time.monotonic() - answered < 1.0, "the set waited for the hung store"
        assert d.finger(b"alice\r\n") == b"Before the hang\r\n"
    finally:
        relay.stop()
    assert took < NOTICED_WITHIN, f"found down {took:.1f} s after the hang began"
    assert d.log().count("store unavailable: ") == 1, d.log()


def test_a_set_whose_connection_cannot_be_made_for_a_hang_is_refused(make_daemon,
                                                                     redis_server, ports):
    relay = ExecDelayRelay(ports.take(), redis_server.port, 0.0).start()
    try:
        d = make_daemon(fingerd__reload_interval="3600", store__backend="redis",
                        store__redis_url=relay.url, store__redis_prefix="hung").start()
        assert d.metric("fingerd_store_up") == 1
        # No set yet: the sets' connections are made at their first use, here on a Redis
        # that takes connections and answers nothing. No write went on one.
        relay.hang()
        answer = d.setter(b"alice\r\nDuring the hang\r\n", timeout=30)
    finally:
        relay.stop()
    assert answer == b"ERROR store unavailable\r\n", d.log()
    assert "is unknown" not in d.log()
