"""The score scale, its tiers, and handoff priority (seed 000)."""

from __future__ import annotations

import pytest

from bot.core.model import Tier
from bot.core.scoring import HandoffPriority, Scoring

SCORING = Scoring(initial=30, hot=40, warm=30, cold=20)


@pytest.mark.parametrize(
    ("score", "tier"),
    [
        (50, Tier.HOT),
        (40, Tier.HOT),
        (39, Tier.WARM),
        (30, Tier.WARM),
        (29, Tier.COLD),
        (20, Tier.COLD),
        (19, Tier.DISQUALIFIED),
        (1, Tier.DISQUALIFIED),
    ],
)
def test_tiers_follow_seed_000(score: int, tier: Tier) -> None:
    assert SCORING.tier(score) == tier


def test_scores_stay_between_1_and_50() -> None:
    assert SCORING.moved(45, 10) == 50
    assert SCORING.moved(5, -8) == 1
    assert SCORING.moved(30, 10) == 40


def test_an_idle_lead_cools_to_the_top_of_cold_at_most() -> None:
    assert SCORING.tier(SCORING.cooled(45)) == Tier.COLD
    assert SCORING.cooled(22) == 22


def test_hot_leads_jump_the_queue() -> None:
    priority = HandoffPriority({"buy.intent": 30, "handoff.human": 20}, hot_bonus=10)
    assert priority.of("buy.intent", "hot") == 40
    assert priority.of("handoff.human", "warm") == 20
    assert priority.of("something.else", "cold") == 0
