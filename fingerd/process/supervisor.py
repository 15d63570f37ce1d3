"""The root parent: holds the listening sockets, keeps one worker alive, handles no client.

It is single-threaded (so forking is safe) and sleeps in one selector that
watches the signal wake-up socket, the workers' request channels, their log
pipes and the pipe of the child writing the users file. Signal handlers do
nothing: Python writes the signal number to the wake-up socket, and the loop
acts on it, so no work ever runs inside a handler.

Nothing in the loop waits on a worker or the disk: a channel is non-blocking
with a bounded queue of replies (a worker that floods it with requests or
stops reading its replies is killed, and the next one started as after any
death), and the users file is written by a child of its own (``filewriter``).

The live worker's life is Supervisor's state machine: ``State`` names the
states, ``NEXT`` the moves. A reload (HUP) is one of them: the new worker
starts beside the old one, which serves until the new one is ready and then
retires, finishing what it holds. The clock, the worker processes
(``forking``) and the reading of the configuration (``reloading``) are
arguments, so that tests drive it in process.
"""

import enum
import json
import logging
import os
import selectors
import signal
import socket
import time

from fingerd import logsetup
from fingerd.limits import STOP_GRACE_SECONDS
from fingerd.process import worker
from fingerd.process.channel import (ParentEnd, WorkerMisbehaved, error_reply, parse_message,
                                     set_problem)
from fingerd.process.filewriter import FileWriter
from fingerd.process.logrelay import LogRelay

log = logging.getLogger("fingerd")

HANDLED_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1,
                   signal.SIGCHLD)

#: Seconds a worker has to become ready: the first one's startup fails after it, a
#: reload is refused after it.
STARTUP_TIMEOUT = 30.0
#: A worker that lived this long is healthy: its death restarts the next at once.
HEALTHY_UPTIME = 10.0
#: Restart delays for workers that keep dying young: first, then doubled up to the cap.
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 30.0
#: Young deaths counted for a worker that exits with EXIT_FATAL: it waits the longest delay.
FATAL_EXIT_FAILURES = 8
#: Seconds beyond the worker's own grace before a stopping worker is killed.
KILL_AFTER = STOP_GRACE_SECONDS + 3.0
#: Seconds a running worker may go without a heartbeat (it sends one a second) before
#: it is taken for stopped or wedged, and killed.
HEARTBEAT_TIMEOUT = 5.0
#: Seconds a write of the users file still going on when the worker has stopped is
#: waited for before its child is killed (the file is then the old one or the new one).
WRITE_STOP_WAIT = STOP_GRACE_SECONDS
#: Set requests a worker may have waiting behind the write in progress. It asks for
#: one at a time, so a worker with more is flooding the parent: it is killed.
MAX_WAITING_SETS = 8


class State(enum.Enum):
    """The live worker's state. The supervisor's ``deadline`` means what the state says."""

    STOPPED = "stopped"      # none yet, or stopped on request: the loop returns 0
    STARTING = "starting"    # forked, not ready; the first one fails at its deadline
    RUNNING = "running"      # said it is ready
    REPLACING = "replacing"  # a reload's worker starts beside the one serving; it is
                             # refused at the deadline
    BACKOFF = "backoff"      # died; the next starts at the deadline
    STOPPING = "stopping"    # sent TERM; killed at the deadline
    FATAL = "fatal"          # the first worker never became ready: the loop returns 1


#: The only moves ``Supervisor._move`` makes.
NEXT = {
    State.STOPPED: {State.STARTING},
    State.STARTING: {State.RUNNING, State.BACKOFF, State.STOPPING, State.FATAL},
    State.RUNNING: {State.REPLACING, State.BACKOFF, State.STOPPING},
    State.REPLACING: {State.RUNNING, State.BACKOFF, State.STOPPING},
    State.BACKOFF: {State.STARTING, State.STOPPING},
    State.STOPPING: {State.STOPPED},
    State.FATAL: set(),
}


class ReloadRefused(Exception):
    """The configuration read again cannot be applied; the message says why, for the log
    and for ``fingerd-ctl reload`` (``FILE:LINE: message`` for an invalid file)."""


def describe_exit(status):
    """``exited with status N`` or ``killed by SIGNAME`` from a wait status."""
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def backoff_delay(failures):
    """Seconds to wait before the next start after ``failures`` young deaths in a row."""
    if failures <= 1:
        return 0.0
    return min(BACKOFF_FIRST * 2 ** (failures - 2), BACKOFF_CAP)


class WorkerHandle:
    """A worker as the parent sees it: its pid and channels, and the configuration it
    was started with (its sets go to that configuration's users file)."""

    def __init__(self, pid, channel, relay, config, started_at):
        self.pid = pid
        self.channel = channel
        self.channel_events = selectors.EVENT_READ
        self.relay = relay
        self.config = config
        self.started_at = started_at
        #: Whether it has said, in a heartbeat, that it answered a request.
        self.served = False
        #: When a retiring worker is killed if still there.
        self.deadline = None
        #: Sockets no worker serves any more, closed once this retiring worker is gone.
        self.leaves = []


class Reload:
    """A reload under way: the worker serving meanwhile (None if it died), the plan
    applied, and the one to go back to if the new worker never becomes ready."""

    def __init__(self, old, previous, plan):
        self.old = old
        self.previous = previous
        self.plan = plan
        #: Why the new worker was killed, if it was.
        self.failure = None


class Supervisor:
    """Runs workers until TERM or INT; ``run`` returns the exit status.

    ``reloader(config, sockets)`` reads the configuration again for a HUP and
    returns a ``reloading.Plan``, or raises ReloadRefused; without one, a
    HUP only has the worker read the users file again. ``on_reload(applied,
    message)`` hears each reload's outcome.
    """

    def __init__(self, config, sockets, workers, log_handler, on_ready=None,
                 clock=time.monotonic, reloader=None, on_reload=None):
        self.config = config
        self.sockets = sockets
        self.workers = workers
        self.log_handler = log_handler
        self.on_ready = on_ready
        self.clock = clock
        self.reloader = reloader
        self.on_reload = on_reload
        self.state = State.STOPPED
        self.deadline = None
        self.restarts = 0
        self.failures = 0
        #: The worker the state is about, or None between workers.
        self.live = None
        #: Workers sent TERM by a reload, finishing what they hold.
        self.retiring = []
        self.reload = None
        self._reload_asked = False
        self._sel = selectors.DefaultSelector()
        self.writes = FileWriter(self._sel, clock=clock)
        # The writer's child is the parent's own, not something a worker left behind.
        workers.spare = self.writes.pids

    @property
    def exit_status(self):
        """None while there is a worker to keep; 0 once stopped, 1 once startup failed."""
        return {State.STOPPED: 0, State.FATAL: 1}.get(self.state)

    def run(self):
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, _record_only)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        self._sel.register(wake_r, selectors.EVENT_READ, self._on_signals)
        self.start_worker()
        try:
            while self.exit_status is None:
                self.step(self._timeout())
            self._finish_writes()
            return self.exit_status
        finally:
            signal.set_wakeup_fd(-1)

    def step(self, timeout):
        """One turn of the loop: what is readable within ``timeout`` s, then the deadlines."""
        for key, _ in self._sel.select(timeout):
            # Skip a key an earlier callback of this turn unregistered: a worker's
            # death, read before its channels' EOF, closes them.
            if self._sel.get_map().get(key.fd) is key:
                key.data(key.fileobj)
        now = self.clock()
        if self.deadline is not None and now >= self.deadline:
            self._on_deadline()
        for old in self.retiring:
            if old.deadline is not None and now >= old.deadline:
                log.warning("worker %d still running %.0f s after TERM; killing it",
                            old.pid, KILL_AFTER)
                self.workers.kill(old.pid, signal.SIGKILL)
                old.deadline = None  # a killed worker ends; wait for it with no deadline
        if self.writes.deadline is not None and now >= self.writes.deadline:
            self.writes.on_deadline()

    def _timeout(self):
        deadlines = [d for d in (self.deadline, self.writes.deadline,
                                 *(old.deadline for old in self.retiring)) if d is not None]
        return max(0.0, min(deadlines) - self.clock()) if deadlines else None

    def _move(self, state, deadline=None):
        """The one place the state changes; ``deadline`` is when it ends by itself."""
        assert state in NEXT[self.state], f"worker {self.state.value} cannot be {state.value}"
        self.state = state
        self.deadline = deadline

    def _on_deadline(self):
        if self.state is State.STARTING:
            self._fail_startup(f"worker not ready after {STARTUP_TIMEOUT:.0f} s")
        elif self.state is State.BACKOFF:
            self.start_worker()
        elif self.state is State.REPLACING:
            self.reload.failure = f"not ready after {STARTUP_TIMEOUT:.0f} s"
            self.workers.kill(self.live.pid, signal.SIGKILL)
            self.deadline = None  # its death ends the reload
        elif self.state is State.STOPPING:
            for pid in self._pids():
                log.warning("worker %d still running %.0f s after TERM; killing it",
                            pid, KILL_AFTER)
                self.workers.kill(pid, signal.SIGKILL)
            self.deadline = None  # a killed worker ends; wait for it with no further deadline
        elif self.state is State.RUNNING:
            log.error("worker %d gave no sign of life for %.0f s (stopped or wedged); "
                      "killing it", self.live.pid, HEARTBEAT_TIMEOUT)
            self.workers.kill(self.live.pid, signal.SIGKILL)
            self.deadline = None

    def _pids(self):
        """Every worker still there: the live one, the one a reload replaces, the retiring."""
        others = [self.reload.old] if self.reload is not None and self.reload.old else []
        return [w.pid for w in ([self.live] if self.live else []) + others + self.retiring]

    def start_worker(self):
        """Fork the next worker; only the first one's startup can fail the daemon.

        A reload's worker must read its users file (or store) itself: one it
        cannot read refuses the reload, where a restarted worker would serve
        the table its predecessor served."""
        replacing = self.state is State.RUNNING
        pid, monitor, log_fd = (self.workers.spawn(self.restarts, strict=True) if replacing
                                else self.workers.spawn(self.restarts))
        started = WorkerHandle(pid, ParentEnd(monitor),
                               LogRelay.for_config(self.config, log_fd, pid), self.config,
                               self.clock())
        self.live = started
        self._sel.register(started.channel, selectors.EVENT_READ,
                           lambda channel: self._on_channel(started))
        self._sel.register(log_fd, selectors.EVENT_READ, lambda fd: self._on_log(started))
        log.info("started worker %d", pid)
        if replacing:
            self._move(State.REPLACING, started.started_at + STARTUP_TIMEOUT)
            return
        first = self.restarts == 0
        self._move(State.STARTING, started.started_at + STARTUP_TIMEOUT if first else None)

    def _on_log(self, sender):
        if not sender.relay.feed():
            self._unwatch(sender.relay.fd)
            sender.relay.fd = None

    def _unwatch(self, channel_end):
        self._sel.unregister(channel_end)
        if isinstance(channel_end, int):
            os.close(channel_end)
        else:
            channel_end.close()

    def _on_channel(self, sender):
        """One request from a worker, and what its socket now takes of the replies
        waiting; one request a turn, so that signals are seen between them."""
        channel = sender.channel
        channel.flush()
        data = channel.receive()
        if data == b"":
            self._unwatch(channel)
            sender.channel = None
            return
        try:
            if data is not None:
                self._on_request(sender, data)
        except WorkerMisbehaved as exc:
            self._kill_misbehaving(sender, str(exc))
            return
        self._watch_replies(sender)

    def _on_request(self, sender, data):
        message = parse_message(data)
        if message is None:
            raise WorkerMisbehaved("sent a malformed request")
        if message["op"] == "ready":
            if sender.channel.said_ready:
                raise WorkerMisbehaved("said it was ready twice")
            sender.channel.said_ready = True
            self._on_worker_ready(sender)
            return
        if message["op"] == "alive":
            if sender is self.live and self.state is State.RUNNING:
                self.deadline = self.clock() + HEARTBEAT_TIMEOUT
            if message["served"] and not sender.served:
                sender.served = True
                log.info("worker %d has answered requests", sender.pid)
            return
        problem = set_problem(message)
        if problem:
            sender.channel.send(error_reply(message["id"], problem))
        elif self.writes.waiting >= MAX_WAITING_SETS:
            raise WorkerMisbehaved(f"sent more than {MAX_WAITING_SETS} set requests "
                                   f"without waiting for their answers")
        else:
            self.writes.submit(sender.config.users_file, message,
                               lambda reply: self._reply(sender, reply), owner=sender.pid)

    def _reply(self, sender, reply):
        """Send a write's reply to the worker that asked, if it is still there; a status
        written is read again by any other worker serving, at once."""
        if json.loads(reply)["ok"]:
            for other in [self.live, self.reload and self.reload.old]:
                if other is not None and other is not sender:
                    self.workers.kill(other.pid, signal.SIGHUP)
        if sender.channel is None:
            return
        try:
            sender.channel.send(reply)
        except WorkerMisbehaved as exc:
            self._kill_misbehaving(sender, str(exc))
            return
        self._watch_replies(sender)

    def _watch_replies(self, sender):
        """Watch the channel for room to write while replies wait, and only then."""
        channel = sender.channel
        if channel is None:
            return  # the worker was killed meanwhile
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if channel.waiting else 0)
        if events != sender.channel_events:
            self._sel.modify(channel, events, self._sel.get_key(channel).data)
            sender.channel_events = events

    def _kill_misbehaving(self, sender, reason):
        """Kill the worker, once: its death is then handled as any other's."""
        log.error("worker %d %s; killing it", sender.pid, reason)
        self.workers.kill(sender.pid, signal.SIGKILL)
        self._unwatch(sender.channel)
        sender.channel = None
        self.writes.discard_queued(sender.pid)

    def _on_worker_ready(self, sender):
        log.info("worker %d ready", sender.pid)
        if sender is not self.live:
            return
        if self.state is State.STARTING:
            self._move(State.RUNNING, self.clock() + HEARTBEAT_TIMEOUT)
            self._after_reload()
        elif self.state is State.REPLACING:
            reload, self.reload = self.reload, None
            self._move(State.RUNNING, self.clock() + HEARTBEAT_TIMEOUT)
            if reload.old is not None:
                self._retire(reload.old, reload.plan.unused)
            else:
                reload.plan.close_unused()
            self._report_reload(True, f"configuration {self.config.path} applied: "
                                      f"worker {sender.pid} serves it")
        if self.on_ready is not None:
            self.on_ready(None)
            self.on_ready = None

    def _retire(self, old, leaves):
        """TERM a worker a reload replaced: it finishes what it holds and exits; the
        sockets ``leaves`` are closed once it is gone."""
        log.info("worker %d retires", old.pid)
        old.leaves = leaves
        old.deadline = self.clock() + KILL_AFTER
        self.retiring.append(old)
        self.workers.kill(old.pid, signal.SIGTERM)

    def _on_signals(self, wake):
        try:
            data = wake.recv(256)
        except BlockingIOError:
            return
        for signum in dict.fromkeys(data):
            getattr(self, f"handle_{signal.Signals(signum).name.lower()}")()

    def handle_sighup(self):
        if self.reloader is None or self.state is State.STOPPING:
            log.info("SIGHUP: the worker reads the users file again")
            if self.live is not None:
                self.workers.kill(self.live.pid, signal.SIGHUP)
            return
        if self.state in (State.STARTING, State.REPLACING) or self.retiring:
            log.info("SIGHUP: a reload follows once the worker started is ready and the "
                     "one it replaces gone")
            self._reload_asked = True
            return
        self._reload()

    def _reload(self):
        """Read the configuration again; apply it, or keep everything and say why."""
        self._reload_asked = False
        log.info("SIGHUP: reading the configuration %s again", self.config.path)
        try:
            plan = self.reloader(self.config, self.sockets)
        except Exception as exc:
            if not isinstance(exc, ReloadRefused):
                log.exception("reading the configuration again failed")
            self._report_reload(False, str(exc) if isinstance(exc, ReloadRefused) else
                                f"reading the configuration again failed: {exc!r}")
            if self.live is not None:
                self.workers.kill(self.live.pid, signal.SIGHUP)
            return
        previous = self._configure(plan)
        if self.state is State.BACKOFF:
            # No worker serves: the next starts now, with the configuration read.
            plan.close_unused()
            self.failures = 0
            self.deadline = self.clock()
            self._report_reload(True, f"configuration {self.config.path} applied: the next "
                                      f"worker starts with it")
            return
        self.reload = Reload(self.live, previous, plan)
        self.start_worker()

    def _configure(self, plan):
        """Serve ``plan``'s configuration and sockets from the next worker on; what
        was served before, as a plan to go back to."""
        self.config, self.sockets = plan.config, plan.sockets
        return self.workers.configure(plan)

    def _report_reload(self, applied, message):
        if applied:
            log.info("%s", message)
        else:
            log.error("%s; reload refused, the running configuration is kept", message)
        if self.on_reload is not None:
            self.on_reload(applied, message)

    def _end_reload(self, dead, status):
        """The reload's new worker died before it was ready: back to what served before."""
        reload, self.reload = self.reload, None
        why = reload.failure or describe_exit(status)
        last_error = dead.relay.last_error if reload.failure is None else None
        self._configure(reload.previous)
        reload.plan.close_fresh()
        self.live = reload.old
        self._report_reload(False, f"the new worker {dead.pid} {why}" + (
            f": {last_error}" if last_error else ""))
        if self.live is not None:
            self._move(State.RUNNING, self.clock() + HEARTBEAT_TIMEOUT)
        else:
            self.restarts += 1
            self._move(State.BACKOFF, self.clock())
        self._after_reload()

    def _after_reload(self):
        """Start the reload asked for while a worker was starting, once none is and
        nothing of an earlier reload is left."""
        if (self._reload_asked and self.state in (State.RUNNING, State.BACKOFF)
                and self.reload is None and not self.retiring):
            self._reload()

    def handle_sigusr1(self):
        logsetup.reopen(self.log_handler)
        log.info("SIGUSR1: log file reopened")

    def handle_sigterm(self):
        if self.state not in (State.STARTING, State.RUNNING, State.REPLACING, State.BACKOFF):
            return
        log.info("stopping")
        for socks in self.sockets.values():
            for sock in socks:
                sock.close()
        if self.reload is not None:
            reload, self.reload = self.reload, None
            if reload.old is not None:
                self._retire(reload.old, [])
            reload.plan.close_unused()
        for old in self.retiring:
            for sock in old.leaves:
                sock.close()
            old.leaves = []
        if self.live is not None:
            self.workers.kill(self.live.pid, signal.SIGTERM)
        self._move(State.STOPPING, self.clock() + KILL_AFTER)
        self._stop_if_done()

    handle_sigint = handle_sigterm

    def _stop_if_done(self):
        if self.state is State.STOPPING and self.live is None and not self.retiring:
            self._move(State.STOPPED)

    def handle_sigchld(self):
        self.writes.reap()
        for pid, status in self.workers.reap():
            if self.live is not None and pid == self.live.pid:
                self._on_worker_exit(status)
            elif any(old.pid == pid for old in self.retiring):
                self._on_retired_exit(pid, status)
            elif self.reload is not None and self.reload.old and self.reload.old.pid == pid:
                old, self.reload.old = self.reload.old, None
                self._drain_worker_channels(old)
                log.error("worker %d %s while a reload's worker was starting", pid,
                          describe_exit(status))
            else:
                self.writes.reaped(pid, status)

    def _on_retired_exit(self, pid, status):
        old = next(old for old in self.retiring if old.pid == pid)
        self.retiring.remove(old)
        self._drain_worker_channels(old)
        log.info("worker %d %s", pid, describe_exit(status))
        for sock in old.leaves:
            sock.close()
        self._stop_if_done()
        self._after_reload()

    def _on_worker_exit(self, status):
        dead, self.live = self.live, None
        uptime = self.clock() - dead.started_at
        self._drain_worker_channels(dead)
        if self.state is State.STOPPING:
            log.info("worker %d %s", dead.pid, describe_exit(status))
            self._stop_if_done()
            return
        log.error("worker %d %s after %.1f s", dead.pid, describe_exit(status), uptime)
        if self.state is State.REPLACING:
            self._end_reload(dead, status)
            return
        if self.state is State.STARTING and self.restarts == 0:
            self._fail_startup(f"worker {describe_exit(status)} during startup" + (
                f": {dead.relay.last_error}" if dead.relay.last_error else ""))
            return
        # A worker that served was healthy, however short its life: a series of
        # kills from outside does not push the next start back.
        healthy = uptime >= HEALTHY_UPTIME or dead.served
        self.failures = 1 if healthy else self.failures + 1
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == worker.EXIT_FATAL:
            self.failures = max(self.failures, FATAL_EXIT_FAILURES)
        self.restarts += 1
        delay = backoff_delay(self.failures)
        if delay:
            log.warning("worker keeps dying; next start in %.1f s", delay)
        self._move(State.BACKOFF, self.clock() + delay)
        self._after_reload()

    def _drain_worker_channels(self, dead):
        """Relay a dead worker's last log lines, forget its channels and the sets it
        asked for that are not yet being written."""
        if dead.relay.fd is not None:
            for _ in range(1000):
                if not dead.relay.feed():
                    break
            self._unwatch(dead.relay.fd)
            dead.relay.fd = None
        if dead.channel is not None:
            self._unwatch(dead.channel)
            dead.channel = None
        self.writes.discard_queued(dead.pid)

    def _finish_writes(self):
        """Once the worker is gone for good: wait for the write in progress, if any, and
        reap its child; kill it if it is not done within WRITE_STOP_WAIT seconds."""
        self.writes.close()
        deadline = self.clock() + WRITE_STOP_WAIT
        while self.writes.busy:
            self.writes.reap()
            if deadline is not None and self.clock() >= deadline:
                log.warning("users file still being written %.0f s after the worker "
                            "stopped; killing the writer", WRITE_STOP_WAIT)
                self.writes.kill()
                deadline = None
            self.step(None if deadline is None else max(0.0, deadline - self.clock()))

    def _fail_startup(self, reason):
        log.error("startup failed: %s", reason)
        if self.live is not None:
            self.workers.kill(self.live.pid, signal.SIGKILL)
            self.workers.wait(self.live.pid)
            self.live = None
        self._move(State.FATAL)
        if self.on_ready is not None:
            self.on_ready(reason)


def _record_only(signum, frame):
    """Python writes ``signum`` to the wake-up socket; the loop does the work."""
