"""The users file writer's place behind the processes that serve: CPU and I/O.

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
- it gets almost no CPU while every core is busy, so a write that is late is
  promoted back to ``SCHED_OTHER`` at the writer's niceness (``promote``)
  until it is done (``demote``). Leaving ``SCHED_IDLE`` takes
  ``CAP_SYS_NICE`` or an ``RLIMIT_NICE`` that allows that niceness
  (sched(7)).

Where either cannot be had (no ``ioprio_set`` number for the machine, no
right to promote), the writer runs at its niceness alone, as it did before;
where even that is refused (a seccomp filter such as systemd's
``SystemCallFilter=~@resources``), at the parent's.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource

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


def promote(pid: int) -> None:
    """Let ``pid``, at ``SCHED_IDLE``, compete at its niceness; raises OSError."""
    os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))


def demote(pid: int) -> None:
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
