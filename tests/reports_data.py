"""A small sales history whose every report figure was computed by hand (November 2026, in
America/Mexico_City, UTC−6 all year). The expected values live in tests/integration/test_reports.py.

Leads (first contact, local time):
  L1 Mon Nov 30 23:30 email    score 40 hot    Ana   telegram  (05:30 UTC on Dec 1)
  L2 Tue Dec 1 00:10  email    score 20 cold   Beto  webchat
  L3 Tue Nov 10 10:00 facebook score 35 warm   Ana   webchat   awareness→interest→purchase
  L4 Mon Nov 2 09:00  —        score 10 disq.  —     whatsapp  opted out Nov 6
  L5 Tue Oct 20 10:00 email    score 45 hot    Beto  webchat   …→intent Nov 5→purchase Nov 15
  L6 Sun Nov 15 12:00 email    score 30 warm   Ana   webchat
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from bot.core.model import AgentRole
from storage.db import Database
from storage.models import (
    Activity,
    Agent,
    Appointment,
    CacEntry,
    ChannelIdentity,
    Conversation,
    Deal,
    Handoff,
    Lead,
    Message,
    ScheduledAction,
    SequenceRun,
    StageChange,
    Task,
)

MX = ZoneInfo("America/Mexico_City")
NOW = datetime(2026, 12, 10, 18, 0, tzinfo=UTC)


def local(month: int, day: int, hour: int = 10, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=MX)


@dataclass
class History:
    ana: int
    beto: int
    leads: dict[str, int]


async def build(db: Database) -> History:
    async with db.session() as session:

        def add(row: Any) -> Any:
            session.add(row)
            return row

        ana = add(Agent(name="Ana", token_hash="a" * 64, role=AgentRole.AGENT))
        beto = add(Agent(name="Beto", token_hash="b" * 64, role=AgentRole.AGENT))
        await session.flush()
        spec = {
            # name: (first contact, source, score, tier, owner, channel, stage, last activity)
            "L1": (
                local(11, 30, 23, 30),
                "email",
                40,
                "hot",
                ana,
                "telegram",
                "awareness",
                local(11, 30, 23, 45),
            ),
            "L2": (
                local(12, 1, 0, 10),
                "email",
                20,
                "cold",
                beto,
                "webchat",
                "awareness",
                local(12, 1, 0, 10),
            ),
            "L3": (
                local(11, 10),
                "facebook",
                35,
                "warm",
                ana,
                "webchat",
                "purchase",
                local(11, 20),
            ),
            "L4": (
                local(11, 2, 9),
                None,
                10,
                "disqualified",
                None,
                "whatsapp",
                "awareness",
                local(11, 6),
            ),
            "L5": (local(10, 20), "email", 45, "hot", beto, "webchat", "purchase", local(11, 15)),
            "L6": (
                local(11, 15, 12),
                "email",
                30,
                "warm",
                ana,
                "webchat",
                "awareness",
                local(11, 17),
            ),
        }
        leads: dict[str, Lead] = {}
        conversations: dict[str, Conversation] = {}
        for name, (first, source, score, tier, owner, channel, stage, last) in spec.items():
            lead = add(
                Lead(
                    name=name,
                    source=source,
                    stage=stage,
                    score=score,
                    tier=tier,
                    owner_id=owner.id if owner else None,
                    timezone="America/Mexico_City",
                    first_contact_at=first,
                    last_activity_at=last,
                )
            )
            await session.flush()
            identity = add(
                ChannelIdentity(lead_id=lead.id, channel=channel, external_id=f"x-{name}")
            )
            await session.flush()
            conversations[name] = add(
                Conversation(
                    lead_id=lead.id, identity_id=identity.id, channel=channel, created_at=first
                )
            )
            leads[name] = lead
        await session.flush()
        leads["L4"].opted_out_at = local(11, 6)

        def moved(lead: str, to: str, at: datetime, before: str | None = None) -> None:
            add(StageChange(lead_id=leads[lead].id, from_stage=before, to_stage=to, at=at))

        moved("L1", "awareness", local(11, 30, 23, 30))
        moved("L2", "awareness", local(12, 1, 0, 10))
        moved("L3", "awareness", local(11, 10))
        moved("L3", "interest", local(11, 12), "awareness")
        moved("L3", "purchase", local(11, 20), "interest")
        moved("L4", "awareness", local(11, 2, 9))
        moved("L5", "awareness", local(10, 20))
        moved("L5", "interest", local(10, 25), "awareness")
        moved("L5", "intent", local(11, 5), "interest")
        moved("L5", "purchase", local(11, 15), "intent")
        moved("L6", "awareness", local(11, 15, 12))

        def deal(lead: str, amount: str, status: str, closed: datetime, agent: Agent) -> None:
            add(
                Deal(
                    lead_id=leads[lead].id,
                    agent_id=agent.id,
                    product="Plan",
                    amount=Decimal(amount),
                    currency="MXN",
                    status=status,
                    opened_at=closed,
                    closed_at=closed,
                )
            )

        deal("L3", "1000.00", "won", local(11, 20), ana)
        deal("L5", "500.50", "won", local(11, 15), beto)
        deal("L4", "300.00", "lost", local(11, 25), beto)
        deal("L1", "200.00", "won", local(11, 30, 23, 59), ana)
        add(  # still open: no revenue
            Deal(
                lead_id=leads["L6"].id,
                product="Plan",
                amount=Decimal(999),
                currency="MXN",
                opened_at=local(11, 16),
            )
        )

        def said(
            lead: str,
            at: datetime,
            intent: str | None = None,
            *,
            author: str = "lead",
            agent: Agent | None = None,
        ) -> None:
            add(
                Message(
                    conversation_id=conversations[lead].id,
                    channel=conversations[lead].channel,
                    direction="in" if author == "lead" else "out",
                    author=author,
                    agent_id=agent.id if agent else None,
                    text="…",
                    intent=intent,
                    status="received" if author == "lead" else "sent",
                    created_at=at,
                )
            )

        said("L5", local(10, 21), "objection.price")  # October: not counted
        said("L4", local(11, 3), "objection.price")  # then nothing: quiet
        said("L3", local(11, 11), "objection.price")  # bought on Nov 20
        said("L3", local(11, 11, 10, 30), author="agent", agent=ana)
        said("L3", local(11, 12, 9), author="agent", agent=ana)
        said("L3", local(11, 12, 9, 30), "objection.price", author="bot")  # not a lead's
        said("L6", local(11, 16), "objection.think")  # wrote again on Nov 17: replied
        said("L6", local(11, 16, 12, 50), author="agent", agent=ana)
        said("L6", local(11, 17, 12), "greeting")
        said("L1", local(11, 30, 23, 40), "objection.think")  # booked on Dec 1
        await session.flush()

        def appointment(
            lead: str, created: datetime, starts: datetime, state: str, agent: Agent | None
        ) -> None:
            add(
                Appointment(
                    lead_id=leads[lead].id,
                    agent_id=agent.id if agent else None,
                    kind="call",
                    starts_at=starts,
                    ends_at=starts.replace(minute=30),
                    state=state,
                    created_at=created,
                )
            )

        appointment("L3", local(11, 11), local(11, 13), "done", ana)
        appointment("L6", local(11, 16), local(11, 18), "no_show", ana)
        appointment("L1", local(12, 1, 4), local(12, 3), "confirmed", ana)
        appointment("L4", local(10, 30), local(11, 2, 11), "cancelled", None)

        for when in (local(11, 12), local(11, 13), local(11, 14), local(12, 2)):
            add(Activity(lead_id=leads["L3"].id, agent_id=ana.id, kind="call", occurred_at=when))
        add(
            Activity(
                lead_id=leads["L3"].id, agent_id=ana.id, kind="stage", occurred_at=local(11, 12)
            )
        )
        add(
            Activity(
                lead_id=leads["L5"].id, agent_id=beto.id, kind="note", occurred_at=local(11, 20)
            )
        )

        add(
            Handoff(
                conversation_id=conversations["L3"].id,
                lead_id=leads["L3"].id,
                reason="asked",
                priority=1,
                state="claimed",
                agent_id=ana.id,
                requested_at=local(11, 11, 10),
                claimed_at=local(11, 11, 10, 10),
            )
        )
        add(
            Handoff(
                conversation_id=conversations["L6"].id,
                lead_id=leads["L6"].id,
                reason="asked",
                priority=1,
                state="claimed",
                agent_id=ana.id,
                requested_at=local(11, 16, 12),
                claimed_at=local(11, 16, 12, 20),
            )
        )

        add(Task(lead_id=leads["L6"].id, owner_id=ana.id, title="Llamar", due_at=local(12, 5)))
        add(
            Task(
                lead_id=leads["L6"].id,
                owner_id=ana.id,
                title="Hecha",
                due_at=local(11, 5),
                done_at=local(11, 5),
            )
        )
        add(Task(lead_id=leads["L2"].id, owner_id=beto.id, title="Luego", due_at=local(12, 20)))
        await session.flush()

        async def run(lead: str, sequence: str, fired: list[datetime | None]) -> None:
            row = add(SequenceRun(lead_id=leads[lead].id, sequence=sequence, started_at=fired[0]))
            await session.flush()
            for step, when in enumerate(fired):
                add(
                    ScheduledAction(
                        kind="sequence.step",
                        due_at=when or NOW,
                        payload={"sequence": sequence, "step": step},
                        state="done" if when else "pending",
                        lead_id=leads[lead].id,
                        sequence_run_id=row.id,
                        fired_at=when,
                    )
                )

        await run("L6", "warm", [local(11, 17, 2), local(11, 19), local(11, 21)])
        await run("L4", "cold", [local(11, 5), None])
        await run("L5", "hot", [local(10, 22)])

        add(CacEntry(source="email", month=date(2026, 11, 1), amount=Decimal(600), currency="MXN"))
        add(
            CacEntry(
                source="facebook", month=date(2026, 11, 1), amount=Decimal(300), currency="MXN"
            )
        )
        add(CacEntry(source="email", month=date(2026, 10, 1), amount=Decimal(100), currency="MXN"))
        await session.commit()
        return History(ana.id, beto.id, {name: lead.id for name, lead in leads.items()})
