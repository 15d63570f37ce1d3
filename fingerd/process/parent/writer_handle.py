"""The users file writer child as the root parent sees it: forked, run behind the
processes that serve, promoted when late.

A set's copy of a large users file takes tens of milliseconds of CPU. At a
positive niceness (``SCHED_OTHER``, or ``SCHED_BATCH`` at niceness 19) a
process that wakes on the writer's core while the writer runs still waits
for the writer's slice to end, up to a scheduler tick (4 ms at 250 Hz); a
``SCHED_IDLE`` process gives way at once (scripts/bench_wakeups.py,
docs/bench/sets.md). So the writer runs at ``SCHED_IDLE``, with two
consequences handled here:

- the kernel derives the idle I/O class from ``SCHED_IDLE``, under which the
  writer's fsync would wait behind everyone else's I/O (for seconds, under
  mq-deadline), so its I/O priority is set explicitly: best effort, the
  lowest level;
- it gets almost no CPU while every core is busy, so ``filewriter`` promotes
  a write that is late, or a child let go, back to ``SCHED_OTHER`` at
  WRITER_NICENESS (``WriterHandle.promote``) until it is done
  (``WriterHandle.demote``). Leaving ``SCHED_IDLE`` takes ``CAP_SYS_NICE``
  or an ``RLIMIT_NICE`` that allows that niceness (sched(7)).

Where either cannot be had (no ``ioprio_set`` number for the machine, no
right to promote), the writer runs at WRITER_NICENESS alone, as it did before;
where even that is refused (a seccomp filter such as systemd's
``SystemCallFilter=~@resources``), at the parent's.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import signal
import socket
from collections.abc import Callable
from typing import Any, NamedTuple

from fingerd.process.channel import error_reply, set_reply, unknown_reply
from fingerd.process.exits_and_signals import HANDLED_SIGNALS
from fingerd.process.writer import child
from fingerd.users.editing import StatusWriter

#: What a set whose child ended before its report is answered: the file is as it was.
CUT_SHORT = "cannot write users file: the write was cut short"
#: Why one whose child ended after it said it was renaming the new file into place is
#: answered unknown: the file may hold the new status, or not.
CUT_SHORT_RENAMING = "the write was cut short as its new file was renamed into place"

#: Niceness a writing child adds to the parent's: what it competes at once promoted,
#: or always where it cannot run at SCHED_IDLE.
WRITER_NICENESS = 10

#: ioprio_set(2) by machine: linux/arch/x86/entry/syscalls/syscall_64.tbl.
IOPRIO_SET = {"x86_64": 251}
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_BE = 2
IOPRIO_CLASS_SHIFT = 13
#: The lowest level of the best-effort class.
IOPRIO_BE_LOWEST = 7

CAP_SYS_NICE = 23
MAX_NICENESS = 19

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def run_behind(pid: int, niceness: int) -> str | None:
    """Put the process ``pid`` (a child not yet at work) ``niceness`` above this one's
    niceness and, where it can be promoted later, at ``SCHED_IDLE`` with its I/O best
    effort at the lowest level. None when it runs at ``SCHED_IDLE``; else why not, and
    at what niceness it runs."""
    own = os.getpriority(os.PRIO_PROCESS, 0)
    nice = min(MAX_NICENESS, own + niceness)
    try:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    except OSError as exc:
        return f"setpriority: {exc.strerror}; it runs at niceness {own}, as the parent"
    why = _why_not_idle(pid, nice)
    return None if why is None else f"{why}; it runs at niceness {nice}"


def _why_not_idle(pid: int, nice: int) -> str | None:
    number = IOPRIO_SET.get(platform.machine())
    if number is None:
        return f"no ioprio_set number for {platform.machine()}"
    if not _may_leave_idle(nice):
        return "neither CAP_SYS_NICE nor an RLIMIT_NICE that lets a late write be promoted"
    value = IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT | IOPRIO_BE_LOWEST
    if _libc.syscall(ctypes.c_long(number), ctypes.c_long(IOPRIO_WHO_PROCESS),
                     ctypes.c_long(pid), ctypes.c_long(value)) != 0:
        return f"ioprio_set: {os.strerror(ctypes.get_errno())}"
    try:
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except OSError as exc:
        return f"sched_setscheduler: {exc.strerror}"
    return None


def promote_process(pid: int) -> None:
    """Let ``pid``, at ``SCHED_IDLE``, compete at its niceness; raises OSError."""
    os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))


def demote_process(pid: int) -> None:
    """Put ``pid`` back at ``SCHED_IDLE``; raises OSError."""
    os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))


def _may_leave_idle(nice: int) -> bool:
    """Whether this process may move a child of its own (which shares its limits)
    from ``SCHED_IDLE`` to ``SCHED_OTHER`` at niceness ``nice``."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    if soft == resource.RLIM_INFINITY or soft >= 20 - nice:
        return True
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_NICE & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


class WriteRequest(NamedTuple):
    """A set request waiting, or being written: the worker that asked is ``owner``, and
    stops waiting for the answer at ``expires`` (on the writer's clock)."""

    path: str
    message: dict[str, Any]
    on_done: Callable[[bytes], None]
    expires: float
    owner: int | None


def reply_for(request_id: int, report: Any) -> bytes:
    """The reply to the set ``request_id`` that the child's ``report`` on it (decoded)
    makes; raises ValueError, KeyError or TypeError for what is no report."""
    if report["ok"]:
        return set_reply(request_id, report["old"], report["new"])
    if report.get("unknown"):
        return unknown_reply(request_id, str(report["error"]))
    return error_reply(request_id, str(report["error"]))


class WriterHandle:
    """The writing child as the parent sees it: its pid, the parent's end of the
    socket they talk on (``accepting`` False once the parent has shut its side,
    which ends the child), the request it is writing and whether it has said
    it is renaming that one's new file into place (``committing``), whether it
    runs at SCHED_IDLE (``yields``) and is promoted for now."""

    __slots__ = ("accepting", "committing", "pid", "promoted", "reaped", "sock", "writing",
                 "yields")

    def __init__(self, pid: int, sock: socket.socket, yields: bool) -> None:
        self.pid = pid
        self.sock = sock
        self.accepting = True
        self.writing: WriteRequest | None = None
        self.committing = False
        self.reaped = False
        self.yields = yields
        self.promoted = False

    @classmethod
    def fork(cls, writer: StatusWriter) -> tuple[WriterHandle, str | None]:
        """A child forked to write with ``writer``, behind the processes that serve, and
        why it does not run at SCHED_IDLE (None when it does)."""
        # Datagrams, as on the worker's channel: each request and report arrives whole.
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Signals stay pending across the fork, so that none reaches the child before
        # it ignores them (the parent's handler would wake the parent's loop).
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = child.serve(child_end, writer)
                finally:
                    os._exit(code)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        child_end.close()
        parent_end.setblocking(False)
        why = run_behind(pid, WRITER_NICENESS)
        return cls(pid, parent_end, yields=why is None), why

    def write(self, request: WriteRequest, data: bytes) -> None:
        """Send it ``request``, as ``data``. One short datagram to a child that has read
        the last never blocks; one it cannot take ends it (its report never comes: the
        socket's end says so)."""
        self.writing, self.committing = request, False
        try:
            self.sock.send(data)
        except OSError:
            self.kill()

    def cut_short(self) -> bytes:
        """The reply to the request it was writing, which it ended (or was killed) before
        reporting on: an error while the file is surely as it was; unknown once it said it
        was renaming the new file into place, since the file may then hold the new status
        and ERROR would say that nothing changed. The parent never looks at the file:
        the disk may hang."""
        assert self.writing is not None
        request_id = self.writing.message["id"]
        if self.committing:
            return unknown_reply(request_id, CUT_SHORT_RENAMING)
        return error_reply(request_id, CUT_SHORT)

    def kill(self) -> None:
        """SIGKILL it unless reaped already: the rename is atomic, so the file is the old
        or the new one, whole; only the temporary file may be left."""
        if not self.reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def promote(self) -> str | None:
        """Let it compete with the other processes; why it could not, if it could not."""
        if not self.yields or self.promoted:
            return None
        self.promoted = True
        return self._change_priority(promote_process)

    def demote(self) -> str | None:
        """Back to SCHED_IDLE once its late write is done; why it could not be."""
        if not self.promoted:
            return None
        self.promoted = False
        return self._change_priority(demote_process)

    def _change_priority(self, change: Callable[[int], None]) -> str | None:
        try:
            change(self.pid)
        except ProcessLookupError:
            pass  # it has ended: its socket's end says so
        except OSError as exc:
            return f"cannot change the users file writer's scheduling policy: {exc.strerror}"
        return None
