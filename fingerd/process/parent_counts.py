"""Counts the root parent keeps and the worker exports: configuration reloads by outcome.

A refused reload leaves the worker serving, so the count cannot reach it at
its start, as the restart count does. The parent writes the counts to an
anonymous memory file it creates once and every worker inherits, with one
``pwrite``; the worker reads them at each scrape, until two reads agree, so
that it never exports a count half written. The parent counts in its own
memory and never reads the file back: a worker may write there whatever it
likes (the descriptor it inherits is writable), and the root parent must not
act on it.
"""

from __future__ import annotations

import os
import struct

OUTCOMES = ("success", "failure")
_COUNTS = struct.Struct("<" + "Q" * len(OUTCOMES))
#: Reads a scrape makes at most for two that agree; a write takes microseconds.
_READS = 4


class ConfigReloads:
    """The counts in the memory file ``fd``; a new one (in the parent) when None."""

    def __init__(self, fd: int | None = None) -> None:
        #: The parent's own counts, which ``record`` writes out whole.
        self._counts = dict.fromkeys(OUTCOMES, 0)
        if fd is None:
            fd = os.memfd_create("fingerd-counts", os.MFD_CLOEXEC)
            os.pwrite(fd, _COUNTS.pack(*self._counts.values()), 0)
        self.fd = fd

    def record(self, outcome: str) -> None:
        """Count one reload with ``outcome`` (parent)."""
        self._counts[outcome] += 1
        os.pwrite(self.fd, _COUNTS.pack(*(self._counts[o] for o in OUTCOMES)), 0)

    def read(self) -> dict[str, int]:
        """``{outcome: count}``."""
        data = os.pread(self.fd, _COUNTS.size, 0)
        for _ in range(_READS):
            again = os.pread(self.fd, _COUNTS.size, 0)
            if again == data:
                break
            data = again
        if len(data) != _COUNTS.size:
            return dict.fromkeys(OUTCOMES, 0)
        return dict(zip(OUTCOMES, _COUNTS.unpack(data)))
