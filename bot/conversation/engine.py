"""The engine: one database transaction per inbound event.

For a message: dedupe on (channel, message id) by the unique index, find or create the lead by
channel identity, append the message, and, unless a person owns the conversation or the lead
opted out, understand it, let the policy decide, and carry out the effects (replies become
outbox rows) - all committed together or not at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.exc import DBAPIError, IntegrityError

from bot import live
from bot.conversation.admission import Admission
from bot.conversation.materials import offered_to
from bot.core.booking import (
    BOOK,
    YES_NO,
    AppointmentView,
    SchedulingView,
    asking_again,
    offered_slot,
    time_request,
)
from bot.core.channel import (
    Button,
    ChatLinkRequested,
    DeliveryUpdate,
    InboundEvent,
    InboundMessage,
    InlineReply,
    MessageEdited,
    Outcome,
    ReachabilityChanged,
    checked,
)
from bot.core.crm import ActivityKind
from bot.core.dialogue import AskingTime, Dialogue
from bot.core.effects import (
    AskWhich,
    BookAppointment,
    CancelAppointment,
    Effect,
    EnqueueHandoff,
    MoveAppointment,
    OptOut,
    Remember,
    Reply,
    Rescore,
    SendMaterials,
)
from bot.core.errors import Overloaded
from bot.core.materials import Material
from bot.core.model import (
    AppointmentState,
    Author,
    ConversationState,
    DeliveryStatus,
    Direction,
    OutboxState,
    utcnow,
)
from bot.core.phones import readable, spellings
from bot.core.policy import ConversationView, InboundView, LeadView, Rules, decide
from bot.core.scoring import BOOKED, INTENT, OPTED_OUT, REPLIED_FAST, HandoffPriority, Scoring
from bot.core.scripts import Renderer
from bot.core.slots import Hours, KindWords
from bot.crm import record
from bot.delivery import outbox
from bot.desk.accounts import digest
from bot.desk.assignment import assign
from bot.followup.actions import IDLE
from bot.followup.calendar import Calendar
from bot.followup.planner import Followup
from bot.metrics import Metrics
from bot.settings import Settings
from intents.model import NONE, NluResult
from storage.db import Database, is_conflict
from storage.models import (
    Appointment,
    ChannelIdentity,
    Conversation,
    Handoff,
    Lead,
    Message,
    Notification,
)
from storage.repositories import Added, Previous, Reads
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

# Delivery statuses only move forward; a late "sent" never overwrites "read".
_STATUS_RANK = {
    DeliveryStatus.PENDING: 0,
    DeliveryStatus.SENT: 1,
    DeliveryStatus.DELIVERED: 2,
    DeliveryStatus.READ: 3,
    DeliveryStatus.FAILED: 4,
    DeliveryStatus.BLOCKED: 4,
}


class Understanding(Protocol):
    """What the engine needs of the intent matcher."""

    def match(self, text: str, now: datetime, tz: str | ZoneInfo) -> NluResult: ...


@dataclass(frozen=True, slots=True)
class LeadRules:
    """How new leads start, how scores move, and what the policy is tuned with."""

    timezone: str
    first_stage: str
    pipeline: str | None = None  # the pipeline new leads start in (config pipeline.preset)
    region: str = "MX"  # for phone numbers written without a country code
    scoring: Scoring = field(default_factory=Scoring)
    handoff: HandoffPriority = field(default_factory=HandoffPriority)
    policy: Rules = field(default_factory=Rules)

    @classmethod
    def from_settings(cls, settings: Settings) -> LeadRules:
        return cls(
            timezone=settings.business.timezone,
            first_stage=settings.pipeline.stages[0],
            pipeline=settings.pipeline.preset,
            region=settings.business.phone_region,
            scoring=settings.scoring.rules(),
            handoff=HandoffPriority(settings.handoff.priority, settings.handoff.hot_bonus),
            policy=Rules(
                miss_limit=settings.conversation.miss_limit,
                points=settings.scoring.points,
                default_kind=settings.scheduling.default_kind,
                people=people_hours(settings),
                won_stages=settings.pipeline.won_stages,
            ),
        )


def people_hours(settings: Settings) -> Hours | None:
    """When people answer handoffs: the opening hours, unless the business says any hour."""
    if not settings.handoff.business_hours:
        return None
    return Hours(settings.scheduling.grid(), settings.business.tz)


_TAKEN = Reply("schedule.taken")


class _Unread(enum.Enum):
    """What a turn has not read (where None is an answer: no appointment)."""

    UNREAD = enum.auto()


UNREAD = _Unread.UNREAD


@dataclass(frozen=True, slots=True)
class _Turn:
    """What carrying out the effects of one inbound message shares."""

    uow: UnitOfWork
    event: InboundMessage
    lead: Lead
    conversation: Conversation
    message_id: int
    now: datetime
    choice: str | None  # the button pressed, when it is a valid choice
    learned: Learned  # what the message put on the lead's record
    # The lead's next appointment, when read with the inbound message (nothing in the turn
    # books, moves or cancels one before `_schedule` looks at it).
    upcoming: Appointment | Literal[_Unread.UNREAD] | None
    idle: Added | None  # the idle check this turn adds (see `_message`)
    opened: bool  # the conversation began with this message: nothing of it was stored before
    changed: set[str] = field(default_factory=set)  # live topics to signal after the commit
    staged: list[bool] = field(default_factory=list)  # messages to agents were staged


@dataclass(frozen=True, slots=True)
class Learned:
    """What a message told about the lead that was not on record before."""

    name: bool = False
    email: str | None = None
    phones: tuple[str, ...] = ()


class _RaceLost(Exception):
    """Another transaction created the same lead or identity first; run again."""


class Engine:
    """Handles inbound events; the only writer of conversations on the lead's side."""

    MAX_ATTEMPTS = 5

    def __init__(
        self,
        db: Database,
        understanding: Understanding,
        renderer: Renderer,
        rules: LeadRules,
        *,
        calendar: Calendar,
        followup: Followup,
        kinds: KindWords,
        metrics: Metrics,
        signals: live.Signals | None = None,
        admission: Admission | None = None,
        assign_agents: bool = True,
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = utcnow,
        public_url: str = "",
    ) -> None:
        self.db = db
        self.public_url = public_url  # where uploaded materials are fetched from
        self.understanding = understanding
        self.renderer = renderer
        self.rules = rules
        self.calendar = calendar
        self.followup = followup
        self.kinds = kinds
        self.metrics = metrics
        self.signals = signals or live.Signals()
        self.admission = admission or Admission(db.pool_size, wait=5.0)
        self.assign_agents = assign_agents
        self.on_commit = on_commit
        self.clock = clock

    async def receive(self, event: InboundEvent) -> Outcome:
        """Handle one event in one transaction.

        The transaction runs again, from the start, when it lost a race for a new lead or
        identity, or when PostgreSQL aborted it to break a deadlock or a serialization
        conflict: nothing is answered until it committed or truly failed.

        At most `admission.limit` events are handled at once; the others wait their turn.

        Raises:
            WebhookRejected: a field is not what any channel sends (400).
            Overloaded: it waited its turn for as long as it may (503 with Retry-After).
            sqlalchemy errors when the database is unreachable; callers answer 503 so the
            channel delivers again later (the dedupe key makes that safe).
        """
        started = time.perf_counter()
        event = checked(event)
        try:
            async with self.admission.slot():
                outcome = await self._attempts(event)
        except Overloaded:
            self.metrics.overloaded.labels(event.channel).inc()
            raise
        self.metrics.engine_latency.labels(event.channel).observe(time.perf_counter() - started)
        return outcome

    async def _attempts(self, event: InboundEvent) -> Outcome:
        for attempt in range(1, self.MAX_ATTEMPTS + 1):
            try:
                return await self._dispatch(event)
            except (_RaceLost, IntegrityError, DBAPIError) as exc:
                retry = isinstance(exc, (_RaceLost, IntegrityError)) or is_conflict(exc)
                if not retry or attempt == self.MAX_ATTEMPTS:
                    raise
                log.info(
                    "engine_retry",
                    extra={
                        "channel": event.channel,
                        "attempt": attempt,
                        "error": type(getattr(exc, "orig", None) or exc).__name__,
                    },
                )
                # Jitter, so two transactions that collided do not collide again in step.
                await asyncio.sleep(random.uniform(0, 0.02 * attempt))  # noqa: S311
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _dispatch(self, event: InboundEvent) -> Outcome:
        match event:
            case InboundMessage():
                return await self._message(event)
            case MessageEdited():
                return await self._edited(event)
            case DeliveryUpdate():
                return await self._delivery(event)
            case ReachabilityChanged():
                return await self._reachability(event)
            case ChatLinkRequested():
                return await self._link_chat(event)

    async def _message(self, event: InboundMessage) -> Outcome:
        now = self.clock()
        async with UnitOfWork(self.db) as uow:
            conversation, watched = await uow.conversations.for_sender_watched(
                event.channel, event.sender_id, IDLE
            )
            text = event.text.strip()
            before = None
            upcoming: Appointment | Literal[_Unread.UNREAD] | None = UNREAD
            opened = conversation is None
            if conversation is None:
                # A new conversation has no question pending and nothing before this message.
                dialogue = Dialogue()
                conversation, nlu, choice, message_id = await self._first_contact(
                    uow, event, text, dialogue, now
                )
                lead = conversation.lead
            else:
                lead = conversation.lead
                dialogue = Dialogue.from_context(conversation.context)
                # (What a typed message means does not depend on the question pending; a
                # button's does, and a button's question never lapses: see `_reads`.)
                nlu, choice = self._understand(event, dialogue, text, now, lead.timezone)
                inbound = self._inbound(event, nlu, now)
                reads = self._reads(event, dialogue, nlu, lead.id, now)
                received = await uow.messages.add_inbound_after(
                    {**inbound, "conversation_id": conversation.id}, reads
                )
                if received is None:
                    message_id = None
                else:
                    message_id, before = received.message_id, received.before
                    if reads.upcoming_for is not None:
                        upcoming = received.upcoming
                    if received.sent_since:
                        dialogue = dialogue.without_question()
            if message_id is None:
                self.metrics.inbound.labels(event.channel, "duplicate").inc()
                log.info("message_duplicate", extra={"channel": event.channel})
                return Outcome(duplicate=True)

            if before is not None:
                self._replied_fast(uow, lead, before, now)
            lead.last_activity_at = now
            conversation.last_inbound_at = min(event.sent_at, now)
            if lead.sequence_run_id is not None:
                # The lead wrote: the follow-up sequence has done its job.
                await self.followup.sequences.leave(uow, lead, "replied", now)
            if event.sender_name and not lead.name:
                lead.name = event.sender_name
            learned = await self._learn(uow, lead, nlu)
            if event.source and lead.source in (None, event.channel.value):
                lead.source = event.source  # a campaign beats "came in on this channel"
            if event.shared_contact and event.sender_phone:
                await uow.leads.add_phone(lead.id, event.sender_phone)
            if conversation.state == ConversationState.CLOSED:
                conversation.state = ConversationState.BOT
                conversation.agent_id = None

            replies: list[InlineReply] = []
            talks = lead.opted_out_at is None and conversation.state == ConversationState.BOT
            # When this conversation goes quiet, the tier's follow-up starts. Asked before the
            # bot answers, so the check goes out with the reply (one statement on PostgreSQL),
            # and taken back when the turn ends with a person or an opt-out: by the hand-off or
            # the opt-out itself, before the reply has written it, or at the end.
            idle = (
                await self.followup.idle.watch(uow, lead, now, waiting=watched) if talks else None
            )
            turn = _Turn(
                uow,
                event,
                lead,
                conversation,
                message_id,
                now,
                choice,
                learned,
                upcoming,
                idle,
                opened=opened,
            )
            if talks:
                replies = await self._converse(turn, dialogue, nlu)
                if lead.opted_out_at is not None or conversation.state != ConversationState.BOT:
                    await self.followup.idle.unwatch(uow, idle)
            await uow.write_changes()
            await uow.commit()

        # The pages that show this conversation (and the queue, after a handoff) look again.
        self.signals.changed(live.conversation(conversation.id), *turn.changed)

        self.metrics.inbound.labels(event.channel, "stored").inc()
        log.info(
            "message_received",
            extra={
                "channel": event.channel,
                "lead_id": lead.id,
                "conversation_id": conversation.id,
                "state": conversation.state,
                "replies": len(replies),
            },
        )
        log.debug("message_text", extra={"message_id": message_id, "text": event.text})
        if (replies and not event.reply_inline) or turn.staged:
            self.on_commit()
        return Outcome(message_id=message_id, replies=tuple(replies) if event.reply_inline else ())

    @staticmethod
    def _inbound(event: InboundMessage, nlu: NluResult | None, now: datetime) -> dict[str, Any]:
        """The inbound message's row, but for its conversation."""
        return {
            "channel": event.channel,
            "direction": Direction.IN,
            "author": Author.LEAD,
            "text": event.text,
            "media": [
                {"kind": m.kind, "ref": m.ref, "content_type": m.content_type} for m in event.media
            ],
            "channel_message_id": event.message_id,
            "intent": nlu.intent if nlu else None,
            "confidence": round(nlu.confidence, 4) if nlu else None,
            "status": DeliveryStatus.RECEIVED,
            "created_at": now,
        }

    def _understand(
        self,
        event: InboundMessage,
        dialogue: Dialogue,
        text: str,
        now: datetime,
        tz: str,
    ) -> tuple[NluResult | None, str | None]:
        """What the message means, and the button choice it carries when that is valid.

        A button stands for an intent, or for one of the slots just offered (choosing it says
        yes to it). Any other payload (a button from an old offer, a forged one) is read as
        the words on the button.
        """
        choice = event.choice
        if choice and self.renderer.is_intent(choice):
            return NluResult(choice, 1.0), choice
        if offered_slot(dialogue, choice) is not None:
            return NluResult("affirm", 1.0), choice
        return (self.understanding.match(text, now, tz) if text else None), None

    @staticmethod
    def _reads(
        event: InboundMessage,
        dialogue: Dialogue,
        nlu: NluResult | None,
        lead_id: int,
        now: datetime,
    ) -> Reads:
        """What the turn reads with its inbound message (the lock held, so it is current):

        - whether the question pending has lapsed, no longer the one a typed "sí" answers: a
          follow-up or an agent wrote since the bot asked it (a button of that question still
          answers it);
        - the lead's next appointment, when the booking dialogue may be in play (`_schedule`).
        """
        asked = dialogue.asked_at if dialogue.pending and event.choice is None else None
        schedules = dialogue.pending or (nlu is not None and nlu.intent.startswith("schedule."))
        return Reads(since=asked, upcoming_for=(lead_id, now) if schedules else None)

    async def _learn(self, uow: UnitOfWork, lead: Lead, nlu: NluResult | None) -> Learned:
        """Put on the lead's record what the message tells and the record lacks: a name, an
        e-mail, more phone numbers. A name or an e-mail on record is never replaced, and a
        number that belongs to another lead is never taken from them."""
        if nlu is None:
            return Learned()
        named = nlu.name is not None and not lead.name
        if named:
            lead.name = nlu.name
        email = nlu.emails[0] if nlu.emails and not lead.email else None
        if email is not None:
            lead.email = email
        phones: list[str] = []
        for phone in nlu.phones[:3]:
            owner = await uow.leads.by_phone(spellings(phone))
            if owner is None:
                await uow.leads.add_phone(lead.id, phone)
                phones.append(readable(phone))
            elif owner.id != lead.id:
                log.info("phone_of_another_lead", extra={"lead_id": lead.id, "owner": owner.id})
        if named or email or phones:
            log.info(
                "lead_details_learned",
                extra={
                    "lead_id": lead.id,
                    "named": named,
                    "email_added": email is not None,
                    "phones_added": len(phones),
                },
            )
        return Learned(named, email, tuple(phones))

    async def _first_contact(
        self, uow: UnitOfWork, event: InboundMessage, text: str, dialogue: Dialogue, now: datetime
    ) -> tuple[Conversation, NluResult | None, str | None, int | None]:
        """The lead, identity and conversation of a sender new to this channel, with the
        message stored: the conversation, what the message means, its button choice, and the
        message's id (None: the channel already delivered it)."""
        lead = None
        if event.sender_phone:
            # One person is one lead: a number already known from another channel or an
            # import (in any of its spellings) joins this identity to that lead.
            lead = await uow.leads.by_phone(spellings(event.sender_phone))
        timezone = lead.timezone if lead is not None else self.rules.timezone
        nlu, choice = self._understand(event, dialogue, text, now, timezone)
        inbound = self._inbound(event, nlu, now)
        identity = ChannelIdentity(
            channel=event.channel,
            external_id=event.sender_id,
            phone=event.sender_phone,
            display_name=event.sender_name,
            reachable=True,
            created_at=now,
        )
        conversation = Conversation(
            channel=event.channel, state=ConversationState.BOT, context={}, created_at=now
        )
        if lead is None:
            scoring = self.rules.scoring
            lead = Lead(
                name=event.sender_name,
                source=event.source or event.channel.value,
                stage=self.rules.first_stage,
                score=scoring.initial,
                tier=scoring.tier(scoring.initial),
                timezone=self.rules.timezone,
                first_contact_at=now,
                last_activity_at=now,
                pipeline=self.rules.pipeline,
            )
            opened = await uow.conversations.open_for_new_lead(
                lead, identity, conversation, inbound
            )
            if opened is None:
                raise _RaceLost
            conversation, message_id = opened
            if message_id is None:
                return conversation, nlu, choice, None  # a duplicate: rolled back, nothing kept
            if event.sender_phone:
                await uow.leads.add_phone(lead.id, event.sender_phone)
            await record.created(uow, lead, scoring, now)
            return conversation, nlu, choice, message_id
        created = await uow.identities.create(
            {
                "lead_id": lead.id,
                "channel": event.channel,
                "external_id": event.sender_id,
                "phone": event.sender_phone,
                "display_name": event.sender_name,
                "reachable": True,
                "created_at": now,
            }
        )
        if created is None:
            raise _RaceLost
        conversation.lead, conversation.identity = lead, created
        conversation = await uow.conversations.add(conversation)
        message_id = await uow.messages.add_inbound({**inbound, "conversation_id": conversation.id})
        return conversation, nlu, choice, message_id

    async def _converse(
        self, turn: _Turn, dialogue: Dialogue, nlu: NluResult | None
    ) -> list[InlineReply]:
        event, lead, conversation = turn.event, turn.lead, turn.conversation
        understood = nlu or NluResult(NONE, 0.0)
        schedule = await self._schedule(turn, understood, dialogue)
        effects = decide(
            ConversationView(conversation.state, dialogue),
            InboundView(
                has_text=nlu is not None,
                has_media=bool(event.media),
                start=event.start,
                shared_contact=event.shared_contact,
                phone_saved=event.sender_phone is not None,
                choice=turn.choice,
                name_saved=turn.learned.name,
                email_saved=turn.learned.email,
                phones_saved=turn.learned.phones,
            ),
            understood,
            LeadView(lead.id, lead.name, lead.score, lead.tier, stage=lead.stage),
            turn.now,
            self.rules.policy,
            schedule,
        )
        replies = [reply for effect in effects for reply in await self._apply(turn, effect)]
        if replies:
            self.metrics.replies.labels(event.channel).inc(len(replies))
        return replies

    async def _schedule(
        self, turn: _Turn, nlu: NluResult, dialogue: Dialogue
    ) -> SchedulingView | None:
        """What the booking dialogue needs from the calendar, looked up only when it is in play:
        the lead's next appointment, and whether the time the message asks for is free."""
        event, lead, now = turn.event, turn.lead, turn.now
        if not (nlu.intent.startswith("schedule.") or dialogue.pending):
            return None
        tz = ZoneInfo(lead.timezone)
        upcoming = turn.upcoming
        if upcoming is UNREAD:
            upcoming = await turn.uow.appointments.next_for(lead.id, now)
        request = time_request(dialogue, nlu, turn.choice, now, tz)
        availability = None
        if request is not None and request.mention is not None and request.mention.when:
            availability = await self.calendar.check(turn.uow, lead, request.mention.when, now)
        return SchedulingView(
            tz=tz,
            availability=availability,
            upcoming=(
                AppointmentView(upcoming.id, upcoming.starts_at, upcoming.kind)
                if upcoming
                else None
            ),
            kind=(
                self.kinds.detect_normalised(nlu.normalised)
                if nlu.normalised
                else self.kinds.detect(event.text)
            ),
        )

    async def _apply(self, turn: _Turn, effect: Effect) -> list[InlineReply]:
        """Carry out one effect; returns the messages it sent the lead (often none)."""
        uow, lead, conversation, now = turn.uow, turn.lead, turn.conversation, turn.now
        match effect:
            case Reply(script=script, values=values, buttons=buttons):
                return [await self._reply(turn, script, values, buttons)]
            case AskWhich(intents=(first, second)):
                labels = self.renderer.label(first), self.renderer.label(second)
                buttons = tuple(
                    Button(label[:1].upper() + label[1:], intent)
                    for label, intent in zip(labels, (first, second), strict=True)
                )
                values = {"a": labels[0], "b": labels[1]}
                return [await self._reply(turn, "clarify.which", values, buttons)]
            case Remember(dialogue=dialogue):
                # Stamped: a follow-up sent after this moment makes the question lapse.
                asked_at = now if dialogue.pending else None
                conversation.context = dataclasses.replace(dialogue, asked_at=asked_at).to_context()
            case Rescore(delta=delta, intent=intent):
                # The tier's sequence starts when the conversation goes quiet, not mid-chat.
                record.rescore(uow, lead, self.rules.scoring, INTENT + intent, now, delta)
            case OptOut():
                lead.opted_out_at = now
                await self.followup.idle.unwatch(uow, turn.idle)
                record.rescore(uow, lead, self.rules.scoring, OPTED_OUT, now)
                await self.followup.sequences.leave(uow, lead, "opted out", now)
                blocked = await uow.outbox.block_unsent_for_lead(lead.id, outbox.OPTED_OUT, now)
                log.info("lead_opted_out", extra={"lead_id": lead.id, "blocked": blocked})
            case EnqueueHandoff(reason=reason):
                await self.followup.sequences.leave(uow, lead, "handed off", now)
                await self._hand_off(turn, reason)
            case BookAppointment():
                booked = await self._book(turn, effect)
                return await self._apply(turn, effect.confirmation if booked else _TAKEN)
            case MoveAppointment():
                moved = await self._move(turn, effect)
                return await self._apply(turn, effect.confirmation if moved else _TAKEN)
            case CancelAppointment(appointment_id=appointment_id):
                appointment = await uow.appointments.get(appointment_id)
                if appointment is not None and appointment.state == AppointmentState.CONFIRMED:
                    appointment.state = AppointmentState.CANCELLED
                    appointment.cancelled_at = now
                    await self.followup.reminders.withdraw(uow, appointment.id, now)
                    log.info("appointment_cancelled", extra={"appointment_id": appointment.id})
            case SendMaterials(material_ids=ids):
                return await self._send_materials(turn, ids)
        return []

    async def _book(self, turn: _Turn, effect: BookAppointment) -> bool:
        """Book the slot; False when another lead took it a moment ago (ask for a new time)."""
        uow, lead, conversation, now = turn.uow, turn.lead, turn.conversation, turn.now
        appointment_id = await uow.appointments.book(
            {
                "lead_id": lead.id,
                "conversation_id": conversation.id,
                "agent_id": effect.agent_id,
                "kind": effect.kind,
                "starts_at": effect.at,
                "ends_at": effect.at + self.calendar.hours.length,
                "state": AppointmentState.CONFIRMED,
                "created_at": now,
            }
        )
        if appointment_id is None:
            self._ask_again(conversation, effect.kind, now)
            return False
        appointment = await uow.appointments.get(appointment_id)
        assert appointment is not None
        await self.followup.reminders.plan(uow, appointment, now)
        await self.followup.sequences.leave(uow, lead, "booked", now)
        await self._booked(uow, lead, appointment_id, effect.kind, effect.at, now)
        log.info("appointment_booked", extra={"appointment_id": appointment_id, "lead_id": lead.id})
        return True

    async def _booked(
        self,
        uow: UnitOfWork,
        lead: Lead,
        appointment_id: int,
        kind: str,
        at: datetime,
        now: datetime,
    ) -> None:
        """The CRM keeps the booking: an activity and the booked signal's points."""
        record.rescore(uow, lead, self.rules.scoring, BOOKED, now)
        record.activity(
            uow,
            lead.id,
            ActivityKind.APPOINTMENT,
            now,
            details={"appointment_id": appointment_id, "kind": kind, "at": at.isoformat()},
        )
        appointment = {"id": appointment_id, "kind": kind, "starts_at": at.isoformat()}
        lead_data = record.lead_data(lead)
        await record.emit(
            uow, "appointment.booked", {"lead": lead_data, "appointment": appointment}, now
        )

    def _replied_fast(self, uow: UnitOfWork, lead: Lead, before: Previous, now: datetime) -> None:
        """A reply soon after a follow-up or an agent's message counts for the lead (one
        reply to the bot's own answers in a chat does not: that is just chatting)."""
        if before.direction != Direction.OUT:
            return
        outreach = before.author == Author.AGENT or (before.script or "").startswith("sequence.")
        limit = self.rules.scoring.replied_fast_minutes * 60
        if outreach and (now - before.created_at).total_seconds() <= limit:
            record.rescore(uow, lead, self.rules.scoring, REPLIED_FAST, now)

    async def _move(self, turn: _Turn, effect: MoveAppointment) -> bool:
        uow, now = turn.uow, turn.now
        appointment = await uow.appointments.get(effect.appointment_id)
        if appointment is None:
            return False
        moved = await uow.appointments.move(
            appointment, effect.at, effect.at + self.calendar.hours.length, effect.agent_id
        )
        if not moved:
            self._ask_again(turn.conversation, appointment.kind, now, reschedule=True)
            return False
        await self.followup.reminders.withdraw(uow, appointment.id, now)
        await self.followup.reminders.plan(uow, appointment, now)
        log.info("appointment_moved", extra={"appointment_id": appointment.id})
        return True

    def _ask_again(
        self, conversation: Conversation, kind: str, now: datetime, *, reschedule: bool = False
    ) -> None:
        """The slot was just taken: the next message names another time for the same kind of
        appointment (a visit stays a visit)."""
        dialogue = Dialogue.from_context(conversation.context)
        waiting = asking_again(dialogue.booking, self.rules.policy.default_kind)
        waiting = dataclasses.replace(
            waiting, kind=kind, intent="schedule.reschedule" if reschedule else waiting.intent
        )
        asking = dataclasses.replace(dialogue, booking=waiting, asked_at=now)
        conversation.context = asking.to_context()

    async def _reply(
        self,
        turn: _Turn,
        script: str,
        values: Mapping[str, str],
        buttons: tuple[Button, ...] = (),
    ) -> InlineReply:
        conversation = turn.conversation
        first_name = (turn.lead.name or "").split(" ")[0]
        library: list[Material] = []
        if any(self.renderer.book.offered(script)):
            library = await turn.uow.materials.active()
        offers: dict[tuple[str, ...], tuple[Material, ...]] = {}

        def sendable(references: tuple[str, ...]) -> bool:
            found = offered_to(references, library, turn.lead.tags or ())
            if found:
                offers[references] = found
            return bool(found)

        rendered = self.renderer.render(
            script,
            seed=f"{conversation.id}:{turn.message_id}",
            values={"nombre": first_name, **values},
            sendable=sendable,
        )
        offered = offers.get(rendered.offers, ()) if rendered.offers else ()
        if self._offering(turn, offered, rendered.books) and not buttons:
            buttons = YES_NO
        message_id = await outbox.stage(
            turn.uow,
            conversation,
            rendered.text,
            author=Author.BOT,
            now=turn.now,
            script=rendered.script,
            variant=rendered.variant,
            buttons=buttons,
            optout_confirmation=script == "optout.confirm",
            delivered_inline=turn.event.reply_inline,
            with_changes=True,  # the lead's and conversation's changes so far: one round trip
        )
        return InlineReply(message_id, rendered.text)

    @staticmethod
    def _offering(turn: _Turn, offered: tuple[Material, ...], books: str | None) -> bool:
        """The bot's last words decide what a "sí" answers. Materials just offered become the
        question pending, and a reply that offers none withdraws an earlier offer; a reply that
        offers an appointment ("¿lo platicamos en una llamada corta?") makes the booking the
        question, so a "sí" asks for the day and hour, unless a booking dialogue is already
        under way. True when the reply offers something that a "sí" answers."""
        conversation = turn.conversation
        before = Dialogue.from_context(conversation.context)
        dialogue = before
        if offered:
            ids = tuple(material.id for material in offered)
            dialogue = dataclasses.replace(dialogue, offering=ids, asked_at=turn.now)
        elif dialogue.offering:
            dialogue = dataclasses.replace(dialogue, offering=None)
            if not dialogue.pending:
                dialogue = dataclasses.replace(dialogue, asked_at=None)
        booking = False
        if books is not None and dialogue.booking is None and dialogue.cancelling is None:
            dialogue = dataclasses.replace(
                dialogue, booking=AskingTime(BOOK, books), asked_at=turn.now
            )
            booking = True
        if dialogue != before:
            conversation.context = dialogue.to_context()
        return bool(offered) or booking

    async def _send_materials(self, turn: _Turn, ids: tuple[int, ...]) -> list[InlineReply]:
        """The lead said yes: send each material still active, in the order offered."""
        materials = [m for m in await turn.uow.materials.by_ids(ids) if m.active]
        if not materials:
            log.info("materials_gone", extra={"conversation_id": turn.conversation.id})
            if self.renderer.knows("material.unavailable"):
                return [await self._reply(turn, "material.unavailable", {})]
            return []
        replies = []
        for material in materials:
            message_id, text = await outbox.stage_material(
                turn.uow,
                turn.conversation,
                material,
                public_url=self.public_url,
                now=turn.now,
                delivered_inline=turn.event.reply_inline,
            )
            replies.append(InlineReply(message_id, text))
        record.activity(
            turn.uow,
            turn.lead.id,
            ActivityKind.MATERIAL,
            turn.now,
            body=", ".join(material.title for material in materials),
            details={"materials": [material.key for material in materials]},
        )
        log.info(
            "materials_sent",
            extra={"conversation_id": turn.conversation.id, "materials": len(materials)},
        )
        return replies

    async def _hand_off(self, turn: _Turn, reason: str) -> None:
        uow, lead, conversation, now = turn.uow, turn.lead, turn.conversation, turn.now
        # What this turn changed so far (the lead's record, the conversation, which is in the
        # bot's hands) is no hand-off and no agent's load: read without writing it first.
        with uow.unflushed():
            if turn.opened:
                # Opened by this message, the conversation has no hand-off from before; one
                # made this turn has taken it out of the bot's hands. (No look-up: a round
                # trip less on a new lead's first message.)
                if conversation.state != ConversationState.BOT:
                    return
            elif await uow.handoffs.open_for(conversation.id) is not None:
                return
            chosen = await assign(uow, lead, now) if self.assign_agents else None
        priority = self.rules.handoff.of(reason, lead.tier)
        conversation.state = ConversationState.WAITING
        await self.followup.idle.unwatch(uow, turn.idle)
        handoff = await uow.handoffs.add(
            Handoff(
                conversation_id=conversation.id,
                lead_id=lead.id,
                reason=reason,
                priority=priority,
                requested_at=now,
                assigned_agent_id=chosen.id if chosen else None,
            )
        )
        await self.followup.handoffs.plan(uow, handoff, now)
        record.activity(
            uow,
            lead.id,
            ActivityKind.HANDOFF,
            now,
            details={"reason": reason, "priority": priority},
        )
        handoff_data = {"id": handoff.id, "conversation_id": conversation.id, "reason": reason}
        await record.emit(
            uow, "handoff.requested", {"lead": record.lead_data(lead), "handoff": handoff_data}, now
        )
        if chosen is not None:
            values = {
                "nombre": lead.name or "Un prospecto",
                "motivo": self.renderer.render(f"handoff.reason.{reason}", seed="", values={}).text
                if self.renderer.knows(f"handoff.reason.{reason}")
                else reason,
            }
            text = self.renderer.render(
                "handoff.agent_alert", seed=f"{conversation.id}", values=values
            ).text
            staged = await self.followup.outreach.to_agent(
                uow, chosen.id, "handoff", text, lead.id, now
            )
            turn.staged.append(staged)
            turn.changed.add(live.agent(chosen.id))
        turn.changed.add(live.QUEUE)
        self.metrics.handoffs.labels(reason).inc()
        log.info(
            "handoff_requested",
            extra={
                "conversation_id": conversation.id,
                "reason": reason,
                "priority": priority,
                "assigned_agent_id": chosen.id if chosen else None,
            },
        )

    async def _link_chat(self, event: ChatLinkRequested) -> Outcome:
        """An agent's code from the console: their alerts go to this chat from now on."""
        now = self.clock()
        async with UnitOfWork(self.db) as uow:
            agent = await uow.accounts.by_telegram_link(digest(event.code), now)
            if agent is None:
                log.info("telegram_link_refused", extra={"channel": event.channel})
                return Outcome()
            agent.telegram_chat_id = int(event.sender_id)
            agent.telegram_link_hash = None
            agent.telegram_link_expires_at = None
            text = self.renderer.render(
                "agent.telegram_linked", seed=str(agent.id), values={"asesor": agent.name}
            ).text
            notification = await uow.notifications.add(
                Notification(agent_id=agent.id, kind="linked", text=text, created_at=now)
            )
            await outbox.stage_notification(uow, notification, agent.telegram_chat_id, now)
            await uow.commit()
        log.info("telegram_linked", extra={"agent_id": agent.id})
        self.on_commit()
        self.signals.changed(live.agent(agent.id))
        return Outcome()

    async def _edited(self, event: MessageEdited) -> Outcome:
        async with UnitOfWork(self.db) as uow:
            message = await uow.messages.by_channel_id(event.channel, event.message_id)
            if message is None or message.direction != Direction.IN:
                return Outcome()
            message.text = event.text
            message.edited_at = event.edited_at
            await uow.commit()
            return Outcome(message_id=message.id)

    async def _delivery(self, event: DeliveryUpdate) -> Outcome:
        async with UnitOfWork(self.db) as uow:
            message = await uow.messages.by_channel_id(event.channel, event.message_id)
            reconciled = False
            if message is None and event.outbox_key is not None:
                message = await self._reconcile(uow, event)
                reconciled = message is not None
            if message is None or message.direction != Direction.OUT:
                return Outcome()
            # Reports can arrive out of order or twice: only ever move forward.
            forward = _STATUS_RANK.get(event.status, 0) > _STATUS_RANK.get(message.status, 0)
            if forward:
                message.status = event.status
                if event.error_code:
                    message.error = event.error_code
            if forward or reconciled:
                await uow.commit()
            return Outcome(message_id=message.id, duplicate=not (forward or reconciled))

    async def _reconcile(self, uow: UnitOfWork, event: DeliveryUpdate) -> Message | None:
        """A report for a send whose answer we never got: record that it did go out.

        The row is settled so the dispatcher does not send it a second time.
        """
        assert event.outbox_key is not None
        item = await uow.outbox.get(event.outbox_key)
        if item is None or item.channel != event.channel or item.message is None:
            return None
        if item.state in (OutboxState.PENDING, OutboxState.SENDING):
            uow.outbox.sent(item, event.at, event.message_id)
            log.info("outbox_reconciled", extra={"outbox_id": item.id, "channel": item.channel})
        elif item.message.channel_message_id is None:
            item.message.channel_message_id = event.message_id
        return item.message

    async def _reachability(self, event: ReachabilityChanged) -> Outcome:
        async with UnitOfWork(self.db) as uow:
            await uow.identities.set_reachable(event.channel, event.sender_id, event.reachable)
            await uow.commit()
        log.info(
            "reachability_changed", extra={"channel": event.channel, "reachable": event.reachable}
        )
        return Outcome()
