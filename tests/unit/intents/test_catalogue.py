from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from bot.core.scripts import SYSTEM_SCRIPTS
from intents import CatalogueError, load_catalogue
from intents.catalogue import Catalogue
from intents.normalize import normalize
from tests.paths import DATA, NLU_DEV

INTENT_IDS = [
    "objection.price",
    "objection.budget",
    "objection.time",
    "objection.think",
    "objection.industry_fit",
    "objection.trust",
    "objection.partner",
    "objection.competitor",
    "objection.not_interested",
    "objection.later",
    "objection.results_doubt",
    "objection.tech_skills",
    "objection.send_info",
    "info.pricing",
    "info.payment_options",
    "info.guarantee",
    "info.product",
    "buy.intent",
    "schedule.book",
    "schedule.reschedule",
    "schedule.cancel",
    "handoff.human",
    "optout",
    "greeting",
    "thanks",
    "affirm",
    "deny",
    "none",
]

GOOD_INTENT = """\
  greeting:
    label: "un saludo"
    examples: ["hola", "buenas tardes"]
    replies: ["¡Hola, {nombre}!"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scripts.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_scripts_cover_every_intent(catalogue: Catalogue) -> None:
    assert sorted(catalogue.intents) == sorted(INTENT_IDS)
    for intent in INTENT_IDS:
        assert len(catalogue.examples(intent)) >= 25, intent
        assert len(catalogue.replies(intent)) >= 2, intent
        assert catalogue.label(intent).strip(), intent
    assert catalogue.warnings == ()
    # The texts the conversation logic sends beside the intents' own (bot/scripts.py).
    assert set(SYSTEM_SCRIPTS) <= set(catalogue.scripts)
    for script in catalogue.scripts:
        assert len(catalogue.replies(script)) >= 2, script


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    "path",
    [
        NLU_DEV / "intents_dev.csv",
        DATA / "intents_holdout_own.csv",
        DATA / "intents_holdout_own2.csv",
    ],
    ids=["dev", "own-holdout", "own-holdout-2"],
)
def test_no_evaluation_row_is_a_training_example(catalogue: Catalogue, path: Path) -> None:
    examples = {normalize(e.text): e for e in catalogue.all_examples()}
    leaked = [
        f"{row['text']!r} reads like {examples[key].text!r} ({examples[key].intent})"
        for row in _rows(path)
        if (key := normalize(row["text"])) in examples
    ]
    assert leaked == []


# The blind sets' short, generic rows ("vale", "humano") may equal an example by coincidence:
# as many as when each set was handed over, never more (the count only, so that a failure does
# not show anyone the rows).
@pytest.mark.parametrize(
    ("name", "coincident"),
    [
        ("intents_holdout_blind.csv", 22),
        ("intents_holdout_blind2.csv", 92),
        ("intents_holdout_blind4.csv", 81),
    ],
)
def test_no_blind_row_becomes_a_training_example(
    catalogue: Catalogue, name: str, coincident: int
) -> None:
    examples = {normalize(e.text) for e in catalogue.all_examples()}
    equal = sum(normalize(row["text"]) in examples for row in _rows(DATA / name))
    assert equal <= coincident, f"{equal - coincident} more rows of {name} are now examples"


def test_replies_lookup_accepts_script_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path, f'intents:\n{GOOD_INTENT}scripts:\n  schedule.ask_time: ["¿A qué hora?"]\n'
    )
    catalogue = load_catalogue(path)
    assert catalogue.replies("schedule.ask_time") == ("¿A qué hora?",)
    assert catalogue.replies("greeting") == ("¡Hola, {nombre}!",)
    assert catalogue.path == path
    with pytest.raises(KeyError):
        catalogue.replies("nothing.here")


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ('intents:\n  greeting:\n    label: "hola\n', 4, "invalid YAML"),
        ("intents:\n  greeting: [\n", 3, "invalid YAML"),
        ("", 1, "empty"),
        ("- a\n- b\n", 1, "the top level must be a mapping"),
        ("scripts: {}\n", 1, "missing 'intents:'"),
        ("intents: {}\n", 1, "no intent"),
        ("intents:\n  Greeting!:\n    label: x\n", 2, "must be lower-case"),
        (
            'intents:\n  greeting:\n    label: "x"\n    examples: ["hola"]\n',
            3,
            "has no 'replies'",
        ),
        (
            'intents:\n  greeting:\n    label: "x"\n    examples: "hola"\n    replies: ["a"]\n',
            4,
            "greeting.examples must be a non-empty list",
        ),
        (
            'intents:\n  deny:\n    label: "un no"\n    examples:\n      - nel\n      - no\n'
            '    replies: ["ok"]\n',
            6,
            "expected text",
        ),
        (
            'intents:\n  greeting:\n    label: "x"\n    exampels: ["hola"]\n',
            4,
            "unknown key 'exampels'",
        ),
        (
            'intents:\n  greeting:\n    label: "x"\n    examples: ["hola"]\n'
            '    replies:\n      - "Hola {nombre}"\n      - "Soy {asesr}"\n',
            7,
            "unknown placeholder {asesr}",
        ),
        (
            'intents:\n  greeting:\n    label: "x"\n    examples: ["hola"]\n'
            '    replies:\n      - "Hola {nombre"\n',
            6,
            "expected '}'",
        ),
        (f"intents:\n{GOOD_INTENT}{GOOD_INTENT}", 6, "'greeting' repeated (first on line 2)"),
        (
            'intents:\n  greeting:\n    label: "   "\n    examples: ["hola"]\n    replies: ["a"]\n',
            3,
            "empty text",
        ),
        (
            'intents:\n  greeting:\n    label: "x"\n    examples: ["hola"]\n'
            '    replies:\n      - text: "¿Te llamo?"\n        books: lunch\n',
            7,
            "books: 'lunch' is not one of call, meeting, visit",
        ),
    ],
)
def test_malformed_file_names_file_line_and_problem(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(path)
    error = caught.value
    assert (error.path, error.line) == (path, line)
    assert problem in error.problem
    assert str(error).startswith(f"{path}:{line}: ")


def test_missing_file_is_a_catalogue_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "nope.yaml")


def test_conflicting_and_duplicate_examples_are_warned_naming_both(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path,
        "intents:\n"
        '  affirm:\n    label: "sí"\n    examples: ["Dale", "ok", "OK!!"]\n'
        '    replies: ["a"]\n'
        '  buy.intent:\n    label: "comprar"\n    examples: ["¡dale!", "lo quiero"]\n'
        '    replies: ["b"]\n',
    )
    with caplog.at_level(logging.WARNING, logger="intents"):
        catalogue = load_catalogue(path)
    conflicting = [w for w in catalogue.warnings if ": conflicting example" in w]
    duplicate = [w for w in catalogue.warnings if ": duplicate example" in w]
    assert len(conflicting) == 1
    assert "'¡dale!' (buy.intent)" in conflicting[0]
    assert "'Dale' (affirm, line 4)" in conflicting[0]
    assert len(duplicate) == 1
    assert "'OK!!'" in duplicate[0]
    assert "'ok' (affirm" in duplicate[0]
    assert len([r for r in caplog.records if r.name == "intents"]) == 2


def test_example_that_normalises_to_nothing_is_warned(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'intents:\n  none:\n    label: "otra cosa"\n    examples: ["???", "jaja"]\n'
        '    replies: ["¿Perdón?"]\n',
    )
    (warning,) = load_catalogue(path).warnings
    assert "'???'" in warning
    assert "nothing" in warning


def test_a_reply_may_offer_materials_and_the_editor_keeps_them() -> None:
    from intents import editing, parse_catalogue

    text = (
        "intents:\n  info.pricing:\n    label: precios\n    examples: [cuánto cuesta]\n"
        "    replies:\n      - Cuesta poco.\n      - Te envío la tabla.\n"
    )
    text = editing.set_materials(text, "info.pricing", 1, ["tabla-planes", " ", "tabla-planes"])
    catalogue = parse_catalogue(text, "borrador")
    assert catalogue.replies("info.pricing") == ("Cuesta poco.", "Te envío la tabla.")
    assert catalogue.offered("info.pricing") == ((), ("tabla-planes",))
    view = editing.intent(
        editing.add(text, "info.pricing", "replies", "Te envío la tabla."), "info.pricing"
    )
    assert view is not None and view.offers == ((), ("tabla-planes",))
    plain = editing.set_materials(text, "info.pricing", 1, [])
    assert parse_catalogue(plain, "borrador").offered("info.pricing") == ()


def test_a_yes_to_a_reply_may_book_and_the_editor_keeps_it_beside_the_materials() -> None:
    from intents import editing, parse_catalogue

    text = (
        "intents:\n  objection.time:\n    label: tiempo\n    examples: [no tengo tiempo]\n"
        "    replies:\n      - Te entiendo.\n      - ¿Te comparto un caso y lo platicamos?\n"
    )
    text = editing.set_materials(text, "objection.time", 1, ["mejor:caso"])
    text = editing.set_books(text, "objection.time", 1, "call")
    catalogue = parse_catalogue(text, "borrador")
    assert catalogue.booked("objection.time") == (None, "call")
    assert catalogue.offered("objection.time") == ((), ("mejor:caso",))
    # Setting one keeps the other; clearing both makes the variant a plain text again.
    text = editing.set_materials(text, "objection.time", 1, [])
    assert parse_catalogue(text, "borrador").booked("objection.time") == (None, "call")
    view = editing.intent(text, "objection.time")
    assert view is not None and view.books == (None, "call")
    plain = editing.set_books(text, "objection.time", 1, None)
    assert "books" not in plain and "text:" not in plain
    with pytest.raises(editing.EditError):
        editing.set_books(text, "objection.time", 1, "lunch")
