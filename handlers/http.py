"""What every channel's HTTP side shares: reading a request whole, answering an error."""

from __future__ import annotations

from aiohttp import web

from bot.channel import RawRequest


async def read_raw(request: web.Request, public_url: str = "") -> RawRequest:
    """The request as the remote service sent it.

    `url` is the public URL when one is configured: behind a proxy or TLS terminator the
    local URL differs from the one the service called, and signatures cover the public one.
    """
    body = await request.read()  # raises 413 past the app's client_max_size
    url = public_url + request.path_qs if public_url else str(request.url)
    form: dict[str, list[str]] = {}
    if request.content_type == "application/x-www-form-urlencoded":
        posted = await request.post()
        for key in posted:
            form[key] = [str(value) for value in posted.getall(key)]
    return RawRequest(request.method, url, dict(request.headers), body, form)


def error(status: int, reason: str) -> web.Response:
    """A short JSON error, the same shape on every route: {"error": "..."}."""
    return web.json_response({"error": reason}, status=status)
