"""The CRM's rules, pure: pipelines and their stages as values, what moving a lead between
stages needs, the kinds of activities and what a call can end in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from urllib.parse import urlencode

from bot.core.errors import InvalidInput


class Outcome(StrEnum):
    """What reaching a stage means: still open, won (a sale), lost."""

    OPEN = "open"
    WON = "won"
    LOST = "lost"


class DealStatus(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class ActivityKind(StrEnum):
    """Activities (seed 002): logged by agents (call, meeting, message, email, note) or
    recorded for every change made to a lead."""

    CALL = "call"
    MEETING = "meeting"
    MESSAGE = "message"
    EMAIL = "email"
    NOTE = "note"
    CREATED = "created"
    STAGE = "stage"
    OWNER = "owner"
    FIELD = "field"
    TAGS = "tags"
    DEAL = "deal"
    MERGE = "merge"
    APPOINTMENT = "appointment"
    HANDOFF = "handoff"
    IMPORT = "import"
    MATERIAL = "material"  # the bot sent materials a lead said yes to


LOGGED = (ActivityKind.CALL, ActivityKind.MEETING, ActivityKind.MESSAGE, ActivityKind.EMAIL)


class CallResult(StrEnum):
    ANSWERED_INTERESTED = "answered_interested"
    CALL_BACK_LATER = "call_back_later"
    NO_ANSWER = "no_answer"
    LEFT_MESSAGE = "left_message"


@dataclass(frozen=True, slots=True)
class StageSpec:
    key: str
    name: str
    position: int
    outcome: Outcome = Outcome.OPEN
    cadence_days: int | None = None
    reason_required: bool = False


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    key: str
    name: str
    stages: tuple[StageSpec, ...]

    def stage(self, key: str) -> StageSpec | None:
        return next((stage for stage in self.stages if stage.key == key), None)

    @property
    def won(self) -> frozenset[str]:
        return frozenset(s.key for s in self.stages if s.outcome == Outcome.WON)


def preset(
    key: str,
    name: str,
    stages: Sequence[str],
    *,
    names: dict[str, str],
    won: Sequence[str],
    lost: Sequence[str],
    cadences: dict[str, int | None],
) -> PipelineSpec:
    """A pipeline from the config's preset: stage keys in order, their Spanish names, the won
    stages (`pipeline.won`), the lost ones (a reason required) and cadences."""
    return PipelineSpec(
        key,
        name,
        tuple(
            StageSpec(
                key=stage,
                name=names.get(stage, stage),
                position=position,
                outcome=Outcome.WON
                if stage in won
                else Outcome.LOST
                if stage in lost
                else Outcome.OPEN,
                cadence_days=cadences.get(stage),
                reason_required=stage in lost,
            )
            for position, stage in enumerate(stages)
        ),
    )


@dataclass(frozen=True, slots=True)
class Move:
    """A checked stage change: where to, and the reason kept with it (lost stages)."""

    stage: StageSpec
    reason: str | None


def check_move(pipeline: PipelineSpec, to: str, reason: str | None, reasons: Sequence[str]) -> Move:
    """A lead may move to any stage of its pipeline; a stage that needs a reason takes one of
    the admins' list of reasons for losing.

    Raises:
        InvalidInput: an unknown stage (code "stage"), a missing or unknown reason
            (code "lost_reason").
    """
    stage = pipeline.stage(to)
    if stage is None:
        raise InvalidInput(
            f"stage must be one of: {', '.join(s.key for s in pipeline.stages)}",
            code="stage",
            stage=to,
        )
    reason = (reason or "").strip() or None
    if stage.reason_required:
        if reason is None or reason not in reasons:
            raise InvalidInput(
                f"moving to {stage.key} needs a reason, one of: {'; '.join(reasons)}",
                code="lost_reason",
                stage=stage.name,
            )
        return Move(stage, reason)
    return Move(stage, None)


def check_lost_reason(reason: str | None, reasons: Sequence[str]) -> str:
    """A deal lost needs one of the admins' reasons.

    Raises:
        InvalidInput: none given, or not in the list (code "deal_lost_reason").
    """
    reason = (reason or "").strip()
    if reason not in reasons:
        raise InvalidInput(
            f"a lost deal needs a reason, one of: {'; '.join(reasons)}", code="deal_lost_reason"
        )
    return reason


# --- the lead list's filters ---------------------------------------------------------------

SORTS = ("recent", "score", "created", "name", "idle")
PER_PAGE = 50
MAX_PER_PAGE = 500
NO_OWNER = 0  # owner=0 in a query: leads nobody owns


@dataclass(frozen=True, slots=True)
class LeadFilter:
    """What the lead list shows: every field optional; the same in the console, the API, the
    CSV export and a saved filter (its query string)."""

    stage: str | None = None
    tier: str | None = None
    owner_id: int | None = None  # NO_OWNER: nobody's
    source: str | None = None
    tag: str | None = None
    idle_days: int | None = None  # no activity for more than this many days
    created_from: date | None = None
    created_to: date | None = None  # inclusive
    text: str | None = None  # name or e-mail contains
    sort: str = "recent"
    page: int = 1
    per_page: int = PER_PAGE

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    def query(self, **changes: object) -> str:
        """The filter as a query string (links to pages, saved filters)."""
        values: dict[str, object] = {
            "stage": self.stage,
            "tier": self.tier,
            "owner": self.owner_id,
            "source": self.source,
            "tag": self.tag,
            "idle_days": self.idle_days,
            "created_from": self.created_from.isoformat() if self.created_from else None,
            "created_to": self.created_to.isoformat() if self.created_to else None,
            "q": self.text,
            "sort": self.sort if self.sort != "recent" else None,
            "page": self.page if self.page != 1 else None,
        }
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v is not None and v != ""})


def lead_filter(query: Mapping[str, str], *, tiers: Sequence[str] = ()) -> LeadFilter:
    """The filter a query string asks for (`?stage=&tier=&owner=&idle_days=&source=&tag=
    &created_from=&created_to=&q=&sort=&page=&per_page=`); empty values are no filter.

    Raises:
        InvalidInput: a value of the wrong shape (code "filter", `field` names it).
    """

    def text(name: str, limit: int = 120) -> str | None:
        value = (query.get(name) or "").strip()
        if len(value) > limit:
            raise InvalidInput(f"{name} is too long", code="filter", field=name)
        return value or None

    def number(name: str, low: int, high: int) -> int | None:
        value = text(name)
        if value is None:
            return None
        if not value.isdigit() or not low <= int(value) <= high:
            raise InvalidInput(f"{name} must be a number {low}-{high}", code="filter", field=name)
        return int(value)

    def day(name: str) -> date | None:
        value = text(name)
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise InvalidInput(
                f"{name} must be a date YYYY-MM-DD", code="filter", field=name
            ) from None

    tier = text("tier")
    if tier is not None and tiers and tier not in tiers:
        raise InvalidInput(f"tier must be one of {', '.join(tiers)}", code="filter", field="tier")
    sort = text("sort") or "recent"
    if sort not in SORTS:
        raise InvalidInput(f"sort must be one of {', '.join(SORTS)}", code="filter", field="sort")
    return LeadFilter(
        stage=text("stage", 64),
        tier=tier,
        owner_id=number("owner", 0, 2**63 - 1),
        source=text("source", 64),
        tag=text("tag", 64),
        idle_days=number("idle_days", 0, 3660),
        created_from=day("created_from"),
        created_to=day("created_to"),
        text=text("q", 200),
        sort=sort,
        page=number("page", 1, 1_000_000) or 1,
        per_page=number("per_page", 1, MAX_PER_PAGE) or PER_PAGE,
    )


def clean_tags(raw: str | Sequence[str]) -> list[str]:
    """Tags as typed ("vip, Referido ,vip") → ["vip", "referido"]: trimmed, lower case, once."""
    parts = raw.split(",") if isinstance(raw, str) else list(raw)
    seen: list[str] = []
    for part in parts:
        tag = str(part).strip().lower()[:40]
        if tag and tag not in seen:
            seen.append(tag)
    return seen[:20]


# --- custom fields -------------------------------------------------------------------------

FIELD_KINDS = ("text", "number", "date", "choice")


def custom_value(kind: str, value: object, choices: Sequence[str]) -> str | float | None:
    """A custom field's value as stored: text, a number, an ISO date, one of the choices;
    None (empty) clears it.

    Raises:
        InvalidInput: a value that does not fit the field (code "custom").
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if kind == "number":
        if isinstance(value, bool):
            raise InvalidInput("a number", code="custom")
        try:
            number = float(str(value).replace(",", "").strip())
        except ValueError:
            raise InvalidInput("a number", code="custom") from None
        if number != number or abs(number) > 1e15:  # NaN or absurd
            raise InvalidInput("a number", code="custom")
        return number
    text = str(value).strip()
    if kind == "date":
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            raise InvalidInput("a date YYYY-MM-DD", code="custom") from None
    if kind == "choice":
        if text not in choices:
            raise InvalidInput(f"one of {', '.join(choices)}", code="custom")
        return text
    if len(text) > 500:
        raise InvalidInput("at most 500 characters", code="custom")
    return text
