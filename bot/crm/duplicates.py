"""Duplicates: two leads with one phone (in any of its spellings) or one e-mail (any case) are
probably one person. Merging keeps both histories, every identity and phone, and the most
recent values, and says so on the record."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.core.crm import ActivityKind, clean_tags
from bot.core.errors import InvalidInput, NotFound
from bot.core.model import utcnow
from bot.core.phones import spellings
from bot.crm import record
from bot.followup.sequences import Sequences
from storage.db import Database
from storage.models import Lead, ScoreEvent
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

# What the merged lead takes from whichever of the two was active last (when it has a value).
RECENT = ("name", "email", "address", "campaign", "source", "owner_id", "timezone")
MERGED = "merged"  # the score_events rule that keeps initial + events = score after a merge


@dataclass(frozen=True, slots=True)
class Pair:
    first: Lead
    second: Lead
    why: str  # phone | email


async def same_person(uow: UnitOfWork, lead: Lead) -> list[Lead]:
    """The other leads that look like this one (a phone in any spelling, the e-mail)."""
    numbers: list[str] = []
    for phone in await uow.leads.phones(lead.id):
        numbers += [s for s in spellings(phone) if s not in numbers]
    return await uow.crm.same_person(lead, numbers)


class Duplicates:
    def __init__(self, db: Database, sequences: Sequences, initial_score: int) -> None:
        self.db = db
        self.sequences = sequences
        self.initial_score = initial_score

    async def of(self, lead_id: int) -> list[Lead]:
        async with UnitOfWork(self.db) as uow:
            lead = await uow.leads.get(lead_id)
            if lead is None:
                raise NotFound(f"no lead {lead_id}", code="no_lead")
            return await same_person(uow, lead)

    async def pairs(self, limit: int = 200) -> list[Pair]:
        async with UnitOfWork(self.db) as uow:
            found = await uow.crm.duplicate_pairs(limit)
            leads = {
                lead.id: lead
                for lead in await uow.crm.by_ids([i for a, b, _ in found for i in (a, b)])
            }
        return [Pair(leads[a], leads[b], why) for a, b, why in found if a in leads and b in leads]

    async def merge(self, keep_id: int, other_id: int, *, agent_id: int | None = None) -> Lead:
        """Merge lead `other_id` into `keep_id`; the other lead is gone afterwards.

        Raises:
            InvalidInput: the same lead twice (code "merge_self"). NotFound: either is missing.
        """
        if keep_id == other_id:
            raise InvalidInput("a lead cannot be merged with itself", code="merge_self")
        now = utcnow()
        async with UnitOfWork(self.db) as uow:
            # Both rows locked, the lower id first: two merges cannot deadlock.
            locked = {i: await uow.leads.locked(i) for i in sorted((keep_id, other_id))}
            keep, other = locked[keep_id], locked[other_id]
            if keep is None or other is None:
                missing = keep_id if keep is None else other_id
                raise NotFound(f"no lead {missing}", code="no_lead")
            await self.sequences.leave(uow, other, "merged", now)
            recent, older = (
                (keep, other) if keep.last_activity_at >= other.last_activity_at else (other, keep)
            )
            values = {name: getattr(recent, name) or getattr(older, name) for name in RECENT}
            stage = (recent.stage, recent.pipeline, recent.stage_changed_at, recent.lost_reason)
            score, tier = recent.score, recent.tier
            tags = clean_tags([*keep.tags, *other.tags])
            custom = {**older.custom, **recent.custom}
            first = min(keep.first_contact_at, other.first_contact_at)
            last = max(keep.last_activity_at, other.last_activity_at)
            opted = [t for t in (keep.opted_out_at, other.opted_out_at) if t is not None]
            referred = keep.referred_by_id or other.referred_by_id
            other_name, other_id_kept = other.name, other.id
            await uow.crm.reassign(other.id, keep.id)
            await uow.crm.remove_lead(other)
            for name, value in values.items():
                setattr(keep, name, value)
            keep.stage, keep.pipeline, keep.stage_changed_at, keep.lost_reason = stage
            keep.tags, keep.custom = tags, custom
            keep.first_contact_at, keep.last_activity_at = first, last
            keep.opted_out_at = max(opted) if opted else None
            # One of the two referred the other: the merged lead was referred by nobody.
            keep.referred_by_id = referred if referred not in (keep.id, other_id_kept) else None
            keep.score, keep.tier = score, tier
            # Both leads' score events are now this one's: one more keeps them adding up.
            gap = score - self.initial_score - await uow.crm.sum_scored(keep.id)
            if gap:
                uow.crm.record_score(ScoreEvent(lead_id=keep.id, rule=MERGED, points=gap, at=now))
            record.activity(
                uow,
                keep.id,
                ActivityKind.MERGE,
                now,
                agent_id=agent_id,
                details={"merged_id": other_id_kept, "merged_name": other_name},
            )
            uow.audit.record(
                "leads_merged",
                agent_id=agent_id,
                subject=f"lead:{keep.id}",
                detail={"merged_id": other_id_kept},
                at=now,
            )
            await uow.commit()
        log.info("leads_merged", extra={"lead_id": keep_id, "merged_id": other_id})
        return keep
