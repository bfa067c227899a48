"""The reports' figures, each aggregated in SQL that runs on SQLite and PostgreSQL.

Every method takes a half-open UTC span [start, end) and, where it makes sense, `owner`: an
agent's id to count only that agent's leads, deals and work (what an agent sees of the reports).
Nothing here loads rows to count them in Python; what comes back is already grouped.
What each figure means is written once, in Spanish, in `bot/reports/glossary.es.yaml`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    distinct,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from bot.core.crm import LOGGED, ActivityKind
from bot.core.model import AppointmentState, Author, Direction, SequenceState
from storage.models import (
    Activity,
    Agent,
    Appointment,
    CacEntry,
    Conversation,
    Deal,
    Handoff,
    Lead,
    Message,
    Pipeline,
    ScheduledAction,
    SequenceRun,
    Stage,
    StageChange,
    Task,
)

# Any SELECT, whatever its columns.
Q = TypeVar("Q", bound=Select[Any] | Select[Any, Any] | Select[Any, Any, Any])
OBJECTION_PREFIX = "objection."
# The leads' objections. Written into the statement, not bound, so that the planner sees the
# predicate of the partial index ix_messages_objections (migration 0014, storage/models.py) and
# reads the few objections instead of every message of the period.
OBJECTIONS = (
    Message.direction == bindparam("inbound", Direction.IN.value, literal_execute=True),
    Message.intent.like(bindparam("objection", f"{OBJECTION_PREFIX}%", literal_execute=True)),
)
SEQUENCE_STEP = "sequence.step"  # bot/followup/actions.py names the same kind
# What an agent did (seed 003 counts these): calls, meetings, messages, e-mails and notes;
# not the changes the CRM records by itself.
AGENT_WORK = (*LOGGED, ActivityKind.NOTE)
NO_SOURCE = "(sin fuente)"


@dataclass(frozen=True, slots=True)
class StageRow:
    pipeline: str
    pipeline_name: str
    key: str
    name: str
    position: int
    outcome: str  # open | won | lost


@dataclass(frozen=True, slots=True)
class FunnelCount:
    stage: str
    entered: int
    converted: int
    average_seconds: float | None  # time spent in the stage by those who left it
    left: int


@dataclass(frozen=True, slots=True)
class Breakdown:
    key: str
    leads: int
    converted: int


@dataclass(frozen=True, slots=True)
class AgentWork:
    agent_id: int
    name: str
    activities: int = 0
    conversations: int = 0
    handoffs: int = 0
    wait_seconds: float | None = None
    first_response_seconds: float | None = None
    won: int = 0
    lost: int = 0
    cold: int = 0
    overdue_tasks: int = 0


@dataclass(frozen=True, slots=True)
class StepCount:
    sequence: str
    step: int
    sent: int
    replies: int
    opt_outs: int


class Reports:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- helpers ------------------------------------------------------------------------------

    @property
    def _sqlite(self) -> bool:
        return self.session.get_bind().dialect.name == "sqlite"

    def _seconds(self, later: Any, earlier: Any) -> ColumnElement[Any]:
        """later − earlier in seconds, on either database."""
        if self._sqlite:
            return (func.julianday(later) - func.julianday(earlier)) * 86400.0
        return func.extract("epoch", later - earlier)

    def _utc_hour(self, column: Any) -> ColumnElement[str]:
        """'YYYY-MM-DD HH' of a UTC instant: buckets the service turns into local hours."""
        if self._sqlite:
            return func.strftime("%Y-%m-%d %H", column)
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24")

    async def tune(self) -> None:
        """PostgreSQL, for this transaction only: no JIT compilation, and room to sort in memory.

        The correlated lookups make the planner's cost estimates large enough to switch JIT on,
        and compiling took longer than running (0.4 s of a 0.5 s query on the benchmark); the
        funnel's windows sorted on disk with the default 4 MB."""
        if not self._sqlite:
            await self.session.execute(
                text("SELECT set_config('jit', 'off', true), set_config('work_mem', '32MB', true)")
            )

    async def _scalar(self, statement: Select[Any]) -> Any:
        return (await self.session.execute(statement)).scalar()

    @staticmethod
    def _own(statement: Q, owner: int | None) -> Q:
        return statement if owner is None else cast(Q, statement.where(Lead.owner_id == owner))

    # --- pipelines ----------------------------------------------------------------------------

    async def stages(self) -> list[StageRow]:
        """Every pipeline's stages, pipelines and stages in their order."""
        statement = (
            select(
                Pipeline.key, Pipeline.name, Stage.key, Stage.name, Stage.position, Stage.outcome
            )
            .join(Stage, Stage.pipeline_id == Pipeline.id)
            .order_by(Pipeline.position, Pipeline.id, Stage.position, Stage.id)
        )
        return [StageRow(*row) for row in (await self.session.execute(statement)).all()]

    # --- leads --------------------------------------------------------------------------------

    def _new(self, start: datetime, end: datetime, owner: int | None) -> Select[Any]:
        statement = select(func.count()).where(
            Lead.first_contact_at >= start, Lead.first_contact_at < end
        )
        return self._own(statement, owner)

    async def new_leads(self, start: datetime, end: datetime, owner: int | None = None) -> int:
        return int(await self._scalar(self._new(start, end, owner)) or 0)

    async def score_total(
        self, start: datetime, end: datetime, owner: int | None = None
    ) -> tuple[int, int]:
        """(sum of scores, leads) of the period's new leads."""
        statement = self._own(
            select(func.coalesce(func.sum(Lead.score), 0), func.count()).where(
                Lead.first_contact_at >= start, Lead.first_contact_at < end
            ),
            owner,
        )
        total, count = (await self.session.execute(statement)).one()
        return int(total), int(count)

    async def by_tier(
        self, start: datetime, end: datetime, owner: int | None = None
    ) -> dict[str, int]:
        statement = self._own(
            select(Lead.tier, func.count())
            .where(Lead.first_contact_at >= start, Lead.first_contact_at < end)
            .group_by(Lead.tier),
            owner,
        )
        return {tier: int(count) for tier, count in (await self.session.execute(statement)).all()}

    async def conversions(
        self, start: datetime, end: datetime, won: Sequence[str], owner: int | None = None
    ) -> int:
        """Leads that entered a won stage in the span (each lead once)."""
        if not won:
            return 0
        statement = (
            select(func.count(distinct(StageChange.lead_id)))
            .join(Lead, Lead.id == StageChange.lead_id)
            .where(StageChange.to_stage.in_(won), StageChange.at >= start, StageChange.at < end)
        )
        return int(await self._scalar(self._own(statement, owner)) or 0)

    def _converted_by(self, end: datetime, won: Sequence[str]) -> ColumnElement[int]:
        """1 when the lead (Lead) entered a won stage before `end`, else 0."""
        if not won:
            return literal(0)
        # IN, not a correlated EXISTS: the won leads are read once and hashed, instead of one
        # index lookup per lead of the period.
        entered = Lead.id.in_(
            select(StageChange.lead_id).where(StageChange.to_stage.in_(won), StageChange.at < end)
        )
        return case((entered, 1), else_=0)

    async def breakdown(
        self,
        start: datetime,
        end: datetime,
        won: Sequence[str],
        by: str,
        owner: int | None = None,
    ) -> list[Breakdown]:
        """The span's new leads by source, channel or UTC hour ('YYYY-MM-DD HH'), and how
        many of them had converted by the span's end. Largest first."""
        converted = self._converted_by(end, won)
        if by == "source":
            key: ColumnElement[Any] = func.coalesce(Lead.source, NO_SOURCE)
        elif by == "channel":
            # The channel of the lead's first conversation (its lowest id).
            theirs = aliased(Conversation)
            first = (
                select(func.min(theirs.id))
                .where(theirs.lead_id == Lead.id)
                .correlate(Lead)
                .scalar_subquery()
            )
            key = (
                select(Conversation.channel)
                .where(Conversation.id == first)
                .correlate(Lead)
                .scalar_subquery()
            )
        elif by == "hour":
            key = self._utc_hour(Lead.first_contact_at)
        else:
            raise ValueError(f"unknown breakdown {by!r}")
        inner = self._own(
            select(key.label("key"), converted.label("converted")).where(
                Lead.first_contact_at >= start, Lead.first_contact_at < end
            ),
            owner,
        ).subquery()
        statement = (
            select(inner.c.key, func.count(), func.sum(inner.c.converted))
            .group_by(inner.c.key)
            .order_by(func.count().desc(), inner.c.key)
        )
        return [
            Breakdown(str(k) if k is not None else NO_SOURCE, int(n), int(c or 0))
            for k, n, c in (await self.session.execute(statement)).all()
        ]

    async def low_score_unreviewed(
        self, threshold: int, closed: Sequence[str], owner: int | None = None
    ) -> int:
        """Open leads scoring under `threshold` that no agent has logged anything for."""
        touched = exists().where(Activity.lead_id == Lead.id, Activity.agent_id.is_not(None))
        statement = select(func.count()).where(
            Lead.score < threshold, Lead.opted_out_at.is_(None), not_(touched)
        )
        if closed:
            statement = statement.where(Lead.stage.not_in(closed))
        return int(await self._scalar(self._own(statement, owner)) or 0)

    # --- money --------------------------------------------------------------------------------

    async def revenue(
        self, start: datetime, end: datetime, owner: int | None = None
    ) -> tuple[Decimal, int]:
        """(sum of amounts, deals) of the deals won in the span."""
        statement = select(func.coalesce(func.sum(Deal.amount), 0), func.count()).where(
            Deal.status == "won", Deal.closed_at >= start, Deal.closed_at < end
        )
        if owner is not None:
            statement = statement.where(Deal.agent_id == owner)
        total, count = (await self.session.execute(statement)).one()
        return Decimal(str(total)).quantize(Decimal("0.01")), int(count)

    async def spend(self, months: Sequence[date]) -> dict[str, Decimal]:
        """Acquisition spend per source in the given months (CAC entries)."""
        statement = (
            select(CacEntry.source, func.sum(CacEntry.amount))
            .where(CacEntry.month.in_(list(months)))
            .group_by(CacEntry.source)
        )
        return {
            source: Decimal(str(amount)).quantize(Decimal("0.01"))
            for source, amount in (await self.session.execute(statement)).all()
        }

    async def conversions_by_source(
        self, start: datetime, end: datetime, won: Sequence[str]
    ) -> dict[str, int]:
        """Leads that entered a won stage in the span, by the lead's source."""
        if not won:
            return {}
        inner = (
            select(
                StageChange.lead_id.label("lead_id"),
                func.coalesce(Lead.source, NO_SOURCE).label("source"),
            )
            .join(Lead, Lead.id == StageChange.lead_id)
            .where(StageChange.to_stage.in_(won), StageChange.at >= start, StageChange.at < end)
            .distinct()
            .subquery()
        )
        statement = select(inner.c.source, func.count()).group_by(inner.c.source)
        return {s: int(n) for s, n in (await self.session.execute(statement)).all()}

    async def cac_entries(self, limit: int = 120) -> list[CacEntry]:
        statement = select(CacEntry).order_by(CacEntry.month.desc(), CacEntry.source).limit(limit)
        return list((await self.session.execute(statement)).scalars())

    async def cac_entry(self, source: str, month: date) -> CacEntry | None:
        statement = select(CacEntry).where(CacEntry.source == source, CacEntry.month == month)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def add_cac_entry(self, entry: CacEntry) -> None:
        self.session.add(entry)
        await self.session.flush()

    # --- objections ---------------------------------------------------------------------------

    async def objections(
        self,
        start: datetime,
        end: datetime,
        horizon: datetime,
        won: Sequence[str],
        owner: int | None = None,
    ) -> list[tuple[str, str, int]]:
        """(intent, outcome, count) of the objections leads raised in the span, each followed
        up to `horizon`: bought (entered a won stage), else booked (an appointment), else
        replied (wrote again), else quiet."""
        later = aliased(Message)
        replied = exists().where(
            later.conversation_id == Message.conversation_id,
            later.direction == Direction.IN,
            later.id > Message.id,
            later.created_at < horizon,
        )
        booked = exists().where(
            Appointment.lead_id == Conversation.lead_id,
            Appointment.created_at > Message.created_at,
            Appointment.created_at < horizon,
        )
        bought: ColumnElement[bool] = (
            exists().where(
                StageChange.lead_id == Conversation.lead_id,
                StageChange.to_stage.in_(won),
                StageChange.at > Message.created_at,
                StageChange.at < horizon,
            )
            if won
            else literal(False)
        )
        outcome = case(
            (bought, "bought"), (booked, "booked"), (replied, "replied"), else_="quiet"
        ).label("outcome")
        inner = (
            select(Message.intent.label("intent"), outcome)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(*OBJECTIONS, Message.created_at >= start, Message.created_at < end)
        )
        if owner is not None:
            inner = inner.join(Lead, Lead.id == Conversation.lead_id).where(Lead.owner_id == owner)
        sub = inner.subquery()
        statement = (
            select(sub.c.intent, sub.c.outcome, func.count())
            .group_by(sub.c.intent, sub.c.outcome)
            .order_by(sub.c.intent, sub.c.outcome)
        )
        return [(i, o, int(n)) for i, o, n in (await self.session.execute(statement)).all()]

    # --- the funnel ---------------------------------------------------------------------------

    async def funnel(
        self,
        start: datetime,
        end: datetime,
        pipeline: str,
        default_pipeline: str,
        positions: dict[str, int],
        onward: Sequence[str],
        owner: int | None = None,
    ) -> list[FunnelCount]:
        """Per stage of one pipeline: leads that entered it in the span, how many of them went
        on to a later stage of `onward` (the open and won stages) before the span's end, and the
        average time spent in it by those who left it (until their next change of stage).

        One pass over the span's stage changes with window functions: for each change, the
        next change of the same lead, and the furthest onward stage the lead reached from then
        on; a lead's first entry into each stage is the one counted."""
        if not positions:
            return []
        keys = list(positions)
        position = case(positions, value=StageChange.to_stage)
        # Each stage as its index in `keys`: the windows and the grouping sort integers, not
        # stage names (a quarter faster on the benchmark's 60 000 changes of 90 days).
        ordinal = case({key: index for index, key in enumerate(keys)}, value=StageChange.to_stage)
        reach = case((StageChange.to_stage.in_(list(onward)), position), else_=-1)
        changes = self._own(
            select(
                ordinal.label("stage"),
                StageChange.at.label("at"),
                position.label("position"),
                func.lead(StageChange.at)
                .over(partition_by=StageChange.lead_id, order_by=StageChange.at)
                .label("next_at"),
                func.max(reach)
                .over(partition_by=StageChange.lead_id, order_by=StageChange.at, range_=(0, None))
                .label("reach"),
                func.row_number()
                .over(
                    partition_by=(StageChange.lead_id, ordinal),
                    order_by=StageChange.at,
                )
                .label("nth"),
            )
            .join(Lead, Lead.id == StageChange.lead_id)
            .where(
                func.coalesce(StageChange.pipeline, Lead.pipeline, default_pipeline) == pipeline,
                StageChange.to_stage.in_(keys),
                StageChange.at >= start,
                StageChange.at < end,
            ),
            owner,
        ).subquery()
        rows = (
            select(
                changes.c.stage.label("stage"),
                case((changes.c.reach > changes.c.position, 1), else_=0).label("moved"),
                self._seconds(changes.c.next_at, changes.c.at).label("spent"),
            )
            .where(changes.c.nth == 1)
            .subquery()
        )
        statement = select(
            rows.c.stage,
            func.count(),
            func.sum(rows.c.moved),
            func.avg(rows.c.spent),
            func.count(rows.c.spent),
        ).group_by(rows.c.stage)
        found = {
            keys[stage]: FunnelCount(
                keys[stage], int(n), int(m or 0), float(s) if s is not None else None, int(left)
            )
            for stage, n, m, s, left in (await self.session.execute(statement)).all()
        }
        return [found.get(key, FunnelCount(key, 0, 0, None, 0)) for key in keys]

    async def time_to_decision(
        self, start: datetime, end: datetime, decided: Sequence[str], owner: int | None = None
    ) -> tuple[float | None, int]:
        """(average seconds, leads) from first contact to the first entry into a won or lost
        stage, for leads whose decision fell in the span."""
        if not decided:
            return None, 0
        first = (
            select(StageChange.lead_id.label("lead_id"), func.min(StageChange.at).label("at"))
            .where(StageChange.to_stage.in_(decided))
            .group_by(StageChange.lead_id)
            .subquery()
        )
        statement = self._own(
            select(func.avg(self._seconds(first.c.at, Lead.first_contact_at)), func.count())
            .select_from(first)
            .join(Lead, Lead.id == first.c.lead_id)
            .where(first.c.at >= start, first.c.at < end),
            owner,
        )
        seconds, count = (await self.session.execute(statement)).one()
        return (float(seconds) if seconds is not None else None), int(count)

    # --- agents -------------------------------------------------------------------------------

    async def agents(
        self,
        start: datetime,
        end: datetime,
        idle_before: datetime,
        now: datetime,
        closed: Sequence[str],
        only: int | None = None,
    ) -> list[AgentWork]:
        """Seed 003's figures per active agent (or only one)."""
        people = select(Agent.id, Agent.name).where(Agent.active.is_(True)).order_by(Agent.name)
        if only is not None:
            people = select(Agent.id, Agent.name).where(Agent.id == only)
        work: dict[int, dict[str, Any]] = {
            agent_id: {"agent_id": agent_id, "name": name}
            for agent_id, name in (await self.session.execute(people)).all()
        }
        ids = list(work)
        if not ids:
            return []

        async def grouped(statement: Any, *names: str) -> None:
            for row in (await self.session.execute(statement)).all():
                if row[0] in work:
                    for name, value in zip(names, row[1:], strict=True):
                        work[row[0]][name] = value

        await grouped(
            select(Activity.agent_id, func.count())
            .where(
                Activity.agent_id.in_(ids),
                Activity.kind.in_(AGENT_WORK),
                Activity.occurred_at >= start,
                Activity.occurred_at < end,
            )
            .group_by(Activity.agent_id),
            "activities",
        )
        await grouped(
            select(Message.agent_id, func.count(distinct(Message.conversation_id)))
            .where(
                Message.agent_id.in_(ids),
                Message.author == Author.AGENT,
                Message.created_at >= start,
                Message.created_at < end,
            )
            .group_by(Message.agent_id),
            "conversations",
        )
        answer = (
            select(func.min(Message.created_at))
            .where(
                Message.conversation_id == Handoff.conversation_id,
                Message.author == Author.AGENT,
                Message.created_at >= Handoff.requested_at,
            )
            .scalar_subquery()
        )
        await grouped(
            select(
                Handoff.agent_id,
                func.count(),
                func.avg(self._seconds(Handoff.claimed_at, Handoff.requested_at)),
                func.avg(self._seconds(answer, Handoff.requested_at)),
            )
            .where(
                Handoff.agent_id.in_(ids),
                Handoff.claimed_at >= start,
                Handoff.claimed_at < end,
            )
            .group_by(Handoff.agent_id),
            "handoffs",
            "wait_seconds",
            "first_response_seconds",
        )
        await grouped(
            select(
                Deal.agent_id,
                func.sum(case((Deal.status == "won", 1), else_=0)),
                func.sum(case((Deal.status == "lost", 1), else_=0)),
            )
            .where(Deal.agent_id.in_(ids), Deal.closed_at >= start, Deal.closed_at < end)
            .group_by(Deal.agent_id),
            "won",
            "lost",
        )
        cold = select(Lead.owner_id, func.count()).where(
            Lead.owner_id.in_(ids),
            Lead.last_activity_at < idle_before,
            Lead.opted_out_at.is_(None),
        )
        if closed:
            cold = cold.where(Lead.stage.not_in(closed))
        await grouped(cold.group_by(Lead.owner_id), "cold")
        await grouped(
            select(Task.owner_id, func.count())
            .where(Task.owner_id.in_(ids), Task.done_at.is_(None), Task.due_at < now)
            .group_by(Task.owner_id),
            "overdue_tasks",
        )
        return [
            AgentWork(
                agent_id=values["agent_id"],
                name=values["name"],
                activities=int(values.get("activities") or 0),
                conversations=int(values.get("conversations") or 0),
                handoffs=int(values.get("handoffs") or 0),
                wait_seconds=_float(values.get("wait_seconds")),
                first_response_seconds=_float(values.get("first_response_seconds")),
                won=int(values.get("won") or 0),
                lost=int(values.get("lost") or 0),
                cold=int(values.get("cold") or 0),
                overdue_tasks=int(values.get("overdue_tasks") or 0),
            )
            for values in work.values()
        ]

    # --- appointments and sequences -----------------------------------------------------------

    async def appointments(
        self, start: datetime, end: datetime, owner: int | None = None
    ) -> dict[str, int]:
        """booked (made in the span), and of those due in the span: held, no_show, cancelled."""
        booked = select(func.count()).where(
            Appointment.created_at >= start, Appointment.created_at < end
        )
        due = select(
            func.sum(case((Appointment.state == AppointmentState.DONE, 1), else_=0)),
            func.sum(case((Appointment.state == AppointmentState.NO_SHOW, 1), else_=0)),
            func.sum(case((Appointment.state == AppointmentState.CANCELLED, 1), else_=0)),
        ).where(Appointment.starts_at >= start, Appointment.starts_at < end)
        if owner is not None:
            booked = booked.where(Appointment.agent_id == owner)
            due = due.where(Appointment.agent_id == owner)
        held, no_show, cancelled = (await self.session.execute(due)).one()
        return {
            "booked": int(await self._scalar(booked) or 0),
            "held": int(held or 0),
            "no_show": int(no_show or 0),
            "cancelled": int(cancelled or 0),
        }

    async def sequence_steps(
        self, start: datetime, end: datetime, horizon: datetime, owner: int | None = None
    ) -> list[StepCount]:
        """Per sequence and step: steps fired in the span, and the leads who wrote back or opted
        out after that step and before the run's next step fired (or `horizon`)."""
        # Each fired step beside the time its run's next step fired (a window, not a lookup
        # per row): replies and opt-outs in between belong to this step.
        fired = (
            select(
                ScheduledAction.lead_id.label("lead_id"),
                ScheduledAction.sequence_run_id.label("run_id"),
                ScheduledAction.payload["step"].as_integer().label("step"),
                ScheduledAction.fired_at.label("fired_at"),
                func.lead(ScheduledAction.fired_at)
                .over(
                    partition_by=ScheduledAction.sequence_run_id,
                    order_by=ScheduledAction.fired_at,
                )
                .label("next_at"),
            )
            .where(
                ScheduledAction.kind == SEQUENCE_STEP,
                ScheduledAction.state == "done",
                # A step's next step fires after it: the window needs no earlier rows.
                ScheduledAction.fired_at >= start,
                ScheduledAction.fired_at < horizon,
            )
            .subquery()
        )
        until = func.coalesce(fired.c.next_at, horizon)
        reply = exists().where(
            Conversation.lead_id == fired.c.lead_id,
            Message.conversation_id == Conversation.id,
            Message.direction == Direction.IN,
            Message.created_at > fired.c.fired_at,
            Message.created_at < until,
        )
        # Only the leads who opted out in the span (ix_leads_opted_out_at): joining every lead
        # to read one column cost a scan of the whole table.
        gone = (
            select(Lead.id.label("id"), Lead.opted_out_at.label("at"))
            .where(Lead.opted_out_at > start, Lead.opted_out_at < horizon)
            .subquery()
        )
        opted = and_(gone.c.at > fired.c.fired_at, gone.c.at < until)
        rows = (
            select(
                SequenceRun.sequence.label("sequence"),
                fired.c.step.label("step"),
                case((reply, 1), else_=0).label("replied"),
                case((opted, 1), else_=0).label("opted"),
            )
            .select_from(fired)
            .join(SequenceRun, SequenceRun.id == fired.c.run_id)
            .outerjoin(gone, gone.c.id == fired.c.lead_id)
            .where(fired.c.fired_at < end)
        )
        if owner is not None:
            rows = rows.join(Lead, Lead.id == fired.c.lead_id).where(Lead.owner_id == owner)
        inner = rows.subquery()
        statement = (
            select(
                inner.c.sequence,
                inner.c.step,
                func.count(),
                func.sum(inner.c.replied),
                func.sum(inner.c.opted),
            )
            .group_by(inner.c.sequence, inner.c.step)
            .order_by(inner.c.sequence, inner.c.step)
        )
        return [
            StepCount(s, int(i), int(n), int(r or 0), int(o or 0))
            for s, i, n, r, o in (await self.session.execute(statement)).all()
        ]

    async def sequences_running(self) -> int:
        statement = select(func.count()).where(SequenceRun.state == SequenceState.ACTIVE)
        return int(await self._scalar(statement) or 0)


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None


__all__ = ["AgentWork", "Breakdown", "FunnelCount", "Reports", "StageRow", "StepCount", "or_"]
