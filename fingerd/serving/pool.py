"""A fixed pool of threads that run submitted calls.

Unlike ThreadPoolExecutor it allocates no Future per call, starts every
thread up front (so a later RLIMIT_NPROC cannot make a submit fail under
load), and its stop waits a bounded time. Its queue is bounded by the caller:
the servers submit only connections that passed the connection gate.

A call that may wait long on something outside the process (a forward to a
silent finger server holds its thread for ``forward_timeout``, a set waits on
the parent's write, the rest of an answer too big for its socket's buffer waits
on a client that may not read it) is submitted as slow, in a lane named for its
service (``send`` for those answers):
each lane's slow calls hold at most a quarter of the threads (one at least),
the others waiting in a queue of the lane's own, so that a flood of them
never keeps every other request waiting for a thread, nor another service's
slow calls (forwards to silent hosts kept local sets waiting past their
timeout).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: A call and its arguments; None in their place ends the thread that takes it.
_Call = tuple[Callable[..., object], tuple[object, ...]]


class Pool:
    """``size`` daemon threads running ``fn(*args)`` in submission order."""

    def __init__(self, size: int, name: str = "fingerd-pool") -> None:
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._busy = [False] * size
        self._slow_limit = max(1, size // 4)
        self._slow_running: collections.Counter[str] = collections.Counter()
        self._slow_waiting: collections.defaultdict[str, collections.deque[_Call]] = \
            collections.defaultdict(collections.deque)
        self._slow_lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), name=f"{name}-{i}",
                                          daemon=True)
                         for i in range(size)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        """Queue ``fn(*args)``; it must catch its own exceptions."""
        self._queue.put((fn, args))

    def submit_slow(self, lane: str, fn: Callable[..., object], *args: object) -> None:
        """As ``submit``, for a call that may wait long on something outside the process,
        in ``lane`` (its service's name)."""
        with self._slow_lock:
            if self._slow_running[lane] >= self._slow_limit:
                self._slow_waiting[lane].append((fn, args))
                return
            self._slow_running[lane] += 1
        self._queue.put((self._run_slow, (lane, fn, args)))

    def _run_slow(self, lane: str, fn: Callable[..., object], args: tuple[object, ...]) -> None:
        """Run ``lane``'s slow calls on this thread, this one and then each that waits, FIFO."""
        while True:
            try:
                fn(*args)
            except Exception:
                log.exception("unhandled error in pool thread")
            with self._slow_lock:
                waiting = self._slow_waiting[lane]
                if not waiting:
                    self._slow_running[lane] -= 1
                    return
                fn, args = waiting.popleft()

    def stop(self, timeout: float) -> bool:
        """Let queued calls finish, then end every thread; wait at most ``timeout`` seconds.

        Returns False when some thread was still busy at the deadline (it is a
        daemon thread, so it cannot keep the process alive).
        """
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def busy(self) -> int:
        """Threads running a call now (a reading for metrics, not a synchronisation)."""
        return sum(self._busy)

    def queued(self) -> int:
        """Calls waiting for a thread, slow ones included."""
        with self._slow_lock:  # a lane's first call adds it: never iterate a dict growing
            slow = sum(map(len, self._slow_waiting.values()))
        return self._queue.qsize() + slow

    def _run(self, index: int) -> None:
        get = self._queue.get
        busy = self._busy
        while True:
            item = get()
            if item is None:
                return
            fn, args = item
            busy[index] = True
            try:
                fn(*args)
            except Exception:
                log.exception("unhandled error in pool thread")
            finally:
                busy[index] = False
