"""The agents' console at /console/: server-rendered pages (Jinja2), a little progressive
JavaScript, server-sent events for what changes. Spanish; readable at 390 px.

Sign-in is by e-mail and password into a sealed cookie session; every form and every
state-changing call carries a CSRF token; pages load scripts and styles only as files.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from pathlib import Path

from aiohttp import web
from aiohttp_session import setup as setup_sessions
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from bot import live
from bot.settings import Settings
from bot.web.console import (
    admin,
    auth,
    conversations,
    leads,
    materials,
    reports,
    scripts,
    stream,
)
from bot.web.console.render import Pages

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE = "seguibot_console"


def create_console(settings: Settings, signals: live.Signals) -> web.Application:
    """The console as a sub-application, mounted at /console/ by the app factory."""
    console = web.Application()
    console[auth.PAGES] = Pages(settings)
    console[auth.LIMITS] = auth.SignInLimits(settings.console.sign_ins_per_minute)
    setup_sessions(
        console,
        EncryptedCookieStorage(
            _session_key(settings.console.secret),
            cookie_name=COOKIE,
            path="/console",
            max_age=settings.console.session_hours * 3600,
            httponly=True,
            samesite="Lax",
            secure=settings.public_url.startswith("https://") or None,
        ),
    )
    console.middlewares.append(auth.guard)  # after the session middleware `setup` added
    auth.register(console)
    conversations.register(console)
    leads.register(console)
    admin.register(console)
    reports.register(console)
    scripts.register(console)
    materials.register(console)
    stream.register(console, signals)
    return console


def register_static(app: web.Application) -> None:
    """The console's vendored script, styles and sound, outside the session middleware."""
    app.router.add_static("/static/console/", STATIC)


def _session_key(secret: str) -> bytes:
    """A Fernet key from the configured secret (any string), or a new one for this process."""
    if not secret:
        log.warning(
            "console_secret_missing",
            extra={
                "consequence": "sessions end at restart and are not shared between processes",
                "fix": "set SEGUIBOT_CONSOLE_SECRET",
            },
        )
        secret = secrets.token_urlsafe(32)
    return hashlib.sha256(secret.encode()).digest()  # 32 bytes: aiohttp-session encodes them
