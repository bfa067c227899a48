"""Queries of the people's side: agents' accounts, invites, transfers, the audit log, and the
lists admins edit (canned replies, reasons for closing)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.model import ConversationState, HandoffState
from storage.models import (
    Agent,
    AuditEvent,
    CannedReply,
    ChannelIdentity,
    CloseReason,
    Conversation,
    Handoff,
    Invite,
    Lead,
    LeadPhone,
    Message,
    Transfer,
)


class Accounts:
    """Agents as people who sign in, are available, and get conversations assigned."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_email(self, email: str) -> Agent | None:
        statement = select(Agent).where(func.lower(Agent.email) == email.strip().lower())
        return (await self.session.execute(statement)).scalars().first()

    async def by_telegram_link(self, code_hash: str, now: datetime) -> Agent | None:
        statement = select(Agent).where(
            Agent.telegram_link_hash == code_hash,
            Agent.telegram_link_expires_at > now,
            Agent.active.is_(True),
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def load(self, agent_ids: Sequence[int]) -> dict[int, int]:
        """Conversations each agent holds or has been assigned and not yet claimed."""
        held = (
            select(Conversation.agent_id, func.count())
            .where(
                Conversation.agent_id.in_(list(agent_ids)),
                Conversation.state == ConversationState.AGENT,
            )
            .group_by(Conversation.agent_id)
        )
        assigned = (
            select(Handoff.assigned_agent_id, func.count())
            .where(
                Handoff.assigned_agent_id.in_(list(agent_ids)),
                Handoff.state == HandoffState.WAITING,
            )
            .group_by(Handoff.assigned_agent_id)
        )
        counts: dict[int, int] = dict.fromkeys(agent_ids, 0)
        for agent_id, n in await self.session.execute(union_all(held, assigned)):
            if agent_id is not None:
                counts[agent_id] += int(n)
        return counts

    async def assignable(self) -> list[Agent]:
        """Active, available agents, the one assigned longest ago (or never) first."""
        statement = (
            select(Agent)
            .where(Agent.active.is_(True), Agent.available.is_(True))
            .order_by(Agent.last_assigned_at.asc().nulls_first(), Agent.id)
        )
        return list((await self.session.execute(statement)).scalars())


class Invites:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, invite: Invite) -> Invite:
        self.session.add(invite)
        await self.session.flush()
        return invite

    async def usable(self, token_hash: str, now: datetime) -> Invite | None:
        statement = (
            select(Invite)
            .where(
                Invite.token_hash == token_hash, Invite.used_at.is_(None), Invite.expires_at > now
            )
            .with_for_update()
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def open(self, now: datetime) -> list[Invite]:
        statement = (
            select(Invite)
            .where(Invite.used_at.is_(None), Invite.expires_at > now)
            .order_by(Invite.created_at.desc())
        )
        return list((await self.session.execute(statement)).scalars())


class Transfers:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, transfer: Transfer) -> Transfer:
        self.session.add(transfer)
        await self.session.flush()
        return transfer

    async def of_lead(self, lead_id: int) -> list[Transfer]:
        statement = select(Transfer).where(Transfer.lead_id == lead_id).order_by(Transfer.id)
        return list((await self.session.execute(statement)).scalars())


class Audit:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def record(
        self,
        action: str,
        *,
        agent_id: int | None,
        subject: str | None = None,
        detail: dict[str, Any] | None = None,
        address: str | None = None,
        at: datetime,
    ) -> None:
        self.session.add(
            AuditEvent(
                at=at,
                agent_id=agent_id,
                action=action,
                subject=subject,
                detail=detail or {},
                address=address,
            )
        )

    async def events(
        self,
        *,
        action: str | None = None,
        agent_id: int | None = None,
        since: datetime | None = None,
        limit: int = 200,
    ) -> list[AuditEvent]:
        statement = select(AuditEvent)
        if action:
            statement = statement.where(AuditEvent.action == action)
        if agent_id is not None:
            statement = statement.where(AuditEvent.agent_id == agent_id)
        if since is not None:
            statement = statement.where(AuditEvent.at >= since)
        statement = statement.order_by(AuditEvent.id.desc()).limit(limit)
        return list((await self.session.execute(statement)).scalars())

    async def actions(self) -> list[str]:
        statement = select(AuditEvent.action).distinct().order_by(AuditEvent.action)
        return list((await self.session.execute(statement)).scalars())


class Lists:
    """The lists admins edit: canned replies and the reasons for closing a conversation."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def canned_replies(self) -> list[CannedReply]:
        statement = select(CannedReply).order_by(CannedReply.shortcut)
        return list((await self.session.execute(statement)).scalars())

    async def canned_reply(self, reply_id: int) -> CannedReply | None:
        return await self.session.get(CannedReply, reply_id)

    async def add_canned_reply(self, reply: CannedReply) -> CannedReply:
        self.session.add(reply)
        await self.session.flush()
        return reply

    async def delete_canned_reply(self, reply: CannedReply) -> None:
        await self.session.delete(reply)

    async def close_reasons(self, *, active_only: bool = True) -> list[CloseReason]:
        statement = select(CloseReason).order_by(CloseReason.position, CloseReason.id)
        if active_only:
            statement = statement.where(CloseReason.active.is_(True))
        return list((await self.session.execute(statement)).scalars())

    async def close_reason(self, reason_id: int) -> CloseReason | None:
        return await self.session.get(CloseReason, reason_id)

    async def add_close_reason(self, reason: CloseReason) -> CloseReason:
        self.session.add(reason)
        await self.session.flush()
        return reason


class Inbox:
    """Conversations as agents look for them: theirs, and a search over leads and messages."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def held_by(self, agent_id: int) -> list[Conversation]:
        statement = (
            select(Conversation)
            .where(
                Conversation.agent_id == agent_id,
                Conversation.state == ConversationState.AGENT,
            )
            .order_by(Conversation.last_inbound_at.desc().nulls_last())
        )
        return list((await self.session.execute(statement)).scalars().unique())

    async def search(self, *, text: str, phones: Sequence[str], limit: int = 30) -> list[Lead]:
        """Leads whose name, phone or messages match; most recently active first."""
        pattern = f"%{_escape(text)}%"
        by_message = (
            select(Conversation.lead_id)
            .join(Message, Message.conversation_id == Conversation.id)
            .where(Message.text.ilike(pattern, escape="\\"))
        )
        by_phone = select(LeadPhone.lead_id).where(LeadPhone.e164.in_(list(phones)))
        by_identity = select(ChannelIdentity.lead_id).where(
            ChannelIdentity.display_name.ilike(pattern, escape="\\")
        )
        statement = (
            select(Lead)
            .where(
                or_(
                    Lead.name.ilike(pattern, escape="\\"),
                    Lead.email.ilike(pattern, escape="\\"),
                    Lead.id.in_(by_phone),
                    Lead.id.in_(by_identity),
                    Lead.id.in_(by_message),
                )
            )
            .order_by(Lead.last_activity_at.desc())
            .limit(limit)
        )
        return list((await self.session.execute(statement)).scalars())

    async def conversations_of(self, lead_ids: Sequence[int]) -> list[Conversation]:
        statement = (
            select(Conversation)
            .where(Conversation.lead_id.in_(list(lead_ids)))
            .order_by(Conversation.id)
        )
        return list((await self.session.execute(statement)).scalars().unique())

    async def fingerprint(self, conversation_id: int) -> str:
        """A short string that changes whenever the conversation page would: its state, holder,
        labels, messages, and their delivery statuses."""
        state = await self.session.execute(
            select(Conversation.state, Conversation.agent_id, Conversation.labels).where(
                Conversation.id == conversation_id
            )
        )
        head = state.first()
        counts = await self.session.execute(
            select(Message.status, func.count(), func.max(Message.id))
            .where(Message.conversation_id == conversation_id)
            .group_by(Message.status)
            .order_by(Message.status)
        )
        parts = [str(tuple(head)) if head else "-"]
        parts += [f"{status}:{n}:{last}" for status, n, last in counts]
        return "|".join(parts)

    async def set_labels(self, conversation_id: int, labels: list[str]) -> None:
        await self.session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(labels=labels)
            .execution_options(synchronize_session=False)
        )


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
