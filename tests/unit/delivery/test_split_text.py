from __future__ import annotations

from bot.delivery.outbox import split_text


def test_short_text_is_one_part() -> None:
    assert split_text("Hola, ¿cómo estás?", 4096) == ["Hola, ¿cómo estás?"]
    assert split_text("x" * 10_000, None) == ["x" * 10_000]


def test_long_text_is_cut_between_sentences() -> None:
    sentence = "Nuestro programa te ahorra veinte horas a la semana. "
    text = sentence * 200
    parts = split_text(text, 1600)
    assert all(len(part) <= 1600 for part in parts)
    assert all(part.endswith(".") for part in parts)
    assert " ".join(parts) == text.strip()


def test_one_endless_sentence_is_cut_between_words() -> None:
    text = "palabra " * 1000
    parts = split_text(text, 4096)
    assert all(len(part) <= 4096 for part in parts)
    assert all(not part.startswith(" ") and "palabr " not in part for part in parts)
    assert " ".join(parts).split() == text.split()


def test_no_spaces_at_all_is_cut_hard() -> None:
    parts = split_text("a" * 5000, 4096)
    assert [len(part) for part in parts] == [4096, 904]


def test_newlines_are_boundaries_too() -> None:
    text = ("línea de texto\n" * 400).strip()
    parts = split_text(text, 1000)
    assert all(len(part) <= 1000 for part in parts)
    assert "\n".join(parts) == text
