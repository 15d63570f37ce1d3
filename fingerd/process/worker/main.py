"""The worker: the only process that talks to clients, never root.

Forked by the parent with the listening sockets already bound, it sheds
root for good and confines itself (``confine.shed_root``: no capability,
no child process, no program, no reaching into other processes), closes
every descriptor it does not need, reads the users file, serves, and tells
the parent it is ready. Everything it needs is imported before the drop:
the interpreter may live where the service user cannot read.
"""

import gc
import logging
import os
import signal
import socket
import sys
import time
from typing import Any, Optional

from fingerd.limits import HANDOVER_TIMEOUT, STOP_GRACE_SECONDS
from fingerd.metrics import Metrics
from fingerd.process.channel import MonitorClient
from fingerd.process.exits_and_signals import (
    ACCEPT_SIGNAL,
    EXIT_FATAL,
    EXIT_SOFTWARE,
    WORKER_SIGNALS,
)
from fingerd.process.parent_counts import ConfigReloads
from fingerd.process.worker import confine
from fingerd.process.worker.logpipe import PipeHandler
from fingerd.process.worker.privdrop import PrivilegeError
from fingerd.serving.assembly import Service
from fingerd.users.backends import open_store
from fingerd.users.editing import StoreError
from fingerd.users.snapshot import Snapshot
from fingerd.users.usersfile import UsersFileError

log = logging.getLogger("fingerd")

#: Seconds between checks that the parent is still there, each a heartbeat to it.
PARENT_CHECK_SECONDS = 1.0

#: How long a thread may hold the GIL while another waits for it (Python's
#: default is 5 ms). A reading thread gives the GIL up at every system call;
#: while a reload keeps another thread busy, each of those costs it up to
#: this long to get it back, so the default let a reload of a large users
#: file add hundreds of milliseconds to a query.
SWITCH_INTERVAL = 0.0005


def run(config: Any, account: Any, sockets: dict[str, list[socket.socket]],
        monitor_sock: socket.socket, log_fd: int, restarts: int,
        snapshots: Optional[tuple[int, int]] = None, counts_fd: Optional[int] = None,
        reload: bool = False, new_store: bool = False) -> int:
    """The worker's life; returns its exit status. Called in the child right after fork.

    ``snapshots`` are this worker's own snapshot, which it alone writes, and its
    predecessor's, which it reads (users/snapshot.py). A worker that cannot
    read its users file at its start serves the table the previous one left
    there, and says so once: in the log, or, if it is a ``reload``'s, to the
    parent with its ready message, for the reload's outcome (the
    configuration applies all the same). A reload's worker for a
    ``new_store`` (another Redis server or prefix than the worker serving)
    that cannot reach it exits with EXIT_FATAL instead, and the reload is
    refused: the worker serving keeps its copy and goes on trying. For the
    same server, Redis being down refuses no reload: the new
    worker serves the copy, as the one serving does, and goes on trying.

    Whatever happens, the log lines queued for the parent are written before it ends.
    """
    parent = os.getppid()
    # First of all, while this process has one thread: the capability bounding set,
    # no_new_privs and the seccomp filter are each thread's own, and the log relay
    # starts one.
    try:
        refused, failure = confine.shed_root(account), None
    except PrivilegeError as exc:
        refused, failure = [], exc
    relay = _log_to_parent(log_fd)
    try:
        if failure is not None:
            log.critical("worker: %s", failure)
            return EXIT_FATAL
        if restarts == 0:  # every worker meets the same kernel: said once
            for layer in refused:
                log.warning("worker confinement: %s; the other layers apply", layer)
        return _live(config, parent, sockets, monitor_sock, log_fd, restarts, snapshots,
                     counts_fd, reload, new_store, relay)
    except BaseException:
        log.critical("worker failed", exc_info=True)
        return EXIT_SOFTWARE
    finally:
        relay.close()


def _live(config, parent, sockets, monitor_sock, log_fd, restarts, snapshots, counts_fd,
          reload, new_store, relay):
    keep = {log_fd, monitor_sock.fileno(), *(snapshots or ()), counts_fd} | {
        s.fileno() for ss in sockets.values() for s in ss}
    _close_other_descriptors(keep)
    os.umask(0o027)
    os.chdir("/")
    monitor = MonitorClient(monitor_sock)
    metrics = Metrics(parent_pid=parent, config_reloads=(
        ConfigReloads(counts_fd) if counts_fd is not None else None),
        access_log_dropped=lambda: relay.dropped_access_lines,
        on_first_answer=monitor.first_answer)
    metrics.worker_restarts.inc(restarts)
    try:
        store = open_store(config, metrics, writer=monitor.write_status,
                           snapshot=Snapshot(*snapshots) if snapshots is not None else None)
        kept = store.load(fallback=not (new_store and config.store_backend == "redis"))
    except (UsersFileError, StoreError) as exc:
        log.critical("%s", exc)
        return EXIT_FATAL
    except OSError as exc:
        log.critical("%s: worker cannot read users file: %s", config.users_file,
                     exc.strerror or exc)
        return EXIT_FATAL
    if kept is not None and not reload:
        log.error("users file rejected: %s; serving the %d users the previous worker served",
                  kept.reason, kept.users)
    signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
    service = Service(config, sockets, store, metrics)
    sys.setswitchinterval(SWITCH_INTERVAL)
    # Nothing is accepted before the parent has the ready: a worker that answered a
    # client has started, even if it dies at once. A reload's worker accepts once the
    # parent says the worker it replaces no longer does (ACCEPT_SIGNAL), or, should that
    # one be wedged, after HANDOVER_TIMEOUT.
    service.start(held=True)
    gc.freeze()
    monitor.ready(kept.rejected() if kept is not None and reload else None)
    held_until = time.monotonic() + HANDOVER_TIMEOUT if reload else None
    if not reload:
        service.accept()
    while not service.failed.is_set() and os.getppid() == parent:
        monitor.alive(metrics.requests.answered())
        sig = signal.sigtimedwait(WORKER_SIGNALS, _until(held_until))
        accept_now = sig is not None and sig.si_signo == ACCEPT_SIGNAL
        if held_until is not None and (accept_now or time.monotonic() >= held_until):
            if not accept_now:
                log.warning("the worker replaced did not say within %.0f s that it stopped "
                            "accepting; accepting beside it", HANDOVER_TIMEOUT)
            service.accept()
            held_until = None
        if sig is None or accept_now:
            continue
        if sig.si_signo == signal.SIGHUP:
            log.info("reading %s again", store.path)  # the users file, or the Redis hash
            service.reload()
        else:
            break
    service.stop(STOP_GRACE_SECONDS, monitor.not_accepting)
    return 1 if service.failed.is_set() else 0


def _until(held_until: Optional[float]) -> float:
    """Seconds to wait for a signal: to the next heartbeat, or to the end of a hold."""
    if held_until is None:
        return PARENT_CHECK_SECONDS
    return max(0.0, min(PARENT_CHECK_SECONDS, held_until - time.monotonic()))


#: The parent's log handlers, kept referenced: their descriptors are closed under
#: them, and a finalizer closing a reused descriptor number would close a client's.
_inherited_handlers: list[logging.Handler] = []


def _log_to_parent(fd):
    handler = PipeHandler(fd)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        _inherited_handlers.append(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def _close_other_descriptors(keep):
    """Close every inherited descriptor but ``keep``; 0, 1 and 2 become /dev/null."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    keep = keep | {0, 1, 2}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
