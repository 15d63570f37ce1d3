"""Forking, signalling and reaping the worker: all the supervisor does to processes.

Kept apart from the supervisor's decisions, so that tests hand it fake workers.
"""

import logging
import os
import signal

from fingerd.process import worker
from fingerd.process.channel import channel
from fingerd.process.supervisor import HANDLED_SIGNALS

log = logging.getLogger("fingerd")


class ForkedWorkers:
    """The real workers, forked from this process to run ``worker.run``."""

    def __init__(self, config, account, sockets):
        self.config = config
        self.account = account
        self.sockets = sockets

    def spawn(self, restarts):
        """Fork a worker; in the parent, ``(pid, request channel, log pipe's read end)``."""
        parent_end, worker_end = channel()
        log_r, log_w = os.pipe()
        # The child starts with the worker's signals blocked: one sent before it is
        # ready to wait for it stays pending instead of killing it.
        signal.pthread_sigmask(signal.SIG_BLOCK, worker.SIGNALS)
        pid = os.fork()
        if pid == 0:
            code = worker.EXIT_SOFTWARE
            try:
                signal.set_wakeup_fd(-1)
                for signum in HANDLED_SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                parent_end.close()
                os.close(log_r)
                code = worker.run(self.config, self.account, self.sockets, worker_end, log_w,
                                  restarts)
            except BaseException:
                log.critical("worker failed", exc_info=True)
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, worker.SIGNALS)
        worker_end.close()
        os.close(log_w)
        os.set_blocking(log_r, False)
        return pid, parent_end, log_r

    def kill(self, pid, signum):
        """Send ``signum`` unless the process is gone already."""
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def reap(self):
        """``(pid, wait status)`` of each child that has ended, without blocking."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            yield pid, status

    def wait(self, pid):
        """Block until ``pid`` has ended, and reap it."""
        os.waitpid(pid, 0)
