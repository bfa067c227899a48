"""Opening hours, the slot grid and dates in Spanish (pure, no database)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.core.slots import (
    Hours,
    KindWords,
    Slot,
    availability,
    quiet_until,
    spanish_day,
    spanish_moment,
)
from bot.settings import load_settings

MX = ZoneInfo("America/Mexico_City")
SETTINGS = load_settings(environ={}).scheduling
HOURS = Hours(SETTINGS.grid(), MX)
THURSDAY = datetime(2026, 11, 26, 10, 0, tzinfo=MX)


def test_weekday_slots_follow_opening_hours() -> None:
    slots = list(HOURS.day_slots(date(2026, 11, 26)))
    assert slots[0] == datetime(2026, 11, 26, 9, 0, tzinfo=MX)
    assert slots[-1] == datetime(2026, 11, 26, 18, 30, tzinfo=MX)
    assert len(slots) == 20


def test_saturday_is_short_sunday_and_holidays_closed() -> None:
    assert len(list(HOURS.day_slots(date(2026, 11, 28)))) == 8  # 10:00-14:00
    assert list(HOURS.day_slots(date(2026, 11, 29))) == []  # Sunday
    assert list(HOURS.day_slots(date(2026, 12, 25))) == []  # holiday in config.yaml


def test_buffer_spaces_the_grid() -> None:
    spaced = Hours(SETTINGS.model_copy(update={"buffer_minutes": 15}).grid(), MX)
    slots = list(spaced.day_slots(date(2026, 11, 26)))
    assert slots[1] - slots[0] == timedelta(minutes=45)


@pytest.mark.parametrize(
    ("at", "bookable"),
    [
        (datetime(2026, 11, 26, 17, 0, tzinfo=MX), True),
        (datetime(2026, 11, 26, 17, 10, tzinfo=MX), False),  # off the grid
        (datetime(2026, 11, 26, 10, 0, tzinfo=MX), False),  # now: under the minimum notice
        (datetime(2026, 11, 26, 10, 30, tzinfo=MX), True),
        (datetime(2026, 11, 26, 21, 0, tzinfo=MX), False),  # closed
        (datetime(2026, 11, 29, 11, 0, tzinfo=MX), False),  # Sunday
        (datetime(2027, 3, 1, 10, 0, tzinfo=MX), False),  # beyond the horizon
    ],
)
def test_bookable(at: datetime, bookable: bool) -> None:
    assert HOURS.bookable(at, THURSDAY) is bookable


def test_slots_in_another_zone_are_the_same_instants() -> None:
    bogota = datetime(2026, 11, 26, 18, 0, tzinfo=ZoneInfo("America/Bogota"))
    assert HOURS.is_slot(bogota)  # 17:00 in Mexico City


@pytest.mark.parametrize(
    ("at", "text"),
    [
        (datetime(2026, 11, 26, 17, 0, tzinfo=MX), "hoy a las 17:00"),
        (datetime(2026, 11, 27, 13, 30, tzinfo=MX), "mañana a las 13:30"),
        (datetime(2026, 12, 3, 9, 0, tzinfo=MX), "el jueves 3 de diciembre a las 09:00"),
    ],
)
def test_dates_read_in_spanish(at: datetime, text: str) -> None:
    assert spanish_moment(at, MX, THURSDAY) == text


def test_dates_in_the_leads_time_zone() -> None:
    at = datetime(2026, 12, 3, 15, 0, tzinfo=MX)
    assert spanish_moment(at, ZoneInfo("America/Bogota")) == "el jueves 3 de diciembre a las 16:00"
    assert spanish_day(date(2026, 12, 6)) == "el domingo 6 de diciembre"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("¿puedo pasar a su oficina el viernes?", "visit"),
        ("quiero ir a ver el depa mañana", "visit"),
        ("¿podemos vernos el lunes?", "meeting"),
        ("Una reunión el martes", "meeting"),
        ("márcame mañana a las 5", None),
    ],
)
def test_kind_of_appointment_from_the_words(text: str, kind: str | None) -> None:
    assert KindWords(SETTINGS.kind_words).detect(text) == kind


QUIET = (time(21, 0), time(8, 0))


@pytest.mark.parametrize(
    ("local", "until"),
    [
        (datetime(2026, 11, 26, 22, 30), datetime(2026, 11, 27, 8, 0)),
        (datetime(2026, 11, 27, 3, 0), datetime(2026, 11, 27, 8, 0)),
        (datetime(2026, 11, 27, 8, 0), None),
        (datetime(2026, 11, 27, 20, 59), None),
    ],
)
def test_quiet_hours_wait_for_the_morning(local: datetime, until: datetime | None) -> None:
    now = local.replace(tzinfo=MX)
    expected = until.replace(tzinfo=MX) if until else None
    assert quiet_until(now, MX, QUIET) == expected


def test_quiet_hours_across_a_dst_change() -> None:
    # Chile moves its clocks forward at midnight between 5 and 6 September 2026 (UTC-4 -> -3):
    # the morning after is still 08:00 on the wall clock, one hour earlier in UTC.
    santiago = ZoneInfo("America/Santiago")
    now = datetime(2026, 9, 5, 23, 0, tzinfo=santiago)
    morning = quiet_until(now, santiago, QUIET)
    assert morning is not None
    assert morning.astimezone(santiago).replace(tzinfo=None) == datetime(2026, 9, 6, 8, 0)
    assert morning.utcoffset() == timedelta(hours=-3)
    assert now.utcoffset() == timedelta(hours=-4)
    # Nine hours on the wall clock, eight in real time (compare instants, not wall clocks).
    assert morning.astimezone(UTC) - now.astimezone(UTC) == timedelta(hours=8)


def test_business_time_counts_only_opening_hours() -> None:
    # Thursday 18:30: half an hour left today (closes 19:00), opens Friday 09:00.
    evening = datetime(2026, 11, 26, 18, 30, tzinfo=MX)
    assert HOURS.is_open(evening)
    assert not HOURS.is_open(evening + timedelta(hours=1))
    assert HOURS.next_opening(evening + timedelta(hours=1)) == datetime(
        2026, 11, 27, 9, 0, tzinfo=MX
    )
    friday_930 = datetime(2026, 11, 27, 9, 30, tzinfo=MX)
    assert HOURS.business_seconds(evening, friday_930) == 60 * 60  # 30 min + 30 min
    assert HOURS.after_business(evening, timedelta(minutes=45)) == datetime(
        2026, 11, 27, 9, 15, tzinfo=MX
    )


def test_business_time_skips_closed_days() -> None:
    saturday_1330 = datetime(2026, 11, 28, 13, 30, tzinfo=MX)  # Saturday 10-14, Sunday closed
    assert HOURS.after_business(saturday_1330, timedelta(hours=1)) == datetime(
        2026, 11, 30, 9, 30, tzinfo=MX
    )


def nearest_by_sorting(
    hours: Hours,
    agents: list[int | None],
    taken: set[tuple[int | None, datetime]],
    requested: datetime,
    window: tuple[datetime, datetime],
    offer: int,
) -> tuple[Slot, ...]:
    """The definition `availability` walks out from `requested` to meet: every free slot of
    the window, sorted by distance (then time), the first `offer`, in time order."""
    free = [
        Slot(at, ready[0])
        for _, at in hours.slots_between(*window)
        if (ready := [agent for agent in agents if (agent, at) not in taken])
    ]
    free.sort(key=lambda slot: (abs(slot.at.timestamp() - requested.timestamp()), slot.at))
    return tuple(sorted(free[:offer], key=lambda slot: slot.at))


@pytest.mark.parametrize("zone", ["America/Mexico_City", "America/Santiago", "Europe/Madrid"])
def test_the_nearest_free_slots_are_those_sorting_every_slot_gives(zone: str) -> None:
    # Random requests (on the grid, off it, between slots, closed days) and bookings, in
    # zones with and without DST changes, against the plain definition.
    tz = ZoneInfo(zone)
    hours = Hours(SETTINGS.model_copy(update={"buffer_minutes": 10}).grid(), tz)
    rng = random.Random(zone)
    now = datetime(2026, 3, 20, 8, 0, tzinfo=UTC)
    for _ in range(300):
        requested = now + timedelta(minutes=rng.randrange(0, 60 * 24 * 50, rng.choice((5, 30))))
        window = (now + timedelta(minutes=30), requested + timedelta(days=rng.choice((1, 3, 14))))
        teams: list[list[int | None]] = [[None], [1, 2], [3]]
        agents = rng.choice(teams)
        grid = [at for _, at in hours.slots_between(*window)]
        taken = {(rng.choice(agents), at) for at in rng.sample(grid, k=len(grid) * 4 // 5)}
        taken |= {(agent, at) for agent in agents for at in grid if rng.random() < 0.3}
        offer = rng.choice((1, 3, 5))
        found = availability(hours, agents, taken, requested, now, window=window, offer=offer)
        if found.free is None:
            expected = nearest_by_sorting(hours, agents, taken, requested, window, offer)
            assert found.alternatives == expected, (requested, window)
        else:
            assert found.free.at == requested and hours.bookable(requested, now)
