"""What a crash mid-send does to Telegram replies: duplicates, held messages, lost ones.

`seguibot serve` on PostgreSQL answers one update from each of `--chats` chats; the fake Bot
API takes `--latency` seconds to answer each sendMessage (after it has taken the message, as
Telegram does). Once about a third of the replies arrived the service is killed with SIGKILL,
started again, and left to finish. Counted at the fake and in the database, per chat: replies
that arrived once, twice, never, and rows held for an agent ("uncertain"). Run once with the
default (`telegram.resend_uncertain: false`, hold) and once with `true` (send again).

Run: `.venv/bin/python -m bench.crash_telegram [--chats 100] [--latency 0.5]`
Needs PostgreSQL (BENCH_POSTGRES_URL, as bench/core_webchat.py).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.core_webchat import ROOT, free_port, postgres_database, wait_until_up
from handlers.telegram import SECRET_HEADER
from storage import migrate
from storage.db import Database
from tests.fakes.telegram_api import FakeTelegramServer

SECRET = "bench-crash-secret"
UPDATE = ROOT / "tests/data/telegram/message_text_private.json"


def update(chat: int, n: int) -> bytes:
    body: dict[str, Any] = json.loads(UPDATE.read_text(encoding="utf-8"))
    body["update_id"] = 800_000_000 + n
    message = body["message"]
    message["message_id"] = 900_000  # the fake numbers its own messages from 1
    message["chat"]["id"] = message["from"]["id"] = chat
    message["text"] = "hola, ¿cuánto cuesta?"
    return json.dumps(body).encode()


def start(port: int, env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bot", "serve", "--port", str(port)]
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)


async def run(chats: int, latency: float, resend: bool) -> dict[str, Any]:
    async with postgres_database() as url, FakeTelegramServer(latency=latency) as tg:
        db = Database(url)
        await migrate.upgrade(db)
        await db.dispose()
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "SEGUIBOT_TELEGRAM_TOKEN": tg.token,
            "SEGUIBOT_TELEGRAM_WEBHOOK_SECRET": SECRET,
            "SEGUIBOT_TELEGRAM_API_BASE_URL": tg.base_url,
            "SEGUIBOT_TELEGRAM_PER_CHAT_INTERVAL": "0",
            "SEGUIBOT_TELEGRAM_RESEND_UNCERTAIN": json.dumps(resend),
            "SEGUIBOT_OUTBOX_LEASE_SECONDS": "3",
            "SEGUIBOT_SCHEDULING_POLL_SECONDS": "3600",  # only replies in this run
            "SEGUIBOT_LOGGING_LEVEL": "WARNING",
        }
        base = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryFile() as log:
            first = start(port, env, log)
            await wait_until_up(base, "/healthz")
            headers = {SECRET_HEADER: SECRET, "Content-Type": "application/json"}
            async with aiohttp.ClientSession() as session:

                async def post(n: int) -> int:
                    body = update(7_200_000_000 + n, n)
                    async with session.post(
                        base + "/webhooks/telegram", data=body, headers=headers
                    ) as response:
                        return response.status

                statuses = await asyncio.gather(*(post(n) for n in range(chats)))
            assert set(statuses) == {200}, collections.Counter(statuses)
            while len(tg.calls_to("sendMessage")) < chats // 3:  # noqa: ASYNC110 - a fake's list
                await asyncio.sleep(0.01)
            first.send_signal(signal.SIGKILL)
            first.wait()
            killed_at = len(tg.calls_to("sendMessage"))
            second = start(port, env, log)
            await wait_until_up(base, "/healthz")
            engine = create_async_engine(url)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                async with engine.connect() as conn:
                    open_rows = await conn.scalar(
                        text("SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')")
                    )
                if open_rows == 0:
                    break
                await asyncio.sleep(0.5)
            async with engine.connect() as conn:
                held = await conn.scalar(
                    text("SELECT count(*) FROM outbox WHERE last_error LIKE 'uncertain%'")
                )
            await engine.dispose()
            second.terminate()
            second.wait(timeout=30)
        per_chat = collections.Counter(
            call.params["chat_id"] for call in tg.calls_to("sendMessage")
        )
        arrived = [per_chat.get(7_200_000_000 + n, 0) for n in range(chats)]
        return {
            "policy": "resend" if resend else "hold",
            "chats": chats,
            "sent before the kill": killed_at,
            "arrived once": sum(1 for n in arrived if n == 1),
            "arrived twice or more": sum(1 for n in arrived if n > 1),
            "never arrived": sum(1 for n in arrived if n == 0),
            "held for an agent": held,
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.5)
    args = parser.parse_args()
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores")
    print(f"# {args.chats} chats, sendMessage answered after {args.latency} s, SIGKILL at 1/3")
    for resend in (False, True):
        result = await run(args.chats, args.latency, resend)
        print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())
