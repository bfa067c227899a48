"""The script editor (admins only): intents with their examples and replies, the business
texts, the follow-up sequences (each step's delay and message), a shared draft, "try it" against
the live version and the draft, warnings, the impact of the draft on last week's messages,
publishing, versions with their diff and rollback, and the messages the bot did not understand.

Every change goes to the draft (kept in the database) until an admin publishes it; publishing
validates the whole version first. Pages work without JavaScript; scripts.js updates "try it"
in place.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp_session import get_session

from bot.conversation import quality
from bot.conversation.scripts import Draft, ScriptsInvalid, ScriptVersions
from bot.conversation.understanding import Knowledge
from bot.core.errors import InvalidInput, NotFound
from bot.core.materials import BEST, VariantProblem, problems
from bot.core.model import utcnow
from bot.core.scripts import SYSTEM_INTENTS
from bot.web.console.auth import accounts, admin_page, flash, pages, take_flash, who
from bot.web.keys import MATERIALS, SCRIPTS, SETTINGS, UNDERSTANDING
from intents import NONE, NluResult, editing
from intents.catalogue import BOOKABLE, PLACEHOLDERS

INTENT = "{intent:[a-z][a-z0-9_]*(?:[.][a-z][a-z0-9_]*)*}"
N = "{n:[0-9]{1,6}}"
SEQUENCE = "{sequence:[a-z][a-z0-9_]*}"
V = "{v:[0-9]{1,4}}"
# Paths under /console/scripts/ that are pages, not intents: no intent may be called so.
RESERVED = frozenset(
    {"versiones", "probar", "publicar", "borrador", "nueva", "impacto", "textos", "sequences"}
)
WEEK = timedelta(days=7)
# Below this confidence a message counts as not understood on the "no entendidos" page.
LOW_CONFIDENCE = 0.5
FEW_EXAMPLES = 10


def register(app: web.Application) -> None:
    add = app.router
    add.add_get("/scripts", admin_page(catalogue))
    add.add_get("/scripts/versiones", admin_page(versions_page))
    add.add_post(f"/scripts/versiones/{N}/volver", admin_page(rollback))
    add.add_get("/scripts/probar", admin_page(try_fragment))
    add.add_post("/scripts/publicar", admin_page(publish))
    add.add_post("/scripts/borrador/descartar", admin_page(discard))
    add.add_post("/scripts/nueva", admin_page(new_intent))
    add.add_get("/scripts/impacto", admin_page(impact_page))
    add.add_get("/scripts/no-entendidos", admin_page(not_understood))
    add.add_post("/scripts/no-entendidos", admin_page(teach))
    add.add_get("/scripts/textos", admin_page(texts_page))
    add.add_post(f"/scripts/textos/{INTENT}", admin_page(add_text))
    add.add_post(f"/scripts/textos/{INTENT}/{N}/quitar", admin_page(remove_text))
    # Before /scripts/{intent}: "sequences" is no intent.
    add.add_get("/scripts/sequences", admin_page(sequences_page))
    add.add_post(f"/scripts/sequences/{SEQUENCE}", admin_page(add_step))
    add.add_post(f"/scripts/sequences/{SEQUENCE}/{N}", admin_page(set_after))
    add.add_post(f"/scripts/sequences/{SEQUENCE}/{N}/quitar", admin_page(remove_step))
    add.add_post(f"/scripts/sequences/{SEQUENCE}/{N}/textos", admin_page(add_step_text))
    add.add_post(f"/scripts/sequences/{SEQUENCE}/{N}/textos/{V}", admin_page(set_step_text))
    add.add_post(
        f"/scripts/sequences/{SEQUENCE}/{N}/textos/{V}/quitar", admin_page(remove_step_text)
    )
    add.add_get(f"/scripts/{INTENT}", admin_page(intent_page))
    add.add_post(f"/scripts/{INTENT}/{{part:examples|replies}}", admin_page(add_item))
    add.add_post(f"/scripts/{INTENT}/{{part:examples|replies}}/{N}/quitar", admin_page(remove_item))
    add.add_post(f"/scripts/{INTENT}/quitar", admin_page(remove_intent))
    add.add_post(f"/scripts/{INTENT}/replies/{N}/materiales", admin_page(set_materials))
    add.add_post(f"/scripts/{INTENT}/replies/{N}/agenda", admin_page(set_books))


def _versions(request: web.Request) -> ScriptVersions:
    return request.config_dict[SCRIPTS]


async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {key: str(value) for key, value in form.items()}


async def _names(request: web.Request) -> dict[int, str]:
    return {agent.id: agent.name for agent in await accounts(request).agents()}


def _intent(request: web.Request) -> str:
    return request.match_info["intent"]


# --- understanding a message: live and with the draft -------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """How one version understands a message, for the page."""

    intent: str
    confidence: float
    runner_up: tuple[str, float] | None
    when: datetime | None
    ambiguous: bool

    @classmethod
    def of(cls, result: NluResult) -> Reading:
        others = [c for c in result.candidates if c[0] != result.intent]
        return cls(
            result.intent,
            result.confidence,
            others[0] if others else None,
            result.when,
            result.ambiguous,
        )


async def _draft_knowledge(request: web.Request, draft: Draft) -> tuple[Knowledge | None, str]:
    """The draft trained (cached by its text), or the reason it cannot be."""
    live = request.config_dict[UNDERSTANDING].current
    if not draft.saved:
        return live, ""
    try:
        return await asyncio.to_thread(_versions(request).knowledge, draft.body, "borrador"), ""
    except ScriptsInvalid as exc:
        return None, exc.problem


async def _try(request: web.Request, text: str) -> dict[str, Any]:
    text = text.strip()[:500]
    if not text:
        return {"text": ""}
    settings = request.config_dict[SETTINGS]
    now = utcnow()
    live = request.config_dict[UNDERSTANDING].current
    draft, problem = await _draft_knowledge(request, await _versions(request).draft())
    tz = settings.business.tz
    return {
        "text": text,
        "live": Reading.of(live.matcher.match(text, now, tz)),
        "live_version": live.version,
        "draft": Reading.of(draft.matcher.match(text, now, tz)) if draft else None,
        "draft_problem": problem,
    }


async def try_fragment(request: web.Request) -> web.Response:
    """The "try it" result alone, for scripts.js to put in place."""
    return pages(request).render(
        request, "_try_result.html", probe=await _try(request, request.query.get("probar", ""))
    )


# --- the catalogue and one intent -------------------------------------------------------------


async def catalogue(request: web.Request) -> web.Response:
    versions = _versions(request)
    draft = await versions.draft()
    counts = await versions.intent_counts(utcnow() - WEEK)
    rows = [
        {"view": view, "matched": counts.get(view.id, 0), "system": view.id in SYSTEM_INTENTS}
        for view in editing.intents(draft.body)
    ]
    return pages(request).render(
        request,
        "scripts.html",
        live_number=versions.loaded,
        rows=rows,
        draft=draft,
        none_count=counts.get(NONE, 0),
        probe=await _try(request, request.query.get("probar", "")),
        history=await versions.versions(limit=10),
        names=await _names(request),
        flash=await take_flash(request),
    )


async def intent_page(request: web.Request) -> web.Response:
    versions = _versions(request)
    draft = await versions.draft()
    view = editing.intent(draft.body, _intent(request))
    if view is None:
        raise NotFound("no such intent", code="scripts_no_intent", intent=_intent(request))
    counts = await versions.intent_counts(utcnow() - WEEK)
    library = await request.config_dict[MATERIALS].all()
    found = problems(
        view.id,
        view.replies,
        view.offers,
        library,
        [versions.promises.found(reply) for reply in view.replies],
    )
    texts = pages(request).texts
    return pages(request).render(
        request,
        "script.html",
        offers=view.offers,
        books=view.books,
        bookable=BOOKABLE,
        material_notes={
            index: [worded(texts, p) for p in found if p.variant == index]
            for index in range(len(view.replies))
        },
        script_notes=[worded(texts, p) for p in found if p.variant < 0],
        material_keys=[m.key for m in library if m.active],
        material_tags=sorted({tag for m in library if m.active for tag in m.tags}),
        best=BEST,
        live_number=versions.loaded,
        view=view,
        draft=draft,
        matched=counts.get(view.id, 0),
        system=view.id in SYSTEM_INTENTS,
        unknown=[_unknown_placeholders(reply) for reply in view.replies],
        placeholders=_ALLOWED,
        probe=await _try(request, request.query.get("probar", "")),
        history=await versions.versions(limit=10),
        names=await _names(request),
        flash=await take_flash(request),
    )


_ALLOWED = ("{nombre}", "{producto}", "{negocio}", "{asesor}", "{planes}")


def _unknown_placeholders(reply: str) -> list[str]:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(reply) if name]
    except ValueError:
        return ["{"]
    return [name for name in names if name not in PLACEHOLDERS]


async def add_item(request: web.Request) -> web.StreamResponse:
    intent, part = _intent(request), request.match_info["part"]
    text = (await _form(request)).get("text", "")
    await _versions(request).edit(lambda body: editing.add(body, intent, part, text), who(request))
    back = (await _form(request)).get("back", "")
    flash(await get_session(request), _SAVED[part])
    raise web.HTTPSeeOther(back if back.startswith("/console/") else f"/console/scripts/{intent}")


_SAVED = {
    "examples": "Ejemplo agregado al borrador.",
    "replies": "Respuesta agregada al borrador.",
}


async def remove_item(request: web.Request) -> web.StreamResponse:
    intent, part, index = _intent(request), request.match_info["part"], int(request.match_info["n"])
    await _versions(request).edit(
        lambda body: editing.remove(body, intent, part, index), who(request)
    )
    raise web.HTTPSeeOther(f"/console/scripts/{intent}")


async def set_materials(request: web.Request) -> web.StreamResponse:
    """What one reply variant offers to send: material keys or mejor:<etiqueta>, by commas."""
    intent, index = _intent(request), int(request.match_info["n"])
    typed = (await _form(request)).get("materials", "")
    materials = [part.strip() for part in typed.split(",")]
    await _versions(request).edit(
        lambda body: editing.set_materials(body, intent, index, materials), who(request)
    )
    flash(
        await get_session(request),
        f"Materiales de la respuesta {index + 1} guardados en el borrador.",
    )
    raise web.HTTPSeeOther(f"/console/scripts/{intent}#respuesta-{index + 1}")


async def set_books(request: web.Request) -> web.StreamResponse:
    """What a yes to one reply variant books: a call, a meeting, a visit, or nothing."""
    intent, index = _intent(request), int(request.match_info["n"])
    kind = (await _form(request)).get("books", "").strip() or None
    await _versions(request).edit(
        lambda body: editing.set_books(body, intent, index, kind), who(request)
    )
    flash(
        await get_session(request),
        f"Lo que agenda la respuesta {index + 1} quedó guardado en el borrador.",
    )
    raise web.HTTPSeeOther(f"/console/scripts/{intent}#respuesta-{index + 1}")


def worded(texts: dict[str, dict[str, str]], problem: VariantProblem) -> str:
    """A materials problem of a variant in Spanish (textos.es.yaml, materiales_problemas)."""
    template = texts.get("materiales_problemas", {}).get(problem.code, str(problem))
    return template.format(n=problem.variant + 1, script=problem.script, detalle=problem.detail)


async def new_intent(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    intent = form.get("id", "").strip().lower()
    if intent in RESERVED:
        raise InvalidInput("reserved intent id", code="scripts_intent_id", intent=intent)
    await _versions(request).edit(
        lambda body: editing.add_intent(
            body,
            intent,
            form.get("label", ""),
            form.get("examples", "").splitlines(),
            form.get("replies", "").splitlines(),
        ),
        who(request),
    )
    flash(await get_session(request), "Intención agregada al borrador.")
    raise web.HTTPSeeOther(f"/console/scripts/{intent}")


async def remove_intent(request: web.Request) -> web.StreamResponse:
    intent = _intent(request)
    if intent in SYSTEM_INTENTS:
        raise InvalidInput("a system intent", code="scripts_system", intent=intent)
    await _versions(request).edit(lambda body: editing.remove_intent(body, intent), who(request))
    flash(await get_session(request), "Intención quitada del borrador.")
    raise web.HTTPSeeOther("/console/scripts")


async def discard(request: web.Request) -> web.StreamResponse:
    await _versions(request).discard_draft()
    flash(await get_session(request), "Borrador descartado.")
    raise web.HTTPSeeOther("/console/scripts")


# --- the texts that belong to no intent (scripts:) --------------------------------------------


async def texts_page(request: web.Request) -> web.Response:
    versions = _versions(request)
    draft = await versions.draft()
    rows = [
        {
            "id": script,
            "variants": variants,
            "unknown": [_unknown_placeholders(v) for v in variants],
        }
        for script, variants in editing.texts(draft.body)
    ]
    return pages(request).render(
        request,
        "script_texts.html",
        live_number=versions.loaded,
        rows=rows,
        draft=draft,
        placeholders=_ALLOWED,
        flash=await take_flash(request),
    )


async def add_text(request: web.Request) -> web.StreamResponse:
    script = _intent(request)
    text = (await _form(request)).get("text", "")
    await _versions(request).edit(lambda body: editing.add_text(body, script, text), who(request))
    flash(await get_session(request), "Variante agregada al borrador.")
    raise web.HTTPSeeOther(f"/console/scripts/textos#{script}")


async def remove_text(request: web.Request) -> web.StreamResponse:
    script, index = _intent(request), int(request.match_info["n"])
    await _versions(request).edit(
        lambda body: editing.remove_text(body, script, index), who(request)
    )
    raise web.HTTPSeeOther(f"/console/scripts/textos#{script}")


# --- the follow-up sequences ------------------------------------------------------------------


async def sequences_page(request: web.Request) -> web.Response:
    versions = _versions(request)
    draft = await versions.draft()
    views, own = editing.sequences(draft.body, versions.factory_sequences())
    problem = versions.sequences_problem(draft.body) if draft.saved else None
    words = pages(request).texts
    return pages(request).render(
        request,
        "script_sequences.html",
        live_number=versions.loaded,
        sequences=views,
        own=own,
        problem=explain(words, problem) if problem is not None else "",
        draft=draft,
        placeholders=_ALLOWED,
        back="/console/scripts/sequences",
        flash=await take_flash(request),
    )


def _sequence(request: web.Request) -> tuple[str, int]:
    return request.match_info["sequence"], int(request.match_info["n"])


def _step_script(body: str, factory: dict[str, object], sequence: str, index: int) -> str:
    """The script the `index`th step of `sequence` sends (or titles its task with)."""
    views, _ = editing.sequences(body, factory)
    for view in views:
        if view.name == sequence:
            if not 0 <= index < len(view.steps):
                raise editing.EditError("no such step", "no_step", sequence=sequence)
            return view.steps[index].script
    raise editing.EditError("no such sequence", "no_sequence", sequence=sequence)


async def _edit_sequence(
    request: web.Request, change: Callable[[str, dict[str, object]], str], said: str
) -> web.StreamResponse:
    versions = _versions(request)
    factory = versions.factory_sequences()
    await versions.edit(lambda body: change(body, factory), who(request))
    flash(await get_session(request), said)
    raise web.HTTPSeeOther(f"/console/scripts/sequences#{request.match_info['sequence']}")


async def set_after(request: web.Request) -> web.StreamResponse:
    sequence, index = _sequence(request)
    after = (await _form(request)).get("after", "")
    return await _edit_sequence(
        request,
        lambda body, factory: editing.set_after(body, factory, sequence, index, after),
        "Espera cambiada en el borrador.",
    )


async def add_step(request: web.Request) -> web.StreamResponse:
    sequence = request.match_info["sequence"]
    form = await _form(request)
    return await _edit_sequence(
        request,
        lambda body, factory: editing.add_step(
            body, factory, sequence, form.get("after", ""), form.get("text", "")
        ),
        "Paso agregado al borrador.",
    )


async def remove_step(request: web.Request) -> web.StreamResponse:
    sequence, index = _sequence(request)
    return await _edit_sequence(
        request,
        lambda body, factory: editing.remove_step(body, factory, sequence, index),
        "Paso quitado del borrador.",
    )


async def add_step_text(request: web.Request) -> web.StreamResponse:
    sequence, index = _sequence(request)
    text = (await _form(request)).get("text", "")
    return await _edit_sequence(
        request,
        lambda body, factory: editing.add_text(
            body, _step_script(body, factory, sequence, index), text
        ),
        "Variante agregada al borrador.",
    )


async def set_step_text(request: web.Request) -> web.StreamResponse:
    sequence, index = _sequence(request)
    variant = int(request.match_info["v"])
    text = (await _form(request)).get("text", "")
    return await _edit_sequence(
        request,
        lambda body, factory: editing.set_text(
            body, _step_script(body, factory, sequence, index), variant, text
        ),
        "Texto cambiado en el borrador.",
    )


async def remove_step_text(request: web.Request) -> web.StreamResponse:
    sequence, index = _sequence(request)
    variant = int(request.match_info["v"])
    return await _edit_sequence(
        request,
        lambda body, factory: editing.remove_text(
            body, _step_script(body, factory, sequence, index), variant
        ),
        "Variante quitada del borrador.",
    )


# --- publishing, versions ---------------------------------------------------------------------


async def publish(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    versions = _versions(request)
    draft = await versions.draft()
    if not draft.saved:
        raise InvalidInput("nothing to publish", code="scripts_nothing")
    try:
        version = await versions.publish(
            draft.body, form.get("comment", ""), who(request), from_draft=True
        )
    except ScriptsInvalid as exc:
        texts = pages(request).texts
        said = (
            " ".join(worded(texts, p) for p in exc.materials)
            if exc.materials
            else explain(texts, exc)
        )
        raise InvalidInput(exc.problem, code="scripts_invalid", problem=said) from None
    flash(await get_session(request), f"Versión {version.number} publicada.")
    back = form.get("back", "")
    raise web.HTTPSeeOther(back if back.startswith("/console/scripts") else "/console/scripts")


async def rollback(request: web.Request) -> web.StreamResponse:
    number = int(request.match_info["n"])
    version = await _versions(request).rollback(number, who(request))
    flash(
        await get_session(request),
        f"Versión {version.number} publicada: el texto de la versión {number}.",
    )
    raise web.HTTPSeeOther("/console/scripts/versiones")


async def versions_page(request: web.Request) -> web.Response:
    versions = _versions(request)
    history = await versions.versions(limit=200)
    diff: list[tuple[str, str]] = []
    a, b = request.query.get("a", ""), request.query.get("b", "")
    if a.isdigit() and b.isdigit():
        old, new = await versions.version(int(a)), await versions.version(int(b))
        diff = _diff(old.body, new.body, f"versión {a}", f"versión {b}")
    return pages(request).render(
        request,
        "script_versions.html",
        history=history,
        names=await _names(request),
        a=a,
        b=b,
        diff=diff,
        flash=await take_flash(request),
    )


def _diff(old: str, new: str, old_name: str, new_name: str) -> list[tuple[str, str]]:
    """The changed lines, both texts written in one layout first (a hand-written file's
    comments and quoting would otherwise show as changes)."""
    old, new = _layout(old), _layout(new)
    lines = difflib.unified_diff(
        old.splitlines(), new.splitlines(), old_name, new_name, n=2, lineterm=""
    )
    kinds = {"+": "mas", "-": "menos", "@": "lugar"}
    return [(kinds.get(line[:1], ""), line) for line in lines]


# --- what the bot did not understand ----------------------------------------------------------


async def not_understood(request: web.Request) -> web.Response:
    versions = _versions(request)
    messages = await versions.not_understood(utcnow() - WEEK, below=LOW_CONFIDENCE)
    draft = await versions.draft()
    return pages(request).render(
        request,
        "script_unknown.html",
        messages=messages,
        intents=[view.id for view in editing.intents(draft.body) if view.id != NONE],
        flash=await take_flash(request),
    )


async def teach(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    intent, text = form.get("intent", ""), form.get("text", "")
    await _versions(request).edit(
        lambda body: editing.add(body, intent, "examples", text), who(request)
    )
    flash(await get_session(request), f"Agregado como ejemplo de {intent} en el borrador.")
    raise web.HTTPSeeOther("/console/scripts/no-entendidos")


# --- the draft's warnings and impact ------------------------------------------------------------


async def impact_page(request: web.Request) -> web.Response:
    versions = _versions(request)
    draft = await versions.draft()
    live = request.config_dict[UNDERSTANDING].current
    knowledge, problem = await _draft_knowledge(request, draft)
    report: dict[str, Any] = {"problem": problem, "accuracy": None}
    if knowledge is not None:
        started = time.perf_counter()
        messages = await versions.inbound(utcnow() - WEEK, limit=2000)
        tz = request.config_dict[SETTINGS].business.tz
        report.update(
            await asyncio.to_thread(quality.impact, live, knowledge, messages, tz),
        )
        report["seconds"] = round(time.perf_counter() - started, 2)
        if request.query.get("precision"):
            report["accuracy"] = await asyncio.to_thread(quality.accuracy_pair, live, knowledge)
        report["warnings"] = await asyncio.to_thread(quality.warnings, knowledge, FEW_EXAMPLES)
    return pages(request).render(
        request,
        "script_impact.html",
        live_number=versions.loaded,
        report=report,
        draft=draft,
        flash=await take_flash(request),
    )


def _layout(text: str) -> str:
    try:
        return editing.write(editing.read(text))
    except editing.EditError:
        return text


_EXPLAIN = (
    (re.compile(r"unknown placeholder \{(\w+)\} in ([\w.]+)\.replies"), "placeholder"),
    (re.compile(r"([\w.]+)\.examples must be a non-empty list"), "no_examples"),
    (re.compile(r"([\w.]+)\.replies must be a non-empty list"), "no_replies"),
    (re.compile(r"'([\w.]+)' has no replies"), "script_missing"),
    (re.compile(r"scripts\.([\w.]+) must be a non-empty list"), "script_missing"),
)


def explain(texts: dict[str, dict[str, str]], invalid: ScriptsInvalid) -> str:
    """A validation problem in Spanish (the catalogue words it in English, for the logs)."""
    words = texts.get("guiones", {})
    if invalid.reason in words:
        return words[invalid.reason].format_map(invalid.facts)
    problem = invalid.problem
    for pattern, key in _EXPLAIN:
        found = pattern.search(problem)
        if found and key in words:
            return words[key].format(*found.groups(), permitidos=", ".join(_ALLOWED))
    return problem
