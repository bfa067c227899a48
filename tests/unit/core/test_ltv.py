"""LTV and LTV:CAC against seed 004's worked examples."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from bot.core import ltv
from bot.core.ltv import Verdict


def test_subscription_arpu_times_lifetime() -> None:
    assert ltv.subscription(D(30), D(24)) == D("720.00")


def test_retail_order_value_times_frequency_times_lifespan() -> None:
    assert ltv.retail(D(80), D(4), D(3)) == D("960.00")


def test_margin_over_churn() -> None:
    assert ltv.margin_churn(D(15), D("0.60"), D("0.04")) == D("225.00")
    with pytest.raises(ValueError, match="churn"):
        ltv.margin_churn(D(15), D("0.60"), D(0))


def test_discounted_contributions_minus_cac() -> None:
    revenues = [D(200), D(240), D(300)]
    assert ltv.discounted(revenues, D("0.5"), D("0.10"), D(100)) == D("202.78")


@pytest.mark.parametrize(
    ("value", "verdict"),
    [
        ("0.5", Verdict.LOSING),
        ("1", Verdict.RISKY),
        ("2.9", Verdict.RISKY),
        ("3", Verdict.HEALTHY),
        ("4", Verdict.PROFITABLE),
        ("5.5", Verdict.PROFITABLE),
    ],
)
def test_the_ratio_reads_as_the_seed_says(value: str, verdict: Verdict) -> None:
    found = ltv.ratio(D(value) * 100, D(100))
    assert found is not None and found.verdict == verdict


def test_real_estate_is_judged_against_four_to_one_and_no_cac_is_no_ratio() -> None:
    found = ltv.ratio(D(400), D(100), "real_estate")
    assert found is not None and found.value == D("4.00") and found.reference == D(4)
    assert ltv.ratio(D(400), D(0)) is None
