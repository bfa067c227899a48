"""Token buckets per key."""

from __future__ import annotations

from bot.core.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(60, 60, burst=3, clock=clock)
    assert [limiter.wait("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait("a") == 1.0  # one token a second
    clock.now = 1.0
    assert limiter.wait("a") == 0.0


def test_keys_are_independent_and_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(1, 60, max_keys=2, clock=clock)
    assert limiter.wait("a") == 0.0
    assert limiter.wait("a") > 0
    assert limiter.wait("b") == 0.0
    assert limiter.wait("c") == 0.0  # "a" was forgotten: the oldest key goes first
    assert limiter.wait("a") == 0.0
