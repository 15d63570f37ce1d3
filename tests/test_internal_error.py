"""A failure inside a handler: answered, logged once, survived."""

import logging
import socket
import threading

import pytest

from fingerd.finger.answer import Rules
from fingerd.finger.output import Renderer
from fingerd.metrics import Metrics
from fingerd.serving.finger import FingerNeeds, finger_service
from fingerd.serving.gate import ConnectionGate
from fingerd.serving.loop import ServingLoop
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


@pytest.fixture
def server():
    metrics = Metrics()
    pool = Pool(2)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    service = finger_service(ConnectionGate(8), 5, 5,
                             FingerNeeds(FailingOnceDirectory(), Rules(), Renderer()))
    srv = ServingLoop([sock], service, pool, metrics)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, metrics
    srv.begin_shutdown(0.0)
    srv.wait_stopped(5.0)
    pool.stop(5)
    thread.join(5)
    srv.close()


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
