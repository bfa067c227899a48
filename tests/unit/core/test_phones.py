from __future__ import annotations

import pytest

from bot.core.phones import spellings, to_e164


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("55 1234 5678", "MX", "+525512345678"),
        ("+57 300 123 4567", "MX", "+573001234567"),
        ("300 123 4567", "CO", "+573001234567"),
        ("+52 1 55 1234 5678", "MX", "+525512345678"),  # legacy mobile form, current spelling
        ("+54 9 11 2345 6789", "AR", "+5491123456789"),
        ("hola", "MX", None),
        ("123", "MX", None),
    ],
)
def test_to_e164(raw: str, region: str, expected: str | None) -> None:
    assert to_e164(raw, region) == expected


@pytest.mark.parametrize(
    ("e164", "other"),
    [
        ("+5215512345678", "+525512345678"),  # Mexico's old mobile "1"
        ("+525512345678", "+5215512345678"),
        ("+5491123456789", "+541123456789"),  # Argentina's mobile "9"
        ("+541123456789", "+5491123456789"),
    ],
)
def test_legacy_mobile_forms_are_one_number(e164: str, other: str) -> None:
    assert spellings(e164) == (e164, other)


def test_other_countries_have_one_spelling() -> None:
    assert spellings("+573001234567") == ("+573001234567",)
