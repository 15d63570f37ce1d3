"""Loopback networking for tests: free ports and a client's whole exchange."""

import random
import socket
import time

import pytest


class Ports:
    """Hands out TCP ports on 127.0.0.1 that nothing listens on, none of them twice.

    Chosen below the kernel's ephemeral range, so that no client connection
    made meanwhile can take one before the daemon binds it, and free of any
    socket, even one in TIME_WAIT, so that a test may bind one itself without
    SO_REUSEADDR (as test_cli does to make a port busy). The ports handed
    out and the random choice are this object's own: a session's ``ports``
    fixture owns one, so what a test gets never depends on module state that
    other tests changed, nor on the global ``random``, which Hypothesis seeds.
    """

    LOWEST = 10000
    HIGHEST = 30000
    ATTEMPTS = 200

    def __init__(self):
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            first_ephemeral = int(f.read().split()[0])
        self._range = range(self.LOWEST, min(first_ephemeral, self.HIGHEST))
        self._random = random.Random()
        self._handed_out = set()

    def take(self):
        """A port that is free now and that this object never handed out before."""
        for _ in range(self.ATTEMPTS):
            port = self._random.choice(self._range)
            if port not in self._handed_out and _bindable("127.0.0.1", port, reuse=False):
                self._handed_out.add(port)
                return port
        raise RuntimeError("no free port below the ephemeral range")


def _bindable(host, port, reuse):
    """Whether ``host:port`` can be bound now, with SO_REUSEADDR if ``reuse``: only
    without it does a connection of a past test, in TIME_WAIT, make the port busy."""
    with socket.socket() as s:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def skip_unless_free(host, port):
    """Skip the test when something else listens on ``host:port`` (a fixed port, 79).

    Connections that ended there are no obstacle: fingerd binds with SO_REUSEADDR."""
    if not _bindable(host, port, reuse=True):
        pytest.skip(f"something else listens on {host}:{port}")


def exchange(port, data, host="127.0.0.1", timeout=10.0, shut_write=False):
    """Send ``data`` on a new connection and return everything read until EOF."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
        raise AssertionError("server did not close the connection")


def answer_of(s, most=64):
    """What the server sends the connected socket ``s`` until it closes, in at most
    ``most`` reads; ``s`` is closed after."""
    chunks = []
    with s:
        for _ in range(most):
            chunks.append(s.recv(4096))
            if not chunks[-1]:
                return b"".join(chunks)
    raise AssertionError("the server did not close the connection")


def connect_from(source, port):
    """A connection from the local address ``source`` to the loopback address of its
    family (127.0.0.1 or ::1) at ``port``."""
    family, target = (socket.AF_INET6, "::1") if ":" in source else (socket.AF_INET,
                                                                      "127.0.0.1")
    s = socket.socket(family)
    try:
        s.bind((source, 0))
        s.connect((target, port))
    except BaseException:
        s.close()
        raise
    return s


def reply_from(source, port, data):
    """Everything the server on loopback at ``port`` sends a client at the local address
    ``source`` that sent ``data``, up to the end of the stream; a reset is an error, not
    an empty reply (as ``ask_from`` takes it)."""
    s = connect_from(source, port)
    s.settimeout(10)
    s.sendall(data)
    return answer_of(s)


def ask_from(source, port, data, timeout=5.0):
    """What the server on 127.0.0.1:``port`` answers ``data`` sent from the local address
    ``source``, until it closes; b"" when the connection is refused or reset."""
    with socket.socket() as s:
        s.settimeout(timeout)
        s.bind((source, 0))
        chunks = []
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(data)
            for _ in range(64):
                chunk = s.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:
            return b""
        return b"".join(chunks)


def can_connect(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False
