"""The tables. Times are stored in UTC and are always timezone-aware in Python."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
    inspect,
    true,
)
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bot.core.model import (
    ActionState,
    AgentRole,
    AppointmentKind,
    AppointmentState,
    Author,
    Channel,
    ConversationState,
    DeliveryStatus,
    Direction,
    HandoffState,
    OutboxState,
    SequenceState,
    utcnow,
)

# Stable constraint names, so migrations and IntegrityError handling can refer to them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The messages the reports count as objections (ix_messages_objections, migration 0014).
OBJECTION_MESSAGES = "direction = 'in' AND intent LIKE 'objection.%'"
# The actions still to fire (ix_scheduled_actions_pending_lead_id_kind, migration 0016).
PENDING_ACTIONS = f"state = '{ActionState.PENDING.value}'"


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every database.

    SQLite has no time zone type and hands back naive values; normalising here means no
    code above the storage layer ever sees a naive datetime.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Json = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime,
        dict[str, Any]: Json,
        list[Any]: Json,
    }

    def __init__(self, **values: Any) -> None:
        """A new row from keyword arguments, as SQLAlchemy's default constructor makes it,
        but with a column's value put straight into the instance's dict, as loading a row
        does: setattr's attribute events record a history that a new row never uses (its
        INSERT takes the values as they are): 17 -> 7.3 µs for a ten-column activity.
        Relationships are still set through their attributes (backrefs, cascades)."""
        cls = type(self)
        columns = _column_keys(cls)
        for key, value in values.items():
            if key in columns:
                self.__dict__[key] = value
            elif hasattr(cls, key):
                setattr(self, key, value)
            else:
                raise TypeError(f"{key!r} is an invalid keyword argument for {cls.__name__}")


@functools.cache
def _column_keys(model: type[Base]) -> frozenset[str]:
    return frozenset(prop.key for prop in inspect(model).column_attrs)


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    role: Mapped[AgentRole] = mapped_column(String(16), default=AgentRole.AGENT)
    # sha256 of the agent's API token; the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The agent's own Telegram chat with the bot, for reminders; None = console/API only.
    telegram_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    # sha256 of the one-time code the agent sends the bot (/start CODE) to link that chat.
    telegram_link_hash: Mapped[str | None] = mapped_column(String(64))
    telegram_link_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The console: an argon2 hash (None: cannot sign in), and a counter that, when raised,
    # ends every session signed in before (password changed, deactivated, signed out everywhere).
    password_hash: Mapped[str | None] = mapped_column(String(255))
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Assignment: only available agents under their capacity get new conversations, the one
    # assigned longest ago first.
    available: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    capacity: Mapped[int] = mapped_column(Integer, default=8, server_default="8")
    last_assigned_at: Mapped[datetime | None]

    __table_args__ = (
        # One agent per name and per e-mail, whatever the case: the command line and the
        # console name agents by either.
        Index("uq_agents_lower_name", func.lower(name), unique=True),
        Index("uq_agents_lower_email", func.lower(email), unique=True),
    )


class Lead(Base):
    __tablename__ = "leads"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    source: Mapped[str | None] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(64))
    score: Mapped[int] = mapped_column(Integer)
    tier: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    timezone: Mapped[str] = mapped_column(String(64))
    opted_out_at: Mapped[datetime | None]
    # The follow-up sequence the lead is in now, if any (its run row holds the history).
    sequence_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("sequence_runs.id", ondelete="SET NULL", use_alter=True)
    )
    first_contact_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The CRM record (seed 000 "Campos del CRM", seed 002's client file).
    address: Mapped[str | None] = mapped_column(String(300))
    campaign: Mapped[str | None] = mapped_column(String(120))
    referred_by_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"))
    # The pipeline the stage belongs to (`pipelines.key`); None: the configured default.
    pipeline: Mapped[str | None] = mapped_column(String(64))
    stage_changed_at: Mapped[datetime | None]
    lost_reason: Mapped[str | None] = mapped_column(String(200))
    tags: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    # Values of the custom fields an admin defines, by `custom_fields.key`.
    custom: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")

    phones: Mapped[list[LeadPhone]] = relationship(
        back_populates="lead", lazy="raise", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_leads_last_activity_at", "last_activity_at"),
        Index("ix_leads_first_contact_at", "first_contact_at"),
        Index("ix_leads_stage", "stage"),
        Index("ix_leads_owner_id", "owner_id"),
        # The reports' opt-outs after a sequence step (migration 0014): the few who opted out.
        Index(
            "ix_leads_opted_out_at",
            "opted_out_at",
            postgresql_where=sql("opted_out_at IS NOT NULL"),
            sqlite_where=sql("opted_out_at IS NOT NULL"),
        ),
        # The lead list's filters (migration 0011): tags contain a tag; name / e-mail contain a
        # text (trigrams where pg_trgm could be added; a plain index otherwise).
        Index(
            "ix_leads_tags",
            "tags",
            postgresql_using="gin",
            postgresql_ops={"tags": "jsonb_path_ops"},
        ),
        Index(
            "ix_leads_name_search",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        ),
        Index(
            "ix_leads_email_search",
            "email",
            postgresql_using="gin",
            postgresql_ops={"email": "gin_trgm_ops"},
        ),
    )


class LeadPhone(Base):
    """A lead's phone number in E.164; one number belongs to one lead."""

    __tablename__ = "lead_phones"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    e164: Mapped[str] = mapped_column(String(20), unique=True)

    lead: Mapped[Lead] = relationship(back_populates="phones")


class ChannelIdentity(Base):
    """Who the lead is on one channel. The phone may be absent (web chat, WhatsApp user ids)."""

    __tablename__ = "channel_identities"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    channel: Mapped[Channel] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(128))
    phone: Mapped[str | None] = mapped_column(String(20))
    display_name: Mapped[str | None] = mapped_column(String(200))
    # False once the channel says the lead cannot be reached (blocked the bot, opted out there).
    reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("channel", "external_id"),)


class Conversation(Base):
    """One lead's thread on one channel (one row per channel identity)."""

    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    identity_id: Mapped[int] = mapped_column(
        ForeignKey("channel_identities.id", ondelete="CASCADE"), unique=True
    )
    channel: Mapped[Channel] = mapped_column(String(16))
    state: Mapped[ConversationState] = mapped_column(String(16), default=ConversationState.BOT)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    # Dialogue memory the policy reads and writes (pending question, consecutive misses, ...).
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Labels agents put on the conversation ("factura", "urgente"); a list of short strings.
    labels: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    last_inbound_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    identity: Mapped[ChannelIdentity] = relationship(lazy="joined")
    lead: Mapped[Lead] = relationship(lazy="joined")


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    channel: Mapped[Channel] = mapped_column(String(16))
    direction: Mapped[Direction] = mapped_column(String(8))
    author: Mapped[Author] = mapped_column(String(8))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text, default="")
    # Media references as the channel gave them: [{"kind", "ref", "content_type"}]
    media: Mapped[list[Any]] = mapped_column(default=list)
    # The channel's id for this message; the unique key that turns a redelivery into a no-op.
    channel_message_id: Mapped[str | None] = mapped_column(String(200))
    intent: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[float | None] = mapped_column(Float)
    # For outgoing bot messages: which script and which of its variants was sent (A/B reports).
    script: Mapped[str | None] = mapped_column(String(64))
    script_variant: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[DeliveryStatus] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    edited_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("channel", "channel_message_id"),
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        Index("ix_messages_created_at", "created_at"),
        Index("ix_messages_conversation_id_created_at", "conversation_id", "created_at"),
        # The reports' objections (storage/reports.py OBJECTIONS): a few percent of the messages.
        Index(
            "ix_messages_objections",
            "created_at",
            postgresql_where=sql(OBJECTION_MESSAGES),
            sqlite_where=sql(OBJECTION_MESSAGES),
        ),
    )


class OutboxItem(Base):
    """An outgoing message committed for sending; the dispatcher works through these rows.

    Either a message to a lead (`message_id`) or a notification to an agent's own chat
    (`notification_id`): both travel the same way, with the same retries and limits.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), unique=True
    )
    notification_id: Mapped[int | None] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), unique=True
    )
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    channel: Mapped[Channel] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(128))  # the channel identity's external id
    # Channel extras beyond the text: buttons, template name and variables.
    extras: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The opt-out confirmation is the one message an opted-out lead still gets.
    optout_confirmation: Mapped[bool] = mapped_column(Boolean, default=False)
    # A follow-up nudge: pointless once the lead has written, so a reply withdraws it.
    cancel_on_reply: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    state: Mapped[OutboxState] = mapped_column(String(16), default=OutboxState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # An attempt may have reached the channel without us learning so (timeout, crash).
    uncertain: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    settled_at: Mapped[datetime | None]

    message: Mapped[Message | None] = relationship(lazy="joined")
    notification: Mapped[Notification | None] = relationship(lazy="joined")

    @property
    def text(self) -> str:
        if self.message is not None:
            return self.message.text
        return self.notification.text if self.notification is not None else ""

    __table_args__ = (
        Index("ix_outbox_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_outbox_channel_recipient_id", "channel", "recipient", "id"),
    )


class Handoff(Base):
    """A conversation handed to people: waiting in the queue, then claimed by one agent."""

    __tablename__ = "handoffs"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer)
    state: Mapped[HandoffState] = mapped_column(String(16), default=HandoffState.WAITING)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    # Who the assignment rules picked (the lead's owner, or round robin); anyone may claim.
    assigned_agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL")
    )
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    # How it ended: handed back, or closed with one of the admin's reasons.
    outcome: Mapped[str | None] = mapped_column(String(120))
    # When the prospect was told once that a person is still on the way (the SLA ran out).
    reassured_at: Mapped[datetime | None]
    # Outside business hours the prospect is told once when people are back.
    away_notified_at: Mapped[datetime | None]

    conversation: Mapped[Conversation] = relationship(lazy="joined")

    __table_args__ = (
        Index("ix_handoffs_state_priority", "state", "priority", "requested_at"),
        Index("ix_handoffs_claimed_at", "claimed_at"),
    )


class Appointment(Base):
    """A booked call, meeting or visit with a lead, held by one agent (or the team)."""

    __tablename__ = "appointments"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL")
    )
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    kind: Mapped[AppointmentKind] = mapped_column(String(16))
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    state: Mapped[AppointmentState] = mapped_column(String(16), default=AppointmentState.CONFIRMED)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[datetime | None]

    __table_args__ = (
        # One agent, one slot: two leads confirming the same slot at once cannot both win.
        # Slots sit on a fixed grid, so equal starts are the only way two can overlap.
        Index(
            "uq_appointments_agent_slot",
            func.coalesce(agent_id, 0),
            starts_at,
            unique=True,
            postgresql_where=sql("state = 'confirmed'"),
            sqlite_where=sql("state = 'confirmed'"),
        ),
        Index("ix_appointments_starts_at", "starts_at"),
    )


class ScheduledAction(Base):
    """Time-driven work, stored before it is due: fired once, by whichever process claims it."""

    __tablename__ = "scheduled_actions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    due_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[ActionState] = mapped_column(String(16), default=ActionState.PENDING)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    appointment_id: Mapped[int | None] = mapped_column(
        ForeignKey("appointments.id", ondelete="CASCADE")
    )
    sequence_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("sequence_runs.id", ondelete="CASCADE")
    )
    # Makes a recurring action (the daily sweep) unique per occurrence across processes.
    dedupe_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    fired_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_scheduled_actions_state_due_at", "state", "due_at"),
        Index("ix_scheduled_actions_lead_id", "lead_id"),
        Index("ix_scheduled_actions_appointment_id", "appointment_id"),
        Index("ix_scheduled_actions_kind_fired_at", "kind", "fired_at"),
        # "Does an action of this kind wait for this lead?", asked with every message
        # (migration 0016): the lead's own pending actions, whatever the statistics say.
        Index(
            "ix_scheduled_actions_pending_lead_id_kind",
            "lead_id",
            "kind",
            postgresql_where=sql(PENDING_ACTIONS),
            sqlite_where=sql(PENDING_ACTIONS),
        ),
    )


class SequenceRun(Base):
    """A lead going through a follow-up sequence, step by step."""

    __tablename__ = "sequence_runs"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    sequence: Mapped[str] = mapped_column(String(64))
    state: Mapped[SequenceState] = mapped_column(String(16), default=SequenceState.ACTIVE)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    stop_reason: Mapped[str | None] = mapped_column(String(32))


class Task(Base):
    """Something an agent must do for a lead, by a due time (seed 002)."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(200))
    priority: Mapped[str] = mapped_column(String(8), default="normal")  # alta | normal | baja
    due_at: Mapped[datetime]
    done_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_tasks_owner_id_due_at", "owner_id", "due_at"),)


class Notification(Base):
    """Something an agent should see now: shown in the console and API, and sent to the
    agent's Telegram chat when linked."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_notifications_agent_id_id", "agent_id", "id"),)


class Transfer(Base):
    """A conversation passed from one agent to another, with the reason (seed 002)."""

    __tablename__ = "transfers"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    from_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    to_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Who did what, when, from where: sign-ins, claims, transfers, closes, role changes,
    publications, exports. Never holds message text or passwords."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(64))  # "conversation:12", "agent:3"
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    address: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_events_at", "at"), Index("ix_audit_events_action", "action"))


class Invite(Base):
    """A one-time link an admin sends so a new agent can set their own password."""

    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[AgentRole] = mapped_column(String(16), default=AgentRole.AGENT)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class CannedReply(Base):
    """A reply agents insert by typing /shortcut; placeholders like the scripts'."""

    __tablename__ = "canned_replies"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    shortcut: Mapped[str] = mapped_column(String(32), unique=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CloseReason(Base):
    """Why a conversation was closed: the list admins edit, in the order agents see it."""

    __tablename__ = "close_reasons"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    label: Mapped[str] = mapped_column(String(120), unique=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


# --- The CRM: pipelines, stage history, activities, deals, scoring explained -----------------


class Pipeline(Base):
    """A sales pipeline: its stages are rows of `stages`, in order (seed 000, seed 002)."""

    __tablename__ = "pipelines"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    position: Mapped[int] = mapped_column(Integer, default=0)


class Stage(Base):
    """One stage of a pipeline. `outcome` is open, won or lost; a lost stage may require a
    reason; `cadence_days` is how often a lead in it is followed up (seed 002)."""

    __tablename__ = "stages"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(120))
    position: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(8), default="open")  # open | won | lost
    cadence_days: Mapped[int | None] = mapped_column(Integer)
    reason_required: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (UniqueConstraint("pipeline_id", "key"),)


class StageChange(Base):
    """A lead moved from one stage to another: who, when, why. The funnel is read from here."""

    __tablename__ = "stage_changes"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    pipeline: Mapped[str | None] = mapped_column(String(64))
    from_stage: Mapped[str | None] = mapped_column(String(64))
    to_stage: Mapped[str] = mapped_column(String(64))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_stage_changes_lead_id_at", "lead_id", "at"),
        Index("ix_stage_changes_to_stage_at", "to_stage", "at"),
    )


class Activity(Base):
    """Something that happened with a lead (seed 002): a call, meeting, message, e-mail or note
    logged by an agent, or a change recorded automatically (stage, owner, field, deal, merge).
    `agent_id` None: the bot or the system did it."""

    __tablename__ = "activities"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    # call | meeting | message | email | note | stage | owner | field | deal | merge | ...
    kind: Mapped[str] = mapped_column(String(24))
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Calls: answered_interested | call_back_later | no_answer | left_message; meetings: free text.
    result: Mapped[str | None] = mapped_column(String(40))
    duration_minutes: Mapped[int | None] = mapped_column(Integer)
    place: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        Index("ix_activities_lead_id_occurred_at", "lead_id", "occurred_at"),
        Index("ix_activities_agent_id_occurred_at", "agent_id", "occurred_at"),
        Index("ix_activities_occurred_at", "occurred_at"),
    )


class Deal(Base):
    """Something a lead may buy: product, amount and currency; open, won or lost (with why)."""

    __tablename__ = "deals"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    product: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(8), default="open")  # open | won | lost
    lost_reason: Mapped[str | None] = mapped_column(String(200))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_deals_status_closed_at", "status", "closed_at"),)


class LostReason(Base):
    """Why a deal or a lead was lost: the list admins edit, in the order agents see it."""

    __tablename__ = "lost_reasons"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    label: Mapped[str] = mapped_column(String(120), unique=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class CustomField(Base):
    """A field an admin adds to every lead record: text, number, date or choice."""

    __tablename__ = "custom_fields"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(8))  # text | number | date | choice
    choices: Mapped[list[Any]] = mapped_column(default=list)
    position: Mapped[int] = mapped_column(Integer, default=0)


class ScoreEvent(Base):
    """One rule that moved a lead's score: the lead page explains the score with these."""

    __tablename__ = "score_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    rule: Mapped[str] = mapped_column(String(64))
    points: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_score_events_lead_id_at", "lead_id", "at"),)


class SavedFilter(Base):
    """A lead-list filter an agent saved under a name (the query string of the list)."""

    __tablename__ = "saved_filters"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    query: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CacEntry(Base):
    """What acquiring customers from one source cost in one month (seed 004's CAC)."""

    __tablename__ = "cac_entries"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    month: Mapped[date] = mapped_column(Date)  # the first day of the month
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("source", "month"),)


class WebhookEndpoint(Base):
    """Where admins want CRM events posted, signed with `secret` (HMAC-SHA256)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    url: Mapped[str] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(80))
    events: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one endpoint: staged with the change, sent with retries until a 2xx."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|done|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )


class ScriptVersion(Base):
    """One published version of the scripts (the YAML of intents/scripts/es.yaml). The live
    version is the highest number: a rollback publishes an earlier body again, as a new number
    that names the one it restores."""

    __tablename__ = "script_versions"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    body: Mapped[str] = mapped_column(Text)
    comment: Mapped[str] = mapped_column(String(500), default="")
    author_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    restores: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # What the publisher's training computed (JSON, intents.matcher.Training): another process
    # reuses it instead of computing it again. Data only, never code.
    trained: Mapped[str | None] = mapped_column(Text)


class ScriptDraft(Base):
    """The admins' shared draft of the next version (one row), kept until published."""

    __tablename__ = "script_drafts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    body: Mapped[str] = mapped_column(Text)
    base: Mapped[int] = mapped_column(Integer)  # the version it started from
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DeferredInbound(Base):
    """A message acknowledged to its channel before it could be handled (the service was over
    capacity): stored first, handled as soon as a place is free, then deleted.

    Unique on the channel's id, so a redelivery stores nothing twice; handling it goes through
    the engine, whose own dedupe makes a second run after a crash a no-op.
    """

    __tablename__ = "deferred_inbound"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    channel: Mapped[Channel] = mapped_column(String(16))
    channel_message_id: Mapped[str] = mapped_column(String(200))
    # The InboundMessage's fields, as JSON (times ISO 8601).
    event: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A worker that claimed the row holds it until then; after, another may take it.
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
    failed_at: Mapped[datetime | None]  # set after too many failed attempts: left for people

    __table_args__ = (UniqueConstraint("channel", "channel_message_id"),)


class MaterialRow(Base):
    """A material the bot can send when a reply offers it: a link, a PDF or an image.

    `key` is how the scripts name it (`materials: [tabla-planes]`); `token` makes the address
    of an uploaded file unguessable (`/materiales/<token>/<file_name>`), and changes when the
    file is replaced. An uploaded file's bytes are in `material_files`, read only to serve or
    send it.
    """

    __tablename__ = "materials"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(16))
    url: Mapped[str | None] = mapped_column(String(2000))
    text: Mapped[str] = mapped_column(String(1000), default="")
    tags: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    file_name: Mapped[str | None] = mapped_column(String(120))
    content_type: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MaterialFile(Base):
    """The bytes of an uploaded material (one row per material, replaced with the file)."""

    __tablename__ = "material_files"

    material_id: Mapped[int] = mapped_column(
        ForeignKey("materials.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[bytes] = mapped_column(LargeBinary)
