"""The one token bucket: full at first, refilled at its rate, never above its burst."""

from fingerd.token_bucket import TokenBucket


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
