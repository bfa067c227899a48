"""The outbox dispatcher against a real database and a scripted sender."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from bot.app import create_app
from bot.conversation.engine import Engine
from bot.core.errors import RetryLater, SendFailed
from bot.core.model import Channel, DeliveryStatus, OutboxState
from bot.delivery.dispatcher import Dispatcher
from bot.metrics import Metrics
from bot.settings import Settings
from bot.web.keys import ENGINE
from storage.db import Database
from storage.models import ChannelIdentity, OutboxItem
from tests.builders import incoming, make_outbox_due, message_of, outbox_rows
from tests.conftest import make_settings
from tests.fakes.senders import ScriptedSender

TG = Channel.TELEGRAM


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(
        database_url, outbox={"max_attempts": 3, "lease_seconds": 30, "backoff_base": 10.0}
    )


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[Engine]:
    app = create_app(settings)
    yield app[ENGINE]
    await app[ENGINE].db.dispose()


def dispatcher(db: Database, settings: Settings, sender: ScriptedSender) -> Dispatcher:
    return Dispatcher(db, {sender.channel: sender}, settings.outbox, Metrics(), sleep=_no_wait)


async def say(engine: Engine, text: str, sender: str = "tg-1") -> None:
    await engine.receive(incoming(text, sender=sender, channel=TG, inline=False))


async def test_sent_message_is_recorded(engine: Engine, db: Database, settings: Settings) -> None:
    await say(engine, "hola")
    sender = ScriptedSender(TG)
    await dispatcher(db, settings, sender).drain()
    [row] = await outbox_rows(db)
    assert [m.recipient for m in sender.sent] == ["tg-1"]
    assert row.state == OutboxState.DONE and row.attempts == 1
    assert message_of(row).status == DeliveryStatus.SENT
    assert message_of(row).channel_message_id == f"ext-{row.id}-1"


async def test_transient_failure_is_retried_then_sent(
    engine: Engine, db: Database, settings: Settings
) -> None:
    await say(engine, "hola")
    sender = ScriptedSender(TG, [RetryLater("timeout")])
    outbox = dispatcher(db, settings, sender)
    await outbox.drain()
    [row] = await outbox_rows(db)
    assert row.state == OutboxState.PENDING and row.last_error == "timeout"
    await make_outbox_due(db)
    await outbox.drain()
    [row] = await outbox_rows(db)
    assert row.state == OutboxState.DONE and row.attempts == 2
    assert len(sender.attempts) == 2 and len(sender.sent) == 1


async def test_channel_retry_after_is_honoured(
    engine: Engine, db: Database, settings: Settings
) -> None:
    await say(engine, "hola")
    before = datetime.now(UTC)
    await dispatcher(db, settings, ScriptedSender(TG, [RetryLater("429", after=30)])).drain()
    [row] = await outbox_rows(db)
    assert row.state == OutboxState.PENDING
    assert before + timedelta(seconds=29) < row.next_attempt_at < before + timedelta(seconds=32)


async def test_gives_up_after_the_budget(engine: Engine, db: Database, settings: Settings) -> None:
    await say(engine, "hola")
    sender = ScriptedSender(TG, [RetryLater("down")] * 5)
    outbox = dispatcher(db, settings, sender)
    for _ in range(settings.outbox.max_attempts):
        await outbox.drain()
        await make_outbox_due(db)
    [row] = await outbox_rows(db)
    assert row.state == OutboxState.FAILED and row.attempts == 3
    assert message_of(row).status == DeliveryStatus.FAILED
    assert "down" in (message_of(row).error or "")
    assert len(sender.attempts) == 3


async def test_permanent_failure_is_not_retried(
    engine: Engine, db: Database, settings: Settings
) -> None:
    await say(engine, "hola")
    sender = ScriptedSender(TG, [SendFailed("Bad Request: chat not found", "400")])
    await dispatcher(db, settings, sender).drain()
    [row] = await outbox_rows(db)
    assert row.state == OutboxState.FAILED and len(sender.attempts) == 1
    assert message_of(row).error == "Bad Request: chat not found"


async def test_unreachable_lead_is_not_sent_to_again(
    engine: Engine, db: Database, settings: Settings
) -> None:
    await say(engine, "hola")
    sender = ScriptedSender(
        TG, [SendFailed("bot was blocked by the user", "403", unreachable=True)]
    )
    outbox = dispatcher(db, settings, sender)
    await outbox.drain()
    await say(engine, "¿cuánto cuesta?")
    await outbox.drain()
    first, second = await outbox_rows(db)
    assert first.state == second.state == OutboxState.BLOCKED
    assert second.last_error == "unreachable"
    assert len(sender.attempts) == 1
    async with db.session() as session:
        identity = (await session.execute(select(ChannelIdentity))).scalar_one()
    assert not identity.reachable


async def test_opted_out_lead_gets_only_the_confirmation(
    engine: Engine, db: Database, settings: Settings
) -> None:
    await say(engine, "hola")
    await say(engine, "ya no me escriban")
    sender = ScriptedSender(TG)
    await dispatcher(db, settings, sender).drain()
    greeting, confirmation = await outbox_rows(db)
    assert greeting.state == OutboxState.BLOCKED and greeting.last_error == "opted_out"
    assert confirmation.state == OutboxState.DONE
    assert [m.text for m in sender.sent] == [message_of(confirmation).text]


async def test_one_chat_stays_in_order_while_others_go_on(
    engine: Engine, db: Database, settings: Settings
) -> None:
    await say(engine, "hola", sender="slow")
    await say(engine, "¿cuánto cuesta?", sender="slow")
    await say(engine, "hola", sender="fast")
    sender = ScriptedSender(TG, [RetryLater("429", after=60)])
    await dispatcher(db, settings, sender).drain()
    slow_first, slow_second, fast = await outbox_rows(db)
    assert slow_first.state == OutboxState.PENDING  # waiting for its retry
    assert slow_second.state == OutboxState.PENDING and slow_second.attempts == 0
    assert fast.state == OutboxState.DONE


async def test_restart_takes_over_a_dead_claim_and_never_repeats_a_sent_one(
    engine: Engine, db: Database, settings: Settings
) -> None:
    await say(engine, "hola", sender="a")
    await say(engine, "hola", sender="b")
    first = ScriptedSender(TG)
    await dispatcher(db, settings, first).drain()
    await say(engine, "¿cuánto cuesta?", sender="a")
    # A dispatcher claims the new row and dies before settling it: the lease runs out.
    async with db.session() as session:
        await session.execute(
            update(OutboxItem)
            .where(OutboxItem.state == OutboxState.PENDING)
            .values(state=OutboxState.SENDING, lease_until=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    second = ScriptedSender(TG)
    await dispatcher(db, settings, second).drain()
    assert [m.recipient for m in second.sent] == ["a"]
    assert all(row.state == OutboxState.DONE for row in await outbox_rows(db))


async def test_stop_lets_sends_in_flight_finish(
    engine: Engine, db: Database, settings: Settings
) -> None:
    await say(engine, "hola")
    outbox = dispatcher(db, settings, ScriptedSender(TG, delay=0.3))
    outbox.start()
    outbox.wake()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if (await outbox_rows(db))[0].state == OutboxState.SENDING:
            break
    await outbox.stop(timeout=5)
    [row] = await outbox_rows(db)
    assert row.state == OutboxState.DONE


@pytest.mark.postgres
async def test_two_dispatchers_send_each_row_once(
    engine: Engine, db: Database, settings: Settings
) -> None:
    if not db.url.startswith("postgresql"):
        pytest.skip("concurrent claims are a PostgreSQL concern (SQLite serialises writers)")
    for n in range(60):
        await say(engine, "hola", sender=f"lead-{n}")
    senders = [ScriptedSender(TG, delay=0.002) for _ in range(2)]
    a, b = (dispatcher(db, settings, s) for s in senders)
    await asyncio.gather(a.drain(), b.drain())
    recipients = [m.recipient for s in senders for m in s.sent]
    assert sorted(recipients) == sorted(f"lead-{n}" for n in range(60))
    assert all(s.sent for s in senders), "both dispatchers should have taken a share"


async def test_a_sent_message_is_recorded_even_if_the_first_try_fails(
    engine: Engine, db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await say(engine, "hola")
    sender = ScriptedSender(TG)
    outbox = dispatcher(db, settings, sender)
    real_settle = outbox._settle
    failures = iter([ConnectionResetError("database connection dropped")])

    async def flaky_settle(*args: object, **kwargs: object) -> None:
        if (failure := next(failures, None)) is not None:
            raise failure
        await real_settle(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(outbox, "_settle", flaky_settle)
    await outbox.drain()
    [row] = await outbox_rows(db)
    assert row.state == OutboxState.DONE
    assert len(sender.sent) == 1  # recorded on the second try, never sent again


async def _no_wait(seconds: float) -> None:
    return None
