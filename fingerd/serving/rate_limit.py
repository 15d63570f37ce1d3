"""How often one key (an account, an address) may do something: token buckets, bounded.

Pure apart from the clock, which is an argument. Thread-safe: the setter's
handlers run on the pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

from fingerd.token_bucket import TokenBucket

#: Most keys remembered at once; past it, keys whose bucket is full are forgotten
#: (they would be allowed anyway), so no stream of new keys grows it without bound.
MAX_KEYS = 4096


class _KeyBucket(TokenBucket):
    """A key's bucket, and whether the key was refused since it last could act."""

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
        whether this is its first refusal since it last could (to log only that one)."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._remember(key, now)
            bucket.refill(now)
            if bucket.take():
                bucket.refused = False
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
