"""The conversation logic: a pure function from what we know to what should happen.

No I/O and no clock: `decide()` gets everything it needs, `now` included, and returns effects
as data for the engine to carry out. Every rule here is tested without a database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from bot.core.booking import AFFIRM, DENY, SchedulingView, decide_booking, repeat_question
from bot.core.dialogue import AskingTime, Dialogue
from bot.core.effects import (
    AskWhich,
    Effect,
    EnqueueHandoff,
    OptOut,
    Remember,
    Reply,
    Rescore,
    SendMaterials,
)
from bot.core.model import ConversationState
from bot.core.slots import Hours, spanish_moment
from intents.model import NONE, NluResult

BUY = "buy.intent"
# How likely a reading must be, among the message's candidates, to answer "¿X o Y?" with it.
_CLARIFIED = 0.2


@dataclass(frozen=True, slots=True)
class LeadView:
    id: int
    name: str | None
    score: int
    tier: str
    opted_out: bool = False
    stage: str = ""


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
    # What the text told about the lead and is now on record (each said once, when new).
    name_saved: bool = False
    email_saved: str | None = None
    phones_saved: tuple[str, ...] = ()  # as the lead can read them: "+52 55 1234 5678"


@dataclass(frozen=True, slots=True)
class Rules:
    """The tunable parts of the policy, from settings."""

    miss_limit: int = 2
    points: Mapping[str, int] = field(default_factory=dict)
    default_kind: str = "call"
    # When people answer handoffs; None: at any hour.
    people: Hours | None = None
    # Pipeline stages of leads who have already bought: they get the post-sale path.
    won_stages: frozenset[str] = frozenset()


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

    dialogue = conversation.dialogue
    if dialogue.clarifying is not None and nlu.intent not in ("optout", "handoff.human"):
        # "¿Te refieres a X o a Y?" was asked: this message may say which.
        pair = dialogue.clarifying
        meant = _clarified(pair, nlu)
        if meant is None and nlu.intent == AFFIRM:
            return [Remember(dialogue.understood()), AskWhich(pair)]  # "sí" says neither
        dialogue = replace(dialogue, clarifying=None)
        if meant is not None:
            nlu = NluResult(meant, 1.0, time=nlu.time)

    effects: list[Effect] = []
    if delta := rules.points.get(nlu.intent, 0):
        effects.append(Rescore(delta, nlu.intent))

    if nlu.intent == "optout":
        return [OptOut(), Reply("optout.confirm")]
    memory = dialogue.understood()
    noted = _noted(inbound)
    if nlu.intent == "handoff.human":
        return [
            *effects,
            Remember(memory),
            *noted,
            EnqueueHandoff("handoff.human"),
            _handed_off("handoff.waiting", rules, now),
        ]
    if dialogue.offering and nlu.intent in (AFFIRM, DENY):
        # "¿Te comparto un caso de tu industria?" — "sí": send what was offered; "no": the
        # offer is withdrawn and the "no" answered as any other.
        offered, memory = dialogue.offering, replace(memory, offering=None, asked_at=None)
        if nlu.intent == AFFIRM:
            # "¿Te comparto un caso y lo platicamos en una llamada?": the call is asked for too.
            call = [Reply("schedule.ask_time")] if isinstance(memory.booking, AskingTime) else []
            return [*effects, Remember(memory), *noted, SendMaterials(offered), *call]
    if schedule is not None:
        booking = decide_booking(
            memory, nlu, inbound.choice, schedule, now, default_kind=rules.default_kind
        )
        if booking is not None:
            return effects + noted + booking
    if nlu.bought or (nlu.intent == BUY and lead.stage in rules.won_stages):
        # A customer asking what comes next, or saying they already paid: a person takes
        # them from here (seed 001), never a payment request.
        return [
            *effects,
            Remember(memory),
            *noted,
            Reply("post_sale.next"),
            EnqueueHandoff("post_sale"),
        ]
    if nlu.intent == NONE:
        if inbound.name_saved or noted:
            # Nothing to answer but what the lead told about themselves: say it was noted.
            hello: list[Effect] = [Reply("contact.name_saved")] if inbound.name_saved else []
            return [*effects, Remember(memory), *hello, *noted]
        return effects + _not_understood(dialogue, rules, now)

    if nlu.ambiguous and len(nlu.candidates) >= 2:
        pair = (nlu.candidates[0][0], nlu.candidates[1][0])
        return [*effects, Remember(replace(memory, clarifying=pair)), *noted, AskWhich(pair)]
    if nlu.intent == BUY:
        # A human closes the sale: say so with the buy script, then queue it with priority.
        return [*effects, Remember(memory), *noted, Reply(BUY), EnqueueHandoff(BUY)]
    # Something else while a question waits ("¿y cuánto cuesta?"): answer it, then ask the
    # question again, so that the next "sí" answers the question the bot asked last.
    again = repeat_question(memory, schedule, now) if schedule is not None else []
    return [*effects, Remember(memory), *noted, Reply(nlu.intent), *again]


def _handed_off(script: str, rules: Rules, now: datetime) -> Reply:
    """What the prospect is told when a person will answer: soon, or when people are back."""
    people = rules.people
    if people is None or people.is_open(now):
        return Reply(script)
    opening = people.next_opening(now)
    if opening is None:
        return Reply(script)
    return Reply("handoff.away", {"apertura": spanish_moment(opening, people.tz, now)})


def _noted(inbound: InboundView) -> list[Effect]:
    """Say once what the message put on record: an e-mail, another phone number."""
    noted: list[Effect] = []
    if inbound.email_saved:
        noted.append(Reply("contact.email_saved", {"correo": inbound.email_saved}))
    if inbound.phones_saved:
        numbers = _listing(list(inbound.phones_saved))
        noted.append(Reply("contact.phone_saved", {"telefono": numbers}))
    return noted


def _clarified(pair: tuple[str, str], nlu: NluResult) -> str | None:
    """Which of the two readings the answer to "¿X o Y?" picks: one of them said (or its button
    pressed), "lo primero" / "la segunda", or the likelier of the two in what was said."""
    if nlu.intent in pair:
        return nlu.intent
    if nlu.position in (1, 2, -1):
        return pair[0] if nlu.position == 1 else pair[1]
    scores = dict(nlu.candidates)
    best = max(pair, key=lambda intent: scores.get(intent, 0.0))
    return best if scores.get(best, 0.0) >= _CLARIFIED else None


def _listing(items: list[str]) -> str:
    """ "a, b y c" """
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " y " + items[-1]


def _not_understood(dialogue: Dialogue, rules: Rules, now: datetime) -> list[Effect]:
    misses = dialogue.misses + 1
    memory = replace(dialogue, misses=0 if misses >= rules.miss_limit else misses)
    if misses >= rules.miss_limit:
        return [
            Remember(memory),
            EnqueueHandoff("not_understood"),
            _handed_off("handoff.not_understood", rules, now),
        ]
    return [Remember(memory), Reply(NONE)]
