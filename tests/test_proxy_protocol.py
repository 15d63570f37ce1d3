"""The finger service behind a proxy: the PROXY protocol header names the client, from
configured addresses only; and behind a real HAProxy."""

import errno
import os
import shutil
import socket
import struct
import subprocess
import time

import pytest

from tests.support.markers import needs_tool
from tests.support.polling import wait_until

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(client, port=40000):
    return f"PROXY TCP4 {client} 127.0.0.1 {port} 79\r\n".encode()


def v2_tcp4(client, port=40000, command=1):
    payload = socket.inet_aton(client) + socket.inet_aton("127.0.0.1") + struct.pack("!HH",
                                                                                     port, 79)
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, 0x11, len(payload)) + payload


def ask(port, data, source="127.0.0.1", timeout=10):
    """Everything the server answers ``data`` sent from ``source`` and then the end of
    the stream; a connection reset (seen by the send, the shutdown or a read) is no
    answer."""
    with socket.socket() as s:
        s.settimeout(timeout)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        chunks = []
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            for _ in range(64):
                chunk = s.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError as exc:
            if exc.errno not in (errno.ECONNRESET, errno.ENOTCONN, errno.EPIPE):
                raise
        return b"".join(chunks)


def peers_logged(d, count):
    """The peers of the first ``count`` access log lines."""
    wait_until(lambda: d.log().count(" access ") >= count, what=f"{count} access lines")
    return [line.split(" peer=", 1)[1].split(" ", 1)[0]
            for line in d.log().splitlines() if " access " in line]


@pytest.fixture
def proxied(make_daemon):
    return make_daemon(finger__proxy_protocol="yes", finger__proxy_from="127.0.0.1",
                       fingerd__access_log="yes", fingerd__max_per_source="2",
                       fingerd__request_timeout="30").start()


def test_the_header_names_the_client_for_the_answer_and_the_log(proxied):
    d = proxied
    assert ask(d.finger_port, v1("192.0.2.7") + b"alice\r\n") == b"Happy and well\r\n"
    assert ask(d.finger_port, v2_tcp4("198.51.100.9") + b"bob\r\n") == b"Sleeping\r\n"
    assert ask(d.finger_port, b"PROXY UNKNOWN\r\nalice\r\n") == b"Happy and well\r\n"
    assert ask(d.finger_port, v2_tcp4("203.0.113.1", command=0) + b"alice\r\n") == \
        b"Happy and well\r\n"
    assert peers_logged(d, 4) == ["192.0.2.7", "198.51.100.9", "127.0.0.1", "127.0.0.1"]


def test_a_v2_local_header_of_an_unknown_family_keeps_the_proxys_address(proxied):
    """A receiver of LOCAL skips the block, family included (doc/proxy-protocol.txt)."""
    d = proxied
    local = V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x41, 4) + b"\xff" * 4
    assert ask(d.finger_port, local + b"alice\r\n") == b"Happy and well\r\n"
    assert peers_logged(d, 1) == ["127.0.0.1"]
    assert d.metric("fingerd_connections_rejected_total", reason="proxy") == 0


def test_a_header_arriving_byte_by_byte_is_awaited(proxied):
    d = proxied
    with socket.socket() as s:
        s.settimeout(10)
        s.connect(("127.0.0.1", d.finger_port))
        for byte in v1("192.0.2.7") + b"alice\r\n":
            s.send(bytes([byte]))
        assert s.recv(100) == b"Happy and well\r\n"


@pytest.mark.parametrize("data", [
    b"alice\r\n",
    b"PROXY TCP4 192.0.2.7 127.0.0.1 040000 79\r\nalice\r\n",
    b"PROXY TCP4 192.0.2.7 127.0.0.1 1 79\nalice\r\n",
    V2_SIGNATURE[:-1] + b"X" + bytes(4),
    b"PROXY TCP4 192.0.2.7",
], ids=["missing", "leading-zero", "lf-only", "v2-signature", "cut-short"])
def test_a_missing_malformed_or_unfinished_header_is_closed_without_an_answer(proxied, data):
    d = proxied
    assert ask(d.finger_port, data) == b""
    assert d.metric("fingerd_connections_rejected_total", reason="proxy") == 1
    assert d.metric("fingerd_requests_total", service="finger", outcome="found") == 0


def test_only_the_configured_proxies_are_served(proxied):
    d = proxied
    assert ask(d.finger_port, v1("192.0.2.7") + b"alice\r\n", source="127.0.0.2") == b""
    assert d.metric("fingerd_connections_rejected_total", reason="proxy") == 1


def test_a_proxy_listed_at_its_ipv4_mapped_address_is_served(make_daemon):
    """An IPv4-mapped peer counts as its IPv4 address, so ``::ffff:127.0.0.1`` in
    ``proxy_from`` names the proxy at 127.0.0.1."""
    d = make_daemon(finger__proxy_protocol="yes",
                    finger__proxy_from="::ffff:127.0.0.1, ::ffff:192.0.2.0/120").start()
    assert ask(d.finger_port, v1("192.0.2.7") + b"alice\r\n") == b"Happy and well\r\n"
    assert ask(d.finger_port, v1("192.0.2.7") + b"alice\r\n", source="127.0.0.2") == b""
    assert d.metric("fingerd_connections_rejected_total", reason="proxy") == 1


def test_max_per_source_counts_the_client_the_header_names(proxied):
    d = proxied
    held = []
    try:
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", d.finger_port), timeout=10)
            held.append(s)
            s.sendall(v1("192.0.2.7") + b"al")
        wait_until(lambda: d.metric("fingerd_connections_active") == 2, what="2 held")
        assert ask(d.finger_port, v1("192.0.2.7") + b"alice\r\n") == \
            b"Server busy, try again later\r\n"
        assert d.metric("fingerd_connections_rejected_total", reason="per_source") == 1
        assert ask(d.finger_port, v1("192.0.2.8") + b"alice\r\n") == b"Happy and well\r\n"
    finally:
        for s in held:
            s.close()
    wait_until(lambda: d.metric("fingerd_connections_active") == 0, what="slots given back")


HAPROXY_CONFIG = """global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend v1
    bind 127.0.0.1:{v1_port}
    default_backend v1
frontend v2
    bind 127.0.0.1:{v2_port}
    default_backend v2
backend v1
    server fingerd 127.0.0.1:{finger_port} send-proxy
backend v2
    server fingerd 127.0.0.1:{finger_port} send-proxy-v2
"""


@pytest.fixture
def haproxy(proxied, ports, public_dir):
    """A real HAProxy in front of the daemon: v1 headers on one port, v2 on another;
    ended by its pid."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    v1_port, v2_port = ports.take(), ports.take()
    config = os.path.join(public_dir, "haproxy.cfg")
    with open(config, "w") as f:
        f.write(HAPROXY_CONFIG.format(v1_port=v1_port, v2_port=v2_port,
                                      finger_port=proxied.finger_port))
    proc = subprocess.Popen([binary, "-db", "-f", config], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: _listening(v1_port) and _listening(v2_port),
                   what="HAProxy listening")
        yield v1_port, v2_port
    finally:
        proc.kill()
        proc.wait(10)
        proc.stderr.close()


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@needs_tool("haproxy", "haproxy")
def test_behind_haproxy_the_real_clients_are_served_logged_and_counted(proxied, haproxy):
    d = proxied
    v1_port, v2_port = haproxy
    before = len(peers_logged(d, 0))
    assert ask(v1_port, b"alice\r\n", source="127.0.0.3") == b"Happy and well\r\n"
    assert ask(v2_port, b"bob\r\n", source="127.0.0.4") == b"Sleeping\r\n"
    assert peers_logged(d, before + 2)[before:] == ["127.0.0.3", "127.0.0.4"]
    held = []
    try:
        for _ in range(2):
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.5", 0))
            s.connect(("127.0.0.1", v2_port))
            s.sendall(b"al")
        wait_until(lambda: d.metric("fingerd_connections_active") == 2, what="2 held")
        assert ask(v2_port, b"alice\r\n", source="127.0.0.5") == \
            b"Server busy, try again later\r\n"
        assert ask(v1_port, b"alice\r\n", source="127.0.0.6") == b"Happy and well\r\n"
    finally:
        for s in held:
            s.close()


@pytest.mark.parametrize("per_source", [2, 0], ids=["max_per_source-2", "no-max_per_source"])
def test_unfinished_headers_from_the_proxys_address_cannot_hold_the_share(make_daemon,
                                                                         per_source):
    """20 connections from the proxy's own address that send ``P`` and nothing more:
    they count against that address's max_per_source until their header is whole, and
    are the first shed when the share (14) is full, so the proxy's clients are served."""
    d = make_daemon(finger__proxy_protocol="yes", finger__proxy_from="127.0.0.1",
                    fingerd__max_connections="16", fingerd__max_per_source=str(per_source),
                    fingerd__request_timeout="30").start()
    held = []
    try:
        for _ in range(20):
            held.append(socket.create_connection(("127.0.0.1", d.finger_port), timeout=10))
            held[-1].sendall(b"P")
        if per_source:
            wait_until(lambda: d.metric("fingerd_connections_rejected_total",
                                        reason="per_source") == 18, what="18 told busy")
            assert d.metric("fingerd_connections_active") == 2
        else:
            wait_until(lambda: d.metric("fingerd_connections_rejected_total",
                                        reason="shed") == 6, what="6 shed for newer ones")
            assert d.metric("fingerd_connections_active") == 14
        for client in ("192.0.2.7", "192.0.2.8", "192.0.2.9"):
            assert ask(d.finger_port, v1(client) + b"alice\r\n") == b"Happy and well\r\n"
    finally:
        for s in held:
            s.close()


def test_a_header_that_times_out_is_counted_proxy(make_daemon):
    d = make_daemon(finger__proxy_protocol="yes", finger__proxy_from="127.0.0.1",
                    fingerd__request_timeout="1").start()
    with socket.create_connection(("127.0.0.1", d.finger_port), timeout=10) as s:
        s.sendall(b"PROXY TCP4 192.0.2.7")
        assert s.recv(100) == b"", "closed without an answer"
    wait_until(lambda: d.metric("fingerd_connections_rejected_total", reason="proxy") == 1,
               what="the header's timeout counted")
    assert d.metric("fingerd_connections_rejected_total", reason="timeout") == 0



def test_a_connection_that_sent_its_header_alone_keeps_its_whole_request_timeout(make_daemon):
    """HAProxy sends its header in a segment of its own, before the client's data: the
    connection that sent it was not held by the kernel, so nothing is taken off its
    time (a silent connection's deadline counts from its connect, a second earlier
    than its accept)."""
    d = make_daemon(finger__proxy_protocol="yes", finger__proxy_from="127.0.0.1",
                    fingerd__request_timeout="3").start()
    with socket.create_connection(("127.0.0.1", d.finger_port), timeout=20) as s:
        connected = time.monotonic()
        s.sendall(v1("192.0.2.7"))
        assert s.recv(100) == b"", "closed without an answer"
        waited = time.monotonic() - connected
    assert waited >= 3, f"closed {waited:.2f} s after the header, before request_timeout"
    wait_until(lambda: d.metric("fingerd_connections_rejected_total", reason="timeout") == 1,
               what="the request's timeout counted")


def test_silent_connections_from_the_proxys_address_count_against_it(proxied):
    """A connection that has sent nothing counts against the proxy's address, as one
    with half a header does; one whose header is whole at once is still served."""
    d = proxied
    held = []
    try:
        for _ in range(3):
            held.append(socket.create_connection(("127.0.0.1", d.finger_port), timeout=10))
        wait_until(lambda: d.metric("fingerd_connections_rejected_total",
                                    reason="per_source") == 1,
                   what="the third silent connection told busy")
        assert d.metric("fingerd_connections_active") == 2
        assert ask(d.finger_port, v1("192.0.2.8") + b"alice\r\n") == b"Happy and well\r\n"
    finally:
        for s in held:
            s.close()
    wait_until(lambda: d.metric("fingerd_connections_active") == 0, what="slots given back")
