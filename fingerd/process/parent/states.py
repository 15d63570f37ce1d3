"""The named states of the root parent's life and of each worker in it, and how long
BACKOFF waits.

``State`` is the supervisor's: whether a worker is kept, and how (starting,
running, replaced by a reload's, backing off after a death, stopping).
``Phase`` is each worker's own, kept on its handle with the deadline that
ends it. Each changes in one place only (``Supervisor._move``,
``WorkerHandle.move``), along the arrows written here.

``Backoff`` gives BACKOFF's deadline, the wait before the next start after a
death. A worker that lived HEALTHY_UPTIME seconds, or answered a request, was
healthy: the next starts at once. Workers that keep dying young wait
longer each time, doubled from BACKOFF_FIRST up to BACKOFF_CAP; one that
exits with EXIT_FATAL (it cannot work as configured) waits the longest at
once. Pure: the supervisor hands it each death.
"""

import enum
import math
import os

from fingerd.process.exits_and_signals import EXIT_FATAL


class State(enum.Enum):
    """The supervisor's state. Only BACKOFF has a deadline of its own: the next start;
    the others' deadlines are the workers' (``Phase``)."""

    STOPPED = "stopped"      # none yet, or stopped on request: the loop returns 0
    STARTING = "starting"    # forked, not ready; the first one fails at its deadline
    RUNNING = "running"      # said it is ready
    REPLACING = "replacing"  # a reload's worker starts beside the one serving; it is
                             # refused at its deadline
    BACKOFF = "backoff"      # died; the next starts at the deadline
    STOPPING = "stopping"    # sent TERM to every worker; each is killed at its deadline
    FATAL = "fatal"          # the first worker never became ready: the loop returns 1


#: The only moves ``Supervisor._move`` makes. BACKOFF to BACKOFF: a reload applied
#: while no worker runs cuts the wait short.
NEXT_STATE = {
    State.STOPPED: {State.STARTING},
    State.STARTING: {State.RUNNING, State.BACKOFF, State.STOPPING, State.FATAL},
    State.RUNNING: {State.REPLACING, State.BACKOFF, State.STOPPING},
    State.REPLACING: {State.RUNNING, State.BACKOFF, State.STOPPING},
    State.BACKOFF: {State.STARTING, State.BACKOFF, State.STOPPING},
    State.STOPPING: {State.STOPPED},
    State.FATAL: set(),
}


class Phase(enum.Enum):
    """Where one worker is; its handle's ``deadline`` means what the phase says."""

    STARTING = "starting"    # forked, not ready; given up at the deadline, if it has one
    RUNNING = "running"      # ready and serving; taken for wedged at the deadline, which
                             # each heartbeat pushes back
    REPLACED = "replaced"    # serves while a reload's worker starts; no deadline
    STOPPING = "stopping"    # sent TERM; killed at the deadline
    KILLED = "killed"        # sent KILL; its death ends it, with no deadline


#: The only moves ``WorkerHandle.move`` makes. RUNNING to RUNNING is a heartbeat.
NEXT_PHASE = {
    Phase.STARTING: {Phase.RUNNING, Phase.STOPPING, Phase.KILLED},
    Phase.RUNNING: {Phase.RUNNING, Phase.REPLACED, Phase.STOPPING, Phase.KILLED},
    Phase.REPLACED: {Phase.RUNNING, Phase.STOPPING},
    Phase.STOPPING: {Phase.KILLED},
    Phase.KILLED: set(),
}


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
