"""Effects: what the policy decides, as data. The engine carries them out in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.core.channel import Button
from bot.core.dialogue import Dialogue


@dataclass(frozen=True, slots=True)
class Reply:
    """Send the lead one variant of a script, placeholders filled by the engine."""

    script: str
    values: dict[str, str] = field(default_factory=dict)
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True, slots=True)
class AskWhich:
    """The message could mean either intent: ask the lead which one (script `clarify.which`)."""

    intents: tuple[str, str]


@dataclass(frozen=True, slots=True)
class EnqueueHandoff:
    """Put the conversation in the queue for a person; the bot goes silent until handed back."""

    reason: str


@dataclass(frozen=True, slots=True)
class OptOut:
    """The lead asked for no more messages: stop everything on every channel, for good."""


@dataclass(frozen=True, slots=True)
class Rescore:
    """Move the lead's score by `delta` points (clamped to 1-50); the tier follows. `intent`
    is the rule that moved it (the score explained)."""

    delta: int
    intent: str = ""


@dataclass(frozen=True, slots=True)
class Remember:
    """Replace what the conversation remembers between messages."""

    dialogue: Dialogue


@dataclass(frozen=True, slots=True)
class BookAppointment:
    """Book the slot and send `confirmation`. Two leads may confirm one slot at the same
    moment; the one that loses is told it was just taken instead."""

    at: datetime
    agent_id: int | None
    kind: str
    confirmation: Reply


@dataclass(frozen=True, slots=True)
class MoveAppointment:
    """Move the appointment and send `confirmation` (or "just taken", as for booking)."""

    appointment_id: int
    at: datetime
    agent_id: int | None
    confirmation: Reply


@dataclass(frozen=True, slots=True)
class CancelAppointment:
    appointment_id: int


@dataclass(frozen=True, slots=True)
class SendMaterials:
    """The lead said yes to materials a reply offered: send them (ids of the library), each
    on the lead's channel as a document, a photo or a link."""

    material_ids: tuple[int, ...]


Effect = (
    Reply
    | AskWhich
    | EnqueueHandoff
    | OptOut
    | Rescore
    | Remember
    | BookAppointment
    | MoveAppointment
    | CancelAppointment
    | SendMaterials
)
