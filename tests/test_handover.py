"""When a worker begins to accept. Never before the parent has its ready: a worker that
answered a client has started, even if it is killed at once (else the daemon took its
start for failed, and exited). A reload's (CONTRACT section 8) accepts only once the
worker it replaces accepts no more, and the outcome is reported then, so that no client
connecting after ``fingerd-ctl reload`` has said "applied" is served with the
configuration replaced. Connections meanwhile wait in the listen queue: none is refused.
A replaced worker that never says it stopped accepting (stopped, wedged) holds the new
one HANDOVER_TIMEOUT at most, and the outcome until it is gone.

In process, a held Service on a real socket; then real daemons, as root.
"""

import os
import pathlib
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from fingerd.config import parse_config
from fingerd.limits import HANDOVER_TIMEOUT
from fingerd.metrics import Metrics
from fingerd.serving.assembly import Service
from fingerd.users.store import UserStore
from tests.support import ROOT
from tests.support.daemon import held_until
from tests.support.markers import needs_root
from tests.support.net import answer_of, reply_from
from tests.support.polling import wait_until
from tests.support.procfs import worker_of

QUERY = b"alice\r\n"
ANSWER = b"Happy and well\r\n"
#: Connections the client from the address a reload drops makes at most, one after
#: another: at about a millisecond each, more than a reload takes.
MAX_TRIES = 50000


def queued(sock):
    """Connections waiting in ``sock``'s accept queue (TCP_INFO's tcpi_unacked)."""
    return int.from_bytes(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[24:28],
                          sys.byteorder)


@pytest.fixture
def held_service(tmp_path):
    users = tmp_path / "users"
    users.write_text("alice:Happy and well\n")
    config = parse_config(f"[fingerd]\nthreads = 2\nusers_file = {users}\n",
                          str(tmp_path / "fingerd.conf"))
    store = UserStore(config.users_file, Metrics())
    store.load()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    service = Service(config, {"finger": [listener], "setter": [], "web": [], "metrics": []},
                      store, Metrics())
    service.start(held=True)
    yield service, listener
    service.stop(1.0)
    listener.close()


def test_a_held_service_leaves_connections_queued_until_it_accepts(held_service):
    service, listener = held_service
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    with client:
        client.sendall(QUERY)
        wait_until(lambda: queued(listener) == 1, what="the connection in the accept queue")
        assert select.select([client], [], [], 0.5)[0] == [], "answered while held"
        assert queued(listener) == 1, "accepted while held"
        service.accept()
        assert answer_of(client) == ANSWER
    service.accept()  # idempotent
    assert reply_from("127.0.0.1", port, QUERY) == ANSWER


def test_a_stop_says_it_accepts_no_more_once_this_process_closed_its_listeners(
        held_service):
    service, listener = held_service
    service.accept()
    said = []
    service.stop(1.0, lambda: said.append(listener.fileno()))
    assert said == [-1], "said before the listener was closed, or not at all"


@needs_root
def test_after_reload_says_applied_no_client_is_served_with_the_replaced_configuration(
        make_daemon):
    d = make_daemon(finger__allow_from="127.0.0.2").start()
    assert reply_from("127.0.0.2", d.finger_port, QUERY) == ANSWER
    replies, stop = [], threading.Event()

    def dropped_client():
        """A client of the address the reload drops, connecting again and again: when
        each connection began, and what it got."""
        for _ in range(MAX_TRIES):
            if stop.is_set():
                return
            began = time.monotonic()
            replies.append((began, reply_from("127.0.0.2", d.finger_port, QUERY)))

    thread = threading.Thread(target=dropped_client)
    d.reconfigure(finger__allow_from="127.0.0.1")
    thread.start()
    try:
        result = d.ctl("reload")
        applied = time.monotonic()
        assert result.returncode == 0, result.stdout + result.stderr
        assert reply_from("127.0.0.1", d.finger_port, QUERY) == ANSWER, "at once, never refused"
        wait_until(lambda: any(began > applied for began, _ in replies),
                   what="a connection begun after the outcome")
    finally:
        stop.set()
        thread.join(60)
    assert not [reply for began, reply in replies if began > applied and reply], \
        "served with the replaced configuration after the outcome"


@needs_root
def test_a_stopped_replaced_worker_holds_the_new_one_a_moment_and_the_outcome_until_it_goes(
        make_daemon):
    d = make_daemon(finger__allow_from="127.0.0.2").start()
    old = worker_of(d.proc.pid)
    d.reconfigure(finger__allow_from="127.0.0.1")
    os.kill(old, signal.SIGSTOP)
    try:
        ctl = subprocess.Popen([sys.executable, "-m", "fingerd.ctl", "-c", d.config_file,
                                "reload"], cwd=ROOT, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: "did not say within" in d.log(),
                       what="the new worker accepting without the old one's word",
                       timeout=HANDOVER_TIMEOUT + 20)
            assert reply_from("127.0.0.1", d.finger_port, QUERY) == ANSWER
            assert ctl.poll() is None, "an outcome while the replaced worker may accept"
            os.kill(old, signal.SIGCONT)
            out, _ = ctl.communicate(timeout=30)
            assert ctl.returncode == 0 and "applied" in out, out
        finally:
            if ctl.poll() is None:
                ctl.kill()
                ctl.wait()
    finally:
        if os.path.exists(f"/proc/{old}"):
            os.kill(old, signal.SIGCONT)
    assert reply_from("127.0.0.2", d.finger_port, QUERY) == b""


@needs_root
def test_a_worker_accepts_nothing_before_the_parent_has_its_ready(make_daemon):
    d = make_daemon()
    marker = pathlib.Path(d.dir, "ready may go")  # where the worker's account may look
    d.start(wait=False, env=held_until(os.path.join(d.dir, "site"),
                                       "fingerd.process.channel:MonitorClient.ready",
                                       str(marker)))
    client = wait_until(lambda: connected(d.finger_port), what="the finger port to listen")
    with client:
        client.sendall(QUERY)
        assert select.select([client], [], [], 1.0)[0] == [], "answered before its ready"
        marker.touch()
        assert answer_of(client) == ANSWER
    wait_until(d.ready, what="the daemon to serve")
    assert "startup failed" not in d.log()


def connected(port):
    """A connection to ``port`` on loopback, or None while nothing listens there."""
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=10)
    except ConnectionRefusedError:
        return None

