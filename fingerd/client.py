"""Minimal clients of the finger and setter protocols, for fingerd-ctl."""

import socket
import time

#: Most bytes of an answer read.
MAX_ANSWER_BYTES = 64 * 1024


def local_host(address):
    """Where to reach a listener from this machine: a wildcard means loopback."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address.host, address.host)


def exchange(address, data, timeout=10.0):
    """Send ``data`` to ``address`` and return the answer, read until the server closes.

    Bounded in size (MAX_ANSWER_BYTES) and in time (``timeout`` for the whole
    exchange); raises OSError when the server cannot be reached or is silent.
    """
    deadline = time.monotonic() + timeout
    with socket.create_connection((local_host(address), address.port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        size = 0
        while size < MAX_ANSWER_BYTES:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(MAX_ANSWER_BYTES - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks)
