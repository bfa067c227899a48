"""`GET /materiales/<token>/<file>`: the files of the materials library, for whoever the bot
sent them to. Twilio fetches WhatsApp media from here (it takes only a public `MediaUrl`), and
the web chat links here. No sign-in: the token in the address is the key (unguessable, and
replaced when the file is), and a deactivated material's file is no longer served.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from bot.delivery.outbox import MATERIALS_PATH
from bot.web.keys import MATERIALS


def register(app: web.Application) -> None:
    app.router.add_get(MATERIALS_PATH + "/{token:[A-Za-z0-9_-]{16,64}}/{name:[^/]{1,120}}", serve)


async def serve(request: web.Request) -> web.Response:
    served = await request.config_dict[MATERIALS].served(
        request.match_info["token"], request.match_info["name"]
    )
    return web.Response(
        body=served.data,
        content_type=served.content_type,
        headers={
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(served.file_name)}",
            "Cache-Control": "private, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; img-src 'self'",
        },
    )
