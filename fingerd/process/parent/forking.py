"""Forking, signalling and reaping the worker: all the supervisor does to processes.

Kept apart from the supervisor's decisions, so that tests hand it fake workers.
This process is its descendants' subreaper: whatever a worker leaves behind
is killed once the worker is reaped, and again before the next is forked.
"""

import logging
import os
import signal
import socket

from fingerd.process.channel import channel
from fingerd.process.exits_and_signals import (
    EXIT_SOFTWARE,
    HANDLED_SIGNALS,
    PARENT_IGNORED,
    WORKER_IGNORED,
    WORKER_SIGNALS,
)
from fingerd.process.parent import descendants
from fingerd.process.parent.reloading import Plan
from fingerd.process.parent_counts import ConfigReloads
from fingerd.process.worker import main as worker
from fingerd.users import snapshot

log = logging.getLogger("fingerd")


class ForkedWorkers:
    """The real workers, forked from this process to run ``worker.run``.

    This process must fork no other child but those ``spare`` names: every
    other child but the workers is taken for something a worker left
    behind, and killed once no worker is left.
    """

    def __init__(self, config, account, sockets):
        self.config = config
        self.account = account
        self.sockets = sockets
        self.workers = set()  # the pids of the workers not yet reaped
        self._subreaper = None
        #: The snapshot of the last worker that became ready (users/snapshot.py): the table
        #: it serves, which the next worker reads. Each writes only its own, made at its fork.
        self.snapshot_fd = snapshot.create()
        #: The snapshot of each worker not yet ready, by pid: closed if it never is.
        self._own_snapshots: dict[int, int] = {}
        #: Inherited by every worker, which exports them: the reloads of the configuration.
        self.config_reloads = ConfigReloads()
        #: The pids of this process's children that are not leftovers (the supervisor's
        #: file writer), asked for whenever leftovers are killed.
        self.spare = frozenset
        #: Whether the configuration names another store than the one before it.
        self._new_store = False

    def configure(self, plan):
        """Start the next workers with ``plan``'s configuration, account and sockets; the
        Plan of those used until now."""
        previous = Plan(self.config, self.account, self.sockets)
        # The snapshot stays, even for another users file or store: a reload's worker
        # that cannot serve the one configured serves the entries served until then.
        self._new_store = _store(plan.config) != _store(self.config)
        self.config, self.account, self.sockets = plan.config, plan.account, plan.sockets
        return previous

    def spawn(self, restarts: int, reload: bool = False) -> tuple[int, socket.socket, int]:
        """Fork a worker; in the parent, ``(pid, request channel, log pipe's read end)``.
        ``reload``: a reload's, which tells its users file's problem to the parent
        rather than to the log, and must reach a store the configuration changed to
        (worker.run)."""
        if self._subreaper is None:
            refused = descendants.become_subreaper()
            self._subreaper = refused is None
            if refused:
                log.warning("child subreaper not applied: %s; what a dead worker leaves "
                            "behind is not killed", refused)
        self._kill_leftovers(None)
        own_snapshot = snapshot.create()
        parent_end, worker_end = channel()
        log_r, log_w = os.pipe()
        # The child starts with the worker's signals blocked: one sent before it is
        # ready to wait for it stays pending instead of killing it.
        signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
        pid = os.fork()
        if pid == 0:
            code = EXIT_SOFTWARE
            try:
                signal.set_wakeup_fd(-1)
                for signum in HANDLED_SIGNALS + PARENT_IGNORED:
                    signal.signal(signum, signal.SIG_IGN if signum in WORKER_IGNORED
                                  else signal.SIG_DFL)
                parent_end.close()
                os.close(log_r)
                code = worker.run(self.config, self.account, self.sockets, worker_end, log_w,
                                  restarts, (own_snapshot, self.snapshot_fd),
                                  self.config_reloads.fd, reload,
                                  new_store=reload and self._new_store)
            except BaseException:
                log.critical("worker failed", exc_info=True)
            finally:
                os._exit(code)
        self.workers.add(pid)
        self._own_snapshots[pid] = own_snapshot
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)
        worker_end.close()
        os.close(log_w)
        os.set_blocking(log_r, False)
        return pid, parent_end, log_r

    def serving(self, pid):
        """``pid`` is ready: the next worker reads its snapshot, no longer its predecessor's."""
        own = self._own_snapshots.pop(pid, None)
        if own is not None:
            os.close(self.snapshot_fd)
            self.snapshot_fd = own

    def kill(self, pid, signum):
        """Send ``signum`` unless the process is gone already."""
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def reap(self):
        """``(pid, wait status)`` of each child that has ended, without blocking.

        Once no worker is left, what they left behind is dead before the last one's
        pid comes.
        """
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._reaped(pid)
            yield pid, status

    def wait(self, pid):
        """Block until ``pid`` has ended, and reap it and what it left behind."""
        os.waitpid(pid, 0)
        self._reaped(pid)

    def _reaped(self, pid):
        if pid in self.workers:
            self.workers.discard(pid)
            own = self._own_snapshots.pop(pid, None)
            if own is not None:  # it never served: its table is no one's to read
                os.close(own)
            self._kill_leftovers(pid)

    def _kill_leftovers(self, pid):
        """Kill every descendant of this process: none is a worker now."""
        if not self._subreaper or self.workers:
            return
        killed, remaining = descendants.kill_leftovers(spare=frozenset(self.spare()))
        whose = f"worker {pid}" if pid is not None else "an earlier worker"
        if killed:
            log.warning("killed %d process%s left behind by %s: %s", len(killed),
                        "" if len(killed) == 1 else "es", whose, " ".join(map(str, killed)))
        if remaining:
            log.error("processes left behind by %s still there after SIGKILL: %s", whose,
                      " ".join(map(str, remaining)))


def _store(config):
    """What names a configuration's store: a Redis server and prefix, or the users file."""
    return (config.store_backend, config.redis_url, config.redis_prefix)
