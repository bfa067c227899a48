"""Pipelines as data and the score explained, on the real app (SQLite and PostgreSQL): stages
seeded from the presets, every stage change kept, lost needs a reason, won is the post-sale
rule, each scoring rule a `score_events` row."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import delete, select

from bot.core.errors import InvalidInput
from bot.core.model import SequenceState, utcnow
from bot.core.scoring import BOUGHT, UNANSWERED, UNANSWERED_COOLED
from bot.crm import record
from bot.web.console.render import Pages
from bot.web.keys import DATABASE, DESK, DISPATCHER, ENGINE, PIPELINES, SCHEDULER, SETTINGS
from storage.models import (
    Activity,
    Agent,
    Lead,
    LostReason,
    Pipeline,
    ScoreEvent,
    SequenceRun,
    Stage,
    StageChange,
)
from storage.uow import UnitOfWork

SESSION = "Zk3v9QmT2xLp7RbN4wYc8A"


async def started(service: Any, **overrides: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await service(**overrides)
    await client.app[SCHEDULER].pause()
    await client.app[DISPATCHER].stop(timeout=1)
    return client


@pytest.fixture
async def client(service: Any) -> TestClient[Any, Any]:
    return await started(service)


async def say(client: TestClient[Any, Any], text: str, session: str = SESSION) -> None:
    response = await client.post("/webchat/messages", json={"session_id": session, "text": text})
    assert response.status == 200, await response.text()


async def rows(client: TestClient[Any, Any], model: Any, *where: Any) -> list[Any]:
    async with client.app[DATABASE].session() as session:
        statement = select(model).where(*where).order_by(model.id)
        return list((await session.execute(statement)).scalars())


async def the_lead(client: TestClient[Any, Any]) -> Lead:
    [lead] = await rows(client, Lead)
    return lead


async def test_the_presets_are_seeded_as_data_once(client: TestClient[Any, Any]) -> None:
    pipelines = {p.key: p for p in await rows(client, Pipeline)}
    assert set(pipelines) == {"funnel", "real_estate"}
    estate = await rows(client, Stage, Stage.pipeline_id == pipelines["real_estate"].id)
    assert [(s.key, s.name, s.outcome, s.cadence_days, s.reason_required) for s in estate] == [
        ("prospecto", "Prospecto", "open", 3, False),
        ("apartado", "Apartado", "open", 2, False),
        ("escriturado", "Escriturado", "won", 7, False),
        ("entregado", "Entregado", "won", 30, False),
        ("cancelado", "Cancelado", "lost", None, True),
    ]
    reasons = [r.label for r in await rows(client, LostReason)]
    assert reasons == client.app[SETTINGS].pipeline.lost_reasons
    # An admin renames a stage; starting again seeds nothing over it.
    pipelines_service = client.app[PIPELINES]
    await pipelines_service.edit_stage(
        estate[0].id, name="Interesado", cadence_days=2, agent_id=None
    )
    await pipelines_service.seed()
    again = await rows(client, Stage, Stage.pipeline_id == pipelines["real_estate"].id)
    assert (again[0].name, again[0].cadence_days) == ("Interesado", 2)
    assert len(await rows(client, Stage)) == 10
    assert len(await rows(client, LostReason)) == len(reasons)


async def test_a_new_lead_enters_its_first_stage_on_record(client: TestClient[Any, Any]) -> None:
    await say(client, "hola")
    lead = await the_lead(client)
    assert (lead.stage, lead.pipeline) == ("awareness", "funnel")
    assert lead.stage_changed_at == lead.first_contact_at
    [change] = await rows(client, StageChange)
    assert (change.lead_id, change.from_stage, change.to_stage) == (lead.id, None, "awareness")
    kinds = [a.kind for a in await rows(client, Activity)]
    assert kinds == ["created"]


async def test_lost_needs_a_reason_from_the_list_said_in_spanish(service: Any) -> None:
    client = await started(service, pipeline={"preset": "real_estate"})
    await say(client, "hola")
    lead = await the_lead(client)
    with pytest.raises(InvalidInput) as refused:
        await client.app[PIPELINES].move(lead.id, "cancelado", agent_id=None)
    text = Pages(client.app[SETTINGS]).refusal(refused.value)
    assert text == "Para pasar a Cancelado elige un motivo de pérdida de la lista."
    assert (await the_lead(client)).stage == "prospecto"

    reason = client.app[SETTINGS].pipeline.lost_reasons[0]
    moved = await client.app[PIPELINES].move(lead.id, "cancelado", reason=reason)
    assert (moved.from_stage, moved.to_stage, moved.reason) == ("prospecto", "cancelado", reason)
    lead = await the_lead(client)
    assert (lead.stage, lead.lost_reason) == ("cancelado", reason)
    changes = await rows(client, StageChange)
    assert [(c.from_stage, c.to_stage, c.reason) for c in changes] == [
        (None, "prospecto", None),
        ("prospecto", "cancelado", reason),
    ]
    assert lead.stage_changed_at == changes[-1].at
    [stage_activity] = await rows(client, Activity, Activity.kind == "stage")
    assert stage_activity.details == {"from": "prospecto", "to": "cancelado", "reason": reason}


async def test_won_is_the_post_sale_rule_scores_bought_and_swaps_the_sequence(
    client: TestClient[Any, Any],
) -> None:
    await say(client, "hola")
    lead = await the_lead(client)
    before = lead.score
    await client.app[PIPELINES].move(lead.id, "purchase")
    lead = await the_lead(client)
    bought = client.app[SETTINGS].scoring.signals["bought"]
    assert lead.score == min(50, before + bought)
    [event] = await rows(client, ScoreEvent, ScoreEvent.rule == BOUGHT)
    assert event.points == lead.score - before
    [run] = await rows(client, SequenceRun)
    assert (run.sequence, run.state) == ("post_sale", SequenceState.ACTIVE)
    # Moving on stops that stage's sequence, as a stage change always did.
    await client.app[PIPELINES].move(lead.id, "intent")
    [run] = await rows(client, SequenceRun)
    assert (run.state, run.stop_reason) == (SequenceState.STOPPED, "stage changed")


async def test_the_api_moves_stages_with_the_same_rules(client: TestClient[Any, Any]) -> None:
    await say(client, "hola")
    lead = await the_lead(client)
    _, token = await client.app[DESK].add_agent("Ana")
    auth = {"Authorization": f"Bearer {token}"}
    url = f"/api/leads/{lead.id}/stage"
    response = await client.post(url, json={"stage": "nope"}, headers=auth)
    assert response.status == 400
    response = await client.post(url, json={"stage": "interest"}, headers=auth)
    assert response.status == 200
    [_, change] = await rows(client, StageChange)
    assert (change.to_stage, change.agent_id) == ("interest", (await rows(client, Agent))[0].id)


async def test_every_message_rule_is_a_score_event_and_they_add_up(
    client: TestClient[Any, Any],
) -> None:
    await say(client, "¿cuánto cuesta?")
    await say(client, "¿aceptan pagos a meses?")
    lead = await the_lead(client)
    events = await rows(client, ScoreEvent)
    points = client.app[SETTINGS].scoring.points
    assert [(e.rule, e.points) for e in events] == [
        ("intent:info.pricing", points["info.pricing"]),
        ("intent:info.payment_options", points["info.payment_options"]),
    ]
    assert lead.score == client.app[SETTINGS].scoring.initial + sum(e.points for e in events)


async def test_opting_out_and_not_interested_lower_the_score(client: TestClient[Any, Any]) -> None:
    await say(client, "no me interesa")
    await say(client, "ya no me escriban, baja")
    rules = [(e.rule, e.points) for e in await rows(client, ScoreEvent)]
    signals = client.app[SETTINGS].scoring
    assert ("intent:objection.not_interested", signals.points["objection.not_interested"]) in rules
    assert rules[-1][0] == "opted_out" and rules[-1][1] < 0


async def test_three_unanswered_attempts_in_two_weeks_make_a_lead_cold(
    client: TestClient[Any, Any],
) -> None:
    await say(client, "quiero comprar")  # hot
    lead = await the_lead(client)
    assert lead.tier == "hot"
    scoring = client.app[ENGINE].rules.scoring
    now = utcnow()
    for days_ago in (20, 10, 5):  # the first is outside the two weeks
        async with UnitOfWork(client.app[DATABASE]) as uow:
            found = await uow.leads.get(lead.id)
            assert found is not None
            await record.unanswered(uow, found, scoring, now - timedelta(days=days_ago))
            await uow.commit()
    assert (await the_lead(client)).tier == "warm"  # two within the window so far
    async with UnitOfWork(client.app[DATABASE]) as uow:
        found = await uow.leads.get(lead.id)
        assert found is not None
        await record.unanswered(uow, found, scoring, now)
        await uow.commit()
    lead = await the_lead(client)
    assert (lead.score, lead.tier) == (29, "cold")
    rules = [e.rule for e in await rows(client, ScoreEvent)]
    assert rules.count(UNANSWERED) == 4 and rules[-1] == UNANSWERED_COOLED
    total = sum(e.points for e in await rows(client, ScoreEvent))
    assert lead.score == client.app[SETTINGS].scoring.initial + total


async def test_processes_starting_together_on_a_new_database_seed_once(
    client: TestClient[Any, Any],
) -> None:
    # `serve --workers 2` (or two replicas) on an empty database: both find no pipelines and
    # both seed; the one that loses the race must start all the same, not die at start-up.
    async with UnitOfWork(client.app[DATABASE]) as uow:
        for model in (Stage, LostReason, Pipeline):
            await uow.session.execute(delete(model))
        await uow.commit()
    pipelines_service = client.app[PIPELINES]
    await asyncio.gather(pipelines_service.seed(), pipelines_service.seed())
    assert {p.key for p in await rows(client, Pipeline)} == {"funnel", "real_estate"}
    assert len(await rows(client, Stage)) == 10
    assert len(await rows(client, LostReason)) == len(client.app[SETTINGS].pipeline.lost_reasons)
