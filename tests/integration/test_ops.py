"""Operations: health, readiness, metrics, unknown routes, and a database that goes away."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from bot.web.keys import DATABASE
from storage.models import Message

SESSION = "sesion-ops-0001-Kq7mZ2xW9p"


async def test_healthz(service: Any) -> None:
    client = await service()
    response = await client.get("/healthz")
    assert response.status == 200 and (await response.json()) == {"status": "ok"}


async def test_readyz_checks_database_and_schema(service: Any) -> None:
    client = await service()
    response = await client.get("/readyz")
    assert response.status == 200 and (await response.json())["status"] == "ready"


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
