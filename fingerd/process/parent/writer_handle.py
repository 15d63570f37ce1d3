"""The users file writer child as the root parent sees it: forked, run behind the
processes that serve, promoted when late.

The child runs at ``SCHED_IDLE`` (``priority``), so that it takes only CPU
time no one else wants; ``filewriter`` promotes it to WRITER_NICENESS when a
write is late or the child is let go, and demotes it once the write is done.
Where it cannot run at SCHED_IDLE, it runs at WRITER_NICENESS throughout.
"""

import os
import signal
from collections.abc import Callable
from typing import Any, NamedTuple, Optional

from fingerd.process.exits_and_signals import HANDLED_SIGNALS
from fingerd.process.parent import priority
from fingerd.process.writer import child
from fingerd.users.editing import StatusWriter

#: Niceness a writing child adds to the parent's: what it competes at once promoted,
#: or always where it cannot run at SCHED_IDLE.
WRITER_NICENESS = 10


class WriteRequest(NamedTuple):
    """A set request waiting, or being written: the worker that asked is ``owner``, and
    stops waiting for the answer at ``expires`` (on the writer's clock)."""

    path: str
    message: dict[str, Any]
    on_done: Callable[[bytes], None]
    expires: float
    owner: Optional[int]


class WriterHandle:
    """The writing child as the parent sees it: its pid, the parent's ends of its two
    pipes (``requests`` None once closed, which ends it), the request it is writing,
    whether it runs at SCHED_IDLE (``yields``) and is promoted for now."""

    __slots__ = ("pid", "promoted", "reaped", "report", "reports", "requests", "writing",
                 "yields")

    def __init__(self, pid: int, requests: int, reports: int, yields: bool) -> None:
        self.pid = pid
        self.requests: Optional[int] = requests
        self.reports = reports
        self.report = b""
        self.writing: Optional[WriteRequest] = None
        self.reaped = False
        self.yields = yields
        self.promoted = False

    @classmethod
    def fork(cls, writer: StatusWriter) -> tuple["WriterHandle", Optional[str]]:
        """A child forked to write with ``writer``, behind the processes that serve, and
        why it does not run at SCHED_IDLE (None when it does)."""
        requests_r, requests_w = os.pipe()
        reports_r, reports_w = os.pipe()
        # Signals stay pending across the fork, so that none reaches the child before
        # it ignores them (the parent's handler would wake the parent's loop).
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = child.serve(requests_r, reports_w, writer)
                finally:
                    os._exit(code)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        os.close(requests_r)
        os.close(reports_w)
        os.set_blocking(requests_w, False)
        os.set_blocking(reports_r, False)
        why = priority.run_behind(pid, WRITER_NICENESS)
        return cls(pid, requests_w, reports_r, yields=why is None), why

    def promote(self) -> Optional[str]:
        """Let it compete with the other processes; why it could not, if it could not."""
        if not self.yields or self.promoted:
            return None
        self.promoted = True
        return self._change_priority(priority.promote)

    def demote(self) -> Optional[str]:
        """Back to SCHED_IDLE once its late write is done; why it could not be."""
        if not self.promoted:
            return None
        self.promoted = False
        return self._change_priority(priority.demote)

    def _change_priority(self, change: Callable[[int], None]) -> Optional[str]:
        try:
            change(self.pid)
        except ProcessLookupError:
            pass  # it has ended: its reports' pipe says so
        except OSError as exc:
            return f"cannot change the users file writer's scheduling policy: {exc.strerror}"
        return None
