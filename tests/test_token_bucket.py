"""Token buckets: the one bucket, full at first, refilled at its rate, never above its
burst; and a bucket a key for the setter's rate limit."""

from fingerd.token_bucket import RateLimit, TokenBucket


def test_starts_full_and_takes_what_it_has():
    bucket = TokenBucket(2, 3, now=10.0)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_refills_at_its_rate_up_to_its_burst():
    bucket = TokenBucket(2, 3, now=10.0)
    assert bucket.take(3)
    assert bucket.refill(10.5) == 1.0, "two a second: one after half a second"
    assert bucket.level(100.0) == 3, "never above the burst"
    assert bucket.tokens == 1.0, "level only looks"
    assert bucket.refill(100.0) == 3


def test_a_cost_above_the_tokens_takes_nothing():
    bucket = TokenBucket(1, 5, now=0.0)
    assert not bucket.take(6)
    assert bucket.tokens == 5
    assert bucket.take(5) and bucket.tokens == 0


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_burst_then_the_rate():
    clock = Clock()
    limit = RateLimit(2, burst=3, clock=clock)
    assert [limit.allow("alice")[0] for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5
    assert limit.allow("alice") == (True, False), "one token back after half a second"
    assert limit.allow("alice") == (False, False), "not slowed down: the same run"
    clock.now += 1.5
    assert limit.allow("alice") == (True, False)
    assert limit.allow("alice") == (True, False)
    assert limit.allow("alice") == (True, False)
    assert limit.allow("alice") == (False, True), "full again, then refused: a new run"


def test_a_key_kept_at_the_rate_is_one_run_of_refusals():
    """A flood allowed a token at a time is refused all along: its first refusal alone is
    first, however long it lasts, so its warning is logged once."""
    clock = Clock()
    limit = RateLimit(5, clock=clock)
    seen = []
    for _ in range(1000):
        clock.now += 0.01
        seen.append(limit.allow("flood"))
    assert sum(allowed for allowed, _ in seen) > 50, "the burst, then about 5 a second"
    assert [first for _, first in seen].count(True) == 1


def test_only_the_first_refusal_in_a_row_is_first():
    clock = Clock()
    limit = RateLimit(1, clock=clock)
    assert limit.allow("a") == (True, False)
    assert limit.allow("a") == (False, True)
    assert limit.allow("a") == (False, False)
    clock.now += 1
    assert limit.allow("a") == (True, False)
    assert limit.allow("a") == (False, True), "a new run of refusals is reported again"


def test_keys_are_separate():
    limit = RateLimit(1, clock=Clock())
    assert limit.allow("a")[0] and limit.allow("b")[0]
    assert not limit.allow("a")[0]


def test_memory_is_bounded_and_full_buckets_go_first():
    clock = Clock()
    limit = RateLimit(1, clock=clock, max_keys=10)
    for i in range(100):
        limit.allow(f"k{i}")
    assert len(limit._buckets) <= 10
    clock.now += 5
    assert limit.allow("busy")[0] and not limit.allow("busy")[0]
    for i in range(5):
        limit.allow(f"new{i}")
    assert len(limit._buckets) <= 10
    assert not limit.allow("busy")[0], "the empty bucket was kept, full ones forgotten"
