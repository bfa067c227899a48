"""Admission control: at most N conversations' units of work at once, the rest wait in turn.

Without it every request takes a database connection as it arrives; past the pool's size they
all wait for one, the pool hands them out in no particular order, and latency and throughput
collapse together. With it, N units of work run (N is tied to the pool, so each gets a
connection at once), the others queue in arrival order, and one that has waited `wait` seconds
is turned away with `Overloaded`, which the web layer answers 503 with Retry-After (or, on a
channel that never delivers again, stores to handle later).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator

from bot.core.errors import Overloaded


class Admission:
    """A first-in, first-out gate of `limit` places with a bounded wait."""

    def __init__(self, limit: int, wait: float) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.wait = wait
        self.in_flight = 0
        self.refused = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for future in self._waiting if not future.done())

    @property
    def retry_after(self) -> int:
        """Seconds a refused sender should wait before trying again."""
        return max(1, math.ceil(self.wait))

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a place for the block.

        Raises:
            Overloaded: no place came free within `wait` seconds.
        """
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    async def _acquire(self) -> None:
        if self.in_flight < self.limit and not self._waiting:
            self.in_flight += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            async with asyncio.timeout(self.wait):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                # The place was handed over just as the wait ended: pass it on.
                self._release()
            else:
                turn.cancel()
                with contextlib.suppress(ValueError):
                    self._waiting.remove(turn)
            if isinstance(exc, TimeoutError):
                self.refused += 1
                raise Overloaded(self.retry_after) from None
            raise

    def _release(self) -> None:
        """Hand the place to the first still waiting, or free it."""
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # in_flight unchanged: the place changes hands
                return
        self.in_flight -= 1
