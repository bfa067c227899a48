"""`storage.folded._changes` writes what the ORM's flush would write, read from the same state.

The oracle is the ORM's own history of each attribute (what its flush reads): for every kind of
change the engine makes, the folded statement's columns and values must be the flush's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.orm import ColumnProperty, DeclarativeBase, Mapped, Session, mapped_column

from storage.folded import _INSERTED, _changes, column_values
from storage.models import Activity, Base, Conversation, Lead, StageChange

WHEN = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def by_history(row: Base) -> dict[str, Any] | None:
    """What the ORM's history says changed: the columns to write, None for anything else."""
    state = inspect(row)
    changed: dict[str, Any] = {}
    for key in state.committed_state:
        prop = state.mapper.attrs[key]
        if not isinstance(prop, ColumnProperty):
            return None
        history = state.attrs[key].history
        if history.added:
            changed[prop.columns[0].key] = history.added[0]
        elif history.deleted:
            return None
    return changed


@pytest.fixture
def rows() -> Iterator[tuple[Session, Lead, Conversation]]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine, expire_on_commit=False) as session:
        lead = Lead(name="Ana", stage="nuevo", score=0, tier="frio", timezone="America/Bogota")
        session.add(lead)
        session.flush()
        conversation = Conversation(
            lead_id=lead.id, identity_id=1, channel="webchat", context={"misses": 0}
        )
        session.add(conversation)
        session.commit()
        yield session, lead, conversation
    engine.dispose()


def change_score(lead: Lead, conversation: Conversation) -> None:
    lead.score, lead.tier = 15, "tibio"


def same_values(lead: Lead, conversation: Conversation) -> None:
    lead.score, lead.name = 0, "Ana"


def back_and_forth(lead: Lead, conversation: Conversation) -> None:
    lead.score = 5
    lead.score = 0


def new_context(lead: Lead, conversation: Conversation) -> None:
    conversation.context = {"misses": 1, "pending": "schedule.book"}


def expired_then_set(lead: Lead, conversation: Conversation) -> None:
    inspect(lead).session.expire(lead, ["last_activity_at"])  # type: ignore[union-attr]
    lead.last_activity_at = WHEN


def none_to_value(lead: Lead, conversation: Conversation) -> None:
    lead.opted_out_at = WHEN
    conversation.last_inbound_at = WHEN


def deleted(lead: Lead, conversation: Conversation) -> None:
    del lead.name


def relationship_set(lead: Lead, conversation: Conversation) -> None:
    conversation.lead = lead


CHANGES: list[Callable[[Lead, Conversation], None]] = [
    change_score,
    same_values,
    back_and_forth,
    new_context,
    expired_then_set,
    none_to_value,
    deleted,
    relationship_set,
]


@pytest.mark.parametrize("change", CHANGES, ids=lambda change: change.__name__)
def test_the_folded_columns_are_the_flushs(
    rows: tuple[Session, Lead, Conversation], change: Callable[[Lead, Conversation], None]
) -> None:
    _, lead, conversation = rows
    change(lead, conversation)
    for row in (lead, conversation):
        expected = by_history(row)
        found = _changes(row)
        if expected is None or found is None:
            assert found is expected is None
            continue
        # The conversation's `updated_at` (an `onupdate`) is added whenever something else is.
        extra = {"updated_at"} if isinstance(row, Conversation) and expected else set()
        assert set(found) == set(expected) | extra
        assert {k: v for k, v in found.items() if k not in extra} == expected


def test_the_rows_written_without_their_ids_leave_the_session_alone() -> None:
    # `_Collected.written` takes them out of the session without the expunge cascade, which
    # would take related rows with them: none of these kinds may have one.
    for kind in _INSERTED:
        assert not [r.key for r in inspect(kind).relationships if r.cascade.expunge], kind


def test_a_new_rows_values_are_the_ones_the_flush_inserts(
    rows: tuple[Session, Lead, Conversation],
) -> None:
    # `column_values` is what the folded INSERT writes for a new row: the values given, the
    # model's defaults for the rest (a value, or a function called once per row).
    session, lead, _ = rows
    new_rows: list[Base] = [
        Lead(name="Bea", stage="nuevo", score=3, tier="frio", timezone="America/Lima"),
        Conversation(lead_id=lead.id, identity_id=2, channel="webchat"),
        Activity(lead_id=lead.id, kind="note", occurred_at=WHEN, body="hola"),
        StageChange(lead_id=lead.id, pipeline="ventas", to_stage="nuevo", at=WHEN),
    ]
    for row in new_rows:
        found = column_values(row)
        assert found is not None
        session.add(row)
        session.flush()
        table = row.__table__
        stored = {c.key: getattr(row, c.key) for c in table.columns if not c.primary_key}
        assert found.keys() == stored.keys()
        for key, value in found.items():
            if isinstance(value, datetime):  # a default's now, taken a moment apart
                assert abs(value - stored[key]).total_seconds() < 5, key
            else:
                assert value == stored[key], key


class _Other(DeclarativeBase):
    pass


class _Stamped(_Other):
    __tablename__ = "stamped"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(default="sin nombre")
    stamp: Mapped[str] = mapped_column(server_default="ahora")


class _Counted(_Other):
    __tablename__ = "counted"
    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(default=text("1 + 1"))


def test_a_column_only_the_database_fills_in_is_left_to_the_flush() -> None:
    # A server default, or a default computed in SQL: the folded INSERT cannot write it, so
    # the row goes to the ORM's flush (None); given a value, the row folds as any other.
    # (Models of a metadata of their own, not the service's: typed as its Base here.)
    assert column_values(cast(Base, _Stamped(name="Ceci"))) is None
    stamped = column_values(cast(Base, _Stamped(stamp="ayer")))
    assert stamped == {"name": "sin nombre", "stamp": "ayer"}
    assert column_values(cast(Base, _Counted())) is None
    assert column_values(cast(Base, _Counted(number=3))) == {"number": 3}
