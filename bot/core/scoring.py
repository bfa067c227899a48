"""How warm a lead is: the score (1-50, seed 000), its tier, and what it does to the queue.

The one place that knows the scale: the engine moves scores with `Scoring.moved`, the idle
sweep cools them with `Scoring.cooled`, the handoff queue orders by `HandoffPriority.of`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.core.model import Tier

LOWEST, HIGHEST = 1, 50


@dataclass(frozen=True, slots=True)
class Scoring:
    initial: int = 30
    # Lowest score of each tier; below `cold` a lead is disqualified.
    hot: int = 40
    warm: int = 30
    cold: int = 20
    # Points a message of each intent adds (negative: takes away).
    points: Mapping[str, int] = field(default_factory=dict)

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


@dataclass(frozen=True, slots=True)
class HandoffPriority:
    """Queue priority of a handoff: by why it happened, plus a bonus for hot leads."""

    by_reason: Mapping[str, int] = field(default_factory=dict)
    hot_bonus: int = 0

    def of(self, reason: str, tier: str) -> int:
        return self.by_reason.get(reason, 0) + (self.hot_bonus if tier == Tier.HOT else 0)
