"""What every response goes through: errors as short JSON, and the security headers."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.core.errors import (
    ConflictError,
    Forbidden,
    InvalidInput,
    NotFound,
    Overloaded,
    WebhookRejected,
)
from storage.db import is_conflict, is_unavailable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What every response says unless its route set a policy of its own (the chat page and the
# console do): no content of any kind, no framing. Pages load scripts and styles as files.
STRICT_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


def json_error(status: int, reason: str) -> web.Response:
    """A short JSON error, the same shape on every route: {"error": "..."}."""
    return web.json_response({"error": reason}, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a status with a short JSON reason; nothing leaks a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        default = f"{exc.status}: {exc.reason}"
        reason = exc.text if exc.text and exc.text != default else exc.reason.lower()
        _log_rejection(request, exc.status, reason)
        response = json_error(exc.status, reason)
        for name in ("Retry-After", "Allow", "WWW-Authenticate"):  # what the client acts on
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except WebhookRejected as exc:
        _log_rejection(request, exc.status, exc.reason)
        return json_error(exc.status, exc.reason)
    except Overloaded as exc:
        # Waited its turn as long as it may: come back later (Telegram delivers again).
        log.info("request_overloaded", extra={"path": request.path})
        response = json_error(503, "busy, try again")
        response.headers["Retry-After"] = str(math.ceil(exc.retry_after))
        return response
    except InvalidInput as exc:
        return json_error(400, str(exc))
    except Forbidden as exc:
        return json_error(403, str(exc))
    except NotFound as exc:
        return json_error(404, str(exc))
    except ConflictError as exc:
        return json_error(409, str(exc))
    except Exception as exc:
        if is_conflict(exc):
            # Another transaction won a deadlock or serialization conflict; this one was rolled
            # back whole and can simply be sent again.
            log.info("request_conflict", extra={"path": request.path})
            response = json_error(503, "busy, try again")
            response.headers["Retry-After"] = "1"
            return response
        if is_unavailable(exc):
            log.warning(  # an outage, not a bug: no traceback per request
                "database_unavailable", extra={"path": request.path, "error": type(exc).__name__}
            )
            response = json_error(503, "database unavailable, try again later")
            response.headers["Retry-After"] = "5"
            return response
        log.exception("request_failed", extra={"path": request.path})
        return json_error(500, "internal error")


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: every response, static files and errors included."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Content-Security-Policy", STRICT_POLICY)


def _log_rejection(request: web.Request, status: int, reason: str) -> None:
    log.warning(
        "request_rejected", extra={"path": request.path, "status": status, "reason": reason}
    )
