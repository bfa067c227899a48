"""Queries, one small class per aggregate. Repositories never commit: the unit of work does."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    String,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Result
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, contains_eager
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.dml import ReturningInsert
from sqlalchemy.sql.elements import BindParameter

from bot.core.errors import ConflictError
from bot.core.model import (
    ActionState,
    AppointmentState,
    Author,
    Channel,
    ConversationState,
    DeliveryStatus,
    Direction,
    HandoffState,
    OutboxState,
    SequenceState,
)
from storage import driver, folded
from storage.models import (
    Agent,
    Appointment,
    AuditEvent,
    Base,
    ChannelIdentity,
    Conversation,
    DeferredInbound,
    Handoff,
    Lead,
    LeadPhone,
    Message,
    Notification,
    OutboxItem,
    ScheduledAction,
    SequenceRun,
    Task,
    Transfer,
)

# Statements on the engine's hot path are built once and executed with parameters: building
# a statement per message costs more than running it. They target tables, not mapped classes,
# so SQLAlchemy runs them as plain Core statements without the ORM's bookkeeping.


def _aware(value: datetime | None) -> datetime | None:
    """An aggregate (min, max) comes back without the column's type: naive on SQLite."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite hands aggregates of text-stored times back as text
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@functools.cache
def _insert_ignoring(dialect: str, table: Table, conflict: tuple[str, ...]) -> ReturningInsert[Any]:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=list(conflict)).returning(table.c.id)


async def insert_ignoring_conflict(
    session: AsyncSession, model: type[Base], values: dict[str, Any], conflict: Sequence[str]
) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: the new id, or None if the key exists.

    The unique index decides, not a prior SELECT, so two transactions racing with the same key
    get one row: on PostgreSQL the second waits for the first and then inserts nothing.
    """
    table = cast(Table, model.__table__)
    statement = _insert_ignoring(session.get_bind().dialect.name, table, tuple(conflict))
    return (await session.execute(statement, values)).scalar_one_or_none()


async def _unflushed(
    session: AsyncSession, statement: Executable, parameters: dict[str, Any]
) -> Result[Any]:
    """Run a statement that writes rows nothing pending in the session refers to or changes,
    without the ORM's autoflush first: the lead's and conversation's changes then go out
    together at the end of the turn (`storage.folded`) instead of before each such insert."""
    with session.no_autoflush:
        return await session.execute(statement, parameters)


def _flushing_for(session: AsyncSession, *models: type) -> dict[str, Any]:
    """Execution options for a read of `models` rows: the ORM's autoflush only when the
    session holds pending changes of those kinds (which the read must see). The lead's and
    conversation's changes otherwise wait for the reply's statement (`storage.folded`)."""
    return {"autoflush": folded.holds(session, *models)}


_MESSAGES = cast(Table, Message.__table__)
_LEADS = cast(Table, Lead.__table__)
_IDENTITIES = cast(Table, ChannelIdentity.__table__)
_CONVERSATIONS = cast(Table, Conversation.__table__)
_INSERT_MESSAGE = insert(_MESSAGES).returning(_MESSAGES.c.id)
_INSERT_OUTBOX = insert(cast(Table, OutboxItem.__table__))
_EARLIER = aliased(OutboxItem)
_CLAIM_OUTBOX = (
    select(OutboxItem)
    .where(
        or_(
            and_(
                OutboxItem.state == OutboxState.PENDING,
                OutboxItem.next_attempt_at <= bindparam("now"),
            ),
            and_(
                OutboxItem.state == OutboxState.SENDING,
                OutboxItem.lease_until < bindparam("now"),
            ),
        ),
        ~exists().where(
            _EARLIER.channel == OutboxItem.channel,
            _EARLIER.recipient == OutboxItem.recipient,
            _EARLIER.id < OutboxItem.id,
            _EARLIER.state.in_([OutboxState.PENDING, OutboxState.SENDING]),
        ),
    )
    .order_by(OutboxItem.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True, of=OutboxItem)
)
_APPOINTMENTS = cast(Table, Appointment.__table__)
_INSERT_APPOINTMENT = insert(_APPOINTMENTS).returning(_APPOINTMENTS.c.id)
# The engine's first statement for a known sender: the conversation with its identity and
# lead, both rows locked for this transaction. Every transaction that touches a lead's
# conversation, the lead, its sequence run and its scheduled actions takes its locks in that
# order (scheduled actions it never waits for: see `Actions.withdraw`), so none can deadlock.
# NO KEY UPDATE still lets other transactions insert rows that refer to them (a scheduled
# reminder's message).
_CONVERSATION_OF_SENDER = (
    select(Conversation)
    .join(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
    .join(Lead, Lead.id == Conversation.lead_id)
    .options(contains_eager(Conversation.identity), contains_eager(Conversation.lead))
    .where(
        ChannelIdentity.channel == bindparam("channel"),
        ChannelIdentity.external_id == bindparam("external_id"),
    )
    .with_for_update(key_share=True, of=[Conversation, Lead])
)

# Statements of the engine's turn that depend only on their parameters are built once: building
# one and its cache key costs more than its round trip.
_SENT_SINCE = select(
    exists().where(
        Message.conversation_id == bindparam("conversation_id"),
        Message.direction == Direction.OUT,
        Message.created_at > bindparam("since"),
    )
)
_NEXT_APPOINTMENT = (
    select(*_APPOINTMENTS.columns)  # (its row comes back as values: see `_loaded`)
    .where(
        _APPOINTMENTS.c.lead_id == bindparam("lead_id"),
        _APPOINTMENTS.c.state == AppointmentState.CONFIRMED,
        _APPOINTMENTS.c.starts_at >= bindparam("now"),
    )
    .order_by(_APPOINTMENTS.c.starts_at)
    .limit(1)
)

_ACTIONS = cast(Table, ScheduledAction.__table__)
# "Pending" written into a statement's text, not sent as a parameter: the predicate of the
# partial index ix_scheduled_actions_pending_lead_id_kind (migration 0016), which a prepared
# statement's generic plan uses only when the statement says what the index's WHERE says.
# (A literal column is compiled once; a `literal_execute` parameter is rendered into the text
# at every execution.)
_PENDING_STATE = literal_column(f"'{ActionState.PENDING.value}'", String)
# Whether an action of a kind waits for the conversation's lead: true or NULL. A scalar
# subquery with LIMIT, not EXISTS: PostgreSQL may run a correlated EXISTS as a hashed subplan,
# reading every pending action of the kind (one per lead the bot is talking to) to answer for
# one lead, and does whenever its statistics are thin (a young database, or a prepared
# statement's generic plan made while the table was small); this form is answered per lead,
# from the index of pending actions by lead and kind.
_PENDING_FOR_LEAD = (
    select(true())
    .where(
        ScheduledAction.lead_id == Conversation.lead_id,
        ScheduledAction.kind == bindparam("kind"),
        ScheduledAction.state == _PENDING_STATE,
    )
    .limit(1)
    .correlate(Conversation)
    .scalar_subquery()
)
# Its columns named, not its entities: the row comes back as plain values (on PostgreSQL straight
# from the driver, see `storage.driver`) and the three objects are made from it (`_loaded`).
_SENDER_ROW = (Conversation, ChannelIdentity, Lead)
_CONVERSATION_OF_SENDER_WATCHED = (
    select(
        *_CONVERSATIONS.columns,
        *_IDENTITIES.columns,
        *_LEADS.columns,
        _PENDING_FOR_LEAD.label("pending"),
    )
    .select_from(
        _CONVERSATIONS.join(_IDENTITIES, _IDENTITIES.c.id == _CONVERSATIONS.c.identity_id).join(
            _LEADS, _LEADS.c.id == _CONVERSATIONS.c.lead_id
        )
    )
    .where(
        _IDENTITIES.c.channel == bindparam("channel"),
        _IDENTITIES.c.external_id == bindparam("external_id"),
    )
    .with_for_update(key_share=True, of=[_CONVERSATIONS, _LEADS])
)
# One statement, either way: the action is added unless one of its kind waits for the lead.
_UNLESS_PENDING_COLUMNS = (
    "kind",
    "due_at",
    "payload",
    "state",
    "lead_id",
    "attempts",
    "created_at",
)


def _add_unless_pending(prefix: str) -> Executable:
    def value(name: str) -> BindParameter[Any]:
        return bindparam(prefix + name, type_=_ACTIONS.c[name].type)

    return insert(_ACTIONS).from_select(
        list(_UNLESS_PENDING_COLUMNS),
        select(*(value(name) for name in _UNLESS_PENDING_COLUMNS)).where(
            ~exists().where(
                _ACTIONS.c.lead_id == value("lead_id"),
                _ACTIONS.c.kind == value("kind"),
                _ACTIONS.c.state == _PENDING_STATE,  # (the row added is pending too)
            )
        ),
    )


# A reply and its outbox row. PostgreSQL: one round trip (a data-modifying CTE); SQLite: two.
_OUTBOX = cast(Table, OutboxItem.__table__)
_OUTBOX_FROM_MESSAGE = [c.name for c in _OUTBOX.columns if c.name not in ("id", "message_id")]
_MESSAGE_COLUMNS = [c.name for c in _MESSAGES.columns if c.name != "id"]
_NEW_MESSAGE = (
    insert(_MESSAGES)
    .values(
        {name: bindparam(f"m_{name}", type_=_MESSAGES.c[name].type) for name in _MESSAGE_COLUMNS}
    )
    .returning(_MESSAGES.c.id)
    .cte("new_message")
)
_INSERT_MESSAGE_AND_OUTBOX = (
    insert(_OUTBOX)
    .from_select(
        ["message_id", *_OUTBOX_FROM_MESSAGE],
        select(
            _NEW_MESSAGE.c.id,
            *(bindparam(f"o_{name}", type_=_OUTBOX.c[name].type) for name in _OUTBOX_FROM_MESSAGE),
        ),
    )
    .returning(_OUTBOX.c.message_id)
)


# The inbound message and the message before it in its conversation (the engine's "replied
# fast" check). PostgreSQL: one round trip; the SELECT reads the snapshot the INSERT starts
# from, so it sees the conversation as it was just before this message.
_INBOUND_COLUMNS = (
    "conversation_id",
    "channel",
    "direction",
    "author",
    "text",
    "media",
    "channel_message_id",
    "intent",
    "confidence",
    "status",
    "created_at",
)
_PREVIOUS = (
    select(_MESSAGES.c.direction, _MESSAGES.c.author, _MESSAGES.c.script, _MESSAGES.c.created_at)
    .where(_MESSAGES.c.conversation_id == bindparam("conversation_id"))
    .order_by(_MESSAGES.c.id.desc())
    .limit(1)
    .cte("previous")
)
_NEW_INBOUND = (
    postgresql.insert(_MESSAGES)
    .values({name: bindparam(name, type_=_MESSAGES.c[name].type) for name in _INBOUND_COLUMNS})
    .on_conflict_do_nothing(index_elements=["channel", "channel_message_id"])
    .returning(_MESSAGES.c.id)
    .cte("inbound")
)
_INSERT_INBOUND_AFTER = select(
    _NEW_INBOUND.c.id,
    _PREVIOUS.c.direction,
    _PREVIOUS.c.author,
    _PREVIOUS.c.script,
    _PREVIOUS.c.created_at,
).select_from(_NEW_INBOUND.outerjoin(_PREVIOUS, true()))


@functools.cache
def _inbound_reading(sent_since: bool, upcoming: bool) -> Executable:
    """`_INSERT_INBOUND_AFTER` with the turn's reads that depend only on the lock the engine
    already holds: whether a message went to the lead since (`_SENT_SINCE`'s, parameter
    `since`), the lead's next appointment (`_NEXT_APPOINTMENT`'s columns, parameters
    `lead_id` and `now`). One statement per combination, built once."""
    statement = _INSERT_INBOUND_AFTER
    if sent_since:
        statement = statement.add_columns(_SENT_SINCE.scalar_subquery())
    if upcoming:
        next_one = _NEXT_APPOINTMENT.cte("upcoming")
        statement = statement.add_columns(*next_one.c).outerjoin(next_one, true())
    return statement


@dataclass(frozen=True, slots=True)
class Previous:
    """What the engine needs of the message before an inbound one."""

    direction: Direction
    author: Author
    script: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Reads:
    """What the engine reads with an inbound message, in its statement: what is committed
    (the turn reads it before it books, moves or cancels anything itself)."""

    since: datetime | None = None  # whether a message went to the lead after this
    upcoming_for: tuple[int, datetime] | None = None  # a lead's next appointment after a time


@dataclass(frozen=True, slots=True)
class Received:
    """An inbound message stored, and what was read with it."""

    message_id: int
    before: Previous | None  # the conversation's message before it; None: the first
    sent_since: bool = False  # `Reads.since`: a message went to the lead after it
    upcoming: Appointment | None = None  # `Reads.upcoming_for`: the next appointment


# A new lead's first conversation: the lead, its channel identity and the conversation in one
# statement on PostgreSQL. The identity's unique key decides a race for the same sender: the
# loser's statement inserts no identity and no conversation (the caller then rolls back).
_LEAD_COLUMNS = [c.name for c in _LEADS.columns if c.name != "id"]
_IDENTITY_COLUMNS = [c.name for c in _IDENTITIES.columns if c.name not in ("id", "lead_id")]
_CONVERSATION_COLUMNS = [
    c.name for c in _CONVERSATIONS.columns if c.name not in ("id", "lead_id", "identity_id")
]


def _values_of(table: Table, prefix: str, names: list[str]) -> list[BindParameter[Any]]:
    return [bindparam(prefix + name, type_=table.c[name].type) for name in names]


_NEW_LEAD = (
    insert(_LEADS)
    .values(dict(zip(_LEAD_COLUMNS, _values_of(_LEADS, "l_", _LEAD_COLUMNS), strict=True)))
    .returning(_LEADS.c.id)
    .cte("new_lead")
)
_NEW_IDENTITY = (
    postgresql.insert(_IDENTITIES)
    .from_select(
        ["lead_id", *_IDENTITY_COLUMNS],
        select(_NEW_LEAD.c.id, *_values_of(_IDENTITIES, "i_", _IDENTITY_COLUMNS)),
    )
    .on_conflict_do_nothing(index_elements=["channel", "external_id"])
    .returning(_IDENTITIES.c.id, _IDENTITIES.c.lead_id)
    .cte("new_identity")
)
_NEW_CONVERSATION = (
    insert(_CONVERSATIONS)
    .from_select(
        ["lead_id", "identity_id", *_CONVERSATION_COLUMNS],
        select(
            _NEW_IDENTITY.c.lead_id,
            _NEW_IDENTITY.c.id,
            *_values_of(_CONVERSATIONS, "c_", _CONVERSATION_COLUMNS),
        ),
    )
    .returning(_CONVERSATIONS.c.id, _CONVERSATIONS.c.identity_id)
    .cte("new_conversation")
)
_NEW_LEADS_MESSAGE = (
    postgresql.insert(_MESSAGES)
    .from_select(
        ["conversation_id", *_INBOUND_COLUMNS[1:]],
        select(_NEW_CONVERSATION.c.id, *_values_of(_MESSAGES, "m_", list(_INBOUND_COLUMNS[1:]))),
    )
    .on_conflict_do_nothing(index_elements=["channel", "channel_message_id"])
    .returning(_MESSAGES.c.id)
    .cte("new_leads_message")
)
_OPEN_FOR_NEW_LEAD = select(
    _NEW_LEAD.c.id,
    _NEW_CONVERSATION.c.identity_id,
    _NEW_CONVERSATION.c.id,
    _NEW_LEADS_MESSAGE.c.id,
).select_from(_NEW_LEAD.outerjoin(_NEW_CONVERSATION, true()).outerjoin(_NEW_LEADS_MESSAGE, true()))


def _persistent(session: AsyncSession, row: Base, values: dict[str, Any]) -> None:
    """A transient row with these column values (inserted, or read by a statement of ours)
    joins the session as a query's loading would put it there, not one the session holds.

    What SQLAlchemy's `loading._instance` does for a new row: the values into the instance's
    dict (setattr's events would record a history only to forget it), the identity key, the
    session, the identity map, and the history of a row built with its constructor cleared.
    `make_transient_to_detached` and `session.add` come to the same state through the save
    cascade and the attach events, at 3-4 % of a message's CPU on three rows. (The calls are
    SQLAlchemy's own, not public; the pin to 2.1 keeps them, and every test of the engine
    fails without them.)"""
    row.__dict__.update(values)
    state = instance_state(row)
    sync = session.sync_session
    key = state.mapper.identity_key_from_primary_key((values["id"],))
    state.key, state.identity_token, state.session_id = key, None, sync.hash_key
    sync.identity_map._add_unpresent(state, key)
    if state.modified:
        state._commit_all(state.dict, sync.identity_map)


@functools.cache
def _insert_returning_id(table: Table) -> Executable:
    names = [c.name for c in table.columns if not c.primary_key]
    values = dict(zip(names, _values_of(table, "", names), strict=True))
    return insert(table).values(values).returning(table.c.id)


async def _inserted(session: AsyncSession, row: Base) -> None:
    """Insert a new row now and fill in its id, without the flush of everything pending that
    `session.flush()` would be: for a row whose id is needed at once and which refers only to
    rows that exist already. The session's other changes go out together at the end of the
    turn (`storage.folded`); the row joins the session as if read back."""
    values = folded.column_values(row)
    if values is None:  # a column with only a server default: the ORM's flush reads it back
        session.add(row)
        await session.flush()
        return
    table = cast(Table, type(row).__table__)
    ((row_id,),) = await driver.rows(session, _insert_returning_id(table), values)
    _persistent(session, row, {**values, "id": row_id})


@functools.cache
def _attributes(model: type[Base]) -> tuple[str, ...]:
    """The model's attribute names, in its table's column order (a row's `select(*columns)`)."""
    mapper = model.__mapper__
    return tuple(mapper.get_property_by_column(c).key for c in mapper.local_table.columns)


def _values(model: type[Base], row: Iterable[Any]) -> dict[str, Any]:
    """The model's values from a row of its table's columns (the first ones of `row`, which
    may go on with other columns: the row is an iterator then, left at the next one)."""
    return dict(zip(_attributes(model), row, strict=False))


def _loaded(session: AsyncSession, model: type[Base], values: dict[str, Any]) -> Base:
    """The session's object of the row with these column values, made as a query would make
    it (one the session already holds stays as it is, as a query would leave it)."""
    held = session.identity_map.get(identity_key(model, (values["id"],)))
    if held is not None:
        return held
    row = model.__mapper__.class_manager.new_instance()
    _persistent(session, row, values)
    return row


def _message_and_outbox(prefix: str) -> Executable:
    return _INSERT_MESSAGE_AND_OUTBOX  # (its parameters' names are fixed: m_..., o_...)


class Leads:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, lead_id: int) -> Lead | None:
        return await self.session.get(Lead, lead_id)

    async def add(self, lead: Lead) -> Lead:
        self.session.add(lead)
        await self.session.flush()
        return lead

    async def by_phone(self, numbers: Iterable[str]) -> Lead | None:
        """The lead owning any of these E.164 numbers (all spellings of one person's number)."""
        numbers = list(numbers)
        if not numbers:
            return None
        statement = select(Lead).join(LeadPhone).where(LeadPhone.e164.in_(numbers)).limit(1)
        # Only a number not yet written could change the answer (a lead's other changes do
        # not): those wait for the turn's one write otherwise (`_flushing_for`).
        options = _flushing_for(self.session, LeadPhone)
        result = await self.session.execute(statement, execution_options=options)
        return result.scalar_one_or_none()

    async def idle(self, before: datetime, tiers: Sequence[str], limit: int) -> list[Lead]:
        """Leads of `tiers` with no activity since `before`, not opted out, locked (others
        busy with one are skipped: the next batch finds them)."""
        statement = (
            select(Lead)
            .where(
                Lead.last_activity_at < before,
                Lead.opted_out_at.is_(None),
                Lead.tier.in_(list(tiers)),
            )
            .order_by(Lead.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.execute(statement)).scalars())

    async def locked(self, lead_id: int) -> Lead | None:
        """The lead, its row locked until the transaction ends (see the lock order above)."""
        statement = select(Lead).where(Lead.id == lead_id).with_for_update(key_share=True)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def phones(self, lead_id: int) -> list[str]:
        statement = (
            select(LeadPhone.e164).where(LeadPhone.lead_id == lead_id).order_by(LeadPhone.id)
        )
        return list((await self.session.execute(statement)).scalars())

    async def add_phone(self, lead_id: int, e164: str) -> None:
        table = cast(Table, LeadPhone.__table__)
        statement = _insert_ignoring(self.session.get_bind().dialect.name, table, ("e164",))
        await _unflushed(self.session, statement, {"lead_id": lead_id, "e164": e164})


class Identities:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find(self, channel: Channel, external_id: str) -> ChannelIdentity | None:
        statement = select(ChannelIdentity).where(
            ChannelIdentity.channel == channel, ChannelIdentity.external_id == external_id
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def create(self, values: dict[str, Any]) -> ChannelIdentity | None:
        """The new identity, or None when a concurrent transaction created it first."""
        created = await insert_ignoring_conflict(
            self.session, ChannelIdentity, values, ["channel", "external_id"]
        )
        if created is None:
            return None
        # Every column is in `values`: the row is known without reading it back.
        identity = ChannelIdentity.__mapper__.class_manager.new_instance()
        _persistent(self.session, identity, {**values, "id": created})
        return identity

    async def set_reachable(self, channel: Channel, external_id: str, reachable: bool) -> bool:
        statement = (
            update(ChannelIdentity)
            .where(ChannelIdentity.channel == channel, ChannelIdentity.external_id == external_id)
            .values(reachable=reachable)
        )
        result = await self.session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]


class Conversations:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, conversation_id: int) -> Conversation | None:
        return await self.session.get(Conversation, conversation_id)

    async def add(self, conversation: Conversation) -> Conversation:
        self.session.add(conversation)
        await self.session.flush()
        return conversation

    async def open_for_new_lead(
        self,
        lead: Lead,
        identity: ChannelIdentity,
        conversation: Conversation,
        inbound: dict[str, Any],
    ) -> tuple[Conversation, int | None] | None:
        """Store a new lead with its channel identity, first conversation and first inbound
        message (`inbound`: the message's row but its conversation). The three rows are new
        and transient; their ids are filled in. The conversation with its lead and identity
        loaded, and the message's id (None when the channel already delivered that message);
        None when a concurrent transaction created that identity first: roll back either
        way. One round trip on PostgreSQL, four on SQLite."""
        if self.session.get_bind().dialect.name != "postgresql":
            await Leads(self.session).add(lead)
            values = {c: getattr(identity, c) for c in _IDENTITY_COLUMNS}
            created = await Identities(self.session).create({"lead_id": lead.id, **values})
            if created is None:
                return None
            conversation.lead, conversation.identity = lead, created
            await self.add(conversation)
            message = {**inbound, "conversation_id": conversation.id}
            return conversation, await Messages(self.session).add_inbound(message)
        lead_values = folded.column_values(lead)
        identity_values = folded.column_values(identity)
        conversation_values = folded.column_values(conversation)
        assert lead_values and identity_values and conversation_values  # model defaults only
        parameters = {f"l_{c}": lead_values[c] for c in _LEAD_COLUMNS}
        parameters.update({f"i_{c}": identity_values[c] for c in _IDENTITY_COLUMNS})
        parameters.update({f"c_{c}": conversation_values[c] for c in _CONVERSATION_COLUMNS})
        parameters.update({f"m_{c}": inbound.get(c) for c in _INBOUND_COLUMNS[1:]})
        (row,) = await driver.rows(self.session, _OPEN_FOR_NEW_LEAD, parameters)
        lead_id, identity_id, conversation_id, message_id = row
        if conversation_id is None:
            return None
        _persistent(self.session, lead, {**lead_values, "id": lead_id})
        _persistent(
            self.session, identity, {**identity_values, "id": identity_id, "lead_id": lead_id}
        )
        conversation_values.update(id=conversation_id, lead_id=lead_id, identity_id=identity_id)
        _persistent(self.session, conversation, conversation_values)
        set_committed_value(conversation, "lead", lead)
        set_committed_value(conversation, "identity", identity)
        return conversation, message_id

    async def locked(self, conversation_id: int) -> Conversation | None:
        """The conversation with its lead, both locked: the engine's lock order."""
        statement = (
            select(Conversation)
            .join(Lead, Lead.id == Conversation.lead_id)
            .options(contains_eager(Conversation.lead))
            .where(Conversation.id == conversation_id)
            .with_for_update(key_share=True, of=[Conversation, Lead])
        )
        return (await self.session.execute(statement)).scalars().unique().one_or_none()

    async def latest_for_lead(self, lead_id: int) -> Conversation | None:
        """Where to write to a lead first: the conversation they last wrote in."""
        statement = (
            select(Conversation)
            .where(Conversation.lead_id == lead_id)
            .order_by(Conversation.last_inbound_at.desc().nulls_last(), Conversation.id.desc())
            .limit(1)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def for_sender(self, channel: Channel, external_id: str) -> Conversation | None:
        """The conversation with its lead and identity, in one query (the engine's hot path),
        the conversation and lead locked for the rest of the transaction."""
        parameters = {"channel": channel, "external_id": external_id}
        result = await self.session.execute(_CONVERSATION_OF_SENDER, parameters)
        return result.scalar_one_or_none()

    async def for_sender_watched(
        self, channel: Channel, external_id: str, kind: str
    ) -> tuple[Conversation | None, bool]:
        """`for_sender`, and in the same statement whether an action of `kind` waits for
        the lead (the engine's idle check: one round trip instead of two)."""
        parameters = {"channel": channel, "external_id": external_id, "kind": kind}
        found = await driver.rows(self.session, _CONVERSATION_OF_SENDER_WATCHED, parameters)
        if not found:
            return None, False
        values = iter(found[0])
        conversation, identity, lead = (
            _loaded(self.session, model, _values(model, values)) for model in _SENDER_ROW
        )
        set_committed_value(conversation, "identity", identity)
        set_committed_value(conversation, "lead", lead)
        return cast(Conversation, conversation), bool(next(values))

    async def move(
        self,
        conversation_id: int,
        to: ConversationState,
        *,
        allowed_from: Iterable[ConversationState],
        agent_id: int | None = None,
    ) -> bool:
        """Change state only from an allowed one, atomically; False when it was not allowed."""
        statement = (
            update(Conversation)
            .where(Conversation.id == conversation_id, Conversation.state.in_(list(allowed_from)))
            .values(state=to, agent_id=agent_id)
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def release(self, agent_id: int) -> list[int]:
        """Put the conversations an agent holds back in the queue; their ids."""
        held = select(Conversation.id).where(
            Conversation.agent_id == agent_id, Conversation.state == ConversationState.AGENT
        )
        ids = list((await self.session.execute(held)).scalars())
        if ids:
            await self.session.execute(
                update(Conversation)
                .where(Conversation.id.in_(ids))
                .values(state=ConversationState.WAITING, agent_id=None)
                .execution_options(synchronize_session=False)
            )
        return ids


class Messages:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_inbound(self, values: dict[str, Any]) -> int | None:
        """The stored message's id, or None when the channel already delivered this message."""
        statement = _insert_ignoring(
            self.session.get_bind().dialect.name, _MESSAGES, ("channel", "channel_message_id")
        )
        return (await _unflushed(self.session, statement, values)).scalar_one_or_none()

    async def add_inbound_after(
        self, values: dict[str, Any], reads: Reads = Reads()
    ) -> Received | None:
        """`add_inbound`, with the conversation's message before this one and what `reads`
        asks for; None when the channel already delivered this message. One round trip on
        PostgreSQL (each read is what `sent_since` and `Appointments.next_for` would say
        after the insert), a statement each on SQLite."""
        conversation_id = values["conversation_id"]
        if self.session.get_bind().dialect.name != "postgresql":
            message_id = await self.add_inbound(values)
            if message_id is None:
                return None
            last = await self.previous(conversation_id, message_id)
            before = None
            if last is not None:
                before = Previous(last.direction, last.author, last.script, last.created_at)
            sent = reads.since is not None and await self.sent_since(conversation_id, reads.since)
            upcoming = None
            if reads.upcoming_for is not None:
                upcoming = await Appointments(self.session).next_for(*reads.upcoming_for)
            return Received(message_id, before, sent, upcoming)
        parameters = {name: values.get(name) for name in _INBOUND_COLUMNS}
        if reads.since is not None:
            parameters["since"] = reads.since
        if reads.upcoming_for is not None:
            parameters["lead_id"], parameters["now"] = reads.upcoming_for
        statement = _inbound_reading(reads.since is not None, reads.upcoming_for is not None)
        found = await driver.rows(self.session, statement, parameters)
        if not found:
            return None
        row = iter(found[0])
        message_id, direction, author, script, created_at = itertools.islice(row, 5)
        before = None if direction is None else Previous(direction, author, script, created_at)
        sent = bool(next(row)) if reads.since is not None else False
        upcoming = None
        if reads.upcoming_for is not None:
            appointment = _values(Appointment, row)
            if appointment["id"] is not None:
                upcoming = cast(Appointment, _loaded(self.session, Appointment, appointment))
        return Received(message_id, before, sent, upcoming)

    async def insert(self, values: dict[str, Any]) -> int:
        """Store a message without the ORM's bookkeeping (the hot path); returns its id."""
        return (await self.session.execute(_INSERT_MESSAGE, values)).scalar_one()

    async def get(self, message_id: int) -> Message | None:
        return await self.session.get(Message, message_id)

    async def by_channel_id(self, channel: Channel, channel_message_id: str) -> Message | None:
        statement = select(Message).where(
            Message.channel == channel, Message.channel_message_id == channel_message_id
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def sent_since(self, conversation_id: int, since: datetime) -> bool:
        """A message went to the lead in this conversation after `since` (a follow-up, a
        reminder, an agent's reply)."""
        parameters = {"conversation_id": conversation_id, "since": since}
        ((sent,),) = await driver.rows(self.session, _SENT_SINCE, parameters)
        return bool(sent)

    async def previous(self, conversation_id: int, before_id: int) -> Message | None:
        """The conversation's message just before `before_id`, either way."""
        statement = (
            select(Message)
            .where(Message.conversation_id == conversation_id, Message.id < before_id)
            .order_by(Message.id.desc())
            .limit(1)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def last_at_for_lead(self, lead_id: int) -> datetime | None:
        """When the lead's latest message, either way and on any channel, was stored."""
        conversations = select(Conversation.id).where(Conversation.lead_id == lead_id)
        statement = (
            select(Message.created_at)
            .where(Message.conversation_id.in_(conversations.scalar_subquery()))
            .order_by(Message.id.desc())
            .limit(1)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def of_conversation(
        self, conversation_id: int, *, after_id: int = 0, limit: int = 100
    ) -> list[Message]:
        """Messages after `after_id`, oldest first (the latest `limit` when after_id is 0)."""
        statement = select(Message).where(
            Message.conversation_id == conversation_id, Message.id > after_id
        )
        if after_id:
            statement = statement.order_by(Message.id).limit(limit)
            return list((await self.session.execute(statement)).scalars())
        statement = statement.order_by(Message.id.desc()).limit(limit)
        return list(reversed((await self.session.execute(statement)).scalars().all()))


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """What decides whether a claimed row may go out now."""

    opted_out: bool = False
    reachable: bool = True
    last_inbound_at: datetime | None = None  # when the lead last wrote on this channel


class Outbox:
    """Outbox rows, and every change of their state: the one place that writes it.

    pending -> sending (claimed, under a lease) -> done | pending again (retry) | failed |
    blocked (never sent on purpose). A row's message, when it has one, shows the same outcome
    to the people reading the conversation.
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, values: dict[str, Any]) -> None:
        await self.session.execute(_INSERT_OUTBOX, values)

    async def insert_with_message(
        self, message: dict[str, Any], item: dict[str, Any], *, with_changes: bool = False
    ) -> int:
        """Store an outgoing message and its outbox row (`item` without `message_id`); the
        message's id. One round trip on PostgreSQL, two on SQLite. `with_changes`: on
        PostgreSQL the session's pending changes go in the same statement (see
        `UnitOfWork.write_changes`)."""
        if self.session.get_bind().dialect.name != "postgresql":
            message_id = (await _unflushed(self.session, _INSERT_MESSAGE, message)).scalar_one()
            await _unflushed(self.session, _INSERT_OUTBOX, {**item, "message_id": message_id})
            return int(message_id)
        item = {"uncertain": False, "cancel_on_reply": False, **item}  # the columns' defaults
        parameters = {f"m_{name}": message.get(name) for name in _MESSAGE_COLUMNS}
        parameters.update({f"o_{name}": item.get(name) for name in _OUTBOX_FROM_MESSAGE})
        if with_changes:
            found = await folded.run_with_changes(self.session, _message_and_outbox, parameters)
        else:
            found = await driver.rows(self.session, _INSERT_MESSAGE_AND_OUTBOX, parameters)
        (row,) = found
        return int(row[0])

    async def get(self, item_id: int) -> OutboxItem | None:
        return await self.session.get(OutboxItem, item_id)

    async def of_message(self, message_id: int) -> OutboxItem | None:
        statement = select(OutboxItem).where(OutboxItem.message_id == message_id)
        return (await self.session.execute(statement)).scalars().unique().one_or_none()

    async def claim_due(self, now: datetime, limit: int, lease_until: datetime) -> list[OutboxItem]:
        """Claim rows that are due, at most one per recipient, oldest first.

        A row is due when it waits and its time has come, or when another dispatcher claimed
        it and its lease ran out (that process died mid-send). Only the oldest unsettled row
        of each recipient is taken, so one chat's messages go out in order while other chats
        are not held up. `SKIP LOCKED` lets several processes claim side by side on PostgreSQL;
        SQLite serialises write transactions, which gives the same guarantee.
        """
        parameters = {"now": now, "limit": limit}
        items = list((await self.session.execute(_CLAIM_OUTBOX, parameters)).scalars().unique())
        for item in items:
            if item.state == OutboxState.SENDING:
                # Its dispatcher died mid-send: the message may or may not have gone out.
                item.uncertain = True
            item.state = OutboxState.SENDING
            item.lease_until = lease_until
            item.attempts += 1
        await self.session.flush()
        return items

    async def delivery_context(self, items: Sequence[OutboxItem]) -> dict[int, DeliveryContext]:
        """Per row: has the lead opted out, can the channel reach them, when did they last
        write. Rows to an agent's own chat have no lead: nothing holds them back."""
        statement = (
            select(
                OutboxItem.id,
                Lead.opted_out_at.is_not(None),
                ChannelIdentity.reachable,
                Conversation.last_inbound_at,
            )
            .join(Lead, Lead.id == OutboxItem.lead_id)
            .join(
                ChannelIdentity,
                (ChannelIdentity.channel == OutboxItem.channel)
                & (ChannelIdentity.external_id == OutboxItem.recipient),
            )
            .join(Conversation, Conversation.identity_id == ChannelIdentity.id)
            .where(OutboxItem.id.in_([item.id for item in items if item.lead_id is not None]))
        )
        found = {
            row[0]: DeliveryContext(bool(row[1]), bool(row[2]), row[3])
            for row in await self.session.execute(statement)
        }
        return {item.id: found.get(item.id, DeliveryContext()) for item in items}

    def sent(
        self,
        item: OutboxItem,
        now: datetime,
        channel_message_id: str | None,
        status: DeliveryStatus = DeliveryStatus.SENT,
    ) -> None:
        """The channel took it (a send's receipt, or a report about a send we lost track of)."""
        item.state = OutboxState.DONE
        item.uncertain = False
        item.lease_until = None
        item.settled_at = now
        item.last_error = None
        if item.message is not None:
            item.message.status = status
            if channel_message_id is not None:
                item.message.channel_message_id = channel_message_id
            item.message.error = None

    def blocked(self, item: OutboxItem, reason: str, now: datetime) -> None:
        """Not sent, on purpose (opted out, unreachable, outside the channel's rules)."""
        self._settle(item, OutboxState.BLOCKED, DeliveryStatus.BLOCKED, reason, now)

    def failed_for_good(self, item: OutboxItem, reason: str, now: datetime) -> None:
        self._settle(item, OutboxState.FAILED, DeliveryStatus.FAILED, reason, now)

    def retry(
        self,
        item: OutboxItem,
        at: datetime,
        reason: str | None,
        *,
        counts: bool = True,
        uncertain: bool = False,
    ) -> None:
        """Back to pending until `at`; an attempt that never happened (pacing) is given back."""
        item.state = OutboxState.PENDING
        item.lease_until = None
        item.next_attempt_at = at
        item.uncertain = item.uncertain or uncertain
        if not counts:
            item.attempts -= 1
        if reason is not None:
            item.last_error = reason[:500]

    def requeue(self, item: OutboxItem, now: datetime) -> None:
        """Send a failed or held row again, as if it were new (its message keeps its id)."""
        item.state = OutboxState.PENDING
        item.uncertain = False
        item.attempts = 0
        item.next_attempt_at = now
        item.lease_until = None
        item.last_error = None
        item.settled_at = None
        if item.message is not None:
            item.message.status = DeliveryStatus.PENDING
            item.message.error = None

    async def block_unsent_for_lead(self, lead_id: int, reason: str, now: datetime) -> int:
        """Stop every message still waiting for this lead, except the opt-out confirmation."""
        statement = (
            select(OutboxItem)
            .where(
                OutboxItem.state == OutboxState.PENDING,
                OutboxItem.lead_id == lead_id,
                OutboxItem.optout_confirmation.is_(False),
            )
            .with_for_update(of=OutboxItem)
        )
        options = _flushing_for(self.session, OutboxItem)
        result = await self.session.execute(statement, execution_options=options)
        items = list(result.scalars().unique())
        for item in items:
            self.blocked(item, reason, now)
        return len(items)

    def _settle(
        self,
        item: OutboxItem,
        state: OutboxState,
        status: DeliveryStatus,
        reason: str,
        now: datetime,
    ) -> None:
        item.state = state
        item.lease_until = None
        item.settled_at = now
        item.last_error = reason[:500]
        if item.message is not None:
            item.message.status = status
            item.message.error = reason[:500]

    async def count_by_state(self) -> dict[str, int]:
        statement = select(OutboxItem.state, func.count()).group_by(OutboxItem.state)
        return {str(state): int(n) for state, n in (await self.session.execute(statement)).all()}

    async def backlog(self) -> tuple[int, datetime | None]:
        """Rows not yet sent (pending or being sent), and when the oldest was staged."""
        statement = select(func.count(), func.min(OutboxItem.created_at)).where(
            OutboxItem.state.in_([OutboxState.PENDING, OutboxState.SENDING])
        )
        count, oldest = (await self.session.execute(statement)).one()
        return int(count), _aware(oldest)

    async def failed(self, limit: int = 100) -> list[OutboxItem]:
        statement = (
            select(OutboxItem)
            .where(OutboxItem.state.in_([OutboxState.FAILED, OutboxState.BLOCKED]))
            .order_by(OutboxItem.id.desc())
            .limit(limit)
        )
        return list((await self.session.execute(statement)).scalars().unique())


class Handoffs:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, handoff: Handoff) -> Handoff:
        """The hand-off inserted, its id filled in (what is planned and announced for it
        names it); the unit of work's other changes still wait (`_inserted`)."""
        await _inserted(self.session, handoff)
        return handoff

    async def queue(self) -> list[Handoff]:
        """Conversations waiting for a person: highest priority first, then longest waiting."""
        statement = (
            select(Handoff)
            .where(Handoff.state == HandoffState.WAITING)
            .order_by(Handoff.priority.desc(), Handoff.requested_at, Handoff.id)
        )
        return list((await self.session.execute(statement)).scalars().unique())

    async def open_for(self, conversation_id: int) -> Handoff | None:
        statement = select(Handoff).where(
            Handoff.conversation_id == conversation_id,
            Handoff.state.in_([HandoffState.WAITING, HandoffState.CLAIMED]),
        )
        options = _flushing_for(self.session, Handoff)
        result = await self.session.execute(statement, execution_options=options)
        return result.scalars().unique().one_or_none()

    async def claim(self, handoff_id: int, agent_id: int, now: datetime) -> bool:
        """Atomic: of two agents claiming at once exactly one gets True."""
        statement = (
            update(Handoff)
            .where(Handoff.id == handoff_id, Handoff.state == HandoffState.WAITING)
            .values(state=HandoffState.CLAIMED, agent_id=agent_id, claimed_at=now)
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def reopen(self, conversation_ids: Sequence[int]) -> None:
        """Claimed handoffs waiting again (their agent left): same priority, same start."""
        if not conversation_ids:
            return
        statement = (
            update(Handoff)
            .where(
                Handoff.conversation_id.in_(list(conversation_ids)),
                Handoff.state == HandoffState.CLAIMED,
            )
            .values(
                state=HandoffState.WAITING, agent_id=None, assigned_agent_id=None, claimed_at=None
            )
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(statement)

    async def unassign(self, agent_id: int) -> None:
        """Waiting handoffs the rules gave this agent go to whoever takes them."""
        statement = (
            update(Handoff)
            .where(Handoff.assigned_agent_id == agent_id, Handoff.state == HandoffState.WAITING)
            .values(assigned_agent_id=None)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(statement)

    async def waiting(self) -> tuple[int, datetime | None]:
        """How many conversations wait for a person, and since when the oldest does."""
        statement = select(func.count(), func.min(Handoff.requested_at)).where(
            Handoff.state == HandoffState.WAITING
        )
        count, oldest = (await self.session.execute(statement)).one()
        return int(count), _aware(oldest)

    async def end(self, conversation_id: int, now: datetime, outcome: str | None = None) -> None:
        statement = (
            update(Handoff)
            .where(
                Handoff.conversation_id == conversation_id,
                Handoff.state.in_([HandoffState.WAITING, HandoffState.CLAIMED]),
            )
            .values(state=HandoffState.DONE, ended_at=now, outcome=outcome)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(statement)

    async def get(self, handoff_id: int) -> Handoff | None:
        return await self.session.get(Handoff, handoff_id)

    async def latest_for(self, conversation_id: int) -> Handoff | None:
        statement = (
            select(Handoff)
            .where(Handoff.conversation_id == conversation_id)
            .order_by(Handoff.id.desc())
            .limit(1)
        )
        return (await self.session.execute(statement)).scalars().unique().first()


class Agents:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, agent_id: int) -> Agent | None:
        return await self.session.get(Agent, agent_id)

    async def by_token_hash(self, token_hash: str) -> Agent | None:
        statement = select(Agent).where(Agent.token_hash == token_hash, Agent.active.is_(True))
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def add(self, agent: Agent) -> Agent:
        """Raises ConflictError when the unique indexes refuse it (the same name or e-mail
        added by someone else meanwhile); the caller's transaction is then unusable."""
        self.session.add(agent)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            raise ConflictError("an agent with that name or e-mail already exists") from exc
        return agent

    async def all(self) -> list[Agent]:
        return list((await self.session.execute(select(Agent).order_by(Agent.id))).scalars())

    async def find(self, ref: str) -> Agent | None:
        """By id, e-mail or name (e-mail and name in any case)."""
        if ref.isdigit():
            return await self.get(int(ref))
        wanted = ref.strip().casefold()
        attribute = "email" if "@" in ref else "name"
        for agent in await self.all():
            if (getattr(agent, attribute) or "").casefold() == wanted:
                return agent
        return None

    async def taken(
        self, name: str, email: str | None, *, besides: int | None = None
    ) -> str | None:
        """ "name" or "email" when another agent already has it, in any case.

        Compared here with Unicode case folding; the unique indexes on lower(name) and
        lower(email) also stop two writers racing (SQLite's lower() folds ASCII only).
        """
        for agent in await self.all():
            if agent.id == besides:
                continue
            if agent.name.casefold() == name.strip().casefold():
                return "name"
            if email and (agent.email or "").casefold() == email.strip().casefold():
                return "email"
        return None

    async def footprint(self, agent_id: int) -> dict[str, int]:
        """What records name the agent: messages, conversations, handoffs, appointments,
        leads, tasks, transfers and what they did in the audit log (notifications to them
        are theirs alone and go with them)."""
        counted = {
            "messages": select(func.count()).where(Message.agent_id == agent_id),
            "conversations": select(func.count()).where(Conversation.agent_id == agent_id),
            "handoffs": select(func.count()).where(Handoff.agent_id == agent_id),
            "appointments": select(func.count()).where(Appointment.agent_id == agent_id),
            "leads": select(func.count()).where(Lead.owner_id == agent_id),
            "tasks": select(func.count()).where(Task.owner_id == agent_id),
            "transfers": select(func.count()).where(
                or_(Transfer.from_agent_id == agent_id, Transfer.to_agent_id == agent_id)
            ),
            "audit events": select(func.count()).where(AuditEvent.agent_id == agent_id),
        }
        counts = {
            what: int((await self.session.execute(q)).scalar_one()) for what, q in counted.items()
        }
        return {what: n for what, n in counts.items() if n}

    async def delete(self, agent: Agent) -> None:
        await self.session.delete(agent)
        await self.session.flush()


class Appointments:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, appointment_id: int) -> Appointment | None:
        return await self.session.get(Appointment, appointment_id)

    async def next_for(self, lead_id: int, now: datetime) -> Appointment | None:
        if folded.holds(self.session, Appointment):
            await self.session.flush()  # the read must see this unit of work's bookings
        parameters = {"lead_id": lead_id, "now": now}
        found = await driver.rows(self.session, _NEXT_APPOINTMENT, parameters)
        if not found:
            return None
        return cast(Appointment, _loaded(self.session, Appointment, _values(Appointment, found[0])))

    async def book(self, values: dict[str, Any]) -> int | None:
        """The new appointment's id, or None when the slot was taken meanwhile.

        A savepoint keeps the surrounding transaction (the lead's message) intact when the
        unique slot index refuses the row.
        """
        try:
            async with self.session.begin_nested():
                result = await self.session.execute(_INSERT_APPOINTMENT, values)
                return int(result.scalar_one())
        except IntegrityError:
            return None

    async def move(
        self, appointment: Appointment, at: datetime, ends_at: datetime, agent_id: int | None
    ) -> bool:
        """Move to another slot; False when that slot was taken meanwhile."""
        try:
            async with self.session.begin_nested():
                appointment.starts_at, appointment.ends_at = at, ends_at
                appointment.agent_id = agent_id
                await self.session.flush()
        except IntegrityError:
            await self.session.refresh(appointment)
            return False
        return True

    async def agents_by_load(self, now: datetime) -> list[int]:
        """Active agents, those with the fewest upcoming appointments first."""
        statement = (
            select(Agent.id)
            .outerjoin(
                Appointment,
                (Appointment.agent_id == Agent.id)
                & (Appointment.state == AppointmentState.CONFIRMED)
                & (Appointment.starts_at >= now),
            )
            .where(Agent.active.is_(True))
            .group_by(Agent.id)
            .order_by(func.count(Appointment.id), Agent.id)
        )
        options = _flushing_for(self.session, Appointment, Agent)
        return list((await self.session.execute(statement, execution_options=options)).scalars())

    async def taken(
        self, agents: Sequence[int | None], start: datetime, end: datetime
    ) -> set[tuple[int | None, datetime]]:
        """The (agent, start) of confirmed appointments of `agents` starting in [start, end)."""
        statement = select(Appointment.agent_id, Appointment.starts_at).where(
            Appointment.state == AppointmentState.CONFIRMED,
            Appointment.starts_at >= start,
            Appointment.starts_at < end,
        )
        wanted = set(agents)
        options = _flushing_for(self.session, Appointment)
        rows = await self.session.execute(statement, execution_options=options)
        return {(agent, at) for agent, at in rows if agent in wanted}

    async def of_lead(self, lead_id: int) -> list[Appointment]:
        statement = (
            select(Appointment)
            .where(Appointment.lead_id == lead_id)
            .order_by(Appointment.starts_at)
        )
        return list((await self.session.execute(statement)).scalars())

    async def upcoming_of(self, agent_id: int, now: datetime) -> int:
        """How many confirmed appointments the agent holds from now on."""
        statement = select(func.count()).where(
            Appointment.agent_id == agent_id,
            Appointment.state == AppointmentState.CONFIRMED,
            Appointment.starts_at >= now,
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def between(self, start: datetime, end: datetime) -> list[Appointment]:
        statement = (
            select(Appointment)
            .where(
                Appointment.starts_at >= start,
                Appointment.starts_at < end,
                Appointment.state == AppointmentState.CONFIRMED,
            )
            .order_by(Appointment.starts_at)
        )
        return list((await self.session.execute(statement)).scalars())


@dataclass(slots=True)
class Added:
    """An `Actions.add_unless_pending` of this unit of work (see `Actions.take_back`)."""

    write: tuple[folded.Factory, dict[str, Any]]
    taken_back: bool = False


class Actions:
    """Scheduled actions: stored first, claimed when due, fired once."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, **values: Any) -> None:
        self.session.add(ScheduledAction(**values))

    async def add_unless_pending(
        self, *, kind: str, due_at: datetime, lead_id: int, created_at: datetime
    ) -> Added:
        """Add an action of `kind` for the lead unless one already waits (one statement; on
        PostgreSQL written with the unit of work's other changes, see `storage.folded`).
        What was asked, for `take_back`."""
        values = {
            "kind": kind,
            "due_at": due_at,
            "payload": {},
            "state": ActionState.PENDING,
            "lead_id": lead_id,
            "attempts": 0,
            "created_at": created_at,
        }
        return Added(await folded.defer(self.session, _add_unless_pending, values))

    async def take_back(self, added: Added) -> None:
        """Undo `add_unless_pending` in the same unit of work: nothing is written when it was
        still waiting to be; otherwise the row it added (if it added one) is deleted. Once: a
        second call does nothing."""
        if added.taken_back:
            return
        added.taken_back = True
        if folded.forget(self.session, added.write):
            return
        values = added.write[1]
        statement = delete(ScheduledAction).where(
            ScheduledAction.lead_id == values["lead_id"],
            ScheduledAction.kind == values["kind"],
            ScheduledAction.state == values["state"],
            ScheduledAction.created_at == values["created_at"],
            ScheduledAction.due_at == values["due_at"],
        )
        # (The row it deletes was written already: only an action not yet written is pending.)
        options = _flushing_for(self.session, ScheduledAction)
        await self.session.execute(statement, execution_options=options)

    async def add_once(self, values: dict[str, Any]) -> bool:
        """Add an action keyed by `dedupe_key` unless another process already did."""
        return (
            await insert_ignoring_conflict(self.session, ScheduledAction, values, ["dedupe_key"])
        ) is not None

    async def pending(self, kind: str, lead_id: int) -> bool:
        """An action of `kind` waits for the lead."""
        statement = select(
            exists().where(
                ScheduledAction.lead_id == lead_id,
                ScheduledAction.kind == kind,
                ScheduledAction.state == ActionState.PENDING,
            )
        )
        return bool((await self.session.execute(statement)).scalar_one())

    async def earlier_step_due(self, run_id: int, step: int) -> datetime | None:
        """When the first still pending step before `step` of a sequence run is due, if any."""
        statement = select(func.min(ScheduledAction.due_at)).where(
            ScheduledAction.sequence_run_id == run_id,
            ScheduledAction.state == ActionState.PENDING,
            ScheduledAction.payload["step"].as_integer() < step,
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def claim_due(self, now: datetime, limit: int) -> list[ScheduledAction]:
        """Due actions, locked for this transaction; other processes skip them."""
        statement = (
            select(ScheduledAction)
            .where(ScheduledAction.state == ActionState.PENDING, ScheduledAction.due_at <= now)
            .order_by(ScheduledAction.due_at, ScheduledAction.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.execute(statement)).scalars())

    async def withdraw(self, now: datetime, reason: str, **where: Any) -> int:
        """Cancel pending actions matching `where` (e.g. appointment_id=..., lead_id=...).

        An action a scheduler has claimed this very moment is skipped, not waited for: the
        scheduler locks it before the lead and the sequence run, the opposite of everyone
        else's order, and waiting for it could deadlock. It finds its run stopped or its
        appointment cancelled once it gets their locks, and skips itself.
        """
        conditions = [getattr(ScheduledAction, key) == value for key, value in where.items()]
        claimable = (
            select(ScheduledAction.id)
            .where(ScheduledAction.state == ActionState.PENDING, *conditions)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(ScheduledAction)
            .where(ScheduledAction.id.in_(claimable.scalar_subquery()))
            .values(state=ActionState.CANCELLED, fired_at=now, last_error=reason)
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(statement)
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def due(self, now: datetime) -> tuple[int, datetime | None]:
        """Actions due and not fired yet, and the due time of the oldest."""
        statement = select(func.count(), func.min(ScheduledAction.due_at)).where(
            ScheduledAction.state == ActionState.PENDING, ScheduledAction.due_at <= now
        )
        count, oldest = (await self.session.execute(statement)).one()
        return int(count), _aware(oldest)

    async def upcoming(self, limit: int) -> list[ScheduledAction]:
        statement = (
            select(ScheduledAction)
            .where(ScheduledAction.state == ActionState.PENDING)
            .order_by(ScheduledAction.due_at)
            .limit(limit)
        )
        return list((await self.session.execute(statement)).scalars())

    async def failed(self, limit: int) -> list[ScheduledAction]:
        statement = (
            select(ScheduledAction)
            .where(ScheduledAction.state == ActionState.FAILED)
            .order_by(ScheduledAction.fired_at.desc())
            .limit(limit)
        )
        return list((await self.session.execute(statement)).scalars())


class Sequences:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def start(self, lead_id: int, sequence: str, now: datetime) -> SequenceRun:
        run = SequenceRun(lead_id=lead_id, sequence=sequence, started_at=now)
        self.session.add(run)
        await self.session.flush()
        return run

    async def locked(self, run_id: int) -> SequenceRun | None:
        """The run, locked: a step and the lead's reply never pass each other."""
        statement = select(SequenceRun).where(SequenceRun.id == run_id).with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def stop(self, run_id: int, reason: str, now: datetime) -> bool:
        statement = (
            update(SequenceRun)
            .where(SequenceRun.id == run_id, SequenceRun.state == SequenceState.ACTIVE)
            .values(state=SequenceState.STOPPED, ended_at=now, stop_reason=reason)
            .execution_options(synchronize_session=False)
        )
        return bool((await self.session.execute(statement)).rowcount)  # type: ignore[attr-defined]


class Tasks:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, task: Task) -> Task:
        self.session.add(task)
        await self.session.flush()
        return task

    async def get(self, task_id: int) -> Task | None:
        return await self.session.get(Task, task_id)

    async def open_for_lead(self, lead_id: int) -> list[Task]:
        statement = (
            select(Task)
            .where(Task.lead_id == lead_id, Task.done_at.is_(None))
            .order_by(Task.due_at)
        )
        return list((await self.session.execute(statement)).scalars())

    async def of(self, owner_id: int | None, *, done: bool = False) -> list[Task]:
        statement = select(Task).where(
            Task.done_at.is_not(None) if done else Task.done_at.is_(None)
        )
        if owner_id is not None:
            statement = statement.where(or_(Task.owner_id == owner_id, Task.owner_id.is_(None)))
        return list((await self.session.execute(statement.order_by(Task.due_at))).scalars())


class Notifications:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, notification_id: int) -> Notification | None:
        return await self.session.get(Notification, notification_id)

    async def add(self, notification: Notification) -> Notification:
        """The notification inserted, its id filled in (its outbox row names it); the unit of
        work's other changes still wait (`_inserted`)."""
        await _inserted(self.session, notification)
        return notification

    async def for_agent(
        self, agent_id: int, *, unread: bool, limit: int = 100
    ) -> list[Notification]:
        statement = select(Notification).where(
            or_(Notification.agent_id == agent_id, Notification.agent_id.is_(None))
        )
        if unread:
            statement = statement.where(Notification.read_at.is_(None))
        statement = statement.order_by(Notification.id.desc()).limit(limit)
        return list((await self.session.execute(statement)).scalars())


class Transcripts:
    """A chat's messages as its page shows them (id, author, text, time)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lines(
        self,
        channel: Channel,
        sender_id: str,
        *,
        after_id: int,
        limit: int,
        to_lead: bool,
        with_lead: bool = False,
    ) -> list[tuple[int, str, str, datetime, str | None]]:
        """(id, author, text, time, channel message id) after `after_id`, oldest first (the
        latest `limit` when it is 0). `to_lead`: only messages to the lead that went out (not
        pending, failed or blocked), and the lead's own too when `with_lead`."""
        statement = (
            select(
                Message.id,
                Message.author,
                Message.text,
                Message.created_at,
                Message.channel_message_id,
            )
            .join(Conversation, Conversation.id == Message.conversation_id)
            .join(ChannelIdentity, ChannelIdentity.id == Conversation.identity_id)
            .where(
                ChannelIdentity.channel == channel,
                ChannelIdentity.external_id == sender_id,
                Message.id > after_id,
            )
        )
        if to_lead:
            went_out = and_(Message.direction == Direction.OUT, Message.status.in_(_WENT_OUT))
            statement = statement.where(
                or_(went_out, Message.direction == Direction.IN) if with_lead else went_out
            )
        if after_id or to_lead:
            rows = await self.session.execute(statement.order_by(Message.id).limit(limit))
            return [(row[0], str(row[1]), row[2], row[3], row[4]) for row in rows]
        rows = await self.session.execute(statement.order_by(Message.id.desc()).limit(limit))
        return [(row[0], str(row[1]), row[2], row[3], row[4]) for row in rows][::-1]


_WENT_OUT = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ)


class Deferred:
    """Messages acknowledged before they could be handled, until they are.

    stored -> claimed (under a lease) -> deleted once handled | claimable again when the lease
    runs out (its worker died) | failed (too many attempts: kept for people to look at).
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def store(self, channel: Channel, channel_message_id: str, event: dict[str, Any]) -> bool:
        """Store the message; False when it already is (a redelivery)."""
        values = {
            "channel": channel,
            "channel_message_id": channel_message_id,
            "event": event,
            "received_at": datetime.now(UTC),
            "attempts": 0,
        }
        stored = await insert_ignoring_conflict(
            self.session, DeferredInbound, values, ("channel", "channel_message_id")
        )
        return stored is not None

    async def claim(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[DeferredInbound]:
        """Claim the oldest rows nobody holds, for `lease_until`. `SKIP LOCKED` lets several
        processes claim side by side on PostgreSQL; SQLite serialises write transactions."""
        statement = (
            select(DeferredInbound)
            .where(
                DeferredInbound.failed_at.is_(None),
                or_(DeferredInbound.lease_until.is_(None), DeferredInbound.lease_until < now),
            )
            .order_by(DeferredInbound.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = list((await self.session.execute(statement)).scalars())
        for row in rows:
            row.lease_until = lease_until
            row.attempts += 1
        await self.session.flush()
        return rows

    async def done(self, row_id: int) -> None:
        await self.session.execute(delete(DeferredInbound).where(DeferredInbound.id == row_id))

    async def release(self, row_id: int, *, undo_attempt: bool) -> None:
        """Claimable again at once (no place was free: that was not an attempt)."""
        values: dict[str, Any] = {"lease_until": None}
        if undo_attempt:
            values["attempts"] = DeferredInbound.attempts - 1
        await self.session.execute(
            update(DeferredInbound).where(DeferredInbound.id == row_id).values(**values)
        )

    async def failed(
        self, row_id: int, error: str, *, retry_at: datetime | None, now: datetime
    ) -> None:
        """Record a failed attempt: tried again at `retry_at`, or never (`None`)."""
        values: dict[str, Any] = {"last_error": error[:200], "lease_until": retry_at}
        if retry_at is None:
            values["failed_at"] = now
        await self.session.execute(
            update(DeferredInbound).where(DeferredInbound.id == row_id).values(**values)
        )

    async def pending(self) -> int:
        statement = select(func.count()).where(DeferredInbound.failed_at.is_(None))
        return int((await self.session.execute(statement)).scalar_one())
