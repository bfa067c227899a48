"""The team from the command line's side: unique names and e-mails, deactivating, removing,
replacing a token (bot/desk/team.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from bot.core.errors import ConflictError, NotFound
from bot.desk.accounts import Accounts
from bot.desk.handoff import Desk, hash_token
from bot.desk.team import Team
from bot.web.keys import DATABASE, DESK
from storage.db import Database
from storage.models import Agent
from storage.uow import UnitOfWork

SESSION = "sesion-equipo-0001-Kq7mZ2xW9p"


async def test_names_and_emails_are_unique_in_any_case(db: Database) -> None:
    desk = Desk(db)
    await desk.add_agent("José Núñez", email="jose@example.com")
    with pytest.raises(ConflictError, match="name 'JOSÉ NÚÑEZ' already exists"):
        await desk.add_agent("JOSÉ NÚÑEZ")
    with pytest.raises(ConflictError, match=r"email 'Jose@Example\.COM' already exists"):
        await desk.add_agent("Otro", email="Jose@Example.COM")
    other, _ = await desk.add_agent("Otra")
    with pytest.raises(ConflictError, match="already called"):
        await Team(db).rename(str(other.id), "josé núñez")


async def test_the_database_refuses_duplicates_that_skip_the_service(db: Database) -> None:
    await Desk(db).add_agent("Ana", email="ana@example.com")
    for name, email in (("ANA", None), ("Bea", "ANA@example.com")):
        async with db.session() as session:
            session.add(Agent(name=name, email=email, token_hash=hash_token(name), role="agent"))
            with pytest.raises(IntegrityError):
                await session.commit()


async def test_a_duplicate_that_slips_past_the_check_is_a_conflict(db: Database) -> None:
    # Two `agents add` at once both pass the check; the index stops the second as a refusal.
    await Desk(db).add_agent("Ana")
    async with UnitOfWork(db) as uow:
        with pytest.raises(ConflictError, match="already exists"):
            await uow.agents.add(Agent(name="ANA", token_hash=hash_token("x"), role="agent"))


async def test_deactivating_returns_conversations_to_the_queue_and_stops_the_token(
    service: Any,
) -> None:
    client = await service()
    await client.post(
        "/webchat/messages", json={"session_id": SESSION, "text": "quiero hablar con un asesor"}
    )
    desk: Desk = client.app[DESK]
    team = Team(client.app[DATABASE])
    carla, token = await desk.add_agent("Carla", email="carla@example.com")
    [waiting] = await desk.queue()
    await desk.claim(waiting.conversation_id, carla)
    assert await desk.queue() == []

    done = await team.deactivate("CARLA@example.com")
    assert done.requeued == [waiting.conversation_id]
    assert await desk.authenticate(token) is None
    [again] = await desk.queue()
    assert again.conversation_id == waiting.conversation_id
    assert again.requested_at == waiting.requested_at  # keeps its place in the queue
    luis, _ = await desk.add_agent("Luis")
    await desk.claim(again.conversation_id, luis)

    assert (await team.activate("carla")).active
    assert (await desk.authenticate(token)) is not None


async def test_deactivating_ends_sessions_unassigns_and_is_audited(service: Any) -> None:
    client = await service()
    desk: Desk = client.app[DESK]
    db = client.app[DATABASE]
    beto, _ = await desk.add_agent("Beto")
    await client.post(
        "/webchat/messages", json={"session_id": SESSION, "text": "quiero hablar con un asesor"}
    )
    [waiting] = await desk.queue()
    assert waiting.assigned_to == "Beto"  # the assignment rules picked the only agent

    await Team(db).deactivate("beto")
    [waiting] = await desk.queue()
    assert waiting.assigned_to is None  # waits for whoever takes it
    after = await Team(db).get("beto")
    assert not after.active and after.session_epoch == beto.session_epoch + 1
    events, _ = await Accounts(db).audit(
        action="agent_deactivated", agent_id=None, since=datetime.now(UTC) - timedelta(hours=1)
    )
    assert [(e.subject, e.address) for e in events] == [(f"agent:{beto.id}", "command line")]


async def test_a_new_token_replaces_the_old_one(db: Database) -> None:
    desk = Desk(db)
    agent, old = await desk.add_agent("Dora")
    _, new = await Team(db).new_token(str(agent.id))
    assert new != old
    assert await desk.authenticate(old) is None
    found = await desk.authenticate(new)
    assert found is not None and found.id == agent.id


async def test_only_an_agent_without_history_can_be_removed(service: Any) -> None:
    client = await service()
    await client.post(
        "/webchat/messages", json={"session_id": SESSION, "text": "quiero hablar con un asesor"}
    )
    desk: Desk = client.app[DESK]
    team = Team(client.app[DATABASE])
    carla, _ = await desk.add_agent("Carla")
    [waiting] = await desk.queue()
    await desk.claim(waiting.conversation_id, carla)
    await desk.reply(waiting.conversation_id, carla, "Hola, soy Carla")
    with pytest.raises(ConflictError, match=r"has history \(1 messages.*deactivate them instead"):
        await team.remove("Carla")

    mistake, _ = await desk.add_agent("Carlaa")
    assert (await team.remove("carlaa")).id == mistake.id
    with pytest.raises(NotFound):
        await team.get(str(mistake.id))


async def test_two_processes_seeding_the_lists_at_once_leave_one_set(
    db: Database, database_url: str
) -> None:
    """Two services starting together on an empty database both find the lists empty."""
    other = Database(database_url)
    try:
        await asyncio.gather(
            Desk(db).seed_lists(["Venta"], {"hola": "¡Hola!"}),
            Desk(other).seed_lists(["Venta"], {"hola": "¡Hola!"}),
        )
    finally:
        await other.dispose()
    desk = Desk(db)
    assert [r.shortcut for r in await desk.canned_replies()] == ["hola"]
    async with UnitOfWork(db) as uow:
        assert [r.label for r in await uow.lists.close_reasons(active_only=False)] == ["Venta"]
