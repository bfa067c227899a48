"""Rendering scripts: variants, placeholders, and start-up checks."""

from __future__ import annotations

import pytest

from bot.core.errors import ConfigError
from bot.core.scripts import SYSTEM_SCRIPTS, Renderer
from intents.promises import load_promises


class Book:
    def __init__(
        self,
        texts: dict[str, tuple[str, ...]],
        offers: dict[str, tuple[tuple[str, ...], ...]] | None = None,
        books: dict[str, tuple[str | None, ...]] | None = None,
    ) -> None:
        self.texts = texts
        self.offers = offers or {}
        self.books = books or {}

    @property
    def intents(self) -> tuple[str, ...]:
        return tuple(key for key in self.texts if key not in SYSTEM_SCRIPTS)

    def replies(self, script_id: str) -> tuple[str, ...]:
        return self.texts.get(script_id, ())

    def offered(self, script_id: str) -> tuple[tuple[str, ...], ...]:
        return self.offers.get(script_id, ())

    def booked(self, script_id: str) -> tuple[str | None, ...]:
        return self.books.get(script_id, ())

    def label(self, intent: str) -> str:
        return intent


def complete(**texts: tuple[str, ...]) -> Book:
    return Book({**dict.fromkeys(SYSTEM_SCRIPTS, ("ok",)), **texts})


def test_placeholders_are_filled() -> None:
    renderer = Renderer(complete(greeting=("¡Hola, {nombre}! Te cuento de {producto}.",)), {})
    rendered = renderer.render(
        "greeting", seed="1", values={"nombre": "Ana", "producto": "nuestro curso"}
    )
    assert rendered.text == "¡Hola, Ana! Te cuento de nuestro curso."
    assert (rendered.script, rendered.variant) == ("greeting", 0)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("¡Hola, {nombre}!", "¡Hola!"),
        ("¡Hola {nombre}! ¿Cómo estás?", "¡Hola! ¿Cómo estás?"),
        ("{nombre}, gracias por escribir.", "Gracias por escribir."),
        ("Listo {nombre}, te llamo.", "Listo, te llamo."),
    ],
)
def test_a_missing_name_leaves_no_seams(template: str, expected: str) -> None:
    renderer = Renderer(complete(greeting=(template,)), {})
    assert renderer.render("greeting", seed="1", values={"nombre": ""}).text == expected


def test_variant_choice_is_stable_per_seed_and_spreads() -> None:
    renderer = Renderer(complete(thanks=("a", "b", "c")), {})
    first = renderer.render("thanks", seed="7:1", values={})
    assert renderer.render("thanks", seed="7:1", values={}) == first
    chosen = {renderer.render("thanks", seed=f"7:{n}", values={}).variant for n in range(30)}
    assert chosen == {0, 1, 2}


def test_check_refuses_a_missing_system_script() -> None:
    book = complete()
    del book.texts["optout.confirm"]
    with pytest.raises(ConfigError, match=r"'optout\.confirm' has no replies"):
        Renderer(book, {}).check(())


def test_a_label_after_a_preposition_contracts() -> None:
    renderer = Renderer(complete(**{"clarify.which": ("¿Te refieres a {a} o a {b}?",)}), {})
    rendered = renderer.render(
        "clarify.which", seed="1", values={"a": "el precio", "b": "el presupuesto"}
    )
    assert rendered.text == "¿Te refieres al precio o al presupuesto?"


def test_placeholders_at_sentence_starts_are_capitalised_and_commas_mended() -> None:
    renderer = Renderer(
        complete(
            greeting=("Te entiendo, {nombre}, es una inversión. ¡Claro! {producto} te ayuda.",)
        ),
        {"producto": "nuestro programa"},
    )
    text = renderer.render("greeting", seed="1", values={"nombre": ""}).text
    assert text == "Te entiendo, es una inversión. ¡Claro! Nuestro programa te ayuda."


PRICING = (
    "Para darte el precio exacto: ¿es para ti o para tu empresa?",
    "Estos son nuestros planes: {planes}. ¿Cuál te conviene?",
    "Te paso la tabla de precios. ¿Te la envío?",
)


def test_a_variant_quoting_plans_is_never_chosen_when_none_are_set() -> None:
    renderer = Renderer(complete(**{"info.pricing": PRICING}), {"planes": ""})
    chosen = {renderer.render("info.pricing", seed=str(n), values={}).variant for n in range(60)}
    assert chosen == {0, 2}


def test_set_plans_are_quoted_first() -> None:
    renderer = Renderer(complete(**{"info.pricing": PRICING}), {"planes": "Básico ($499)"})
    for n in range(20):
        rendered = renderer.render("info.pricing", seed=str(n), values={})
        assert rendered.variant == 1
        assert rendered.text == "Estos son nuestros planes: Básico ($499). ¿Cuál te conviene?"


def test_a_variant_that_offers_materials_is_chosen_only_when_they_can_be_sent() -> None:
    texts = ("Plain.", "¿Te comparto un caso?")
    book = complete(**{"objection.price": texts})
    book.offers["objection.price"] = ((), ("mejor:caso",))
    renderer = Renderer(book, {}, load_promises())
    never = {renderer.render("objection.price", seed=str(s), values={}).variant for s in range(30)}
    assert never == {0}
    can = {
        renderer.render("objection.price", seed=str(s), values={}, sendable=lambda r: True)
        for s in range(30)
    }
    assert {(r.variant, r.offers) for r in can} == {(0, ()), (1, ("mejor:caso",))}


def test_a_promise_without_material_is_never_chosen() -> None:
    book = complete(**{"info.guarantee": ("Tiene garantía.", "¿Te envío las condiciones?")})
    renderer = Renderer(book, {}, load_promises())
    variants = {
        renderer.render("info.guarantee", seed=str(s), values={}).variant for s in range(30)
    }
    assert variants == {0}
