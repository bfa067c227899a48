"""Appointments, reminders, sequences, tasks and the sweep, with frozen and advanced clocks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from aiohttp.test_utils import TestClient
from sqlalchemy import event, func, select, update

from bot.core.model import ActionState, AppointmentState, OutboxState, SequenceState
from bot.web.keys import DATABASE, DESK, DISPATCHER, SCHEDULER
from storage.models import (
    Appointment,
    Lead,
    Message,
    Notification,
    OutboxItem,
    ScheduledAction,
    SequenceRun,
    Task,
)
from tests.builders import send_due

MX = ZoneInfo("America/Mexico_City")
THURSDAY_10 = datetime(2026, 11, 26, 10, 0, tzinfo=MX)
FRIDAY_17 = datetime(2026, 11, 27, 17, 0, tzinfo=MX)


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(THURSDAY_10, tick=True) as traveller:
        yield traveller


@pytest.fixture
async def client(service: Any, clock: time_machine.Traveller) -> TestClient[Any, Any]:
    started: TestClient[Any, Any] = await service()
    # The tests fire and send themselves, so each step happens when they say.
    await started.app[SCHEDULER].pause()
    await started.app[DISPATCHER].stop(timeout=1)
    return started


async def say(
    client: TestClient[Any, Any], text: str, session: str = "sesion-agenda-1-Kq7mZ2xW9p"
) -> str:
    response = await client.post("/webchat/messages", json={"session_id": session, "text": text})
    assert response.status == 200, await response.text()
    replies = (await response.json())["replies"]
    return " ".join(r["text"] for r in replies)


async def rows(client: TestClient[Any, Any], model: Any, *where: Any) -> list[Any]:
    async with client.app[DATABASE].session() as session:
        return list((await session.execute(select(model).where(*where))).scalars())


async def count(client: TestClient[Any, Any], model: Any, *where: Any) -> int:
    async with client.app[DATABASE].session() as session:
        statement = select(func.count()).select_from(model).where(*where)
        return int((await session.execute(statement)).scalar_one())


async def fire(client: TestClient[Any, Any]) -> int:
    return await client.app[SCHEDULER].fire_due()


async def last_message_at(client: TestClient[Any, Any]) -> datetime:
    """When the latest message was stored: the clock travels from THURSDAY_10 but ticks,
    through the app's start-up too, so "2 h of quiet" is counted from here."""
    async with client.app[DATABASE].session() as session:
        at = (await session.execute(select(func.max(Message.created_at)))).scalar_one()
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def scripts(client: TestClient[Any, Any]) -> list[str | None]:
    async with client.app[DATABASE].session() as session:
        statement = select(Message.script).where(Message.direction == "out").order_by(Message.id)
        return list((await session.execute(statement)).scalars())


async def test_book_confirm_and_reminders(client: TestClient[Any, Any]) -> None:
    proposal = await say(client, "¿me puedes llamar mañana a las 5?")
    assert "mañana a las 17:00" in proposal
    booked = await say(client, "sí, perfecto")
    assert "mañana a las 17:00" in booked
    [appointment] = await rows(client, Appointment)
    assert appointment.starts_at == FRIDAY_17
    assert appointment.kind == "call"
    assert appointment.state == AppointmentState.CONFIRMED
    actions = await rows(client, ScheduledAction, ScheduledAction.appointment_id == appointment.id)
    due = sorted((a.kind, a.due_at) for a in actions)
    assert due == [
        ("reminder.agent", FRIDAY_17 - timedelta(minutes=15)),
        ("reminder.lead", FRIDAY_17 - timedelta(hours=24)),
        ("reminder.lead", FRIDAY_17 - timedelta(hours=1)),
    ]
    # The conversation ended in a booking: no follow-up sequence starts when it goes quiet.
    assert await rows(client, SequenceRun) == []


async def test_a_day_without_hour_is_completed_by_the_next_message(
    client: TestClient[Any, Any],
) -> None:
    asked = await say(client, "¿podemos vernos el viernes?")
    assert "¿A qué hora" in asked or "a qué hora" in asked
    proposal = await say(client, "a las 5")
    assert "mañana a las 17:00" in proposal
    assert "la reunión" in proposal  # "vernos": a meeting, not a call
    await say(client, "sí")
    [appointment] = await rows(client, Appointment)
    assert (appointment.starts_at, appointment.kind) == (FRIDAY_17, "meeting")


async def test_closed_hours_offer_the_nearest_free_slots(client: TestClient[Any, Any]) -> None:
    offered = await say(client, "llámame el domingo a las 11")
    assert await scripts(client) == ["schedule.unavailable"]
    # The nearest free slots: the end of Saturday's hours and Monday's first.
    for option in (
        "sábado 28 de noviembre a las 13:00",
        "a las 13:30",
        "lunes 30 de noviembre a las 09:00",
    ):
        assert option in offered
    # "la de la 1:30" after the list: the offered slot at that hour, booked like its button.
    booked = await say(client, "la de las 13:30")
    assert (await scripts(client))[-1] == "schedule.booked"
    assert "el sábado 28 de noviembre a las 13:30" in booked
    [appointment] = await rows(client, Appointment)
    assert appointment.starts_at == datetime(2026, 11, 28, 13, 30, tzinfo=MX)


async def test_cancel_releases_the_reminders(client: TestClient[Any, Any]) -> None:
    await say(client, "llámame mañana a las 5")
    await say(client, "sí")
    await say(client, "ya no voy a poder, cancela mi cita")
    await say(client, "sí")
    [appointment] = await rows(client, Appointment)
    assert appointment.state == AppointmentState.CANCELLED
    states = {
        a.state
        for a in await rows(
            client, ScheduledAction, ScheduledAction.appointment_id == appointment.id
        )
    }
    assert states == {ActionState.CANCELLED}


async def test_reschedule_moves_appointment_and_reminders(client: TestClient[Any, Any]) -> None:
    await say(client, "llámame mañana a las 5")
    await say(client, "sí")
    await say(client, "¿podemos cambiar la cita al lunes a las 10?")
    await say(client, "sí")
    [appointment] = await rows(client, Appointment)
    monday_10 = datetime(2026, 11, 30, 10, 0, tzinfo=MX)
    assert appointment.starts_at == monday_10
    pending = await rows(
        client,
        ScheduledAction,
        ScheduledAction.appointment_id == appointment.id,
        ScheduledAction.state == ActionState.PENDING,
    )
    assert min(a.due_at for a in pending) == monday_10 - timedelta(hours=24)


@pytest.mark.postgres
async def test_two_leads_confirming_one_slot_get_one_appointment(
    client: TestClient[Any, Any],
) -> None:
    if not client.app[DATABASE].url.startswith("postgresql"):
        pytest.skip("true concurrency needs PostgreSQL (SQLite serialises writers)")
    for session in ("sesion-carrera-1-Kq7mZ2xW9p", "sesion-carrera-2-Kq7mZ2xW9p"):
        await say(client, "llámame mañana a las 5", session)
    answers = await asyncio.gather(
        say(client, "sí", "sesion-carrera-1-Kq7mZ2xW9p"),
        say(client, "sí", "sesion-carrera-2-Kq7mZ2xW9p"),
    )
    assert await count(client, Appointment) == 1
    sent = await scripts(client)
    assert (sent.count("schedule.booked"), sent.count("schedule.taken")) == (1, 1)
    assert len(set(answers)) == 2  # one was booked, the other told the slot was just taken


async def test_reminders_fire_once_at_their_time(
    client: TestClient[Any, Any], clock: time_machine.Traveller
) -> None:
    await say(client, "llámame mañana a las 5")
    await say(client, "sí")
    assert await fire(client) == 0
    clock.move_to(await last_message_at(client) + timedelta(hours=2, seconds=1))
    assert await fire(client) == 1  # the chat went quiet: booked, so no sequence starts
    assert await rows(client, SequenceRun) == []
    clock.move_to(FRIDAY_17 - timedelta(hours=24, seconds=-1))
    assert await fire(client) == 1
    assert (await scripts(client))[-1] == "reminder.lead.day"
    assert await fire(client) == 0  # never twice
    clock.move_to(FRIDAY_17 - timedelta(minutes=14))
    assert await fire(client) == 2  # the 1 h reminder, late, and the agent's 15 min one
    assert (await scripts(client))[-1] == "reminder.lead.soon"
    [notification] = await rows(client, Notification)
    assert notification.kind == "reminder"
    assert "17:00" in notification.text


async def test_reminders_for_an_appointment_already_passed_are_skipped(
    client: TestClient[Any, Any], clock: time_machine.Traveller
) -> None:
    await say(client, "llámame mañana a las 5")
    await say(client, "sí")
    sent_before = len(await scripts(client))
    clock.move_to(FRIDAY_17 + timedelta(hours=3))  # the service was down until after it
    await fire(client)
    assert len(await scripts(client)) == sent_before
    reminders = await rows(client, ScheduledAction, ScheduledAction.kind.like("reminder.%"))
    assert {(a.state, a.last_error) for a in reminders} == {
        (ActionState.SKIPPED, "appointment already passed")
    }


async def test_quiet_hours_hold_follow_ups_until_morning(
    service: Any, clock: time_machine.Traveller
) -> None:
    clock.move_to(datetime(2026, 11, 26, 20, 30, tzinfo=MX))
    client: TestClient[Any, Any] = await service()
    await client.app[SCHEDULER].pause()
    await client.app[DISPATCHER].stop(timeout=1)
    await say(client, "hola")  # a new lead, warm: its sequence starts when the chat goes quiet
    clock.move_to(datetime(2026, 11, 26, 22, 31, tzinfo=MX))
    await fire(client)  # quiet since 20:30: the warm sequence starts, its first step in 2 h
    clock.move_to(datetime(2026, 11, 27, 0, 32, tzinfo=MX))
    await fire(client)  # the first step is due, in quiet hours
    [step] = await rows(
        client,
        ScheduledAction,
        ScheduledAction.kind == "sequence.step",
        ScheduledAction.state == ActionState.PENDING,
        ScheduledAction.payload["step"].as_integer() == 0,
    )
    assert step.due_at == datetime(2026, 11, 27, 8, 0, tzinfo=MX)
    assert (await scripts(client)) == ["greeting"]
    clock.move_to(datetime(2026, 11, 27, 8, 0, 5, tzinfo=MX))
    await fire(client)
    assert (await scripts(client))[-1] == "sequence.warm.1"


async def test_a_reminder_in_its_last_hour_ignores_quiet_hours(
    service: Any, clock: time_machine.Traveller
) -> None:
    client: TestClient[Any, Any] = await service(scheduling={"quiet_hours": ["21:00", "09:30"]})
    await client.app[SCHEDULER].pause()
    await client.app[DISPATCHER].stop(timeout=1)
    await say(client, "llámame el lunes a las 9")
    await say(client, "sí")
    monday_9 = datetime(2026, 11, 30, 9, 0, tzinfo=MX)
    clock.move_to(monday_9 - timedelta(hours=24))  # Sunday 09:00: quiet until 09:30
    await fire(client)
    assert (await scripts(client))[-1] == "schedule.booked"
    clock.move_to(monday_9 - timedelta(minutes=59))  # 08:01, quiet, but the last hour
    await fire(client)
    assert "reminder.lead.soon" in await scripts(client)


async def test_a_reply_stops_the_sequence_and_withdraws_its_waiting_nudge(
    client: TestClient[Any, Any], clock: time_machine.Traveller
) -> None:
    await say(client, "hola")
    assert await rows(client, SequenceRun) == []  # not while the lead is chatting
    quiet = await last_message_at(client) + timedelta(hours=2, seconds=1)
    clock.move_to(quiet)
    await fire(client)  # quiet for 2 h: the warm sequence starts
    [run] = await rows(client, SequenceRun)
    assert (run.sequence, run.state) == ("warm", SequenceState.ACTIVE)
    clock.move_to(quiet + timedelta(hours=2, seconds=1))
    await fire(client)  # the first nudge is staged; the outbox has not sent it yet
    [nudge] = await rows(client, OutboxItem, OutboxItem.cancel_on_reply.is_(True))
    assert nudge.state == OutboxState.PENDING
    await say(client, "perdón, andaba ocupado")  # the lead writes before it goes out
    await send_due(client)
    [nudge] = await rows(client, OutboxItem, OutboxItem.cancel_on_reply.is_(True))
    assert (nudge.state, nudge.last_error) == (OutboxState.BLOCKED, "lead_replied")
    [run] = await rows(client, SequenceRun)
    assert (run.state, run.stop_reason) == (SequenceState.STOPPED, "replied")
    later = await rows(
        client,
        ScheduledAction,
        ScheduledAction.kind == "sequence.step",
        ScheduledAction.state == ActionState.PENDING,
    )
    assert later == []


async def test_becoming_hot_starts_the_hot_sequence(
    client: TestClient[Any, Any], clock: time_machine.Traveller
) -> None:
    await say(client, "hola")
    async with client.app[DATABASE].session() as session:
        await session.execute(update(Lead).values(score=39))  # one step from hot
        await session.commit()
    await say(client, "¿cuánto cuesta?")  # info.pricing: +3 -> 42, hot
    [lead] = await rows(client, Lead)
    assert lead.tier == "hot"
    # Not in the middle of the chat: the hot sequence starts once the conversation is quiet.
    assert await rows(client, SequenceRun) == []
    clock.move_to(THURSDAY_10 + timedelta(hours=1, minutes=59))
    await fire(client)
    assert await rows(client, SequenceRun) == []
    clock.move_to(THURSDAY_10 + timedelta(hours=2, seconds=5))
    await fire(client)
    runs = {(r.sequence, r.state) for r in await rows(client, SequenceRun)}
    assert runs == {("hot", SequenceState.ACTIVE)}
    await fire(client)  # its first step, due at once
    assert (await scripts(client))[-1] == "sequence.hot.1"


async def test_the_daily_sweep_cools_idle_leads_and_tasks_their_owner(
    client: TestClient[Any, Any], clock: time_machine.Traveller
) -> None:
    await say(client, "hola", "sesion-dormida-1-Kq7mZ2xW9p")
    await say(client, "hola", "sesion-activa-1-Kq7mZ2xW9p")
    async with client.app[DATABASE].session() as session:
        await session.execute(
            update(Lead)
            .where(Lead.id == 1)
            .values(last_activity_at=THURSDAY_10 - timedelta(days=8))
        )
        await session.commit()
    clock.move_to(datetime(2026, 11, 27, 8, 0, 1, tzinfo=MX))
    await client.app[SCHEDULER].plan_sweep()
    await client.app[SCHEDULER].plan_sweep()  # planned once per day, however often asked
    await fire(client)
    idle, active = sorted(await rows(client, Lead), key=lambda lead: lead.id)
    assert (idle.tier, active.tier) == ("cold", "warm")
    [task] = await rows(client, Task)
    assert task.lead_id == idle.id
    assert "7 días" in task.title
    assert await count(client, ScheduledAction, ScheduledAction.kind == "sweep.idle") == 1
    runs = await rows(client, SequenceRun, SequenceRun.lead_id == idle.id)
    assert {(r.sequence, r.state) for r in runs} >= {("cold", SequenceState.ACTIVE)}


async def test_the_sweep_tasks_the_owner_when_a_stage_cadence_passes(
    service: Any, clock: time_machine.Traveller
) -> None:
    # Seed 002: a lead in Apartado is followed up every 1-2 days (cadence 2 in config.yaml).
    client: TestClient[Any, Any] = await service(pipeline={"preset": "real_estate"})
    await client.app[SCHEDULER].pause()
    await client.app[DISPATCHER].stop(timeout=1)
    for session in ("sesion-apartado-1-Kq7mZ2xW9p", "sesion-apartado-2-Kq7mZ2xW9p"):
        await say(client, "hola", session)
    async with client.app[DATABASE].session() as db:
        await db.execute(update(Lead).values(stage="apartado"))
        quiet = THURSDAY_10 - timedelta(days=3)  # past the cadence, not the 7 idle days
        await db.execute(update(Lead).where(Lead.id == 1).values(last_activity_at=quiet))
        await db.commit()
    clock.move_to(datetime(2026, 11, 27, 8, 0, 1, tzinfo=MX))
    await client.app[SCHEDULER].plan_sweep()
    await fire(client)
    [task] = await rows(client, Task)
    assert task.lead_id == 1
    assert "2 días" in task.title
    assert [lead.tier for lead in await rows(client, Lead)] == ["warm", "warm"]  # not cooled

    # The next day the task is still open: no second one for the same lead.
    clock.move_to(datetime(2026, 11, 28, 8, 0, 1, tzinfo=MX))
    await client.app[SCHEDULER].plan_sweep()
    await fire(client)
    assert await count(client, Task) == 1


async def test_task_alerts_reach_the_owner(
    client: TestClient[Any, Any], clock: time_machine.Traveller
) -> None:
    agent, token = await client.app[DESK].add_agent("Carla")
    headers = {"Authorization": f"Bearer {token}"}
    due = (THURSDAY_10 + timedelta(hours=1)).isoformat()
    created = await client.post(
        "/api/tasks", json={"title": "Enviar cotización a Ana", "due_at": due}, headers=headers
    )
    assert created.status == 201
    clock.move_to(THURSDAY_10 + timedelta(hours=1, seconds=1))
    await fire(client)
    listed = await (await client.get("/api/notifications?unread=1", headers=headers)).json()
    assert [n["text"] for n in listed["notifications"]] == [
        n.text for n in await rows(client, Notification)
    ]
    assert "Enviar cotización a Ana" in listed["notifications"][0]["text"]
    task_id = (await created.json())["id"]
    await client.post(f"/api/tasks/{task_id}/done", headers=headers)
    clock.move_to(THURSDAY_10 + timedelta(hours=26))
    await fire(client)  # done: no overdue alert
    assert await count(client, Notification) == 1
    assert agent.id == (await created.json())["owner_id"]


async def test_appointments_and_jobs_api(client: TestClient[Any, Any]) -> None:
    await say(client, "llámame hoy a las 5")
    await say(client, "sí")
    _, token = await client.app[DESK].add_agent("Carla")
    headers = {"Authorization": f"Bearer {token}"}
    today = await (await client.get("/api/appointments", headers=headers)).json()
    assert [datetime.fromisoformat(a["starts_at"]) for a in today["appointments"]] == [
        datetime(2026, 11, 26, 17, 0, tzinfo=MX)
    ]
    # Scheduled jobs are for admins: an agent is refused.
    assert (await client.get("/api/jobs", headers=headers)).status == 403
    _, admin_token = await client.app[DESK].add_agent("Coordinadora", admin=True)
    admin = {"Authorization": f"Bearer {admin_token}"}
    jobs = await (await client.get("/api/jobs", headers=admin)).json()
    assert {j["kind"] for j in jobs["upcoming"]} >= {"reminder.lead", "reminder.agent"}
    assert jobs["failed"] == []


async def test_a_visit_stays_a_visit_after_its_slot_was_just_taken(
    client: TestClient[Any, Any],
) -> None:
    ana, luis = "sesion-visita-ana-Kq7mZ2xW9p", "sesion-visita-luis-Kq7mZ2xW9p"
    assert "visita" in await say(client, "quiero visitar el depa mañana a las 5", ana)
    # Before Ana says yes, Luis takes that very slot.
    await say(client, "llámame mañana a las 5", luis)
    await say(client, "sí", luis)
    await say(client, "sí", ana)  # "that one was just taken: what other time?"
    assert await count(client, Appointment) == 1
    assert "visita" in await say(client, "mejor mañana a las 6", ana)
    await say(client, "sí", ana)
    booked = await rows(
        client, Appointment, Appointment.starts_at == FRIDAY_17 + timedelta(hours=1)
    )
    assert [appointment.kind for appointment in booked] == ["visit"]


async def test_pausing_waits_for_a_firing_in_progress_instead_of_cutting_it(service: Any) -> None:
    # APScheduler's shutdown cancels the jobs it runs; a firing cut there would end in the
    # middle of its transaction. Pausing (and stopping, at shutdown) lets it commit.
    started: TestClient[Any, Any] = await service()
    scheduler = started.app[SCHEDULER]
    await scheduler.pause()
    entered, release = asyncio.Event(), asyncio.Event()
    committed: list[int] = []
    batch = scheduler._fire_batch

    async def slow_batch() -> int:
        entered.set()
        await release.wait()
        fired = await batch()
        committed.append(fired)
        return 0

    scheduler._fire_batch = slow_batch
    scheduler.start()
    await asyncio.wait_for(entered.wait(), timeout=30)  # the next wake-up (poll_seconds)
    pausing = asyncio.create_task(scheduler.pause())
    await asyncio.sleep(0.2)
    assert not pausing.done()  # it waits for the firing...
    release.set()
    await asyncio.wait_for(pausing, timeout=10)
    # ...which ran to its end, whatever it found due (at 08:00 in the business's zone, the
    # daily sweep).
    assert len(committed) == 1


async def test_a_booking_question_writes_the_leads_changes_with_the_reply(
    client: TestClient[Any, Any], database_url: str
) -> None:
    # Looking up the lead's next appointment must not flush the lead's and conversation's
    # changes in statements of their own: on PostgreSQL they go out with the reply's.
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite writes each row in a statement of its own anyway")
    await say(client, "hola")
    written: list[str] = []

    @event.listens_for(client.app[DATABASE].engine.sync_engine, "before_cursor_execute")
    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        written.append(" ".join(statement.split())[:40])

    proposal = await say(client, "¿me puedes llamar mañana a las 5?")
    assert "mañana a las 17:00" in proposal
    assert any(s.startswith("SELECT appointments") for s in written)  # the lookup ran
    alone = [s for s in written if s.startswith(("UPDATE leads", "UPDATE conversations"))]
    assert alone == []
