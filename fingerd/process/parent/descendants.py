"""The parent as a child subreaper: nothing a worker started outlives it.

With ``PR_SET_CHILD_SUBREAPER`` an orphan among the parent's descendants (a
worker's child once the worker died, a grandchild whose parent exited after
``setsid``) becomes the parent's child instead of init's, whatever session
or process group it moved to. The parent forks nothing but workers, one at
a time, and the child that writes the users file (which it spares), so once
its worker is dead and reaped, each of its children, and theirs, is
something a worker left behind: ``kill_leftovers`` finds them
through the parent links of ``/proc/PID/stat``, kills them with SIGKILL and
reaps them. (The worker's seccomp filter keeps it from forking at all; this
is the layer that holds where that one was refused.)
"""

from __future__ import annotations

import collections
import ctypes
import os
import signal
import time
from collections.abc import Callable, Container, Iterator
from typing import NamedTuple

PR_SET_CHILD_SUBREAPER = 36

#: Longest the parent waits for killed leftovers to end (a process in
#: uninterruptible sleep ends only when the kernel lets it).
KILL_TIMEOUT = 2.0

_libc = ctypes.CDLL(None, use_errno=True)


def become_subreaper() -> str | None:
    """Make this process its descendants' reaper; None, or why the kernel refused."""
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        return f"PR_SET_CHILD_SUBREAPER: {os.strerror(ctypes.get_errno())}"
    return None


def kill_leftovers(timeout: float = KILL_TIMEOUT, spare: Container[int] = frozenset(),
                   ) -> tuple[list[int], list[int]]:
    """SIGKILL every descendant of this process but the children in ``spare`` and reap
    it; ``(killed, remaining)`` pids.

    Only for when this process has no other child it means to keep. Each turn kills
    what it finds at every depth and reaps this process's own children; a
    killed process's children become this process's own as it ends, and the
    next turn reaps them. Gives up after ``timeout`` seconds.
    """
    me = os.getpid()
    killed: set[tuple[int, int]] = set()
    deadline = time.monotonic() + timeout
    while True:
        found = [proc for proc in (descendants(me) if has_children() else [])
                 if proc.pid not in spare]
        if not found or time.monotonic() >= deadline:
            return sorted({pid for pid, _ in killed}), sorted(p.pid for p in found)
        for proc in found:
            if proc.state != "Z" and (proc.pid, proc.start) not in killed:
                _kill(proc, own=proc.ppid == me)
                killed.add((proc.pid, proc.start))
            if proc.ppid == me:
                try:
                    os.waitpid(proc.pid, os.WNOHANG)
                except ChildProcessError:
                    pass
        time.sleep(0.002)


class Process(NamedTuple):
    """A process as ``/proc/PID/stat`` shows it: its state letter, and its start time in
    clock ticks after boot (with the pid, what names it across pid reuse)."""

    pid: int
    ppid: int
    state: str
    start: int


def has_children() -> bool:
    """False when ``/proc`` says this process has no child, zombie or live: then it
    has no descendant either (an orphan would be its child). Reading the short
    ``children`` list spares the common case a scan of every process."""
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                if f.read().strip():
                    return True
    except OSError:
        return True  # a kernel without CONFIG_PROC_CHILDREN: scan
    return False


def descendants(root: int) -> list[Process]:
    """Every live or zombie descendant of ``root``, parents before children."""
    by_parent: collections.defaultdict[int, list[Process]] = collections.defaultdict(list)
    for proc in processes():
        by_parent[proc.ppid].append(proc)
    found = []
    todo = [root]
    while todo:
        for child in by_parent.get(todo.pop(), ()):
            found.append(child)
            todo.append(child.pid)
    return found


def processes() -> Iterator[Process]:
    """Every process as ``/proc/PID/stat`` shows it now."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            proc = stat(int(name))
            if proc is not None:
                yield proc


def stat(pid: int) -> Process | None:
    """``pid``'s Process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            line = f.read()
    except OSError:
        return None
    # The command name, in parentheses, may hold anything: the fields follow the last ")".
    fields = line[line.rindex(b")") + 2:].split()
    return Process(pid, int(fields[1]), fields[0].decode(), int(fields[19]))


def _kill(proc: Process, own: bool) -> None:
    """SIGKILL ``proc``, and never another process that took its pid since it was seen.

    A child of this process keeps its pid until this process reaps it; another
    descendant is signalled through a pidfd, once its start time says that the
    pidfd names the process that was seen.
    """
    if own:
        _signal(lambda: os.kill(proc.pid, signal.SIGKILL))
        return
    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:
        return  # gone; or no pidfd (before Linux 5.3): its parent's death hands it to us
    try:
        now = stat(proc.pid)
        if now is not None and now.start == proc.start:
            _signal(lambda: signal.pidfd_send_signal(fd, signal.SIGKILL))
    finally:
        os.close(fd)


def _signal(send: Callable[[], None]) -> None:
    try:
        send()
    except ProcessLookupError:
        pass
