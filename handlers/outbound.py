"""The HTTP client outbound webhooks are posted with (aiohttp): a status code, or RetryLater
when the endpoint could not be reached; the URL's query (which may hold a key) is never logged."""

from __future__ import annotations

import aiohttp

from bot.core.errors import RetryLater


class HttpPoster:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryLater(f"{type(exc).__name__} posting to the endpoint") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
