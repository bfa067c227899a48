"""Materials, without I/O: which a reply variant offers a lead, and what the publish check
refuses or warns about; the offer as the question a "sí" answers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.core.dialogue import AskingTime, Dialogue
from bot.core.effects import Remember, Reply, SendMaterials
from bot.core.materials import (
    Material,
    MaterialKind,
    Reference,
    clean_tags,
    industry_of,
    problems,
    resolve,
)
from bot.core.model import ConversationState
from bot.core.policy import ConversationView, InboundView, LeadView, Rules, decide
from intents.model import NluResult

NOW = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)


def material(
    id: int, key: str, *tags: str, active: bool = True, kind: MaterialKind = MaterialKind.LINK
) -> Material:
    return Material(
        id=id,
        key=key,
        title=key,
        kind=kind,
        text="",
        tags=tags,
        active=active,
        token=f"token{id:012d}",
        url=f"https://example.com/{key}",
    )


GENERAL = material(1, "caso-general", "caso")
HEALTH = material(2, "caso-clinica", "caso", "industria:salud")
RETAIL = material(3, "caso-tienda", "caso", "industria:retail")
PLANS = material(4, "tabla-planes", "planes")
OLD = material(5, "caso-viejo", "caso", active=False)
LIBRARY = [GENERAL, HEALTH, RETAIL, PLANS, OLD]


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("tabla-planes", Reference(key="tabla-planes")),
        ("mejor:caso", Reference(tag="caso")),
        ("mejor:caso:3", Reference(tag="caso", count=3)),
        ("Tabla Planes", None),
        ("mejor:", None),
        ("mejor:caso:9", None),
    ],
)
def test_references_are_read(written: str, expected: Reference | None) -> None:
    assert Reference.parse(written) == expected


def test_the_best_case_is_the_leads_industry_first_then_a_general_one() -> None:
    assert resolve(["mejor:caso"], LIBRARY, "salud") == (HEALTH,)
    assert resolve(["mejor:caso:3"], LIBRARY, "salud") == (HEALTH, GENERAL)
    # Another industry's case is never sent; a lead without one gets the general case.
    assert resolve(["mejor:caso"], LIBRARY, "educacion") == (GENERAL,)
    assert resolve(["mejor:caso"], LIBRARY, None) == (GENERAL,)


def test_a_variant_is_usable_only_when_every_reference_finds_something() -> None:
    assert resolve(["tabla-planes", "mejor:caso"], LIBRARY, None) == (PLANS, GENERAL)
    assert resolve(["caso-viejo"], LIBRARY, None) is None  # deactivated
    assert resolve(["tabla-planes", "no-existe"], LIBRARY, None) is None
    assert resolve(["mejor:caso"], [HEALTH, RETAIL], None) is None  # no general case
    assert resolve(["mejor:caso"], [], "salud") is None  # a fresh install


def test_the_industry_and_tags_as_typed() -> None:
    assert industry_of(["vip", "Industria:Salud"]) == "salud"
    assert industry_of(["industria:"]) is None
    assert clean_tags(" caso, Industria:Salud ,caso,, casos de exito") == (
        "caso",
        "industria:salud",
        "casos-de-exito",
    )


def test_publishing_refuses_a_promise_without_material_and_an_unknown_key() -> None:
    found = problems(
        "objection.price",
        ["¿Te comparto un caso?", "Caso: {nombre}", "Hola", "x"],
        [(), ("caso-inexistente",), (), ("Mal Escrito",)],
        LIBRARY,
        ["Te comparto", None, None, None],
    )
    assert [(p.variant, p.code, p.refused) for p in found] == [
        (0, "promise_without", True),
        (1, "unknown_key", True),
        (3, "unknown_reference", True),
    ]


def test_inactive_and_uncovered_materials_are_warnings_not_refusals() -> None:
    found = problems(
        "objection.price",
        ["a", "b", "c"],
        [("caso-viejo",), ("mejor:testimonio",), ()],
        LIBRARY,
        [None, None, None],
    )
    assert [(p.code, p.refused) for p in found] == [("inactive", False), ("no_general", False)]


def test_a_script_needs_one_variant_without_material() -> None:
    found = problems(
        "info.pricing", ["a", "b"], [("tabla-planes",), ("mejor:planes",)], LIBRARY, [None, None]
    )
    assert [(p.variant, p.code) for p in found] == [(-1, "only_offers")]


# --- the offer is the question pending ----------------------------------------------------------


def offering(*ids: int) -> ConversationView:
    return ConversationView(ConversationState.BOT, Dialogue(offering=ids, asked_at=NOW))


LEAD = LeadView(1, "Ana", 30, "warm")


def test_yes_to_an_offer_sends_the_materials_and_closes_the_question() -> None:
    effects = decide(
        offering(2, 1), InboundView(has_text=True), NluResult("affirm", 0.9), LEAD, NOW, Rules()
    )
    assert effects == [Remember(Dialogue()), SendMaterials((2, 1))]


def test_yes_to_a_case_and_a_call_sends_the_case_and_asks_when() -> None:
    """ "¿Te comparto un caso y lo platicamos en una llamada?" offered both (`books: call`)."""
    asking = AskingTime("schedule.book", "call")
    both = ConversationView(
        ConversationState.BOT, Dialogue(booking=asking, offering=(3,), asked_at=NOW)
    )
    effects = decide(both, InboundView(has_text=True), NluResult("affirm", 0.9), LEAD, NOW, Rules())
    assert effects == [
        Remember(Dialogue(booking=asking)),
        SendMaterials((3,)),
        Reply("schedule.ask_time"),
    ]


def test_no_to_an_offer_withdraws_it_and_answers_the_no() -> None:
    effects = decide(
        offering(2), InboundView(has_text=True), NluResult("deny", 0.9), LEAD, NOW, Rules()
    )
    assert effects == [Remember(Dialogue()), Reply("deny")]


def test_yes_without_an_offer_is_just_a_yes() -> None:
    idle = ConversationView(ConversationState.BOT)
    effects = decide(idle, InboundView(has_text=True), NluResult("affirm", 0.9), LEAD, NOW, Rules())
    assert not any(isinstance(effect, SendMaterials) for effect in effects)


def test_the_offer_survives_the_conversations_memory() -> None:
    remembered = Dialogue(offering=(4, 7), asked_at=NOW)
    assert Dialogue.from_context(remembered.to_context()) == remembered
    assert remembered.pending and not remembered.without_question().pending
    assert Dialogue.from_context({"offer": ["4"]}).offering is None  # unreadable: dropped
