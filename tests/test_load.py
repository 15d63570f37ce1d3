"""Many clients at once, and idle clients beside honest ones."""

import re
import socket
import threading
import time

from tests.support.net import exchange
from tests.support.polling import during, wait_until


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


def test_three_hundred_idle_clients_do_not_delay_an_honest_query(make_daemon):
    d = make_daemon(fingerd__threads="2", fingerd__max_connections="1024",
                    fingerd__request_timeout="60").start()
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", d.finger_port), timeout=10))
        wait_until(lambda: d.metric("fingerd_connections_active") == 300, what="300 idle")
        for _ in range(5):
            assert d.finger(b"alice\r\n", timeout=5) == b"Happy and well\r\n"
        assert d.setter(b"bob\r\nAwake\r\n", timeout=5) == b"OK\r\n"
        assert all(still_open(s) for s in idle), "idle clients were dropped to make room"
    finally:
        for s in idle:
            s.close()
    wait_until(lambda: d.metric("fingerd_connections_active") == 0, what="idle ones closed")


REJECTED = "fingerd_connections_rejected_total"


def test_running_out_of_descriptors_pauses_accepting_instead_of_spinning(make_daemon):
    """Out of descriptors, the worker stops polling its listener for the pause it
    announces, then tries again, rather than spinning on accept(): every failed
    accept is counted as accept_failed, so there is at most one a pause. The
    shortage is reported once and its end once, and clients are answered again
    once descriptors are free."""
    d = make_daemon(fingerd__request_timeout="60").start(max_files=64)
    failed_before = d.metric(REJECTED, reason="accept_failed")
    started = time.monotonic()
    held = []
    try:
        for _ in range(80):
            held.append(socket.create_connection(("127.0.0.1", d.finger_port), timeout=5))
        wait_until(lambda: "cannot accept connections: Too many open files" in d.log(),
                   what="accept to fail for want of descriptors")
        for _ in during(1.0):
            assert d.proc.poll() is None
            assert "accepting connections again" not in d.log(), "descriptors came back"
    finally:
        for s in held:
            s.close()
    wait_until(lambda: d.finger(b"alice\r\n", timeout=5) == b"Happy and well\r\n",
               what="service after descriptors came back")
    wait_until(lambda: "finger: accepting connections again" in d.log(), what="the recovery")
    starved = time.monotonic() - started
    announced = re.search(r"finger: cannot accept connections: .*; retrying every ([0-9.]+) s",
                          d.log())
    assert announced, "the shortage is reported with the pause between retries"
    pause = float(announced.group(1))
    assert pause > 0, "retrying without a pause is spinning"
    failed = d.metric(REJECTED, reason="accept_failed") - failed_before
    assert 1 <= failed <= starved / pause + 1, \
        f"{failed:.0f} failed accepts in {starved:.1f} s: not one every {pause} s at most"
    assert d.log().count("finger: cannot accept connections") == 1, "reported once, not each pause"
