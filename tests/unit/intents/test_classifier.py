"""Naive Bayes's dense table scores exactly as its postings do."""

from __future__ import annotations

import numpy as np
import pytest

from intents import classifier
from intents.catalogue import Catalogue
from intents.classifier import NaiveBayes, features
from intents.matcher import Matcher

MESSAGES = [
    "¿cuánto cuesta?",
    "está muy caro, no tengo dinero ahorita",
    "me interesa pero hasta marzo",
    "ok",
    "zzz qqq",  # nothing known
    "",
    " ".join(f"palabra{i}" for i in range(300)) + " precio caro tiempo",  # many features
]


def test_the_table_scores_as_the_postings_do(matcher: Matcher, catalogue: Catalogue) -> None:
    table = matcher.table
    assert table is not None
    texts = [example.text for example in catalogue.all_examples()][::7] + MESSAGES
    for text in texts:
        found = features(matcher.normalizer(text))
        rows = table.rows(found)
        assert table.scores(rows) == matcher.model.scores(found)[0], text  # the same floats
        assert len(rows) == matcher.model.scores(found)[1]


def test_the_logistic_regression_reads_its_own_rows_from_the_table(
    matcher: Matcher, catalogue: Catalogue
) -> None:
    assert matcher.linear is not None
    for text in [example.text for example in catalogue.all_examples()][::11] + MESSAGES:
        found = features(matcher.normalizer(text))
        rows = matcher._linear_rows(matcher.table.rows(found))  # type: ignore[union-attr]
        assert np.array_equal(
            matcher.linear.log_probabilities_at(rows), matcher.linear.log_probabilities(found)
        )


def test_features_the_regression_lacks_come_after_its_own() -> None:
    samples = [("a", {"x", "y"}), ("b", {"y", "z"}), ("a", {"w"})]
    model = NaiveBayes.train(samples)
    table = model.table(["z", "x"])
    assert table is not None
    assert [table.index[f] for f in ("z", "x")] == [0, 1]
    assert sorted(table.index.values()) == [0, 1, 2, 3]
    assert table.scores(table.rows(["w", "y", "q"])) == model.scores(["w", "y", "q"])[0]


def test_a_catalogue_too_big_for_a_table_is_scored_from_the_postings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    samples = [("a", {"x", "y"}), ("b", {"y", "z"})]
    monkeypatch.setattr(classifier, "MAX_TABLE_CELLS", 5)  # 3 features x 2 classes
    assert NaiveBayes.train(samples).table() is None


def test_a_matcher_without_a_table_understands_the_same(
    matcher: Matcher, catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(classifier, "MAX_TABLE_CELLS", 0)
    plain = Matcher.from_catalogue(catalogue)
    assert plain.table is None
    assert plain.temperature == matcher.temperature
    for text in MESSAGES:
        ours, theirs = plain.score(plain.normalizer(text)), matcher.score(matcher.normalizer(text))
        # (The logistic regression scores in float32: its last bits may differ between two
        # copies of its weights.)
        assert ours.probs == pytest.approx(theirs.probs, rel=1e-5, abs=1e-9)
