"""The CRM's queries: pipelines and stages, stage history, activities, deals, the reasons for
losing, the score explained."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.crm import NO_OWNER, LeadFilter
from bot.core.model import ActionState, AppointmentState, Direction
from bot.core.phones import MOBILE_MARKERS
from storage.models import (
    Activity,
    Appointment,
    Base,
    Conversation,
    CustomField,
    Deal,
    Lead,
    LeadPhone,
    LostReason,
    Message,
    Pipeline,
    SavedFilter,
    ScheduledAction,
    ScoreEvent,
    Stage,
    StageChange,
    Task,
    Transfer,
)


@dataclass(frozen=True, slots=True)
class Window:
    """The filter's dates as instants (its days begin in the business time zone)."""

    created_after: datetime | None = None
    created_before: datetime | None = None
    now: datetime | None = None


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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

    # --- the lead list ------------------------------------------------------------------------

    def _where(self, f: LeadFilter, window: Window) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if f.stage:
            where.append(Lead.stage == f.stage)
        if f.tier:
            where.append(Lead.tier == f.tier)
        if f.owner_id is not None:
            where.append(
                Lead.owner_id.is_(None) if f.owner_id == NO_OWNER else Lead.owner_id == f.owner_id
            )
        if f.source:
            where.append(Lead.source == f.source)
        if f.tag:
            where.append(self._tagged(f.tag))
        if f.idle_days is not None and window.now is not None:
            where.append(Lead.last_activity_at < window.now - timedelta(days=f.idle_days))
        if window.created_after is not None:
            where.append(Lead.first_contact_at >= window.created_after)
        if window.created_before is not None:
            where.append(Lead.first_contact_at < window.created_before)
        if f.text:
            pattern = f"%{_escape(f.text)}%"
            where.append(
                or_(
                    Lead.name.ilike(pattern, escape="\\"),
                    Lead.email.ilike(pattern, escape="\\"),
                )
            )
        return where

    def _tagged(self, tag: str) -> ColumnElement[bool]:
        if self.session.get_bind().dialect.name == "postgresql":
            return type_coerce(Lead.tags, JSONB).contains([tag])
        each = func.json_each(Lead.tags).table_valued("value")
        return exists(select(literal(1)).select_from(each).where(each.c.value == tag))

    @staticmethod
    def _sorted(statement: Select[Any], sort: str) -> Select[Any]:
        match sort:
            case "score":
                return statement.order_by(Lead.score.desc(), Lead.id.desc())
            case "created":
                return statement.order_by(Lead.first_contact_at.desc(), Lead.id.desc())
            case "name":
                return statement.order_by(Lead.name.asc().nulls_last(), Lead.id)
            case "idle":
                return statement.order_by(Lead.last_activity_at.asc(), Lead.id)
        return statement.order_by(Lead.last_activity_at.desc(), Lead.id.desc())

    async def lead_list(
        self, f: LeadFilter, window: Window, *, everything: bool = False
    ) -> tuple[list[Lead], int]:
        """One page of the leads the filter picks, and how many it picks in all
        (`everything`: every one, for the export)."""
        where = self._where(f, window)
        statement = self._sorted(select(Lead).where(*where), f.sort)
        if not everything:
            statement = statement.limit(f.per_page).offset(f.offset)
        leads = list((await self.session.execute(statement)).scalars())
        if everything:
            return leads, len(leads)
        total = (await self.session.execute(select(func.count(Lead.id)).where(*where))).scalar_one()
        return leads, int(total)

    async def by_ids(self, ids: Sequence[int]) -> list[Lead]:
        statement = select(Lead).where(Lead.id.in_(list(ids))).order_by(Lead.id)
        return list((await self.session.execute(statement)).scalars())

    async def in_stage(self, stage: str, pipeline: str, default: bool, limit: int) -> list[Lead]:
        """A board column: the stage's leads in the pipeline, hottest first."""
        in_pipeline = (
            or_(Lead.pipeline == pipeline, Lead.pipeline.is_(None))
            if default
            else Lead.pipeline == pipeline
        )
        statement = (
            select(Lead)
            .where(Lead.stage == stage, in_pipeline)
            .order_by(Lead.score.desc(), Lead.id.desc())
            .limit(limit)
        )
        return list((await self.session.execute(statement)).scalars())

    async def due_by_cadence(
        self, default_pipeline: str, now: datetime, limit: int
    ) -> list[tuple[Lead, int]]:
        """Leads whose stage has a follow-up cadence (seed 002: Apartado every 1–2 days) and
        no activity for that long, with no open task yet, and the cadence in days.

        One query per stage with a cadence (a handful), so the date arithmetic stays in Python
        and the SQL is the same on SQLite and PostgreSQL.
        """
        stages = (
            await self.session.execute(
                select(Pipeline.key, Stage.key, Stage.cadence_days)
                .join(Stage, Stage.pipeline_id == Pipeline.id)
                .where(Stage.cadence_days.is_not(None), Stage.outcome != "lost")
                .order_by(Pipeline.position, Stage.position)
            )
        ).all()
        open_task = select(Task.id).where(Task.lead_id == Lead.id, Task.done_at.is_(None)).exists()
        due: list[tuple[Lead, int]] = []
        for pipeline, stage, cadence in stages:
            days = cadence or 0  # never None: the query keeps stages with a cadence
            in_pipeline = (
                or_(Lead.pipeline == pipeline, Lead.pipeline.is_(None))
                if pipeline == default_pipeline
                else Lead.pipeline == pipeline
            )
            statement = (
                select(Lead)
                .where(
                    Lead.stage == stage,
                    in_pipeline,
                    Lead.opted_out_at.is_(None),
                    Lead.last_activity_at < now - timedelta(days=days),
                    ~open_task,
                )
                .order_by(Lead.last_activity_at)
                .limit(limit - len(due))
            )
            due.extend((lead, days) for lead in (await self.session.execute(statement)).scalars())
            if len(due) >= limit:
                break
        return due

    async def sources(self) -> list[str]:
        statement = select(Lead.source).where(Lead.source.is_not(None)).distinct()
        return sorted(str(s) for s in (await self.session.execute(statement)).scalars())

    # --- what the lead page shows ---------------------------------------------------------------

    async def messages_of(self, lead_id: int, limit: int = 200) -> list[Message]:
        """The lead's latest messages on every channel, newest first."""
        conversations = select(Conversation.id).where(Conversation.lead_id == lead_id)
        statement = (
            select(Message)
            .where(Message.conversation_id.in_(conversations.scalar_subquery()))
            .order_by(Message.id.desc())
            .limit(limit)
        )
        return list((await self.session.execute(statement)).scalars())

    async def objections_of(self, lead_id: int) -> list[tuple[str, int, datetime]]:
        """(intent, times, last time) of each objection the lead raised, on every channel,
        most raised first."""
        conversations = select(Conversation.id).where(Conversation.lead_id == lead_id)
        times = func.count(Message.id)
        statement = (
            select(Message.intent, times, func.max(Message.created_at))
            .where(
                Message.conversation_id.in_(conversations.scalar_subquery()),
                Message.direction == Direction.IN,
                Message.intent.like("objection.%"),
            )
            .group_by(Message.intent)
            .order_by(times.desc(), Message.intent)
        )
        return [
            (str(intent), int(count), last)
            for intent, count, last in (await self.session.execute(statement)).all()
        ]

    async def next_action_of(self, lead_id: int) -> ScheduledAction | None:
        """The lead's earliest pending scheduled action, its own or one of its appointments'."""
        appointments = select(Appointment.id).where(Appointment.lead_id == lead_id)
        statement = (
            select(ScheduledAction)
            .where(
                ScheduledAction.state == ActionState.PENDING,
                or_(
                    ScheduledAction.lead_id == lead_id,
                    ScheduledAction.appointment_id.in_(appointments.scalar_subquery()),
                ),
            )
            .order_by(ScheduledAction.due_at, ScheduledAction.id)
            .limit(1)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def next_appointment_of(self, lead_id: int, now: datetime) -> Appointment | None:
        statement = (
            select(Appointment)
            .where(
                Appointment.lead_id == lead_id,
                Appointment.state == AppointmentState.CONFIRMED,
                Appointment.starts_at >= now,
            )
            .order_by(Appointment.starts_at, Appointment.id)
            .limit(1)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def referred_by(self, lead_id: int) -> list[Lead]:
        """The leads this one referred."""
        statement = select(Lead).where(Lead.referred_by_id == lead_id).order_by(Lead.id)
        return list((await self.session.execute(statement)).scalars())

    async def conversations_of(self, lead_id: int) -> list[Conversation]:
        statement = (
            select(Conversation).where(Conversation.lead_id == lead_id).order_by(Conversation.id)
        )
        return list((await self.session.execute(statement)).scalars().unique())

    async def appointments_of(self, lead_id: int) -> list[Appointment]:
        statement = (
            select(Appointment)
            .where(Appointment.lead_id == lead_id)
            .order_by(Appointment.starts_at.desc())
        )
        return list((await self.session.execute(statement)).scalars())

    async def tasks_of(self, lead_id: int) -> list[Task]:
        statement = select(Task).where(Task.lead_id == lead_id).order_by(Task.due_at.desc())
        return list((await self.session.execute(statement)).scalars())

    async def transfers_of(self, lead_id: int) -> list[Transfer]:
        statement = select(Transfer).where(Transfer.lead_id == lead_id).order_by(Transfer.at.desc())
        return list((await self.session.execute(statement)).scalars())

    async def open_tasks_of(self, owner_id: int | None) -> list[Task]:
        """Open tasks of an agent (None: everyone's), soonest first."""
        statement = select(Task).where(Task.done_at.is_(None)).order_by(Task.due_at, Task.id)
        if owner_id is not None:
            statement = statement.where(Task.owner_id == owner_id)
        return list((await self.session.execute(statement)).scalars())

    # --- saved filters --------------------------------------------------------------------------

    async def saved_filters(self, agent_id: int) -> list[SavedFilter]:
        statement = (
            select(SavedFilter).where(SavedFilter.agent_id == agent_id).order_by(SavedFilter.name)
        )
        return list((await self.session.execute(statement)).scalars())

    async def delete_saved_filter(self, filter_id: int, agent_id: int) -> bool:
        statement = delete(SavedFilter).where(
            SavedFilter.id == filter_id, SavedFilter.agent_id == agent_id
        )
        result = await self.session.execute(statement)
        return bool(getattr(result, "rowcount", 0))

    # --- duplicates and merging -----------------------------------------------------------------

    async def same_person(self, lead: Lead, spellings: Sequence[str]) -> list[Lead]:
        """Other leads with one of these phone spellings, or the same e-mail in any case."""
        found: list[ColumnElement[bool]] = []
        if spellings:
            owners = select(LeadPhone.lead_id).where(LeadPhone.e164.in_(list(spellings)))
            found.append(Lead.id.in_(owners.scalar_subquery()))
        if lead.email:
            found.append(func.lower(Lead.email) == lead.email.lower())
        if not found:
            return []
        statement = select(Lead).where(Lead.id != lead.id, or_(*found)).order_by(Lead.id)
        return list((await self.session.execute(statement)).scalars())

    async def duplicate_pairs(self, limit: int = 200) -> list[tuple[int, int, str]]:
        """Pairs of leads that look like one person: (lower id, higher id, "phone"|"email")."""
        pairs: set[tuple[int, int, str]] = set()
        email = func.lower(Lead.email)
        other = Lead.__table__.alias("other")
        statement = (
            select(Lead.id, other.c.id)
            .join(other, and_(func.lower(other.c.email) == email, other.c.id > Lead.id))
            .where(Lead.email.is_not(None))
            .limit(limit)
        )
        pairs |= {(a, b, "email") for a, b in (await self.session.execute(statement)).all()}
        mobile = LeadPhone.__table__.alias("mobile")
        plain = LeadPhone.__table__.alias("plain")
        for country, marker in MOBILE_MARKERS.items():
            prefix = f"+{country}{marker}"
            # "+52 1 55…" and "+52 55…": the same line spelled with and without the marker.
            statement = (
                select(mobile.c.lead_id, plain.c.lead_id)
                .join(
                    plain,
                    plain.c.e164
                    == literal(f"+{country}") + func.substr(mobile.c.e164, len(prefix) + 1),
                )
                .where(
                    mobile.c.e164.like(f"{prefix}%"),
                    func.length(mobile.c.e164) == len(prefix) + 10,
                    mobile.c.lead_id != plain.c.lead_id,
                )
                .limit(limit)
            )
            for a, b in (await self.session.execute(statement)).all():
                pairs.add((min(a, b), max(a, b), "phone"))
        return sorted(pairs)[:limit]

    async def reassign(self, from_id: int, to_id: int) -> None:
        """Every row of `from_id` becomes `to_id`'s: each table with a lead_id, and referrals."""
        for table in Base.metadata.sorted_tables:
            if "lead_id" in table.c and table.name != "leads":
                await self.session.execute(
                    update(table).where(table.c.lead_id == from_id).values(lead_id=to_id)
                )
        await self.session.execute(
            update(Lead).where(Lead.referred_by_id == from_id).values(referred_by_id=to_id)
        )

    async def remove_lead(self, lead: Lead) -> None:
        """Delete the row (its rows were reassigned first); the object leaves the session."""
        await self.session.flush()
        self.session.expunge(lead)
        await self.session.execute(delete(Lead).where(Lead.id == lead.id))

    async def sum_scored(self, lead_id: int) -> int:
        await self.session.flush()
        statement = select(func.coalesce(func.sum(ScoreEvent.points), 0)).where(
            ScoreEvent.lead_id == lead_id
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def by_email(self, email: str) -> Lead | None:
        statement = select(Lead).where(func.lower(Lead.email) == email.lower()).limit(1)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def custom_fields(self) -> list[CustomField]:
        statement = select(CustomField).order_by(CustomField.position, CustomField.id)
        return list((await self.session.execute(statement)).scalars())
