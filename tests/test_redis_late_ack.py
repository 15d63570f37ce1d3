"""A set Redis applies but acknowledges late (CONTRACT section 11): fingerd checks before
answering, and answers what is true."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.markers import needs_tool
from tests.support.polling import during, wait_until
from tests.support.resp_relay import ExecDelayRelay

redis = pytest.importorskip("redis")
pytestmark = needs_tool("redis-server", "redis-server")

#: Later than fingerd waits for a reply from Redis (limits.STORE_TIMEOUT_SECONDS, 2 s).
ACK_DELAY = 2.6
#: Sets waiting for their late replies at once: as many as once took every connection
#: the follower shared with them.
SLOW_SETS = 3
#: The contract's bound on a set through one host reaching every host.
SPREAD_SECONDS = 1.0


@pytest.fixture
def late(redis_server, ports):
    """A relay to the test's Redis that passes on every reply to EXEC ACK_DELAY late."""
    relay = ExecDelayRelay(ports.take(), redis_server.port, ACK_DELAY).start()
    yield relay
    relay.stop()


def test_a_set_redis_applied_but_acknowledged_late_is_answered_ok_and_served(
        make_daemon, redis_server, late):
    d = make_daemon(store__backend="redis", store__redis_url=late.url,
                    store__redis_prefix="late").start()
    direct = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        started = time.monotonic()
        answer = d.setter(b"alice\r\nApplied late\r\n")
        took = time.monotonic() - started
        held = direct.hget("late:users", "alice")
    finally:
        direct.close()
    assert held == b"Applied late"
    assert answer == b"OK\r\n", f"answered {answer!r} after {took:.1f} s"
    assert d.finger(b"alice\r\n") == b"Applied late\r\n"


def test_a_set_whose_acknowledgement_and_check_are_both_lost_is_not_answered_error(
        make_daemon, redis_server, late):
    """Redis applied the set, then its acknowledgement and the read that would check it
    are both lost: ERROR would say nothing changed, so the client is told nothing."""
    d = make_daemon(store__backend="redis", store__redis_url=late.url,
                    store__redis_prefix="late").start()
    direct = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    answers = []
    setter = threading.Thread(target=lambda: answers.append(
        d.setter(b"alice\r\nApplied unseen\r\n", timeout=30)))
    setter.start()
    try:
        wait_until(lambda: direct.hget("late:users", "alice") == b"Applied unseen",
                   what="Redis to apply the set, its acknowledgement held back")
        late.stop()  # the connection that waits for it goes, and no check can connect
    finally:
        setter.join(30)
        direct.close()
    assert answers == [b""]
    wait_until(lambda: "reading it back failed too" in d.log() and
               "whether the status of alice was written is unknown" in d.log(),
               what="the unknown outcome logged")


def test_a_set_redis_holds_back_is_called_off_before_it_is_answered_error(
        make_daemon, redis_server):
    d = make_daemon(store__backend="redis", store__redis_url=redis_server.url,
                    store__redis_prefix="late").start()
    direct = redis.Redis.from_url(redis_server.url, socket_timeout=10)
    try:
        direct.hset("late:users", "alice", "Before")
        wait_until(lambda: d.finger(b"alice\r\n") == b"Before\r\n", what="alice served")
        # As during a failover: Redis holds every write back, and answers reads.
        direct.client_pause(int(ACK_DELAY * 1000), all=False)
        answer = d.setter(b"alice\r\nHeld back\r\n")
        direct.hset("late:probe", "written", "once the pause is over")
        for _ in during(1.0):
            assert direct.hget("late:users", "alice") == b"Before"
            assert d.finger(b"alice\r\n") == b"Before\r\n"
    finally:
        direct.close()
    assert answer == b"ERROR store unavailable\r\n"


def test_a_set_still_on_its_way_to_redis_is_called_off_before_it_is_answered_error(
        make_daemon, redis_server, ports):
    """The write reaches Redis after fingerd stopped waiting for it: ERROR must stay true."""
    direct = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    slow = ExecDelayRelay(ports.take(), redis_server.port, ACK_DELAY, held="request").start()
    try:
        direct.hset("late:users", "alice", "Before")
        d = make_daemon(store__backend="redis", store__redis_url=slow.url,
                        store__redis_prefix="late").start()
        answer = d.setter(b"alice\r\nStill on its way\r\n")
        wait_until(slow.released.is_set, what="the write passed on to Redis, late")
        for _ in during(1.0):
            assert direct.hget("late:users", "alice") == b"Before"
        assert d.finger(b"alice\r\n") == b"Before\r\n"
    finally:
        slow.stop()
        direct.close()
    assert answer == b"ERROR store unavailable\r\n"


def test_sets_waiting_for_late_acknowledgements_do_not_hold_up_other_hosts_sets(
        make_daemon, redis_server, late):
    d = make_daemon(fingerd__threads="8", store__backend="redis", store__redis_url=late.url,
                    store__redis_prefix="late").start()
    direct = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        with ThreadPoolExecutor(SLOW_SETS) as pool:
            answers = pool.map(lambda i: d.setter(f"slow{i}\r\nLate\r\n".encode()),
                               range(SLOW_SETS))
            wait_until(lambda: direct.hlen("late:users") == SLOW_SETS, what="the slow sets")
            # Another host's set, and its hint, while this host waits for its replies.
            direct.hset("late:users", "alice", "Set elsewhere")
            direct.publish("late:changes", "alice")
            started = time.monotonic()
            wait_until(lambda: d.finger(b"alice\r\n") == b"Set elsewhere\r\n",
                       timeout=ACK_DELAY + 2, what="the other host's set served")
            took = time.monotonic() - started
            assert set(answers) == {b"OK\r\n"}
    finally:
        direct.close()
    assert took < SPREAD_SECONDS, f"served {took:.1f} s after the hint"
