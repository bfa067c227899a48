"""The admission gate: N places, first come first served, a bounded wait, no place leaked."""

from __future__ import annotations

import asyncio

import pytest

from bot.conversation.admission import Admission
from bot.core.errors import Overloaded


async def test_places_go_to_waiters_in_the_order_they_came() -> None:
    gate = Admission(limit=2, wait=5)
    release = asyncio.Event()
    order: list[int] = []

    async def work(n: int) -> None:
        async with gate.slot():
            order.append(n)
            await release.wait()

    tasks = []
    for n in range(6):
        tasks.append(asyncio.create_task(work(n)))
        await asyncio.sleep(0)  # each arrives after the one before
    await asyncio.sleep(0.01)
    assert order == [0, 1]  # two places, the rest wait
    assert gate.in_flight == 2
    assert gate.waiting == 4
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4, 5]
    assert gate.in_flight == 0
    assert gate.waiting == 0


async def test_a_wait_past_the_bound_is_refused_with_a_retry_after() -> None:
    gate = Admission(limit=1, wait=0.05)
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot():
            held.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await held.wait()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Overloaded) as refused:
        async with gate.slot():
            pytest.fail("no place was free")
    assert 0.04 <= loop.time() - started < 1.0
    assert refused.value.retry_after == 1
    assert gate.refused == 1
    release.set()
    await holder
    # The refused waiter left no trace: the next one gets the place at once.
    async with gate.slot():
        assert gate.in_flight == 1
    assert gate.in_flight == 0


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    gate = Admission(limit=1, wait=5)
    release = asyncio.Event()
    got: list[str] = []

    async def work(name: str) -> None:
        async with gate.slot():
            got.append(name)
            await release.wait()

    first = asyncio.create_task(work("first"))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(work("cancelled"))
    third = asyncio.create_task(work("third"))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    release.set()
    await asyncio.gather(first, third)
    assert got == ["first", "third"]
    assert gate.in_flight == 0
