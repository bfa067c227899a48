"""The CRM's rules, pure: pipelines and their stages as values, what moving a lead between
stages needs, the kinds of activities and what a call can end in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

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
