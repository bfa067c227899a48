"""A matcher built with another's `Training` (normalised examples, temperature) is the same
matcher; a record of other code or another catalogue is ignored; a record is data, read as JSON."""

from __future__ import annotations

import dataclasses
import json

import pytest

from intents import Matcher
from intents.catalogue import Catalogue
from intents.matcher import Thresholds, Training, training_fingerprint
from intents.normalize import default_normalizer
from tests.unit.intents.conftest import NOW

MESSAGES = (
    "es muy caro",
    "lo tengo que pensar, pero ¿aceptan tarjeta?",
    "quiero hablar con un asesor",
    "mañana a las 5 me queda bien",
    "ya no me escriban",
    "jajaja ok gracias 👍",
    "el cielo es azul",
)


def test_a_recorded_training_builds_the_same_matcher(
    catalogue: Catalogue, matcher: Matcher
) -> None:
    record = matcher.training
    assert record is not None
    assert len(record.normalised) == len(catalogue.all_examples())
    again = Training.from_json(record.to_json())
    assert again == record  # JSON keeps every text and the float exactly
    rebuilt = Matcher.from_catalogue(catalogue, training=again)
    assert rebuilt.temperature == matcher.temperature
    assert rebuilt.examples == matcher.examples
    assert rebuilt.model == matcher.model
    for text in (*MESSAGES, *matcher.examples[::50]):
        assert rebuilt.match(text, NOW, "America/Mexico_City") == matcher.match(
            text, NOW, "America/Mexico_City"
        )


def test_the_record_is_taken_not_recomputed(catalogue: Catalogue, matcher: Matcher) -> None:
    assert matcher.training is not None
    odd = dataclasses.replace(matcher.training, temperature=7.5)
    assert Matcher.from_catalogue(catalogue, training=odd).temperature == 7.5


@pytest.mark.parametrize(
    "change",
    [
        lambda t: dataclasses.replace(t, fingerprint="otro-codigo"),
        lambda t: dataclasses.replace(t, normalised=t.normalised[:-1]),  # another catalogue
    ],
)
def test_a_record_of_other_code_or_another_catalogue_is_ignored(
    catalogue: Catalogue, matcher: Matcher, change: object
) -> None:
    assert matcher.training is not None and callable(change)
    odd = change(dataclasses.replace(matcher.training, temperature=7.5))
    assert Matcher.from_catalogue(catalogue, training=odd).temperature == matcher.temperature


def test_the_fingerprint_follows_the_knobs_and_the_tables() -> None:
    normalizer = default_normalizer()
    base = training_fingerprint(normalizer, Thresholds())
    assert base == training_fingerprint(normalizer, Thresholds())
    assert base != training_fingerprint(normalizer, Thresholds(smoothing=0.1))
    fewer = dataclasses.replace(normalizer, words={**normalizer.words, "xq": "porque no"})
    assert base != training_fingerprint(fewer, Thresholds())


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "no es json",
        "[]",
        json.dumps({"fingerprint": "x", "normalised": ["a", 3], "temperature": 1.5}),
        json.dumps({"fingerprint": "x", "normalised": ["a"], "temperature": -1.0}),
        json.dumps({"fingerprint": "x", "normalised": ["a"], "temperature": "1.5"}),
        '{"fingerprint": "x", "normalised": ["a"], "temperature": NaN}',
    ],
)
def test_anything_else_is_no_record(text: str | None) -> None:
    assert Training.from_json(text) is None
