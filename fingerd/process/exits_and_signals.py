"""What the root parent, the worker and the writer child agree on: the exit statuses
(and how any exit is told) and the signals each process handles.

It imports nothing of the project, as ``fingerd.limits`` (where the timeouts
they share are, STARTUP_TIMEOUT and REPLY_TIMEOUT among them), so that no
module imports the supervisor, or the worker, for a name.
"""

import os
import signal

#: Exit status of a start that no retry mends until the operator acts: on the
#: configuration, the users file, the accounts or systemd's sockets (EX_CONFIG).
#: fingerd.service does not restart it (RestartPreventExitStatus=); other failures
#: may pass (a port in use), exit 1 and are restarted.
EXIT_CONFIG = 78
#: Exit status of a worker that cannot work as configured, and so must not be restarted
#: at once: a start's, for the same reason.
EXIT_FATAL = EXIT_CONFIG
#: Exit status of a worker that failed for a reason of its own (EX_SOFTWARE).
EXIT_SOFTWARE = 70

#: Signals the root parent handles, in its loop: the worker starts with them set back
#: to their defaults, the writer child ignores all but SIGCHLD.
HANDLED_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1,
                   signal.SIGCHLD)

#: The parent's word to a reload's worker that the worker it replaces accepts no more,
#: so that it may: until then it accepts nothing (its handover).
ACCEPT_SIGNAL = signal.SIGUSR2
#: Signals the root parent ignores, and the writer child with it: ACCEPT_SIGNAL, which
#: ``systemctl kill -s USR2`` and ``killall -USR2`` send to every process of the daemon,
#: and which by default kills. The worker starts with them set back to their defaults.
PARENT_IGNORED = (ACCEPT_SIGNAL,)
#: Signals the worker's main thread waits for; blocked in every thread.
WORKER_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, ACCEPT_SIGNAL)
#: Signals the worker ignores: SIGUSR1 asks for log files to be reopened, and the
#: worker has none (the parent writes its lines), yet ``systemctl kill -s USR1`` and
#: ``killall -USR1`` send it to every process of the daemon, and by default it kills.
WORKER_IGNORED = (signal.SIGUSR1,)


def describe_exit(status: int) -> str:
    """``exited with status N`` or ``killed by SIGNAME`` from a wait status."""
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"
