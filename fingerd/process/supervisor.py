"""The root parent: holds the listening sockets, keeps one worker alive, handles no client.

It is single-threaded (so forking is safe) and sleeps in one selector that
watches the signal wake-up socket, the worker's request channel, the
worker's log pipe and the pipe of the child writing the users file. Signal
handlers do nothing: Python writes the signal number to the wake-up socket,
and the loop acts on it, so no work ever runs inside a handler.

Nothing in the loop waits on the worker or the disk: the channel is
non-blocking with a bounded queue of replies (a worker that floods it with
requests or stops reading its replies is killed, and the next one started
as after any death), and the users file is written by a child of its own
(``filewriter``).

The worker's life is Supervisor's state machine: ``State`` names the states,
``NEXT`` the moves. The clock and the worker processes (``forking``) are
arguments, so that tests drive it in process.
"""

import enum
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

#: Seconds the first worker has to become ready before startup fails.
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
    """The worker's state. The supervisor's ``deadline`` means what the state says."""

    STOPPED = "stopped"      # none yet, or stopped on request: the loop returns 0
    STARTING = "starting"    # forked, not ready; the first one fails at its deadline
    RUNNING = "running"      # said it is ready
    BACKOFF = "backoff"      # died; the next starts at the deadline
    STOPPING = "stopping"    # sent TERM; killed at the deadline
    FATAL = "fatal"          # the first worker never became ready: the loop returns 1


#: The only moves ``Supervisor._move`` makes.
NEXT = {
    State.STOPPED: {State.STARTING},
    State.STARTING: {State.RUNNING, State.BACKOFF, State.STOPPING, State.FATAL},
    State.RUNNING: {State.BACKOFF, State.STOPPING},
    State.BACKOFF: {State.STARTING, State.STOPPED},
    State.STOPPING: {State.STOPPED},
    State.FATAL: set(),
}


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


class Supervisor:
    """Runs workers until TERM or INT; ``run`` returns the exit status."""

    def __init__(self, config, sockets, workers, log_handler, on_ready=None,
                 clock=time.monotonic):
        self.config = config
        self.sockets = sockets
        self.workers = workers
        self.log_handler = log_handler
        self.on_ready = on_ready
        self.clock = clock
        self.state = State.STOPPED
        self.deadline = None
        self.restarts = 0
        self.failures = 0
        #: Whether the live worker has said, in a heartbeat, that it answered a request.
        self.served = False
        self.pid = None
        self.started_at = 0.0
        self._sel = selectors.DefaultSelector()
        self._channel = None
        self._channel_events = 0
        self._relay = None
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
        if self.deadline is not None and self.clock() >= self.deadline:
            self._on_deadline()
        if self.writes.deadline is not None and self.clock() >= self.writes.deadline:
            self.writes.on_deadline()

    def _timeout(self):
        deadlines = [d for d in (self.deadline, self.writes.deadline) if d is not None]
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
        elif self.state is State.STOPPING:
            log.warning("worker %d still running %.0f s after TERM; killing it",
                        self.pid, KILL_AFTER)
            self.workers.kill(self.pid, signal.SIGKILL)
            self.deadline = None  # a killed worker ends; wait for it with no further deadline
        elif self.state is State.RUNNING:
            log.error("worker %d gave no sign of life for %.0f s (stopped or wedged); "
                      "killing it", self.pid, HEARTBEAT_TIMEOUT)
            self.workers.kill(self.pid, signal.SIGKILL)
            self.deadline = None

    def start_worker(self):
        """Fork the next worker; only the first one's startup can fail the daemon."""
        pid, monitor, log_fd = self.workers.spawn(self.restarts)
        self.pid = pid
        self.started_at = self.clock()
        self.served = False
        self._channel = ParentEnd(monitor)
        self._channel_events = selectors.EVENT_READ
        self._relay = LogRelay.for_config(self.config, log_fd, pid)
        self._sel.register(self._channel, selectors.EVENT_READ, self._on_channel)
        self._sel.register(log_fd, selectors.EVENT_READ, self._on_log)
        log.info("started worker %d", pid)
        first = self.restarts == 0
        self._move(State.STARTING, self.started_at + STARTUP_TIMEOUT if first else None)

    def _on_log(self, fd):
        if not self._relay.feed():
            self._unwatch(fd)
            self._relay.fd = None

    def _unwatch(self, channel_end):
        self._sel.unregister(channel_end)
        if isinstance(channel_end, int):
            os.close(channel_end)
        else:
            channel_end.close()

    def _on_channel(self, channel):
        """One request from the worker, and what the worker's socket now takes of the
        replies waiting; one request a turn, so that signals are seen between them."""
        channel.flush()
        data = channel.receive()
        if data == b"":
            self._unwatch(channel)
            self._channel = None
            return
        try:
            if data is not None:
                self._on_request(channel, data)
        except WorkerMisbehaved as exc:
            self._kill_misbehaving(str(exc))
            return
        self._watch_replies(channel)

    def _on_request(self, channel, data):
        message = parse_message(data)
        if message is None:
            raise WorkerMisbehaved("sent a malformed request")
        if message["op"] == "ready":
            if channel.said_ready:
                raise WorkerMisbehaved("said it was ready twice")
            channel.said_ready = True
            self._on_worker_ready()
            return
        if message["op"] == "alive":
            if self.state is State.RUNNING:
                self.deadline = self.clock() + HEARTBEAT_TIMEOUT
                if message["served"] and not self.served:
                    self.served = True
                    log.info("worker %d has answered requests", self.pid)
            return
        problem = set_problem(message)
        if problem:
            channel.send(error_reply(message["id"], problem))
        elif self.writes.waiting >= MAX_WAITING_SETS:
            raise WorkerMisbehaved(f"sent more than {MAX_WAITING_SETS} set requests "
                                   f"without waiting for their answers")
        else:
            self.writes.submit(self.config.users_file, message,
                               lambda reply: self._reply(channel, reply))

    def _reply(self, channel, reply):
        """Send a write's reply to the worker that asked, if it is still there."""
        if channel is not self._channel:
            return
        try:
            channel.send(reply)
        except WorkerMisbehaved as exc:
            self._kill_misbehaving(str(exc))
            return
        self._watch_replies(channel)

    def _watch_replies(self, channel):
        """Watch the channel for room to write while replies wait, and only then."""
        if channel is not self._channel:
            return  # the worker was killed meanwhile
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if channel.waiting else 0)
        if events != self._channel_events:
            self._sel.modify(channel, events, self._on_channel)
            self._channel_events = events

    def _kill_misbehaving(self, reason):
        """Kill the worker, once: its death is then handled as any other's."""
        log.error("worker %d %s; killing it", self.pid, reason)
        self.workers.kill(self.pid, signal.SIGKILL)
        self._unwatch(self._channel)
        self._channel = None
        self.writes.discard_queued()

    def _on_worker_ready(self):
        log.info("worker %d ready", self.pid)
        if self.state is State.STARTING:
            self._move(State.RUNNING, self.clock() + HEARTBEAT_TIMEOUT)
        if self.on_ready is not None:
            self.on_ready(None)
            self.on_ready = None

    def _on_signals(self, wake):
        try:
            data = wake.recv(256)
        except BlockingIOError:
            return
        for signum in dict.fromkeys(data):
            getattr(self, f"handle_{signal.Signals(signum).name.lower()}")()

    def handle_sighup(self):
        log.info("SIGHUP: the worker reads the users file again")
        if self.pid is not None:
            self.workers.kill(self.pid, signal.SIGHUP)

    def handle_sigusr1(self):
        logsetup.reopen(self.log_handler)
        log.info("SIGUSR1: log file reopened")

    def handle_sigterm(self):
        if self.state not in (State.STARTING, State.RUNNING, State.BACKOFF):
            return
        log.info("stopping")
        for socks in self.sockets.values():
            for sock in socks:
                sock.close()
        if self.pid is None:
            self._move(State.STOPPED)
            return
        self.workers.kill(self.pid, signal.SIGTERM)
        self._move(State.STOPPING, self.clock() + KILL_AFTER)

    handle_sigint = handle_sigterm

    def handle_sigchld(self):
        self.writes.reap()
        for pid, status in self.workers.reap():
            if pid == self.pid:
                self._on_worker_exit(status)
            else:
                self.writes.reaped(pid, status)

    def _on_worker_exit(self, status):
        uptime = self.clock() - self.started_at
        pid, self.pid = self.pid, None
        last_error = self._drain_worker_channels()
        if self.state is State.STOPPING:
            log.info("worker %d %s", pid, describe_exit(status))
            self._move(State.STOPPED)
            return
        log.error("worker %d %s after %.1f s", pid, describe_exit(status), uptime)
        if self.state is State.STARTING and self.restarts == 0:
            self._fail_startup(f"worker {describe_exit(status)} during startup" + (
                f": {last_error}" if last_error else ""))
            return
        # A worker that served was healthy, however short its life: a series of
        # kills from outside does not push the next start back.
        healthy = uptime >= HEALTHY_UPTIME or self.served
        self.failures = 1 if healthy else self.failures + 1
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == worker.EXIT_FATAL:
            self.failures = max(self.failures, FATAL_EXIT_FAILURES)
        self.restarts += 1
        delay = backoff_delay(self.failures)
        if delay:
            log.warning("worker keeps dying; next start in %.1f s", delay)
        self._move(State.BACKOFF, self.clock() + delay)

    def _drain_worker_channels(self):
        """Relay the dead worker's last log lines, forget its channels and the sets it
        asked for that are not yet being written; its last error."""
        relay, channel, self._relay, self._channel = self._relay, self._channel, None, None
        if relay.fd is not None:
            for _ in range(1000):
                if not relay.feed():
                    break
            self._unwatch(relay.fd)
        if channel is not None:
            self._unwatch(channel)
        self.writes.discard_queued()
        return relay.last_error

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
        if self.pid is not None:
            self.workers.kill(self.pid, signal.SIGKILL)
            self.workers.wait(self.pid)
            self.pid = None
        self._move(State.FATAL)
        if self.on_ready is not None:
            self.on_ready(reason)


def _record_only(signum, frame):
    """Python writes ``signum`` to the wake-up socket; the loop does the work."""
