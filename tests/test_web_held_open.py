"""A web client that keeps its connection open after its answer holds no thread.

Where a web answer is made or finished by the pool (a page that asks the directory with
system_users, an answer too big for the socket's buffer), the pool thread sends it,
then reads and drops what the client sent besides (the linger), and must not wait for
the client there: clients that read their answer and keep the connection open would
otherwise hold every thread for ``request_timeout``, and every other answer the pool
makes (pages, sets, forwards, system accounts) would wait behind them.
"""

import socket
import time

from tests.support.polling import wait_until

THREADS = 2
REQUEST_TIMEOUT = 10


def answered_and_held(port):
    """A connection that asked for a page the pool makes, read its whole answer to the
    server's end of stream, and stays open."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /users/alice HTTP/1.0\r\n\r\n")
    chunks = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    assert b"".join(chunks).startswith(b"HTTP/1.1 200 OK"), chunks
    return s


def test_clients_holding_their_connection_open_keep_no_pool_thread(make_daemon, ports):
    d = make_daemon(finger__system_users="yes", fingerd__threads=str(THREADS),
                    fingerd__request_timeout=str(REQUEST_TIMEOUT)) \
        .listen("web", f"127.0.0.1:{ports.take()}").start()
    held = [answered_and_held(d.web_port) for _ in range(THREADS)]
    try:
        wait_until(lambda: d.metric("fingerd_pool_threads_busy") == 0, timeout=3,
                   what="the pool's threads free once the held clients have their answers")
        started = time.monotonic()
        reply = d.web(b"GET /users/alice HTTP/1.0\r\n\r\n", timeout=REQUEST_TIMEOUT + 5)
        assert reply.startswith(b"HTTP/1.1 200 OK")
        assert time.monotonic() - started < 2, "a page waited for a thread a held client kept"
    finally:
        for s in held:
            s.close()
