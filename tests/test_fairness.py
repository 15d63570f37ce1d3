"""No client, local user or service can take the service from everyone else."""

import contextlib
import select
import socket

from tests.support.net import exchange
from tests.support.polling import wait_until


def query_from(source, port, data=b"alice\r\n", timeout=10):
    """Everything the finger service at 127.0.0.1:``port`` answers a client bound to
    ``source``."""
    with socket.socket() as s:
        s.settimeout(timeout)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
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
            s = socket.socket()
            held.append(s)
            s.bind((source, 0))
            s.connect(("127.0.0.1", port))
            s.sendall(sends)
        yield held
    finally:
        for s in held:
            s.close()


def test_one_source_beyond_max_per_source_is_busy_and_others_are_served(make_daemon):
    d = make_daemon(fingerd__max_per_source="4", fingerd__request_timeout="30").start()
    with idle_connections(d.finger_port, 4):
        wait_until(lambda: d.metric("fingerd_connections_active") == 4, what="4 held",
                   timeout=15)
        assert query_from("127.0.0.1", d.finger_port) == b"Server busy, try again later\r\n"
        assert d.metric("fingerd_connections_rejected_total", reason="per_source") == 1
        assert query_from("127.0.0.2", d.finger_port) == b"Happy and well\r\n"
    wait_until(lambda: query_from("127.0.0.1", d.finger_port) == b"Happy and well\r\n",
               what="the source served again once its connections closed")


def test_a_full_setter_does_not_make_finger_busy(make_daemon):
    d = make_daemon(fingerd__max_connections="16", fingerd__max_per_source="0",
                    fingerd__request_timeout="30").start()
    with idle_connections(d.setter_port, 2, sends=b"bob"):
        wait_until(lambda: d.metric("fingerd_connections_active") == 2, what="setter full")
        assert exchange(d.setter_port, b"bob\r\nAway\r\n") == b"Server busy, try again later\r\n"
        assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
        assert d.metric("fingerd_connections_rejected_total", reason="max_connections") == 1


def test_a_finger_flood_does_not_hide_the_metrics(make_daemon):
    d = make_daemon(fingerd__max_connections="8", fingerd__max_per_source="0",
                    fingerd__request_timeout="30").start()
    with idle_connections(d.finger_port, 7, sends=b"al"):
        wait_until(lambda: d.metric("fingerd_connections_active") == 7, what="finger full",
                   timeout=15)
        assert d.finger(b"alice\r\n") == b"Server busy, try again later\r\n"
        assert d.ready(), "the scrape is answered while finger is full"
        assert d.metric("fingerd_connections_rejected_total", reason="max_connections") == 1


def test_a_scraper_beyond_the_metrics_limit_gets_503_not_the_finger_line(make_daemon):
    d = make_daemon().start()
    with idle_connections(d.metrics_port, 8, sends=b"GET /met"):
        wait_until(lambda: exchange(d.metrics_port, b"GET /metrics HTTP/1.0\r\n\r\n")
                   .startswith(b"HTTP/1.0 503"), what="the metrics endpoint full")
        answer = exchange(d.metrics_port, b"GET /metrics HTTP/1.0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 503 Service Unavailable\r\n")
        assert b"\r\nRetry-After: 1\r\n" in answer and b"Server busy" not in answer
    wait_until(d.ready, what="scrapes answered again")


def test_when_full_the_oldest_silent_connection_makes_room_for_a_new_client(make_daemon):
    d = make_daemon(fingerd__max_connections="8", fingerd__max_per_source="0",
                    fingerd__request_timeout="30").start()
    with idle_connections(d.finger_port, 7) as held:
        wait_until(lambda: d.metric("fingerd_connections_active") == 7, what="finger full",
                   timeout=15)
        assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
        assert d.metric("fingerd_connections_rejected_total", reason="shed") == 1
        assert d.metric("fingerd_connections_rejected_total", reason="max_connections") == 0
        readable, _, _ = select.select(held, [], [], 5)
        assert len(readable) == 1 and readable[0].recv(10) == b"", \
            "one silent connection, the first the worker took, was closed"
