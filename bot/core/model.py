"""The domain's vocabulary: the states and kinds every layer names the same way.

Values are stored as these strings; the enums are the one home of each name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum


class Channel(StrEnum):
    WEBCHAT = "webchat"
    TELEGRAM = "telegram"
    WHATSAPP = "whatsapp"


class ConversationState(StrEnum):
    BOT = "bot"  # the bot answers
    WAITING = "waiting"  # handed off, waiting for an agent
    AGENT = "agent"  # an agent owns it; the bot is silent
    CLOSED = "closed"  # ended; the next inbound message reopens it with the bot


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class Author(StrEnum):
    LEAD = "lead"
    BOT = "bot"
    AGENT = "agent"


class DeliveryStatus(StrEnum):
    RECEIVED = "received"  # inbound
    PENDING = "pending"  # in the outbox
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    BLOCKED = "blocked"  # never sent on purpose (opted out, unreachable, outside a window)


class OutboxState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # claimed by a dispatcher until lease_until
    DONE = "done"
    FAILED = "failed"
    BLOCKED = "blocked"


class HandoffState(StrEnum):
    WAITING = "waiting"
    CLAIMED = "claimed"
    DONE = "done"


class AppointmentKind(StrEnum):
    CALL = "call"
    MEETING = "meeting"
    VISIT = "visit"


class AppointmentState(StrEnum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    DONE = "done"
    NO_SHOW = "no_show"


class ActionState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    SKIPPED = "skipped"  # came due when it no longer made sense (its appointment passed)
    CANCELLED = "cancelled"  # withdrawn before it came due (the lead replied, the date moved)
    FAILED = "failed"


class SequenceState(StrEnum):
    ACTIVE = "active"
    STOPPED = "stopped"
    COMPLETED = "completed"


class AgentRole(StrEnum):
    AGENT = "agent"
    ADMIN = "admin"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Tier(StrEnum):
    """How warm a lead is (seed 000): hot 40-50, warm 30-39, cold 20-29, disqualified < 20."""

    HOT = "hot"
    WARM = "warm"
    COLD = "cold"
    DISQUALIFIED = "disqualified"


class TaskPriority(StrEnum):
    HIGH = "alta"
    NORMAL = "normal"
    LOW = "baja"
