"""The CRM's queries: pipelines and stages, stage history, activities, deals, the reasons for
losing, the score explained."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    Activity,
    Deal,
    LostReason,
    Pipeline,
    ScoreEvent,
    Stage,
    StageChange,
)


class Crm:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- pipelines ------------------------------------------------------------------------

    async def pipelines(self) -> list[Pipeline]:
        statement = select(Pipeline).order_by(Pipeline.position, Pipeline.id)
        return list((await self.session.execute(statement)).scalars())

    async def pipeline(self, key: str) -> Pipeline | None:
        statement = select(Pipeline).where(Pipeline.key == key)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def stages(self, pipeline_id: int) -> list[Stage]:
        statement = (
            select(Stage).where(Stage.pipeline_id == pipeline_id).order_by(Stage.position, Stage.id)
        )
        return list((await self.session.execute(statement)).scalars())

    async def stage(self, stage_id: int) -> Stage | None:
        return await self.session.get(Stage, stage_id)

    async def add(self, row: object) -> None:
        """A new pipeline, stage, lost reason, activity, deal... (given its id on return)."""
        self.session.add(row)
        await self.session.flush()

    # --- the reasons for losing ---------------------------------------------------------------

    async def lost_reasons(self, *, active_only: bool = True) -> list[LostReason]:
        statement = select(LostReason).order_by(LostReason.position, LostReason.id)
        if active_only:
            statement = statement.where(LostReason.active.is_(True))
        return list((await self.session.execute(statement)).scalars())

    async def lost_reason(self, reason_id: int) -> LostReason | None:
        return await self.session.get(LostReason, reason_id)

    # --- history ------------------------------------------------------------------------------

    def record_stage_change(self, change: StageChange) -> None:
        self.session.add(change)

    def record_activity(self, activity: Activity) -> None:
        self.session.add(activity)

    def record_score(self, event: ScoreEvent) -> None:
        self.session.add(event)

    async def stage_changes(self, lead_id: int) -> list[StageChange]:
        statement = (
            select(StageChange)
            .where(StageChange.lead_id == lead_id)
            .order_by(StageChange.at.desc(), StageChange.id.desc())
        )
        return list((await self.session.execute(statement)).scalars())

    async def activities(self, lead_id: int) -> list[Activity]:
        statement = (
            select(Activity)
            .where(Activity.lead_id == lead_id)
            .order_by(Activity.occurred_at.desc(), Activity.id.desc())
        )
        return list((await self.session.execute(statement)).scalars())

    async def score_events(self, lead_id: int) -> list[ScoreEvent]:
        """The rules that moved the lead's score, in the order they did."""
        statement = (
            select(ScoreEvent)
            .where(ScoreEvent.lead_id == lead_id)
            .order_by(ScoreEvent.at, ScoreEvent.id)
        )
        return list((await self.session.execute(statement)).scalars())

    async def count_scored(self, lead_id: int, rule: str, since: datetime) -> int:
        await self.session.flush()
        statement = select(func.count()).where(
            ScoreEvent.lead_id == lead_id, ScoreEvent.rule == rule, ScoreEvent.at >= since
        )
        return int((await self.session.execute(statement)).scalar_one())

    # --- deals --------------------------------------------------------------------------------

    async def deals(self, lead_id: int) -> list[Deal]:
        statement = select(Deal).where(Deal.lead_id == lead_id).order_by(Deal.opened_at.desc())
        return list((await self.session.execute(statement)).scalars())

    async def deal(self, deal_id: int) -> Deal | None:
        return await self.session.get(Deal, deal_id)
