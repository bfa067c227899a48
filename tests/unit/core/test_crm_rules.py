"""The CRM's pure rules: stage moves (lost needs a reason) and the score explained, with the
rules as config.yaml ships them."""

from __future__ import annotations

import pytest

from bot.core.crm import Outcome, check_lost_reason, check_move
from bot.core.errors import InvalidInput
from bot.core.model import Tier
from bot.core.scoring import (
    ATTENDED,
    BOOKED,
    BOUGHT,
    OPTED_OUT,
    REPLIED_FAST,
    SIGNALS,
    UNANSWERED,
    Scoring,
)
from bot.crm.pipelines import presets
from bot.settings import load_settings

SETTINGS = load_settings(environ={})
SCORING = SETTINGS.scoring.rules()
PIPELINES = {p.key: p for p in presets(SETTINGS.pipeline)}
REASONS = SETTINGS.pipeline.lost_reasons


def test_the_presets_are_seed_000_s_funnel_and_seed_002_s_real_estate_pipeline() -> None:
    funnel, estate = PIPELINES["funnel"], PIPELINES["real_estate"]
    assert [s.name for s in funnel.stages] == [
        "Conocimiento", "Interés", "Consideración", "Intención", "Compra",
    ]  # fmt: skip
    assert funnel.won == {"purchase"}
    assert [(s.name, s.cadence_days, s.outcome) for s in estate.stages] == [
        ("Prospecto", 3, Outcome.OPEN),
        ("Apartado", 2, Outcome.OPEN),
        ("Escriturado", 7, Outcome.WON),
        ("Entregado", 30, Outcome.WON),
        ("Cancelado", None, Outcome.LOST),
    ]
    cancelled = estate.stage("cancelado")
    assert cancelled is not None and cancelled.reason_required


def test_a_lost_stage_needs_one_of_the_reasons() -> None:
    estate = PIPELINES["real_estate"]
    for reason in (None, "", "porque sí"):
        with pytest.raises(InvalidInput) as refused:
            check_move(estate, "cancelado", reason, REASONS)
        assert refused.value.code == "lost_reason"
        assert refused.value.details == {"stage": "Cancelado"}
    move = check_move(estate, "cancelado", REASONS[1], REASONS)
    assert (move.stage.key, move.reason) == ("cancelado", REASONS[1])


def test_an_open_stage_keeps_no_reason_and_an_unknown_stage_is_refused() -> None:
    estate = PIPELINES["real_estate"]
    assert check_move(estate, "apartado", REASONS[0], REASONS).reason is None
    with pytest.raises(InvalidInput) as refused:
        check_move(estate, "purchase", None, REASONS)
    assert refused.value.code == "stage"


def test_a_lost_deal_needs_a_listed_reason() -> None:
    with pytest.raises(InvalidInput):
        check_lost_reason("", REASONS)
    assert check_lost_reason(f" {REASONS[0]} ", REASONS) == REASONS[0]


@pytest.mark.parametrize(
    ("rule", "label"),
    [
        ("intent:info.pricing", "Preguntó el precio"),
        ("intent:info.payment_options", "Preguntó por formas de pago"),
        ("intent:objection.not_interested", "Dijo que no le interesa"),
        (BOOKED, "Agendó una cita"),
        (ATTENDED, "Asistió a su cita"),
        (BOUGHT, "Compró (etapa ganada)"),
        (REPLIED_FAST, "Respondió rápido"),
        (UNANSWERED, "Intento de seguimiento sin respuesta"),
        (OPTED_OUT, "Pidió no recibir mensajes"),
        ("source:referido", "Origen: referido"),
    ],
)
def test_each_signal_moves_the_score_as_configured_and_the_explanation_says_so(
    rule: str, label: str
) -> None:
    configured = SCORING.points_of(rule)
    assert configured != 0, f"{rule} has points in config.yaml"
    moved = SCORING.apply(30, rule)
    assert moved is not None
    assert (moved.points, moved.score) == (configured, 30 + configured)
    assert moved.tier == SCORING.tier(30 + configured)
    sign = "+" if configured > 0 else ""
    assert SCORING.explain([(rule, moved.points)]) == [
        "Puntuación inicial: 30",
        f"{sign}{configured} {label}",
    ]


def test_every_signal_has_points_and_a_label() -> None:
    for signal in SIGNALS:
        assert SCORING.points_of(signal) != 0
        assert SCORING.label(signal) != signal


def test_the_scale_clamps_and_a_clamped_move_says_what_it_really_moved() -> None:
    scoring = Scoring(signals={BOUGHT: 15, OPTED_OUT: -20})
    moved = scoring.apply(45, BOUGHT)
    assert moved is not None and (moved.points, moved.score) == (5, 50)
    assert scoring.apply(50, BOUGHT) is None
    low = scoring.apply(10, OPTED_OUT)
    assert low is not None and (low.points, low.score, low.tier) == (-9, 1, Tier.DISQUALIFIED)


def test_tiers_are_hot_40_warm_30_cold_20_else_disqualified() -> None:
    assert [SCORING.tier(s) for s in (50, 40, 39, 30, 29, 20, 19, 1)] == [
        Tier.HOT, Tier.HOT, Tier.WARM, Tier.WARM, Tier.COLD, Tier.COLD,
        Tier.DISQUALIFIED, Tier.DISQUALIFIED,
    ]  # fmt: skip


def test_cooling_goes_to_the_top_of_cold_and_never_warms() -> None:
    cooled = SCORING.cool(45, "unanswered_cooled")
    assert cooled is not None and (cooled.score, cooled.tier) == (29, Tier.COLD)
    assert SCORING.cool(25) is None
    assert SCORING.label("unanswered_cooled").startswith("Tres intentos sin respuesta")
