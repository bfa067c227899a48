"""The tables. Times are stored in UTC and are always timezone-aware in Python."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
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

    phones: Mapped[list[LeadPhone]] = relationship(
        back_populates="lead", lazy="raise", cascade="all, delete-orphan"
    )

    __table_args__ = (Index("ix_leads_last_activity_at", "last_activity_at"),)


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

    __table_args__ = (Index("ix_handoffs_state_priority", "state", "priority", "requested_at"),)


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
