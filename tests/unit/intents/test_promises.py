"""Promises in replies, and the packaged scripts: they never promise what is not configured."""

from __future__ import annotations

import pytest

from bot.conversation.scripts import material_problems
from bot.conversation.understanding import Knowledge, Trained, Understanding
from bot.core.scripts import Renderer
from intents import Matcher, load_catalogue
from intents.promises import load_promises

PROMISES = load_promises()


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("¿Te comparto un caso de tu industria?", "Te comparto"),
        ("¿Te envío la tabla de planes?", "Te envío"),
        ("te envio la info", "te envio"),
        ("¿Te muestro un caso real parecido al tuyo?", "Te muestro un caso"),
        ("¿Te los mando y luego platicamos?", "Te los mando"),
        ("Te puedo pasar nuestros datos", "Te puedo pasar"),
        ("Te llamo y te muestro cómo", None),
        ("Un asesor te manda los datos de pago", None),
        ("Ya no te enviaremos más mensajes", None),
        ("Confírmame el horario y te dejo todo agendado", None),
    ],
)
def test_promise_phrases(text: str, found: str | None) -> None:
    assert PROMISES.found(text) == found


def test_the_packaged_scripts_attach_a_material_to_every_promise() -> None:
    refused = [p for p in material_problems(load_catalogue(), [], PROMISES) if p.refused]
    assert refused == []


def test_a_fresh_install_never_promises_a_material() -> None:
    """An empty library: no variant that offers or promises something is ever chosen."""
    catalogue = load_catalogue()
    knowledge = Knowledge(
        catalogue, Trained(Matcher.from_catalogue(catalogue)), version="fábrica", sequences={}
    )
    renderer = Renderer(Understanding(knowledge), {}, PROMISES)
    offering = [s for s in (*catalogue.intents, *catalogue.scripts) if any(catalogue.offered(s))]
    assert {"objection.price", "objection.think", "objection.industry_fit"} <= set(offering)
    for script in (*catalogue.intents, *catalogue.scripts):
        for seed in range(40):
            rendered = renderer.render(
                script, seed=str(seed), values={}, sendable=lambda refs: False
            )
            assert rendered.offers == ()
            assert PROMISES.found(rendered.text) is None, (script, rendered.text)
