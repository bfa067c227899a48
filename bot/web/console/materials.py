"""The materials library (admins only): the links, PDFs and images the bot sends when a reply
offered them. List, add, edit, deactivate; uploaded files are checked (type by their first
bytes, size by `materials.max_bytes`) and kept by the service (`bot.conversation.materials`).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp_session import get_session

from bot.conversation.materials import Library, MaterialForm, Upload
from bot.core.materials import BEST, MaterialKind
from bot.delivery.outbox import material_url
from bot.web.console.auth import admin_page, flash, pages, take_flash, who
from bot.web.keys import MATERIALS, SETTINGS

ID = "{id:[0-9]{1,18}}"


def register(app: web.Application) -> None:
    add = app.router
    add.add_get("/materiales", admin_page(library))
    add.add_post("/materiales", admin_page(create))
    add.add_get(f"/materiales/{ID}", admin_page(material_page))
    add.add_post(f"/materiales/{ID}", admin_page(change))
    add.add_post(f"/materiales/{ID}/activo", admin_page(set_active))


def _library(request: web.Request) -> Library:
    return request.config_dict[MATERIALS]


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def _read(request: web.Request) -> tuple[MaterialForm, Upload | None]:
    """The form and its file, if one was chosen (the guard allowed this request to be larger)."""
    form = await request.post()
    upload = None
    field = form.get("file")
    if isinstance(field, web.FileField):
        data = field.file.read()
        if data:
            upload = Upload(field.filename, field.content_type, data)

    def text(name: str) -> str:
        value = form.get(name, "")
        return value if isinstance(value, str) else ""

    material = MaterialForm(
        title=text("title"),
        kind=text("kind"),
        key=text("key"),
        url=text("url"),
        text=text("text"),
        tags=text("tags"),
    )
    return material, upload


def _kinds(request: web.Request) -> list[tuple[str, str]]:
    return [(kind.value, pages(request).word("materiales", kind.value)) for kind in MaterialKind]


async def library(request: web.Request) -> web.Response:
    public = request.config_dict[SETTINGS].public_url
    materials = await _library(request).all()
    return pages(request).render(
        request,
        "materials.html",
        materials=materials,
        urls={m.id: material_url(m, public) for m in materials},
        kinds=_kinds(request),
        best=BEST,
        max_mb=f"{_library(request).max_bytes / 1048576:.0f}",
        flash=await take_flash(request),
    )


async def create(request: web.Request) -> web.StreamResponse:
    form, upload = await _read(request)
    material = await _library(request).add(form, upload, who(request))
    flash(
        await get_session(request), f"Material «{material.title}» agregado (clave {material.key})."
    )
    raise web.HTTPSeeOther("/console/materiales")


async def material_page(request: web.Request) -> web.Response:
    material = await _library(request).get(_id(request))
    return pages(request).render(
        request,
        "material.html",
        material=material,
        url=material_url(material, request.config_dict[SETTINGS].public_url),
        kinds=_kinds(request),
        max_mb=f"{_library(request).max_bytes / 1048576:.0f}",
        flash=await take_flash(request),
    )


async def change(request: web.Request) -> web.StreamResponse:
    form, upload = await _read(request)
    await _library(request).edit(_id(request), form, upload, who(request))
    flash(await get_session(request), "Material guardado.")
    raise web.HTTPSeeOther(f"/console/materiales/{_id(request)}")


async def set_active(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    active = form.get("active") == "1"
    material = await _library(request).set_active(_id(request), active, who(request))
    word = "activado" if active else "desactivado: las respuestas que lo ofrecen dejan de usarse"
    flash(await get_session(request), f"Material «{material.title}» {word}.")
    raise web.HTTPSeeOther("/console/materiales")
