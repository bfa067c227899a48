"""The exception tree. Callers branch on type, never on message text."""

from __future__ import annotations


class SeguibotError(Exception):
    """Root of every error Seguibot raises on purpose."""


class ConfigError(SeguibotError):
    """The configuration is unusable; the message names the key and where it came from."""


class Unreachable(SeguibotError):
    """Something the service depends on (the database, a channel's API) cannot be reached or
    refuses us; the message says what, where (never a password or token) and why."""


class Overloaded(SeguibotError):
    """More conversations are being handled than the database can serve at once, and this one
    waited its turn for as long as it may: answer 503 with Retry-After (or store it to handle
    later, on a channel that never delivers again)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"over capacity, try again in {retry_after:g} s")
        self.retry_after = retry_after


class SchemaOutdated(SeguibotError):
    """The database schema is behind the code's migrations."""


class WebhookRejected(SeguibotError):
    """A channel request that must not be processed; answered with `status` and `reason`."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class SendError(SeguibotError):
    """A send did not go through."""


class RetryLater(SendError):
    """A transient failure: try again, not before `after` seconds when the channel says so."""

    def __init__(
        self,
        reason: str,
        after: float | None = None,
        *,
        counts: bool = True,
        uncertain: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after
        # False when nothing was tried (the sender is pacing a chat): no attempt is spent.
        self.counts = counts
        # The request may have reached the channel (a timeout after sending): the next attempt
        # must find out before sending again.
        self.uncertain = uncertain


class SendFailed(SendError):
    """The channel refused the message; retrying the same request will not help."""

    def __init__(self, reason: str, code: str | None = None, *, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        # The recipient cannot be reached on this channel any more (blocked the bot, opted out).
        self.unreachable = unreachable


class Blocked(SendError):
    """Not sent on purpose: the channel's rules forbid this message now (e.g. WhatsApp's
    24-hour window with no template for it). Not retried; visible with its reason.
    `code` is short and from a fixed set (a metric label): "outside_24h_window", "63016"."""

    def __init__(self, reason: str, code: str = "blocked") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class MediaUnavailable(SeguibotError):
    """A media file cannot be shown: `status` is what the API answers (404, 413, 502)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Refusal(SeguibotError):
    """A request refused for a reason people read: `code` names the reason (the console shows
    its Spanish text, from data), `details` fill it in; the message is for logs and the API."""

    def __init__(self, message: str, *, code: str = "", **details: str) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class InvalidInput(Refusal):
    """A request that names something that does not exist or a value out of range (400)."""


class ConflictError(Refusal):
    """The action lost a race or does not fit the current state (answered 409)."""


class NotFound(Refusal):
    """The named record does not exist (answered 404)."""


class Forbidden(Refusal):
    """The agent may not do this to this record (answered 403): not its owner, not an admin."""
