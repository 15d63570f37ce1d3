"""A worker as the root parent sees it, with its own state and deadline.

Each handle names where its worker is in its life (``Phase``) and when that
phase ends by itself (``deadline``); both change together, in ``move``,
along the arrows of ``states.NEXT_PHASE``. The supervisor decides what a deadline
reached means (``Supervisor._on_worker_deadline``); the handle only keeps it.
"""

import select
import selectors
from collections.abc import Callable
from typing import Any, Optional

from fingerd.process.channel import ParentEnd
from fingerd.process.parent.logrelay import LogRelay
from fingerd.process.parent.states import NEXT_PHASE, Phase


class WorkerHandle:
    """A worker's pid, channels and phase, and the configuration it was started with
    (its sets go to that configuration's users file)."""

    def __init__(self, pid: int, channel: ParentEnd, relay: LogRelay, config: Any,
                 started_at: float, deadline: Optional[float]) -> None:
        self.pid = pid
        self.channel: Optional[ParentEnd] = channel
        self.channel_events = selectors.EVENT_READ
        self.relay = relay
        self.config = config
        self.started_at = started_at
        #: Whether it has said, in a heartbeat, that it answered a request: it says so at
        #: its first answer, before that client's connection is closed.
        self.served = False
        #: Closes the sockets no worker serves any more, once this retiring worker is gone.
        self.close_leftovers: Callable[[], None] = _nothing
        self.phase = Phase.STARTING
        self.deadline = deadline

    def move(self, phase: Phase, deadline: Optional[float] = None) -> None:
        """The one place the phase and the deadline change; ``deadline`` is when the
        phase ends by itself."""
        assert phase in NEXT_PHASE[self.phase], \
            f"worker {self.pid} {self.phase.value} cannot be {phase.value}"
        self.phase = phase
        self.deadline = deadline

    def overdue(self, now: float) -> bool:
        """Whether its phase has ended by itself at ``now``. A worker starting or running
        whose word (ready, alive) waits unread on its channel is not: a parent stopped or
        stalled past the deadline reads it first, rather than kill a worker for its own
        silence."""
        if self.deadline is None or now < self.deadline:
            return False
        if self.phase not in (Phase.STARTING, Phase.RUNNING) or self.channel is None:
            return True
        return not select.select([self.channel], [], [], 0)[0]


def _nothing() -> None:
    """``close_leftovers`` of a worker that leaves no socket behind."""
