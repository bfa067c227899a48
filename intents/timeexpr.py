"""When does the prospect want to be called or met? The rules of `nlu/datetime.md`, exactly.

Input is normalised text (lower case, no accents, "mñn" already "manana"). The result keeps the
parts the message names (`day`, `clock`) and the moment they resolve to (`when`), or None for
`when` when the bot must ask: a day without an hour, an hour-less "en la tarde", vague words.

Rules, in the order they apply:

* "en 2 horas", "en media hora", "dentro de 20 minutos": now plus that span. A span of a day or
  more ("en 24 horas", "en 2 días") names no hour: ask.
* An hour: "am" / "de la mañana" (or "de la madrugada") is morning; "pm" / "de la tarde" /
  "de la noche" is afternoon or evening; with "hrs"/"h" it is 24-hour; unqualified 1-7 is
  13:00-19:00 (business hours), 8-11 morning, 12 and "mediodía" noon. Minutes from ":30",
  "y media", "y cuarto", "menos cuarto", "y 10", "menos 10".
* The hour needs no "a las": "nueve de la noche", "5 y cuarto", "mañana a 11", and "de 4 a 6"
  (its start). A bare "a 5" is an hour only where what follows allows it: not "a 3 meses",
  "a 2 cuadras", "voy a 2 juntas".
* A day: "hoy", "mañana", "pasado mañana"; a weekday is the next one after today ("este" and
  "el próximo" alike), or the one in next calendar week with "de la próxima/otra semana"
  (weeks start on Monday); a day of month with or without month ("el 3 de diciembre",
  "el 30", "3/12", day first) is this month unless already past (then next month), and a month
  already past this year means next year.
* An hour alone: today if still ahead, otherwise tomorrow. A day and an hour: that day at that
  hour. A day alone, or nothing usable: ask.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from intents.model import TimeMention

WEEKDAYS = {
    "lunes": 0,
    "martes": 1,
    "miercoles": 2,
    "jueves": 3,
    "viernes": 4,
    "sabado": 5,
    "domingo": 6,
}
MONTHS = {
    "enero": 1,
    "febrero": 2,
    "marzo": 3,
    "abril": 4,
    "mayo": 5,
    "junio": 6,
    "julio": 7,
    "agosto": 8,
    "septiembre": 9,
    "setiembre": 9,
    "octubre": 10,
    "noviembre": 11,
    "diciembre": 12,
}
NUMBER_WORDS = {
    "un": 1,
    "una": 1,
    "uno": 1,
    "dos": 2,
    "tres": 3,
    "cuatro": 4,
    "cinco": 5,
    "seis": 6,
    "siete": 7,
    "ocho": 8,
    "nueve": 9,
    "diez": 10,
    "once": 11,
    "doce": 12,
    "quince": 15,
    "veinte": 20,
    "veinticinco": 25,
    "treinta": 30,
    "cuarenta": 40,
    "cuarenta y cinco": 45,
}

_NUM = r"\d{1,2}|" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True))
_MONTH = "|".join(MONTHS)
_WEEKDAY = "|".join(WEEKDAYS)

_SPAN = re.compile(
    rf"\b(?:en|dentro de)\s+(?:(?P<half>media)\s+hora|(?:(?P<pair>un par de)|(?P<n>{_NUM}|\d+))"
    r"\s*(?P<unit>horas?|minutos?|dias?)(?P<and_half>\s+y\s+media)?)\b"
)
# Numbers a bare "a 5" may be: digits or number words, but not "un"/"una" ("a una reunión").
_BARE_NUM = r"\d{1,2}|" + "|".join(
    sorted((w for w, n in NUMBER_WORDS.items() if 2 <= n <= 12), key=len, reverse=True)
)
# "a 5" is an hour only where the words after it say so: the end of the message, a question,
# a period of the day, a day, or the small words of a reply ("a 5 porfa", "a 5 o 6", "a 5 te
# marco"). Before a noun it is something else: "a 3 meses", "a 2 cuadras", "voy a 2 juntas".
_AFTER_AN_HOUR = (
    r"(?=\s*$|\s+\?|\s+(?:o|y|menos|am|pm|a m|p m|en punto|de la|en la|por la|esta|este|hoy"
    rf"|manana|pasado|el|{_WEEKDAY}|porfa|por favor|plis|pls|mejor|entonces|si|no|ok|okey"
    r"|va|vale|dale|sale|gracias|te|me|le|nos|les|para|que|como|cuando|puedo|puedes|puede"
    r"|estoy|estare|esta bien|perfecto|listo|ya|mas o menos|aprox|tipo|sin falta|en adelante"
    r"|despues|antes|por ahi|hrs|horas|h|hora)\b)"
)
_PERIOD_AFTER = r"(?:de|en|por)\s+la\s+(?:manana|tarde|noche|madrugada)\b"
_MINUTES = rf"(?P<rel>y|menos)\s+(?P<mins>media|cuarto|{_NUM}|\d{{2}})"
_CLOCK = re.compile(
    # "a las 5", "la 1 y media", "las 17 horas"
    rf"\b(?:la|las)\s+(?P<h>{_NUM})\b"
    r"(?::(?P<m>\d{2}))?"
    rf"(?:\s+{_MINUTES})?"
    r"(?:\s+(?P<suffix>am|pm|a m|p m|horas|hora|h|en punto))?"
    r"|\b(?P<h2>\d{1,2}):(?P<m2>\d{2})\b(?:\s+(?P<suffix2>am|pm|a m|p m|horas|h))?"
    r"|\b(?P<h3>\d{1,2})\s*(?P<suffix3>am|pm|a m|p m)\b"
    r"|\b(?P<noon>medio ?dia|mediodia)\b"
    # The hour without "a las" (datetime.md): "de 4 a 6" starts at 4; "nueve de la noche";
    # "5 y cuarto"; "mañana a 11".
    rf"|\bde\s+(?P<h4>{_BARE_NUM})\s+a\s+(?:las\s+)?(?:{_BARE_NUM})\b"
    rf"(?:\s+(?P<suffix4>am|pm|a m|p m)\b|{_AFTER_AN_HOUR})"
    rf"|\b(?P<h5>{_NUM})(?:\s+(?P<rel5>y|menos)\s+(?P<mins5>media|cuarto))?(?=\s+{_PERIOD_AFTER})"
    rf"|\b(?P<h6>{_NUM})\s+(?P<rel6>y|menos)\s+(?P<mins6>media|cuarto)\b{_AFTER_AN_HOUR}"
    rf"|\ba\s+(?P<h7>{_BARE_NUM})\b"
    rf"(?:\s+(?P<rel7>y|menos)\s+(?P<mins7>media|cuarto)\b)?{_AFTER_AN_HOUR}"
)
# "de la tarde", "en la noche", "por la mañana", Rioplatense "a la mañana", "esta noche".
_PERIOD = re.compile(r"\b(?:(?:de|en|por|a)\s+la|esta)\s+(?P<p>manana|tarde|noche|madrugada)\b")
_RELATIVE_DAY = re.compile(r"\b(?P<d>pasado manana|manana|hoy)\b")
_WEEKDAY_RE = re.compile(rf"\b(?P<w>{_WEEKDAY})\b")
_NEXT_WEEK = re.compile(
    r"\b(?:de\s+)?la\s+(?:proxima|otra|siguiente)\s+semana\b|\bla\s+semana\s+que\s+viene\b"
    rf"|\b(?:el\s+)?otro\s+(?:{_WEEKDAY})\b"
)
_DATE = re.compile(
    rf"\b(?P<d>\d{{1,2}})\s+de\s+(?P<month>{_MONTH})\b"
    rf"|\b(?:el|dia|el dia)\s+(?P<d2>\d{{1,2}})\b"
    rf"(?!\s*(?:[:/]|horas|h\b|am\b|pm\b|a m\b|p m\b|minutos|de la\b|de (?:{_MONTH})\b))"
    r"|\b(?P<d3>\d{1,2})/(?P<m3>\d{1,2})(?:/(?P<y3>\d{2,4}))?\b"
)


@dataclass(frozen=True, slots=True)
class _Clock:
    """An hour as named: "5 menos cuarto" is hour 5, minute 0, 15 minutes back."""

    hour: int
    minute: int
    back: int  # minutes before the named hour ("menos cuarto")
    explicit: bool  # am/pm, 24-hour form or noon: no guessing of morning or afternoon
    position: int


def to_zone(tz: str | ZoneInfo) -> ZoneInfo:
    """A ZoneInfo from a name or a ZoneInfo. Raises ZoneInfoNotFoundError for unknown names."""
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)


def extract_time(text: str, now: datetime, tz: str | ZoneInfo) -> TimeMention | None:
    """Find and resolve the time a normalised message names; None if it names none.

    `now` is the moment the message was received; a naive `now` is read in `tz`.
    """
    zone = to_zone(tz)
    local_now = _local(now, zone)
    span = _span(text)
    if span is not None:
        when = local_now + span
        if span < timedelta(days=1):
            return TimeMention(day=when.date(), clock=when.time(), when=when)
        return TimeMention(day=when.date(), clock=None, when=None)
    clock = _clock(text)
    day = _day(text, local_now.date(), clock.position if clock else None)
    if day is None and clock is None:
        return None
    return resolve(day, _to_time(clock, text) if clock else None, local_now, zone)


def resolve(day: date | None, clock: time | None, now: datetime, tz: str | ZoneInfo) -> TimeMention:
    """Resolve named parts: both -> that moment; an hour alone -> today if ahead, else tomorrow.

    A day alone (or nothing) leaves `when` as None: the bot asks for the hour.
    """
    zone = to_zone(tz)
    local_now = _local(now, zone)
    if clock is None:
        return TimeMention(day=day, clock=None, when=None)
    if day is not None:
        return TimeMention(day, clock, datetime.combine(day, clock, tzinfo=zone))
    today = datetime.combine(local_now.date(), clock, tzinfo=zone)
    when = today if today > local_now else today + timedelta(days=1)
    return TimeMention(day=None, clock=clock, when=when)


def complete(
    previous: TimeMention, new: TimeMention, now: datetime, tz: str | ZoneInfo
) -> TimeMention:
    """Fill the parts a new message leaves out from an earlier one ("el viernes" + "a las 5").

    What the new message names wins; the result is resolved by the same rules at `now`.
    """
    if new.when is not None and new.day is not None and new.clock is not None:
        return new
    day = new.day if new.day is not None else previous.day
    clock = new.clock if new.clock is not None else previous.clock
    return resolve(day, clock, now, tz)


def _local(now: datetime, zone: ZoneInfo) -> datetime:
    local = now.replace(tzinfo=zone) if now.tzinfo is None else now.astimezone(zone)
    return local.replace(second=0, microsecond=0)


def _number(word: str) -> int:
    return int(word) if word.isdigit() else NUMBER_WORDS[word]


def _span(text: str) -> timedelta | None:
    match = _SPAN.search(text)
    if match is None:
        return None
    if match["half"]:
        return timedelta(minutes=30)
    amount = 2 if match["pair"] else _number(match["n"])
    unit = match["unit"]
    if unit.startswith("hora"):
        return timedelta(hours=amount, minutes=30 if match["and_half"] else 0)
    if unit.startswith("minuto"):
        return timedelta(minutes=amount)
    return timedelta(days=amount)


def _clock(text: str) -> _Clock | None:
    for match in _CLOCK.finditer(text):
        clock = _parse_clock(match)
        if clock is not None:
            return clock
    return None


def _parse_clock(match: re.Match[str]) -> _Clock | None:
    position = match.start()
    if match["noon"]:
        return _Clock(12, 0, 0, explicit=True, position=position)
    found = {key: value for key, value in match.groupdict().items() if value is not None}

    def first(*names: str) -> str | None:
        return next((found[n] for n in names if n in found), None)

    hour = _number(first("h", "h2", "h3", "h4", "h5", "h6", "h7") or "0")
    minute = int(first("m", "m2") or 0)
    suffix = (first("suffix", "suffix2", "suffix3", "suffix4") or "").replace(" ", "")
    if hour > 23 or minute > 59:
        return None
    back = 0
    relation, minutes = (
        first("rel", "rel5", "rel6", "rel7"),
        first("mins", "mins5", "mins6", "mins7"),
    )
    if relation and minutes:
        amount = {"media": 30, "cuarto": 15}.get(minutes) or _number(minutes)
        if amount >= 60:
            return None
        minute, back = (amount, 0) if relation == "y" else (0, amount)
    if suffix in ("am", "pm") and hour <= 12:
        hour = hour % 12 + (12 if suffix == "pm" else 0)
        return _Clock(hour, minute, back, explicit=True, position=position)
    explicit = suffix in ("horas", "hora", "h") or hour > 12 or hour == 0
    return _Clock(hour, minute, back, explicit=explicit, position=position)


def _to_time(clock: _Clock, text: str) -> time:
    hour = clock.hour
    if not clock.explicit:
        period = _period(text)
        if period in ("manana", "madrugada"):
            hour = 0 if hour == 12 else hour
        elif period in ("tarde", "noche"):
            hour = hour + 12 if hour < 12 else (0 if period == "noche" else 12)
        elif 1 <= hour <= 7:
            hour += 12  # sales calls happen in business hours
    minutes = (hour * 60 + clock.minute - clock.back) % (24 * 60)
    return time(minutes // 60, minutes % 60)


def _period(text: str) -> str | None:
    for match in _PERIOD.finditer(text):
        if match["p"]:
            return match["p"]
    return None


def _day(text: str, today: date, near: int | None) -> date | None:
    """The day named; with several ("hoy no, mejor mañana a las 5"), the one nearest the hour,
    or the last one when there is no hour."""
    found: list[tuple[int, date]] = []
    without_periods = _PERIOD.sub(lambda m: " " * len(m[0]), text)  # "de la mañana" is no day
    for match in _RELATIVE_DAY.finditer(without_periods):
        offset = {"hoy": 0, "manana": 1, "pasado manana": 2}[match["d"]]
        found.append((match.start(), today + timedelta(days=offset)))
    next_week = _NEXT_WEEK.search(text) is not None
    for match in _WEEKDAY_RE.finditer(text):
        target = WEEKDAYS[match["w"]]
        if next_week:
            next_monday = today + timedelta(days=7 - today.weekday())
            found.append((match.start(), next_monday + timedelta(days=target)))
        else:
            found.append(
                (match.start(), today + timedelta(days=(target - today.weekday() - 1) % 7 + 1))
            )
    for match in _DATE.finditer(text):
        named = _date(match, today)
        if named is not None:
            found.append((match.start(), named))
    if not found:
        return None
    if near is None:
        return max(found)[1]
    return min(found, key=lambda pd: abs(pd[0] - near))[1]


def _date(match: re.Match[str], today: date) -> date | None:
    if match["d3"]:
        day, month = int(match["d3"]), int(match["m3"])
        year = _full_year(match["y3"]) if match["y3"] else None
        return _month_date(day, month, year, today)
    if match["month"]:
        return _month_date(int(match["d"]), MONTHS[match["month"]], None, today)
    day = int(match["d2"])
    for months_ahead in range(3):  # a day already past this month is next month's
        month = (today.month - 1 + months_ahead) % 12 + 1
        year = today.year + (today.month - 1 + months_ahead) // 12
        candidate = _safe_date(year, month, day)
        if candidate is not None and (months_ahead or day >= today.day):
            return candidate
    return None


def _month_date(day: int, month: int, year: int | None, today: date) -> date | None:
    if not 1 <= month <= 12:
        return None
    if year is not None:
        return _safe_date(year, month, day)
    candidate = _safe_date(today.year, month, day)
    if candidate is not None and candidate < today:
        candidate = _safe_date(today.year + 1, month, day)
    return candidate


def _full_year(raw: str) -> int:
    year = int(raw)
    return year + 2000 if year < 100 else year


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None
