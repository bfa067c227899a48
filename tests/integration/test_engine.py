"""The engine on a real database (SQLite and PostgreSQL): one transaction per message."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from bot.app import create_app
from bot.conversation.engine import Engine
from bot.core.channel import DeliveryUpdate, MediaRef, MessageEdited, ReachabilityChanged
from bot.core.crm import ActivityKind
from bot.core.model import (
    ActionState,
    Channel,
    ConversationState,
    DeliveryStatus,
    Direction,
    OutboxState,
)
from bot.followup.actions import HANDOFF_SLA, IDLE
from bot.web.keys import ENGINE
from storage.db import Database
from storage.models import (
    Activity,
    Agent,
    ChannelIdentity,
    Conversation,
    Handoff,
    Lead,
    Message,
    OutboxItem,
    ScheduledAction,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests.builders import incoming
from tests.conftest import make_settings
from tests.fakes.understanding import StubUnderstanding

# What each text of these tests means: the conversation logic is under test, not the matcher.
MEANING = {
    "hola": "greeting",
    "quiero hablar con un asesor": "handoff.human",
    "quiero inscribirme, ¿cómo pago?": "buy.intent",
    "ya no me escriban": "optout",
    "¿cuánto cuesta?": "info.pricing",
}


@pytest.fixture
async def engine(database_url: str, db: Database) -> AsyncIterator[Engine]:
    app = create_app(make_settings(database_url))
    engine = app[ENGINE]
    engine.understanding = StubUnderstanding(MEANING)
    yield engine
    await engine.db.dispose()


async def count(db: Database, model: type, *where: object) -> int:
    async with db.session() as session:
        statement = select(func.count()).select_from(model).where(*where)  # type: ignore[arg-type]
        return int((await session.execute(statement)).scalar_one())


async def conversation_of(db: Database, sender: str) -> Conversation:
    async with db.session() as session:
        statement = (
            select(Conversation).join(ChannelIdentity).where(ChannelIdentity.external_id == sender)
        )
        return (await session.execute(statement)).scalar_one()


async def test_first_message_creates_the_lead_and_a_greeting(engine: Engine, db: Database) -> None:
    outcome = await engine.receive(incoming("hola", sender="ana-0001", sender_name="Ana López"))
    assert outcome.message_id is not None and not outcome.duplicate
    assert len(outcome.replies) == 1
    async with db.session() as session:
        lead = (await session.execute(select(Lead))).scalar_one()
        message = await session.get(Message, outcome.message_id)
    assert lead.name == "Ana López"
    assert lead.stage == "awareness" and lead.score == 30 and lead.tier == "warm"
    assert lead.timezone == "America/Mexico_City"
    assert message is not None and message.intent == "greeting" and message.confidence
    assert await count(db, OutboxItem) == 1


async def test_redelivery_is_stored_once_and_answered_once(engine: Engine, db: Database) -> None:
    first = await engine.receive(incoming("hola", message_id="dup-1"))
    second = await engine.receive(incoming("hola", message_id="dup-1"))
    assert second.duplicate and second.replies == ()
    assert first.replies
    assert await count(db, Message, Message.direction == Direction.IN) == 1
    assert await count(db, OutboxItem) == 1


async def test_simultaneous_redelivery_is_stored_once(engine: Engine, db: Database) -> None:
    outcomes = await asyncio.gather(
        *(engine.receive(incoming("¿cuánto cuesta?", message_id="same")) for _ in range(4))
    )
    assert sorted(o.duplicate for o in outcomes) == [False, True, True, True]
    assert await count(db, Message, Message.direction == Direction.IN) == 1
    assert await count(db, OutboxItem) == 1
    assert await count(db, Lead) == 1


async def test_simultaneous_first_messages_make_one_lead(engine: Engine, db: Database) -> None:
    await asyncio.gather(*(engine.receive(incoming(f"hola {n}", sender="new-1")) for n in range(4)))
    assert await count(db, Lead) == 1
    assert await count(db, ChannelIdentity) == 1
    assert await count(db, Message, Message.direction == Direction.IN) == 4


async def test_handoff_then_silence(engine: Engine, db: Database) -> None:
    asked = await engine.receive(incoming("quiero hablar con un asesor", sender="lead-2"))
    assert len(asked.replies) == 1
    conversation = await conversation_of(db, "lead-2")
    assert conversation.state == ConversationState.WAITING
    assert await count(db, Handoff) == 1

    later = await engine.receive(incoming("¿hola? ¿siguen ahí?", sender="lead-2"))
    assert later.replies == ()
    assert await count(db, Message, Message.direction == Direction.IN) == 2
    assert await count(db, Handoff) == 1  # asking again does not queue twice


@pytest.mark.parametrize("text", ["quiero hablar con un asesor", "ya no me escriban"])
async def test_a_turn_ending_with_a_person_or_an_opt_out_leaves_no_idle_check(
    engine: Engine, db: Database, database_url: str, text: str
) -> None:
    # The idle check a turn adds is taken back when the turn ends with a person or an
    # opt-out. On PostgreSQL it is still waiting to go out with the reply when the hand-off
    # or the opt-out takes it back: never written, so nothing to delete either.
    deletes: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("DELETE FROM scheduled_actions"):
            deletes.append(statement)

    event.listen(engine.db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        outcome = await engine.receive(incoming(text, sender="lead-9"))
    finally:
        event.remove(engine.db.engine.sync_engine, "before_cursor_execute", seen)
    assert len(outcome.replies) == 1
    assert await count(db, ScheduledAction, ScheduledAction.kind == IDLE) == 0
    if database_url.startswith("postgresql"):
        assert deletes == []


async def test_a_new_leads_hand_off_writes_everything_in_a_few_statements(
    engine: Engine, db: Database, database_url: str
) -> None:
    # A new lead asking for a person: the hand-off, its SLA check, the CRM's rows, an agent's
    # assignment and alert, two webhook events. On PostgreSQL all that waits for no id goes
    # out with the reply: the locked read, the new lead, the agents and their load, the
    # hand-off and the alert (their ids are named), the reply with the rest. A conversation
    # opened by this message has no hand-off to look for. (15 statements when the hand-off's
    # reads and inserts flushed everything before them; 8 with the look-up.)
    async with db.session() as session:
        session.add(Agent(name="Ana", email="ana@x.mx", token_hash="t-ana", role="agent"))
        events = ["lead.created", "handoff.requested"]
        session.add(WebhookEndpoint(url="http://127.0.0.1:9/h", secret="s", events=events))
        await session.commit()
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine.db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        outcome = await engine.receive(incoming("quiero hablar con un asesor", sender="lead-h"))
    finally:
        event.remove(engine.db.engine.sync_engine, "before_cursor_execute", seen)

    assert len(outcome.replies) == 1
    async with db.session() as session:
        handoff = (await session.execute(select(Handoff))).scalar_one()
        agent = (await session.execute(select(Agent))).scalar_one()
        assert handoff.assigned_agent_id == agent.id
        assert agent.last_assigned_at is not None
        sla = (
            await session.execute(
                select(ScheduledAction).where(ScheduledAction.kind == HANDOFF_SLA)
            )
        ).scalar_one()
        assert sla.payload == {"handoff": handoff.id}
        kinds = (await session.execute(select(Activity.kind))).scalars().all()
        assert ActivityKind.HANDOFF in kinds
        staged = (await session.execute(select(WebhookDelivery.event))).scalars().all()
        assert sorted(staged) == sorted(events)
        conversation = (await session.execute(select(Conversation))).scalar_one()
        assert conversation.state == ConversationState.WAITING
    if database_url.startswith("postgresql"):
        assert len(statements) == 7, "\n".join(s[:150] for s in statements)
    assert not [s for s in statements if s.startswith("SELECT handoffs")]


async def test_a_conversation_with_an_open_hand_off_gets_no_second_one(
    engine: Engine, db: Database
) -> None:
    # Back with the bot while its hand-off is still open (waiting for an agent): asking for a
    # person again adds nothing; the one open hand-off stays the lead's place in the queue.
    await engine.receive(incoming("hola", sender="lead-o"))
    async with db.session() as session:
        conversation = (await session.execute(select(Conversation))).scalar_one()
        first = Handoff(
            conversation_id=conversation.id,
            lead_id=conversation.lead_id,
            reason="requested",
            priority=1,
            requested_at=datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
        )
        session.add(first)
        await session.commit()
    await engine.receive(incoming("quiero hablar con un asesor", sender="lead-o"))
    async with db.session() as session:
        handoffs = (await session.execute(select(Handoff))).scalars().all()
        assert [h.id for h in handoffs] == [first.id]


async def test_a_number_given_is_looked_up_without_writing_the_turns_changes_first(
    engine: Engine, db: Database, database_url: str
) -> None:
    # Whose number it is depends on the numbers stored, not on the lead's e-mail or stage
    # changed this turn: on PostgreSQL those go out with the reply, not before the look-up.
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    await engine.receive(incoming("hola", sender="lead-p"))
    event.listen(engine.db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        await engine.receive(incoming("soy Ana, ana@x.mx, mi cel 55 1234 5678", sender="lead-p"))
    finally:
        event.remove(engine.db.engine.sync_engine, "before_cursor_execute", seen)
    async with db.session() as session:
        lead = (await session.execute(select(Lead))).scalar_one()
        assert lead.email == "ana@x.mx"
        phones = (await session.execute(text("SELECT e164 FROM lead_phones"))).scalars().all()
        assert phones == ["+525512345678"]
    if database_url.startswith("postgresql"):
        assert not [s for s in statements if s.startswith(("UPDATE", "INSERT INTO activities"))]


async def test_optout_confirms_once_then_silence_on_every_channel(
    engine: Engine, db: Database
) -> None:
    await engine.receive(incoming("hola", sender="lead-3", sender_phone="+525511112222"))
    # The same person on another channel: same phone, Mexico's legacy mobile spelling.
    await engine.receive(
        incoming(
            "hola",
            sender="tg-3",
            channel=Channel.TELEGRAM,
            sender_phone="+5215511112222",
            inline=False,
        )
    )
    assert await count(db, Lead) == 1

    confirmation = await engine.receive(incoming("ya no me escriban", sender="lead-3"))
    assert len(confirmation.replies) == 1
    assert (await engine.receive(incoming("hola", sender="lead-3"))).replies == ()
    await engine.receive(incoming("hola", sender="tg-3", channel=Channel.TELEGRAM, inline=False))

    async with db.session() as session:
        lead = (await session.execute(select(Lead))).scalar_one()
        telegram_rows = (
            await session.execute(select(OutboxItem).where(OutboxItem.channel == Channel.TELEGRAM))
        ).scalars()
        states = sorted(row.state for row in telegram_rows)
    assert lead.opted_out_at is not None
    # The Telegram greeting that was still waiting is blocked; the later message got no reply.
    assert states == [OutboxState.BLOCKED]


async def test_rescoring_moves_the_tier(engine: Engine, db: Database) -> None:
    await engine.receive(incoming("quiero inscribirme, ¿cómo pago?", sender="hot-1"))
    async with db.session() as session:
        lead = (await session.execute(select(Lead))).scalar_one()
    assert lead.score == 40 and lead.tier == "hot"


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert('x')</script> hola",
        "a" * 10_000,
        "😂😂😂",
        "",
        "   ",
        "\u202e\u0000\ufeff",
    ],
)
async def test_odd_texts_are_stored_and_handled(engine: Engine, db: Database, text: str) -> None:
    outcome = await engine.receive(incoming(text, sender="odd-1"))
    assert outcome.message_id is not None
    async with db.session() as session:
        stored = await session.get(Message, outcome.message_id)
    assert stored is not None and stored.text == text.replace("\x00", "")


async def test_sticker_without_text_is_stored_and_not_answered(
    engine: Engine, db: Database
) -> None:
    outcome = await engine.receive(
        incoming("", sender="st-1", media=(MediaRef("sticker", "CAACAgIAAx"),))
    )
    assert outcome.message_id is not None
    async with db.session() as session:
        stored = await session.get(Message, outcome.message_id)
    assert stored is not None and stored.media[0]["kind"] == "sticker"
    assert len(outcome.replies) == 1  # acknowledged: a person will look at it


async def test_edit_updates_the_text_without_a_reply(engine: Engine, db: Database) -> None:
    first = await engine.receive(incoming("hola", message_id="ed-1", sender="ed"))
    edited = await engine.receive(
        MessageEdited(Channel.WEBCHAT, "ed-1", "hola, buenas tardes", datetime.now(UTC))
    )
    assert edited.message_id == first.message_id
    async with db.session() as session:
        stored = await session.get(Message, first.message_id)
    assert stored is not None and stored.text == "hola, buenas tardes" and stored.edited_at
    assert await count(db, OutboxItem) == 1


async def test_delivery_reports_only_move_forward(engine: Engine, db: Database) -> None:
    outcome = await engine.receive(incoming("hola", sender="dl", inline=False))
    async with db.session() as session:
        reply = (
            await session.execute(select(Message).where(Message.direction == Direction.OUT))
        ).scalar_one()
        reply.channel_message_id = "SM1"
        reply.status = DeliveryStatus.SENT
        await session.commit()
    now = datetime.now(UTC)
    read = DeliveryUpdate(Channel.WEBCHAT, "SM1", DeliveryStatus.READ, now)
    late = DeliveryUpdate(Channel.WEBCHAT, "SM1", DeliveryStatus.DELIVERED, now - timedelta(1))
    assert not (await engine.receive(read)).duplicate
    assert (await engine.receive(late)).duplicate
    assert (await engine.receive(read)).duplicate
    async with db.session() as session:
        stored = await session.get(Message, reply.id)
    assert stored is not None and stored.status == DeliveryStatus.READ
    assert outcome.message_id


async def test_blocking_and_unblocking_changes_reachability(engine: Engine, db: Database) -> None:
    await engine.receive(incoming("hola", sender="tg-9", channel=Channel.TELEGRAM, inline=False))
    now = datetime.now(UTC)
    await engine.receive(ReachabilityChanged(Channel.TELEGRAM, "tg-9", False, now))
    assert await count(db, ChannelIdentity, ChannelIdentity.reachable.is_(False)) == 1
    await engine.receive(ReachabilityChanged(Channel.TELEGRAM, "tg-9", True, now))
    assert await count(db, ChannelIdentity, ChannelIdentity.reachable.is_(False)) == 0


def sql_literal(value: Any) -> str:
    """A driver's parameter as SQL text (EXECUTE of a prepared statement takes no parameters;
    the statement's own casts give the values their types)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool | int | float):
        return str(value).upper() if isinstance(value, bool) else str(value)
    text_ = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text_.replace("'", "''") + "'"


async def test_a_message_reads_only_its_own_leads_scheduled_actions(
    engine: Engine, database_url: str
) -> None:
    # Every lead the bot talks to has an idle check waiting, and each message asks whether one
    # waits for its lead (new lead: before adding one; known sender: with the conversation).
    # PostgreSQL answered by reading every lead's pending checks (a hashed subplan, or the kind
    # and state indexes) whenever its statistics were thin: thousands of rows per message on
    # a busy day. Each read of the table must stay within the lead's own rows, with the
    # generic plan of a prepared statement too.
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL query plans")
    for n in range(40):
        await engine.receive(incoming("hola", sender=f"lead-{n:04d}"))
    pending = (ScheduledAction.kind == IDLE, ScheduledAction.state == ActionState.PENDING)
    assert await count(engine.db, ScheduledAction, *pending) == 40
    # And the checks that came due before: a hundred per lead (no statistics yet, as on a
    # young database or a busy one between two runs of autovacuum).
    async with engine.db.session() as session:
        await session.execute(
            text(
                "INSERT INTO scheduled_actions (kind, due_at, payload, state, lead_id, attempts,"
                " created_at, fired_at) SELECT kind, due_at, payload, 'done', lead_id, 1,"
                " created_at, due_at FROM scheduled_actions, generate_series(1, 100)"
            )
        )
        await session.commit()
    reads: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM scheduled_actions" in statement:
            reads.append((statement, parameters))

    sql_engine = engine.db.engine.sync_engine
    event.listen(sql_engine, "before_cursor_execute", seen)
    try:
        await engine.receive(incoming("hola", sender="lead-new"))
        await engine.receive(incoming("¿cuánto cuesta?", sender="lead-0007"))
    finally:
        event.remove(sql_engine, "before_cursor_execute", seen)
    assert len(reads) >= 2

    def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    for statement, parameters in reads:
        async with engine.db.session() as session:  # rolled back: the writes run again
            connection = await session.connection()
            # As the service runs them after a few times: prepared, with a generic plan.
            await connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
            await connection.exec_driver_sql(f"PREPARE reads_actions AS {statement}")
            values = ", ".join(sql_literal(value) for value in parameters)
            explained = f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE reads_actions({values})"
            plan = (await connection.exec_driver_sql(explained)).scalar_one()
            await connection.exec_driver_sql("DEALLOCATE reads_actions")
        plan = json.loads(plan) if isinstance(plan, str) else plan
        scans = [
            node
            for node in nodes(plan[0]["Plan"])
            if node.get("Relation Name") == "scheduled_actions" and "Scan" in node["Node Type"]
        ]
        read = [
            scan["Actual Rows"]
            + scan.get("Rows Removed by Filter", 0)
            + scan.get("Rows Removed by Index Recheck", 0)
            for scan in scans
        ]
        assert scans and max(read) <= 1, (statement, scans)
