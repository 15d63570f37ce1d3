"""The thread that keeps the user table in step with the users file."""

import logging
import threading

log = logging.getLogger(__name__)


class Watcher(threading.Thread):
    """Calls ``store.reload()`` every ``interval`` seconds, and at once when poked.

    The store decides from the file's signature whether anything changed, so
    a file replaced by a rename and one edited in place are both noticed.
    """

    def __init__(self, store, interval):
        super().__init__(name="fingerd-watcher", daemon=True)
        self._store = store
        self._interval = interval
        self._wake = threading.Event()
        self._stopping = False
        self._force = False

    def poke(self):
        """Read the users file again now, whether or not it looks changed (SIGHUP)."""
        self._force = True
        self._wake.set()

    def stop(self, timeout):
        """End the thread, waiting at most ``timeout`` seconds for a read in progress."""
        self._stopping = True
        self._wake.set()
        self.join(timeout)

    def run(self):
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stopping:
                return
            force, self._force = self._force, False
            try:
                self._store.reload(force=force)
            except Exception:
                log.exception("users file reload failed")
