"""Token buckets: ``rate`` tokens a second, at most ``burst`` at once; one alone, or
one a key.

The one refill formula of the daemon, for the parent's relay of worker log
lines (process/parent/logrelay.py, a TokenBucket) and the setter's rate limit
(serving/setter.py, a RateLimit by account or address). Pure apart from the
clock, which is an argument. A TokenBucket is not thread-safe: its owner locks,
or owns it on one thread. A RateLimit is: the setter's handlers run on the pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

#: Most keys a RateLimit remembers at once; past it, keys whose bucket is full are
#: forgotten (they would be allowed anyway), so no stream of new keys grows it without
#: bound.
MAX_KEYS = 4096


class TokenBucket:
    """Starts full at ``now``."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def level(self, now: float) -> float:
        """The tokens there would be at ``now``, without taking them into account."""
        return min(self.burst, self.tokens + (now - self.stamp) * self.rate)

    def refill(self, now: float) -> float:
        """Add the tokens earned since the last refill; the tokens there are now."""
        self.tokens = self.level(now)
        self.stamp = now
        return self.tokens

    def take(self, cost: float = 1) -> bool:
        """True, and ``cost`` tokens fewer, if there are that many."""
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class _KeyBucket(TokenBucket):
    """A key's bucket, and whether the key was refused since its bucket was last full."""

    __slots__ = ("refused",)

    def __init__(self, rate: float, burst: float, now: float) -> None:
        super().__init__(rate, burst, now)
        self.refused = False


class RateLimit:
    """Each key may act ``rate`` times a second on average, ``burst`` times at once."""

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[Hashable, _KeyBucket] = {}
        self._lock = threading.Lock()

    def allow(self, key: Hashable) -> tuple[bool, bool]:
        """``(allowed, first)``: whether ``key`` may act now, and, when it may not,
        whether this is its first refusal since it slowed down, its bucket full again (to
        log only that one: a key kept at the rate by refusals is one run of them)."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._remember(key, now)
            if bucket.refill(now) >= bucket.burst:
                bucket.refused = False
            if bucket.take():
                return True, False
            first = not bucket.refused
            bucket.refused = True
            return False, first

    def _remember(self, key: Hashable, now: float) -> _KeyBucket:
        if len(self._buckets) >= self._max_keys:
            self._buckets = {k: b for k, b in self._buckets.items()
                             if b.level(now) < self.burst}
            if len(self._buckets) >= self._max_keys:
                self._buckets.pop(next(iter(self._buckets)))
        bucket = self._buckets[key] = _KeyBucket(self.rate, self.burst, now)
        return bucket
