"""A failure inside a handler: answered, logged once, survived."""

import logging
import re
import socket
import threading

import pytest
from prometheus_client import CollectorRegistry

from fingerd.finger.answer import Rules
from fingerd.finger.output import Renderer
from fingerd.metrics import Metrics
from fingerd.serving.finger import FingerNeeds, finger_service
from fingerd.serving.gate import ConnectionGate
from fingerd.serving.loop import ServingLoop
from fingerd.serving.metrics_http import metrics_service
from fingerd.serving.pool import Pool
from tests.support.net import exchange


class FailingOnceDirectory:
    """A directory whose first lookup fails, as a bug or a lost file system would make it."""

    def __init__(self):
        self.calls = 0

    def lookup(self, name, verbose):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("directory exploded")
        return ["Still here"]


def serving(service):
    """``service`` served on a loopback port by a loop of its own, and its Metrics."""
    metrics = Metrics()
    pool = Pool(2)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    srv = ServingLoop([sock], service, pool, metrics)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, metrics
    srv.begin_shutdown(0.0)
    srv.wait_stopped(5.0)
    pool.stop(5)
    thread.join(5)
    srv.close()


@pytest.fixture
def server():
    yield from serving(finger_service(ConnectionGate(8), 5, 5,
                                      FingerNeeds(FailingOnceDirectory(), Rules(), Renderer())))


def undated(data):
    """``data`` without its Date field, which may differ between two answers."""
    return re.sub(rb"\r\nDate: [^\r]*", b"", data, count=1)


class FailingTwiceCollector:
    """Metrics whose first two collections fail, as a bug in a collector would make them."""

    def __init__(self):
        self.calls = 0

    def collect(self):
        self.calls += 1
        if self.calls <= 2:
            raise RuntimeError("collector exploded")
        return []


@pytest.fixture
def metrics_server():
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FailingTwiceCollector())
    yield from serving(metrics_service(ConnectionGate(8), 5, 5, registry))


def test_failure_answers_internal_error_logs_once_and_serves_on(server, caplog):
    srv, metrics = server
    port = srv.listeners.all[0].sock.getsockname()[1]
    with caplog.at_level(logging.ERROR):
        assert exchange(port, b"alice\r\n") == b"Internal error in server\r\n"
        assert exchange(port, b"alice\r\n") == b"Still here\r\n"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info[0] is RuntimeError
    value = metrics.registry.get_sample_value
    assert value("fingerd_requests_total", {"service": "finger", "outcome": "error"}) == 1
    assert value("fingerd_requests_total", {"service": "finger", "outcome": "found"}) == 1
    assert value("fingerd_queries_total", {"kind": "user"}) == 2, \
        "the query answered Internal error is a query read too"


def test_a_scrape_whose_answer_fails_is_told_so_in_http(metrics_server):
    srv, _metrics = metrics_server
    port = srv.listeners.all[0].sock.getsockname()[1]
    get = exchange(port, b"GET /metrics HTTP/1.0\r\n\r\n")
    head, _, body = get.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 500 Internal Server Error\r\n") and b"\r\nDate: " in head
    assert body == b"internal error\n"
    to_head = exchange(port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
    assert undated(to_head) == undated(head + b"\r\n\r\n"), "a HEAD gets the head, no body"
    assert exchange(port, b"GET /metrics HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200 OK\r\n")
