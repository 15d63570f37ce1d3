"""Calls that may block beyond the daemon's control, each waited for at most a deadline.

Some calls cannot be interrupted: ``getaddrinfo`` behind a silent DNS server,
an account lookup behind a hung LDAP server, a read from a hung NFS home. A
pool thread that made one itself could be held for good, and enough of them
would hold the whole pool. So each such call runs on a daemon thread of its
own, which the caller waits for at most its deadline and then abandons (no
stop waits for it). At most ``limit`` calls run at once, abandoned ones
included. A call beyond that waits for one to finish, within its own
deadline, while every one running is younger than STUCK_AFTER: a burst of
quick (or merely slow) calls only queues. Once one has run that long,
something hangs: a new call fails at once rather than add a thread or hold
its caller, so that the callers' other work goes on.
"""

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

#: Seconds after which a call still running is taken for hung, for ``limit``'s sake.
STUCK_AFTER = 1.0

_T = TypeVar("_T")


class Unfinished(Exception):
    """A bounded call that did not finish within its deadline, or was not started; the
    text says which."""


class BoundedCalls:
    """``call(timeout, fn, *args)``: what ``fn(*args)`` returns or raises, within
    ``timeout`` seconds, or Unfinished. ``what`` names one call in the errors
    (``name lookup``). Any thread may call."""

    def __init__(self, limit: int, what: str, stuck_after: float = STUCK_AFTER) -> None:
        self.what = what
        self.limit = limit
        self.stuck_after = stuck_after
        self._cond = threading.Condition()
        self._ids = itertools.count()
        self._started: dict[int, float] = {}  # when each call running began
        self._abandoned = 0

    def abandoned(self) -> int:
        """Calls their callers gave up waiting for that have not finished yet."""
        return self._abandoned

    def call(self, timeout: float, fn: Callable[..., _T], *args: object) -> _T:
        deadline = time.monotonic() + timeout
        slot = self._take_slot(deadline)
        returned: list[_T] = []
        raised: list[BaseException] = []
        done = threading.Event()
        abandoned = False

        def run() -> None:
            try:
                returned.append(fn(*args))
            except BaseException as exc:
                raised.append(exc)
            finally:
                with self._cond:
                    done.set()
                    del self._started[slot]
                    if abandoned:
                        self._abandoned -= 1
                    self._cond.notify()

        try:
            threading.Thread(target=run, name="fingerd-" + self.what.replace(" ", "-"),
                             daemon=True).start()
        except RuntimeError:
            with self._cond:
                del self._started[slot]
                self._cond.notify()
            raise Unfinished(f"{self.what}: cannot start a thread") from None
        if not done.wait(max(0.0, deadline - time.monotonic())):
            with self._cond:
                if not done.is_set():
                    abandoned = True
                    self._abandoned += 1
                    raise Unfinished(f"{self.what} took longer than {round(timeout, 2):g} s")
        if raised:
            raise raised[0]
        return returned[0]

    def _take_slot(self, deadline: float) -> int:
        """A slot for one more call, once fewer than ``limit`` run; Unfinished at once
        when one running is stuck, or at ``deadline``."""
        with self._cond:
            while len(self._started) >= self.limit:
                now = time.monotonic()
                hung_at = min(self._started.values()) + self.stuck_after
                if now >= hung_at or now >= deadline:
                    raise Unfinished(f"too many {self.what}s in progress")
                self._cond.wait(min(hung_at, deadline) - now)
            slot = next(self._ids)
            self._started[slot] = time.monotonic()
            return slot


class HangLog:
    """Says in the log when ``calls`` begin to hang, once, and once when they finish in
    time again with none left stuck: a hung LDAP or DNS server fails every call for as
    long as it hangs, and a line each would be a flood.

    ``subject`` begins each line (``system accounts``); ``consequence`` says what a
    caller that gave up answered."""

    def __init__(self, calls: BoundedCalls, logger: logging.Logger, subject: str,
                 consequence: str) -> None:
        self._calls = calls
        self._log = logger
        self._subject = subject
        self._consequence = consequence
        self._lock = threading.Lock()
        self._failing = False

    def unfinished(self, what: str, exc: Unfinished) -> None:
        """``what`` (``looking up 'alice'``) raised ``exc``: said if it begins a streak."""
        with self._lock:
            first, self._failing = not self._failing, True
        if first:
            self._log.warning("%s: %s: %s (%s; more such failures are not logged until "
                              "lookups finish in time again)", self._subject, what, exc,
                              self._consequence)

    def finished(self) -> None:
        """A call finished in time: the streak ends once no abandoned call is left."""
        if self._failing and self._calls.abandoned() == 0:
            with self._lock:
                recovered, self._failing = self._failing, False
            if recovered:
                self._log.info("%s: lookups finish in time again", self._subject)
