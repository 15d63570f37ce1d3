"""Two fingerd sharing one Redis hash, set the same names at once (CONTRACT section 11):
every host ends serving what Redis holds within 1 s.

One host reaches Redis through a relay that acknowledges each transaction
late, as a distant network would: the other host's set of the same name,
applied after its own, is hinted to it before its own acknowledgement
arrives.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.markers import needs_tool
from tests.support.resp_relay import ExecDelayRelay

redis = pytest.importorskip("redis")
pytestmark = needs_tool("redis-server", "redis-server")

#: Rounds of sets, and the names every round sets through both hosts at once.
ROUNDS = 10
NAMES = [f"racer{i}" for i in range(2)]
#: The contract's bound on every host serving what Redis holds.
SETTLE_SECONDS = 1.0
#: How late the relay passes on the reply to EXEC.
ACK_DELAY = 0.2


def settled(hosts, held):
    """The (host, name) pairs whose answer is not yet what Redis ``held``."""
    return [(i, name) for i, host in enumerate(hosts) for name in NAMES
            if host.finger(f"{name}\r\n".encode()) != held[name] + b"\r\n"]


def stale_after(hosts, held, seconds):
    """The pairs still serving something else than Redis holds ``seconds`` from now."""
    deadline = time.monotonic() + seconds
    stale = settled(hosts, held)
    while stale and time.monotonic() < deadline:
        stale = settled(hosts, held)
    return settled(hosts, held) if stale else []


def test_concurrent_sets_of_one_name_through_two_hosts_end_with_redis_s_value_everywhere(
        make_daemon, redis_server, ports):
    relay = ExecDelayRelay(ports.take(), redis_server.port, ACK_DELAY).start()
    # No periodic full read in the test's time: only the sets and their hints may converge.
    hosts = [make_daemon(fingerd__reload_interval="3600", fingerd__threads="12",
                         store__backend="redis", store__redis_url=url,
                         store__redis_prefix="race").start()
             for url in (relay.url, redis_server.url)]
    direct = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    jobs = [(i, name) for i in range(len(hosts)) for name in NAMES]
    stale = []
    try:
        with ThreadPoolExecutor(len(jobs)) as pool:
            for round_ in range(ROUNDS):
                start = threading.Barrier(len(jobs), timeout=10)

                def set_(job, round_=round_, start=start):
                    i, name = job
                    start.wait()
                    return hosts[i].setter(f"{name}\r\nround {round_} via {i}\r\n".encode())

                assert set(pool.map(set_, jobs)) == {b"OK\r\n"}
                held = dict(zip(NAMES, direct.hmget("race:users", NAMES)))
                stale += [(round_, *pair) for pair in stale_after(hosts, held,
                                                                  SETTLE_SECONDS)]
    finally:
        direct.close()
        for host in hosts:
            host.stop()
        relay.stop()
    assert not stale, (f"{len(stale)} of {ROUNDS * len(jobs)} (round, host, name) still "
                       f"stale after {SETTLE_SECONDS} s: {stale[:10]}")
