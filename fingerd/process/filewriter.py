"""The root parent's writes of the users file, made by a short-lived child.

A set rewrites the whole file (a copy of it with one line changed, written
beside it, fsynced, renamed over it, the directory fsynced): for a file of a
million lines, a tenth of a second of disk and copying. The parent must go
on answering signals and reaping children meanwhile, and it is
single-threaded on purpose (it forks workers, and a thread could hold a
lock across a fork), so the writes are made by a child forked for them:
root, as the parent, doing nothing but writes, one at a time, each asked
for and reported on a pipe, the reports' pipe watched by the parent's
selector.

The child serves a run of sets: it stays LINGER_SECONDS after its last
write, in case another comes (a fork and an exit cost a few milliseconds,
as much as a whole set on a small file), and the parent then closes its
pipe, which ends it. So it lives only while sets come, and the parent has
it reaped before it exits itself.

Writes are made in the order they were asked for. Requests wait in a
queue; the worker asks for one set at a time, so the queue holds more than
one only for a worker that does not behave (``waiting`` tells the parent,
which bounds it). A request that waited longer than the worker waits for
its answer (a write was slow) is answered with an error and not carried
out, since the setter's client was already told the set failed; so is a
write that could not be renamed into place COMMIT_MARGIN before then.

The child runs behind the processes that serve (``priority``): at
``SCHED_IDLE``, so that it takes only CPU time no one else wants. A write
not done within PROMOTE_AFTER seconds (the machine is busy, or the whole
file is being validated) is finished at WRITER_NICENESS instead, so that no
set waits for idle time that never comes; so is a child let go, which has
only to end.

The child knows the version of the file it last wrote (``StatusWriter``),
and says so in each report: the parent hands it to the next child, so a set
reads and validates the whole file only when someone else has changed it.
"""

import collections
import json
import logging
import os
import selectors
import signal
import time

from fingerd.process import priority
from fingerd.process.channel import REPLY_TIMEOUT, error_reply, set_reply
from fingerd.users.editing import StatusWriter, StoreError

log = logging.getLogger("fingerd")

#: Signals the parent handles; the child ignores them, so that a signal meant for the
#: parent (or its process group, at Ctrl-C) never stops a write halfway.
PARENT_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

#: Seconds the writing child waits for another set after its last one.
LINGER_SECONDS = 1.0

#: Most bytes of reports waiting to be read; a report is a few hundred.
MAX_REPORT_BYTES = 4096

#: Seconds before the worker stops waiting for a set's answer by which the file must be
#: renamed, or the write is called off: a set the setter's client is told failed must
#: change nothing, and the answer needs a moment to reach the worker.
COMMIT_MARGIN = 1.0

#: The error of a set not written before the worker stops waiting for it.
NOT_IN_TIME = "the users file was not written in time"

#: Niceness a writing child adds to the parent's: what it competes at once promoted,
#: or always where it cannot run at SCHED_IDLE.
WRITER_NICENESS = 10

#: Seconds a write may take at SCHED_IDLE before its child is promoted: a set on a
#: million lines that the child wrote itself takes a fifth of that, on a core shared
#: with the worker; one that validates the whole file takes seconds.
PROMOTE_AFTER = 1.0


class _Request:
    __slots__ = ("path", "message", "on_done", "received", "owner")

    def __init__(self, path, message, on_done, received, owner):
        self.path = path
        self.message = message
        self.on_done = on_done
        self.received = received
        self.owner = owner


class _Child:
    """The writing child as the parent sees it: its pid, the parent's ends of its two
    pipes (``requests`` None once closed, which ends it), the request it is writing,
    whether it runs at SCHED_IDLE (``yields``) and is promoted for now."""

    __slots__ = ("pid", "requests", "reports", "report", "writing", "reaped", "yields",
                 "promoted")

    def __init__(self, pid, requests, reports, yields):
        self.pid = pid
        self.requests = requests
        self.reports = reports
        self.report = b""
        self.writing = None
        self.reaped = False
        self.yields = yields
        self.promoted = False


class FileWriter:
    """Carries out set requests on the users file, one at a time, in a child.

    ``selector`` is the parent's: the child's reports are registered on it
    with a callback, as the parent's own channels are. Every request's
    ``on_done`` is called once with its reply, from that callback (or from
    ``submit``, for a request that expired while waiting), unless
    ``discard_queued`` or ``close`` drops it first. ``deadline`` is when
    the parent's loop must call ``on_deadline`` (to promote a late write, or
    let an idle child go).
    """

    def __init__(self, selector, clock=time.monotonic, expire_after=REPLY_TIMEOUT,
                 linger=LINGER_SECONDS):
        self._sel = selector
        self._clock = clock
        self._expire_after = expire_after
        self._linger = linger
        self._writer = StatusWriter()
        self._queue = collections.deque()
        self._child = None
        self._unreaped = set()
        self._closing = False
        self._noted = None
        #: When a write is late or the idle child is let go; None while neither can be.
        self.deadline = None

    @property
    def waiting(self):
        """Requests queued that the worker still waits for, the one being written aside."""
        horizon = self._clock() - self._expire_after
        return sum(1 for request in self._queue if request.received > horizon)

    @property
    def writing(self):
        """True while the child writes (or is about to write) a set."""
        return self._child is not None and self._child.writing is not None

    def pids(self):
        """The writing child's pid, and those of children ended and not yet reaped."""
        return ({self._child.pid} if self._child is not None else set()) | self._unreaped

    @property
    def busy(self):
        """True while a child lives, or has ended and is not yet reaped."""
        return self._child is not None or bool(self._unreaped)

    def submit(self, path, message, on_done, owner=None):
        """Queue the set request ``message`` (its name and status valid) on the users file
        at ``path``, for the worker ``owner``; ``on_done(reply)`` once it is written or
        has failed."""
        self._queue.append(_Request(path, message, on_done, self._clock(), owner))
        self._start_next()

    def discard_queued(self, owner=None):
        """Forget the requests of ``owner`` (every one's when None) not yet started:
        their worker is gone, they are never written."""
        self._queue = collections.deque(
            request for request in self._queue if owner is not None and request.owner != owner)

    def close(self):
        """At stop: drop the queue, and let the child go once its write is done."""
        self._closing = True
        self.discard_queued()
        if self._child is not None and self._child.writing is None:
            self._let_go()

    def on_deadline(self):
        """The write in progress is late: promote its child. Or the idle child has
        lingered long enough: let it go."""
        self.deadline = None
        if self._child is None:
            return
        if self._child.writing is not None:
            self._promote(self._child)
        else:
            self._let_go()

    def kill(self):
        """SIGKILL the child, if any: the rename is atomic, so the file is the old or the
        new one, whole; only the temporary file may be left."""
        if self._child is not None and not self._child.reaped:
            try:
                os.kill(self._child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def reap(self):
        """Reap the children that have ended (SIGCHLD); one whose pipe has closed may
        still be exiting."""
        for pid in list(self._unreaped):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                self._unreaped.discard(pid)
                _log_abnormal_exit(pid, status)

    def reaped(self, pid, status):
        """Told that someone else reaped ``pid``: True when it was one of ours."""
        if pid in self._unreaped:
            self._unreaped.discard(pid)
        elif self._child is not None and self._child.pid == pid:
            self._child.reaped = True
        else:
            return False
        _log_abnormal_exit(pid, status)
        return True

    def _start_next(self):
        while self._queue and (self._child is None or self._child.writing is None):
            request = self._queue.popleft()
            if request.received <= self._clock() - self._expire_after:
                request.on_done(error_reply(request.message["id"], NOT_IN_TIME))
                continue
            if self._child is None or self._child.requests is None:
                if self._child is not None:
                    self._queue.appendleft(request)  # the one let go ends first
                    return
                self._child = self._fork()
            self._child.writing = request
            self.deadline = self._clock() + PROMOTE_AFTER if self._child.yields else None
            commit_within = request.received + self._expire_after - COMMIT_MARGIN - \
                self._clock()
            line = json.dumps({"path": request.path, "name": request.message["name"],
                               "status": request.message["status"],
                               "commit_within": commit_within}).encode() + b"\n"
            try:
                # One short line into an empty pipe: it never blocks, and is written whole.
                os.write(self._child.requests, line)
            except OSError:
                self.kill()  # its report never comes: the pipe's end says so

    def _let_go(self):
        os.close(self._child.requests)
        self._child.requests = None
        self.deadline = None
        self._promote(self._child)

    def _promote(self, child):
        if child.yields and not child.promoted:
            child.promoted = True
            self._change_priority(priority.promote, child.pid)

    def _demote(self, child):
        if child.promoted:
            child.promoted = False
            self._change_priority(priority.demote, child.pid)

    def _change_priority(self, change, pid):
        try:
            change(pid)
        except ProcessLookupError:
            pass  # it has ended: its reports' pipe says so
        except OSError as exc:
            self._note(f"cannot change the users file writer's scheduling policy: "
                       f"{exc.strerror}")

    def _note(self, problem):
        """Log ``problem`` unless it is the one logged last."""
        if problem is not None and problem != self._noted:
            log.warning("%s", problem)
        self._noted = problem

    def _fork(self):
        requests_r, requests_w = os.pipe()
        reports_r, reports_w = os.pipe()
        # Signals stay pending across the fork, so that none reaches the child before
        # it ignores them (the parent's handler would wake the parent's loop).
        signal.pthread_sigmask(signal.SIG_BLOCK, PARENT_SIGNALS + (signal.SIGCHLD,))
        try:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = self._serve_in_child(requests_r, reports_w)
                finally:
                    os._exit(code)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, PARENT_SIGNALS + (signal.SIGCHLD,))
        os.close(requests_r)
        os.close(reports_w)
        os.set_blocking(requests_w, False)
        os.set_blocking(reports_r, False)
        self._sel.register(reports_r, selectors.EVENT_READ, self._on_reports)
        why = priority.run_behind(pid, WRITER_NICENESS)
        self._note(why and f"users file writer not at SCHED_IDLE: {why}")
        return _Child(pid, requests_w, reports_r, yields=why is None)

    def _serve_in_child(self, requests, reports):
        """The child's life: a write for each request line until the pipe closes; its exit
        status. No logging: the parent logs what the reports say."""
        signal.set_wakeup_fd(-1)
        for signum in PARENT_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, PARENT_SIGNALS + (signal.SIGCHLD,))
        # Nothing the parent holds (listening sockets, the worker's channel) stays open here.
        low, high = sorted((requests, reports))
        os.closerange(3, low)
        os.closerange(low + 1, high)
        os.closerange(high + 1, max(os.sysconf("SC_OPEN_MAX"), high + 2))
        pending = b""
        while True:
            chunk = os.read(requests, 65536)
            if not chunk:
                return 0
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                data = json.dumps(self._write_one(json.loads(line))).encode() + b"\n"
                while data:
                    data = data[os.write(reports, data):]

    def _write_one(self, request):
        commit_by = time.monotonic() + request["commit_within"]

        def in_time():
            if time.monotonic() > commit_by:
                raise StoreError(NOT_IN_TIME)

        try:
            old, new = self._writer(request["path"], request["name"], request["status"],
                                    before_rename=in_time)
            report = {"ok": True, "old": old, "new": new}
        except StoreError as exc:
            report = {"ok": False, "error": str(exc)}
        except Exception as exc:
            report = {"ok": False, "error": "cannot write users file", "failure": repr(exc)}
        report["trusted"] = self._writer.trusted
        return report

    def _on_reports(self, fd):
        child = self._child
        try:
            chunk = os.read(fd, MAX_REPORT_BYTES)
        except BlockingIOError:
            return
        if not chunk:
            self._on_child_gone(child)
            return
        child.report += chunk
        while b"\n" in child.report:
            line, child.report = child.report.split(b"\n", 1)
            self._on_report(child, line)
        if len(child.report) > MAX_REPORT_BYTES:
            # The child is ours, but a report this long is not one: kill it rather than
            # read on. The pipe's end comes next.
            child.report = b""
            self.kill()

    def _on_report(self, child, line):
        request, child.writing = child.writing, None
        try:
            report = json.loads(line)
            if request is None:
                raise ValueError("a report for no request")
            self._writer.trusted = _signature(report["trusted"])
            if "failure" in report:
                log.error("users file writer %d failed: %s", child.pid, report["failure"])
            reply = (set_reply(request.message["id"], report["old"], report["new"])
                     if report["ok"] else
                     error_reply(request.message["id"], str(report["error"])))
        except (ValueError, KeyError, TypeError):
            log.error("users file writer %d sent an unreadable report; killing it", child.pid)
            self._writer.trusted = None
            self.kill()
            if request is None:
                return
            reply = error_reply(request.message["id"],
                                "cannot write users file: the write was cut short")
        self._demote(child)
        request.on_done(reply)
        if self._closing and child.requests is not None:
            self._let_go()
        self._start_next()
        if self._child is child and child.writing is None and child.requests is not None:
            self.deadline = self._clock() + self._linger

    def _on_child_gone(self, child):
        """Its reports' pipe closed: the child has ended (or is ending)."""
        self._sel.unregister(child.reports)
        os.close(child.reports)
        if child.requests is not None:
            os.close(child.requests)
        self._child = None
        self.deadline = None
        if not child.reaped:
            self._unreaped.add(child.pid)
            self.reap()
        if child.writing is not None:
            log.error("users file writer %d ended before it said how its write went",
                      child.pid)
            self._writer.trusted = None
            child.writing.on_done(error_reply(child.writing.message["id"],
                                              "cannot write users file: the write was cut "
                                              "short"))
        if not self._closing:
            self._start_next()


def _signature(value):
    return tuple(value) if value is not None else None


def _log_abnormal_exit(pid, status):
    if os.WIFSIGNALED(status):
        log.warning("users file writer %d killed by %s", pid,
                    signal.Signals(os.WTERMSIG(status)).name)
    elif os.waitstatus_to_exitcode(status) != 0:
        log.warning("users file writer %d exited with status %d", pid,
                    os.waitstatus_to_exitcode(status))
