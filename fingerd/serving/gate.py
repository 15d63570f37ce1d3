"""The bounds on connections accepted and not yet answered: in all, and from one source."""

from __future__ import annotations

import collections
import socket
from typing import Union

from fingerd.outcomes import REJECT_BUSY, REJECT_PER_SOURCE

#: What ``max_per_source`` counts by (``source_of``); a slot taken before a PROXY header
#: has named the client has None instead.
Source = Union[str, bytes]


def source_of(host: str) -> Source:
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

    One thread owns the counts: the serving loop's, which takes every slot
    and frees those it answers itself. Another thread that frees a slot (a
    pool thread that answered) hands it back on a deque, whose ``append``
    and ``popleft`` are atomic, and the owner counts it free at its next
    ``enter``. So no lock is taken: a lock's acquire and release, twice a
    query, cost 8% of a query's instructions (scripts/instructions.py), and
    threading.BoundedSemaphore, written in Python, several times more.
    """

    def __init__(self, limit: int, per_source: int = 0) -> None:
        self.limit = limit
        self.per_source = per_source
        self._taken = 0
        self._by_source: dict[Source, int] = {}
        self._handed_back: collections.deque[Source | None] = collections.deque()

    @property
    def active(self) -> int:
        """Slots held now; from any thread, a reading (never below 0)."""
        return max(0, self._taken - len(self._handed_back))

    def enter(self, source: Source | None) -> str | None:
        """Take a slot for a client from ``source``: None, or why there is none (the
        rejection reason). A ``source`` of None is not known yet (a PROXY protocol
        header will tell): the slot is taken, and ``claim`` counts the source later.
        A source at its bound is told so first: shedding another's connection to make
        room (``Pending.shed_oldest``) would not let it in. The owner's only."""
        if self._handed_back:
            self._count_handed_back()
        if self.per_source and source is not None:
            held = self._by_source.get(source, 0)
            if held >= self.per_source:
                return REJECT_PER_SOURCE
            if self._taken >= self.limit:
                return REJECT_BUSY
            self._by_source[source] = held + 1
        elif self._taken >= self.limit:
            return REJECT_BUSY
        self._taken += 1
        return None

    def claim(self, source: Source) -> str | None:
        """Count a slot taken with an unknown source, or counted against another
        (then ``release`` that one), against ``source``: None, or REJECT_PER_SOURCE,
        when it stays as it was. The owner's only."""
        if not self.per_source:
            return None
        self._count_handed_back()
        held = self._by_source.get(source, 0)
        if held >= self.per_source:
            return REJECT_PER_SOURCE
        self._by_source[source] = held + 1
        return None

    def release(self, source: Source) -> None:
        """Stop counting a slot against ``source``; the slot stays taken (``claim`` has
        counted it against another source). The owner's only."""
        if self.per_source:
            left = self._by_source.pop(source) - 1
            if left:
                self._by_source[source] = left

    def crowded(self) -> bool:
        """Whether at least half the slots are taken: the connections without a whole
        request then get ``first_byte_timeout``. A hint, not a count."""
        return self.active * 2 >= self.limit

    def leave(self, source: Source | None) -> None:
        """Free a slot taken for ``source``. The owner's only: other threads hand_back."""
        self._taken -= 1
        if self.per_source and source is not None:
            held = self._by_source[source] - 1
            if held:
                self._by_source[source] = held
            else:
                del self._by_source[source]

    def hand_back(self, source: Source | None) -> None:
        """Free a slot taken for ``source``, from a thread that is not the owner."""
        self._handed_back.append(source)

    def _count_handed_back(self) -> None:
        """Free the slots other threads have handed back: before the owner reads the
        counts, so that none is held for a client already answered."""
        handed_back = self._handed_back
        while handed_back:
            self.leave(handed_back.popleft())
