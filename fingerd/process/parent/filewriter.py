"""The root parent's writes of the users file, made by a short-lived child.

A set rewrites the whole file (a copy with one line changed, written beside
it, fsynced, renamed over it, the directory fsynced): for a million lines, a
tenth of a second. The parent must go on answering signals and reaping
children meanwhile, and it is single-threaded on purpose (it forks workers,
and a thread could hold a lock across a fork), so a child forked for them
makes the writes: root, as the parent, one at a time, each asked for and
reported on a socket that the parent's selector watches.

The child serves a run of sets: it stays LINGER_SECONDS after its last
write, in case another comes (a fork and an exit cost a few milliseconds,
as much as a whole set on a small file), and the parent then shuts its
side of their socket, which ends it. So it lives only while sets come, and
the parent has it reaped before it exits itself.

Writes are made in the order they were asked for. Requests wait in a
queue; the worker asks for one set at a time, so the queue holds more than
one only for a worker that does not behave (``waiting`` tells the parent,
which bounds it). A request the worker no longer waits for (a write was
slow, or the parent itself was stopped before it read the request) is
answered with an error and not carried out, since the setter's client was
already told the set failed; so is a write that could not be renamed into
place COMMIT_MARGIN before then.

A child that ends before its report (killed, out of memory) leaves its set
answered from what it said last: an error while it had not said it was
renaming the new file into place (the file is as it was), the unknown
outcome once it had (``WriterHandle.cut_short``). The parent never looks at
the file to tell which: its loop must not wait on a disk that may hang.

The child runs behind the processes that serve (``writer_handle``): at
``SCHED_IDLE``, so that it takes only CPU time no one else wants. A write
not done within PROMOTE_AFTER seconds (the machine is busy, or the whole
file is being validated) is finished at WRITER_NICENESS instead, so that no
set waits for idle time that never comes; so is a child let go, which has
only to end.

This module is the parent's side; the child's loop is ``writer.child``. Its
reports say which version of the file it trusts, and the parent hands that to
the next child.
"""

import collections
import json
import logging
import os
import selectors
import socket
import time
from typing import Any, Callable, Optional

from fingerd.limits import REPLY_TIMEOUT
from fingerd.process.channel import error_reply, signature
from fingerd.process.exits_and_signals import describe_exit
from fingerd.process.parent.writer_handle import WriteRequest, WriterHandle, reply_for
from fingerd.process.writer.child import COMMITTING, NOT_IN_TIME
from fingerd.users.editing import StatusWriter

log = logging.getLogger("fingerd")

#: Seconds the writing child waits for another set after its last one.
LINGER_SECONDS = 1.0

#: Most bytes of a report read: a report is a few hundred, one whose error names a path
#: of PATH_MAX, each character escaped, fits too; a longer one is cut short, which its
#: JSON then says.
MAX_REPORT_BYTES = 65536

#: Seconds before the worker stops waiting for a set's answer by which the file must be
#: renamed, or the write is called off: a set the setter's client is told failed must
#: change nothing, and the answer needs a moment to reach the worker.
COMMIT_MARGIN = 1.0

#: Seconds a write may take at SCHED_IDLE before its child is promoted: a set on a
#: million lines that the child wrote itself takes a fifth of that, on a core shared
#: with the worker; one that validates the whole file takes seconds.
PROMOTE_AFTER = 1.0


class FileWriter:
    """Carries out set requests on the users file, one at a time, in a child.

    ``selector`` is the parent's: the child's reports are registered on it
    with a callback, as the parent's own channels are. Every request's
    ``on_done`` is called once with its reply, from that callback (or from
    ``submit``, for a request that expired, or had before it came), unless
    ``discard_queued`` or ``close`` drops it first. ``deadline`` is when
    the parent's loop must call ``on_deadline`` (to promote a late write, or
    let an idle child go).
    """

    def __init__(self, selector: selectors.BaseSelector,
                 clock: Callable[[], float] = time.monotonic,
                 expire_after: float = REPLY_TIMEOUT, linger: float = LINGER_SECONDS) -> None:
        self._sel = selector
        self._clock = clock
        self._expire_after = expire_after
        self._linger = linger
        self._writer = StatusWriter()
        self._queue: collections.deque[WriteRequest] = collections.deque()
        self._child: Optional[WriterHandle] = None
        self._unreaped: set[int] = set()
        self._closing = False
        self._noted: Optional[str] = None
        #: When a write is late or the idle child is let go; None while neither can be.
        self.deadline: Optional[float] = None

    @property
    def waiting(self) -> int:
        """Requests queued that the worker still waits for, the one being written aside."""
        now = self._clock()
        return sum(1 for request in self._queue if request.expires > now)

    @property
    def writing(self) -> bool:
        """True while the child writes (or is about to write) a set."""
        return self._child is not None and self._child.writing is not None

    def pids(self) -> set[int]:
        """The writing child's pid, and those of children ended and not yet reaped."""
        return ({self._child.pid} if self._child is not None else set()) | self._unreaped

    @property
    def busy(self) -> bool:
        """True while a child lives, or has ended and is not yet reaped."""
        return self._child is not None or bool(self._unreaped)

    def submit(self, path: str, message: dict[str, Any], on_done: Callable[[bytes], None],
               owner: Optional[int] = None, within: Optional[float] = None) -> None:
        """Queue the set request ``message`` (its name and status valid) on the users file
        at ``path``, for the worker ``owner``, which waits ``within`` seconds more for
        it (at most, and by default, ``expire_after``); ``on_done(reply)`` once it is
        written or has failed."""
        wait = self._expire_after if within is None else min(within, self._expire_after)
        self._queue.append(WriteRequest(path, message, on_done, self._clock() + wait, owner))
        for late in _take_expired(self._queue, self._clock()):
            late.on_done(error_reply(late.message["id"], NOT_IN_TIME))
        self._start_next()

    def discard_queued(self, owner: Optional[int] = None) -> None:
        """Forget the requests of ``owner`` (every one's when None) not yet started:
        their worker is gone, they are never written."""
        self._queue = collections.deque(
            request for request in self._queue if owner is not None and request.owner != owner)

    def close(self) -> None:
        """At stop: drop the queue, and let the child go once its write is done (at once
        if it is idle and not let go already, its linger over)."""
        self._closing = True
        self.discard_queued()
        child = self._child
        if child is not None and child.writing is None and child.accepting:
            self._let_go()

    def finish(self, wait: float, step: Callable[[Optional[float]], None]) -> None:
        """Once no worker is left: wait for the write in progress, if any, turning the
        parent's loop with ``step(timeout)``, and reap its child; kill it if it is not
        done within ``wait`` seconds (the file is then the old one or the new one)."""
        self.close()
        deadline: Optional[float] = self._clock() + wait
        while self.busy:
            self.reap()
            if deadline is not None and self._clock() >= deadline:
                log.warning("users file still being written %.0f s after the worker "
                            "stopped; killing the writer", wait)
                self.kill()
                deadline = None
            step(None if deadline is None else max(0.0, deadline - self._clock()))

    def on_deadline(self) -> None:
        """The write in progress is late: promote its child. Or the idle child has
        lingered long enough: let it go."""
        self.deadline = None
        if self._child is None:
            return
        if self._child.writing is not None:
            self._note(self._child.promote())
        else:
            self._let_go()

    def kill(self) -> None:
        """SIGKILL the child, if any: the rename is atomic, so the file is the old or the
        new one, whole; only the temporary file may be left."""
        if self._child is not None:
            self._child.kill()

    def reap(self) -> None:
        """Reap the children that have ended (SIGCHLD); one whose socket has closed may
        still be exiting."""
        for pid in list(self._unreaped):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                self._unreaped.discard(pid)
                _log_abnormal_exit(pid, status)

    def reaped(self, pid: int, status: int) -> bool:
        """Told that someone else reaped ``pid``: True when it was one of ours."""
        if pid in self._unreaped:
            self._unreaped.discard(pid)
        elif self._child is not None and self._child.pid == pid:
            self._child.reaped = True
        else:
            return False
        _log_abnormal_exit(pid, status)
        return True

    def _start_next(self) -> None:
        while self._queue and (self._child is None or self._child.writing is None):
            request = self._queue.popleft()
            if request.expires <= self._clock():
                request.on_done(error_reply(request.message["id"], NOT_IN_TIME))
                continue
            child = self._child
            if child is None or not child.accepting:
                if child is not None:
                    self._queue.appendleft(request)  # the one let go ends first
                    return
                child = self._child = self._fork()
            assert child.accepting
            self.deadline = self._clock() + PROMOTE_AFTER if child.yields else None
            commit_within = request.expires - COMMIT_MARGIN - self._clock()
            child.write(request, json.dumps({
                "path": request.path, "name": request.message["name"],
                "status": request.message["status"], "commit_within": commit_within}).encode())

    def _let_go(self) -> None:
        child = self._child
        assert child is not None and child.accepting
        child.accepting = False
        try:
            child.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # it has ended: its socket's end says so
        self.deadline = None
        self._note(child.promote())

    def _note(self, problem: Optional[str]) -> None:
        """Log ``problem`` (None: there is none) unless it is the one logged last."""
        if problem is not None and problem != self._noted:
            log.warning("%s", problem)
            self._noted = problem

    def _fork(self) -> WriterHandle:
        child, why = WriterHandle.fork(self._writer)
        self._sel.register(child.sock, selectors.EVENT_READ, self._on_report)
        if why is None:
            self._noted = None  # at SCHED_IDLE again: the next refusal is news
        else:
            self._note(f"users file writer not at SCHED_IDLE: {why}")
        return child

    def _on_report(self, sock: socket.socket) -> None:
        child = self._child
        assert child is not None, "its socket is unregistered as it goes"
        try:
            data = sock.recv(MAX_REPORT_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # ECONNRESET: it ended with a request unread
        if not data:
            self._on_child_gone(child)
            return
        request = child.writing
        try:
            report = json.loads(data)
            if request is None:
                raise ValueError("a report for no request")
            if report == COMMITTING:
                child.committing = True  # the report follows
                return
            self._writer.trusted = signature(report["trusted"])
            if "failure" in report:
                log.error("users file writer %d failed: %s", child.pid, report["failure"])
            reply = reply_for(request.message["id"], report)
        except (ValueError, KeyError, TypeError):
            # The child is ours, but this is no report of its: kill it rather than read
            # on. Its socket's end comes next.
            log.error("users file writer %d sent an unreadable report; killing it", child.pid)
            self._writer.trusted = None
            child.kill()
            if request is None:
                return
            reply = child.cut_short()
        child.writing = None
        self._note(child.demote())
        request.on_done(reply)
        if self._closing and child.accepting:
            self._let_go()
        self._start_next()
        if self._child is child and child.writing is None and child.accepting:
            self.deadline = self._clock() + self._linger

    def _on_child_gone(self, child: WriterHandle) -> None:
        """Its socket closed: the child has ended (or is ending)."""
        self._sel.unregister(child.sock)
        child.sock.close()
        self._child = None
        self.deadline = None
        if not child.reaped:
            self._unreaped.add(child.pid)
            self.reap()
        if child.writing is not None:
            log.error("users file writer %d ended before it said how its write went",
                      child.pid)
            self._writer.trusted = None
            child.writing.on_done(child.cut_short())
        if not self._closing:
            self._start_next()


def _take_expired(queue: collections.deque[WriteRequest], now: float) -> list[WriteRequest]:
    """Take from ``queue`` the requests no worker waits for any more, to be answered at
    once: kept until their turn, uncounted by ``waiting``, they let a worker sending
    sets late, while a long write runs, grow the queue without bound."""
    expired = [request for request in queue if request.expires <= now]
    if expired:
        kept = [request for request in queue if request.expires > now]
        queue.clear()
        queue.extend(kept)
    return expired


def _log_abnormal_exit(pid: int, status: int) -> None:
    if os.WIFSIGNALED(status) or os.waitstatus_to_exitcode(status) != 0:
        log.warning("users file writer %d %s", pid, describe_exit(status))
