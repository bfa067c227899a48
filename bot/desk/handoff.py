"""The agents' side of a conversation: the queue, taking it, replying, transferring, ending it.

A handoff is a conversation state (Chatwoot's "pending" idea), not a second system: while a
conversation waits for an agent or is with one, the engine stores the lead's messages and the
bot stays silent. Every change is one transaction, recorded in the audit log, and signalled
(`bot.live`) to the pages that show it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from bot import live
from bot.core.channel import MediaRef
from bot.core.errors import ConflictError, InvalidInput, NotFound
from bot.core.model import (
    AgentRole,
    AppointmentState,
    Author,
    Channel,
    ConversationState,
    HandoffState,
    OutboxState,
    utcnow,
)
from bot.core.phones import spellings, to_e164
from bot.core.slots import Hours
from bot.delivery import outbox
from bot.desk.accounts import Who
from bot.followup.sequences import Sequences
from bot.settings import TemplateSettings
from storage.db import Database
from storage.models import (
    Agent,
    Appointment,
    CannedReply,
    CloseReason,
    Conversation,
    Handoff,
    Lead,
    Message,
    OutboxItem,
    Task,
    Transfer,
)
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

TAKEN_OVER = "taken_over"  # the handoff reason when an agent takes a conversation from the bot
HANDED_BACK = "handed_back"
WHATSAPP_WINDOW = timedelta(hours=24)
MAX_LABELS, MAX_LABEL = 10, 32


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "sgb_" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class QueueEntry:
    handoff_id: int
    conversation_id: int
    lead_id: int
    lead_name: str | None
    channel: str
    reason: str
    priority: int
    tier: str
    requested_at: datetime
    waiting_seconds: int
    assigned_to: str | None = None  # the agent the rules picked, if any
    overdue: bool = False  # waiting longer than the SLA, in business time


@dataclass(frozen=True, slots=True)
class OutboxReport:
    counts: dict[str, int]
    failed: list[OutboxItem]


@dataclass(frozen=True, slots=True)
class ConversationPage:
    """Everything an agent sees of one conversation."""

    conversation: Conversation
    lead: Lead
    messages: list[Message]
    phones: list[str]
    agent: Agent | None  # who holds it
    owner: Agent | None  # the lead's owner
    handoff: Handoff | None  # the latest one
    appointments: list[Appointment]
    tasks: list[Task]
    transfers: list[Transfer]
    agents: dict[int, str] = field(default_factory=dict)  # id -> name, for the history
    window_open: bool = True  # WhatsApp: free text allowed (the lead wrote in the last 24 h)
    template_ready: bool = False  # WhatsApp: an approved template replaces free text


@dataclass(frozen=True, slots=True)
class SearchHit:
    lead: Lead
    conversations: list[Conversation]


class Desk:
    """What agents do with conversations."""

    def __init__(
        self,
        db: Database,
        *,
        signals: live.Signals | None = None,
        sequences: Sequences | None = None,
        hours: Hours | None = None,
        sla: timedelta = timedelta(minutes=15),
        phone_region: str = "MX",
        on_commit: Callable[[], None] = lambda: None,
        templates: Mapping[str, TemplateSettings] | None = None,
        business: Mapping[str, str] | None = None,
    ) -> None:
        self.db = db
        self.signals = signals or live.Signals()
        self.sequences = sequences
        self.hours = hours  # business hours: the SLA counts only time inside them
        self.sla = sla
        self.phone_region = phone_region
        self.on_commit = on_commit
        # WhatsApp templates for agents' replies once the lead's 24-hour window has closed.
        self.templates = templates or {}
        self.business = business or {}

    # --- agents and the API ---------------------------------------------------------------

    async def authenticate(self, token: str) -> Agent | None:
        async with UnitOfWork(self.db) as uow:
            return await uow.agents.by_token_hash(hash_token(token))

    async def add_agent(
        self,
        name: str,
        *,
        email: str | None = None,
        admin: bool = False,
        telegram_chat_id: int | None = None,
        password_hash: str | None = None,
    ) -> tuple[Agent, str]:
        """A new agent and their API token (shown once; only its hash is stored).

        Raises:
            ConflictError: another agent has the same name or e-mail (in any case).
        """
        token = new_token()
        async with UnitOfWork(self.db) as uow:
            if clash := await uow.agents.taken(name, email):
                value = name if clash == "name" else email
                raise ConflictError(f"an agent with the {clash} {value!r} already exists")
            agent = await uow.agents.add(
                Agent(
                    name=name,
                    email=email.strip().lower() if email else None,
                    role=AgentRole.ADMIN if admin else AgentRole.AGENT,
                    token_hash=hash_token(token),
                    active=True,
                    telegram_chat_id=telegram_chat_id,
                    password_hash=password_hash,
                )
            )
            await uow.commit()
        return agent, token

    # --- the queue ----------------------------------------------------------------------------

    async def queue(self, now: datetime | None = None) -> list[QueueEntry]:
        """Waiting conversations: hottest and longest waiting first."""
        now = now or utcnow()
        async with UnitOfWork(self.db) as uow:
            handoffs = await uow.handoffs.queue()
            names = {agent.id: agent.name for agent in await uow.agents.all()}
        return [self._entry(handoff, names, now) for handoff in handoffs]

    def _entry(self, handoff: Handoff, names: Mapping[int, str], now: datetime) -> QueueEntry:
        lead = handoff.conversation.lead
        return QueueEntry(
            handoff_id=handoff.id,
            conversation_id=handoff.conversation_id,
            lead_id=handoff.lead_id,
            lead_name=lead.name,
            channel=handoff.conversation.channel,
            reason=handoff.reason,
            priority=handoff.priority,
            tier=lead.tier,
            requested_at=handoff.requested_at,
            waiting_seconds=max(0, int((now - handoff.requested_at).total_seconds())),
            assigned_to=names.get(handoff.assigned_agent_id or 0),
            overdue=self.waited(handoff.requested_at, now) > self.sla,
        )

    def waited(self, since: datetime, now: datetime) -> timedelta:
        """How long a conversation has waited, counting business time only when hours are set."""
        if self.hours is None:
            return now - since
        return timedelta(seconds=self.hours.business_seconds(since, now))

    # --- one conversation ---------------------------------------------------------------------

    async def conversation(self, conversation_id: int) -> tuple[Conversation, list[Message]]:
        async with UnitOfWork(self.db) as uow:
            conversation = await self._get(uow, conversation_id)
            messages = await uow.messages.of_conversation(conversation_id, limit=200)
            return conversation, messages

    async def page(self, conversation_id: int, now: datetime | None = None) -> ConversationPage:
        """The conversation with its history and the lead's card.

        Raises:
            NotFound: no such conversation.
        """
        now = now or utcnow()
        async with UnitOfWork(self.db) as uow:
            conversation = await self._get(uow, conversation_id)
            lead = conversation.lead
            messages = await uow.messages.of_conversation(conversation_id, limit=300)
            agents = {agent.id: agent for agent in await uow.agents.all()}
            appointments = [
                a
                for a in await uow.appointments.of_lead(lead.id)
                if a.state == AppointmentState.CONFIRMED and a.starts_at >= now
            ]
            tasks = await uow.tasks.open_for_lead(lead.id)
            transfers = await uow.transfers.of_lead(lead.id)
            handoff = await uow.handoffs.latest_for(conversation_id)
            phones = await uow.leads.phones(lead.id)
        last_inbound = conversation.last_inbound_at
        window_open = conversation.channel != Channel.WHATSAPP or (
            last_inbound is not None and now - last_inbound < WHATSAPP_WINDOW
        )
        return ConversationPage(
            conversation=conversation,
            lead=lead,
            messages=messages,
            phones=phones,
            agent=agents.get(conversation.agent_id or 0),
            owner=agents.get(lead.owner_id or 0),
            handoff=handoff,
            appointments=appointments,
            tasks=tasks,
            transfers=transfers,
            agents={agent_id: agent.name for agent_id, agent in agents.items()},
            window_open=window_open,
            template_ready="agent" in self.templates,
        )

    async def claim(self, conversation_id: int, agent: Agent, address: str | None = None) -> None:
        """Take a conversation: from the queue, or straight from the bot. Of two agents taking
        one at once exactly one gets it; the other is told who did.

        The lead's owner becomes this agent unless the lead has one.

        Raises:
            NotFound: no such conversation.
            ConflictError: code "taken" (another agent holds it; `who` names them).
        """
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            conversation = await uow.conversations.locked(conversation_id)
            if conversation is None:
                raise NotFound(f"no conversation {conversation_id}", code="no_conversation")
            if conversation.state == ConversationState.AGENT:
                if conversation.agent_id == agent.id:
                    return
                holder = await uow.agents.get(conversation.agent_id or 0)
                who = holder.name if holder else "otra persona"
                raise ConflictError(f"{who} already has this conversation", code="taken", who=who)
            handoff = await uow.handoffs.open_for(conversation_id)
            if handoff is None:  # the bot has it (or it was closed): take it over
                handoff = await uow.handoffs.add(
                    Handoff(
                        conversation_id=conversation_id,
                        lead_id=conversation.lead_id,
                        reason=TAKEN_OVER,
                        priority=0,
                        state=HandoffState.WAITING,
                        requested_at=now,
                    )
                )
            if not await uow.handoffs.claim(handoff.id, agent.id, now):
                raise ConflictError("another agent took it", code="taken", who="otra persona")
            conversation.state = ConversationState.AGENT
            conversation.agent_id = agent.id
            lead = conversation.lead
            if lead.owner_id is None:
                lead.owner_id = agent.id
            if self.sequences is not None:
                await self.sequences.leave(uow, lead, "handed off", now)
            uow.audit.record(
                "conversation_claimed",
                agent_id=agent.id,
                subject=f"conversation:{conversation_id}",
                detail={"from": handoff.reason},
                address=address,
                at=now,
            )
            await uow.commit()
        log.info(
            "handoff_claimed", extra={"conversation_id": conversation_id, "agent_id": agent.id}
        )
        self.signals.changed(live.QUEUE, live.conversation(conversation_id))

    async def reply(self, conversation_id: int, agent: Agent, text: str) -> int:
        """Send the lead a message as the agent who holds the conversation; its id.

        On WhatsApp, once the lead's 24-hour window closed, the approved "agent" template goes
        instead (or the message is held with the reason, visible in the conversation).

        Raises:
            NotFound, ConflictError: no such conversation, or the agent does not hold it.
        """
        text = text.strip()
        if not text:
            raise InvalidInput("empty message", code="empty")
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            conversation = await self._held(uow, conversation_id, agent)
            values = {
                **self.business,
                "nombre": (conversation.lead.name or "").split(" ")[0],
                "asesor": agent.name,
            }
            message_id = await outbox.stage(
                uow,
                conversation,
                text,
                author=Author.AGENT,
                agent_id=agent.id,
                now=now,
                template=outbox.template_for(self.templates, "agent", values),
            )
            conversation.lead.last_activity_at = now
            await uow.commit()
        self.on_commit()
        self.signals.changed(live.conversation(conversation_id))
        return message_id

    async def transfer(
        self,
        conversation_id: int,
        agent: Agent,
        to_agent_id: int,
        reason: str,
        address: str | None = None,
    ) -> None:
        """Pass the conversation to another agent, with the reason (seed 002); both agents and
        the reason are kept on the lead's record.

        Raises:
            InvalidInput: no reason, or the other agent is unknown, inactive or oneself.
            ConflictError: the agent does not hold the conversation (admins may move any).
        """
        reason = reason.strip()
        if not reason:
            raise InvalidInput("a transfer needs a reason", code="transfer_reason")
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            conversation = await self._held(uow, conversation_id, agent)
            target = await uow.agents.get(to_agent_id)
            if target is None or not target.active or target.id == conversation.agent_id:
                raise InvalidInput("choose another active agent", code="transfer_target")
            previous = conversation.agent_id
            conversation.agent_id = target.id
            handoff = await uow.handoffs.open_for(conversation_id)
            if handoff is not None:
                handoff.agent_id = target.id
            await uow.transfers.add(
                Transfer(
                    conversation_id=conversation_id,
                    lead_id=conversation.lead_id,
                    from_agent_id=previous,
                    to_agent_id=target.id,
                    reason=reason[:1000],
                    at=now,
                )
            )
            uow.audit.record(
                "conversation_transferred",
                agent_id=agent.id,
                subject=f"conversation:{conversation_id}",
                detail={"from": previous, "to": target.id},
                address=address,
                at=now,
            )
            await uow.commit()
        log.info(
            "conversation_transferred",
            extra={"conversation_id": conversation_id, "from": previous, "to": to_agent_id},
        )
        self.signals.changed(
            live.QUEUE, live.conversation(conversation_id), live.agent(to_agent_id)
        )

    async def hand_back(
        self, conversation_id: int, agent: Agent, address: str | None = None
    ) -> None:
        """Return the conversation to the bot."""
        await self._end(conversation_id, agent, ConversationState.BOT, HANDED_BACK, address)

    async def close(
        self,
        conversation_id: int,
        agent: Agent,
        reason: str | None = None,
        address: str | None = None,
    ) -> None:
        """End the conversation, with one of the admins' reasons; the lead's next message
        opens it again with the bot.

        Raises:
            InvalidInput: a reason that is not on the list.
        """
        if reason is not None:
            async with UnitOfWork(self.db) as uow:
                labels = {r.label for r in await uow.lists.close_reasons()}
            if reason not in labels:
                raise InvalidInput("choose one of the reasons for closing", code="close_reason")
        await self._end(conversation_id, agent, ConversationState.CLOSED, reason, address)

    async def _end(
        self,
        conversation_id: int,
        agent: Agent,
        to: ConversationState,
        outcome: str | None,
        address: str | None,
    ) -> None:
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            conversation = await uow.conversations.locked(conversation_id)
            if conversation is None:
                raise NotFound(f"no conversation {conversation_id}", code="no_conversation")
            # Agents end what they hold; an admin may also dismiss a handoff still waiting.
            dismissing = (
                conversation.state == ConversationState.WAITING and agent.role == AgentRole.ADMIN
            )
            if not dismissing:
                await self._held(uow, conversation_id, agent)
            conversation.state = to
            conversation.agent_id = None
            conversation.context = {}
            await uow.handoffs.end(conversation_id, now, outcome)
            uow.audit.record(
                "conversation_closed"
                if to == ConversationState.CLOSED
                else "conversation_returned",
                agent_id=agent.id,
                subject=f"conversation:{conversation_id}",
                detail={"outcome": outcome} if outcome else {},
                address=address,
                at=now,
            )
            await uow.commit()
        log.info("handoff_ended", extra={"conversation_id": conversation_id, "state": str(to)})
        self.signals.changed(live.QUEUE, live.conversation(conversation_id))

    async def set_labels(self, conversation_id: int, agent: Agent, labels: list[str]) -> list[str]:
        """The conversation's labels, replaced (trimmed, deduplicated, at most 10 of 32)."""
        cleaned = list(
            dict.fromkeys(label.strip()[:MAX_LABEL] for label in labels if label.strip())
        )
        async with UnitOfWork(self.db) as uow:
            await self._get(uow, conversation_id)
            await uow.inbox.set_labels(conversation_id, cleaned[:MAX_LABELS])
            await uow.commit()
        self.signals.changed(live.conversation(conversation_id))
        return cleaned[:MAX_LABELS]

    async def fingerprint(self, conversation_id: int) -> str:
        """Changes whenever what an agent sees of the conversation does (for live pages)."""
        async with UnitOfWork(self.db) as uow:
            return await uow.inbox.fingerprint(conversation_id)

    # --- finding conversations ----------------------------------------------------------------

    async def mine(self, agent: Agent) -> list[Conversation]:
        async with UnitOfWork(self.db) as uow:
            return await uow.inbox.held_by(agent.id)

    async def search(self, query: str) -> list[SearchHit]:
        """Leads by name, e-mail, phone (any spelling) or the text of their messages."""
        query = query.strip()
        if len(query) < 2:
            return []
        phone = to_e164(query, self.phone_region) if sum(c.isdigit() for c in query) >= 7 else None
        async with UnitOfWork(self.db) as uow:
            leads = await uow.inbox.search(text=query, phones=spellings(phone) if phone else ())
            conversations = await uow.inbox.conversations_of([lead.id for lead in leads])
        by_lead: dict[int, list[Conversation]] = {}
        for conversation in conversations:
            by_lead.setdefault(conversation.lead_id, []).append(conversation)
        return [SearchHit(lead, by_lead.get(lead.id, [])) for lead in leads]

    # --- the lists admins edit ----------------------------------------------------------------

    async def seed_lists(self, close_reasons: list[str], canned: Mapping[str, str]) -> None:
        """A new installation's lists, from settings; never touches lists admins edited.

        Two processes starting together on an empty database both find the lists empty; the
        second one's insert then breaks a unique index, and the first one's lists stand."""
        with contextlib.suppress(IntegrityError):
            async with UnitOfWork(self.db) as uow:
                changed = False
                if not await uow.lists.close_reasons(active_only=False):
                    for n, label in enumerate(close_reasons, start=1):
                        await uow.lists.add_close_reason(
                            CloseReason(label=label, position=n, active=True)
                        )
                    changed = True
                if not await uow.lists.canned_replies():
                    for shortcut, text in canned.items():
                        await uow.lists.add_canned_reply(
                            CannedReply(shortcut=shortcut, text=text, created_at=utcnow())
                        )
                    changed = True
                if changed:
                    await uow.commit()

    async def canned_replies(self) -> list[CannedReply]:
        async with UnitOfWork(self.db) as uow:
            return await uow.lists.canned_replies()

    async def add_canned_reply(self, shortcut: str, text: str, who: Who) -> CannedReply:
        shortcut = shortcut.strip().lstrip("/").lower()
        if not shortcut or not shortcut.replace("-", "").replace("_", "").isalnum():
            raise InvalidInput("a shortcut is one word", code="canned_shortcut")
        if not text.strip():
            raise InvalidInput("a canned reply needs its text", code="canned_text")
        async with UnitOfWork(self.db) as uow:
            if any(r.shortcut == shortcut for r in await uow.lists.canned_replies()):
                raise ConflictError(f"/{shortcut} exists", code="canned_exists", shortcut=shortcut)
            reply = await uow.lists.add_canned_reply(
                CannedReply(shortcut=shortcut[:32], text=text.strip(), created_at=utcnow())
            )
            uow.audit.record(
                "canned_reply_added",
                agent_id=who.agent_id,
                subject=f"canned:{reply.id}",
                at=utcnow(),
            )
            await uow.commit()
            return reply

    async def delete_canned_reply(self, reply_id: int, who: Who) -> None:
        async with UnitOfWork(self.db) as uow:
            reply = await uow.lists.canned_reply(reply_id)
            if reply is None:
                raise NotFound(f"no canned reply {reply_id}")
            await uow.lists.delete_canned_reply(reply)
            uow.audit.record(
                "canned_reply_deleted",
                agent_id=who.agent_id,
                subject=f"canned:{reply_id}",
                at=utcnow(),
            )
            await uow.commit()

    async def close_reasons(self, *, active_only: bool = True) -> list[CloseReason]:
        async with UnitOfWork(self.db) as uow:
            return await uow.lists.close_reasons(active_only=active_only)

    async def add_close_reason(self, label: str, who: Who) -> CloseReason:
        label = label.strip()
        if not label:
            raise InvalidInput("a reason needs a text", code="reason_text")
        async with UnitOfWork(self.db) as uow:
            existing = await uow.lists.close_reasons(active_only=False)
            for reason in existing:
                if reason.label.lower() == label.lower():
                    reason.active = True
                    await uow.commit()
                    return reason
            added = await uow.lists.add_close_reason(
                CloseReason(label=label[:120], position=len(existing) + 1, active=True)
            )
            uow.audit.record(
                "close_reason_added",
                agent_id=who.agent_id,
                subject=f"reason:{added.id}",
                at=utcnow(),
            )
            await uow.commit()
            return added

    async def retire_close_reason(self, reason_id: int, who: Who) -> None:
        """Off the list for new closes; conversations closed with it keep it."""
        async with UnitOfWork(self.db) as uow:
            reason = await uow.lists.close_reason(reason_id)
            if reason is None:
                raise NotFound(f"no reason {reason_id}")
            reason.active = False
            uow.audit.record(
                "close_reason_retired",
                agent_id=who.agent_id,
                subject=f"reason:{reason_id}",
                at=utcnow(),
            )
            await uow.commit()

    # --- delivery -------------------------------------------------------------------------

    async def resend_message(self, message_id: int, agent: Agent) -> int | None:
        """`resend`, by the message's id (what the conversation page knows)."""
        async with UnitOfWork(self.db) as uow:
            item = await uow.outbox.of_message(message_id)
        if item is None:
            raise NotFound(f"no outbox row for message {message_id}")
        return await self.resend(item.id, agent)

    async def resend(self, outbox_id: int, agent: Agent) -> int | None:
        """Send again a message that failed or was held (e.g. one a crash left uncertain);
        returns its conversation's id.

        Raises:
            NotFound: no such outbox row.
            ConflictError: it is on its way or delivered, or its lead opted out.
        """
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            item = await uow.outbox.get(outbox_id)
            if item is None:
                raise NotFound(f"no outbox message {outbox_id}")
            if item.state not in (OutboxState.FAILED, OutboxState.BLOCKED):
                raise ConflictError(
                    f"the message is {item.state}: only failed or held ones", code="not_failed"
                )
            if item.last_error == outbox.OPTED_OUT:
                raise ConflictError(
                    "the lead opted out: nothing more is sent to them", code="opted_out"
                )
            uow.outbox.requeue(item, now)
            conversation_id = item.message.conversation_id if item.message else None
            await uow.commit()
        log.info("outbox_resend", extra={"outbox_id": outbox_id, "agent_id": agent.id})
        self.on_commit()
        if conversation_id is not None:
            self.signals.changed(live.conversation(conversation_id))
        return conversation_id

    async def media(self, message_id: int, n: int) -> tuple[Channel, MediaRef]:
        """The `n`-th file a lead's message carried, by reference (fetched by the caller).

        Raises:
            NotFound: no such message or file.
        """
        async with UnitOfWork(self.db) as uow:
            message = await uow.messages.get(message_id)
        if message is None or n >= len(message.media):
            raise NotFound("no such media")
        stored = message.media[n]
        return message.channel, MediaRef(stored["kind"], stored["ref"], stored.get("content_type"))

    async def outbox(self, limit: int = 200) -> OutboxReport:
        """Rows by state, and those that failed or were held back, newest first."""
        async with UnitOfWork(self.db) as uow:
            return OutboxReport(await uow.outbox.count_by_state(), await uow.outbox.failed(limit))

    @staticmethod
    async def _get(uow: UnitOfWork, conversation_id: int) -> Conversation:
        conversation = await uow.conversations.get(conversation_id)
        if conversation is None:
            raise NotFound(f"no conversation {conversation_id}", code="no_conversation")
        return conversation

    async def _held(self, uow: UnitOfWork, conversation_id: int, agent: Agent) -> Conversation:
        conversation = await self._get(uow, conversation_id)
        if conversation.state != ConversationState.AGENT:
            raise ConflictError(
                f"conversation is {conversation.state}, not with an agent: claim it first",
                code="claim_first",
            )
        if conversation.agent_id != agent.id and agent.role != AgentRole.ADMIN:
            holder = await uow.agents.get(conversation.agent_id or 0)
            who = holder.name if holder else "otra persona"
            raise ConflictError("another agent owns this conversation", code="taken", who=who)
        return conversation
