"""Each rule of shared/nlu/datetime.md, with an explicit reference moment (a frozen clock)."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from intents.model import TimeMention
from intents.normalize import normalize
from intents.timeexpr import complete, extract_time, resolve

from .conftest import MX, NOW

BOGOTA = ZoneInfo("America/Bogota")


def when(text: str, now: datetime = NOW, tz: ZoneInfo = MX) -> datetime | None:
    mention = extract_time(normalize(text), now, tz)
    return mention.when if mention else None


def at(day: int, hour: int, minute: int = 0, month: int = 3, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=MX)


# NOW is Wednesday 2026-03-04 10:00 in Mexico City.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # "de la mañana" / "am": morning
        ("mañana a las 7 de la mañana", at(5, 7)),
        ("el jueves a las 6 am", at(5, 6)),
        # "de la tarde" / "de la noche" / "pm": afternoon or evening
        ("mañana a las 8 de la noche", at(5, 20)),
        ("mañana a las 11 de la mañana", at(5, 11)),
        ("el viernes a las 4 de la tarde", at(6, 16)),
        ("mañana 9pm", at(5, 21)),
        # unqualified 1-7: business-hours afternoon; 8-11: morning
        ("mañana a la 1", at(5, 13)),
        ("mañana a las 7", at(5, 19)),
        ("mañana a las 8", at(5, 8)),
        ("mañana a las 11", at(5, 11)),
        # 12 and "mediodía"
        ("mañana a las 12", at(5, 12)),
        ("mañana a mediodía", at(5, 12)),
        # minutes
        ("mañana a las 4 y media", at(5, 16, 30)),
        ("mañana a las 10 y cuarto", at(5, 10, 15)),
        ("mañana a las 5 menos cuarto", at(5, 16, 45)),
        ("mañana a la 1 menos cuarto", at(5, 12, 45)),
        ("mañana a las 16:30", at(5, 16, 30)),
        ("mañana a las 4:30", at(5, 16, 30)),
        # 24-hour form with "hrs" / "h"
        ("mañana a las 17 hrs", at(5, 17)),
        ("mañana a las 9 h", at(5, 9)),
        # an hour only: today if still ahead, else tomorrow
        ("a las 5", at(4, 17)),
        ("a las 9", at(5, 9)),
        ("a las 10", at(5, 10)),  # exactly now is not ahead
        # hoy / mañana / pasado mañana + hour
        ("hoy a las 6", at(4, 18)),
        ("pasado mañana a las 10", at(6, 10)),
        ("mñn a las 3", at(5, 15)),
        # weekday + hour: next such day after today; "este" and "el próximo" alike
        ("el viernes a las 10", at(6, 10)),
        ("el miércoles a las 10", at(11, 10)),  # today is Wednesday
        ("el lunes a las 9", at(9, 9)),
        ("este viernes a las 5", at(6, 17)),
        ("el próximo viernes a las 5", at(6, 17)),
        # weekday of next calendar week (weeks start on Monday)
        ("el viernes de la próxima semana a las 10", at(13, 10)),
        ("la otra semana el martes a las 4", at(10, 16)),
        ("el lunes de la próxima semana a las 9", at(9, 9)),
        # spans
        ("en 2 horas", at(4, 12)),
        ("en media hora", at(4, 10, 30)),
        ("dentro de 20 minutos", at(4, 10, 20)),
        ("en una hora y media", at(4, 11, 30)),
        # day of month, with or without month; past day this month -> next month
        ("el 3 de diciembre a las 4", at(3, 16, month=12)),
        ("el 30 a las 9", at(30, 9)),
        ("el 2 a las 9", at(2, 9, month=4)),
        ("el día 4 a las 6 de la tarde", at(4, 18)),
        ("3/12 a las 10", at(3, 10, month=12)),
        # a month already past this year -> next year
        ("el 15 de enero a las 5", at(15, 17, month=1, year=2027)),
        ("el 15/1 a las 5", at(15, 17, month=1, year=2027)),
        # an hour without "a las" resolves as if it were there
        ("nueve de la noche", at(4, 21)),
        ("mañana nueve de la noche", at(5, 21)),
        ("mañana a 11", at(5, 11)),
        ("el lunes a 10", at(9, 10)),
        ("¿mañana a 11?", at(5, 11)),
        ("mañana a 11, porfa", at(5, 11)),
        ("5 y cuarto", at(4, 17, 15)),
        ("hoy 3 y media", at(4, 15, 30)),
        ("mañana a 5 menos cuarto", at(5, 16, 45)),
        ("6 de la mañana", at(5, 6)),
        ("el viernes 6 de la mañana", at(6, 6)),
        ("una de la tarde", at(4, 13)),
        ("mañana 4 de la madrugada", at(5, 4)),
        ("a 10", at(5, 10)),  # exactly now is not ahead
        ("llámame mañana de 4 a 6", at(5, 16)),
        ("de 4 a 6 pm", at(4, 16)),
    ],
)
def test_resolves(text: str, expected: datetime) -> None:
    assert when(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "¿se puede a 3 meses?",
        "lo pago a 12 meses sin intereses",
        "quedo a 2 cuadras",
        "estoy a 5 minutos",
        "a 5 km de aquí",
        "voy a 2 reuniones hoy",
        "el curso es de 3 a 6 meses",
        "de 9 a 5 trabajo",
        "mañana a una cita",
        "tengo 2 hijos",
    ],
)
def test_numbers_that_are_not_hours(text: str) -> None:
    mention = extract_time(normalize(text), NOW, MX)
    assert mention is None or mention.clock is None


@pytest.mark.parametrize(
    "text",
    [
        "el viernes",  # a day but no hour
        "mañana en la tarde",
        "el 3 de diciembre",
        "la próxima semana",  # vague
        "al rato",
        "luego me marcas",
        "cuando puedas",
        "hoy después de comer",
        "en la noche",
        # a span of a day or more names no hour
        "en 24 horas",
        "en 2 días",
        "dentro de 3 días",
        "en un par de días",
    ],
)
def test_asks(text: str) -> None:
    assert when(text) is None


def test_no_time_named_at_all_gives_no_mention() -> None:
    assert extract_time(normalize("quiero información del curso"), NOW, MX) is None


def test_parts_named_are_kept_for_a_later_message() -> None:
    mention = extract_time(normalize("el viernes"), NOW, MX)
    assert mention == TimeMention(day=date(2026, 3, 6), clock=None, when=None)
    assert mention.needs_clarification
    clock_only = extract_time(normalize("a las 5"), NOW, MX)
    assert clock_only is not None
    assert (clock_only.day, clock_only.clock) == (None, time(17, 0))


def test_complete_fills_the_missing_part() -> None:
    day_only = extract_time(normalize("el viernes"), NOW, MX)
    hour_only = extract_time(normalize("a las 5"), NOW, MX)
    assert day_only is not None
    assert hour_only is not None
    assert complete(day_only, hour_only, NOW, MX).when == at(6, 17)
    assert complete(hour_only, day_only, NOW, MX).when == at(6, 17)
    # what the new message names wins
    monday = extract_time(normalize("mejor el lunes"), NOW, MX)
    assert monday is not None
    assert complete(complete(day_only, hour_only, NOW, MX), monday, NOW, MX).when == at(9, 17)


def test_resolve_day_alone_asks() -> None:
    assert resolve(date(2026, 3, 6), None, NOW, MX).when is None


def test_seconds_are_dropped_and_other_zones_use_the_same_rules() -> None:
    now = datetime(2026, 3, 4, 10, 0, 42, 5, tzinfo=BOGOTA)
    assert when("en 20 minutos", now, BOGOTA) == datetime(2026, 3, 4, 10, 20, tzinfo=BOGOTA)
    assert when("mañana a las 5", now, BOGOTA) == datetime(2026, 3, 5, 17, 0, tzinfo=BOGOTA)


def test_reference_moment_in_another_offset_is_read_in_the_leads_zone() -> None:
    # 02:00 UTC on Thursday is still Wednesday 20:00 in Mexico City.
    now_utc = datetime(2026, 3, 5, 2, 0, tzinfo=ZoneInfo("UTC"))
    assert when("mañana a las 10", now_utc) == at(5, 10)


def test_closest_day_to_the_hour_wins() -> None:
    assert when("hoy no puedo, mejor mañana a las 5") == at(5, 17)
