"""How often one key (an account, an address) may do something: token buckets, bounded.

Pure apart from the clock, which is an argument. Thread-safe: the setter's
handlers run on the pool.
"""

import threading
import time

#: Most keys remembered at once; past it, keys whose bucket is full are forgotten
#: (they would be allowed anyway), so no stream of new keys grows it without bound.
MAX_KEYS = 4096


class RateLimit:
    """Each key may act ``rate`` times a second on average, ``burst`` times at once."""

    def __init__(self, rate, burst=None, clock=time.monotonic, max_keys=MAX_KEYS):
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets = {}
        self._lock = threading.Lock()

    def allow(self, key):
        """``(allowed, first)``: whether ``key`` may act now, and, when it may not,
        whether this is its first refusal since it last could (to log only that one)."""
        now = self._clock()
        with self._lock:
            tokens, last, refused = self._buckets.get(key, (self.burst, now, False))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._keep(key, (tokens - 1, now, False), now)
                return True, False
            self._keep(key, (tokens, now, True), now)
            return False, not refused

    def _keep(self, key, bucket, now):
        if key not in self._buckets and len(self._buckets) >= self._max_keys:
            self._buckets = {k: b for k, b in self._buckets.items()
                             if min(self.burst, b[0] + (now - b[1]) * self.rate) < self.burst}
            if len(self._buckets) >= self._max_keys:
                self._buckets.pop(next(iter(self._buckets)))
        self._buckets[key] = bucket
