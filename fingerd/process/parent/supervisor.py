"""The root parent: holds the listening sockets, keeps one worker alive, handles no client.

It is single-threaded (so forking is safe) and sleeps in one selector that
watches the signal wake-up socket, the workers' request channels, their log
pipes and the socket of the child writing the users file. Signal handlers do
nothing: Python writes the signal number to the wake-up socket (``signals_to``),
and the loop acts on it, so no work ever runs inside a handler (gunicorn's
arbiter learned that logging in one deadlocks).

Nothing in the loop waits on a worker, the disk or a log's reader: a channel
is non-blocking with a bounded queue of replies (a worker that floods it with
requests or stops reading its replies is killed, and the next one started as
after any death), the users file is written by a child of its own
(``filewriter``), and standard error and syslog are written only as far as
they take lines at once (``loghandlers``; what waits is written a turn).

The daemon's life is Supervisor's state machine (``states.State``, with the
wait after a death in ``states.Backoff``), each worker's its handle's
(``worker_handle``, ``states.Phase``), each with its deadline. The answers
to the workers' requests are the ``monitor``'s, a reload's life (a new
worker beside the old one, which serves until the new one is ready and
then retires) is ``reloads``'. The clock, the worker
processes (``forking``) and the reading of the configuration
(``reloading``) are arguments, so that tests drive it in process.
"""

import contextlib
import logging
import selectors
import signal
import socket
import time
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Optional

from fingerd import loghandlers
from fingerd.limits import STARTUP_TIMEOUT, STOP_GRACE_SECONDS
from fingerd.process.channel import ParentEnd
from fingerd.process.exits_and_signals import HANDLED_SIGNALS, describe_exit
from fingerd.process.parent.filewriter import FileWriter
from fingerd.process.parent.logrelay import LogRelay
from fingerd.process.parent.monitor import HEARTBEAT_TIMEOUT, Monitor
from fingerd.process.parent.notify import STOPPING, reloading
from fingerd.process.parent.reloads import Reloads
from fingerd.process.parent.states import NEXT_STATE, Backoff, Phase, State
from fingerd.process.parent.worker_handle import WorkerHandle

if TYPE_CHECKING:
    from fingerd.process.parent.reloading import Plan

log = logging.getLogger("fingerd")

#: Seconds beyond the worker's own grace before a stopping worker is killed.
KILL_AFTER = STOP_GRACE_SECONDS + 3.0
#: Seconds a write of the users file still going on when the worker has stopped is
#: waited for before its child is killed.
WRITE_STOP_WAIT = STOP_GRACE_SECONDS


class Supervisor:
    """Runs workers until TERM or INT; ``run`` returns the exit status.

    ``reloader(config, sockets)`` reads the configuration again for a HUP and
    returns a ``reloading.Plan``, or raises ReloadRefused; without one, a
    HUP only has the worker read the users file again. ``on_reload(applied,
    message, asked)`` hears each outcome (``Reloads``); ``notify`` says a reload or stop begins.
    """

    def __init__(self, config: Any, sockets: dict[str, list[socket.socket]], workers: Any,
                 log_handler: logging.Handler,
                 on_ready: Optional[Callable[[Optional[str]], None]] = None,
                 clock: Callable[[], float] = time.monotonic,
                 reloader: Optional[Callable[[Any, dict[str, list[socket.socket]]], "Plan"]] = None,
                 on_reload: Optional[Callable[[bool, str, float], None]] = None,
                 notify: Callable[[str], None] = lambda message: None) -> None:
        self.config, self.sockets = config, sockets
        self.workers = workers
        self.log_handler = log_handler
        self.on_ready = on_ready
        self.clock = clock
        self.reloader, self.on_reload, self.notify = reloader, on_reload, notify
        self.state = State.STOPPED
        #: When the next worker starts, in BACKOFF; None in every other state.
        self.deadline: Optional[float] = None
        self.restarts = 0
        self.backoff = Backoff()
        #: The worker the state is about, or None between workers.
        self.live: Optional[WorkerHandle] = None
        self.reloads = Reloads(self)
        self._sel = selectors.DefaultSelector()
        self.writes = FileWriter(self._sel, clock=clock)
        self.monitor = Monitor(self._sel, self.writes, clock, workers.kill,
                               self._on_worker_ready, self.reloads.on_closed)
        # The writer's child is the parent's own, not something a worker left behind.
        workers.spare = self.writes.pids

    @property
    def exit_status(self) -> Optional[int]:
        """None while there is a worker to keep; 0 once stopped, 1 once startup failed."""
        return {State.STOPPED: 0, State.FATAL: 1}.get(self.state)

    def run(self) -> int:
        with signals_to(self._sel, self._on_signal):
            self.start_worker()
            while self.exit_status is None:
                self.step(self._timeout())
            self.writes.finish(WRITE_STOP_WAIT, self.step)
            return self.exit_status

    def step(self, timeout: Optional[float]) -> None:
        """One turn of the loop: what is readable within ``timeout`` s, then the deadlines."""
        for key, _ in self._sel.select(timeout):
            # Skip a key an earlier callback of this turn unregistered: a worker's
            # death, read before its channels' EOF, closes them.
            if self._sel.get_map().get(key.fd) is key:
                key.data(key.fileobj)
        now = self.clock()
        if self.deadline is not None and now >= self.deadline:
            self.start_worker()  # only BACKOFF has a deadline of its own
        for handle in self._handles():
            if handle.overdue(now):
                self._on_worker_deadline(handle)
        if self.writes.deadline is not None and now >= self.writes.deadline:
            self.writes.on_deadline()
        loghandlers.drain(self.log_handler)

    def _timeout(self) -> Optional[float]:
        deadlines = [d for d in (self.deadline, self.writes.deadline,
                                 *(handle.deadline for handle in self._handles()))
                     if d is not None]
        return max(0.0, min(deadlines) - self.clock()) if deadlines else None

    def _handles(self) -> list[WorkerHandle]:
        """Every worker still there: the live one, the one a reload replaces, the retiring."""
        return [h for h in (self.live, self.reloads.old) if h is not None] + \
            self.reloads.retiring

    def _move(self, state: State, deadline: Optional[float] = None) -> None:
        """The one place the state changes; ``deadline`` is when it ends by itself."""
        assert state in NEXT_STATE[self.state], \
            f"worker {self.state.value} cannot be {state.value}"
        self.state = state
        self.deadline = deadline

    def _on_worker_deadline(self, handle: WorkerHandle) -> None:
        """A worker's phase ended by itself: it is given up, or killed."""
        if handle.phase is Phase.STARTING and self.state is State.STARTING:
            if self.restarts == 0:
                self._fail_startup(f"worker not ready after {STARTUP_TIMEOUT:.0f} s")
                return
            log.error("worker %d not ready after %.0f s (stopped or wedged); killing it",
                      handle.pid, STARTUP_TIMEOUT)  # as a silent one: its death is a death
        elif handle.phase is Phase.STARTING:
            self.reloads.give_up()  # its death ends the reload
        elif handle.phase is Phase.RUNNING:
            log.error("worker %d gave no sign of life for %.0f s (stopped or wedged); "
                      "killing it", handle.pid, HEARTBEAT_TIMEOUT)
        else:
            log.warning("worker %d still running %.0f s after TERM; killing it",
                        handle.pid, KILL_AFTER)
        self.workers.kill(handle.pid, signal.SIGKILL)
        handle.move(Phase.KILLED)

    def start_worker(self) -> None:
        """Fork the next worker; only the first one's startup can fail the daemon.

        A reload's worker tells the parent what was wrong with its users file,
        for the reload's outcome; any other says it in the log."""
        replacing = self.state is State.RUNNING
        pid, channel, log_fd = (self.workers.spawn(self.restarts, reload=True) if replacing
                                else self.workers.spawn(self.restarts))
        now = self.clock()
        old, started = self.live, WorkerHandle(
            pid, ParentEnd(channel), LogRelay.for_config(self.config, log_fd, pid),
            self.config, now, now + STARTUP_TIMEOUT)
        self.live = started
        self.monitor.watch(started)
        log.info("started worker %d", pid)
        if not replacing:
            self._move(State.STARTING)
            return
        self._move(State.REPLACING)
        if old is not None and old.phase is Phase.RUNNING:
            old.move(Phase.REPLACED)

    def start_now(self) -> None:
        """In BACKOFF: the next worker starts at once, as after a first death."""
        self.backoff.reset()
        self._move(State.BACKOFF, self.clock())

    def configure(self, plan: "Plan") -> "Plan":
        """Serve ``plan``'s configuration and sockets from the next worker on; the plan before."""
        self.config, self.sockets = plan.config, plan.sockets
        return self.workers.configure(plan)  # type: ignore[no-any-return]

    def _on_worker_ready(self, sender: WorkerHandle) -> None:
        log.info("worker %d ready", sender.pid)
        if sender is not self.live:
            return
        if self.state in (State.STARTING, State.REPLACING):
            replacing = self.state is State.REPLACING
            self._move(State.RUNNING)
            sender.move(Phase.RUNNING, self.clock() + HEARTBEAT_TIMEOUT)
            self.workers.serving(sender.pid)  # its successor takes its table
            if replacing:
                self.reloads.on_ready(sender)
            else:
                self.reloads.resume()
        if self.on_ready is not None:
            self.on_ready(None)
            self.on_ready = None

    def stop(self, handle: WorkerHandle) -> None:
        """TERM a worker, killed if it is still there KILL_AFTER seconds later."""
        self.workers.kill(handle.pid, signal.SIGTERM)
        if handle.phase is not Phase.KILLED:
            handle.move(Phase.STOPPING, self.clock() + KILL_AFTER)

    def _on_signal(self, signum: int) -> None:
        getattr(self, f"handle_{signal.Signals(signum).name.lower()}")()

    def handle_sighup(self) -> None:
        self.notify(reloading())
        self.reloads.hup()

    def handle_sigusr1(self) -> None:
        log.info("SIGUSR1: %s", "log file reopened" if loghandlers.reopen(self.log_handler)
                 else "no log_file to reopen")

    def handle_sigterm(self) -> None:
        if self.state not in (State.STARTING, State.RUNNING, State.REPLACING, State.BACKOFF):
            return
        log.info("stopping")
        self.notify(STOPPING)
        for socks in self.sockets.values():
            for sock in socks:
                sock.close()
        self.reloads.stop()
        if self.live is not None:
            self.stop(self.live)
        self._move(State.STOPPING)
        self._stop_if_done()

    handle_sigint = handle_sigterm

    def _stop_if_done(self) -> None:
        if self.state is State.STOPPING and self.live is None and not self.reloads.retiring:
            self._move(State.STOPPED)

    def handle_sigchld(self) -> None:
        self.writes.reap()
        for pid, status in self.workers.reap():
            if self.live is not None and pid == self.live.pid:
                self._on_worker_exit(status)
            elif self.reloads.on_retired_exit(pid, status):
                self._stop_if_done()
                self.reloads.resume()
            elif self.reloads.old is not None and self.reloads.old.pid == pid:
                self.monitor.forget(self.reloads.on_old_exit())
                log.error("worker %d %s while a reload's worker was starting", pid,
                          describe_exit(status))
            else:
                self.writes.reaped(pid, status)

    def _on_worker_exit(self, status: int) -> None:
        assert self.live is not None
        dead, uptime = self.live, self.clock() - self.live.started_at
        self.monitor.forget(dead)  # while live: a ready it sent before it died is heard
        self.live = None
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
        self.restarts += 1
        delay = self.backoff.after_death(uptime, dead.served, status)
        if delay:
            log.warning("worker keeps dying; next start in %.1f s", delay)
        self._move(State.BACKOFF, self.clock() + delay)
        self.reloads.resume()

    def _end_reload(self, dead: WorkerHandle, status: int) -> None:
        """The reload's new worker died before it was ready: back to what served before."""
        self.live = self.reloads.on_failed(dead, describe_exit(status))
        if self.live is not None:
            self._move(State.RUNNING)
            if self.live.phase is Phase.REPLACED:
                self.live.move(Phase.RUNNING, self.clock() + HEARTBEAT_TIMEOUT)
        else:
            self.restarts += 1
            self._move(State.BACKOFF, self.clock())
        self.reloads.resume()

    def _fail_startup(self, reason: str) -> None:
        log.error("startup failed: %s", reason)
        if self.live is not None:
            self.workers.kill(self.live.pid, signal.SIGKILL)
            self.workers.wait(self.live.pid)
            self.live = None
        self._move(State.FATAL)
        if self.on_ready is not None:
            self.on_ready(reason)


@contextlib.contextmanager
def signals_to(selector: selectors.BaseSelector,
               on_signal: Callable[[int], None]) -> Iterator[None]:
    """While in the block, HANDLED_SIGNALS come to ``on_signal`` from ``selector``'s loop,
    each once a turn however often it was sent."""
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, _record_only)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
    selector.register(wake_r, selectors.EVENT_READ, lambda wake: _read(wake, on_signal))
    try:
        yield
    finally:
        signal.set_wakeup_fd(-1)
        selector.unregister(wake_r)
        wake_r.close()
        wake_w.close()


def _read(wake: socket.socket, on_signal: Callable[[int], None]) -> None:
    try:
        data = wake.recv(256)
    except BlockingIOError:
        return
    for signum in dict.fromkeys(data):
        on_signal(signum)


def _record_only(signum: int, frame: Optional[FrameType]) -> None:
    """Python writes ``signum`` to the wake-up socket; the loop does the work."""
