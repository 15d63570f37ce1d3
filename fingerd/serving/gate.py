"""The bound on connections accepted and not yet answered, shared by the servers."""

import threading


class ConnectionGate:
    """At most ``limit`` connections hold a slot at once; taking one never waits.

    A plain counter under a lock: threading.BoundedSemaphore is written in
    Python and costs several times more on every connection.
    """

    def __init__(self, limit, active_gauge=None):
        self.limit = limit
        self.active = 0
        self._lock = threading.Lock()
        if active_gauge is not None:
            active_gauge.set_function(lambda: self.active)

    def enter(self):
        """Take a slot if one is free; False when all are taken."""
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def leave(self):
        with self._lock:
            self.active -= 1
