"""Customer lifetime value and LTV:CAC, as seed 004 defines them. Pure arithmetic on Decimals.

Each business model has its formula (seed 004, "Cómo calcular LTV"):

- subscription, periodic payments: LTV = ARPU × customer lifetime (periods);
- e-commerce and retail: LTV = average order value × purchase frequency × lifespan;
- SaaS and online services with a known churn: LTV = ARPU × gross margin ÷ churn rate;
- long contracts and occasional purchases: LTV = Σ revenueₜ × margin ÷ (1 + discount)ᵗ − CAC.

The ratio LTV:CAC reads, per the seed: below 1 the business loses money; 1 to 2 the money
"evaporates" (a risky balance); 3 is the healthy standard; 4 to 5 clearly profitable, maybe
too careful with marketing; each sector has its own reference (real estate ≈ 4:1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

CENT = Decimal("0.01")


class Model(StrEnum):
    SUBSCRIPTION = "subscription"
    RETAIL = "retail"
    MARGIN_CHURN = "margin_churn"
    DISCOUNTED = "discounted"


def subscription(arpu: Decimal, lifetime_periods: Decimal) -> Decimal:
    """ARPU × lifetime: $30 a month for 24 months is $720."""
    return _money(arpu * lifetime_periods)


def retail(average_order: Decimal, purchases_per_year: Decimal, years: Decimal) -> Decimal:
    """AOV × frequency × lifespan: $80, 4 times a year for 3 years is $960."""
    return _money(average_order * purchases_per_year * years)


def margin_churn(arpu: Decimal, gross_margin: Decimal, churn_rate: Decimal) -> Decimal:
    """ARPU × margin ÷ churn: $15 at 60 % margin and 4 % monthly churn is $225.

    Raises:
        ValueError: a churn rate of zero (every customer would stay for ever).
    """
    if churn_rate <= 0:
        raise ValueError("the churn rate must be above zero")
    return _money(arpu * gross_margin / churn_rate)


def discounted(
    revenues: Sequence[Decimal], margin: Decimal, discount_rate: Decimal, cac: Decimal
) -> Decimal:
    """Σ revenueₜ × margin ÷ (1 + rate)ᵗ − CAC: $200, $240, $300 over three years at 50 %
    margin, 10 % discount and $100 CAC is $202.78 (the seed rounds each year's contribution
    to the cent before adding them, and so does this)."""
    total = sum(
        (
            _money(revenue * margin / (1 + discount_rate) ** year)
            for year, revenue in enumerate(revenues, start=1)
        ),
        Decimal(0),
    )
    return _money(total - cac)


class Verdict(StrEnum):
    LOSING = "losing"  # < 1: every customer costs more than they bring
    RISKY = "risky"  # 1 to under 3: the money evaporates
    HEALTHY = "healthy"  # 3 to under 4
    PROFITABLE = "profitable"  # 4 and more: room to spend more on acquisition


@dataclass(frozen=True, slots=True)
class Ratio:
    value: Decimal
    verdict: Verdict
    reference: Decimal  # the sector's usual ratio (seed 004), to compare with


# Seed 004's references by sector; 3:1 when the business says nothing else.
REFERENCES = {
    "general": Decimal(3),
    "real_estate": Decimal(4),
    "b2b_saas": Decimal(4),
    "b2c_saas": Decimal(5),
    "financial_services": Decimal(4),
    "business_services": Decimal(3),
    "education": Decimal(5),
    "consulting": Decimal(4),
}


def ratio(ltv: Decimal, cac: Decimal, sector: str = "general") -> Ratio | None:
    """LTV:CAC with the seed's verdict; None when nothing was spent (no ratio to speak of)."""
    if cac <= 0:
        return None
    value = (ltv / cac).quantize(Decimal("0.01"))
    if value < 1:
        verdict = Verdict.LOSING
    elif value < 3:
        verdict = Verdict.RISKY
    elif value < 4:
        verdict = Verdict.HEALTHY
    else:
        verdict = Verdict.PROFITABLE
    return Ratio(value, verdict, REFERENCES.get(sector, REFERENCES["general"]))


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT)
