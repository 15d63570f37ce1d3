"""How long the root parent waits before it starts the next worker after a death.

A worker that lived HEALTHY_UPTIME seconds, or answered a request, was
healthy: the next starts at once. Workers that keep dying young wait
longer each time, doubled from BACKOFF_FIRST up to BACKOFF_CAP; one that
exits with EXIT_FATAL (it cannot work as configured) waits the longest at
once. Pure: the supervisor hands it each death.
"""

import math
import os

from fingerd.process.exits_and_signals import EXIT_FATAL

#: A worker that lived this long is healthy: its death restarts the next at once.
HEALTHY_UPTIME = 10.0
#: Restart delays for workers that keep dying young: first, then doubled up to the cap.
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 30.0
#: Doublings that reach the cap: past them the delay stays there (and its power of two
#: would overflow a float after about a thousand).
_DOUBLINGS_TO_CAP = math.ceil(math.log2(BACKOFF_CAP / BACKOFF_FIRST))
#: Young deaths counted for a worker that exits with EXIT_FATAL: it waits the longest delay.
FATAL_EXIT_FAILURES = 8


def backoff_delay(failures: int) -> float:
    """Seconds to wait before the next start after ``failures`` young deaths in a row."""
    if failures <= 1:
        return 0.0
    return min(BACKOFF_FIRST * 2.0 ** min(failures - 2, _DOUBLINGS_TO_CAP), BACKOFF_CAP)


class Backoff:
    """The young deaths in a row, and the delay they earn the next start."""

    def __init__(self) -> None:
        self.failures = 0

    def after_death(self, uptime: float, served: bool, status: int) -> float:
        """Seconds before the next start, after a worker that lived ``uptime`` seconds,
        answered requests if ``served``, and ended with wait status ``status``."""
        # A worker that served was healthy, however short its life: a series of
        # kills from outside does not push the next start back.
        healthy = uptime >= HEALTHY_UPTIME or served
        self.failures = 1 if healthy else self.failures + 1
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_FATAL:
            self.failures = max(self.failures, FATAL_EXIT_FAILURES)
        return backoff_delay(self.failures)

    def reset(self) -> None:
        """The next start is as after a first death."""
        self.failures = 0
