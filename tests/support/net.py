"""Loopback networking for tests: free ports and a client's whole exchange."""

import random
import socket
import time

_handed_out = set()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Chosen below the kernel's ephemeral range, so that no client connection
    made meanwhile can take it before the daemon binds it.
    """
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        first_ephemeral = int(f.read().split()[0])
    for _ in range(200):
        port = random.randrange(10000, min(first_ephemeral, 30000))
        if port in _handed_out:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port below the ephemeral range")


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


def can_connect(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False
