"""The named states of the root parent's life and of each worker in it.

``State`` is the supervisor's: whether a worker is kept, and how (starting,
running, replaced by a reload's, backing off after a death, stopping).
``Phase`` is each worker's own, kept on its handle with the deadline that
ends it. Each changes in one place only (``Supervisor._move``,
``WorkerHandle.move``), along the arrows written here.
"""

import enum


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
