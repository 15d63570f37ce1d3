"""Clients that ask for an answer bigger than the socket's buffer and do not read it hold
at most a quarter of the pool's threads, not all of them: the rest of such an answer is
sent as a slow call, and sets (and every other answer the pool makes) go on.

Run in a network namespace of its own whose TCP send buffers grow to 64 KiB at most, as
on a link with an Ethernet MTU (on the machine's loopback, with its 64 KiB segments, the
kernel takes a whole page at once): the web directory's list of 3000 users, over 100 KB
of HTML, then cannot leave in one send.
"""

import socket
import time

from tests.support.markers import needs_root
from tests.support.netns import in_network_namespace
from tests.support.polling import wait_until

pytestmark = needs_root

THREADS = 4
USERS = b"".join(b"user%05d:status line number %d, long enough\n" % (i, i) for i in range(3000))


def not_reading(port):
    """A connection that asks for the list page, with a tiny receive window, and never
    reads."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    return s


def test_clients_not_reading_a_big_page_leave_the_setter_its_threads(make_daemon, ports):
    def body():
        d = make_daemon(users=USERS, finger__list_users="yes", setter__policy="any",
                        fingerd__threads=str(THREADS), fingerd__request_timeout="10") \
            .listen("web", f"127.0.0.1:{ports.take()}").start()
        held = [not_reading(d.web_port) for _ in range(THREADS)]
        try:
            wait_until(lambda: d.metric("fingerd_pool_threads_busy") >= 1, timeout=5,
                       what="a thread sending a page nobody reads")
            started = time.monotonic()
            assert d.setter(b"user00001\r\nset while others do not read\r\n",
                            timeout=15) == b"OK\r\n"
            took = time.monotonic() - started
            assert took < 2, f"a set waited {took:.1f} s for a thread held by a slow reader"
        finally:
            for s in held:
                s.close()
    in_network_namespace(body, {"ipv4/tcp_wmem": "4096 16384 65536"})
