"""Duplicates and merging, CSV import and export (SQLite and PostgreSQL): one phone in two
spellings or one e-mail in two cases is shown as a duplicate; merging keeps both histories and
every identity; `seguibot leads import --dry-run` reports each bad row by line."""

from __future__ import annotations

import asyncio
import csv
import io
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, update

from bot.core.model import utcnow
from bot.web.keys import DATABASE, DISPATCHER, DUPLICATES, PIPELINES, SCHEDULER, SETTINGS
from storage.models import (
    Activity,
    AuditEvent,
    ChannelIdentity,
    Conversation,
    Deal,
    Lead,
    LeadPhone,
    Message,
    ScoreEvent,
    StageChange,
    Task,
)
from tests.command import seguibot
from tests.integration.test_console import Browser, make_agent


@pytest.fixture
async def client(service: Any) -> TestClient[Any, Any]:
    started: TestClient[Any, Any] = await service(console={"secret": "pruebas"})
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


async def two_leads(client: TestClient[Any, Any]) -> tuple[Lead, Lead]:
    await say(client, "hola, ¿cuánto cuesta?", "sesion-de-prueba-a-000001")
    await say(client, "me llamo Ana, quiero comprar", "sesion-de-prueba-b-000002")
    first, second = await rows(client, Lead)
    return first, second


async def test_one_phone_in_two_spellings_or_one_email_is_a_duplicate(
    client: TestClient[Any, Any],
) -> None:
    a, b = await two_leads(client)
    await say(client, "hola", "sesion-de-prueba-c-000003")
    c = (await rows(client, Lead))[-1]
    async with client.app[DATABASE].session() as session:
        session.add_all([LeadPhone(lead_id=a.id, e164="+5215512345678"),
                         LeadPhone(lead_id=b.id, e164="+525512345678")])  # fmt: skip
        await session.execute(update(Lead).where(Lead.id == a.id).values(email="Ana@Example.com"))
        await session.execute(update(Lead).where(Lead.id == c.id).values(email="ana@example.COM"))
        await session.commit()
    duplicates = client.app[DUPLICATES]
    assert [d.id for d in await duplicates.of(a.id)] == [b.id, c.id]
    assert [d.id for d in await duplicates.of(b.id)] == [a.id]
    pairs = [(p.first.id, p.second.id, p.why) for p in await duplicates.pairs()]
    assert pairs == [(a.id, b.id, "phone"), (a.id, c.id, "email")]
    await make_agent(client, "Carla", admin=True)
    browser = Browser(client)
    await browser.sign_in("carla@example.com")
    page = await (await browser.get(f"/console/leads/{a.id}")).text()
    assert 'data-testid="duplicates"' in page and f"/console/leads/{b.id}" in page
    listing = await (await browser.get("/console/leads/duplicates")).text()
    assert "mismo teléfono" in listing and "mismo correo" in listing


async def test_merging_keeps_both_histories_every_identity_and_the_latest_values(
    client: TestClient[Any, Any],
) -> None:
    a, b = await two_leads(client)
    reason = client.app[SETTINGS].pipeline.lost_reasons[0]
    await client.app[PIPELINES].move(b.id, "intent")
    now = utcnow()
    async with client.app[DATABASE].session() as session:
        session.add_all(
            [
                LeadPhone(lead_id=a.id, e164="+5215512345678"),
                LeadPhone(lead_id=b.id, e164="+525512345678"),
                Deal(lead_id=b.id, product="Depa", amount=1, currency="MXN", status="lost",
                     lost_reason=reason, opened_at=now, closed_at=now),
                Task(lead_id=b.id, title="Llamar", due_at=now, created_at=now),
            ]
        )  # fmt: skip
        await session.execute(
            update(Lead).where(Lead.id == a.id).values(tags=["vip"], email="a@x.mx")
        )
        await session.execute(update(Lead).where(Lead.id == b.id).values(tags=["feria"]))
        await session.commit()
    before = {
        model: len(await rows(client, model))
        for model in (Message, Activity, StageChange, ScoreEvent, ChannelIdentity, Conversation)
    }
    b_score = (await rows(client, Lead, Lead.id == b.id))[0].score

    browser_agent = await make_agent(client, "Carla", admin=True)
    browser = Browser(client)
    await browser.sign_in("carla@example.com")
    await browser.get(f"/console/leads/{a.id}")
    response = await browser.post(f"/console/leads/{a.id}/merge", {"other": str(b.id)})
    assert response.status == 303

    [kept] = await rows(client, Lead)
    assert kept.id == a.id
    # B wrote last: its name, stage and score win; A's e-mail stays (B had none); tags joined.
    assert (kept.name, kept.stage, kept.email, kept.score) == ("Ana", "intent", "a@x.mx", b_score)
    assert kept.tags == ["vip", "feria"]
    assert {p.e164 for p in await rows(client, LeadPhone)} == {"+5215512345678", "+525512345678"}
    assert {i.lead_id for i in await rows(client, ChannelIdentity)} == {a.id}
    assert {c.lead_id for c in await rows(client, Conversation)} == {a.id}
    for model, count in before.items():
        found = await rows(client, model)
        assert len(found) >= count, model
        if hasattr(model, "lead_id"):
            assert {r.lead_id for r in found} == {a.id}, model
    assert [d.lead_id for d in await rows(client, Deal)] == [a.id]
    assert [t.lead_id for t in await rows(client, Task)] == [a.id]
    [merged] = await rows(client, Activity, Activity.kind == "merge")
    assert merged.details == {"merged_id": b.id, "merged_name": "Ana"}
    assert merged.agent_id == browser_agent.id
    total = sum(e.points for e in await rows(client, ScoreEvent))
    assert kept.score == client.app[SETTINGS].scoring.initial + total
    assert len(await rows(client, AuditEvent, AuditEvent.action == "leads_merged")) == 1
    # The merged lead's next message goes to the kept record.
    await say(client, "sigo aquí", "sesion-de-prueba-b-000002")
    assert len(await rows(client, Lead)) == 1


async def test_an_agent_cannot_merge(client: TestClient[Any, Any]) -> None:
    a, b = await two_leads(client)
    await make_agent(client, "Beto")
    browser = Browser(client)
    await browser.sign_in("beto@example.com")
    await browser.get("/console/leads")
    assert (await browser.post(f"/console/leads/{a.id}/merge", {"other": str(b.id)})).status == 403
    assert (await client.app[DUPLICATES].of(a.id)) == []
    assert len(await rows(client, Lead)) == 2


def _env(database_url: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SEGUIBOT_")}
    return {**clean, "DATABASE_URL": database_url, "SEGUIBOT_LOGGING_LEVEL": "WARNING"}


CSV = """nombre,teléfono,correo,etapa,etiquetas
Ana López,55 1234 5678,ana@example.com,interest,vip
Beto,12,beto@example.com,,
Carla,+52 1 55 1234 5678,,,
Dora,55 8765 4321,ANA@example.com,Consideración,"feria, vip"
Eva,55 1111 2222,,comprado,
"Fer
Gómez",55 3333 4444,fer@example.com,,
Gil,+5215599990000,,,
"""


async def test_import_dry_run_reports_each_bad_row_then_imports_the_good_ones(
    database_url: str, tmp_path: Path, db: Any
) -> None:
    env = _env(database_url)
    # A lead already on record with this number: a row with it is its duplicate.
    async with db.session() as session:
        existing = Lead(stage="awareness", score=30, tier="warm", timezone="America/Mexico_City",
                        first_contact_at=utcnow(), last_activity_at=utcnow())  # fmt: skip
        session.add(existing)
        await session.flush()
        session.add(LeadPhone(lead_id=existing.id, e164="+525599990000"))
        await session.commit()
    file = tmp_path / "leads.csv"
    file.write_text(CSV, encoding="utf-8")

    dry = await asyncio.to_thread(seguibot, "leads", "import", str(file), "--dry-run", env=env)
    assert dry.returncode == 1, dry.stderr
    assert dry.stdout.splitlines() == [
        "line 3: bad phone '12'",
        "line 4: duplicate of line 2 (phone)",
        "line 5: duplicate of line 2 (email)",
        "line 6: unknown stage 'comprado'",
        f"line 9: duplicate of lead {existing.id} (phone)",
        "dry run: 2 rows would be added, 5 bad; nothing added",
    ]
    async with db.session() as session:
        assert (await session.execute(select(func.count(Lead.id)))).scalar_one() == 1

    real = await asyncio.to_thread(seguibot, "leads", "import", str(file), env=env)
    assert real.returncode == 1
    assert real.stdout.splitlines()[-1] == "added 2 leads; 5 bad rows skipped"
    async with db.session() as session:
        added = list(
            (
                await session.execute(select(Lead).where(Lead.id != existing.id).order_by(Lead.id))
            ).scalars()
        )
        assert [(lead.name, lead.stage, lead.tags) for lead in added] == [
            ("Ana López", "interest", ["vip"]),
            ("Fer\nGómez", "awareness", []),
        ]
        changes = (await session.execute(select(func.count(StageChange.id)))).scalar_one()
        assert changes == 2  # each imported lead entered its stage on record

    exported = tmp_path / "out.csv"
    done = await asyncio.to_thread(seguibot, "leads", "export", str(exported), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"exported 3 leads to {exported}"
    table = list(csv.DictReader(io.StringIO(exported.read_text(encoding="utf-8"))))
    assert sorted(r["name"] for r in table) == ["", "Ana López", "Fer\nGómez"]
    assert next(r for r in table if r["name"] == "Ana López")["phones"] == "+525512345678"


async def test_merge_on_the_command_line(database_url: str, db: Any) -> None:
    env = _env(database_url)
    async with db.session() as session:
        leads = [Lead(name=name, stage="awareness", score=30, tier="warm",
                      timezone="America/Mexico_City", first_contact_at=utcnow(),
                      last_activity_at=utcnow()) for name in ("Ana", "Ana L.")]  # fmt: skip
        session.add_all(leads)
        await session.commit()
        first, second = (lead.id for lead in leads)
    merged = await asyncio.to_thread(seguibot, "leads", "merge", str(first), str(second), env=env)
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout.strip() == f"merged lead {second} into lead {first}"
    again = await asyncio.to_thread(seguibot, "leads", "merge", str(first), str(second), env=env)
    assert again.returncode == 1 and f"no lead {second}" in again.stderr
    async with db.session() as session:
        kinds = list((await session.execute(select(Activity.kind))).scalars())
    assert kinds == ["merge"]


async def test_merging_a_lead_into_the_one_it_referred_leaves_no_referrer(
    client: TestClient[Any, Any],
) -> None:
    keep, other = await two_leads(client)
    await say(client, "hola", "sesion-de-prueba-c-000003")
    [*_, referrer] = await rows(client, Lead)
    async with client.app[DATABASE].session() as session:
        await session.execute(
            update(Lead).where(Lead.id == keep.id).values(referred_by_id=other.id)
        )
        await session.execute(
            update(Lead).where(Lead.id == referrer.id).values(referred_by_id=keep.id)
        )
        await session.commit()
    await client.app[DUPLICATES].merge(keep.id, other.id)
    by_id = {lead.id: lead for lead in await rows(client, Lead)}
    assert other.id not in by_id
    assert by_id[keep.id].referred_by_id is None
    assert by_id[referrer.id].referred_by_id == keep.id
