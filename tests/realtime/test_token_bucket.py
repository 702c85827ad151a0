"""Token buckets."""

import time

from wsapp.realtime.limits import TokenBucket


def test_burst_then_refill():
    bucket = TokenBucket(rate=100, burst=10)
    assert all(bucket.take() for _ in range(10))
    assert not bucket.take()
    time.sleep(0.05)  # ~5 tokens back
    assert bucket.take()


def test_sizes_and_unlimited():
    bucket = TokenBucket(rate=1000)  # burst 2000
    assert bucket.take(1500) and not bucket.take(1000)
    unlimited = TokenBucket(rate=0)
    assert all(unlimited.take(10**9) for _ in range(3))
