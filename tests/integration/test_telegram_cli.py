"""`seguibot telegram set-webhook | delete-webhook | poll`, run as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.fakes.telegram_api import FakeTelegramServer

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cli-secret_token"


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer() as server:
        yield server


def environment(tg: FakeTelegramServer, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUIBOT_")}
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        SEGUIBOT_TELEGRAM_TOKEN=tg.token,
        SEGUIBOT_TELEGRAM_WEBHOOK_SECRET=SECRET,
        SEGUIBOT_TELEGRAM_API_BASE_URL=tg.base_url,
        SEGUIBOT_PUBLIC_URL="https://bot.example.com",
    )
    return env


async def seguibot(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_set_webhook_registers_url_secret_and_updates(
    tg: FakeTelegramServer, tmp_path: Path
) -> None:
    code, out, err = await seguibot("telegram", "set-webhook", env=environment(tg, tmp_path))
    assert code == 0, err
    assert "https://bot.example.com/webhooks/telegram" in out
    assert tg.webhook is not None
    assert tg.webhook.url == "https://bot.example.com/webhooks/telegram"
    assert tg.webhook.secret_token == SECRET
    assert set(tg.webhook.allowed_updates or []) == {
        "message",
        "edited_message",
        "callback_query",
        "my_chat_member",
    }


async def test_a_rejected_token_is_reported_without_the_token(
    tg: FakeTelegramServer, tmp_path: Path
) -> None:
    env = {**environment(tg, tmp_path), "SEGUIBOT_TELEGRAM_TOKEN": "987654321:not-the-right-one"}
    code, out, err = await seguibot("telegram", "set-webhook", env=env)
    assert code == 1
    assert "Telegram refused the bot token: check SEGUIBOT_TELEGRAM_TOKEN" in err
    assert "not-the-right-one" not in err + out
    tg.take_rejected()


@pytest.mark.parametrize(
    ("base_url", "why"),
    [
        ("http://127.0.0.1:{port}/bot", "connection refused"),
        ("http://seguibot-no-such-host.invalid/bot", "the host name does not resolve (DNS"),
    ],
)
async def test_an_unreachable_api_is_named_with_the_reason_and_without_the_token(
    tmp_path: Path, base_url: str, why: str
) -> None:
    token = "123456:the-secret-part"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUIBOT_")}
    url = base_url.format(port=free_port())  # nothing listens there
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        SEGUIBOT_TELEGRAM_TOKEN=token,
        SEGUIBOT_TELEGRAM_API_BASE_URL=url,
    )
    code, out, err = await seguibot("telegram", "delete-webhook", env=env)
    assert code == 2
    assert err.count("\n") == 1, err  # one line, no traceback
    assert f"seguibot: could not reach {url}<token>/getMe: {why}" in err
    assert "the-secret-part" not in err + out


async def test_poll_refuses_while_a_webhook_is_set(tg: FakeTelegramServer, tmp_path: Path) -> None:
    env = environment(tg, tmp_path)
    assert (await seguibot("telegram", "set-webhook", env=env))[0] == 0
    code, _, err = await seguibot("telegram", "poll", env=env)
    assert code == 1
    assert "a Telegram webhook is set" in err


async def test_poll_answers_through_the_same_engine(tg: FakeTelegramServer, tmp_path: Path) -> None:
    env = environment(tg, tmp_path)
    assert (await seguibot("telegram", "set-webhook", env=env))[0] == 0
    update = json.loads((ROOT / "tests/data/telegram/message_text_private.json").read_text())
    chat = update["message"]["chat"]["id"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "telegram",
        "poll",
        "--delete-webhook",
        "--port",
        str(free_port()),
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        tg.push_update(update)
        # A new database: the process migrates it and trains the matcher before it polls, which
        # on a loaded machine takes tens of seconds; the loop ends at the reply.
        deadline = time.monotonic() + 90
        while not tg.sent_texts(chat) and process.returncode is None:
            assert time.monotonic() < deadline, "no reply arrived through polling"
            await asyncio.sleep(0.05)
        assert tg.sent_texts(chat), f"poll exited {process.returncode} without replying"
        assert tg.webhook is None  # deleted: never both at once
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=20)
    assert process.returncode == 0
