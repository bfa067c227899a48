"""Pipelines as data: seeded from the config's presets, edited by admins, and moving a lead
from stage to stage (a reason for lost stages, the post-sale rule for won ones, sequences
stopped and started as before)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from bot.core.crm import Outcome, PipelineSpec, StageSpec, check_move, preset
from bot.core.errors import InvalidInput, NotFound
from bot.core.model import utcnow
from bot.core.scoring import BOUGHT, Scoring
from bot.crm import record
from bot.followup.sequences import Sequences
from bot.settings import PipelineSettings
from storage.db import Database
from storage.models import Lead, LostReason, Pipeline, Stage
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

NAME_MAX = 120


@dataclass(frozen=True, slots=True)
class Moved:
    lead_id: int
    from_stage: str
    to_stage: str
    outcome: Outcome
    reason: str | None


def presets(settings: PipelineSettings) -> list[PipelineSpec]:
    """The config's presets as pipelines (what a new installation starts with)."""
    found = []
    for key, stages in settings.presets.items():
        details = settings.details.get(key)
        described = details.stages if details else {}
        found.append(
            preset(
                key,
                details.name if details else key,
                stages,
                names={stage: d.name for stage, d in described.items()},
                won=settings.won.get(key, []),
                lost=[stage for stage, d in described.items() if d.lost],
                cadences={stage: d.cadence_days for stage, d in described.items()},
            )
        )
    return found


def spec(pipeline: Pipeline, stages: list[Stage]) -> PipelineSpec:
    return PipelineSpec(
        pipeline.key,
        pipeline.name,
        tuple(
            StageSpec(
                key=s.key,
                name=s.name,
                position=s.position,
                outcome=Outcome(s.outcome),
                cadence_days=s.cadence_days,
                reason_required=s.reason_required,
            )
            for s in stages
        ),
    )


class Pipelines:
    def __init__(
        self,
        db: Database,
        sequences: Sequences,
        scoring: Scoring,
        settings: PipelineSettings,
    ) -> None:
        self.db = db
        self.sequences = sequences
        self.scoring = scoring
        self.settings = settings
        self.default = settings.preset

    async def seed(self) -> None:
        """Presets not in the database yet, and the reasons for losing when there are none.
        What admins changed since is left alone.

        Two processes starting together on an empty database (`serve --workers`, replicas)
        both find nothing and both seed; the second one's insert then breaks a unique index,
        and the first one's rows stand."""
        with contextlib.suppress(IntegrityError):
            await self._seed()

    async def _seed(self) -> None:
        async with UnitOfWork(self.db) as uow:
            known = {p.key for p in await uow.crm.pipelines()}
            for position, found in enumerate(presets(self.settings)):
                if found.key in known:
                    continue
                pipeline = Pipeline(key=found.key, name=found.name, position=position)
                await uow.crm.add(pipeline)
                for stage in found.stages:
                    await uow.crm.add(
                        Stage(
                            pipeline_id=pipeline.id,
                            key=stage.key,
                            name=stage.name,
                            position=stage.position,
                            outcome=stage.outcome,
                            cadence_days=stage.cadence_days,
                            reason_required=stage.reason_required,
                        )
                    )
                log.info("pipeline_seeded", extra={"pipeline": found.key})
            if not await uow.crm.lost_reasons(active_only=False):
                for position, label in enumerate(self.settings.lost_reasons):
                    await uow.crm.add(LostReason(label=label, position=position, active=True))
            await uow.commit()

    async def all(self) -> list[PipelineSpec]:
        async with UnitOfWork(self.db) as uow:
            return [spec(p, await uow.crm.stages(p.id)) for p in await uow.crm.pipelines()]

    async def stage_ids(self) -> dict[tuple[str, str], int]:
        """Each stage's row id by (pipeline key, stage key): what admins edit."""
        async with UnitOfWork(self.db) as uow:
            return {
                (p.key, s.key): s.id
                for p in await uow.crm.pipelines()
                for s in await uow.crm.stages(p.id)
            }

    async def of(self, uow: UnitOfWork, lead: Lead) -> PipelineSpec:
        """The pipeline the lead's stage belongs to (the configured one when it names none).

        Raises:
            NotFound: the pipeline is not in the database (not seeded).
        """
        key = lead.pipeline or self.default
        pipeline = await uow.crm.pipeline(key)
        if pipeline is None:
            raise NotFound(f"no pipeline {key}", code="no_pipeline")
        return spec(pipeline, await uow.crm.stages(pipeline.id))

    async def stage_name(self, lead: Lead) -> str:
        """The name people read for the lead's stage; its key when no pipeline has it."""
        async with UnitOfWork(self.db) as uow:
            try:
                stage = (await self.of(uow, lead)).stage(lead.stage)
            except NotFound:
                stage = None
        return stage.name if stage else lead.stage

    async def lost_reasons(self, *, active_only: bool = True) -> list[LostReason]:
        async with UnitOfWork(self.db) as uow:
            return await uow.crm.lost_reasons(active_only=active_only)

    async def move(
        self,
        lead_id: int,
        stage: str,
        *,
        agent_id: int | None = None,
        reason: str | None = None,
    ) -> Moved:
        """Move the lead to `stage` of its pipeline.

        Raises:
            NotFound: no such lead. InvalidInput: an unknown stage, or a lost stage without
                one of the reasons (codes "stage", "lost_reason").
        """
        async with UnitOfWork(self.db) as uow:
            lead = await uow.leads.locked(lead_id)
            if lead is None:
                raise NotFound(f"no lead {lead_id}", code="no_lead")
            moved = await self.move_in(uow, lead, stage, agent_id=agent_id, reason=reason)
            await uow.commit()
        return moved

    async def move_in(
        self,
        uow: UnitOfWork,
        lead: Lead,
        stage: str,
        *,
        agent_id: int | None = None,
        reason: str | None = None,
    ) -> Moved:
        """`move` inside the caller's unit of work."""
        now = utcnow()
        pipeline = await self.of(uow, lead)
        reasons = [r.label for r in await uow.crm.lost_reasons()]
        checked = check_move(pipeline, stage, reason, reasons)
        before = lead.stage
        if before == checked.stage.key:
            return Moved(lead.id, before, before, checked.stage.outcome, None)
        if lead.pipeline is None:
            lead.pipeline = pipeline.key
        record.stage_entered(
            uow, lead, checked.stage.key, now, agent_id=agent_id, reason=checked.reason
        )
        lead.lost_reason = checked.reason
        if checked.stage.outcome == Outcome.WON and before not in pipeline.won:
            record.rescore(uow, lead, self.scoring, BOUGHT, now)
        await self.sequences.leave(uow, lead, "stage changed", now)
        await self.sequences.enter(uow, lead, now, stage=checked.stage.key)
        await record.emit(
            uow,
            "lead.stage_changed",
            {
                "lead": record.lead_data(lead),
                "from": before,
                "to": checked.stage.key,
                "outcome": checked.stage.outcome,
                "reason": checked.reason,
                "agent_id": agent_id,
            },
            now,
        )
        log.info(
            "stage_changed",
            extra={"lead_id": lead.id, "from": before, "to": checked.stage.key},
        )
        return Moved(lead.id, before, checked.stage.key, checked.stage.outcome, checked.reason)

    # --- admins edit the pipelines and the reasons ---------------------------------------------

    async def edit_stage(
        self, stage_id: int, *, name: str, cadence_days: int | None, agent_id: int | None
    ) -> None:
        """Rename a stage, change its follow-up cadence.

        Raises:
            NotFound: no such stage. InvalidInput: an empty or long name, a cadence < 1.
        """
        name = name.strip()
        if not name or len(name) > NAME_MAX:
            raise InvalidInput("the stage needs a name", code="stage_name")
        if cadence_days is not None and not 1 <= cadence_days <= 366:
            raise InvalidInput("cadence_days must be 1-366", code="cadence")
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            stage = await uow.crm.stage(stage_id)
            if stage is None:
                raise NotFound(f"no stage {stage_id}")
            stage.name, stage.cadence_days = name, cadence_days
            uow.audit.record(
                "stage_edited",
                agent_id=agent_id,
                subject=f"stage:{stage_id}",
                detail={"name": name, "cadence_days": cadence_days},
                at=now,
            )
            await uow.commit()

    async def add_lost_reason(self, label: str, agent_id: int) -> None:
        label = label.strip()
        if not label or len(label) > NAME_MAX:
            raise InvalidInput("reason_text", code="reason_text")
        async with UnitOfWork(self.db) as uow:
            found = await uow.crm.lost_reasons(active_only=False)
            existing = next((r for r in found if r.label.lower() == label.lower()), None)
            if existing is not None:
                existing.active = True
            else:
                position = max((r.position for r in found), default=-1) + 1
                await uow.crm.add(LostReason(label=label, position=position, active=True))
            uow.audit.record(
                "lost_reason_added", agent_id=agent_id, detail={"label": label}, at=utcnow()
            )
            await uow.commit()

    async def retire_lost_reason(self, reason_id: int, agent_id: int) -> None:
        async with UnitOfWork(self.db) as uow:
            reason = await uow.crm.lost_reason(reason_id)
            if reason is None:
                raise NotFound(f"no reason {reason_id}")
            reason.active = False
            uow.audit.record(
                "lost_reason_retired",
                agent_id=agent_id,
                subject=f"lost_reason:{reason_id}",
                at=utcnow(),
            )
            await uow.commit()
