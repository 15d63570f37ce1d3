"""A reload's life in the root parent, from a HUP to the worker serving the new
configuration, or back to the one that served before.

A HUP reads the configuration again (the supervisor's ``reloader``, in
production ``reloading.prepare``) and, if it can be applied, starts a new
worker beside the one serving. Once the new worker is ready the old one
retires, finishing what it holds, and the sockets of addresses dropped are
closed when it is gone. The new worker accepts only once the old one says it
accepts no more, or is gone (the handover; ACCEPT_SIGNAL tells it), and the
outcome is reported then: no client connecting after it is served with the
configuration replaced. If the new worker dies before it is ready, or is not
ready in STARTUP_TIMEOUT, everything goes back to what served before. A users file
the new worker cannot serve (missing, unreadable, invalid) refuses nothing:
the new worker serves the entries the old one served, and the outcome says
what is wrong with the file. One reload at a time: a HUP while a worker
starts, or while one retires, is remembered and applied once none does.
Each outcome is reported, to the log and to ``on_reload``, for
``fingerd-ctl reload``.
"""

import logging
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from fingerd.limits import STARTUP_TIMEOUT
from fingerd.process.exits_and_signals import ACCEPT_SIGNAL, describe_exit
from fingerd.process.logformat import clean
from fingerd.process.parent.states import State
from fingerd.process.parent.worker_handle import WorkerHandle

if TYPE_CHECKING:
    from fingerd.process.parent.supervisor import Supervisor

log = logging.getLogger("fingerd")


class ReloadRefused(Exception):
    """The configuration read again cannot be applied; the message says why, for the log
    and for ``fingerd-ctl reload`` (``FILE:LINE: message`` for an invalid file)."""


class Reload:
    """A reload under way: the worker serving meanwhile (None if it died), the plan
    applied, and the one to go back to if the new worker never becomes ready."""

    def __init__(self, old: Optional[WorkerHandle], previous: Any, plan: Any) -> None:
        self.old = old
        self.previous = previous
        self.plan = plan
        #: Why the new worker was killed, if it was.
        self.failure: Optional[str] = None


class Handover(NamedTuple):
    """A reload's worker, ready, waiting for ``old`` (None if it died) to stop accepting;
    what was wrong with its users file, for the outcome."""

    old: Optional[WorkerHandle]
    new: WorkerHandle
    users_problem: Optional[str]


class Reloads:
    """The reloads of one supervisor: ``current`` is the one under way, if any."""

    def __init__(self, supervisor: "Supervisor") -> None:
        self._sup = supervisor
        self.current: Optional[Reload] = None
        #: Workers a reload replaced, sent TERM, finishing what they hold.
        self.retiring: list[WorkerHandle] = []
        #: A HUP came while a reload could not begin: one follows when it can.
        self._asked = False
        #: When the last HUP came (CLOCK_MONOTONIC, which every process shares), and the
        #: last one the reload under way, or last begun, answers: fingerd-ctl reload
        #: takes the first outcome answering a HUP it sent, not an earlier one's.
        self._asked_at = self._answers = 0.0
        self._handover: Optional[Handover] = None

    @property
    def old(self) -> Optional[WorkerHandle]:
        """The worker serving while the reload's starts, if there is one."""
        return self.current.old if self.current is not None else None

    def hup(self) -> None:
        """A HUP: reload now, once the worker starting is ready, or, without a reloader
        (or while stopping), only have the worker read the users file again."""
        sup = self._sup
        self._asked_at = time.monotonic()
        if sup.reloader is None or sup.state is State.STOPPING:
            log.info("SIGHUP: the worker reads the users file again")
            self._read_users_file(sup.live)
            return
        if sup.state in (State.STARTING, State.REPLACING) or self.retiring:
            log.info("SIGHUP: a reload follows once the worker started is ready and the "
                     "one it replaces gone")
            self._asked = True
            return
        self._begin()

    def _begin(self) -> None:
        """Read the configuration again; apply it, or keep everything and say why."""
        sup = self._sup
        assert sup.reloader is not None
        self._asked, self._answers = False, self._asked_at
        log.info("SIGHUP: reading the configuration %s again", sup.config.path)
        try:
            plan = sup.reloader(sup.config, sup.sockets)
        except Exception as exc:
            if not isinstance(exc, ReloadRefused):
                log.exception("reading the configuration again failed")
            self._report(False, str(exc) if isinstance(exc, ReloadRefused) else
                         f"reading the configuration again failed: {exc!r}")
            self._read_users_file(sup.live)
            return
        previous = sup.configure(plan)
        if sup.state is State.BACKOFF:
            # No worker serves: the next starts now, with the configuration read.
            plan.close_unused()
            sup.start_now()
            self._report(True, f"configuration {sup.config.path} applied: the next "
                               f"worker starts with it")
            return
        self.current = Reload(sup.live, previous, plan)
        sup.start_worker()

    def on_ready(self, new: WorkerHandle) -> None:
        """The reload's worker is ready: the old one retires, and the new one accepts
        once the old one does not."""
        reload, self.current = self.current, None
        assert reload is not None
        said = new.channel.users_problem if new.channel is not None else None
        self._handover = Handover(reload.old, new, clean(said) if said is not None else None)
        if reload.old is not None:
            self._retire(reload.old, reload.plan.close_unused)
        else:
            reload.plan.close_unused()
            self._hand_over()

    def on_closed(self, sender: WorkerHandle) -> None:
        """``sender`` accepts no more: if a reload replaced it, the new worker accepts."""
        if self._handover is not None and self._handover.old is sender:
            self._hand_over()

    def _hand_over(self) -> None:
        """The new worker accepts, if it still serves; the reload's outcome."""
        handover, self._handover = self._handover, None
        assert handover is not None
        sup, new = self._sup, handover.new
        serving = "the next worker starts with it"
        if new is sup.live:
            sup.workers.kill(new.pid, ACCEPT_SIGNAL)
            serving = f"worker {new.pid} serves it"
        self._report(True, f"configuration {sup.config.path} applied: {serving}",
                     handover.users_problem)

    def give_up(self) -> None:
        """The reload's worker is not ready in time: it is killed, and its death ends
        the reload."""
        assert self.current is not None
        self.current.failure = f"not ready after {STARTUP_TIMEOUT:.0f} s"

    def on_failed(self, dead: WorkerHandle, why: str) -> Optional[WorkerHandle]:
        """The reload's worker died before it was ready: back to what served before;
        the worker that goes on serving, if one does, reads the users file again, as
        after any refusal (one dead meanwhile has a successor, which reads it)."""
        reload, self.current = self.current, None
        assert reload is not None
        why = reload.failure or why
        last_error = dead.relay.last_error if reload.failure is None else None
        self._sup.configure(reload.previous)
        reload.plan.close_fresh()
        self._report(False, f"the new worker {dead.pid} {why}" + (
            f": {last_error}" if last_error else ""))
        self._read_users_file(reload.old)
        return reload.old

    def _read_users_file(self, worker: Optional[WorkerHandle]) -> None:
        """A HUP has the users file read again at once, whatever becomes of the reload:
        by ``worker``, the one that goes on serving, if there is one."""
        if worker is not None:
            self._sup.workers.kill(worker.pid, signal.SIGHUP)

    def on_old_exit(self) -> WorkerHandle:
        """The worker serving meanwhile died: the reload goes on without it."""
        assert self.current is not None and self.current.old is not None
        old, self.current.old = self.current.old, None
        return old

    def _retire(self, old: WorkerHandle, close_leftovers: Callable[[], None]) -> None:
        """TERM a worker a reload replaced: it finishes what it holds and exits;
        ``close_leftovers`` then closes the sockets it served last (and removes the Unix
        ones' files)."""
        log.info("worker %d retires", old.pid)
        old.close_leftovers = close_leftovers
        self.retiring.append(old)
        self._sup.stop(old)

    def on_retired_exit(self, pid: int, status: int) -> bool:
        """Whether ``pid`` was a retiring worker; if so, it is gone, and so are the
        sockets it served last."""
        old = next((old for old in self.retiring if old.pid == pid), None)
        if old is None:
            return False
        self.retiring.remove(old)
        self._sup.monitor.forget(old)
        log.info("worker %d %s", pid, describe_exit(status))
        old.close_leftovers()
        self.on_closed(old)
        return True

    def stop(self) -> None:
        """At TERM: the worker serving meanwhile retires, no socket of the plan stays,
        nor any a retiring worker served last."""
        reload, self.current = self.current, None
        if reload is not None:
            if reload.old is not None:
                self._retire(reload.old, lambda: None)
            reload.plan.close_unused()
        self._handover = None
        for old in self.retiring:
            old.close_leftovers()
            old.close_leftovers = lambda: None

    def resume(self) -> None:
        """Begin the reload asked for while a worker was starting, once none is and
        nothing of an earlier reload is left."""
        sup = self._sup
        if (self._asked and sup.state in (State.RUNNING, State.BACKOFF)
                and self.current is None and not self.retiring):
            self._begin()

    def _report(self, applied: bool, message: str, users_problem: Optional[str] = None,
                ) -> None:
        """Log the outcome, and hand it on for ``fingerd-ctl reload``. ``users_problem``:
        the users file the new worker could not serve (it serves the entries the old one
        did), logged as an error of its own, once, and added to the outcome."""
        if applied:
            log.info("%s", message)
        else:
            log.error("%s; reload refused, the running configuration is kept", message)
        if users_problem is not None:
            log.error("%s", users_problem)
            message = f"{message}; {users_problem}"
        if self._sup.on_reload is not None:
            self._sup.on_reload(applied, message, self._answers)
