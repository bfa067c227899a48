from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from intents import Matcher, load_catalogue
from intents.catalogue import Catalogue
from intents.classifier import features
from intents.linear import LinearModel, lbfgs
from intents.matcher import Thresholds

from .conftest import MX, NOW

SAMPLES = [
    ("price", "es muy caro"),
    ("price", "esta carisimo"),
    ("price", "que caro esta"),
    ("time", "no tengo tiempo"),
    ("time", "ando muy ocupado"),
    ("time", "estoy ocupada todo el dia"),
    ("greeting", "hola"),
    ("greeting", "buenos dias"),
    ("greeting", "hola buenas tardes"),
]


def _train() -> LinearModel:
    model = LinearModel.train([(label, features(text)) for label, text in SAMPLES])
    assert model is not None
    return model


def _best(model: LinearModel, text: str) -> str:
    return model.labels[int(np.argmax(model.logits(features(text))))]


def test_learns_the_examples_and_nearby_wordings() -> None:
    model = _train()
    assert model.labels == ("price", "time", "greeting")
    for label, text in SAMPLES:
        assert _best(model, text) == label
    assert _best(model, "carisimo") == "price"
    assert _best(model, "super ocupado") == "time"


def test_log_probabilities_are_a_distribution() -> None:
    model = _train()
    log_p = model.log_probabilities(features("muy caro"))
    assert np.isclose(np.exp(log_p).sum(), 1.0, atol=1e-5)
    assert model.labels[int(np.argmax(log_p))] == "price"


def test_training_is_deterministic() -> None:
    first, second = _train(), _train()
    assert np.array_equal(first.weights, second.weights)
    assert np.array_equal(first.bias, second.bias)


def test_features_of_one_example_can_be_left_out() -> None:
    samples = [(label, features(text)) for label, text in SAMPLES]
    full = LinearModel.train(samples)
    pruned = LinearModel.train(samples, min_df=2)
    assert full is not None and pruned is not None
    assert len(pruned.vocabulary) < len(full.vocabulary)
    assert "w carisimo" in full.vocabulary and "w carisimo" not in pruned.vocabulary


def test_unknown_text_scores_the_bias_alone() -> None:
    model = _train()
    assert np.array_equal(model.logits(frozenset({"w zzz"})), model.bias)
    assert np.array_equal(model.logits(frozenset()), model.bias)


def test_no_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="no training samples"):
        LinearModel.train([])


def test_a_catalogue_beyond_the_budget_is_not_trained() -> None:
    samples = [(label, features(text)) for label, text in SAMPLES]
    assert LinearModel.train(samples, budget=1.0) is None


def test_lbfgs_minimises_a_quadratic() -> None:
    target = np.arange(1, 6, dtype=np.float32)
    scale = np.array([1.0, 10.0, 0.1, 3.0, 1.0], dtype=np.float32)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        diff = x - target
        return float(np.sum(scale * diff**2)), (2 * scale * diff).astype(np.float32)

    found = lbfgs(objective, np.zeros(5, dtype=np.float32), 100, tolerance=1e-12)
    assert np.allclose(found, target, atol=1e-2)


def test_matcher_uses_the_linear_expert(catalogue: Catalogue, matcher: Matcher) -> None:
    assert matcher.linear is not None
    assert matcher.linear.labels == matcher.model.labels


def test_matcher_without_the_linear_expert_still_understands(catalogue: Catalogue) -> None:
    alone = Matcher.from_catalogue(catalogue, thresholds=Thresholds(linear_budget=0.0))
    assert alone.linear is None
    result = alone.match("¿cuánto cuesta?", NOW, MX)
    assert result.intent == "info.pricing"
    assert 0.0 <= result.confidence <= 1.0


def test_a_matcher_is_built_from_a_catalogue_in_memory() -> None:
    # Scripts will live in a database: building the matcher must not need a file.
    source = load_catalogue()
    copy = Catalogue(
        path=Path("<database>"),
        intents=source.intents,
        entries=dict(source.entries),
        scripts=dict(source.scripts),
    )
    assert Matcher.from_catalogue(copy).match("hola", NOW, MX).intent == "greeting"
