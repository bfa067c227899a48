"""Who gets a conversation handed off: the lead's owner, else round robin.

Round robin among agents who are available (on shift) and under their capacity, the one
assigned longest ago first. Nobody eligible: the conversation waits in the queue for whoever
takes it, and every agent in the console is told.
"""

from __future__ import annotations

from datetime import datetime

from storage.models import Agent, Lead
from storage.uow import UnitOfWork


async def assign(uow: UnitOfWork, lead: Lead, now: datetime) -> Agent | None:
    candidates = await uow.accounts.assignable()
    if not candidates:
        return None
    load = await uow.accounts.load([agent.id for agent in candidates])
    free = [agent for agent in candidates if load[agent.id] < agent.capacity]
    owner = next((agent for agent in free if agent.id == lead.owner_id), None)
    chosen = owner or (free[0] if free else None)
    if chosen is not None:
        chosen.last_assigned_at = now
    return chosen
