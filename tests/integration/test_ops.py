"""Operations: health, readiness, metrics, unknown routes, and a database that goes away."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from bot.core.channel import Channel
from bot.core.errors import RetryLater, SendFailed
from bot.core.model import ActionState, utcnow
from bot.web.keys import DATABASE, DESK, DISPATCHER, SCHEDULER
from storage.models import Handoff, Message, OutboxItem, ScheduledAction
from tests.fakes.senders import ScriptedSender

ALERTS = Path(__file__).resolve().parents[2] / "docs" / "alerts.yml"

SESSION = "sesion-ops-0001-Kq7mZ2xW9p"


async def test_healthz(service: Any) -> None:
    client = await service()
    response = await client.get("/healthz")
    assert response.status == 200 and (await response.json()) == {"status": "ok"}


async def test_readyz_checks_database_and_schema(service: Any) -> None:
    client = await service()
    # Asked again as an orchestrator asks: on a loaded machine the database's 3 s ping can
    # miss its time while the service starts (the full suite did, once); a 503 says why.
    for _ in range(20):
        response = await client.get("/readyz")
        body = await response.json()
        if response.status == 200:
            break
        assert (response.status, body["status"]) == (503, "unavailable"), body
        await asyncio.sleep(0.5)
    assert (response.status, body) == (200, {"status": "ready"}), body


async def test_metrics_count_messages_and_replies(service: Any) -> None:
    client = await service()
    await client.post("/webchat/messages", json={"session_id": SESSION, "text": "hola"})
    text = await (await client.get("/metrics")).text()
    for name in (
        'seguibot_inbound_messages_total{channel="webchat",result="stored"}',
        'seguibot_replies_total{channel="webchat"}',
        "seguibot_engine_seconds_bucket",
        "seguibot_outbox_pending",
    ):
        assert name in text


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_show_what_to_alert_on(service: Any) -> None:
    """Queue length and the longest wait, the outbox backlog and its oldest row, failed sends
    by channel and code, and the scheduler's due backlog, as /metrics serves them."""
    sender = ScriptedSender(
        Channel.WEBCHAT, [SendFailed("refused", "E42"), RetryLater("busy", after=3600)]
    )
    client = await service(senders={Channel.WEBCHAT: sender})
    app = client.app
    await app[SCHEDULER].pause()  # the due action below must stay due
    empty = _samples(await (await client.get("/metrics")).text())
    assert empty[("seguibot_handoff_queue_length", ())] == 0
    assert empty[("seguibot_handoff_oldest_wait_seconds", ())] == 0

    for n in (1, 2):
        session = f"sesion-ops-cola-{n}-Kq7mZ2xW9pLr"
        await client.post(
            "/webchat/messages", json={"session_id": session, "text": "quiero hablar con un asesor"}
        )
    desk = app[DESK]
    agent, _ = await desk.add_agent("Carla")
    first, second = await desk.queue()
    await desk.claim(first.conversation_id, agent)
    await desk.reply(first.conversation_id, agent, "Hola, soy Carla")  # refused: E42
    await app[DISPATCHER].drain()
    await desk.reply(first.conversation_id, agent, "¿Sigues ahí?")  # retried in an hour
    await app[DISPATCHER].drain()
    now = utcnow()
    async with app[DATABASE].session() as session, session.begin():
        await session.execute(
            update(Handoff)
            .where(Handoff.conversation_id == second.conversation_id)
            .values(requested_at=now - timedelta(minutes=10))
        )
        await session.execute(
            update(OutboxItem)
            .where(OutboxItem.state == "pending")
            .values(created_at=now - timedelta(minutes=5))
        )
        session.add(
            ScheduledAction(
                kind="reminder.lead", due_at=now - timedelta(minutes=3), state=ActionState.PENDING
            )
        )

    samples = _samples(await (await client.get("/metrics")).text())
    assert samples[("seguibot_handoff_queue_length", ())] == 1
    assert 600 <= samples[("seguibot_handoff_oldest_wait_seconds", ())] < 700
    assert samples[("seguibot_outbox_pending", ())] == 1
    assert 300 <= samples[("seguibot_outbox_oldest_pending_seconds", ())] < 400
    failed = ("seguibot_outbox_failed_total", (("channel", "webchat"), ("code", "E42")))
    assert samples[failed] == 1
    assert samples[("seguibot_actions_due", ())] >= 1
    assert samples[("seguibot_actions_oldest_due_seconds", ())] >= 180


async def test_alert_rules_parse_and_name_only_exported_metrics(service: Any) -> None:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert len(alerts) >= 6
    for rule in alerts:
        assert set(rule) >= {"alert", "expr", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("page", "warning")
        assert rule["annotations"]["summary"]
    named = set(re.findall(r"\bseguibot_[a-z0-9_]+", ALERTS.read_text(encoding="utf-8")))

    client = await service()
    families = list(text_string_to_metric_families(await (await client.get("/metrics")).text()))
    exported = {family.name for family in families}
    for family in families:
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
        }.get(family.type, ())
        exported |= {family.name + suffix for suffix in suffixes}
    assert named - exported == set()
    for wanted in (
        "seguibot_handoff_queue_length",
        "seguibot_handoff_oldest_wait_seconds",
        "seguibot_outbox_oldest_pending_seconds",
        "seguibot_outbox_failed_total",
        "seguibot_actions_oldest_due_seconds",
    ):
        assert wanted in named


async def test_unknown_route_is_404_json(service: Any) -> None:
    client = await service()
    response = await client.get("/no-such-page")
    assert response.status == 404
    assert (await response.json()) == {"error": "not found"}


async def test_wrong_method_is_405(service: Any) -> None:
    client = await service()
    assert (await client.get("/webchat/messages")).status == 405


async def test_database_outage_is_503_and_writes_nothing(service: Any) -> None:
    client = await service()
    db = client.app[DATABASE]
    healthy_engine, healthy_sessions = db.engine, db.sessions
    # Point the running service at a server that is not there (nothing listens on port 1).
    dead = create_async_engine(
        "postgresql+asyncpg://postgres@127.0.0.1:1/none", connect_args={"timeout": 2}
    )
    db.engine, db.sessions = dead, async_sessionmaker(dead, expire_on_commit=False)
    try:
        response = await client.post(
            "/webchat/messages", json={"session_id": SESSION, "text": "hola"}
        )
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        assert "database" in (await response.json())["error"]
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/healthz")).status == 200
    finally:
        db.engine, db.sessions = healthy_engine, healthy_sessions
        await dead.dispose()
    async with db.session() as session:
        assert (await session.execute(select(func.count()).select_from(Message))).scalar_one() == 0
    # Back up: the channel's retry of the same message goes through.
    response = await client.post("/webchat/messages", json={"session_id": SESSION, "text": "hola"})
    assert response.status == 200
