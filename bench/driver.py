"""What the hot path's own statements cost below SQLAlchemy: the floor of a rewrite (issue 15).

`.venv/bin/python -m bench.driver [--messages 600]`: a throw-away PostgreSQL database; the
same two paths as `bench.throughput.profile` (a new lead; a known conversation where the bot
answers), in process, one message after the other. For each message the statements the
engine sends to the driver are recorded as sent (SQL text and parameters, after SQLAlchemy's
processing), and then run again, each message's statements in one transaction as the engine
runs them:

1. the engine itself (`Engine.receive`: ORM session, matcher, policy, everything);
2. the same statements through SQLAlchemy Core without the ORM (`exec_driver_sql` on a pooled
   `AsyncConnection`, `BEGIN` and `COMMIT` by SQLAlchemy's asyncpg adapter);
3. the same statements on one asyncpg connection (`transaction()` and `fetch`).

Replayed messages get fresh message ids (and, on the new-lead path, fresh senders), so every
replay inserts as the recording did; the rows they point to (a new lead's CRM rows, a reply's
conversation) are the recorded ones, which changes nothing of the statements' shape. The CPU
is this process's (`time.process_time()`), PostgreSQL's is not in it. What a message costs
beyond the statements (the matcher, the engine's Python, the HTTP layer) is not replayed: the
matcher's share is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy import event

from bench.core_webchat import postgres_database, realistic_texts
from bench.throughput import ANSWERED, session_id, web_chat_message
from bot.app import create_app
from bot.conversation.engine import Engine
from bot.conversation.understanding import Understanding
from bot.core.channel import InboundMessage
from bot.settings import load_settings
from bot.web.keys import DATABASE, ENGINE
from storage import migrate
from storage.db import Database


@dataclass(slots=True)
class Recorded:
    """One message's statements as the driver got them, and the ids to give a replay."""

    sender: str
    message_id: str
    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def fresh(self, n: int, new_sender: bool) -> list[tuple[str, tuple[Any, ...]]]:
        """The statements with a new message id (and sender): they insert as the first did."""
        renamed = {self.message_id: f"{self.message_id}:r{n}"}
        if new_sender:
            renamed[self.sender] = session_id()
        return [
            (sql, tuple(renamed.get(p, p) if isinstance(p, str) else p for p in parameters))
            for sql, parameters in self.statements
        ]


async def cpu_per(count: int, step: Callable[[int], Awaitable[None]]) -> float:
    """CPU milliseconds per call of `step(0) ... step(count - 1)`."""
    started = time.process_time()
    for n in range(count):
        await step(n)
    return (time.process_time() - started) / count * 1000


class Paths:
    """The engine of a throw-away database, its two paths, and the statements each sent."""

    def __init__(self, engine: Engine, database: Database, connection: asyncpg.Connection) -> None:
        self.engine = engine
        self.database = database
        self.connection = connection
        self.texts = realistic_texts()
        self.known = [session_id() for _ in range(20)]
        self.recording: list[Recorded] = []
        self.matcher_cpu = 0.0

        @event.listens_for(database.engine.sync_engine, "before_cursor_execute")
        def record(_conn: Any, _cursor: Any, sql: str, parameters: Any, *_: Any) -> None:
            if self.recording:
                self.recording[-1].statements.append((sql, tuple(parameters or ())))

    def inbound(self, new: bool, n: int) -> InboundMessage:
        if new:
            sender = session_id()
            return web_chat_message(sender, n, self.texts[n % len(self.texts)])
        sender = self.known[n % len(self.known)]
        return web_chat_message(sender, n, ANSWERED[n % len(ANSWERED)])

    async def measure(self, path: str, count: int) -> str:
        new = path == "new lead"
        for n in range(100):  # warm up: statements compiled and prepared
            await self.engine.receive(self.inbound(new, -1 - n))
        self.recording.clear()
        self.matcher_cpu = 0.0

        async def through_engine(n: int) -> None:
            inbound = self.inbound(new, n)
            self.recording.append(Recorded(inbound.sender_id, inbound.message_id))
            await self.engine.receive(inbound)

        engine_ms = await cpu_per(count, through_engine)
        matcher_ms = self.matcher_cpu / count * 1000
        messages, self.recording = self.recording, []
        statements = sum(len(m.statements) for m in messages) / count

        async def through_core(statements: list[tuple[str, tuple[Any, ...]]]) -> None:
            async with self.database.engine.connect() as conn:
                for sql, parameters in statements:
                    await conn.exec_driver_sql(sql, parameters)
                await conn.commit()

        async def on_driver(statements: list[tuple[str, tuple[Any, ...]]]) -> None:
            async with self.connection.transaction():
                for sql, parameters in statements:
                    await self.connection.fetch(sql, *parameters)

        figures: dict[str, list[float]] = {"core": [], "driver": []}
        for round_ in range(4):  # in turn, twice each
            name, replay = ("core", through_core) if round_ % 2 == 0 else ("driver", on_driver)

            async def step(n: int, round_: int = round_, replay: Replay = replay) -> None:
                await replay(messages[n].fresh(round_, new))

            figures[name].append(await cpu_per(count, step))
        core, driver = (" / ".join(f"{ms:.2f}" for ms in figures[k]) for k in ("core", "driver"))
        return (
            f"{path}: {statements:.2f} statements per message (and BEGIN, COMMIT); CPU ms per"
            f" message: engine {engine_ms:.2f} (matcher {matcher_ms:.2f}), its statements"
            f" through SQLAlchemy Core {core}, on asyncpg {driver}"
        )


Replay = Callable[[list[tuple[str, tuple[Any, ...]]]], Awaitable[None]]


async def main(count: int) -> None:
    async with postgres_database() as url:
        db = Database(url)
        await migrate.upgrade(db)
        await db.dispose()
        settings = load_settings(environ={"DATABASE_URL": url, "SEGUIBOT_LOGGING_LEVEL": "WARNING"})
        app = create_app(settings)
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        paths = Paths(app[ENGINE], app[DATABASE], connection)
        match = Understanding.match

        @functools.wraps(match)
        def timed_match(self: Understanding, *args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return match(self, *args, **kwargs)
            finally:
                paths.matcher_cpu += time.process_time() - started

        Understanding.match = timed_match  # type: ignore[method-assign]
        try:
            for sender in paths.known:
                await paths.engine.receive(web_chat_message(sender, "open", "hola"))
            for path in ("new lead", "known conversation"):
                print(await paths.measure(path, count), flush=True)
        finally:
            Understanding.match = match  # type: ignore[method-assign]
            await connection.close()
            await paths.database.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=600, help="messages per path")
    asyncio.run(main(parser.parse_args().messages))
