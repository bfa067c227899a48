"""Rendering the console's pages: one Jinja2 environment, the context every page shares, and
the Spanish words for things (textos.es.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import yaml
from aiohttp import web

from bot.core.errors import Refusal
from bot.crm.leads import NextAction
from bot.settings import Settings

TEMPLATES = Path(__file__).parent / "templates"
TEXTS = Path(__file__).parent / "textos.es.yaml"
_DAYS = ("lun", "mar", "mié", "jue", "vie", "sáb", "dom")
_MONTHS = ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic")
# The console's own policy: its script, styles, images and sound files; requests to itself.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


class Pages:
    def __init__(self, settings: Settings) -> None:
        self.tz: ZoneInfo = settings.business.tz
        self.business = settings.business.name
        self.texts: dict[str, dict[str, str]] = yaml.safe_load(TEXTS.read_text(encoding="utf-8"))
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            hora=self.clock,
            momento=self.moment,
            espera=waiting,
            isoformat=lambda at: at.isoformat() if at else "",
        )
        self.env.globals.update(texto=self.word, proxima=self.next_action)

    def word(self, group: str, key: object) -> str:
        """The Spanish word for `key` of `group` ("canales", "temperaturas", ...)."""
        return self.texts.get(group, {}).get(str(key), str(key))

    def next_action(self, action: NextAction | None, now: datetime | None = None) -> str:
        """ "Paso 2 de la secuencia tibia — mañana 10:00"; "—" when nothing is scheduled."""
        if action is None:
            return "—"
        template = self.texts.get("acciones_programadas", {}).get(action.kind, action.kind)
        words = template.format(
            paso=action.step or "",
            secuencia=self.word("secuencias", action.sequence or ""),
            cita=self.word("citas", action.appointment_kind or ""),
        )
        return f"{words} — {self.moment(action.at, now)}"

    def refusal(self, error: Refusal) -> str:
        template = self.texts["rechazos"].get(error.code) or self.texts["rechazos"]["generic"]
        try:
            return template.format(**error.details)
        except (KeyError, IndexError):
            return template

    def clock(self, at: datetime | None) -> str:
        return at.astimezone(self.tz).strftime("%H:%M") if at else ""

    def moment(self, at: datetime | None, now: datetime | None = None) -> str:
        """ "hoy 17:05", "ayer 09:10" or "jue 26 nov 17:05", in the business time zone."""
        if at is None:
            return ""
        local = at.astimezone(self.tz)
        today = (now or datetime.now(self.tz)).astimezone(self.tz).date()
        if local.date() == today:
            day = "hoy"
        elif local.date() == today - timedelta(days=1):
            day = "ayer"
        elif local.date() == today + timedelta(days=1):
            day = "mañana"
        else:
            day = f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]}"
        return f"{day} {local:%H:%M}"

    def render(
        self,
        request: web.Request,
        template: str,
        *,
        status: int = 200,
        **context: Any,
    ) -> web.Response:
        from bot.web.console.auth import AGENT, CSRF

        context.setdefault("flash", None)
        page = self.env.get_template(template).render(
            agent=request.get(AGENT),
            csrf=request.get(CSRF, ""),
            business=self.business,
            path=request.path,
            **context,
        )
        return web.Response(
            text=page,
            status=status,
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": POLICY, "Cache-Control": "no-store"},
        )


def waiting(seconds: float | int) -> str:
    """ "45 s", "12 min", "1 h 05 min", "2 d 3 h"."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def as_mapping(values: Mapping[str, object]) -> dict[str, str]:
    return {key: str(value) for key, value in values.items()}
