"""What an operator reads when the Bot API cannot be reached: the URL and why, no token.

Raised as python-telegram-bot raises them: PTB's error `from` httpx's, `from` the socket's.
"""

from __future__ import annotations

import socket

import httpx
import pytest
from telegram.error import NetworkError, TimedOut

from handlers.telegram import describe_failure

TOKEN = "123456:the-secret-part"
URL = f"https://api.telegram.org/bot{TOKEN}/getMe"


def raised(ptb: Exception, transport: Exception, cause: BaseException | None = None) -> Exception:
    try:
        try:
            raise transport from cause
        except Exception as exc:
            raise ptb from exc
    except Exception as caught:
        return caught


def request() -> httpx.Request:
    return httpx.Request("POST", URL)


@pytest.mark.parametrize(
    ("error", "why"),
    [
        (
            raised(TimedOut(), httpx.ReadTimeout("", request=request()), TimeoutError()),
            "connected, but no answer in time (read timeout)",
        ),
        (
            raised(TimedOut(), httpx.ConnectTimeout("", request=request()), TimeoutError()),
            "no connection in time (connect timeout)",
        ),
        (
            raised(
                NetworkError("httpx.ConnectError: [Errno -2] Name or service not known"),
                httpx.ConnectError("[Errno -2] Name or service not known", request=request()),
                socket.gaierror(-2, "Name or service not known"),
            ),
            "the host name does not resolve (DNS: Name or service not known)",
        ),
        (
            raised(
                NetworkError("httpx.ConnectError: All connection attempts failed"),
                httpx.ConnectError("All connection attempts failed", request=request()),
                ConnectionRefusedError(111, "Connect call failed"),
            ),
            "connection refused (nothing listens there)",
        ),
    ],
)
def test_the_url_and_the_reason_without_the_token(error: Exception, why: str) -> None:
    described = describe_failure(error, TOKEN)
    assert described == f"could not reach https://api.telegram.org/bot<token>/getMe: {why}"
    assert "the-secret-part" not in described


def test_a_message_that_carries_the_token_is_masked() -> None:
    error = NetworkError(f"something about {URL}")
    assert "the-secret-part" not in describe_failure(error, TOKEN)
