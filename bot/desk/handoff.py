"""The agents' side of a handoff: the queue, claiming a conversation, replying, giving it back.

A handoff is a conversation state (Chatwoot's "pending" idea), not a second system: while a
conversation waits for an agent or is with one, the engine stores the lead's messages and the
bot stays silent.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from bot.core.channel import MediaRef
from bot.core.errors import ConflictError, NotFound
from bot.core.model import AgentRole, Author, Channel, ConversationState, OutboxState, utcnow
from bot.delivery import outbox
from bot.settings import TemplateSettings
from storage.db import Database
from storage.models import Agent, Conversation, Message, OutboxItem
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class OutboxReport:
    counts: dict[str, int]
    failed: list[OutboxItem]


class Desk:
    """What agents do with conversations; every change is one transaction."""

    def __init__(
        self,
        db: Database,
        *,
        on_commit: Callable[[], None] = lambda: None,
        templates: Mapping[str, TemplateSettings] | None = None,
        business: Mapping[str, str] | None = None,
    ) -> None:
        self.db = db
        self.on_commit = on_commit
        # WhatsApp templates for agents' replies once the lead's 24-hour window has closed.
        self.templates = templates or {}
        self.business = business or {}

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
    ) -> tuple[Agent, str]:
        """A new agent and their API token (shown once; only its hash is stored)."""
        token = new_token()
        async with UnitOfWork(self.db) as uow:
            agent = await uow.agents.add(
                Agent(
                    name=name,
                    email=email,
                    role=AgentRole.ADMIN if admin else AgentRole.AGENT,
                    token_hash=hash_token(token),
                    active=True,
                    telegram_chat_id=telegram_chat_id,
                )
            )
            await uow.commit()
        return agent, token

    async def queue(self, now: datetime | None = None) -> list[QueueEntry]:
        now = now or utcnow()
        async with UnitOfWork(self.db) as uow:
            entries = []
            for handoff in await uow.handoffs.queue():
                lead = handoff.conversation.lead
                entries.append(
                    QueueEntry(
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
                    )
                )
            return entries

    async def conversation(self, conversation_id: int) -> tuple[Conversation, list[Message]]:
        async with UnitOfWork(self.db) as uow:
            conversation = await self._get(uow, conversation_id)
            messages = await uow.messages.of_conversation(conversation_id, limit=200)
            return conversation, messages

    async def claim(self, conversation_id: int, agent: Agent) -> None:
        """Take a waiting conversation. Of two agents claiming at once, exactly one wins.

        Raises:
            NotFound: no such conversation.
            ConflictError: it is not waiting (someone else took it, or it was never handed off).
        """
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            await self._get(uow, conversation_id)
            handoff = await uow.handoffs.open_for(conversation_id)
            won = handoff is not None and await uow.handoffs.claim(handoff.id, agent.id, now)
            if not won:
                raise ConflictError("conversation is not waiting (another agent took it?)")
            moved = await uow.conversations.move(
                conversation_id,
                ConversationState.AGENT,
                allowed_from=[ConversationState.WAITING],
                agent_id=agent.id,
            )
            if not moved:
                raise ConflictError("conversation is no longer waiting")
            await uow.commit()
        log.info(
            "handoff_claimed", extra={"conversation_id": conversation_id, "agent_id": agent.id}
        )

    async def reply(self, conversation_id: int, agent: Agent, text: str) -> int:
        """Send the lead a message as the agent who owns the conversation.

        Raises:
            NotFound, ConflictError: no such conversation, or the agent does not own it.
        """
        text = text.strip()
        if not text:
            raise ConflictError("empty message")
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            conversation = await self._owned(uow, conversation_id, agent)
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
            await uow.commit()
        self.on_commit()
        return message_id

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
                raise ConflictError(f"the message is {item.state}: only failed or held ones")
            if item.last_error == outbox.OPTED_OUT:
                raise ConflictError("the lead opted out: nothing more is sent to them")
            uow.outbox.requeue(item, now)
            conversation_id = item.message.conversation_id if item.message else None
            await uow.commit()
        log.info("outbox_resend", extra={"outbox_id": outbox_id, "agent_id": agent.id})
        self.on_commit()
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

    async def hand_back(self, conversation_id: int, agent: Agent) -> None:
        """Return the conversation to the bot."""
        await self._end(conversation_id, agent, ConversationState.BOT)

    async def close(self, conversation_id: int, agent: Agent) -> None:
        """End the conversation; the lead's next message opens it again with the bot."""
        await self._end(conversation_id, agent, ConversationState.CLOSED)

    async def _end(self, conversation_id: int, agent: Agent, to: ConversationState) -> None:
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            conversation = await self._get(uow, conversation_id)
            # Agents end what they own; an admin may also dismiss a handoff still waiting.
            dismissing = (
                conversation.state == ConversationState.WAITING and agent.role == AgentRole.ADMIN
            )
            if not dismissing:
                await self._owned(uow, conversation_id, agent)
            conversation.state = to
            conversation.agent_id = None
            conversation.context = {}
            await uow.handoffs.end(conversation_id, now)
            await uow.commit()
        log.info("handoff_ended", extra={"conversation_id": conversation_id, "state": str(to)})

    @staticmethod
    async def _get(uow: UnitOfWork, conversation_id: int) -> Conversation:
        conversation = await uow.conversations.get(conversation_id)
        if conversation is None:
            raise NotFound(f"no conversation {conversation_id}")
        return conversation

    async def _owned(self, uow: UnitOfWork, conversation_id: int, agent: Agent) -> Conversation:
        conversation = await self._get(uow, conversation_id)
        if conversation.state != ConversationState.AGENT:
            raise ConflictError(
                f"conversation is {conversation.state}, not with an agent: claim it first"
            )
        if conversation.agent_id != agent.id and agent.role != AgentRole.ADMIN:
            raise ConflictError("another agent owns this conversation")
        return conversation
