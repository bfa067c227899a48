"""The CRM's JSON API (SQLite and PostgreSQL): the same bearer tokens and roles as the rest of
the API; filters, a lead's record, PATCH (owner and admins), activities, deals, pipelines."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from bot.core.model import utcnow
from bot.web.keys import DATABASE, DESK, DISPATCHER, SCHEDULER, SETTINGS, UNDERSTANDING
from storage.models import Activity, Lead, StageChange


@pytest.fixture
async def client(service: Any) -> TestClient[Any, Any]:
    started: TestClient[Any, Any] = await service()
    await started.app[DISPATCHER].stop(timeout=1)
    await started.app[SCHEDULER].pause()
    return started


async def token(client: TestClient[Any, Any], name: str, *, admin: bool = False) -> dict[str, str]:
    _, secret = await client.app[DESK].add_agent(name, admin=admin)
    return {"Authorization": f"Bearer {secret}"}


async def leads(client: TestClient[Any, Any], count: int) -> list[Lead]:
    for n in range(count):
        session = f"sesion-de-prueba-{n:04d}-abcdef"
        response = await client.post(
            "/webchat/messages", json={"session_id": session, "text": "hola"}
        )
        assert response.status == 200
    async with client.app[DATABASE].session() as session:
        return list((await session.execute(select(Lead).order_by(Lead.id))).scalars())


async def change(client: TestClient[Any, Any], lead_id: int, **values: Any) -> None:
    async with client.app[DATABASE].session() as session:
        await session.execute(update(Lead).where(Lead.id == lead_id).values(**values))
        await session.commit()


async def test_the_lead_list_needs_a_token_and_filters(client: TestClient[Any, Any]) -> None:
    a, b, c = await leads(client, 3)
    assert (await client.get("/api/leads")).status == 401
    auth = await token(client, "Carla", admin=True)
    carla_id = 1
    await change(client, a.id, stage="intent", tier="hot", score=44, owner_id=carla_id)
    await change(client, b.id, last_activity_at=utcnow() - timedelta(days=9), tags=["vip"])

    async def ids(query: str) -> list[int]:
        response = await client.get(f"/api/leads{query}", headers=auth)
        assert response.status == 200, await response.text()
        return [lead["id"] for lead in (await response.json())["leads"]]

    assert await ids("?stage=intent&tier=hot") == [a.id]
    assert await ids(f"?owner={carla_id}") == [a.id]
    assert await ids("?idle_days=7") == [b.id]
    assert await ids("?tag=vip") == [b.id]
    assert sorted(await ids("?owner=0")) == [b.id, c.id]
    body = await (await client.get("/api/leads?per_page=2", headers=auth)).json()
    assert (body["total"], body["pages"], len(body["leads"])) == (3, 2, 2)
    for bad in ("?tier=tibio", "?idle_days=-1", "?created_from=ayer", "?sort=random"):
        assert (await client.get(f"/api/leads{bad}", headers=auth)).status == 400


async def test_a_lead_s_record_and_its_score_explained(client: TestClient[Any, Any]) -> None:
    [lead] = await leads(client, 1)
    auth = await token(client, "Carla")
    body = await (await client.get(f"/api/leads/{lead.id}", headers=auth)).json()
    assert (body["stage"], body["stage_name"], body["score"]) == ("awareness", "Conocimiento", 30)
    assert body["score_explained"] == ["Puntuación inicial: 30"]
    assert (await client.get("/api/leads/999999", headers=auth)).status == 404


async def test_patch_is_for_the_owner_and_admins(client: TestClient[Any, Any]) -> None:
    [lead] = await leads(client, 1)
    admin = await token(client, "Carla", admin=True)
    agent = await token(client, "Beto")
    url = f"/api/leads/{lead.id}"
    assert (await client.patch(url, json={"name": "Ana"}, headers=agent)).status == 403
    response = await client.patch(
        url, json={"name": "Ana", "tags": ["VIP", "vip"], "owner_id": 2}, headers=admin
    )
    assert response.status == 200
    body = await response.json()
    assert (body["name"], body["tags"], body["owner_id"]) == ("Ana", ["vip"], 2)
    # Now Beto owns it: he may change it.
    assert (await client.patch(url, json={"stage": "interest"}, headers=agent)).status == 200
    async with client.app[DATABASE].session() as session:
        changes = list((await session.execute(select(StageChange))).scalars())
        kinds = [
            a.kind
            for a in (await session.execute(select(Activity).order_by(Activity.id))).scalars()
        ]
    assert [c.to_stage for c in changes] == ["awareness", "interest"] and changes[-1].agent_id == 2
    assert kinds == ["created", "field", "owner", "tags", "stage"]
    for bad in ({"nope": 1}, {"tags": "vip"}, {"owner_id": "dos"}, {"stage": "cancelado"}):
        assert (await client.patch(url, json=bad, headers=admin)).status == 400
    assert (await client.patch(url, data="{", headers=admin)).status in (400, 415)


async def test_activities_are_logged_and_listed(client: TestClient[Any, Any]) -> None:
    [lead] = await leads(client, 1)
    auth = await token(client, "Carla", admin=True)
    url = f"/api/leads/{lead.id}/activities"
    call = {
        "kind": "call",
        "result": "answered_interested",
        "duration_minutes": 12,
        "occurred_at": "2026-11-20T10:00:00-06:00",
        "body": "Quiere visitar el sábado",
    }
    response = await client.post(url, json=call, headers=auth)
    assert response.status == 201
    for bad in (
        {**call, "result": "tal vez"},
        {**call, "kind": "fax"},
        {**call, "duration_minutes": "doce"},
        {**call, "occurred_at": "2026-11-20T10:00:00"},
    ):
        assert (await client.post(url, json=bad, headers=auth)).status == 400
    listed = (await (await client.get(url, headers=auth)).json())["activities"]
    assert [a["kind"] for a in listed] == ["created", "call"][::-1] or listed[0][
        "kind"
    ] == "created"
    [logged] = [a for a in listed if a["kind"] == "call"]
    assert (logged["result"], logged["duration_minutes"]) == ("answered_interested", 12)
    assert logged["occurred_at"].startswith("2026-11-20T16:00:00")


async def test_deals_and_pipelines(client: TestClient[Any, Any]) -> None:
    [lead] = await leads(client, 1)
    admin = await token(client, "Carla", admin=True)
    agent = await token(client, "Beto")
    made = await client.post(
        f"/api/leads/{lead.id}/deals",
        json={"product": "Plan Pro", "amount": 999.5, "currency": "mxn"},
        headers=admin,
    )
    assert made.status == 201
    deal = await made.json()
    assert (deal["amount"], deal["currency"], deal["status"]) == ("999.50", "MXN", "open")
    lose = f"/api/deals/{deal['id']}/lose"
    assert (await client.post(lose, json={"reason": "x"}, headers=admin)).status == 400
    reason = client.app[SETTINGS].pipeline.lost_reasons[0]
    lost = await (await client.post(lose, json={"reason": reason}, headers=admin)).json()
    assert (lost["status"], lost["lost_reason"]) == ("lost", reason) and lost["closed_at"]
    listed = await (await client.get(f"/api/leads/{lead.id}/deals", headers=agent)).json()
    assert [d["id"] for d in listed["deals"]] == [deal["id"]]

    pipelines = await (await client.get("/api/pipelines", headers=agent)).json()
    assert pipelines["default"] == "funnel"
    estate = next(p for p in pipelines["pipelines"] if p["key"] == "real_estate")
    cancelled = estate["stages"][-1]
    assert (cancelled["name"], cancelled["outcome"], cancelled["reason_required"]) == (
        "Cancelado", "lost", True,
    )  # fmt: skip
    first = estate["stages"][0]
    url = f"/api/stages/{first['id']}"
    assert (await client.patch(url, json={"name": "Nuevo"}, headers=agent)).status == 403
    edited = await client.patch(url, json={"name": "Nuevo", "cadence_days": 4}, headers=admin)
    assert edited.status == 200
    again = await (await client.get("/api/pipelines", headers=agent)).json()
    estate = next(p for p in again["pipelines"] if p["key"] == "real_estate")
    assert (estate["stages"][0]["name"], estate["stages"][0]["cadence_days"]) == ("Nuevo", 4)


async def test_the_record_has_objections_next_action_and_referrals(
    client: TestClient[Any, Any],
) -> None:
    from storage.models import ScheduledAction

    for text in ("es muy caro", "está carísimo"):
        response = await client.post(
            "/webchat/messages", json={"session_id": "sesion-de-prueba-0000-abcdef", "text": text}
        )
        assert response.status == 200
    [lead] = await leads(client, 1)
    auth = await token(client, "Carla")
    body = await (await client.get(f"/api/leads/{lead.id}", headers=auth)).json()
    [price] = body["objections"]
    assert (price["intent"], price["count"]) == ("objection.price", 2)
    assert price["label"] == client.app[UNDERSTANDING].label("objection.price")
    async with client.app[DATABASE].session() as session:
        pending = (
            (
                await session.execute(
                    select(ScheduledAction)
                    .where(ScheduledAction.lead_id == lead.id, ScheduledAction.state == "pending")
                    .order_by(ScheduledAction.due_at, ScheduledAction.id)
                )
            )
            .scalars()
            .first()
        )
        await session.execute(
            update(ScheduledAction).where(ScheduledAction.state == "pending").values(state="done")
        )
        due = utcnow() + timedelta(hours=5)
        session.add(
            ScheduledAction(kind="sequence.step", due_at=due, lead_id=lead.id,
                            payload={"sequence": "cold", "step": 0}, created_at=utcnow())
        )  # fmt: skip
        await session.commit()
    # What the bot had scheduled first for the new lead was its next action.
    assert pending is not None
    assert (body["next_action"]["kind"], body["next_action"]["at"]) == (
        pending.kind, pending.due_at.isoformat(),
    )  # fmt: skip
    body = await (await client.get(f"/api/leads/{lead.id}", headers=auth)).json()
    assert body["next_action"]["kind"] == "sequence.step"
    assert (body["next_action"]["sequence"], body["next_action"]["step"]) == ("cold", 1)
    assert body["next_action"]["at"] == due.isoformat()
    assert (body["referred_by_id"], body["referrals"]) == (None, [])


async def test_patch_sets_who_referred_the_lead_and_refuses_bad_referrers(
    client: TestClient[Any, Any],
) -> None:
    a, b = await leads(client, 2)
    admin = await token(client, "Carla", admin=True)
    url = f"/api/leads/{a.id}"
    for bad in (a.id, 999999, "dos", True, 0):
        refused = await client.patch(url, json={"referred_by_id": bad}, headers=admin)
        assert refused.status == 400, bad
    response = await client.patch(url, json={"referred_by_id": b.id}, headers=admin)
    assert response.status == 200
    assert (await response.json())["referred_by_id"] == b.id
    referrer = await (await client.get(f"/api/leads/{b.id}", headers=admin)).json()
    assert referrer["referrals"] == [a.id]
    response = await client.patch(url, json={"referred_by_id": None}, headers=admin)
    assert (await response.json())["referred_by_id"] is None
    async with client.app[DATABASE].session() as session:
        fields = [
            a.details
            for a in (
                await session.execute(select(Activity).where(Activity.kind == "field"))
            ).scalars()
        ]
    assert fields == [
        {"field": "referred_by_id", "from": None, "to": b.id},
        {"field": "referred_by_id", "from": b.id, "to": None},
    ]
