"""Queries of the scripts: published versions, the shared draft, and what inbound messages
were understood as (how often each intent matched, what was not understood)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from bot.core.model import Direction
from storage.models import Message, ScriptDraft, ScriptVersion

DRAFT_ID = 1
NONE = "none"


@dataclass(frozen=True, slots=True)
class Inbound:
    """An inbound message as the bot understood it when it arrived."""

    id: int
    conversation_id: int
    text: str
    intent: str | None
    confidence: float | None
    at: datetime


class Scripts:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def live_number(self) -> int | None:
        """The live version's number (an index lookup: what every process polls)."""
        return (await self.session.execute(select(func.max(ScriptVersion.number)))).scalar()

    async def version(self, number: int) -> ScriptVersion | None:
        return await self.session.get(ScriptVersion, number)

    async def live(self) -> ScriptVersion | None:
        statement = select(ScriptVersion).order_by(ScriptVersion.number.desc()).limit(1)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def versions(self, limit: int = 100) -> list[ScriptVersion]:
        """Newest first, without their bodies."""
        statement = (
            select(ScriptVersion)
            .options(defer(ScriptVersion.body), defer(ScriptVersion.trained))
            .order_by(ScriptVersion.number.desc())
            .limit(limit)
        )
        return list((await self.session.execute(statement)).scalars())

    def add(self, version: ScriptVersion) -> None:
        """Insert `version`; a number taken meanwhile fails at flush (IntegrityError)."""
        self.session.add(version)

    async def draft(self) -> ScriptDraft | None:
        return await self.session.get(ScriptDraft, DRAFT_ID)

    async def save_draft(self, body: str, base: int, agent_id: int | None, at: datetime) -> None:
        draft = await self.draft()
        if draft is None:
            self.session.add(
                ScriptDraft(id=DRAFT_ID, body=body, base=base, updated_by=agent_id, updated_at=at)
            )
        else:
            draft.body, draft.base, draft.updated_by, draft.updated_at = body, base, agent_id, at
        await self.session.flush()

    async def drop_draft(self) -> None:
        await self.session.execute(delete(ScriptDraft).where(ScriptDraft.id == DRAFT_ID))

    async def intent_counts(self, since: datetime) -> dict[str, int]:
        """Inbound messages since `since` by the intent they were understood as."""
        statement = (
            select(Message.intent, func.count())
            .where(
                Message.direction == Direction.IN,
                Message.created_at >= since,
                Message.intent.is_not(None),
            )
            .group_by(Message.intent)
        )
        return {str(intent): int(n) for intent, n in (await self.session.execute(statement)).all()}

    async def inbound(
        self,
        since: datetime,
        *,
        limit: int,
        not_understood_below: float | None = None,
    ) -> list[Inbound]:
        """Inbound text messages since `since`, newest first; with `not_understood_below`,
        only those understood as `none` or with a confidence below it."""
        statement = select(
            Message.id,
            Message.conversation_id,
            Message.text,
            Message.intent,
            Message.confidence,
            Message.created_at,
        ).where(
            Message.direction == Direction.IN,
            Message.created_at >= since,
            Message.text != "",
            Message.intent.is_not(None),
        )
        if not_understood_below is not None:
            statement = statement.where(
                or_(Message.intent == NONE, Message.confidence < not_understood_below)
            )
        statement = statement.order_by(Message.id.desc()).limit(limit)
        return [Inbound(*row) for row in (await self.session.execute(statement)).all()]
