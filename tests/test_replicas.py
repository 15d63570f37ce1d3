"""Several fingerd replicas sharing one Redis behind a real HAProxy (docs/hosts.md):
one directory, a replica that dies unnoticed by clients, the real client seen."""

import os
import signal
import threading

import pytest

from tests.support.engines import HAProxy, RedisServer
from tests.support.markers import needs_tool
from tests.support.net import ask_from
from tests.support.polling import wait_until
from tests.support.procfs import ended, worker_of

redis = pytest.importorskip("redis")
pytestmark = [needs_tool("redis-server", "redis-server"), needs_tool("haproxy", "haproxy")]

#: The address the query loops connect from, as fingerd must see it through HAProxy.
CLIENT = "127.0.0.9"
#: A PROXY v1 header for asking a replica directly, as HAProxy would.
HEADER = b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 79\r\n"
#: The contract's bound (CONTRACT section 11) on a set reaching every replica.
SPREAD_SECONDS = 1.0


def ask(port, line):
    """What the server at ``port`` answers ``line``, asked from CLIENT; b"" for a reset."""
    return ask_from(CLIENT, port, line)


@pytest.fixture
def redis_aof(public_dir, ports):
    """A redis-server with the durable settings docs/hosts.md documents, ended by its pid."""
    server = RedisServer(public_dir, ports.take(), "--appendonly", "yes",
                         "--appendfsync", "always")
    yield server.start()
    server.stop()


@pytest.fixture
def cluster(make_daemon, redis_aof, public_dir, ports):
    """``cluster(n)``: n replicas on the one Redis, behind a started HAProxy."""
    client = redis.Redis.from_url(redis_aof.url, socket_timeout=5)
    client.hset("fingerd:users", mapping={"alice": "Happy and well", "bob": "Sleeping"})
    proxies = []

    def make(n):
        replicas = [make_daemon(store__backend="redis", store__redis_url=redis_aof.url,
                                finger__proxy_protocol="yes", finger__proxy_from="127.0.0.1",
                                fingerd__access_log="yes").start() for _ in range(n)]
        proxy = HAProxy(public_dir, ports.take(), [d.finger_port for d in replicas]).start()
        proxies.append(proxy)
        return replicas, proxy

    yield make
    for proxy in proxies:
        proxy.stop()
    client.close()


@pytest.mark.parametrize("n", [2, 3])
def test_a_status_set_through_one_replica_is_answered_by_every_replica_within_1_s(cluster,
                                                                                  n):
    replicas, proxy = cluster(n)
    for i in range(5):
        status = f"Status {i}".encode()
        assert replicas[0].setter(b"alice\r\n" + status + b"\r\n") == b"OK\r\n"
        for d in replicas:
            wait_until(lambda: d.finger(HEADER + b"alice\r\n") == status + b"\r\n",
                       timeout=SPREAD_SECONDS, interval=0.005, what="the status everywhere")
    for _ in range(2 * n):
        assert ask(proxy.port, b"alice\r\n") == b"Status 4\r\n"


class QueryLoop(threading.Thread):
    """At most ``count`` queries for alice through ``port``, one at a time, until stopped;
    ``answers`` keeps each answer."""

    def __init__(self, port, count=3000):
        super().__init__(daemon=True)
        self.port = port
        self.count = count
        self.answers = []
        self.stopping = threading.Event()

    def run(self):
        for _ in range(self.count):
            if self.stopping.is_set():
                return
            self.answers.append(ask(self.port, b"alice\r\n"))

    def finish(self):
        self.stopping.set()
        self.join(60)
        assert not self.is_alive()
        return self.answers


def test_a_replica_killed_during_queries_fails_only_queries_it_held_as_it_died(cluster):
    """Lost are the query in flight and any that reached the victim's sockets while its
    processes were being torn down (a loaded machine takes milliseconds: the kernel
    still completes connections there, then resets them); none begun once both ended."""
    replicas, proxy = cluster(3)
    # Room for the second or so until the victim's first batch of access lines, at
    # thousands of queries a second, and for 300 more after it dies.
    loop = QueryLoop(proxy.port, count=30000)
    loop.start()
    wait_until(lambda: len(loop.answers) >= 100, what="100 answers")
    victim = replicas[1]
    # Access lines come in batches, within about a second: its share is in its log
    # before it dies.
    wait_until(lambda: "kind=user" in victim.log(), what="the victim's access lines")
    worker = worker_of(victim.proc.pid)
    answered_before = len(loop.answers)
    os.kill(victim.proc.pid, signal.SIGKILL)
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: ended(victim.proc.pid) and ended(worker), interval=0.001,
               what="the victim to end")
    # The query in flight now began before the victim had ended.
    begun_before_the_end = len(loop.answers) + 1
    wait_until(lambda: len(loop.answers) >= begun_before_the_end + 300, timeout=30,
               what="300 more")
    answers = loop.finish()
    failed = [i for i, a in enumerate(answers) if a != b"Happy and well\r\n"]
    print(f"{len(answers)} queries, {len(failed)} failed, {begun_before_the_end - answered_before} "
          f"begun or answered while the victim was killed")
    assert all(answers[i] == b"" for i in failed), "a lost query is a reset, never a wrong answer"
    assert all(answered_before <= i < begun_before_the_end for i in failed), (
        failed, answered_before, begun_before_the_end)
    assert "kind=user" in victim.log()  # it had its share before it died
    for d in (replicas[0], replicas[2]):
        # Health checks carry a header too: no connection was refused for want of one.
        assert d.metric("fingerd_connections_rejected_total", reason="proxy") == 0
        peers = {line.split(" peer=", 1)[1].split(" ", 1)[0]
                 for line in d.log().splitlines() if " access " in line and "kind=user" in line}
        assert peers == {CLIENT}


def test_while_redis_is_away_queries_go_on_the_setter_refuses_then_works(
        cluster, redis_aof, public_dir, ports):
    replicas, proxy = cluster(2)
    loop = QueryLoop(proxy.port)
    loop.start()
    try:
        wait_until(lambda: len(loop.answers) >= 50, what="50 answers")
        redis_aof.stop()
        for d in replicas:
            wait_until(lambda: d.metric("fingerd_store_up") == 0, what="store down")
        assert replicas[0].setter(b"bob\r\nLost\r\n") == b"ERROR store unavailable\r\n"
        # Meanwhile an operator writes Redis's data directly (another server on the same
        # files, which no replica reaches), with no hint: only a full read can find it.
        aside = RedisServer(redis_aof.dir, ports.take(), "--appendonly", "yes",
                            "--appendfsync", "always").start()
        writer = redis.Redis.from_url(aside.url, socket_timeout=5)
        writer.hset("fingerd:users", "carol", "Set while fingerd was away")
        writer.close()
        aside.stop()
        redis_aof.start()
        for d in replicas:
            wait_until(lambda: d.finger(HEADER + b"carol\r\n") ==
                       b"Set while fingerd was away\r\n", what="the resync")
        wait_until(lambda: replicas[0].setter(b"bob\r\nBack\r\n") == b"OK\r\n",
                   what="a set accepted")
        wait_until(lambda: replicas[1].finger(HEADER + b"bob\r\n") == b"Back\r\n",
                   timeout=SPREAD_SECONDS, what="the set on the other replica")
        count = len(loop.answers)
        wait_until(lambda: len(loop.answers) >= count + 50, what="50 more answers")
    finally:
        answers = loop.finish()
    assert answers and set(answers) == {b"Happy and well\r\n"}
