"""How warm a lead is: the score (1-50, seed 000), its tier, and what it does to the queue.

The one place that knows the scale. The score moves by explainable rules kept as data
(config.yaml `scoring`): a message's intent (`points`), signals such as a booking or an
opt-out (`signals`), the lead's source (`sources`). Each move is a `Contribution` the CRM
stores (`score_events`), so the lead page can say which rules made the number. The idle
sweep cools scores with `Scoring.cooled`, the handoff queue orders by `HandoffPriority.of`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bot.core.model import Tier

LOWEST, HIGHEST = 1, 50

# Rule ids (`score_events.rule`): "intent:<intent>", "source:<source>", or a signal's name.
INTENT, SOURCE = "intent:", "source:"
BOOKED, ATTENDED, BOUGHT = "booked", "attended", "bought"
REPLIED_FAST, UNANSWERED, OPTED_OUT = "replied_fast", "unanswered", "opted_out"
# Moves that are not points but rules of the scale: idle too long, too many unanswered attempts.
IDLE_COOLED, UNANSWERED_COOLED = "idle_cooled", "unanswered_cooled"
SIGNALS = (BOOKED, ATTENDED, BOUGHT, REPLIED_FAST, UNANSWERED, OPTED_OUT)


@dataclass(frozen=True, slots=True)
class Contribution:
    """One rule's move: the points it really made (after clamping to 1-50) and the result."""

    rule: str
    points: int
    score: int
    tier: Tier


@dataclass(frozen=True, slots=True)
class Scoring:
    initial: int = 30
    # Lowest score of each tier; below `cold` a lead is disqualified.
    hot: int = 40
    warm: int = 30
    cold: int = 20
    # Points a message of each intent adds (negative: takes away).
    points: Mapping[str, int] = field(default_factory=dict)
    # Points of each signal (booked, attended, bought, replied_fast, unanswered, opted_out).
    signals: Mapping[str, int] = field(default_factory=dict)
    # Points a new lead gets for where it came from.
    sources: Mapping[str, int] = field(default_factory=dict)
    # A reply within this many minutes of the bot's last message is "replied fast".
    replied_fast_minutes: int = 5
    # Seed 002: this many unanswered attempts within `unanswered_days` make a lead cold.
    unanswered_attempts: int = 3
    unanswered_days: int = 14
    # How each rule reads on the lead page (Spanish, data): by rule id, or by its prefix
    # ("intent:", "source:") with {name} filled in.
    labels: Mapping[str, str] = field(default_factory=dict)

    def tier(self, score: int) -> Tier:
        if score >= self.hot:
            return Tier.HOT
        if score >= self.warm:
            return Tier.WARM
        if score >= self.cold:
            return Tier.COLD
        return Tier.DISQUALIFIED

    def moved(self, score: int, delta: int) -> int:
        return max(LOWEST, min(HIGHEST, score + delta))

    def cooled(self, score: int) -> int:
        """The score of a lead idle too long: no warmer than the top of the cold tier."""
        return min(score, self.warm - 1)

    def points_of(self, rule: str) -> int:
        """The configured points of a rule id (0: the rule is not configured)."""
        if rule.startswith(INTENT):
            return self.points.get(rule.removeprefix(INTENT), 0)
        if rule.startswith(SOURCE):
            return self.sources.get(rule.removeprefix(SOURCE), 0)
        return self.signals.get(rule, 0)

    def apply(self, score: int, rule: str, points: int | None = None) -> Contribution | None:
        """What `rule` does to `score` (its configured points unless given); None when it
        moves nothing (not configured, or the score is already at the end of the scale)."""
        delta = self.points_of(rule) if points is None else points
        new = self.moved(score, delta)
        if new == score:
            return None
        return Contribution(rule, new - score, new, self.tier(new))

    def cool(self, score: int, rule: str = IDLE_COOLED) -> Contribution | None:
        """Down to the top of the cold tier at most (idle too long, unanswered attempts)."""
        return self.apply(score, rule, self.cooled(score) - score)

    def label(self, rule: str) -> str:
        if rule in self.labels:
            return self.labels[rule]
        for prefix in (INTENT, SOURCE):
            if rule.startswith(prefix) and prefix in self.labels:
                return self.labels[prefix].format(name=rule.removeprefix(prefix))
        return rule

    def explain(self, contributions: Iterable[tuple[str, int]]) -> list[str]:
        """The score in words, one line per rule, in the order they happened:
        ["Puntuación inicial: 30", "+3 Preguntó el precio", ...]."""
        lines = [f"{self.labels.get('initial', 'Inicial')}: {self.initial}"]
        lines += [f"{points:+d} {self.label(rule)}" for rule, points in contributions]
        return lines


@dataclass(frozen=True, slots=True)
class HandoffPriority:
    """Queue priority of a handoff: by why it happened, plus a bonus for hot leads."""

    by_reason: Mapping[str, int] = field(default_factory=dict)
    hot_bonus: int = 0

    def of(self, reason: str, tier: str) -> int:
        return self.by_reason.get(reason, 0) + (self.hot_bonus if tier == Tier.HOT else 0)
