"""When appointments can happen: opening hours, slots, free agents, and dates in Spanish.

Slots sit on a fixed grid from each day's opening time (slot length plus buffer), in the
business time zone; times are stored in UTC. The grid is what makes double booking impossible
to miss: two appointments of one agent can only overlap by starting at the same slot, and a
unique index refuses that.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from bot.settings import SchedulingSettings
from intents.normalize import normalize
from storage.models import Agent, Appointment, AppointmentState, Lead
from storage.uow import UnitOfWork

_DAYS = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")
_MONTHS = (
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "octubre",
    "noviembre",
    "diciembre",
)


def spanish_day(day: date, today: date | None = None) -> str:
    """ "hoy", "mañana" or "el jueves 26 de noviembre"."""
    if today is not None and day == today:
        return "hoy"
    if today is not None and day == today + timedelta(days=1):
        return "mañana"
    return f"el {_DAYS[day.weekday()]} {day.day} de {_MONTHS[day.month - 1]}"


def spanish_moment(at: datetime, tz: ZoneInfo, now: datetime | None = None) -> str:
    """ "el jueves 26 de noviembre a las 17:00" in the lead's time zone."""
    local = at.astimezone(tz)
    today = now.astimezone(tz).date() if now is not None else None
    return f"{spanish_day(local.date(), today)} a las {local:%H:%M}"


def quiet_until(now: datetime, tz: ZoneInfo, quiet: tuple[time, time] | None) -> datetime | None:
    """When quiet hours end, if `now` falls in them, in `tz` (the lead's time zone).

    Works on wall-clock times, so the morning is 08:00 local on a day a DST change moves.
    """
    if quiet is None:
        return None
    start, end = quiet
    local = now.astimezone(tz)
    clock = local.time()
    inside = (start <= clock or clock < end) if start > end else (start <= clock < end)
    if not inside:
        return None
    day = local.date() if clock < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tz)


@dataclass(frozen=True, slots=True)
class Slot:
    at: datetime
    agent_id: int | None  # None: the team's calendar (no agents configured)


@dataclass(frozen=True, slots=True)
class Availability:
    """The answer to "can we meet then?": the slot and agent if free, else nearby free slots."""

    requested: datetime
    free: Slot | None
    alternatives: tuple[Slot, ...] = ()


class Hours:
    """Opening hours and the slot grid (pure: no I/O, no clock)."""

    def __init__(self, settings: SchedulingSettings, tz: ZoneInfo) -> None:
        self.settings = settings
        self.tz = tz
        self.length = timedelta(minutes=settings.slot_minutes)
        self.step = timedelta(minutes=settings.slot_minutes + settings.buffer_minutes)
        self.notice = timedelta(minutes=settings.min_notice_minutes)
        self.horizon = timedelta(days=settings.horizon_days)
        self.holidays = frozenset(settings.holidays)

    def day_slots(self, day: date) -> Iterator[datetime]:
        opening = self.settings.opening(day.weekday())
        if opening is None or day in self.holidays:
            return
        start = datetime.combine(day, opening[0], self.tz)
        close = datetime.combine(day, opening[1], self.tz)
        at = start
        while at + self.length <= close:
            yield at
            at += self.step

    def is_slot(self, at: datetime) -> bool:
        local = at.astimezone(self.tz)
        return any(slot == local for slot in self.day_slots(local.date()))

    def bookable(self, at: datetime, now: datetime) -> bool:
        return now + self.notice <= at <= now + self.horizon and self.is_slot(at)

    def slots_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        day = start.astimezone(self.tz).date()
        while datetime.combine(day, time(0), self.tz) < end:
            for slot in self.day_slots(day):
                if start <= slot < end:
                    yield slot
            day += timedelta(days=1)


class Calendar:
    """Who is free when, from the appointments in the database."""

    def __init__(self, hours: Hours, offer: int) -> None:
        self.hours = hours
        self.offer = offer

    async def agents_for(self, uow: UnitOfWork, lead: Lead, now: datetime) -> list[int | None]:
        """The lead's owner; else every active agent, least booked first (round robin)."""
        if lead.owner_id is not None:
            return [lead.owner_id]
        upcoming = (
            select(Agent.id, func.count(Appointment.id))
            .outerjoin(
                Appointment,
                (Appointment.agent_id == Agent.id)
                & (Appointment.state == AppointmentState.CONFIRMED)
                & (Appointment.starts_at >= now),
            )
            .where(Agent.active.is_(True))
            .group_by(Agent.id)
            .order_by(func.count(Appointment.id), Agent.id)
        )
        agents: list[int | None] = [row[0] for row in await uow.session.execute(upcoming)]
        return agents or [None]

    async def taken(
        self, uow: UnitOfWork, agents: Sequence[int | None], start: datetime, end: datetime
    ) -> set[tuple[int | None, datetime]]:
        statement = select(Appointment.agent_id, Appointment.starts_at).where(
            Appointment.state == AppointmentState.CONFIRMED,
            Appointment.starts_at >= start,
            Appointment.starts_at < end,
        )
        rows = await uow.session.execute(statement)
        wanted = set(agents)
        return {(agent, at) for agent, at in rows if agent in wanted}

    async def check(
        self, uow: UnitOfWork, lead: Lead, requested: datetime, now: datetime
    ) -> Availability:
        """Is `requested` free for one of the lead's agents? If not, the nearest free slots."""
        agents = await self.agents_for(uow, lead, now)
        window_start = max(now + self.hours.notice, requested - timedelta(days=2))
        window_end = min(now + self.hours.horizon, requested + timedelta(days=14))
        taken = await self.taken(uow, agents, window_start, window_end + self.hours.step)

        def free(at: datetime) -> list[int | None]:
            return [agent for agent in agents if (agent, at) not in taken]

        if self.hours.bookable(requested, now) and (ready := free(requested)):
            return Availability(requested, Slot(requested, ready[0]))
        nearby = [
            Slot(at, ready[0])
            for at in self.hours.slots_between(window_start, window_end)
            if (ready := free(at))
        ]
        # Timestamps, not datetime subtraction: within one time zone Python subtracts wall
        # clocks, which is an hour off across a DST change.
        nearby.sort(key=lambda slot: (abs(slot.at.timestamp() - requested.timestamp()), slot.at))
        choice = sorted(nearby[: self.offer], key=lambda slot: slot.at)
        return Availability(requested, None, tuple(choice))


class KindWords:
    """Tells a visit or a meeting from a call by the words of the message (config data)."""

    def __init__(self, words: Mapping[Any, Sequence[str]]) -> None:
        # Compared after the matcher's own normalisation, so "reunión" finds "reunion" and
        # "el depa" finds "el departamento".
        self.words = {
            kind: tuple(f" {normalize(word)} " for word in kind_words)
            for kind, kind_words in words.items()
        }

    def detect(self, text: str) -> str | None:
        padded = f" {normalize(text)} "
        for kind, words in self.words.items():
            if any(word in padded for word in words):
                return kind
        return None
