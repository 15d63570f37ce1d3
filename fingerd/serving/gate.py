"""The bounds on connections accepted and not yet answered: in all, and from one source."""

import socket
import threading

from fingerd.outcomes import REJECT_BUSY, REJECT_PER_SOURCE


def source_of(host):
    """What ``max_per_source`` counts by: an IPv4 address, an IPv6 /64 (IPv6 clients get
    a /64 each, and a host may take any address in it), an IPv4-mapped address as the
    IPv4 address it maps."""
    if ":" not in host:
        return host
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    try:
        packed = socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
    except (OSError, ValueError):
        return host
    if packed[:12] == _MAPPED_PREFIX:  # written in hex, as Python before 3.13 writes it
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return packed[:8]


#: The first 12 bytes of an IPv4-mapped IPv6 address (::ffff:0:0/96).
_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


class ConnectionGate:
    """At most ``limit`` connections hold a slot at once, and at most ``per_source`` (0:
    no such bound) from one source; taking a slot never waits.

    A plain counter under a lock: threading.BoundedSemaphore is written in
    Python and costs several times more on every connection.
    """

    def __init__(self, limit, per_source=0):
        self.limit = limit
        self.per_source = per_source
        self.active = 0
        self._by_source = {}
        self._lock = threading.Lock()

    def enter(self, source):
        """Take a slot for a client from ``source``: None, or why there is none (the
        rejection reason). A ``source`` of None is not known yet (a PROXY protocol
        header will tell): the slot is taken, and ``claim`` counts the source later."""
        with self._lock:
            if self.active >= self.limit:
                return REJECT_BUSY
            if self.per_source and source is not None:
                held = self._by_source.get(source, 0)
                if held >= self.per_source:
                    return REJECT_PER_SOURCE
                self._by_source[source] = held + 1
            self.active += 1
            return None

    def claim(self, source):
        """Count a slot taken with an unknown source, or counted against another
        (then ``release`` that one), against ``source``: None, or REJECT_PER_SOURCE,
        when it stays as it was."""
        if not self.per_source:
            return None
        with self._lock:
            held = self._by_source.get(source, 0)
            if held >= self.per_source:
                return REJECT_PER_SOURCE
            self._by_source[source] = held + 1
            return None

    def release(self, source: object) -> None:
        """Stop counting a slot against ``source``; the slot stays taken (``claim`` has
        counted it against another source)."""
        if self.per_source:
            with self._lock:
                left = self._by_source.pop(source) - 1
                if left:
                    self._by_source[source] = left

    def crowded(self):
        """Whether at least half the slots are taken: the connections without a whole
        request then get ``first_byte_timeout``. A plain read, no lock: a hint, not a
        count."""
        return self.active * 2 >= self.limit

    def leave(self, source):
        with self._lock:
            self.active -= 1
            if self.per_source and source is not None:
                held = self._by_source[source] - 1
                if held:
                    self._by_source[source] = held
                else:
                    del self._by_source[source]
