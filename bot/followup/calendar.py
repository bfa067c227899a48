"""Who is free when: the slot grid (`bot.core.slots`) against the appointments booked."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.core.slots import Availability, Hours, availability
from storage.models import Lead
from storage.uow import UnitOfWork


class Calendar:
    """Looks up agents and booked slots; `bot.core.slots.availability` decides."""

    def __init__(self, hours: Hours, offer: int) -> None:
        self.hours = hours
        self.offer = offer

    async def agents_for(self, uow: UnitOfWork, lead: Lead, now: datetime) -> list[int | None]:
        """The lead's owner; else every active agent, least booked first (round robin); else
        the team's calendar (None) when there are no agents."""
        if lead.owner_id is not None:
            return [lead.owner_id]
        agents: list[int | None] = list(await uow.appointments.agents_by_load(now))
        return agents or [None]

    async def check(
        self, uow: UnitOfWork, lead: Lead, requested: datetime, now: datetime
    ) -> Availability:
        """Is `requested` free for one of the lead's agents? If not, the nearest free slots."""
        agents = await self.agents_for(uow, lead, now)
        start = max(now + self.hours.notice, requested - timedelta(days=2))
        end = min(now + self.hours.horizon, requested + timedelta(days=14))
        taken = await uow.appointments.taken(agents, start, end + self.hours.step)
        return availability(
            self.hours, agents, taken, requested, now, window=(start, end), offer=self.offer
        )
