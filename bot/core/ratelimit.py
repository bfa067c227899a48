"""Rate limits per key (a client address, an account): token buckets kept in memory.

Per process: with several processes each allows the rate, which is what a limit against
scraping and guessing needs (an order of magnitude, not an exact count).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    """Allows `rate` events per `per` seconds for each key, in bursts of up to `burst`."""

    def __init__(
        self,
        rate: float,
        per: float,
        *,
        burst: float | None = None,
        max_keys: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refill = rate / per  # tokens per second
        self.burst = burst if burst is not None else rate
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait(self, key: str) -> float:
        """Take one token for `key`: 0.0 when allowed now, else the seconds until it would be."""
        now = self.clock()
        tokens, since = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - since) * self.refill)
        if tokens >= 1:
            tokens -= 1
            wait = 0.0
        else:
            wait = (1 - tokens) / self.refill
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)  # the key idle the longest: a full bucket anyway
        return wait
