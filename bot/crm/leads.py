"""Lead records: the list with its filters, the lead page (record, score explained, deals,
timeline), editing (owner and admins), activities and notes, deals, bulk actions, saved
filters, the CSV export, "Mis tareas" and the board."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from bot.core.crm import (
    FIELD_KINDS,
    LOGGED,
    ActivityKind,
    CallResult,
    DealStatus,
    LeadFilter,
    PipelineSpec,
    check_lost_reason,
    clean_tags,
    custom_value,
)
from bot.core.errors import Forbidden, InvalidInput, NotFound
from bot.core.model import AgentRole, AppointmentState, Tier, utcnow
from bot.core.scoring import ATTENDED, Scoring
from bot.crm import record
from bot.crm.duplicates import Duplicates, same_person
from bot.crm.pipelines import Pipelines
from bot.followup.actions import SEQUENCE_STEP
from storage.crm import Window
from storage.db import Database
from storage.models import Activity, Agent, Appointment, CustomField, Deal, Lead, SavedFilter, Task
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

TEXT_MAX = 4000
EDITABLE = ("name", "email", "address", "campaign", "source")
LIMITS = {"name": 200, "email": 254, "address": 300, "campaign": 120, "source": 64}
CSV_COLUMNS = (
    "id", "name", "phones", "email", "address", "source", "campaign", "stage", "score", "tier",
    "owner", "tags", "first_contact_at", "last_activity_at",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LeadList:
    leads: list[Lead]
    total: int
    filter: LeadFilter
    owners: dict[int, str]
    stage_names: dict[str, str] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.filter.per_page))


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a lead's timeline."""

    at: datetime
    kind: str  # message | activity kinds | stage_change | transfer | appointment | task
    title: str
    body: str = ""
    agent_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Objection:
    """An objection the lead raised (an `objection.*` intent of its messages)."""

    intent: str
    label: str
    count: int
    last_at: datetime


APPOINTMENT = "appointment"


@dataclass(frozen=True, slots=True)
class NextAction:
    """What is scheduled next for the lead: a scheduled action's kind, or "appointment"."""

    kind: str
    at: datetime
    sequence: str | None = None
    step: int | None = None  # counted from 1
    appointment_id: int | None = None
    appointment_kind: str | None = None


@dataclass(frozen=True, slots=True)
class LeadPage:
    lead: Lead
    phones: list[str]
    owner: Agent | None
    editable: bool
    pipeline: PipelineSpec
    score_lines: list[str]
    deals: list[Deal]
    timeline: list[Entry]
    conversation_ids: list[int]
    lost_reasons: list[str]
    agents: dict[int, str]
    duplicates: list[Lead] = field(default_factory=list)
    appointments: list[Appointment] = field(default_factory=list)
    custom_fields: list[CustomField] = field(default_factory=list)
    objections: list[Objection] = field(default_factory=list)
    next_action: NextAction | None = None
    referrer: Lead | None = None
    referrals: list[Lead] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MyTasks:
    overdue: list[Task]
    today: list[Task]
    upcoming: list[Task]


@dataclass(frozen=True, slots=True)
class Column:
    stage: str
    name: str
    outcome: str
    reason_required: bool
    leads: list[Lead]


def may_edit(agent: Agent, lead: Lead) -> bool:
    """Its owner and admins edit a lead; everyone else reads it."""
    return agent.role == AgentRole.ADMIN or lead.owner_id == agent.id


class Records:
    def __init__(
        self,
        db: Database,
        pipelines: Pipelines,
        scoring: Scoring,
        *,
        tz: ZoneInfo,
        duplicates: Duplicates | None = None,
        labels: Callable[[str], str] | None = None,
    ) -> None:
        self.duplicates = duplicates
        self.labels = labels  # an intent's Spanish name (the scripts' label)
        self.db = db
        self.pipelines = pipelines
        self.scoring = scoring
        self.tz = tz

    # --- the list -------------------------------------------------------------------------------

    def window(self, f: LeadFilter, now: datetime | None = None) -> Window:
        def start(day: Any) -> datetime:
            return datetime.combine(day, time(0), self.tz)

        return Window(
            created_after=start(f.created_from) if f.created_from else None,
            created_before=start(f.created_to) + timedelta(days=1) if f.created_to else None,
            now=now or utcnow(),
        )

    async def find(self, f: LeadFilter) -> LeadList:
        async with UnitOfWork(self.db) as uow:
            leads, total = await uow.crm.lead_list(f, self.window(f))
            owners = {a.id: a.name for a in await uow.agents.all()}
        names = {s.key: s.name for p in await self.pipelines.all() for s in p.stages}
        return LeadList(leads, total, f, owners, names)

    async def sources(self) -> list[str]:
        async with UnitOfWork(self.db) as uow:
            return await uow.crm.sources()

    async def export(self, f: LeadFilter, agent: Agent | None, address: str | None = None) -> str:
        """The filtered list as CSV (every page), recorded in the audit log."""
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            leads, total = await uow.crm.lead_list(f, self.window(f, now), everything=True)
            owners = {a.id: a.name for a in await uow.agents.all()}
            phones = {lead.id: await uow.leads.phones(lead.id) for lead in leads}
            uow.audit.record(
                "leads_exported",
                agent_id=agent.id if agent else None,
                detail={"filter": f.query(page=None), "rows": total},
                address=address,
                at=now,
            )
            await uow.commit()
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for lead in leads:
            writer.writerow(
                [
                    lead.id,
                    lead.name or "",
                    " ".join(phones[lead.id]),
                    lead.email or "",
                    lead.address or "",
                    lead.source or "",
                    lead.campaign or "",
                    lead.stage,
                    lead.score,
                    lead.tier,
                    owners.get(lead.owner_id, "") if lead.owner_id else "",
                    ",".join(str(t) for t in lead.tags),
                    lead.first_contact_at.isoformat(),
                    lead.last_activity_at.isoformat(),
                ]
            )
        return out.getvalue()

    # --- the lead page --------------------------------------------------------------------------

    async def page(self, lead_id: int, agent: Agent) -> LeadPage:
        async with UnitOfWork(self.db) as uow:
            lead = await uow.leads.get(lead_id)
            if lead is None:
                raise NotFound(f"no lead {lead_id}", code="no_lead")
            agents = {a.id: a.name for a in await uow.agents.all()}
            owner = await uow.agents.get(lead.owner_id) if lead.owner_id else None
            pipeline = await self.pipelines.of(uow, lead)
            names = {s.key: s.name for s in pipeline.stages}
            events = await uow.crm.score_events(lead.id)
            timeline = await self._timeline(uow, lead, names, agents)
            conversations = await uow.crm.conversations_of(lead.id)
            return LeadPage(
                lead=lead,
                phones=await uow.leads.phones(lead.id),
                owner=owner,
                editable=may_edit(agent, lead),
                pipeline=pipeline,
                score_lines=self.scoring.explain((e.rule, e.points) for e in events),
                deals=await uow.crm.deals(lead.id),
                timeline=timeline,
                conversation_ids=[c.id for c in conversations],
                lost_reasons=[r.label for r in await uow.crm.lost_reasons()],
                agents=agents,
                duplicates=await same_person(uow, lead),
                appointments=await uow.crm.appointments_of(lead.id),
                custom_fields=await uow.crm.custom_fields(),
                objections=[
                    Objection(intent, self._label(intent), count, last)
                    for intent, count, last in await uow.crm.objections_of(lead.id)
                ],
                next_action=await self._next_action(uow, lead.id, utcnow()),
                referrer=(
                    await uow.leads.get(lead.referred_by_id) if lead.referred_by_id else None
                ),
                referrals=await uow.crm.referred_by(lead.id),
            )

    def _label(self, intent: str) -> str:
        if self.labels is None:
            return intent
        try:
            return self.labels(intent)
        except KeyError:  # an intent the scripts no longer have
            return intent

    @staticmethod
    async def _next_action(uow: UnitOfWork, lead_id: int, now: datetime) -> NextAction | None:
        """The earliest of the lead's pending scheduled actions and its next confirmed
        appointment."""
        action = await uow.crm.next_action_of(lead_id)
        appointment = await uow.crm.next_appointment_of(lead_id, now)
        if appointment is not None and (action is None or appointment.starts_at < action.due_at):
            return NextAction(
                APPOINTMENT,
                appointment.starts_at,
                appointment_id=appointment.id,
                appointment_kind=appointment.kind,
            )
        if action is None:
            return None
        step = action.payload.get("step") if action.kind == SEQUENCE_STEP else None
        sequence = action.payload.get("sequence") if action.kind == SEQUENCE_STEP else None
        return NextAction(
            action.kind,
            action.due_at,
            sequence=str(sequence) if sequence is not None else None,
            step=int(step) + 1 if isinstance(step, int) else None,
            appointment_id=action.appointment_id,
        )

    async def _timeline(
        self, uow: UnitOfWork, lead: Lead, names: dict[str, str], agents: dict[int, str]
    ) -> list[Entry]:
        entries: list[Entry] = []
        for m in await uow.crm.messages_of(lead.id):
            entries.append(
                Entry(m.created_at, "message", f"message.{m.author}", m.text, m.agent_id)
            )
        for a in await uow.crm.activities(lead.id):
            if a.kind == ActivityKind.STAGE:
                continue  # the stage change below says it, with its reason
            entries.append(
                Entry(
                    a.occurred_at,
                    a.kind,
                    a.result or "",
                    a.body,
                    a.agent_id,
                    {
                        **a.details,
                        "duration_minutes": a.duration_minutes,
                        "place": a.place,
                    },
                )
            )
        for c in await uow.crm.stage_changes(lead.id):
            title = f"{names.get(c.from_stage or '', c.from_stage or '—')} → "
            title += names.get(c.to_stage, c.to_stage)
            entries.append(Entry(c.at, "stage_change", title, c.reason or "", c.agent_id))
        for t in await uow.crm.transfers_of(lead.id):
            title = (
                f"{agents.get(t.from_agent_id or 0, '—')} → {agents.get(t.to_agent_id or 0, '—')}"
            )
            entries.append(Entry(t.at, "transfer", title, t.reason, t.from_agent_id))
        for ap in await uow.crm.appointments_of(lead.id):
            entries.append(
                Entry(
                    ap.created_at,
                    "appointment_row",
                    ap.kind,
                    "",
                    ap.agent_id,
                    {"starts_at": ap.starts_at, "state": ap.state},
                )
            )
        for task in await uow.crm.tasks_of(lead.id):
            entries.append(
                Entry(
                    task.created_at,
                    "task",
                    task.title,
                    "",
                    task.owner_id,
                    {"due_at": task.due_at, "done": task.done_at is not None},
                )
            )
        entries.sort(key=lambda e: e.at, reverse=True)
        return entries

    async def activities(self, lead_id: int) -> list[Activity]:
        """Every activity of the lead, newest first.

        Raises:
            NotFound: no such lead.
        """
        async with UnitOfWork(self.db) as uow:
            if await uow.leads.get(lead_id) is None:
                raise NotFound(f"no lead {lead_id}", code="no_lead")
            return await uow.crm.activities(lead_id)

    async def notes(self, lead_id: int, limit: int = 5) -> list[Activity]:
        """The lead's latest notes (the conversation view's card)."""
        async with UnitOfWork(self.db) as uow:
            found = await uow.crm.activities(lead_id)
        return [a for a in found if a.kind == ActivityKind.NOTE][:limit]

    async def _editable(self, uow: UnitOfWork, lead_id: int, agent: Agent) -> Lead:
        lead = await uow.leads.locked(lead_id)
        if lead is None:
            raise NotFound(f"no lead {lead_id}", code="no_lead")
        if not may_edit(agent, lead):
            raise Forbidden("only the lead's owner or an admin may change it", code="not_owner")
        return lead

    # --- editing --------------------------------------------------------------------------------

    async def update(self, lead_id: int, agent: Agent, changes: dict[str, Any]) -> Lead:
        """Change the record's fields, owner, tags or custom fields; each change an activity.

        Raises:
            NotFound, Forbidden (not the owner nor an admin), InvalidInput (a bad value).
        """
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            lead = await self._editable(uow, lead_id, agent)
            await self._apply(uow, lead, agent, changes, now)
            lead.last_activity_at = max(lead.last_activity_at, now)
            await uow.commit()
            return lead

    @staticmethod
    async def _referrer(
        uow: UnitOfWork, lead: Lead, agent: Agent, referrer_id: object, now: datetime
    ) -> None:
        """Who referred the lead: another lead that exists, or nobody (None)."""
        if referrer_id is not None and (
            type(referrer_id) is not int or not 0 < referrer_id < 2**63
        ):
            raise InvalidInput("referred_by_id must be a lead id", code="referred_by")
        if referrer_id == lead.id:
            raise InvalidInput("a lead cannot refer itself", code="referred_by_self")
        if referrer_id is not None and await uow.leads.get(referrer_id) is None:
            raise InvalidInput(f"no lead {referrer_id}", code="referred_by", lead=str(referrer_id))
        if referrer_id != lead.referred_by_id:
            record.activity(
                uow,
                lead.id,
                ActivityKind.FIELD,
                now,
                agent_id=agent.id,
                details={"field": "referred_by_id", "from": lead.referred_by_id, "to": referrer_id},
            )
            lead.referred_by_id = referrer_id

    async def _apply(
        self, uow: UnitOfWork, lead: Lead, agent: Agent, changes: dict[str, Any], now: datetime
    ) -> None:
        for name in EDITABLE:
            if name not in changes:
                continue
            value = changes[name]
            if value is not None and not isinstance(value, str):
                raise InvalidInput(f"{name} must be text", code="field", field=name)
            value = (value or "").strip() or None
            if value is not None and len(value) > LIMITS[name]:
                raise InvalidInput(f"{name} is too long", code="field", field=name)
            if name == "email" and value is not None and "@" not in value:
                raise InvalidInput("email must be an e-mail address", code="email")
            before = getattr(lead, name)
            if before != value:
                setattr(lead, name, value)
                record.activity(
                    uow,
                    lead.id,
                    ActivityKind.FIELD,
                    now,
                    agent_id=agent.id,
                    details={"field": name, "from": before, "to": value},
                )
        if "owner_id" in changes:
            owner_id = changes["owner_id"]
            if owner_id is not None and (not isinstance(owner_id, int) or owner_id < 0):
                raise InvalidInput("owner_id must be an agent id", code="owner")
            owner_id = owner_id or None
            if owner_id is not None:
                found = await uow.agents.get(owner_id)
                if found is None or not found.active:
                    raise InvalidInput(f"no active agent {owner_id}", code="owner")
            if owner_id != lead.owner_id:
                record.activity(
                    uow,
                    lead.id,
                    ActivityKind.OWNER,
                    now,
                    agent_id=agent.id,
                    details={"from": lead.owner_id, "to": owner_id},
                )
                lead.owner_id = owner_id
        if "referred_by_id" in changes:
            await self._referrer(uow, lead, agent, changes["referred_by_id"], now)
        if "tags" in changes:
            raw = changes["tags"]
            if not isinstance(raw, (str, list)):
                raise InvalidInput("tags must be a list or comma-separated text", code="tags")
            tags = clean_tags(raw)
            if tags != list(lead.tags):
                record.activity(
                    uow,
                    lead.id,
                    ActivityKind.TAGS,
                    now,
                    agent_id=agent.id,
                    details={"from": list(lead.tags), "to": tags},
                )
                lead.tags = tags
        if "custom" in changes:
            await self._custom(uow, lead, agent, changes["custom"], now)
        if "stage" in changes:
            stage = changes["stage"]
            if not isinstance(stage, str):
                raise InvalidInput("stage must be text", code="stage", stage=str(stage))
            reason = changes.get("reason")
            await self.pipelines.move_in(
                uow,
                lead,
                stage,
                agent_id=agent.id,
                reason=reason if isinstance(reason, str) else None,
            )

    async def _custom(
        self, uow: UnitOfWork, lead: Lead, agent: Agent, raw: object, now: datetime
    ) -> None:
        if not isinstance(raw, dict):
            raise InvalidInput("custom must be an object", code="custom")
        fields = {f.key: f for f in await uow.crm.custom_fields()}
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            raise InvalidInput(f"unknown custom fields: {', '.join(unknown)}", code="custom")
        values = dict(lead.custom)
        for key, value in raw.items():
            field_ = fields[key]
            checked = custom_value(field_.kind, value, [str(c) for c in field_.choices])
            if values.get(key) == checked:
                continue
            record.activity(
                uow,
                lead.id,
                ActivityKind.FIELD,
                now,
                agent_id=agent.id,
                details={"field": f"custom:{key}", "from": values.get(key), "to": checked},
            )
            if checked is None:
                values.pop(key, None)
            else:
                values[key] = checked
        lead.custom = values

    async def custom_fields(self) -> list[CustomField]:
        async with UnitOfWork(self.db) as uow:
            return await uow.crm.custom_fields()

    async def add_custom_field(
        self, agent: Agent, *, label: str, kind: str, choices: Sequence[str] = ()
    ) -> CustomField:
        """Admins add a field every lead record has (text, number, date or choice).

        Raises:
            InvalidInput: no label, an unknown kind, a choice field without choices, a label
                already used (code "custom_field").
        """
        label = label.strip()
        key = "_".join(label.lower().split())[:64]
        picked = [c.strip() for c in choices if c.strip()]
        if not label or len(label) > 120 or kind not in FIELD_KINDS:
            raise InvalidInput("a label and a kind", code="custom_field")
        if kind == "choice" and not picked:
            raise InvalidInput("a choice field needs choices", code="custom_field")
        async with UnitOfWork(self.db) as uow:
            found = await uow.crm.custom_fields()
            if any(f.key == key for f in found):
                raise InvalidInput("that field exists", code="custom_field")
            row = CustomField(
                key=key,
                label=label,
                kind=kind,
                choices=picked if kind == "choice" else [],
                position=len(found),
            )
            await uow.crm.add(row)
            uow.audit.record(
                "custom_field_added", agent_id=agent.id, detail={"key": key}, at=utcnow()
            )
            await uow.commit()
            return row

    async def move(self, lead_id: int, agent: Agent, stage: str, reason: str | None) -> None:
        """The board's and the lead page's stage change (owner and admins)."""
        await self.update(lead_id, agent, {"stage": stage, "reason": reason})

    # --- activities, notes, deals ---------------------------------------------------------------

    async def log(
        self,
        lead_id: int,
        agent: Agent,
        *,
        kind: str,
        body: str = "",
        occurred_at: datetime | None = None,
        result: str | None = None,
        duration_minutes: int | None = None,
        place: str | None = None,
        next_steps: str | None = None,
    ) -> int:
        """Log a call, meeting, message, e-mail or note by hand.

        Raises:
            NotFound, Forbidden, InvalidInput (an unknown kind or call result, a bad value).
        """
        if kind not in (*LOGGED, ActivityKind.NOTE):
            raise InvalidInput("kind must be call, meeting, message, email or note", code="kind")
        if kind == ActivityKind.CALL and result not in tuple(CallResult):
            raise InvalidInput(
                f"a call's result is one of {', '.join(CallResult)}", code="call_result"
            )
        if kind == ActivityKind.NOTE and not body.strip():
            raise InvalidInput("a note needs text", code="note_text")
        if len(body) > TEXT_MAX or len(next_steps or "") > TEXT_MAX:
            raise InvalidInput("text is too long", code="too_long")
        if duration_minutes is not None and not 0 <= duration_minutes <= 24 * 60:
            raise InvalidInput("duration_minutes must be 0-1440", code="duration")
        if kind == ActivityKind.MEETING and result is not None and len(result) > 40:
            raise InvalidInput("result is too long", code="too_long")
        now = utcnow()
        if occurred_at is not None and abs(occurred_at - now) > timedelta(days=366 * 5):
            raise InvalidInput("occurred_at must be within five years", code="when")
        async with UnitOfWork(self.db) as uow:
            lead = await self._editable(uow, lead_id, agent)
            row = record.activity(
                uow,
                lead.id,
                kind,
                now,
                agent_id=agent.id,
                body=body.strip(),
                occurred_at=occurred_at,
                result=(result or "").strip()[:40] or None,
                duration_minutes=duration_minutes,
                place=(place or "").strip()[:200] or None,
                details={"next_steps": next_steps.strip()} if next_steps else {},
            )
            lead.last_activity_at = max(lead.last_activity_at, now)
            await uow.session.flush()
            await uow.commit()
            return row.id

    async def add_deal(
        self, lead_id: int, agent: Agent, *, product: str, amount: str, currency: str
    ) -> Deal:
        product = product.strip()
        if not product or len(product) > 200:
            raise InvalidInput("a deal needs a product", code="deal_product")
        try:
            value = Decimal(amount.replace(",", "").strip())
        except InvalidOperation:
            raise InvalidInput("amount must be a number", code="deal_amount") from None
        if not value.is_finite() or value < 0 or value >= Decimal("1e12"):
            raise InvalidInput("amount must be a number", code="deal_amount")
        currency = currency.strip().upper()
        if len(currency) != 3 or not currency.isalpha():
            raise InvalidInput("currency is a 3-letter code", code="deal_currency")
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            lead = await self._editable(uow, lead_id, agent)
            deal = Deal(
                lead_id=lead.id,
                agent_id=agent.id,
                product=product,
                amount=value.quantize(Decimal("0.01")),
                currency=currency,
                status=DealStatus.OPEN,
                opened_at=now,
            )
            await uow.crm.add(deal)
            record.activity(
                uow,
                lead.id,
                ActivityKind.DEAL,
                now,
                agent_id=agent.id,
                details={"deal_id": deal.id, "status": "open", "product": product},
            )
            await uow.commit()
            return deal

    async def close_deal(
        self, deal_id: int, agent: Agent, *, won: bool, reason: str | None = None
    ) -> Deal:
        """Win or lose an open deal (lost: a reason from the list).

        Raises:
            NotFound, Forbidden, InvalidInput (no listed reason: "deal_lost_reason"; the deal
                is already closed: "deal_closed").
        """
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            deal = await uow.crm.deal(deal_id)
            if deal is None:
                raise NotFound(f"no deal {deal_id}", code="no_deal")
            lead = await self._editable(uow, deal.lead_id, agent)
            if deal.status != DealStatus.OPEN:
                raise InvalidInput("the deal is already closed", code="deal_closed")
            if won:
                deal.status, deal.lost_reason = DealStatus.WON, None
            else:
                reasons = [r.label for r in await uow.crm.lost_reasons()]
                deal.status, deal.lost_reason = DealStatus.LOST, check_lost_reason(reason, reasons)
            deal.closed_at = now
            record.activity(
                uow,
                lead.id,
                ActivityKind.DEAL,
                now,
                agent_id=agent.id,
                details={
                    "deal_id": deal.id,
                    "status": deal.status,
                    "product": deal.product,
                    **({"reason": deal.lost_reason} if deal.lost_reason else {}),
                },
            )
            await record.emit(
                uow,
                f"deal.{deal.status}",
                {
                    "lead": record.lead_data(lead),
                    "deal": {
                        "id": deal.id,
                        "product": deal.product,
                        "amount": str(deal.amount),
                        "currency": deal.currency,
                        "status": deal.status,
                        "lost_reason": deal.lost_reason,
                    },
                    "agent_id": agent.id,
                },
                now,
            )
            await uow.commit()
            return deal

    async def appointment_outcome(
        self, appointment_id: int, agent: Agent, *, attended: bool
    ) -> Appointment:
        """The lead came to a confirmed appointment (the attended signal's points) or did not.

        Raises:
            NotFound: no such appointment. Forbidden. InvalidInput: it is not confirmed
                (code "no_appointment").
        """
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            appointment = await uow.appointments.get(appointment_id)
            if appointment is None:
                raise NotFound(f"no appointment {appointment_id}", code="no_appointment")
            lead = await self._editable(uow, appointment.lead_id, agent)
            if appointment.state != AppointmentState.CONFIRMED:
                raise InvalidInput("the appointment is not pending", code="no_appointment")
            appointment.state = AppointmentState.DONE if attended else AppointmentState.NO_SHOW
            if attended:
                record.rescore(uow, lead, self.scoring, ATTENDED, now)
            record.activity(
                uow,
                lead.id,
                ActivityKind.APPOINTMENT,
                now,
                agent_id=agent.id,
                details={
                    "appointment_id": appointment.id,
                    "kind": appointment.kind,
                    "attended": attended,
                },
            )
            await uow.commit()
            return appointment

    # --- bulk -----------------------------------------------------------------------------------

    async def bulk(
        self,
        ids: Sequence[int],
        agent: Agent,
        *,
        owner_id: int | None = None,
        tag: str | None = None,
    ) -> int:
        """Assign the leads to an agent (admins) or add a tag (leads the agent may edit);
        how many changed."""
        if owner_id is not None and agent.role != AgentRole.ADMIN:
            raise Forbidden("only admins assign leads in bulk", code="forbidden")
        tags = clean_tags(tag or "")
        if owner_id is None and not tags:
            raise InvalidInput("choose an agent or write a tag", code="bulk")
        now = utcnow()
        changed = 0
        async with UnitOfWork(self.db) as uow:
            if owner_id is not None:
                found = await uow.agents.get(owner_id)
                if found is None or not found.active:
                    raise InvalidInput(f"no active agent {owner_id}", code="owner")
            for lead in await uow.crm.by_ids(list(ids)[:1000]):
                if not may_edit(agent, lead):
                    continue
                changes: dict[str, Any] = {}
                if owner_id is not None and lead.owner_id != owner_id:
                    changes["owner_id"] = owner_id
                if tags and not set(tags) <= set(lead.tags):
                    changes["tags"] = [*lead.tags, *tags]
                if changes:
                    await self._apply(uow, lead, agent, changes, now)
                    changed += 1
            uow.audit.record(
                "leads_bulk_changed",
                agent_id=agent.id,
                detail={"leads": changed, "owner_id": owner_id, "tag": ",".join(tags)},
                at=now,
            )
            await uow.commit()
        return changed

    # --- saved filters --------------------------------------------------------------------------

    async def saved_filters(self, agent: Agent) -> list[SavedFilter]:
        async with UnitOfWork(self.db) as uow:
            return await uow.crm.saved_filters(agent.id)

    async def save_filter(self, agent: Agent, name: str, f: LeadFilter) -> None:
        name = name.strip()
        if not name or len(name) > 120:
            raise InvalidInput("the filter needs a name", code="filter_name")
        async with UnitOfWork(self.db) as uow:
            await uow.crm.add(
                SavedFilter(
                    agent_id=agent.id, name=name, query=f.query(page=None), created_at=utcnow()
                )
            )
            await uow.commit()

    async def delete_filter(self, agent: Agent, filter_id: int) -> None:
        async with UnitOfWork(self.db) as uow:
            if not await uow.crm.delete_saved_filter(filter_id, agent.id):
                raise NotFound(f"no saved filter {filter_id}")
            await uow.commit()

    # --- my tasks, the board --------------------------------------------------------------------

    async def my_tasks(self, agent: Agent, now: datetime | None = None) -> MyTasks:
        now = now or utcnow()
        local = now.astimezone(self.tz)
        today_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        tomorrow = today_start + timedelta(days=1)
        async with UnitOfWork(self.db) as uow:
            tasks = await uow.crm.open_tasks_of(agent.id)
        return MyTasks(
            overdue=[t for t in tasks if t.due_at < now],
            today=[t for t in tasks if now <= t.due_at < tomorrow],
            upcoming=[t for t in tasks if t.due_at >= tomorrow],
        )

    async def board(
        self, pipeline_key: str | None = None, per_column: int = 50
    ) -> tuple[PipelineSpec, list[Column]]:
        key = pipeline_key or self.pipelines.default
        specs = {p.key: p for p in await self.pipelines.all()}
        if key not in specs:
            raise NotFound(f"no pipeline {key}", code="no_pipeline")
        spec = specs[key]
        async with UnitOfWork(self.db) as uow:
            columns = [
                Column(
                    stage.key,
                    stage.name,
                    stage.outcome,
                    stage.reason_required,
                    await uow.crm.in_stage(
                        stage.key, key, key == self.pipelines.default, per_column
                    ),
                )
                for stage in spec.stages
            ]
        return spec, columns


TIERS = tuple(Tier)
