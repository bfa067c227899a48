"""Where a message's CPU goes, step by step, in process (issue 15).

`.venv/bin/python -m bench.stages [--messages 600]`: a throw-away PostgreSQL database, the
same two paths as `bench.throughput.profile` (a new lead; a known conversation where the bot
answers), with `time.process_time()` taken inside each storage call of the hot path and the
matcher. Messages run one after the other, so a step's CPU is its own (plus, rarely, a
background task of the app that ran while it waited).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from bench.core_webchat import postgres_database, realistic_texts
from bench.throughput import profile
from bot.conversation.engine import Engine
from bot.conversation.understanding import Understanding
from storage import migrate, repositories, uow
from storage.db import Database
from storage.materials import Materials

STEPS: list[tuple[type, str]] = [
    (Engine, "receive"),
    (repositories.Conversations, "for_sender_watched"),
    (repositories.Conversations, "open_for_new_lead"),
    (repositories.Messages, "add_inbound_after"),
    (Understanding, "match"),
    (repositories.Outbox, "insert_with_message"),
    (Materials, "active"),
    (repositories.Appointments, "next_for"),
    (uow.UnitOfWork, "commit"),
]


def timed(
    function: Callable[..., Any], cpu: dict[str, float], calls: Counter[str], name: str
) -> Any:
    if asyncio.iscoroutinefunction(function):

        @functools.wraps(function)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return await function(*args, **kwargs)
            finally:
                cpu[name] += time.process_time() - started
                calls[name] += 1

        return timed_async

    @functools.wraps(function)
    def timed_sync(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            cpu[name] += time.process_time() - started
            calls[name] += 1

    return timed_sync


async def main(messages: int) -> None:
    cpu: defaultdict[str, float] = defaultdict(float)
    calls: Counter[str] = Counter()
    for owner, method in STEPS:
        name = f"{owner.__name__}.{method}"
        setattr(owner, method, timed(getattr(owner, method), cpu, calls, name))
    texts = realistic_texts()
    async with postgres_database() as url:
        db = Database(url)
        await migrate.upgrade(db)
        await db.dispose()
        await profile(url, texts, 100)  # warm up: statements compiled, matcher loaded
        cpu.clear()
        calls.clear()
        figures = await profile(url, texts, messages)
    received = calls["Engine.receive"]
    for path, values in figures.items():
        print(
            f"{path}: {values['statements']:.2f} statements, CPU {values['cpu_ms']:.2f} ms"
            " per message"
        )
    print(f"per message, both paths ({received} messages):")
    for name, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
        print(f"  {seconds / received * 1000:6.3f} ms  {calls[name] / received:4.2f} calls  {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=600, help="messages per path")
    asyncio.run(main(parser.parse_args().messages))
