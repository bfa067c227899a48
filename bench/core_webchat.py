"""Inbound web-chat messages -> reply committed to the outbox, on PostgreSQL.

Measures, in one run and with the same load generator:
1. throughput of a bare aiohttp handler that parses the same JSON and does nothing else;
2. throughput of `seguibot serve` (each request a new message: dedupe, lead, NLU, policy,
   reply row in the outbox, one transaction);
3. latency of `seguibot serve` at steady rates (default 100 and 50 messages/s; open loop:
   requests leave on schedule whether or not earlier ones finished);
4. where the time goes inside the engine (NLU, SQL round trips, the rest), in process.

Run: `.venv/bin/python -m bench.core_webchat [--seconds 15] [--concurrency 32] [--rates 100,50]`
Needs PostgreSQL (BENCH_POSTGRES_URL, default postgresql+asyncpg://postgres@127.0.0.1/test).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot.app import create_app
from bot.core.channel import Channel, InboundMessage
from bot.settings import load_settings
from bot.web.keys import DATABASE, ENGINE
from intents import load_catalogue
from storage import migrate
from storage.db import Database

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)

BARE_SERVER = """
import sys
from aiohttp import web

async def handle(request):
    data = await request.json()
    return web.json_response({"message_id": data.get("message_id"), "replies": []})

app = web.Application()
app.router.add_post("/webchat/messages", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def realistic_texts() -> list[str]:
    """A mix of what prospects type: the scripts' examples plus long and odd messages."""
    texts = [example.text for example in load_catalogue().all_examples()]
    texts += ["hola " * 200, "😂😂😂", "<b>hola</b>", "ok", "¿?"]
    random.Random(7).shuffle(texts)
    return texts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    name = f"seguibot_bench_{os.getpid()}"
    admin = create_async_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@contextlib.contextmanager
def server(command: list[str], port: int, env: dict[str, str]) -> Iterator[str]:
    """Run a server for the block; what it logs goes to a file, shown if it wrote anything
    (a pipe nobody reads would stall a talkative server)."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            log.seek(0)
            if logged := log.read().decode(errors="replace").strip():
                print(f"  {command[-3:]} logged:\n{logged[-2000:]}", file=sys.stderr)


async def wait_until_up(base: str, path: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(base + path) as response:
                    if response.status < 500:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{base} did not come up")


@dataclass
class Counter:
    ok: int = 0
    errors: int = 0


def payloads(texts: list[str], tag: str) -> Iterator[bytes]:
    for n in itertools.count():
        body = {
            "session_id": f"bench-{tag}-{n % 2000:05d}-Kq7mZ2xW9p",
            "text": texts[n % len(texts)],
            "message_id": f"{tag}-{n}",
        }
        yield json.dumps(body).encode()


async def closed_loop(base: str, texts: list[str], seconds: float, concurrency: int) -> float:
    """Messages per second with `concurrency` clients each sending as fast as answered."""
    bodies = payloads(texts, uuid.uuid4().hex[:6])
    counter = Counter()
    deadline = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                async with session.post(
                    base + "/webchat/messages", data=next(bodies), headers=headers
                ) as response:
                    await response.read()
                    if response.status == 200:
                        counter.ok += 1
                    else:
                        counter.errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if counter.errors:
        print(f"  warning: {counter.errors} non-200 answers", file=sys.stderr)
    return counter.ok / elapsed


async def open_loop(base: str, texts: list[str], rate: float, seconds: float) -> list[float]:
    """Latencies (ms) of requests sent at a steady `rate`, whatever the answers do."""
    bodies = payloads(texts, uuid.uuid4().hex[:6])
    latencies: list[float] = []
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(body: bytes) -> None:
            started = time.perf_counter()
            async with session.post(base + "/webchat/messages", data=body, headers=headers) as r:
                await r.read()
                if r.status == 200:
                    latencies.append((time.perf_counter() - started) * 1000)

        tasks = []
        start = time.perf_counter()
        for n in range(int(rate * seconds)):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(next(bodies))))
        await asyncio.gather(*tasks)
    return latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def profile_engine(url: str, texts: list[str], count: int) -> dict[str, float]:
    """Per-message milliseconds inside the engine: total, NLU, SQL (driver round trips)."""
    settings = load_settings(environ={"DATABASE_URL": url, "SEGUIBOT_LOGGING_LEVEL": "WARNING"})
    app = create_app(settings)
    engine, db = app[ENGINE], app[DATABASE]
    sql = {"seconds": 0.0, "statements": 0}
    starts: dict[int, float] = {}

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        starts[id(cursor)] = time.perf_counter()

    @event.listens_for(db.engine.sync_engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sql["seconds"] += time.perf_counter() - starts.pop(id(cursor), time.perf_counter())
        sql["statements"] += 1

    matcher = engine.understanding
    now = datetime.now(UTC)
    started = time.perf_counter()
    for n in range(count):
        matcher.match(texts[n % len(texts)].strip(), now, "America/Mexico_City")
    nlu = (time.perf_counter() - started) / count

    sql["seconds"], sql["statements"] = 0.0, 0
    started = time.perf_counter()
    for n in range(count):
        await engine.receive(
            InboundMessage(
                channel=Channel.WEBCHAT,
                sender_id=f"profile-{n % 500:04d}",
                message_id=f"profile-{n}",
                text=texts[n % len(texts)],
                sent_at=datetime.now(UTC),
                reply_inline=True,
            )
        )
    total = (time.perf_counter() - started) / count
    await db.dispose()
    return {
        "total_ms": total * 1000,
        "nlu_ms": nlu * 1000,
        "sql_ms": sql["seconds"] / count * 1000,
        "statements": sql["statements"] / count,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--rates",
        default="100,50",
        help="steady rates (messages/s) to measure latency at, comma-separated",
    )
    args = parser.parse_args()
    texts = realistic_texts()

    async with postgres_database() as url:
        db = Database(url)
        await migrate.upgrade(db)
        await db.dispose()

        env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUIBOT_")}
        env.update(DATABASE_URL=url, SEGUIBOT_LOGGING_LEVEL="WARNING")
        bare_port, bot_port = free_port(), free_port()
        with server([sys.executable, "-c", BARE_SERVER, str(bare_port)], bare_port, env) as bare:
            await wait_until_up(bare, "/")
            await closed_loop(bare, texts, 2, args.concurrency)  # warm up
            bare_rate = await closed_loop(bare, texts, args.seconds, args.concurrency)
        serve = [sys.executable, "-m", "bot", "serve", "--port", str(bot_port)]
        with server(serve, bot_port, env) as bot:
            await wait_until_up(bot, "/readyz")
            await closed_loop(bot, texts, 2, args.concurrency)  # warm up
            bot_rate = await closed_loop(bot, texts, args.seconds, args.concurrency)
            steady = {}
            for rate in (float(r) for r in args.rates.split(",")):
                await asyncio.sleep(3)  # let the previous phase's backlog drain
                steady[rate] = await open_loop(bot, texts, rate, args.seconds)
        profile = await profile_engine(url, texts, 2000)

    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d}"
    )
    print(f"bare aiohttp handler:    {bare_rate:8.0f} req/s")
    print(f"seguibot web chat:       {bot_rate:8.0f} msg/s  ({bot_rate / bare_rate:.1%} of bare)")
    for rate, latencies in steady.items():
        print(
            f"steady {rate:>4.0f} msg/s:        p50 {percentile(latencies, 50):.1f} ms, "
            f"p95 {percentile(latencies, 95):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
            f"max {max(latencies):.1f} ms ({len(latencies)} of {int(rate * args.seconds)} answered)"
        )
    rest = profile["total_ms"] - profile["nlu_ms"] - profile["sql_ms"]
    print(
        f"engine, in process:      {profile['total_ms']:.2f} ms/msg = NLU {profile['nlu_ms']:.2f}"
        f" + SQL {profile['sql_ms']:.2f} ({profile['statements']:.1f} statements)"
        f" + ORM/Python {rest:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
