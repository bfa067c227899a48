"""When appointments can happen: opening hours, the slot grid, and dates in Spanish. Pure.

Slots sit on a fixed grid from each day's opening time (slot length plus buffer), in the
business time zone; times are stored in UTC. The grid is what makes double booking impossible
to miss: two appointments of one agent can only overlap by starting at the same slot, and a
unique index refuses that.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from intents.normalize import normalize

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


@dataclass(frozen=True, slots=True)
class Opening:
    """When the business takes appointments (from settings.scheduling)."""

    hours: Mapping[int, tuple[time, time] | None]  # by weekday, Monday = 0; None = closed
    holidays: frozenset[date] = frozenset()
    slot_minutes: int = 30
    buffer_minutes: int = 0
    min_notice_minutes: int = 30
    horizon_days: int = 60


class Hours:
    """Opening hours and the slot grid (pure: no I/O, no clock)."""

    def __init__(self, opening: Opening, tz: ZoneInfo) -> None:
        self.opening = opening
        self.tz = tz
        self.length = timedelta(minutes=opening.slot_minutes)
        self.step = timedelta(minutes=opening.slot_minutes + opening.buffer_minutes)
        self.notice = timedelta(minutes=opening.min_notice_minutes)
        self.horizon = timedelta(days=opening.horizon_days)

    def day_slots(self, day: date) -> Iterator[datetime]:
        opening = self.opening.hours.get(day.weekday())
        if opening is None or day in self.opening.holidays:
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

    def slots_between(self, start: datetime, end: datetime) -> list[tuple[float, datetime]]:
        """The slots in [start, end), in time order, each with its timestamp.

        Compared by timestamps: two datetimes of different time zones compare through both
        offsets, a microsecond or so each on a two-week window's 250 slots."""
        first, last = start.timestamp(), end.timestamp()
        found: list[tuple[float, datetime]] = []
        day = start.astimezone(self.tz).date()
        while datetime.combine(day, time(0), self.tz).timestamp() < last:
            for slot in self.day_slots(day):
                if first <= (at := slot.timestamp()) < last:
                    found.append((at, slot))
            day += timedelta(days=1)
        found.sort()  # (across a DST change, wall-clock order need not be time order)
        return found

    # --- business time: when people are there (the opening hours, not the slot grid) ------

    def _opening(self, day: date) -> tuple[datetime, datetime] | None:
        span = self.opening.hours.get(day.weekday())
        if span is None or day in self.opening.holidays:
            return None
        return datetime.combine(day, span[0], self.tz), datetime.combine(day, span[1], self.tz)

    def is_open(self, at: datetime) -> bool:
        span = self._opening(at.astimezone(self.tz).date())
        return span is not None and span[0] <= at < span[1]

    def next_opening(self, at: datetime, *, within_days: int = 31) -> datetime | None:
        """`at` itself if open then, else when the business opens next (None: closed for a
        month, e.g. no hours configured)."""
        day = at.astimezone(self.tz).date()
        for _ in range(within_days + 1):
            span = self._opening(day)
            if span is not None and at < span[1]:
                return max(at, span[0])
            day += timedelta(days=1)
        return None

    def business_seconds(self, start: datetime, end: datetime) -> float:
        """How much of [start, end) falls inside opening hours."""
        total = 0.0
        day = start.astimezone(self.tz).date()
        while datetime.combine(day, time(0), self.tz) < end:
            span = self._opening(day)
            if span is not None:
                overlap = min(end, span[1]).timestamp() - max(start, span[0]).timestamp()
                total += max(0.0, overlap)
            day += timedelta(days=1)
        return total

    def after_business(self, start: datetime, span: timedelta) -> datetime | None:
        """The moment `span` of business time after `start` (None when never open)."""
        left = span.total_seconds()
        at = self.next_opening(start)
        while at is not None:
            opening = self._opening(at.astimezone(self.tz).date())
            assert opening is not None
            room = opening[1].timestamp() - at.timestamp()
            if left <= room:
                return datetime.fromtimestamp(at.timestamp() + left, self.tz)
            left -= room
            at = self.next_opening(opening[1])
        return None


def availability(
    hours: Hours,
    agents: Sequence[int | None],
    taken: Set[tuple[int | None, datetime]],
    requested: datetime,
    now: datetime,
    *,
    window: tuple[datetime, datetime],
    offer: int,
) -> Availability:
    """Is `requested` a bookable slot one of `agents` has free? If not, the `offer` free slots
    in `window` nearest to it (the earlier of two as near), in time order. `taken` holds the
    (agent, start) booked."""

    def free(at: datetime) -> list[int | None]:
        return [agent for agent in agents if (agent, at) not in taken]

    if hours.bookable(requested, now) and (ready := free(requested)):
        return Availability(requested, Slot(requested, ready[0]))
    # Timestamps, not datetime subtraction: within one time zone Python subtracts wall
    # clocks, which is an hour off across a DST change.
    grid = hours.slots_between(*window)
    target = requested.timestamp()
    # Out from `requested` both ways, nearest first: only the slots it takes to find `offer`
    # free ones are looked up (a two-week window holds some 250).
    after = bisect.bisect_left(grid, (target,))
    before = after - 1
    nearest: list[Slot] = []
    while len(nearest) < offer and (before >= 0 or after < len(grid)):
        if after == len(grid) or (
            before >= 0 and target - grid[before][0] <= grid[after][0] - target
        ):
            at = grid[before][1]
            before -= 1
        else:
            at = grid[after][1]
            after += 1
        if ready := free(at):
            nearest.append(Slot(at, ready[0]))
    return Availability(requested, None, tuple(sorted(nearest, key=lambda slot: slot.at)))


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
        return self.detect_normalised(normalize(text))

    def detect_normalised(self, normalised: str) -> str | None:
        """`detect` of a text normalised already (`NluResult.normalised`)."""
        padded = f" {normalised} "
        for kind, words in self.words.items():
            if any(word in padded for word in words):
                return kind
        return None
