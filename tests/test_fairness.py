"""No client, local user or service can take the service from everyone else.

Each attack is made from 127.0.0.1, from a second address, 127.0.0.2, and
over IPv6 from ::1, and another client (from another of them) is shown
served meanwhile.
"""

import collections
import contextlib
import select
import threading

import pytest

from tests.support.markers import needs_ipv6
from tests.support.net import connect_from, exchange
from tests.support.polling import during, wait_until

#: Attacker's source, and the client from another source that must be served meanwhile.
SOURCES = [("127.0.0.1", "127.0.0.2"), ("127.0.0.2", "::1"), ("::1", "127.0.0.1")]


@pytest.fixture(params=[pytest.param(pair, id="from-" + pair[0],
                                     marks=[needs_ipv6] if "::1" in pair else [])
                        for pair in SOURCES])
def sources(request):
    return request.param


def dual_stack(daemon, *services):
    """Make ``services`` listen on ::1 too, at the same port, before start."""
    for service in services:
        port = getattr(daemon, f"{service}_port")
        daemon.listen(service, f"127.0.0.1:{port}", f"[::1]:{port}")
    return daemon


def query_from(source, port, data=b"alice\r\n", timeout=10):
    """Everything the service at ``port`` answers a client at ``source``."""
    with connect_from(source, port) as s:
        s.settimeout(timeout)
        s.sendall(data)
        chunks = []
        for _ in range(64):
            chunk = s.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


@contextlib.contextmanager
def idle_connections(port, count, source="127.0.0.1", sends=b""):
    """``count`` connections from ``source`` that send ``sends`` (a request begun, or
    nothing) and then nothing more, closed on exit."""
    held = []
    try:
        for _ in range(count):
            held.append(connect_from(source, port))
            held[-1].sendall(sends)
        yield held
    finally:
        for s in held:
            s.close()


def closed_by_server(socks):
    """Those of ``socks`` the server has closed (readable, and reading gives EOF)."""
    readable, _, _ = select.select(socks, [], [], 0)
    return [s for s in readable if s.recv(10) == b""]


def test_one_source_beyond_max_per_source_is_busy_and_others_are_served(make_daemon, sources):
    attacker, other = sources
    d = dual_stack(make_daemon(fingerd__max_per_source="4", fingerd__request_timeout="30"),
                   "finger").start()
    with idle_connections(d.finger_port, 4, attacker):
        wait_until(lambda: d.metric("fingerd_connections_active") == 4, what="4 held",
                   timeout=15)
        assert query_from(attacker, d.finger_port) == b"Server busy, try again later\r\n"
        assert d.metric("fingerd_connections_rejected_total", reason="per_source") == 1
        assert query_from(other, d.finger_port) == b"Happy and well\r\n"
    wait_until(lambda: query_from(attacker, d.finger_port) == b"Happy and well\r\n",
               what="the source served again once its connections closed")


def test_a_full_setter_does_not_make_finger_busy(make_daemon, sources):
    attacker, other = sources
    d = dual_stack(make_daemon(fingerd__max_connections="16", fingerd__max_per_source="0",
                               fingerd__request_timeout="30"), "finger", "setter").start()
    with idle_connections(d.setter_port, 2, attacker, sends=b"bob"):
        wait_until(lambda: d.metric("fingerd_connections_active") == 2, what="setter full")
        assert query_from(attacker, d.setter_port, b"bob\r\nAway\r\n") == \
            b"Server busy, try again later\r\n"
        assert query_from(other, d.finger_port) == b"Happy and well\r\n"
        assert d.metric("fingerd_connections_rejected_total", reason="max_connections") == 1


def test_a_finger_flood_does_not_hide_the_metrics(make_daemon, sources):
    attacker, other = sources
    d = dual_stack(make_daemon(fingerd__max_connections="8", fingerd__max_per_source="0",
                               fingerd__request_timeout="30"), "finger", "metrics").start()
    with idle_connections(d.finger_port, 7, attacker, sends=b"al"):
        wait_until(lambda: d.metric("fingerd_connections_active") == 7, what="finger full",
                   timeout=15)
        assert query_from(other, d.finger_port) == b"Server busy, try again later\r\n"
        assert query_from(other, d.metrics_port, b"GET /metrics HTTP/1.0\r\n\r\n") \
            .startswith(b"HTTP/1.0 200 "), "the scrape is answered while finger is full"
        assert d.metric("fingerd_connections_rejected_total", reason="max_connections") == 1


def test_a_scraper_beyond_the_metrics_limit_gets_503_not_the_finger_line(make_daemon, sources):
    attacker, other = sources
    d = dual_stack(make_daemon(fingerd__request_timeout="30"), "finger", "metrics").start()
    scrape = b"GET /metrics HTTP/1.0\r\n\r\n"
    with idle_connections(d.metrics_port, 8, attacker, sends=b"GET /met"):
        wait_until(lambda: query_from(other, d.metrics_port, scrape)
                   .startswith(b"HTTP/1.0 503"), what="the metrics endpoint full")
        answer = query_from(attacker, d.metrics_port, scrape)
        assert answer.startswith(b"HTTP/1.0 503 Service Unavailable\r\n")
        assert b"\r\nRetry-After: 1\r\n" in answer and b"Server busy" not in answer
        assert query_from(other, d.finger_port) == b"Happy and well\r\n"
    wait_until(d.ready, what="scrapes answered again")


def test_when_full_the_oldest_silent_connection_makes_room_for_a_new_client(make_daemon,
                                                                             sources):
    attacker, other = sources
    d = dual_stack(make_daemon(fingerd__max_connections="8", fingerd__max_per_source="0",
                               fingerd__request_timeout="30",
                               fingerd__first_byte_timeout="30"), "finger").start()
    with idle_connections(d.finger_port, 7, attacker) as held:
        wait_until(lambda: d.metric("fingerd_connections_active") == 7, what="finger full",
                   timeout=15)
        assert query_from(other, d.finger_port) == b"Happy and well\r\n"
        assert d.metric("fingerd_connections_rejected_total", reason="shed") == 1
        assert d.metric("fingerd_connections_rejected_total", reason="max_connections") == 0
        readable, _, _ = select.select(held, [], [], 5)
        assert len(readable) == 1 and readable[0].recv(10) == b"", \
            "one silent connection, the first the worker took, was closed"


def test_when_half_full_silent_connections_get_only_first_byte_timeout(make_daemon, sources):
    attacker, other = sources
    d = dual_stack(make_daemon(fingerd__max_connections="16", fingerd__max_per_source="0",
                               fingerd__request_timeout="60",
                               fingerd__first_byte_timeout="2"), "finger").start()
    with idle_connections(d.finger_port, 8, attacker) as silent, \
            idle_connections(d.finger_port, 1, attacker, sends=b"al") as begun:
        wait_until(lambda: d.metric("fingerd_connections_active") == 9, what="9 held",
                   timeout=15)
        closed = []
        wait_until(lambda: closed.extend(closed_by_server(silent)) or len(closed) == 8,
                   timeout=30, what="the silent connections closed long before 60 s")
        assert d.metric("fingerd_connections_rejected_total", reason="timeout") == 8
        assert not closed_by_server(begun), "a request begun keeps request_timeout"
        assert query_from(other, d.finger_port) == b"Happy and well\r\n"


def test_below_half_full_silent_connections_keep_request_timeout(make_daemon):
    d = make_daemon(fingerd__max_connections="16", fingerd__max_per_source="0",
                    fingerd__request_timeout="60", fingerd__first_byte_timeout="0.5").start()
    with idle_connections(d.finger_port, 3) as silent:
        wait_until(lambda: d.metric("fingerd_connections_active") == 3, what="3 held",
                   timeout=15)
        for _ in during(3.0, interval=0.2):
            assert not closed_by_server(silent)
        assert d.metric("fingerd_connections_rejected_total", reason="timeout") == 0


def test_a_burst_of_sets_gets_every_answer_or_the_busy_line(make_daemon):
    """40 sets at once from root, five times the setter's share: a connection accepted a
    moment before its bytes were read is never shed as silent; each client is answered,
    beyond the share with the busy line."""
    d = make_daemon(fingerd__max_connections="64", fingerd__max_per_source="0",
                    setter__rate_limit="0").start()
    count = 40
    barrier = threading.Barrier(count, timeout=30)
    replies = []

    def one(i):
        barrier.wait()
        try:
            replies.append(exchange(d.setter_port, f"alice\r\nBurst {i}\r\n".encode(),
                                    timeout=15))
        except OSError as exc:
            replies.append(repr(exc).encode())

    for _round in range(3):
        replies.clear()
        barrier.reset()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(replies) == count
        told = collections.Counter(replies)
        assert set(told) <= {b"OK\r\n", b"Server busy, try again later\r\n"}, told
        assert told[b"OK\r\n"] >= 1, told
    assert d.metric("fingerd_connections_rejected_total", reason="shed") == 0

