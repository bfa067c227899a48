from __future__ import annotations

from pathlib import Path

import pytest

from intents.entities import find_emails, find_phones, find_position, says_bought
from intents.names import DEFAULT_NAMES, find_name, load_names
from intents.normalize import normalize


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


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("la primera", 1),
        ("sí, la primera", 1),
        ("me quedo con la segunda opción", 2),
        ("la tercera porfa", 3),
        ("prefiero la última", -1),
        ("lo primero", 1),
        ("el primero que me dijiste", 1),
        ("opción 2", 2),
        ("la 2da", 2),
        ("2", 2),
    ],
)
def test_a_position_in_an_offered_list(text: str, position: int) -> None:
    assert find_position(normalize(text)) == position


@pytest.mark.parametrize(
    "text",
    [
        "la primera vez que los vi",  # not a pick
        "la segunda semana de diciembre",
        "el 3",  # a day of the month
        "a las 3",  # an hour
        "la de las 4",  # an hour: the dialogue matches it against the slots
        "ninguna",
        "primero quiero saber el precio",
    ],
)
def test_no_position(text: str) -> None:
    assert find_position(normalize(text)) is None


@pytest.mark.parametrize(
    "text",
    [
        "ya lo compré, ¿y ahora qué sigue?",
        "ya pagué, ¿qué sigue?",
        "ya hice el pago",
        "ya hice la transferencia",
        "acabo de pagar",
        "ya me inscribí",
        "ya soy cliente",
    ],
)
def test_says_bought(text: str) -> None:
    assert says_bought(normalize(text))


@pytest.mark.parametrize(
    "text",
    [
        "quiero comprar",
        "¿cómo pago?",
        "ya compré otro curso",  # bought elsewhere: an objection, not a customer
        "ya contraté con otra empresa",
        "todavía no lo compro",
        "ya no lo compré",
    ],
)
def test_does_not_say_bought(text: str) -> None:
    assert not says_bought(normalize(text))


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("hola, soy Pedro", "Pedro"),
        ("hola soy pedro", "Pedro"),  # a known first name, typed in lower case
        ("HOLA SOY PEDRO", "Pedro"),
        ("me llamo Ana María", "Ana María"),
        ("me llamo ana maria lopez", "Ana María"),  # an unknown word in lower case ends it
        ("habla Luis", "Luis"),
        ("buenas tardes, le habla Luis Pérez de Constructora Norte", "Luis Pérez"),
        ("mi nombre es Carlos Ramírez y quiero información", "Carlos Ramírez"),
        ("soy Xóchitl", "Xóchitl"),  # not in the list, but written as a name
        ("yo soy María José", "María José"),
        ("Soy Pedro, Luis me recomendó", "Pedro"),
        ("te escribe Ana de ventas", "Ana"),
    ],
)
def test_a_name_given(text: str, name: str) -> None:
    assert find_name(text) == name


@pytest.mark.parametrize(
    "text",
    [
        "soy de Monterrey",
        "Soy De Monterrey",
        "soy contador",
        "Soy Contador",  # a trade, capitalised
        "soy nuevo",
        "Hola soy Mexicano",
        "soy Dr. Pérez",
        "soy el de la llamada",
        "hola, soy yo otra vez",
        "Soy la mamá de Sofía",
        "creo que soy nuevo aquí",  # "soy" only opens a message
        "¿Habla Inglés?",
        "me llamó mucho la atención su anuncio",
        "Me llamo la atención su anuncio",
        "mi nombre es importante",
        "quiero info, soy Pedro",  # not at the start: too risky to read
    ],
)
def test_no_name(text: str) -> None:
    assert find_name(text) is None


def test_a_cue_without_words_names_the_file(tmp_path: Path) -> None:
    names = tmp_path / "names.yaml"
    names.write_text(DEFAULT_NAMES.read_text(encoding="utf-8").replace("- me dicen", "- ' '"))
    with pytest.raises(ValueError, match=r"names\.yaml: cues"):
        load_names(names)
