"""Calls that may block beyond the daemon's control, each waited for at most a deadline.

Some calls cannot be interrupted: ``getaddrinfo`` behind a silent DNS server,
an account lookup behind a hung LDAP server, a read from a hung NFS home. A
pool thread that made one itself could be held for good, and enough of them
would hold the whole pool. So each such call runs on a daemon thread of its
own, which the caller waits for at most its deadline and then abandons (no
stop waits for it). At most ``limit`` calls run at once, abandoned ones
included: when that many are unfinished, a new call fails at once rather than
adding threads.
"""

import threading


class Unfinished(Exception):
    """A bounded call that did not finish within its deadline, or was not started; the
    text says which."""


class BoundedCalls:
    """``call(timeout, fn, *args)``: what ``fn(*args)`` returns or raises, within
    ``timeout`` seconds, or Unfinished. ``what`` names one call in the errors
    (``name lookup``). Any thread may call."""

    def __init__(self, limit, what):
        self.what = what
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._abandoned = 0

    def abandoned(self):
        """Calls their callers gave up waiting for that have not finished yet."""
        return self._abandoned

    def call(self, timeout, fn, *args):
        if not self._slots.acquire(blocking=False):
            raise Unfinished(f"too many {self.what}s in progress")
        outcome = []
        done = threading.Event()
        abandoned = False

        def run():
            try:
                outcome.append((True, fn(*args)))
            except BaseException as exc:
                outcome.append((False, exc))
            finally:
                with self._lock:
                    done.set()
                    if abandoned:
                        self._abandoned -= 1
                self._slots.release()

        try:
            threading.Thread(target=run, name="fingerd-" + self.what.replace(" ", "-"),
                             daemon=True).start()
        except RuntimeError:
            self._slots.release()
            raise Unfinished(f"{self.what}: cannot start a thread") from None
        if not done.wait(timeout):
            with self._lock:
                if not done.is_set():
                    abandoned = True
                    self._abandoned += 1
                    raise Unfinished(f"{self.what} took longer than {timeout:g} s")
        returned, value = outcome[0]
        if returned:
            return value
        raise value
