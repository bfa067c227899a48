"""Statements run on asyncpg itself (`storage.driver`) behave as through the session.

On PostgreSQL they share the session's transaction (begun by them when they come first), come
back with the values the ORM would give, fail with SQLAlchemy's exceptions and are seen by
SQLAlchemy's listeners; on SQLite the same call goes through the session.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Table, bindparam, event, func, insert, inspect, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from bot.core.model import (
    AppointmentKind,
    AppointmentState,
    Author,
    Channel,
    ConversationState,
    DeliveryStatus,
    Direction,
)
from storage import driver
from storage.db import Database, is_conflict
from storage.models import (
    Activity,
    Appointment,
    ChannelIdentity,
    Conversation,
    Lead,
    Message,
    Notification,
    StageChange,
)
from storage.repositories import Reads, _inserted
from storage.uow import UnitOfWork

_LEADS: Table = Lead.__table__  # type: ignore[assignment]
_ADD_LEAD = (
    insert(_LEADS)
    .values(
        name=bindparam("name"),
        stage="nuevo",
        score=0,
        tier="frio",
        timezone="America/Mexico_City",
        source="webchat",
        first_contact_at=bindparam("at"),
        last_activity_at=bindparam("at"),
    )
    .returning(_LEADS.c.id, _LEADS.c.first_contact_at)
)
_NOW = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)


async def stored_lead(db: Database, name: str) -> int:
    """A lead committed before the test's unit of work; its id."""
    async with db.session() as session:
        ((lead_id, _),) = (await session.execute(_ADD_LEAD, {"name": name, "at": _NOW})).all()
        await session.commit()
    return int(lead_id)


async def lead_count(db: Database, name: str) -> int:
    async with db.session() as session:
        statement = select(func.count()).select_from(Lead).where(Lead.name == name)
        return int((await session.execute(statement)).scalar_one())


async def test_a_statement_belongs_to_the_sessions_transaction(db: Database) -> None:
    # First in its unit of work: it begins the transaction, so a rollback takes it back.
    async with UnitOfWork(db) as uow:
        ((lead_id, at),) = await driver.rows(uow.session, _ADD_LEAD, {"name": "Ana", "at": _NOW})
        assert at == _NOW and at.tzinfo is not None
        # The session's own statements run in the same transaction and see the row.
        assert (await uow.session.get(Lead, lead_id)) is not None
        await uow.rollback()
    assert await lead_count(db, "Ana") == 0
    # After a statement of the session, and committed with it.
    async with UnitOfWork(db) as uow:
        await uow.session.execute(select(func.count()).select_from(Lead))
        await driver.rows(uow.session, _ADD_LEAD, {"name": "Ana", "at": _NOW})
        await uow.commit()
    assert await lead_count(db, "Ana") == 1
    # The next unit of work gets a connection of its own again (the last one went back).
    async with UnitOfWork(db) as uow:
        await driver.rows(uow.session, _ADD_LEAD, {"name": "Ana", "at": _NOW})
        await uow.commit()
    assert await lead_count(db, "Ana") == 2


async def test_errors_are_sqlalchemys_and_the_unit_of_work_ends_cleanly(db: Database) -> None:
    async with UnitOfWork(db) as uow:
        ((lead_id, _),) = await driver.rows(uow.session, _ADD_LEAD, {"name": "Bea", "at": _NOW})
        await uow.commit()
    duplicate = insert(_LEADS).values(
        id=bindparam("id"),
        stage="nuevo",
        score=0,
        tier="frio",
        timezone="America/Mexico_City",
        first_contact_at=bindparam("at"),
        last_activity_at=bindparam("at"),
        tags=[],
        custom={},
    )
    with pytest.raises(IntegrityError):
        async with UnitOfWork(db) as uow:
            await driver.rows(uow.session, duplicate, {"id": lead_id, "at": _NOW})
    async with UnitOfWork(db) as uow:  # the pool's connection is usable again
        await driver.rows(uow.session, _ADD_LEAD, {"name": "Bea", "at": _NOW})
        await uow.commit()
    assert await lead_count(db, "Bea") == 2


async def test_a_deadlock_is_a_conflict_the_engine_retries(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("SQLSTATEs are PostgreSQL's (SQLite serialises writers)")
    deadlock = text("DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '40P01'; END $$")
    with pytest.raises(DBAPIError) as raised:
        async with UnitOfWork(db) as uow:
            await driver.rows(uow.session, deadlock, {})
    assert is_conflict(raised.value)


async def a_conversation(db: Database) -> tuple[int, int]:
    """A lead with a web chat conversation (the bot's "hola" in it, at _NOW): their ids."""
    async with UnitOfWork(db) as uow:
        lead = Lead(
            name="Caro",
            stage="nuevo",
            score=7,
            tier="tibio",
            timezone="America/Bogota",
            source="webchat",
            first_contact_at=_NOW,
            last_activity_at=_NOW,
            tags=["vip"],
            custom={"presupuesto": "alto"},
        )
        uow.session.add(lead)
        await uow.session.flush()
        identity = ChannelIdentity(
            lead_id=lead.id,
            channel=Channel.WEBCHAT,
            external_id="caro-0001-abcdef",
            reachable=True,
            created_at=_NOW,
        )
        uow.session.add(identity)
        await uow.session.flush()
        conversation = Conversation(
            lead_id=lead.id,
            identity_id=identity.id,
            channel=Channel.WEBCHAT,
            state=ConversationState.BOT,
            context={"pending": "schedule.book"},
            created_at=_NOW,
        )
        uow.session.add(conversation)
        await uow.session.flush()
        uow.session.add(
            Message(
                conversation_id=conversation.id,
                channel=Channel.WEBCHAT,
                direction=Direction.OUT,
                author=Author.BOT,
                text="hola",
                status=DeliveryStatus.SENT,
                created_at=_NOW,
            )
        )
        await uow.commit()
        return lead.id, conversation.id


async def test_values_come_back_as_the_orm_reads_them(db: Database) -> None:
    # The engine's locked read makes its three objects from the driver's row: each column's
    # value must be what the ORM itself reads (enums, JSON, times with their zone).
    await a_conversation(db)
    async with UnitOfWork(db) as uow:
        found, watched = await uow.conversations.for_sender_watched(
            Channel.WEBCHAT, "caro-0001-abcdef", "idle"
        )
        assert found is not None and watched is False
        assert found.lead.id == found.lead_id and found.identity.id == found.identity_id
        by_driver = [values(found), values(found.identity), values(found.lead)]
        ids = found.id, found.identity_id, found.lead_id
    async with db.session() as session:
        expected = [
            values(await session.get(Conversation, ids[0])),
            values(await session.get(ChannelIdentity, ids[1])),
            values(await session.get(Lead, ids[2])),
        ]
    assert by_driver == expected
    # (value, type) per column: JSON decoded, times aware, as the ORM's.
    assert by_driver[0]["context"] == ({"pending": "schedule.book"}, dict)
    assert by_driver[2]["tags"] == (["vip"], list)
    assert by_driver[2]["first_contact_at"] == (_NOW, datetime)


def values(row: Any) -> dict[str, Any]:
    columns = row.__mapper__.column_attrs
    return {
        column.key: (getattr(row, column.key), type(getattr(row, column.key))) for column in columns
    }


async def test_listeners_see_every_statement(db: Database) -> None:
    seen: list[str] = []

    def listener(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", listener)
    try:
        async with UnitOfWork(db) as uow:
            await driver.rows(uow.session, _ADD_LEAD, {"name": "Dani", "at": _NOW})
            await uow.commit()
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", listener)
    assert [s for s in seen if s.startswith("INSERT INTO leads")]


def test_the_engines_statements_run_on_the_driver() -> None:
    # What the module is for: none of the hot path's statements may fall back to the
    # session for something SQLAlchemy fills in at each execution.
    from sqlalchemy.dialects.postgresql.asyncpg import dialect

    from storage import repositories

    asyncpg = dialect()
    for statement in (
        repositories._CONVERSATION_OF_SENDER_WATCHED,
        repositories._INSERT_INBOUND_AFTER,
        repositories._inbound_reading(sent_since=True, upcoming=True),
        repositories._OPEN_FOR_NEW_LEAD,
        repositories._INSERT_MESSAGE_AND_OUTBOX,
    ):
        assert driver._compiled(statement, asyncpg) is not None, statement
    assert driver._compiled(insert(_LEADS).values(name="x"), asyncpg) is None  # tags' default
    expanding = select(_LEADS.c.id).where(_LEADS.c.id.in_(bindparam("ids", expanding=True)))
    assert driver._compiled(expanding, asyncpg) is None


async def test_a_statement_without_rows_gives_none_through_either_path(db: Database) -> None:
    # (SQLite runs it through the session, whose result then has no rows to ask for.)
    rename = update(_LEADS).where(_LEADS.c.name == bindparam("old")).values(name=bindparam("new"))
    async with UnitOfWork(db) as uow:
        await driver.rows(uow.session, _ADD_LEAD, {"name": "Eva", "at": _NOW})
        assert await driver.rows(uow.session, rename, {"old": "Eva", "new": "Eva María"}) == []
        await uow.commit()
    assert await lead_count(db, "Eva María") == 1


def inbound(conversation_id: int, message_id: str) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "channel": Channel.WEBCHAT,
        "direction": Direction.IN,
        "author": Author.LEAD,
        "text": "¿y mañana?",
        "media": [],
        "channel_message_id": message_id,
        "intent": "schedule.book",
        "confidence": 0.9,
        "status": DeliveryStatus.RECEIVED,
        "created_at": _NOW + timedelta(minutes=5),
    }


async def test_what_is_read_with_an_inbound_message_is_what_reading_it_apart_says(
    db: Database,
) -> None:
    # One statement on PostgreSQL, a statement each on SQLite: the same answers as
    # `sent_since` and `next_for` asked after the message is stored.
    lead_id, conversation_id = await a_conversation(db)
    later = _NOW + timedelta(minutes=5)
    async with UnitOfWork(db) as uow:
        for days, state in ((-1, AppointmentState.CONFIRMED), (1, AppointmentState.CANCELLED)):
            starts = _NOW + timedelta(days=days)
            uow.session.add(
                Appointment(
                    lead_id=lead_id,
                    kind=AppointmentKind.CALL,
                    starts_at=starts,
                    ends_at=starts + timedelta(minutes=30),
                    state=state,
                )
            )
        starts = _NOW + timedelta(days=2)
        upcoming = Appointment(
            lead_id=lead_id,
            conversation_id=conversation_id,
            kind=AppointmentKind.VISIT,
            starts_at=starts,
            ends_at=starts + timedelta(hours=1),
        )
        uow.session.add(upcoming)
        await uow.commit()
    async with db.session() as session:
        expected = values(await session.get(Appointment, upcoming.id))

    for n, (since, sent) in enumerate(((_NOW - timedelta(minutes=1), True), (_NOW, False))):
        async with UnitOfWork(db) as uow:
            reads = Reads(since=since, upcoming_for=(lead_id, later))
            received = await uow.messages.add_inbound_after(
                inbound(conversation_id, f"m{n}"), reads
            )
            assert received is not None
            assert received.sent_since is sent
            assert received.sent_since is await uow.messages.sent_since(conversation_id, since)
            assert received.upcoming is not None
            assert values(received.upcoming) == expected
            assert await uow.appointments.next_for(lead_id, later) is received.upcoming
            assert received.before is not None
            assert (received.before.direction, received.before.author) == (
                Direction.OUT if n == 0 else Direction.IN,
                Author.BOT if n == 0 else Author.LEAD,
            )
            await uow.commit()

    async with UnitOfWork(db) as uow:
        # Nothing asked, nothing read; no appointment after the last one: None, read.
        received = await uow.messages.add_inbound_after(inbound(conversation_id, "m2"))
        assert received is not None and (received.sent_since, received.upcoming) == (False, None)
        nothing = Reads(upcoming_for=(lead_id, _NOW + timedelta(days=3)))
        received = await uow.messages.add_inbound_after(inbound(conversation_id, "m3"), nothing)
        assert received is not None and received.upcoming is None
        # The channel delivered it before: None, whatever was asked.
        again = Reads(since=_NOW, upcoming_for=(lead_id, later))
        assert await uow.messages.add_inbound_after(inbound(conversation_id, "m0"), again) is None


async def test_a_row_inserted_alone_is_in_the_session_as_if_read_back(db: Database) -> None:
    # `_inserted` writes the row without flushing the rest and puts it in the session as a
    # query would: the session's own, clean (its constructor's history cleared), and a later
    # change of it written as an UPDATE of that column alone.
    seen: list[str] = []

    def listener(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    async with UnitOfWork(db) as uow:
        pending = Lead(
            name="Fer",
            stage="nuevo",
            score=0,
            tier="frio",
            timezone="America/Lima",
            first_contact_at=_NOW,
            last_activity_at=_NOW,
        )
        uow.session.add(pending)
        note = Notification(kind="handoff", text="Fer espera", created_at=_NOW)
        await _inserted(uow.session, note)
        assert note.id is not None
        assert pending in uow.session.new  # not flushed by the insert
        assert note not in uow.session.new and note not in uow.session.dirty
        event.listen(db.engine.sync_engine, "before_cursor_execute", listener)
        try:
            assert await uow.session.get(Notification, note.id) is note
            note.read_at = _NOW
            await uow.session.flush()
        finally:
            event.remove(db.engine.sync_engine, "before_cursor_execute", listener)
        await uow.commit()
    assert not [s for s in seen if s.startswith("SELECT")]  # `get` found it in the session
    updates = [s for s in seen if s.startswith("UPDATE notifications")]
    assert len(updates) == 1 and "read_at" in updates[0] and "text" not in updates[0]
    async with db.session() as session:
        stored = await session.get(Notification, note.id)
        assert stored is not None and stored.read_at == _NOW and stored.text == "Fer espera"


async def test_rows_written_with_the_turns_changes_leave_the_session_written_once(
    db: Database,
) -> None:
    # On PostgreSQL the CRM rows go out in the turn's one statement without their ids and
    # leave the session (on SQLite the ORM's flush writes them): either way the session holds
    # nothing new afterwards, another flush writes nothing, and each row is stored once.
    lead_id = await stored_lead(db, "Gil")
    seen: list[str] = []

    def listener(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    async with UnitOfWork(db) as uow:
        lead = await uow.session.get(Lead, lead_id)
        assert lead is not None
        lead.score = 20
        rows = [
            Activity(lead_id=lead_id, kind="note", occurred_at=_NOW, created_at=_NOW, body="a"),
            Activity(lead_id=lead_id, kind="note", occurred_at=_NOW, created_at=_NOW, body="b"),
            StageChange(lead_id=lead_id, pipeline="ventas", to_stage="nuevo", at=_NOW),
        ]
        for row in rows:
            uow.session.add(row)
        await uow.write_changes()
        assert not uow.session.new and not uow.session.dirty
        if db.engine.dialect.name == "postgresql":
            assert all(row not in uow.session for row in rows)
        event.listen(db.engine.sync_engine, "before_cursor_execute", listener)
        try:
            await uow.session.flush()
        finally:
            event.remove(db.engine.sync_engine, "before_cursor_execute", listener)
        await uow.commit()
    assert seen == []
    async with db.session() as session:
        bodies = select(Activity.body).where(Activity.lead_id == lead_id).order_by(Activity.body)
        assert list((await session.execute(bodies)).scalars()) == ["a", "b"]
        changes = select(func.count()).select_from(StageChange)
        assert (await session.execute(changes.where(StageChange.lead_id == lead_id))).scalar() == 1
        stored = await session.get(Lead, lead_id)
        assert stored is not None and stored.score == 20


async def test_a_unit_of_work_ends_with_its_connection_back_and_its_rows_readable(
    db: Database,
) -> None:
    # Committed, a unit of work closes without a round trip; left uncommitted (an error, or
    # a read after the commit began another transaction) it rolls back. Either way the rows
    # it read stay readable, detached, and its connection is back in the pool.
    lead_id = await stored_lead(db, "Hugo")
    pool = db.engine.pool

    async with UnitOfWork(db) as uow:
        lead = await uow.session.get(Lead, lead_id)
        assert lead is not None
        lead.name = "Hugo R."
        await uow.commit()
    assert inspect(lead).detached and lead.name == "Hugo R."

    read: list[Lead] = []

    async def failing_turn() -> None:
        async with UnitOfWork(db) as uow:
            lead = await uow.session.get(Lead, lead_id)
            assert lead is not None
            read.append(lead)
            lead.name = "nadie"
            await uow.session.flush()
            raise RuntimeError("the turn failed")

    with pytest.raises(RuntimeError):
        await failing_turn()
    assert inspect(read[0]).detached

    async with UnitOfWork(db) as uow:
        await uow.commit()
        again = await uow.session.get(Lead, lead_id)  # a new transaction, never committed
        assert again is not None and again.name == "Hugo R."
        again.name = "tampoco"
        await uow.session.flush()
    assert inspect(again).detached and again.name == "tampoco"  # as it was read, not stored

    if hasattr(pool, "checkedout"):  # (SQLite's pool keeps no count)
        assert pool.checkedout() == 0
    async with db.session() as session:
        stored = await session.get(Lead, lead_id)
        assert stored is not None and stored.name == "Hugo R."


_BACKEND = text("SELECT pg_backend_pid()")  # run on the driver: it begins the transaction


async def commit_on_the_driver(db: Database, name: str) -> None:
    """A lead added in a unit of work whose transaction the driver began and commits."""
    async with UnitOfWork(db) as uow:
        await driver.rows(uow.session, _BACKEND, {})
        await uow.session.execute(_ADD_LEAD, {"name": name, "at": _NOW})
        await uow.commit()


@pytest.mark.parametrize("how", ["unit of work", "session"])
async def test_a_commit_fails_on_the_driver_as_the_sessions_would(db: Database, how: str) -> None:
    # The unit of work's commit goes out on the driver when the driver began the transaction;
    # a COMMIT that PostgreSQL refuses (a deferred constraint) must fail the same way as
    # through the session, leave nothing behind and leave the pool's connection usable.
    if db.is_sqlite:
        pytest.skip("deferred constraints and the driver's commit are PostgreSQL's")
    table = (
        "CREATE TEMP TABLE pairs (n int, UNIQUE (n) DEFERRABLE INITIALLY DEFERRED) ON COMMIT DROP"
    )

    async def turn() -> None:
        async with UnitOfWork(db) as uow:
            await driver.rows(uow.session, _BACKEND, {})
            assert driver._OPEN in uow.session.info  # (the driver's transaction)
            await uow.session.execute(_ADD_LEAD, {"name": "Iris", "at": _NOW})
            await uow.session.execute(text(table))
            await uow.session.execute(text("INSERT INTO pairs VALUES (1), (1)"))  # not yet
            await (uow.commit() if how == "unit of work" else uow.session.commit())

    with pytest.raises(IntegrityError):
        await turn()
    assert await lead_count(db, "Iris") == 0
    await commit_on_the_driver(db, "Iris")  # the next unit of work goes through
    assert await lead_count(db, "Iris") == 1
    pool = db.engine.pool
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_unit_of_work_whose_connection_dies_before_its_commit_fails_and_recovers(
    db: Database,
) -> None:
    # The server ends the connection between the last statement and the COMMIT: the commit
    # fails as a disconnect (the engine answers 503 and the channel redelivers), nothing is
    # stored, and the pool replaces the connection for the next unit of work.
    if db.is_sqlite:
        pytest.skip("a server to end the connection is PostgreSQL's")

    async def turn() -> None:
        async with UnitOfWork(db) as uow:
            ((pid,),) = await driver.rows(uow.session, _BACKEND, {})
            await uow.session.execute(_ADD_LEAD, {"name": "Juan", "at": _NOW})
            async with db.engine.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await uow.commit()

    with pytest.raises(DBAPIError) as failed:
        await turn()
    assert failed.value.connection_invalidated
    assert await lead_count(db, "Juan") == 0
    await commit_on_the_driver(db, "Juan")  # the next unit of work goes through
    assert await lead_count(db, "Juan") == 1


async def test_a_connection_the_pool_does_not_keep_is_closed_after_the_drivers_commit(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # With every pool place taken, a connection that comes back is closed, which is a round
    # trip: the driver's commit must hand it back where that can happen, or the pool logs
    # "Exception closing connection" (MissingGreenlet) and the connection is left open. The
    # place may be taken before the commit, or by another unit of work while its COMMIT is
    # out.
    db = Database(database_url, pool_size=1)  # and one overflow connection
    if db.is_sqlite:
        await db.dispose()
        pytest.skip("the driver's commit and the pool's overflow are PostgreSQL's")
    try:
        with caplog.at_level(logging.ERROR, logger="sqlalchemy.pool"):
            for name, meanwhile in (("Kim", False), ("Lía", True)):
                async with UnitOfWork(db) as uow:
                    await driver.rows(uow.session, _BACKEND, {})
                    overflow = uow.session.info[driver._OPEN].driver
                    other = await db.engine.connect()
                    await other.execute(text("SELECT 1"))
                    await other.commit()  # (handed back, it has nothing to roll back)
                    await uow.session.execute(_ADD_LEAD, {"name": name, "at": _NOW})
                    if meanwhile:  # (the COMMIT goes out first; the other comes back then)
                        await asyncio.gather(uow.commit(), other.close())
                    else:
                        await other.close()  # the pool's one place, taken
                        await uow.commit()
                assert [r.getMessage() for r in caplog.records] == []
                assert overflow.is_closed()
                assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
                assert await lead_count(db, name) == 1
    finally:
        await db.dispose()
