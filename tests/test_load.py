"""Many clients at once, and idle clients beside honest ones."""

import os
import socket
import threading
import time

from tests.support.net import exchange
from tests.support.polling import wait_until


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


def worker_cpu_seconds(parent):
    with open(f"/proc/{parent}/task/{parent}/children") as f:
        worker = int(f.read().split()[0])
    with open(f"/proc/{worker}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_running_out_of_descriptors_pauses_accepting_instead_of_spinning(make_daemon):
    d = make_daemon(fingerd__request_timeout="60").start(max_files=64)
    held = []
    try:
        for _ in range(80):
            held.append(socket.create_connection(("127.0.0.1", d.finger_port), timeout=5))
        wait_until(lambda: "cannot accept connections: Too many open files" in d.log(),
                   what="accept to fail for want of descriptors")
        before = worker_cpu_seconds(d.proc.pid)
        window = time.monotonic() + 1.0
        while time.monotonic() < window:
            assert d.proc.poll() is None
        assert worker_cpu_seconds(d.proc.pid) - before < 0.5, "the accept loop spins"
    finally:
        for s in held:
            s.close()
    wait_until(lambda: d.finger(b"alice\r\n", timeout=5) == b"Happy and well\r\n",
               what="service after descriptors came back")
    assert d.metric("fingerd_connections_rejected_total", reason="accept_failed") >= 1
    wait_until(lambda: "finger: accepting connections again" in d.log(), what="the recovery")
    assert d.log().count("finger: cannot accept connections") == 1, "reported once, not each pause"
