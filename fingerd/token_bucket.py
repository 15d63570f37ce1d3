"""A token bucket: ``rate`` tokens a second, at most ``burst`` at once.

The one refill formula of the daemon, for the setter's rate limit
(serving/rate_limit.py) and the parent's relay of worker log lines
(process/parent/logrelay.py). Pure: the time is an argument. Not thread-safe:
its owner locks, or owns it on one thread.
"""

from __future__ import annotations


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
