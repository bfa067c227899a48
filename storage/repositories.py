"""Queries, one small class per aggregate. Repositories never commit: the unit of work does."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.dml import ReturningInsert

from storage.models import (
    Agent,
    Author,
    Base,
    Channel,
    ChannelIdentity,
    Conversation,
    ConversationState,
    DeliveryStatus,
    Direction,
    Handoff,
    HandoffState,
    Lead,
    LeadPhone,
    Message,
    OutboxItem,
    OutboxState,
)

# Statements on the engine's hot path are built once and executed with parameters: building
# a statement per message costs more than running it. They target tables, not mapped classes,
# so SQLAlchemy runs them as plain Core statements without the ORM's bookkeeping.


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


_MESSAGES = cast(Table, Message.__table__)
_INSERT_MESSAGE = insert(_MESSAGES).returning(_MESSAGES.c.id)
_INSERT_OUTBOX = insert(cast(Table, OutboxItem.__table__))
_CONVERSATION_OF_SENDER = (
    select(Conversation)
    .join(ChannelIdentity)
    .where(
        ChannelIdentity.channel == bindparam("channel"),
        ChannelIdentity.external_id == bindparam("external_id"),
    )
)


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
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def add_phone(self, lead_id: int, e164: str) -> None:
        await insert_ignoring_conflict(
            self.session, LeadPhone, {"lead_id": lead_id, "e164": e164}, ["e164"]
        )


class Identities:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find(self, channel: Channel, external_id: str) -> ChannelIdentity | None:
        statement = select(ChannelIdentity).where(
            ChannelIdentity.channel == channel, ChannelIdentity.external_id == external_id
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def create(self, values: dict[str, Any]) -> int | None:
        """The new identity's id, or None when a concurrent transaction created it first."""
        return await insert_ignoring_conflict(
            self.session, ChannelIdentity, values, ["channel", "external_id"]
        )

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

    async def for_sender(self, channel: Channel, external_id: str) -> Conversation | None:
        """The conversation with its lead and identity, in one query (the engine's hot path)."""
        parameters = {"channel": channel, "external_id": external_id}
        result = await self.session.execute(_CONVERSATION_OF_SENDER, parameters)
        return result.scalar_one_or_none()

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


class Messages:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_inbound(self, values: dict[str, Any]) -> int | None:
        """The stored message's id, or None when the channel already delivered this message."""
        return await insert_ignoring_conflict(
            self.session, Message, values, ["channel", "channel_message_id"]
        )

    async def insert(self, values: dict[str, Any]) -> int:
        """Store a message without the ORM's bookkeeping (the hot path); returns its id."""
        return (await self.session.execute(_INSERT_MESSAGE, values)).scalar_one()

    async def by_channel_id(self, channel: Channel, channel_message_id: str) -> Message | None:
        statement = select(Message).where(
            Message.channel == channel, Message.channel_message_id == channel_message_id
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

    async def outgoing_delivered(
        self, conversation_id: int, *, after_id: int, limit: int
    ) -> list[Message]:
        """Outgoing messages that went out, after `after_id`: what a chat page has to show."""
        statement = (
            select(Message)
            .where(
                Message.conversation_id == conversation_id,
                Message.id > after_id,
                Message.direction == Direction.OUT,
                Message.status.in_(
                    [DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ]
                ),
            )
            .order_by(Message.id)
            .limit(limit)
        )
        return list((await self.session.execute(statement)).scalars())

    async def count_bot_replies(self, conversation_id: int) -> int:
        statement = select(func.count()).where(
            Message.conversation_id == conversation_id, Message.author == Author.BOT
        )
        return int((await self.session.execute(statement)).scalar_one())


class Outbox:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, values: dict[str, Any]) -> None:
        await self.session.execute(_INSERT_OUTBOX, values)

    async def get(self, item_id: int) -> OutboxItem | None:
        return await self.session.get(OutboxItem, item_id)

    async def claim_due(self, now: datetime, limit: int, lease_until: datetime) -> list[OutboxItem]:
        """Claim rows that are due, at most one per recipient, oldest first.

        A row is due when it waits and its time has come, or when another dispatcher claimed
        it and its lease ran out (that process died mid-send). Only the oldest unsettled row
        of each recipient is taken, so one chat's messages go out in order while other chats
        are not held up. `SKIP LOCKED` lets several processes claim side by side on PostgreSQL;
        SQLite serialises write transactions, which gives the same guarantee.
        """
        earlier = aliased(OutboxItem)
        unsettled = [OutboxState.PENDING, OutboxState.SENDING]
        statement = (
            select(OutboxItem)
            .where(
                or_(
                    and_(
                        OutboxItem.state == OutboxState.PENDING,
                        OutboxItem.next_attempt_at <= now,
                    ),
                    and_(OutboxItem.state == OutboxState.SENDING, OutboxItem.lease_until < now),
                ),
                ~exists().where(
                    earlier.channel == OutboxItem.channel,
                    earlier.recipient == OutboxItem.recipient,
                    earlier.id < OutboxItem.id,
                    earlier.state.in_(unsettled),
                ),
            )
            .order_by(OutboxItem.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=OutboxItem)
        )
        items = list((await self.session.execute(statement)).scalars().unique())
        for item in items:
            if item.state == OutboxState.SENDING:
                # Its dispatcher died mid-send: the message may or may not have gone out.
                item.uncertain = True
            item.state = OutboxState.SENDING
            item.lease_until = lease_until
            item.attempts += 1
        await self.session.flush()
        return items

    async def next_due_at(self) -> datetime | None:
        statement = select(func.min(OutboxItem.next_attempt_at)).where(
            OutboxItem.state == OutboxState.PENDING
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def block_unsent_for_lead(self, lead_id: int, reason: str, now: datetime) -> int:
        """Stop every message still waiting for this lead, except the opt-out confirmation."""
        statement = (
            select(OutboxItem)
            .where(
                OutboxItem.lead_id == lead_id,
                OutboxItem.state == OutboxState.PENDING,
                OutboxItem.optout_confirmation.is_(False),
            )
            .with_for_update()
        )
        items = list((await self.session.execute(statement)).scalars().unique())
        for item in items:
            item.state = OutboxState.BLOCKED
            item.last_error = reason
            item.settled_at = now
            item.message.status = DeliveryStatus.BLOCKED
            item.message.error = reason
        return len(items)

    async def count_by_state(self) -> dict[str, int]:
        statement = select(OutboxItem.state, func.count()).group_by(OutboxItem.state)
        return {str(state): int(n) for state, n in (await self.session.execute(statement)).all()}

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
        self.session.add(handoff)
        await self.session.flush()
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
        return (await self.session.execute(statement)).scalars().unique().one_or_none()

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

    async def end(self, conversation_id: int, now: datetime) -> None:
        statement = (
            update(Handoff)
            .where(
                Handoff.conversation_id == conversation_id,
                Handoff.state.in_([HandoffState.WAITING, HandoffState.CLAIMED]),
            )
            .values(state=HandoffState.DONE, ended_at=now)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(statement)


class Agents:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, agent_id: int) -> Agent | None:
        return await self.session.get(Agent, agent_id)

    async def by_token_hash(self, token_hash: str) -> Agent | None:
        statement = select(Agent).where(Agent.token_hash == token_hash, Agent.active.is_(True))
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def add(self, agent: Agent) -> Agent:
        self.session.add(agent)
        await self.session.flush()
        return agent

    async def all(self) -> list[Agent]:
        return list((await self.session.execute(select(Agent).order_by(Agent.id))).scalars())
