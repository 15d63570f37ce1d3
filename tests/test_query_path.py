"""How many of fingerd's modules one finger query crosses: a newcomer follows a query
through the code module by module, so the path stays short.

The real finger service (assembly.Service) answers one query on a real
loopback socket in process while every function call of its threads is
traced; the modules of the fingerd functions that ran are the path.
"""

import os
import socket
import threading

import pytest

from fingerd.config import parse_config
from fingerd.metrics import Metrics
from fingerd.serving.assembly import Service
from fingerd.users.store import UserStore
from tests.support.net import exchange
from tests.support.polling import wait_until

#: Most modules a query on an answer-cache miss may cross, and which they are today:
#: the serving loop and the finger service, the share (gate) and the framing (lines),
#: then the answer itself (answer, sources, table, output). The loop counts the
#: answer into its thread's tally (metrics.Tally) without a call.
MOST_MODULES = 8
PATH = {
    "fingerd.serving.loop", "fingerd.serving.finger", "fingerd.serving.gate",
    "fingerd.serving.lines", "fingerd.finger.answer", "fingerd.finger.sources",
    "fingerd.users.table", "fingerd.finger.output",
}


class Trace:
    """Records ``(module, function)`` of each fingerd function called on the service's
    threads while ``on``."""

    def __init__(self):
        self.on = False
        self.calls = set()

    def __call__(self, frame, event, _arg):
        if not self.on or event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if module.startswith("fingerd.") and \
                threading.current_thread().name.startswith(("fingerd-finger", "fingerd-pool")):
            self.calls.add((module, frame.f_code.co_name))

    def modules(self):
        return {module for module, _function in self.calls}


@pytest.fixture
def traced_service(tmp_path):
    users = tmp_path / "users"
    users.write_text("alice:Happy and well\n")
    config = parse_config(f"[fingerd]\nusers_file = {users}\n",
                          os.path.join(tmp_path, "fingerd.conf"))
    metrics = Metrics()
    store = UserStore(config.users_file, metrics)
    store.load()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    trace = Trace()
    threading.setprofile(trace)
    try:
        service = Service(config, {"finger": [listener], "setter": [], "web": [],
                                   "metrics": []}, store, metrics)
        service.start()
    finally:
        threading.setprofile(None)
    yield trace, listener.getsockname()[1], metrics
    service.stop(1.0)


def test_a_query_on_an_answer_cache_miss_crosses_few_modules(traced_service):
    trace, port, metrics = traced_service
    # Once a first query is answered and its slot freed, the loop is serving, its
    # thread has made its tally (metrics.ThisThread, once a thread), and "alice" is
    # not cached.
    assert exchange(port, b"nobody\r\n") == b"No such user\r\n"
    wait_until(lambda: metrics.registry.get_sample_value("fingerd_connections_active") == 0,
               what="the first query's slot to be freed")
    trace.on = True
    assert exchange(port, b"alice\r\n") == b"Happy and well\r\n"
    # The slot is freed just after the close the client saw.
    wait_until(lambda: ("fingerd.serving.gate", "leave") in trace.calls,
               what="the connection's slot to be freed")
    trace.on = False
    modules = trace.modules()
    assert ("fingerd.finger.answer", "answer") in trace.calls, "a miss: the answer was made"
    assert len(modules) <= MOST_MODULES, " ".join(sorted(modules))
    assert modules <= PATH, f"new on the path: {sorted(modules - PATH)}"
