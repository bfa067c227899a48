"""The conversation logic: a pure function from what we know to what should happen.

No I/O and no clock: `decide()` gets everything it needs, `now` included, and returns effects
as data for the engine to carry out. Every rule here is tested without a database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from bot.core.booking import SchedulingView, decide_booking
from bot.core.dialogue import Dialogue
from bot.core.effects import AskWhich, Effect, EnqueueHandoff, OptOut, Remember, Reply, Rescore
from bot.core.model import ConversationState
from bot.core.slots import Hours, spanish_moment
from intents.model import NONE, NluResult


@dataclass(frozen=True, slots=True)
class LeadView:
    id: int
    name: str | None
    score: int
    tier: str
    opted_out: bool = False


@dataclass(frozen=True, slots=True)
class ConversationView:
    state: ConversationState
    dialogue: Dialogue = field(default_factory=Dialogue)


@dataclass(frozen=True, slots=True)
class InboundView:
    """What the lead sent, beyond what the matcher understood of its text."""

    has_text: bool
    has_media: bool = False
    start: bool = False  # opened the chat from a link or the start button
    choice: str | None = None  # the payload of the button pressed, if any
    shared_contact: bool = False
    phone_saved: bool = False  # the shared contact was the lead's own number, now on record


@dataclass(frozen=True, slots=True)
class Rules:
    """The tunable parts of the policy, from settings."""

    miss_limit: int = 2
    points: Mapping[str, int] = field(default_factory=dict)
    default_kind: str = "call"
    # When people answer handoffs; None: at any hour.
    people: Hours | None = None


def decide(
    conversation: ConversationView,
    inbound: InboundView,
    nlu: NluResult,
    lead: LeadView,
    now: datetime,
    rules: Rules,
    schedule: SchedulingView | None = None,
) -> list[Effect]:
    """Decide the effects of one inbound message in a conversation the bot owns.

    `schedule` carries what the engine looked up in the calendar for this message (the
    lead's next appointment, whether the time asked for is free); without it the booking
    dialogue is off.
    """
    if lead.opted_out or conversation.state in (ConversationState.WAITING, ConversationState.AGENT):
        return []
    if inbound.shared_contact:
        return [Reply("contact.saved" if inbound.phone_saved else "contact.other")]
    if not inbound.has_text:
        if inbound.start:
            return [Reply("greeting")]
        return [Reply("media.received")] if inbound.has_media else []

    effects: list[Effect] = []
    if delta := rules.points.get(nlu.intent, 0):
        effects.append(Rescore(delta))

    if nlu.intent == "optout":
        return [OptOut(), Reply("optout.confirm")]
    memory = conversation.dialogue.understood()
    if nlu.intent == "handoff.human":
        return [
            *effects,
            Remember(memory),
            EnqueueHandoff("handoff.human"),
            _handed_off("handoff.waiting", rules, now),
        ]
    if schedule is not None:
        booking = decide_booking(
            memory, nlu, inbound.choice, schedule, now, default_kind=rules.default_kind
        )
        if booking is not None:
            return effects + booking
    if nlu.intent == NONE:
        return effects + _not_understood(conversation, rules, now)

    if nlu.ambiguous and len(nlu.candidates) >= 2:
        first, second = nlu.candidates[0][0], nlu.candidates[1][0]
        return [*effects, Remember(memory), AskWhich((first, second))]
    if nlu.intent == "buy.intent":
        # A human closes the sale: say so with the buy script, then queue it with priority.
        return [*effects, Remember(memory), Reply("buy.intent"), EnqueueHandoff("buy.intent")]
    return [*effects, Remember(memory), Reply(nlu.intent)]


def _handed_off(script: str, rules: Rules, now: datetime) -> Reply:
    """What the prospect is told when a person will answer: soon, or when people are back."""
    people = rules.people
    if people is None or people.is_open(now):
        return Reply(script)
    opening = people.next_opening(now)
    if opening is None:
        return Reply(script)
    return Reply("handoff.away", {"apertura": spanish_moment(opening, people.tz, now)})


def _not_understood(conversation: ConversationView, rules: Rules, now: datetime) -> list[Effect]:
    misses = conversation.dialogue.misses + 1
    memory = replace(conversation.dialogue, misses=0 if misses >= rules.miss_limit else misses)
    if misses >= rules.miss_limit:
        return [
            Remember(memory),
            EnqueueHandoff("not_understood"),
            _handed_off("handoff.not_understood", rules, now),
        ]
    return [Remember(memory), Reply(NONE)]
