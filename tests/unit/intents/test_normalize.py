from __future__ import annotations

from pathlib import Path

import pytest

from intents.normalize import MAX_CHARS, QUESTION, fold, load_normalizer, normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ESTÁ CARÍSIMO", "esta carisimo"),
        ("Mañana", "manana"),
        ("siiiii", "si"),
        ("holaaa", "hola"),
        ("graciass", "gracias"),
        ("noo", "no"),
        ("llamar carro acción leer", "llamar carro accion leer"),  # Spanish doubles stay
    ],
)
def test_case_accents_and_stretched_letters(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ta muy caro xq no me haces descuento", "esta muy caro porque no me haces descuento"),
        ("q precio tiene", "que precio tiene"),
        ("tmb lo quiero x favor", "tambien lo quiero por favor"),
        ("mñn a las 5", "manana a las 5"),
        ("ntp, porfa", "no te preocupes por favor"),
        ("pq d eso nada", "porque de eso nada"),
        ("k onda", "que onda"),
        ("simón", "si"),
    ],
)
def test_chat_shorthand_is_expanded(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_shorthand_comes_from_the_data_file(tmp_path: Path) -> None:
    table = tmp_path / "abbreviations.yaml"
    table.write_text('words:\n  xyz: "por favor"\nemojis:\n  "🦄": unicornio\n', encoding="utf-8")
    custom = load_normalizer(table)
    assert custom("xyz 🦄") == "por favor unicornio"
    assert custom("xq") == "xq"  # the packaged table is not consulted


def test_a_broken_data_file_is_reported(tmp_path: Path) -> None:
    table = tmp_path / "abbreviations.yaml"
    table.write_text("words: [a, b]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="words"):
        load_normalizer(table)


def test_meaningful_emojis_become_words_and_others_go() -> None:
    assert normalize("👍") == "ok"
    assert normalize("👎") == "no"
    assert normalize("🙏") == "gracias"
    assert normalize("🙅‍♂️") == "no"  # joiner and gender sign removed first
    assert normalize("👍🏽") == "ok"  # skin tone removed
    assert normalize("😒😒 🌮") == ""


def test_punctuation_splits_clauses_and_marks_questions() -> None:
    from intents.normalize import default_normalizer

    clauses = default_normalizer().clauses("Hola!! ¿Cuánto cuesta? Gracias.")
    assert clauses == ("hola", f"cuanto cuesta {QUESTION}", "gracias")


def test_times_and_numbers_survive() -> None:
    assert normalize("el 3/12 a las 16:30") == "el 3/12 a las 16:30"
    assert normalize("a las 4.30") == "a las 4:30"
    assert normalize("$1,500 al mes") == "1500 al mes"
    assert normalize("a las 5pm") == "a las 5 pm"


def test_laughter_is_folded() -> None:
    assert normalize("jajsjajaja") == "jaja"
    assert normalize("JAJAJA q risa") == "jaja que risa"
    assert normalize("aja") == "aja"  # one syllable is not laughter


def test_junk_never_raises_and_length_is_capped() -> None:
    assert normalize("\x00\x01\x7f") == ""
    assert normalize("\ud800 hola") == "hola"  # lone surrogate
    assert isinstance(normalize(bytes(range(256)).decode("latin-1")), str)
    long = "hola " * 10_000
    assert len(normalize(long)) <= MAX_CHARS


def test_fold_is_idempotent() -> None:
    for text in ["Ñandú", "ÁÉÍÓÚ", "cooperar", "ahhhh"]:
        assert fold(fold(text)) == fold(text)


def test_a_vocative_after_a_determiner_is_a_person() -> None:
    # "hermano" spoken to says nothing; "mi hermano" is someone the message is about.
    assert normalize("hermano, ¿cuánto cuesta?") == "cuanto cuesta ?"
    assert normalize("¿cómo está, hermano?") == "como esta ?"
    assert normalize("mi hermano quiere hablar con su jefe") == (
        "mi hermano quiere hablar con su jefe"
    )
    assert normalize("vinieron unos cuates") == "vinieron unos cuates"
