from __future__ import annotations

from intents.entities import find_emails, find_phones


def test_phone_with_default_region() -> None:
    assert find_phones("mi cel es 55 1234 5678, márcame") == ("+525512345678",)


def test_phone_with_country_code_and_other_region() -> None:
    assert find_phones("escríbeme al +57 300 123 4567", "MX") == ("+573001234567",)
    assert find_phones("mi número: 300 123 4567", "co") == ("+573001234567",)


def test_phones_are_unique_and_invalid_ones_ignored() -> None:
    text = "55 1234 5678 o 55-1234-5678, no el 12345"
    assert find_phones(text) == ("+525512345678",)


def test_emails_lowercased_without_trailing_punctuation() -> None:
    assert find_emails("Escríbeme a Ana.Perez@Gmail.com.") == ("ana.perez@gmail.com",)
    assert find_emails("a@b.co, c@d.com.mx y a@b.co") == ("a@b.co", "c@d.com.mx")


def test_nothing_found() -> None:
    assert find_phones("quiero info") == ()
    assert find_emails("mi correo es arroba gmail") == ()
