"""Signing in and out, invitations, and the guard every console request passes.

The guard: a session names an agent and their session epoch, checked against the database on
each request (a deactivated agent or a changed password ends it at once); no session means the
sign-in page for a page and 401 for a script's call; every POST carries the session's CSRF
token (form field `csrf` or header `X-CSRF-Token`) and, when the browser sends one, an Origin
of this very site.
"""

from __future__ import annotations

import functools
import math
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp_session import Session, get_session, new_session

from bot.core.errors import Forbidden, InvalidInput, NotFound, Refusal
from bot.core.model import AgentRole
from bot.core.ratelimit import RateLimiter
from bot.desk.accounts import Accounts, SignInRefused, Who
from bot.web.console.render import Pages
from bot.web.keys import ACCOUNTS, SETTINGS
from storage.models import Agent

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

AGENT: web.RequestKey[Agent] = web.RequestKey("console_agent", Agent)
CSRF: web.RequestKey[str] = web.RequestKey("console_csrf", str)
PAGES = web.AppKey("console_pages", Pages)
PUBLIC = ("/console/login", "/console/invite/")
SAFE_METHODS = frozenset({"GET", "HEAD"})


class SignInLimits:
    """Attempts per account and per address; an address tries many accounts, so it gets more."""

    def __init__(self, per_minute: int) -> None:
        self.accounts = RateLimiter(per_minute, 60, burst=per_minute)
        self.addresses = RateLimiter(per_minute * 4, 60, burst=per_minute * 4)

    def wait(self, email: str, address: str) -> float:
        return max(self.accounts.wait(email.strip().lower()), self.addresses.wait(address))


LIMITS = web.AppKey("console_limits", SignInLimits)


def pages(request: web.Request) -> Pages:
    return request.app[PAGES]


def accounts(request: web.Request) -> Accounts:
    return request.config_dict[ACCOUNTS]


def address(request: web.Request) -> str:
    forwarded = request.config_dict[SETTINGS].server.forwarded_for
    if forwarded and (chain := request.headers.get("X-Forwarded-For")):
        return chain.split(",")[-1].strip()
    return request.remote or "unknown"


def who(request: web.Request) -> Who:
    return Who(request[AGENT].id, address(request))


def wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "") or bool(
        request.headers.get("X-CSRF-Token")
    )


# Uploads to the materials library may be larger than other requests (server.max_body_bytes):
# up to materials.max_bytes, plus room for the form's other fields.
UPLOADS = "/console/materiales"
_FORM_ROOM = 64 * 1024


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    session = await get_session(request)
    if request.method == "POST" and request.path.startswith(UPLOADS):
        # The clone shares this request's state (the session just loaded, so it is saved).
        limit = request.config_dict[SETTINGS].materials.max_bytes + _FORM_ROOM
        request = request.clone(client_max_size=limit)
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        session["csrf"] = token
    request[CSRF] = token
    public = request.path.startswith(PUBLIC)
    if request.method not in SAFE_METHODS and not _same_site(
        request, token, await _posted(request)
    ):
        return _refuse(request, 403, pages(request).texts["rechazos"]["csrf"])
    if not public:
        agent = await _signed_in(request, session)
        if agent is None:
            if request.method in SAFE_METHODS and not wants_json(request):
                raise web.HTTPFound(f"/console/login?next={request.path_qs}")
            return web.json_response({"error": "sign in first"}, status=401)
        request[AGENT] = agent
    try:
        return await handler(request)
    except Refusal as refused:
        status = (
            403
            if isinstance(refused, Forbidden)
            else 404
            if isinstance(refused, NotFound)
            else 400
            if isinstance(refused, InvalidInput)
            else 409
        )
        return _refuse(request, status, pages(request).refusal(refused))


async def _signed_in(request: web.Request, session: Session) -> Agent | None:
    agent_id, epoch = session.get("agent"), session.get("epoch")
    if not isinstance(agent_id, int) or not isinstance(epoch, int):
        return None
    agent = await accounts(request).signed_in(agent_id, epoch)
    if agent is None:
        session.invalidate()
    return agent


async def _posted(request: web.Request) -> str:
    header = request.headers.get("X-CSRF-Token")
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get("csrf")
        return value if isinstance(value, str) else ""
    return ""


def _same_site(request: web.Request, token: str, posted: str) -> bool:
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        return False
    return bool(posted) and secrets.compare_digest(posted, token)


def _refuse(request: web.Request, status: int, message: str) -> web.Response:
    if wants_json(request):
        return web.json_response({"error": message}, status=status)
    return pages(request).render(request, "error.html", status=status, message=message)


def admin_page(handler: Handler) -> Handler:
    """Pages and actions for admins (coordinadores) only: 403 for everyone else."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        if request[AGENT].role != AgentRole.ADMIN:
            return _refuse(request, 403, pages(request).texts["rechazos"]["forbidden"])
        return await handler(request)

    return guarded


def register(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/invite/{token}", invite_page)
    app.router.add_post("/invite/{token}", accept_invite)


async def login_page(request: web.Request) -> web.Response:
    return pages(request).render(
        request, "login.html", next=_next(request.query.get("next")), error=None, email=""
    )


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    following = _next(str(form.get("next", "")))
    texts = pages(request).texts["rechazos"]
    wait = request.app[LIMITS].wait(email, address(request))
    if wait > 0:
        response = pages(request).render(
            request, "login.html", status=429, next=following, error=texts["too_many"], email=email
        )
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    try:
        agent = await accounts(request).sign_in(email, password, address(request))
    except SignInRefused:
        return pages(request).render(
            request, "login.html", status=401, next=following, error=texts["sign_in"], email=email
        )
    await _start_session(request, agent)
    raise web.HTTPSeeOther(following)


async def logout(request: web.Request) -> web.StreamResponse:
    await accounts(request).sign_out(who(request))
    session = await get_session(request)
    session.invalidate()
    raise web.HTTPSeeOther("/console/login")


async def invite_page(request: web.Request) -> web.Response:
    invite = await accounts(request).invitation(request.match_info["token"])
    if invite is None:
        return pages(request).render(
            request, "error.html", status=404, message=pages(request).texts["rechazos"]["invite"]
        )
    return pages(request).render(request, "invite.html", invite=invite, error=None)


async def accept_invite(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    form = await request.post()
    password = str(form.get("password", ""))
    texts = pages(request).texts["rechazos"]
    invite = await accounts(request).invitation(token)
    if invite is None:
        return pages(request).render(request, "error.html", status=404, message=texts["invite"])
    if password != str(form.get("password2", "")) or len(password) < 10:
        return pages(request).render(
            request, "invite.html", status=400, invite=invite, error=texts["password"]
        )
    agent = await accounts(request).accept(token, password, address(request))
    await _start_session(request, agent)
    raise web.HTTPSeeOther("/console/")


async def _start_session(request: web.Request, agent: Agent) -> None:
    # A new session at sign-in: a session id (and CSRF token) planted before it is worthless.
    session = await new_session(request)
    session["agent"] = agent.id
    session["epoch"] = agent.session_epoch
    session["csrf"] = secrets.token_urlsafe(24)


def _next(value: str | None) -> str:
    """Where to go after signing in: a console path, never another site."""
    if value and value.startswith("/console/") and not value.startswith("//"):
        return value
    return "/console/"


def flash(session: Session, message: str) -> None:
    session["flash"] = message


async def take_flash(request: web.Request) -> str | None:
    session = await get_session(request)
    message: Any = session.pop("flash", None)
    return message if isinstance(message, str) else None
