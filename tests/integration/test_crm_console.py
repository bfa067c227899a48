"""The CRM's console pages over HTTP (SQLite and PostgreSQL): the lead list and its filters,
saved filters, bulk actions and the audited CSV export; the lead page (score, stage, record
editable by its owner and admins only, deals, activities, notes, timeline); "Mis tareas"; the
board's moves (fetch and the no-JS form); notes from the conversation view."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from bot.core.model import utcnow
from bot.web.keys import DATABASE, DISPATCHER, DUPLICATES, SCHEDULER, SETTINGS, UNDERSTANDING
from storage.models import Activity, Agent, AuditEvent, Deal, Lead, SavedFilter, StageChange, Task
from tests.integration.test_console import Browser, _second_client, make_agent

ROW = re.compile(r'data-testid="lead-row" data-lead-id="(\d+)"')


@pytest.fixture
async def client(service: Any) -> TestClient[Any, Any]:
    started: TestClient[Any, Any] = await service(console={"secret": "pruebas-de-consola"})
    await started.app[DISPATCHER].stop(timeout=1)
    await started.app[SCHEDULER].pause()
    return started


async def say(client: TestClient[Any, Any], text: str, session: str) -> None:
    response = await client.post("/webchat/messages", json={"session_id": session, "text": text})
    assert response.status == 200, await response.text()


async def rows(client: TestClient[Any, Any], model: Any, *where: Any) -> list[Any]:
    async with client.app[DATABASE].session() as session:
        statement = select(model).where(*where).order_by(model.id)
        return list((await session.execute(statement)).scalars())


async def change(client: TestClient[Any, Any], lead_id: int, **values: Any) -> None:
    async with client.app[DATABASE].session() as session:
        await session.execute(update(Lead).where(Lead.id == lead_id).values(**values))
        await session.commit()


async def leads(client: TestClient[Any, Any], count: int) -> list[Lead]:
    for n in range(count):
        await say(client, "hola", f"sesion-de-prueba-{n:04d}-abcdef")
    return await rows(client, Lead)


async def signed_in(client: TestClient[Any, Any], name: str, *, admin: bool = False) -> Browser:
    """A browser of its own (its own cookies) signed in as a new agent."""
    await make_agent(client, name, admin=admin)
    browser = Browser(await _second_client(client))
    await browser.sign_in(f"{name.lower()}@example.com")
    return browser


async def listed(browser: Browser, query: str = "") -> list[int]:
    response = await browser.get(f"/console/leads{query}")
    assert response.status == 200, await response.text()
    return [int(i) for i in ROW.findall(await response.text())]


async def test_the_list_filters_by_what_sales_people_use(client: TestClient[Any, Any]) -> None:
    a, b, c = await leads(client, 3)
    browser = await signed_in(client, "Carla", admin=True)
    carla = (await rows(client, Agent))[0]
    now = utcnow()
    await change(client, a.id, stage="interest", tier="hot", score=45, owner_id=carla.id)
    await change(
        client, b.id, source="facebook", tags=["vip"], last_activity_at=now - timedelta(days=10)
    )
    await change(client, c.id, first_contact_at=now - timedelta(days=40))

    assert sorted(await listed(browser)) == [a.id, b.id, c.id]
    assert await listed(browser, "?stage=interest") == [a.id]
    assert await listed(browser, "?tier=hot") == [a.id]
    assert await listed(browser, f"?owner={carla.id}") == [a.id]
    assert sorted(await listed(browser, "?owner=0")) == [b.id, c.id]
    assert await listed(browser, "?source=facebook") == [b.id]
    assert await listed(browser, "?tag=vip") == [b.id]
    assert await listed(browser, "?idle_days=7") == [b.id]
    day = (now - timedelta(days=40)).astimezone(client.app[SETTINGS].business.tz).date()
    assert await listed(browser, f"?created_from={day}&created_to={day}") == [c.id]
    assert (await listed(browser, "?sort=score"))[0] == a.id
    assert (await listed(browser, "?sort=idle"))[0] in (b.id, c.id)
    refused = await browser.get("/console/leads?idle_days=muchos")
    assert refused.status == 400
    assert "El filtro «idle_days» no es válido." in await refused.text()


async def test_the_list_is_paginated_and_filters_are_saved(client: TestClient[Any, Any]) -> None:
    made = await leads(client, 3)
    browser = await signed_in(client, "Carla")
    first = await listed(browser, "?per_page=2&sort=created")
    second = await listed(browser, "?per_page=2&sort=created&page=2")
    assert len(first) == 2 and len(second) == 1
    assert sorted(first + second) == [lead.id for lead in made]
    page = await (await browser.get("/console/leads?per_page=2&sort=created")).text()
    assert "Página 1 de 2" in page and 'rel="next"' in page
    saved = await browser.post(
        "/console/leads/filters", {"name": "Calientes", "query": "tier=hot&sort=score"}
    )
    assert saved.status == 303
    [row] = await rows(client, SavedFilter)
    assert (row.name, row.query) == ("Calientes", "tier=hot&sort=score")
    assert (
        'href="/console/leads?tier=hot&amp;sort=score">Calientes'
        in await (await browser.get("/console/leads")).text()
    )


async def test_bulk_assign_and_tag_and_the_audited_csv_export(
    client: TestClient[Any, Any],
) -> None:
    a, b, c = await leads(client, 3)
    browser = await signed_in(client, "Carla", admin=True)
    await make_agent(client, "Beto")
    beto = (await rows(client, Agent, Agent.name == "Beto"))[0]
    await browser.get("/console/leads")
    form = [("csrf", browser.csrf), ("lead", str(a.id)), ("lead", str(b.id))]
    form += [("owner", str(beto.id)), ("tag", "Feria 2026")]
    response = await browser.client.post("/console/leads/bulk", data=form, allow_redirects=False)
    assert response.status == 303
    by_id = {lead.id: lead for lead in await rows(client, Lead)}
    assert by_id[a.id].owner_id == by_id[b.id].owner_id == beto.id
    assert by_id[a.id].tags == ["feria 2026"] and by_id[c.id].tags == []
    owners = await rows(client, Activity, Activity.kind == "owner")
    assert {o.lead_id for o in owners} == {a.id, b.id}
    carla = (await rows(client, Agent))[0]
    assert {o.agent_id for o in owners} == {carla.id}

    export = await browser.get(f"/console/leads/export.csv?owner={beto.id}")
    assert export.status == 200 and export.content_type == "text/csv"
    table = list(csv.DictReader(io.StringIO(await export.text())))
    assert sorted(int(r["id"]) for r in table) == [a.id, b.id]
    assert {r["owner"] for r in table} == {"Beto"} and {r["tags"] for r in table} == {"feria 2026"}
    [audit] = await rows(client, AuditEvent, AuditEvent.action == "leads_exported")
    assert audit.detail == {"filter": f"owner={beto.id}", "rows": 2}


async def test_agents_cannot_assign_in_bulk(client: TestClient[Any, Any]) -> None:
    [a] = await leads(client, 1)
    browser = await signed_in(client, "Beto")
    await browser.get("/console/leads")
    response = await browser.post("/console/leads/bulk", {"lead": str(a.id), "owner": "1"})
    assert response.status == 403


async def test_the_lead_page_shows_score_stage_and_the_rules(client: TestClient[Any, Any]) -> None:
    await say(client, "¿cuánto cuesta?", "sesion-de-prueba-precio-0001")
    [lead] = await rows(client, Lead)
    browser = await signed_in(client, "Carla")
    page = await (await browser.get(f"/console/leads/{lead.id}")).text()
    score = re.search(r'data-testid="score">(\d+)<', page)
    assert score is not None and int(score.group(1)) == lead.score == 33
    assert re.search(r'data-testid="stage" data-stage="awareness">Conocimiento<', page)
    assert "+3 Preguntó el precio" in page and "Puntuación inicial: 30" in page
    assert (await browser.get("/console/leads/999999")).status == 404


async def test_only_the_owner_and_admins_edit_the_record(client: TestClient[Any, Any]) -> None:
    [lead] = await leads(client, 1)
    owner = await signed_in(client, "Olga")
    other = await signed_in(client, "Beto")
    admin = await signed_in(client, "Carla", admin=True)
    olga = (await rows(client, Agent, Agent.name == "Olga"))[0]
    await change(client, lead.id, owner_id=olga.id)
    url = f"/console/leads/{lead.id}"
    await other.get(url)
    assert "Solo lectura" in await (await other.get(url)).text()
    for path, data in (
        (url, {"name": "Otro nombre"}),
        (f"{url}/activities", {"kind": "note", "body": "hola"}),
        (f"{url}/deals", {"product": "Depa", "amount": "1", "currency": "MXN"}),
        (f"{url}/stage", {"stage": "interest"}),
    ):
        assert (await other.post(path, data)).status == 403
    await owner.get(url)
    response = await owner.post(
        url, {"name": "Ana López", "email": "ana@example.com", "tags": "vip"}
    )
    assert response.status == 303
    await admin.get(url)
    assert (await admin.post(url, {"address": "Av. Reforma 1"})).status == 303
    found = (await rows(client, Lead))[0]
    assert (found.name, found.email, found.address, found.tags) == (
        "Ana López", "ana@example.com", "Av. Reforma 1", ["vip"],
    )  # fmt: skip
    fields = [
        (a.details["field"], a.agent_id)
        for a in await rows(client, Activity, Activity.kind == "field")
    ]
    carla = (await rows(client, Agent, Agent.name == "Carla"))[0]
    assert fields == [("name", olga.id), ("email", olga.id), ("address", carla.id)]
    assert (await owner.post(url, {"email": "no-es-correo"})).status == 400


async def test_deals_win_and_lose_with_a_reason(client: TestClient[Any, Any]) -> None:
    [lead] = await leads(client, 1)
    browser = await signed_in(client, "Carla", admin=True)
    url = f"/console/leads/{lead.id}"
    await browser.get(url)
    for product in ("Depa 101", "Depa 202"):
        response = await browser.post(
            f"{url}/deals", {"product": product, "amount": "1,250,000.50", "currency": "mxn"}
        )
        assert response.status == 303
    first, second = await rows(client, Deal)
    assert (first.amount, first.currency, first.status) == (1250000.50, "MXN", "open")
    assert (await browser.post(f"/console/deals/{first.id}/win")).status == 303
    refused = await browser.post(f"/console/deals/{second.id}/lose", {"reason": "porque sí"})
    assert refused.status == 400
    reason = client.app[SETTINGS].pipeline.lost_reasons[0]
    assert (
        await browser.post(f"/console/deals/{second.id}/lose", {"reason": reason})
    ).status == 303
    first, second = await rows(client, Deal)
    assert (first.status, second.status, second.lost_reason) == ("won", "lost", reason)
    assert first.closed_at is not None and second.closed_at is not None
    assert (await browser.post(f"/console/deals/{first.id}/lose", {"reason": reason})).status == 400
    page = await (await browser.get(url)).text()
    assert "Depa 101" in page and "Ganado" in page and reason in page


async def test_activities_notes_and_the_timeline_newest_first(client: TestClient[Any, Any]) -> None:
    [lead] = await leads(client, 1)
    browser = await signed_in(client, "Carla", admin=True)
    url = f"/console/leads/{lead.id}"
    await browser.get(url)
    call = {
        "kind": "call",
        "result": "call_back_later",
        "duration_minutes": "7",
        "occurred_at": "2026-11-20T10:30",
        "body": "Pide que le llame el lunes",
    }
    assert (await browser.post(f"{url}/activities", call)).status == 303
    bad = await browser.post(f"{url}/activities", {**call, "result": "maybe"})
    assert bad.status == 400 and "resultado de la llamada" in await bad.text()
    meeting = {
        "kind": "meeting",
        "place": "Oficina centro",
        "result": "Le gustó",
        "next_steps": "Enviar planos",
    }
    assert (await browser.post(f"{url}/activities", meeting)).status == 303
    assert (
        await browser.post(f"{url}/activities", {"kind": "note", "body": "Prefiere WhatsApp"})
    ).status == 303
    assert (await browser.post(f"{url}/activities", {"kind": "note", "body": " "})).status == 400
    logged = {a.kind: a for a in await rows(client, Activity)}
    assert (logged["call"].result, logged["call"].duration_minutes) == ("call_back_later", 7)
    assert logged["meeting"].details == {"next_steps": "Enviar planos"}
    page = await (await browser.get(url)).text()
    kinds = re.findall(r'<li class="evento [a-z_.]+" data-kind="([a-z_.]+)"', page)
    # The note and meeting (now) first, the message and creation next, the call of 20 Nov last.
    assert kinds[:2] == ["note", "meeting"] and kinds[-1] == "call"
    assert "message" in kinds and "stage_change" in kinds
    assert "Llamar más tarde" in page and "7 min" in page and "Oficina centro" in page


async def test_my_tasks_are_overdue_today_and_upcoming(client: TestClient[Any, Any]) -> None:
    browser = await signed_in(client, "Carla")
    carla = (await rows(client, Agent))[0]
    now = utcnow()
    async with client.app[DATABASE].session() as session:
        for title, due in (
            ("Vencida", now - timedelta(hours=2)),
            ("Próxima", now + timedelta(days=3)),
            ("De otro", now + timedelta(days=3)),
        ):
            owner = carla.id if title != "De otro" else None
            session.add(Task(title=title, due_at=due, owner_id=owner, created_at=now))
        await session.commit()
    page = await (await browser.get("/console/tasks")).text()
    overdue = page.split('data-testid="tasks-overdue"')[1].split("</ul>")[0]
    upcoming = page.split('data-testid="tasks-upcoming"')[1].split("</ul>")[0]
    assert "Vencida" in overdue and "Próxima" in upcoming and "De otro" not in page


async def test_the_board_moves_leads_by_fetch_and_by_form_and_asks_why_on_lost(
    service: Any,
) -> None:
    client = await service(console={"secret": "x"}, pipeline={"preset": "real_estate"})
    await client.app[SCHEDULER].pause()
    [lead] = await leads(client, 1)
    browser = await signed_in(client, "Carla", admin=True)
    page = await (await browser.get("/console/board")).text()
    assert page.count('data-testid="board-column"') == 5 and "Prospecto" in page
    headers = {"X-CSRF-Token": browser.csrf, "Accept": "application/json"}
    moved = await browser.client.post(
        "/console/board/move", data={"lead": str(lead.id), "stage": "apartado"}, headers=headers
    )
    assert moved.status == 200 and (await moved.json())["stage"] == "apartado"
    refused = await browser.client.post(
        "/console/board/move", data={"lead": str(lead.id), "stage": "cancelado"}, headers=headers
    )
    assert refused.status == 400
    assert (await refused.json())["error"] == (
        "Para pasar a Cancelado elige un motivo de pérdida de la lista."
    )
    reason = client.app[SETTINGS].pipeline.lost_reasons[2]
    form = await browser.post(
        "/console/board/move", {"lead": str(lead.id), "stage": "cancelado", "reason": reason}
    )
    assert form.status == 303
    changes = [(c.to_stage, c.reason) for c in await rows(client, StageChange)]
    assert changes == [("prospecto", None), ("apartado", None), ("cancelado", reason)]


async def test_notes_from_the_conversation_view_go_on_the_lead(
    client: TestClient[Any, Any],
) -> None:
    await say(client, "quiero hablar con un asesor", "sesion-de-prueba-nota-000001")
    [lead] = await rows(client, Lead)
    browser = await signed_in(client, "Carla", admin=True)
    page = await (await browser.get("/console/conversations/1")).text()
    assert f'href="/console/leads/{lead.id}"' in page
    response = await browser.post(
        f"/console/leads/{lead.id}/activities",
        {"kind": "note", "body": "Llamar después de las 6", "back": "/console/conversations/1"},
    )
    assert response.status == 303 and response.headers["Location"] == "/console/conversations/1"
    assert "Llamar después de las 6" in await (await browser.get("/console/conversations/1")).text()
    evil = await browser.post(
        f"/console/leads/{lead.id}/activities",
        {"kind": "note", "body": "x", "back": "https://evil.example.com/"},
    )
    assert evil.headers["Location"] == f"/console/leads/{lead.id}"


async def test_admins_edit_stages_and_the_reasons_for_losing(client: TestClient[Any, Any]) -> None:
    from storage.models import LostReason, Stage

    agent = await signed_in(client, "Beto")
    assert (await agent.get("/console/pipelines")).status == 403
    admin = await signed_in(client, "Carla", admin=True)
    page = await (await admin.get("/console/pipelines")).text()
    assert "Prospecto" in page and "Perdida (pide motivo)" in page
    assert "<title>Embudos · " in page and page.count("Campos personalizados") == 1
    [prospecto] = await rows(client, Stage, Stage.key == "prospecto")
    edited = await admin.post(
        f"/console/stages/{prospecto.id}", {"name": "Interesado", "cadence_days": "2"}
    )
    assert edited.status == 303
    assert (await admin.post(f"/console/stages/{prospecto.id}", {"name": " "})).status == 400
    assert (await admin.post("/console/lost-reasons", {"label": "Se mudó de ciudad"})).status == 303
    first = (await rows(client, LostReason))[0]
    assert (await admin.post(f"/console/lost-reasons/{first.id}/retire")).status == 303
    [prospecto] = await rows(client, Stage, Stage.key == "prospecto")
    assert (prospecto.name, prospecto.cadence_days) == ("Interesado", 2)
    active = [r.label for r in await rows(client, LostReason, LostReason.active.is_(True))]
    assert active[-1] == "Se mudó de ciudad" and first.label not in active


async def test_attending_an_appointment_scores_and_is_recorded(
    client: TestClient[Any, Any],
) -> None:
    from storage.models import Appointment, ScoreEvent

    [lead] = await leads(client, 1)
    browser = await signed_in(client, "Carla", admin=True)
    now = utcnow()
    async with client.app[DATABASE].session() as session:
        for hours in (1, 2):
            session.add(
                Appointment(lead_id=lead.id, kind="visit", state="confirmed", created_at=now,
                            starts_at=now - timedelta(hours=hours),
                            ends_at=now - timedelta(hours=hours) + timedelta(minutes=30))
            )  # fmt: skip
        await session.commit()
    came, missed = await rows(client, Appointment)
    await browser.get(f"/console/leads/{lead.id}")
    assert (
        await browser.post(f"/console/appointments/{came.id}/outcome", {"attended": "1"})
    ).status == 303
    assert (
        await browser.post(f"/console/appointments/{missed.id}/outcome", {"attended": "0"})
    ).status == 303
    again = await browser.post(f"/console/appointments/{came.id}/outcome", {"attended": "1"})
    assert again.status == 400
    came, missed = await rows(client, Appointment)
    assert (came.state, missed.state) == ("done", "no_show")
    [event] = await rows(client, ScoreEvent, ScoreEvent.rule == "attended")
    assert event.points == client.app[SETTINGS].scoring.signals["attended"]
    page = await (await browser.get(f"/console/leads/{lead.id}")).text()
    assert "asistió" in page and "+6 Asistió a su cita" in page


async def test_custom_fields_admins_define_are_on_every_record(
    client: TestClient[Any, Any],
) -> None:
    [lead] = await leads(client, 1)
    admin = await signed_in(client, "Carla", admin=True)
    await admin.get("/console/pipelines")
    for label, kind, choices in (
        ("Presupuesto", "number", ""),
        ("Fecha de mudanza", "date", ""),
        ("Recámaras", "choice", "1, 2, 3"),
    ):
        made = await admin.post(
            "/console/custom-fields", {"label": label, "kind": kind, "choices": choices}
        )
        assert made.status == 303
    assert (
        await admin.post("/console/custom-fields", {"label": "X", "kind": "choice"})
    ).status == 400
    url = f"/console/leads/{lead.id}"
    await admin.get(url)
    saved = await admin.post(
        url,
        {"custom:presupuesto": "1,500,000", "custom:fecha_de_mudanza": "2027-02-01",
         "custom:recámaras": "2"},
    )  # fmt: skip
    assert saved.status == 303
    for bad in ({"custom:presupuesto": "mucho"}, {"custom:recámaras": "7"}, {"custom:nada": "1"}):
        assert (await admin.post(url, bad)).status == 400
    [found] = await rows(client, Lead)
    assert found.custom == {
        "presupuesto": 1500000.0,
        "fecha_de_mudanza": "2027-02-01",
        "recámaras": "2",
    }
    page = await (await admin.get(url)).text()
    assert "Fecha de mudanza" in page and "2027-02-01" in page
    changed = [a.details["field"] for a in await rows(client, Activity, Activity.kind == "field")]
    assert changed == ["custom:presupuesto", "custom:fecha_de_mudanza", "custom:recámaras"]


NEXT = re.compile(r'data-testid="next-action">([^<]*)<')


async def next_action(browser: Browser, lead_id: int) -> str:
    page = await (await browser.get(f"/console/leads/{lead_id}")).text()
    found = NEXT.search(page)
    assert found is not None, page
    return found.group(1)


async def test_the_objections_a_lead_raised_on_every_conversation(
    client: TestClient[Any, Any],
) -> None:
    from storage.models import Message

    await say(client, "es muy caro", "sesion-de-prueba-objecion-0001")
    await say(client, "está carísimo", "sesion-de-prueba-objecion-0001")
    await say(client, "hola", "sesion-de-prueba-objecion-0002")
    a, b = await rows(client, Lead)
    async with client.app[DATABASE].session() as session:
        # The second conversation raised another objection (as the classifier would have named it).
        await session.execute(
            update(Message)
            .where(Message.direction == "in", Message.text == "hola")
            .values(intent="objection.time")
        )
        # What the bot says is not an objection of the lead, whatever intent it answered.
        await session.execute(
            update(Message).where(Message.direction == "out").values(intent="objection.trust")
        )
        await session.commit()
    await client.app[DUPLICATES].merge(a.id, b.id, agent_id=None)
    raised = await rows(
        client, Message, Message.intent.like("objection.%"), Message.direction == "in"
    )
    assert sorted(m.intent for m in raised) == ["objection.price"] * 2 + ["objection.time"]
    browser = await signed_in(client, "Carla")
    page = await (await browser.get(f"/console/leads/{a.id}")).text()
    found = re.search(r'data-testid="objections">(.*?)</dd>', page)
    assert found is not None
    labels = client.app[UNDERSTANDING]
    price, time = labels.label("objection.price"), labels.label("objection.time")
    assert re.findall(r'data-intent="([^"]+)">([^<(]+) \((\d+) ve', found.group(1)) == [
        ("objection.price", price, "2"),
        ("objection.time", time, "1"),
    ]
    await say(client, "hola", "sesion-de-prueba-objecion-0003")
    [_, c] = await rows(client, Lead)
    assert (
        'data-testid="objections">—<' in await (await browser.get(f"/console/leads/{c.id}")).text()
    )


async def test_the_next_action_is_the_earliest_scheduled_in_words(
    client: TestClient[Any, Any],
) -> None:
    from storage.models import Appointment, ScheduledAction

    [lead] = await leads(client, 1)
    browser = await signed_in(client, "Carla")
    tz = client.app[SETTINGS].business.tz
    now = utcnow()
    async with client.app[DATABASE].session() as session:
        await session.execute(
            update(ScheduledAction)
            .where(ScheduledAction.state == "pending")
            .values(state="cancelled")
        )
        await session.commit()
    assert await next_action(browser, lead.id) == "—"

    step_at = now + timedelta(days=1)
    visit_at = now + timedelta(hours=3)
    async with client.app[DATABASE].session() as session:
        session.add(
            ScheduledAction(kind="sequence.step", due_at=step_at, lead_id=lead.id,
                            payload={"sequence": "warm", "step": 1}, created_at=now)
        )  # fmt: skip
        await session.commit()
    shown = await next_action(browser, lead.id)
    assert shown.startswith("Paso 2 de la secuencia tibia — ")
    assert shown.endswith(step_at.astimezone(tz).strftime("%H:%M"))

    async with client.app[DATABASE].session() as session:
        ends_at = visit_at + timedelta(minutes=30)
        visit = Appointment(lead_id=lead.id, kind="visit", state="confirmed", created_at=now,
                            starts_at=visit_at, ends_at=ends_at)  # fmt: skip
        session.add(visit)
        await session.flush()
        # A reminder known through its appointment only.
        session.add(
            ScheduledAction(kind="reminder.lead", due_at=visit_at - timedelta(hours=1),
                            appointment_id=visit.id, payload={"minutes": 60}, created_at=now)
        )  # fmt: skip
        await session.commit()
    shown = await next_action(browser, lead.id)
    assert shown.startswith("Recordatorio de cita al prospecto — ")
    assert shown.endswith((visit_at - timedelta(hours=1)).astimezone(tz).strftime("%H:%M"))

    async with client.app[DATABASE].session() as session:
        await session.execute(
            update(ScheduledAction)
            .where(ScheduledAction.kind == "reminder.lead")
            .values(state="done")
        )
        await session.commit()
    shown = await next_action(browser, lead.id)
    assert shown == f"Cita: Visita — {shown.split(' — ')[1]}"
    assert shown.endswith(visit_at.astimezone(tz).strftime("%H:%M"))


async def test_who_referred_whom_is_shown_and_edited_with_clear_refusals(
    client: TestClient[Any, Any],
) -> None:
    a, b = await leads(client, 2)
    await change(client, b.id, name="Beatriz")
    browser = await signed_in(client, "Carla", admin=True)
    url = f"/console/leads/{a.id}"
    page = await (await browser.get(url)).text()
    assert 'data-testid="referred-by">—<' in page and 'data-testid="referrals">—<' in page
    assert (await browser.post(url, {"referred_by": str(b.id)})).status == 303
    page = await (await browser.get(url)).text()
    assert (
        f'data-testid="referred-by"><a href="/console/leads/{b.id}">Beatriz (n.º {b.id})</a>'
        in page
    )
    page = await (await browser.get(f"/console/leads/{b.id}")).text()
    assert f'data-testid="referrals"><a href="/console/leads/{a.id}">' in page
    [changed] = await rows(client, Activity, Activity.kind == "field")
    assert (changed.lead_id, changed.details) == (
        a.id, {"field": "referred_by_id", "from": None, "to": b.id},
    )  # fmt: skip

    for value, refusal in (
        (str(a.id), "Un prospecto no puede haberse referido a sí mismo."),
        ("999999", "«Referido por» debe ser el número de un prospecto que exista."),
        ("Beatriz", "«Referido por» debe ser el número de un prospecto que exista."),
    ):
        refused = await browser.post(url, {"referred_by": value})
        assert refused.status == 400
        assert refusal in await refused.text()
    assert (await rows(client, Lead, Lead.id == a.id))[0].referred_by_id == b.id
    assert (await browser.post(url, {"referred_by": ""})).status == 303
    assert (await rows(client, Lead, Lead.id == a.id))[0].referred_by_id is None
    assert len(await rows(client, Activity, Activity.kind == "field")) == 2
