"""Settings: `config.yaml` holds every default, the environment overrides, one frozen object.

Resolution order (later wins):
1. the project's `config.yaml` (every key, every default);
2. the YAML file named by `SEGUIBOT_CONFIG`, if any, merged key by key;
3. environment variables: `SEGUIBOT_<SECTION>_<KEY>` for every key, plus the names the
   ecosystems use (`DATABASE_URL`, `TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`).

Any unknown key, wrong type or missing value stops start-up with a `ConfigError` that names the
key and where its value came from (file or environment variable).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping, Set
from datetime import date, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.core.errors import ConfigError
from bot.core.scoring import SIGNALS, Scoring
from bot.core.slots import Opening

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULTS_FILE = PROJECT_ROOT / "config.yaml"
ENV_PREFIX = "SEGUIBOT_"
ENV_CONFIG_FILE = "SEGUIBOT_CONFIG"
# Variables that used to be in the product's namespace, and their names now.
ENV_RENAMED: Mapping[str, str] = {
    "SEGUIBOT_TEST_POSTGRES": "TEST_POSTGRES_URL",
    "SEGUIBOT_TEST_CHROMIUM": "CHROMIUM_PATH",
    "SEGUIBOT_BENCH_POSTGRES": "BENCH_POSTGRES_URL",
}
# Keys that hold a path. A relative path is taken from the directory of the file that sets it
# (config.yaml's is the checkout), or from the working directory for an environment variable,
# and stored absolute: every command then agrees whatever folder it runs from.
PATH_KEYS: tuple[tuple[str, ...], ...] = (("data_dir",), ("nlu", "scripts"))
SQLITE_FILE = "seguibot.db"
# Names other tools already use for these keys.
ENV_ALIASES: Mapping[str, tuple[str, ...]] = {
    "DATABASE_URL": ("database", "url"),
    "TWILIO_ACCOUNT_SID": ("twilio", "account_sid"),
    "TWILIO_AUTH_TOKEN": ("twilio", "auth_token"),
}

PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ServerSettings(_Section):
    host: str
    port: Annotated[int, Field(ge=0, le=65535)]
    max_body_bytes: PositiveInt
    shutdown_timeout: PositiveFloat
    forwarded_for: bool


class DatabaseSettings(_Section):
    url: str
    pool_size: PositiveInt
    in_flight: Annotated[int, Field(ge=0)]
    queue_timeout: PositiveFloat
    deferred_lease: PositiveFloat
    echo: bool

    @property
    def admitted(self) -> int:
        """How many conversations' units of work may run at once (0 in the file: the pool)."""
        return self.in_flight or self.pool_size

    @field_validator("url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        if url.startswith(("sqlite+aiosqlite:", "postgresql+asyncpg:")):
            return url
        if url.startswith(("postgres://", "postgresql://")):
            # Hosting providers hand out plain URLs; the service needs the asyncio driver.
            return "postgresql+asyncpg://" + url.split("://", 1)[1]
        raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, for an SQLite URL that names one (not `:memory:`)."""
        if not self.is_sqlite:
            return None
        database = make_url(self.url).database
        return Path(database) if database and database != ":memory:" else None

    def where(self) -> str:
        """The database in words, never with its password: for messages to the operator."""
        if (path := self.sqlite_path) is not None:
            return f"SQLite file {path}"
        if self.is_sqlite:
            return "SQLite in memory"
        url = make_url(self.url)
        # asyncpg takes a Unix socket's folder as the query's `host` (PostgreSQL on the same
        # machine, see the README's "Databases").
        socket = url.query.get("host")
        at = (
            f"the socket in {socket}"
            if isinstance(socket, str) and socket.startswith("/")
            else f"{url.host or 'localhost'}:{url.port or 5432}"
        )
        return (
            f"PostgreSQL at {at}, "
            f"database {url.database or '(default)'}, user {url.username or '(default)'}"
        )


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"]
    json_format: bool = Field(alias="json")


class PlanSettings(_Section):
    name: Annotated[str, Field(min_length=1)]
    price: Annotated[str, Field(min_length=1)]


class BusinessSettings(_Section):
    name: str
    product: str
    timezone: str
    phone_region: str
    plans: list[PlanSettings]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("phone_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {value!r} (use ISO codes such as MX, CO)")
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def script_values(self) -> dict[str, str]:
        """What the business fills in every script: {producto}, {negocio}, {asesor}, and
        {planes} ("Básico ($499 al mes), Pro ($999 al mes)"; empty when no plan is set)."""
        return {
            "producto": self.product,
            "negocio": self.name,
            "asesor": "un asesor",
            "planes": ", ".join(f"{plan.name} ({plan.price})" for plan in self.plans),
        }


class NluSettings(_Section):
    scripts: str
    # How often each process checks for a newly published version of the scripts.
    reload_seconds: Annotated[float, Field(gt=0, le=300)] = 2.0

    @property
    def scripts_path(self) -> Path | None:
        return Path(self.scripts) if self.scripts else None


class ConversationSettings(_Section):
    miss_limit: PositiveInt
    idle_minutes: PositiveInt

    @property
    def idle(self) -> timedelta:
        """How long a conversation stays live after its last message, either way."""
        return timedelta(minutes=self.idle_minutes)


class TierSettings(_Section):
    hot: int
    warm: int
    cold: int

    @model_validator(mode="after")
    def _ordered(self) -> TierSettings:
        if not self.hot > self.warm > self.cold:
            raise ValueError("tiers must satisfy hot > warm > cold")
        return self


class UnansweredSettings(_Section):
    attempts: PositiveInt
    days: PositiveInt


class ScoringSettings(_Section):
    initial: Annotated[int, Field(ge=1, le=50)]
    points: dict[str, int]
    signals: dict[str, int]
    sources: dict[str, int]
    replied_fast_minutes: PositiveInt
    unanswered: UnansweredSettings
    labels: dict[str, str]
    tiers: TierSettings

    @model_validator(mode="after")
    def _known_signals(self) -> ScoringSettings:
        unknown = sorted(set(self.signals) - set(SIGNALS))
        if unknown:
            raise ValueError(f"signals: {unknown} are not signals ({', '.join(SIGNALS)})")
        return self

    def rules(self) -> Scoring:
        tiers = self.tiers
        return Scoring(
            initial=self.initial,
            hot=tiers.hot,
            warm=tiers.warm,
            cold=tiers.cold,
            points=dict(self.points),
            signals=dict(self.signals),
            sources=dict(self.sources),
            replied_fast_minutes=self.replied_fast_minutes,
            unanswered_attempts=self.unanswered.attempts,
            unanswered_days=self.unanswered.days,
            labels=dict(self.labels),
        )


class StageSettings(_Section):
    name: str
    # How often a lead in this stage is followed up, in days (seed 002); None: no cadence.
    cadence_days: PositiveInt | None = None
    lost: bool = False  # a lost stage; moving a lead there needs a reason


class PipelineDetails(_Section):
    name: str
    stages: dict[str, StageSettings]


class PipelineSettings(_Section):
    preset: str
    presets: dict[str, list[str]]
    won: dict[str, list[str]]
    # Names (Spanish, shown in the console), cadences and lost stages of each preset's stages:
    # seeded into the database on start; afterwards admins edit them there.
    details: dict[str, PipelineDetails]
    # The reasons a lead or a deal is lost, seeded once; admins edit the list in the console.
    lost_reasons: list[str]

    @model_validator(mode="after")
    def _preset_exists(self) -> PipelineSettings:
        if self.preset not in self.presets:
            raise ValueError(f"preset {self.preset!r} is not one of {sorted(self.presets)}")
        if not self.presets[self.preset]:
            raise ValueError(f"preset {self.preset!r} has no stages")
        for preset, stages in self.won.items():
            unknown = [stage for stage in stages if stage not in self.presets.get(preset, [])]
            if unknown:
                raise ValueError(f"won.{preset}: {unknown} are not stages of preset {preset!r}")
        for preset, details in self.details.items():
            unknown = [s for s in details.stages if s not in self.presets.get(preset, [])]
            if unknown:
                raise ValueError(f"details.{preset}: {unknown} are not stages of preset {preset!r}")
        return self

    @property
    def stages(self) -> list[str]:
        return self.presets[self.preset]

    @property
    def won_stages(self) -> frozenset[str]:
        """The stages of leads who have already bought, in the preset in use."""
        return frozenset(self.won.get(self.preset, []))


class HandoffSettings(_Section):
    priority: dict[str, int]
    hot_bonus: int
    sla_minutes: PositiveInt
    business_hours: bool
    assign: bool


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_SPAN = re.compile(r"^(\d{1,5})([mhd])$")


def _clock(value: str) -> time:
    if not _CLOCK.match(value):
        raise ValueError(f"{value!r} is not a time of day like 09:00")
    return time.fromisoformat(value)


def parse_span(value: str) -> timedelta:
    """ "30m", "2h", "3d" -> a timedelta."""
    match = _SPAN.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a span like 30m, 2h or 3d")
    unit = {"m": "minutes", "h": "hours", "d": "days"}[match[2]]
    return timedelta(**{unit: int(match[1])})


class SchedulingSettings(_Section):
    hours: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], list[str]]
    holidays: list[date]
    slot_minutes: PositiveInt
    buffer_minutes: Annotated[int, Field(ge=0)]
    min_notice_minutes: Annotated[int, Field(ge=0)]
    horizon_days: PositiveInt
    offer: PositiveInt
    default_kind: Literal["call", "meeting", "visit"]
    kind_words: dict[Literal["call", "meeting", "visit"], list[str]]
    quiet_hours: list[str]
    poll_seconds: PositiveFloat
    batch_size: PositiveInt

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, span in value.items():
            if span and (len(span) != 2 or _clock(span[0]) >= _clock(span[1])):
                raise ValueError(f"{day}: use [] or [opening, closing] like [09:00, 19:00]")
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: list[str]) -> list[str]:
        if value and (len(value) != 2 or any(_clock(v) is None for v in value)):
            raise ValueError("use [] or [start, end] like [21:00, 08:00]")
        return value

    def opening(self, weekday: int) -> tuple[time, time] | None:
        span = self.hours.get(WEEKDAYS[weekday]) or []  # type: ignore[call-overload]
        return (_clock(span[0]), _clock(span[1])) if span else None

    def grid(self) -> Opening:
        """The opening hours and slot grid, as the booking logic takes them."""
        return Opening(
            hours={day: self.opening(day) for day in range(7)},
            holidays=frozenset(self.holidays),
            slot_minutes=self.slot_minutes,
            buffer_minutes=self.buffer_minutes,
            min_notice_minutes=self.min_notice_minutes,
            horizon_days=self.horizon_days,
        )

    @property
    def quiet(self) -> tuple[time, time] | None:
        return (
            (_clock(self.quiet_hours[0]), _clock(self.quiet_hours[1])) if self.quiet_hours else None
        )


class RemindersSettings(_Section):
    lead_minutes: list[PositiveInt]
    agent_minutes: list[PositiveInt]


class TasksSettings(_Section):
    idle_days: PositiveInt
    sweep_at: str
    overdue_after_hours: PositiveInt

    @field_validator("sweep_at")
    @classmethod
    def _sweep_at(cls, value: str) -> str:
        _clock(value)
        return value


class LtvSettings(_Section):
    """Seed 004's LTV, by business model (bot/core/ltv.py). The average ticket of the period
    stands for ARPU and for the average order value; the rest the business states here."""

    model: Literal["subscription", "retail", "margin_churn", "discounted"]
    sector: str
    lifetime_periods: Annotated[Decimal, Field(gt=0)]
    purchases_per_year: Annotated[Decimal, Field(gt=0)]
    years: Annotated[int, Field(ge=1, le=50)]
    gross_margin: Annotated[Decimal, Field(gt=0, le=1)]
    churn_rate: Annotated[Decimal, Field(gt=0, le=1)]
    discount_rate: Annotated[Decimal, Field(ge=0, le=1)]


class ReportGoals(_Section):
    activities_per_week: PositiveInt
    cold_clients: PositiveInt


class ReportsSettings(_Section):
    summary_at: str
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    outcome_days: PositiveInt
    low_score: PositiveInt
    goals: ReportGoals
    ltv: LtvSettings
    # PostgreSQL: how many of a report's figures are read at once, each in its own session
    # (SQLite reads them one after another).
    parallel_queries: PositiveInt = 3

    @field_validator("summary_at")
    @classmethod
    def _summary_at(cls, value: str) -> str:
        _clock(value)
        return value


class SequenceStep(_Section):
    after: str
    message: str | None = None
    task: str | None = None

    @field_validator("after")
    @classmethod
    def _after(cls, value: str) -> str:
        parse_span(value)
        return value

    @model_validator(mode="after")
    def _one_action(self) -> SequenceStep:
        if (self.message is None) == (self.task is None):
            raise ValueError("a step has either `message` or `task` (a script id)")
        return self

    @property
    def delay(self) -> timedelta:
        return parse_span(self.after)


class SequenceEntry(_Section):
    tier: Literal["hot", "warm", "cold", "disqualified"] | None = None
    stage: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SequenceEntry:
        if (self.tier is None) == (self.stage is None):
            raise ValueError("`enter` names either a tier or a stage")
        return self


class SequenceSettings(_Section):
    enter: SequenceEntry
    steps: Annotated[list[SequenceStep], Field(min_length=1)]

    def dump(self) -> dict[str, object]:
        """As written in YAML: `{enter: {tier: hot}, steps: [{after: 2h, message: ...}]}`."""
        return self.model_dump(exclude_none=True)


# --- sequences in the scripts ---------------------------------------------------------------
# config.yaml's `sequences:` are the factory default; a scripts version may carry its own
# (`sequences:` beside `intents:` and `scripts:`, the same schema), edited in the console.

_SEQUENCE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class SequencesInvalid(ValueError):
    """The `sequences:` of a scripts version cannot run. The message is English (logs, the
    command line); `code` and `details` (`sequence`, `step` counted from 1, ...) let the console
    word it in Spanish."""

    def __init__(self, message: str, code: str, **details: str) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


def read_sequences(data: object) -> dict[str, SequenceSettings]:
    """The `sequences:` section of a scripts version, as plain YAML data, checked for shape.

    Raises:
        SequencesInvalid: naming the sequence and the step.
    """
    if not isinstance(data, dict):  # empty is fine: no follow-up at all
        raise SequencesInvalid("sequences: must be a mapping of named sequences", "sequence_shape")
    sequences: dict[str, SequenceSettings] = {}
    for name, value in data.items():
        if not isinstance(name, str) or not _SEQUENCE_NAME.match(name):
            raise SequencesInvalid(
                f"sequence name {name!r}: lower-case letters, digits and _",
                "sequence_name",
                sequence=str(name),
            )
        try:
            sequences[name] = SequenceSettings.model_validate(value)
        except ValidationError as exc:
            raise _sequence_problem(name, value, exc) from None
    return sequences


def _sequence_problem(name: str, value: object, exc: ValidationError) -> SequencesInvalid:
    """The first problem pydantic found, as the console can word it."""
    error = exc.errors()[0]
    loc = error["loc"]
    where = f"sequence {name!r}"
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        step = str(loc[1] + 1)
        where = f"{where} step {step}"
        if loc[2:] == ("after",):
            steps = value.get("steps") if isinstance(value, dict) else None
            after = steps[loc[1]].get("after") if isinstance(steps, list) else None
            return SequencesInvalid(
                f"{where}: bad delay {after!r} (a span like 30m, 2h or 3d)",
                "sequence_delay",
                sequence=name,
                step=step,
                after=str(after),
            )
        if len(loc) == 2 and error["type"] == "value_error":
            return SequencesInvalid(
                f"{where}: a step sends a `message` or creates a `task` (one script id)",
                "sequence_action",
                sequence=name,
                step=step,
            )
        return SequencesInvalid(
            f"{where}: {error['msg']} ({'.'.join(map(str, loc[2:]))})",
            "sequence_step",
            sequence=name,
            step=step,
        )
    if loc[:1] == ("steps",):
        return SequencesInvalid(f"{where} has no steps", "sequence_no_steps", sequence=name)
    if loc[:1] == ("enter",):
        return SequencesInvalid(
            f"{where}: `enter` names one tier (hot, warm, cold, disqualified) or one stage",
            "sequence_enter",
            sequence=name,
        )
    return SequencesInvalid(
        f"{where}: {error['msg']} ({'.'.join(map(str, loc)) or 'the sequence'})",
        "sequence_shape_of",
        sequence=name,
    )


def check_sequences(sequences: Mapping[str, SequenceSettings], scripts: Set[str]) -> None:
    """What the schema cannot see: every script a step names exists in `scripts`, steps come in
    the order of their delays (each counted from the sequence's start), and one sequence at most
    starts for a tier or a stage.

    Raises:
        SequencesInvalid: naming the sequence and the step.
    """
    starts: dict[tuple[str, str], str] = {}
    for name, sequence in sequences.items():
        entry = sequence.enter
        key = ("tier", entry.tier) if entry.tier is not None else ("stage", entry.stage or "")
        if key in starts:
            raise SequencesInvalid(
                f"sequences {starts[key]!r} and {name!r} both start at {key[0]} {key[1]!r}",
                "sequence_twice",
                sequence=name,
                other=starts[key],
                start=key[1],
            )
        starts[key] = name
        for index, step in enumerate(sequence.steps):
            script = step.message or step.task or ""
            if script not in scripts:
                raise SequencesInvalid(
                    f"sequence {name!r} step {index + 1}: unknown script {script!r}",
                    "sequence_script",
                    sequence=name,
                    step=str(index + 1),
                    script=script,
                )
            if index and step.delay < sequence.steps[index - 1].delay:
                raise SequencesInvalid(
                    f"sequence {name!r} step {index + 1} ({step.after}) comes before step "
                    f"{index} ({sequence.steps[index - 1].after})",
                    "sequence_order",
                    sequence=name,
                    step=str(index + 1),
                    after=step.after,
                    previous=str(index),
                    previous_after=sequence.steps[index - 1].after,
                )


class OutboxSettings(_Section):
    poll_interval: PositiveFloat
    batch_size: PositiveInt
    concurrency: PositiveInt
    max_attempts: PositiveInt
    backoff_base: PositiveFloat
    backoff_max: PositiveFloat
    lease_seconds: PositiveFloat


class MediaSettings(_Section):
    max_bytes: PositiveInt


class MaterialsSettings(_Section):
    max_bytes: PositiveInt


_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https://\*\.[A-Za-z0-9.-]+")


class WebchatSettings(_Section):
    enabled: bool
    history_limit: PositiveInt
    reads_per_minute: PositiveInt
    frame_ancestors: list[str]

    @field_validator("frame_ancestors")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin; write it like https://www.example.com"
                )
        return value


class ConsoleSettings(_Section):
    enabled: bool
    secret: str
    session_hours: PositiveInt
    sign_ins_per_minute: PositiveInt
    close_reasons: list[Annotated[str, Field(min_length=1, max_length=120)]]
    canned_replies: dict[Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")], str]


class TelegramSettings(_Section):
    token: str
    webhook_secret: str
    api_base_url: str
    file_base_url: str
    per_chat_interval: Annotated[float, Field(ge=0)]
    overall_per_second: PositiveInt
    resend_uncertain: bool

    @field_validator("api_base_url", "file_base_url")
    @classmethod
    def _bot_url(cls, value: str, info: ValidationInfo) -> str:
        # As python-telegram-bot takes it: the token is appended, or fills a {token} placeholder
        # (https://api.telegram.org/bot{token}/test is Telegram's test environment).
        if not value and info.field_name == "file_base_url":
            return value  # derived from api_base_url: ".../bot" -> ".../file/bot"
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL, e.g. https://api.telegram.org/bot")
        placeholders = set(re.findall(r"{([^{}]*)}", value))
        if placeholders - {"token", "TOKEN", "bot_token", "BOT_TOKEN", "bot-token", "BOT-TOKEN"}:
            raise ValueError("the only placeholder it may hold is {token}")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_format(cls, value: str) -> str:
        # Telegram's rule for setWebhook's secret_token.
        if value and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value):
            raise ValueError("must be 1-256 characters of A-Z a-z 0-9 _ -")
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.token)


class TwilioSettings(_Section):
    account_sid: str
    auth_token: str
    api_base_url: str


class TemplateSettings(_Section):
    content_sid: Annotated[str, Field(pattern=r"^HX[0-9a-fA-F]{32}$")]
    variables: list[Literal["nombre", "producto", "negocio", "asesor"]] = []


class WhatsappSettings(_Section):
    from_: str = Field(alias="from")
    templates: dict[str, TemplateSettings]
    send_timeout: PositiveFloat


class Settings(_Section):
    """Everything configurable, validated once at start-up and frozen."""

    data_dir: str
    public_url: str
    server: ServerSettings
    database: DatabaseSettings
    logging: LoggingSettings
    business: BusinessSettings
    nlu: NluSettings
    conversation: ConversationSettings
    scoring: ScoringSettings
    pipeline: PipelineSettings
    handoff: HandoffSettings
    scheduling: SchedulingSettings
    reminders: RemindersSettings
    tasks: TasksSettings
    reports: ReportsSettings
    sequences: dict[str, SequenceSettings]
    outbox: OutboxSettings
    media: MediaSettings
    materials: MaterialsSettings
    webchat: WebchatSettings
    console: ConsoleSettings
    telegram: TelegramSettings
    twilio: TwilioSettings
    whatsapp: WhatsappSettings

    @model_validator(mode="before")
    @classmethod
    def _database_in_data_dir(cls, data: Any) -> Any:
        """No database URL: SQLite in `data_dir`. A relative SQLite path is taken inside
        `data_dir` too, never in whatever folder the command happens to run from."""
        if not isinstance(data, dict) or not isinstance(data.get("data_dir"), str):
            return data
        database = data.get("database")
        if not isinstance(database, dict) or not isinstance(database.get("url"), str):
            return data
        data_dir = _absolute(data["data_dir"], PROJECT_ROOT)
        url = database["url"]
        if not url:
            url = f"sqlite+aiosqlite:///{data_dir / SQLITE_FILE}"
        elif url.startswith("sqlite"):
            try:
                parsed = make_url(url)
            except ArgumentError:
                return data  # the url validator names the problem
            name = parsed.database
            if name and name != ":memory:" and not Path(name).is_absolute():
                url = parsed.set(database=str(data_dir / name)).render_as_string(False)
        return {**data, "data_dir": str(data_dir), "database": {**database, "url": url}}

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL such as https://bot.example.com")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _whatsapp_complete(self) -> Settings:
        # WhatsApp is on as soon as an account is configured; then it needs all of these.
        if self.twilio.account_sid:
            missing = [
                name
                for name, value in (
                    ("twilio.auth_token (TWILIO_AUTH_TOKEN)", self.twilio.auth_token),
                    ("whatsapp.from (SEGUIBOT_WHATSAPP_FROM)", self.whatsapp.from_),
                    ("public_url (SEGUIBOT_PUBLIC_URL)", self.public_url),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    "WhatsApp is on (twilio.account_sid is set) but missing: " + ", ".join(missing)
                )
        return self

    @property
    def whatsapp_enabled(self) -> bool:
        return bool(self.twilio.account_sid)

    def channels(self) -> dict[str, tuple[bool, str]]:
        """Each channel: whether it is on, and what turns it on (or off)."""
        return {
            "web chat": (self.webchat.enabled, "webchat.enabled: true"),
            "Telegram": (
                self.telegram.enabled,
                "SEGUIBOT_TELEGRAM_TOKEN (and SEGUIBOT_TELEGRAM_WEBHOOK_SECRET for the webhook)",
            ),
            "WhatsApp": (
                self.whatsapp_enabled,
                "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, SEGUIBOT_WHATSAPP_FROM and "
                "SEGUIBOT_PUBLIC_URL",
            ),
        }

    def with_overrides(self, **sections: Any) -> Settings:
        """A copy with some values replaced, re-validated (for tests and CLI flags)."""
        data = self.model_dump(by_alias=True)
        _deep_merge(data, sections)
        return Settings.model_validate(data)


def load_settings(
    environ: Mapping[str, str] | None = None, defaults_file: Path = DEFAULTS_FILE
) -> Settings:
    """Read the defaults, the optional overlay file and the environment into `Settings`.

    Raises:
        ConfigError: naming the key and its source when anything is unknown, missing or wrong.
    """
    env = os.environ if environ is None else environ
    origins: dict[tuple[str, ...], str] = {}
    data = _read_yaml(defaults_file)
    _resolve_paths(data, defaults_file.resolve().parent)
    _record_origins(data, (), defaults_file.name, origins)
    overlay = env.get(ENV_CONFIG_FILE)
    if overlay:
        overlay_path = Path(overlay).expanduser()
        extra = _read_yaml(overlay_path)
        _resolve_paths(extra, overlay_path.resolve().parent)
        _record_origins(extra, (), overlay, origins)
        _deep_merge(data, extra)
    _apply_environment(data, env, origins)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, origins, defaults_file.name)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return loaded


def _absolute(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make the path keys a file sets absolute, taken from that file's directory."""
    for path in PATH_KEYS:
        node: Any = data
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(path[-1]), str) and node[path[-1]]:
            node[path[-1]] = str(_absolute(node[path[-1]], base))


def _record_origins(
    node: Any, path: tuple[str, ...], origin: str, origins: dict[tuple[str, ...], str]
) -> None:
    origins[path] = origin
    if isinstance(node, dict):
        for key, value in node.items():
            _record_origins(value, (*path, str(key)), origin, origins)


def _deep_merge(into: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def env_names() -> dict[str, tuple[str, ...]]:
    """Every environment variable that sets a key, mapped to that key's path."""
    names: dict[str, tuple[str, ...]] = dict(ENV_ALIASES)

    def walk(model: type[BaseModel], path: tuple[str, ...]) -> None:
        for name, field in model.model_fields.items():
            key = field.alias or name
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, (*path, key))
            else:
                names[ENV_PREFIX + "_".join((*path, key)).upper()] = (*path, key)

    walk(Settings, ())
    return names


def _apply_environment(
    data: dict[str, Any], env: Mapping[str, str], origins: dict[tuple[str, ...], str]
) -> None:
    known = env_names()
    for name, raw in env.items():
        if name not in known:
            if name.startswith(ENV_PREFIX) and name != ENV_CONFIG_FILE:
                raise ConfigError(_unknown_variable(name, known))
            continue
        path = known[name]
        value: Any = raw
        if path in PATH_KEYS and raw:
            value = str(_absolute(raw, Path.cwd()))
        if raw[:1] in "[{":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"environment variable {name}: not valid JSON ({exc})") from None
        node = data
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
        origins[path] = f"environment variable {name}"


def _unknown_variable(name: str, known: Mapping[str, tuple[str, ...]]) -> str:
    """Name the variable, and the one that was probably meant."""
    if name in ENV_RENAMED:
        return f"environment variable {name} is now called {ENV_RENAMED[name]}: rename it"
    ours = [n.removeprefix(ENV_PREFIX) for n in known if n.startswith(ENV_PREFIX)]
    close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), ours, n=1, cutoff=0.6)
    hint = (
        f"did you mean {ENV_PREFIX}{close[0]}?"
        if close
        else f"every key of config.yaml has one, named {ENV_PREFIX}<SECTION>_<KEY>"
    )
    return f"environment variable {name}: no such setting; {hint}"


def _explain(exc: ValidationError, origins: dict[tuple[str, ...], str], defaults: str) -> str:
    lines = []
    for error in exc.errors():
        path = tuple(str(part) for part in error["loc"])
        key = ".".join(path) or "(top level)"
        origin = next(
            (origins[path[:n]] for n in range(len(path), -1, -1) if path[:n] in origins), defaults
        )
        if not path:
            lines.append(str(error["msg"]).removeprefix("Value error, "))
        elif error["type"] == "missing":
            lines.append(f"{origin}: {key} is missing")
        elif error["type"] == "extra_forbidden":
            lines.append(f"{origin}: {key} is not a known setting")
        else:
            lines.append(f"{origin}: {key}: {error['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
