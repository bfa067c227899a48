"""What every channel's HTTP side shares: reading a request whole, and who sent it."""

from __future__ import annotations

from aiohttp import web

from bot.core.channel import RawRequest
from bot.core.wire import parse_form


async def read_raw(request: web.Request, public_url: str = "") -> RawRequest:
    """The request as the remote service sent it.

    `url` is the public URL when one is configured: behind a proxy or TLS terminator the
    local URL differs from the one the service called, and signatures cover the public one.
    A form body is decoded here as UTF-8 whatever charset it declares (Twilio posts UTF-8);
    one that does not decode yields no fields, so its signature cannot match.
    """
    body = await request.read()  # raises 413 past the app's client_max_size
    url = public_url + request.path_qs if public_url else str(request.url)
    form: dict[str, list[str]] = {}
    if request.content_type == "application/x-www-form-urlencoded":
        form = parse_form(body)
    return RawRequest(request.method, url, dict(request.headers), body, form)


def client_address(request: web.Request, *, forwarded_for: bool) -> str:
    """Who is asking: the peer's address, or the last X-Forwarded-For entry behind a proxy
    that sets it (the one address the proxy itself saw; earlier entries are the client's say)."""
    if forwarded_for and (chain := request.headers.get("X-Forwarded-For")):
        return chain.split(",")[-1].strip()
    return request.remote or "unknown"
