"""Many clients at once, idle clients beside honest ones, and too few descriptors."""

import errno
import logging
import socket
import struct
import threading
import time

from fingerd.finger.answer import Rules
from fingerd.finger.output import Renderer
from fingerd.finger.sources import Directory
from fingerd.metrics import Metrics
from fingerd.serving.finger import FingerNeeds, finger_service
from fingerd.serving.gate import ConnectionGate
from fingerd.serving.listening import ACCEPT_PAUSE_SECONDS
from fingerd.serving.loop import ServingLoop
from fingerd.serving.pool import Pool
from tests.support.held import held, slots_freed, while_young
from tests.support.net import exchange
from tests.support.polling import during, wait_until
from tests.support.procfs import resources, worker_of


def test_one_hundred_concurrent_clients_are_all_answered(make_daemon):
    d = make_daemon(fingerd__threads="4").start()
    replies = []
    barrier = threading.Barrier(100, timeout=30)

    def client(i):
        barrier.wait()
        name = b"alice" if i % 2 else b"bob"
        replies.append((name, exchange(d.finger_port, name + b"\r\n", timeout=30)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(replies) == 100
    expected = {b"alice": b"Happy and well\r\n", b"bob": b"Sleeping\r\n"}
    assert all(reply == expected[name] for name, reply in replies)


def still_open(s):
    s.setblocking(False)
    try:
        return s.recv(1) == b"x"
    except BlockingIOError:
        return True
    except OSError:
        return False


def test_clients_that_reset_or_leave_unread_cost_nothing_afterwards(make_daemon):
    """A thousand connections reset (RST) right after their query, on finger and the
    setter, and a thousand closed before reading their long answers: the same worker
    serves on, with its threads and descriptors as before and nothing logged amiss."""
    d = make_daemon(finger__list_users="yes").start()
    worker = worker_of(d.proc.pid)
    assert d.finger(b"alice\r\n") == b"Happy and well\r\n"
    wait_until(lambda: d.metric("fingerd_connections_active") == 0, what="a quiet worker")
    before = resources(worker)
    lines = (b"alice\r\n", b"/W bob\r\n", b"\r\n")
    for n in range(1000):
        port, line = ((d.setter_port, b"alice\r\nReset %d\r\n" % n) if n % 4 == 0
                      else (d.finger_port, lines[n % 3]))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.sendall(line)
    for n in range(1000):
        with socket.create_connection(("127.0.0.1", d.finger_port), timeout=10) as s:
            s.sendall(lines[n % 3])
    wait_until(lambda: d.metric("fingerd_connections_active") == 0, timeout=30,
               what="every slot to be freed")
    assert d.finger(b"bob\r\n") == b"Sleeping\r\n"
    assert worker_of(d.proc.pid) == worker
    # At most as many descriptors: the scrape just before the count may have held one.
    wait_until(lambda: resources(worker)[0] == before[0] and resources(worker)[1] <= before[1],
               what=f"the worker's threads and descriptors as before: {before}")
    assert "Traceback" not in d.log() and "Internal error" not in d.log()


def test_three_hundred_idle_clients_do_not_delay_an_honest_query(make_daemon):
    d = make_daemon(fingerd__threads="2", fingerd__max_connections="1024",
                    fingerd__max_per_source="0", fingerd__request_timeout="60").start()
    worker = worker_of(d.proc.pid)
    threads, descriptors = resources(worker)
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", d.finger_port), timeout=10))
        wait_until(lambda: d.metric("fingerd_connections_active") == 300, what="300 idle")
        # They cost a descriptor each, and no thread. (A scrape's own connection may be
        # open at either count.)
        now_threads, now_descriptors = resources(worker)
        assert now_threads == threads and abs(now_descriptors - descriptors - 300) <= 1
        for _ in range(5):
            assert d.finger(b"alice\r\n", timeout=5) == b"Happy and well\r\n"
        assert d.setter(b"bob\r\nAwake\r\n", timeout=5) == b"OK\r\n"
        assert all(still_open(s) for s in idle), "idle clients were dropped to make room"
    finally:
        for s in idle:
            s.close()
    wait_until(lambda: d.metric("fingerd_connections_active") == 0, what="idle ones closed")


REJECTED = "fingerd_connections_rejected_total"


def test_a_descriptor_limit_too_small_lowers_max_connections_and_clients_hear_busy(make_daemon):
    """Over-committed, a server would leave clients to time out when accept fails;
    instead the worker serves as many connections as its descriptors allow, says so
    at start, and tells the rest they are busy at once."""
    d = make_daemon(fingerd__request_timeout="60", fingerd__max_per_source="0").start(
        max_files=120)
    assert "max_connections = 256 needs more descriptors than the limit of 120 allows; " \
           "serving at most 48 connections" in d.log()
    told = []

    def look(_held):
        wait_until(lambda: d.metric("fingerd_connections_active") == 42,
                   what="finger's share of 48 held", timeout=15)
        told.append(d.finger(b"alice\r\n", timeout=5))
        return told[-1]

    # Queries begun less than 1 s ago: none of them may be shed to make room yet.
    assert while_young(lambda: held(d.finger_port, 60, sends=b"al"), look, slots_freed(d)) \
        == b"Server busy, try again later\r\n"
    assert d.metric(REJECTED, reason="accept_failed") == 0, "no accept ran out"
    wait_until(lambda: d.finger(b"alice\r\n", timeout=5) == b"Happy and well\r\n",
               what="service once the held connections closed")


class StarvedListener(socket.socket):
    """A listening socket whose accepts fail for want of descriptors while ``starved``."""

    starved = True
    failures = 0

    def _accept(self):
        if self.starved:
            self.failures += 1
            raise OSError(errno.EMFILE, "Too many open files")
        return super()._accept()


def test_running_out_of_descriptors_pauses_accepting_instead_of_spinning(caplog):
    """Should accept still run out of descriptors, the loop stops polling its listener
    for the pause it announces rather than spinning, counts each failure, reports the
    shortage once and its end once, and serves again once descriptors are back."""
    listener = StarvedListener()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    metrics = Metrics()
    pool = Pool(1)
    service = finger_service(ConnectionGate(8), 5, 5,
                             FingerNeeds(Directory([]), Rules(), Renderer()))
    server = ServingLoop([listener], service, pool, metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    waiting = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        with caplog.at_level(logging.INFO):
            wait_until(lambda: listener.failures >= 1, what="accept to fail")
            started = time.monotonic()
            for _ in during(1.0):
                assert thread.is_alive()
            failed = listener.failures
            assert 2 <= failed <= (time.monotonic() - started) / ACCEPT_PAUSE_SECONDS + 2, \
                f"{failed} failed accepts in a second: not one a pause"
            listener.starved = False
            waiting.sendall(b"alice\r\n")
            waiting.settimeout(5)
            assert waiting.recv(100) == b"No such user\r\n", "served once descriptors are back"
        messages = [r.getMessage() for r in caplog.records]
        assert sum("cannot accept connections: Too many open files" in m
                   for m in messages) == 1, "reported once, not each pause"
        assert sum("accepting connections again" in m for m in messages) == 1
        assert metrics.registry.get_sample_value(REJECTED, {"reason": "accept_failed"}) == \
            listener.failures
    finally:
        waiting.close()
        server.begin_shutdown(0.0)
        server.wait_stopped(5.0)
        pool.stop(5)
        thread.join(5)
        server.close()
