"""A flood of refused setter requests, which makes the parent drop the worker's lines."""

import contextlib
import threading
import time

from tests.support.polling import wait_until

#: Sets a test makes during a flood, each of which must be logged.
SETS_IN_A_FLOOD = 20
#: Threads sending refused requests; each sends for at most FLOOD_SECONDS.
FLOODERS = 4
FLOOD_SECONDS = 60


@contextlib.contextmanager
def refused_requests_flooding(daemon):
    """Within: invalid set requests flood ``daemon``'s setter from FLOODERS threads,
    and the parent has begun to drop the worker's log lines (past 200 a second)."""
    done = threading.Event()

    def flood():
        deadline = time.monotonic() + FLOOD_SECONDS
        for _ in range(100_000):
            if done.is_set() or time.monotonic() > deadline:
                return
            try:
                daemon.setter(b"no such name!\r\nx\r\n", timeout=5)
            except OSError:
                pass

    threads = [threading.Thread(target=flood) for _ in range(FLOODERS)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: "log lines dropped (rate limit)" in daemon.log(), timeout=30,
                   what="the worker's lines to be dropped")
        yield
    finally:
        done.set()
        for thread in threads:
            thread.join(10)
