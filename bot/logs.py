"""Structured logs: one JSON object per line, an event name plus fields.

Phone numbers, names and message text are only ever logged at DEBUG; tokens never. And because
libraries log what they like (twilio's HTTP client logs the `To:` of every request, a database
driver puts the values of a failed row in its error text), every record also passes through
`Redact` on its way out: phone numbers, e-mail addresses and card-like digit runs are masked in
the message, the fields and the traceback, whoever logged them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

# Attributes every LogRecord has; anything else came in through `extra=` and is a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# 13 to 19 digits, maybe grouped by spaces or dashes: a payment card's number.
_CARD = re.compile(r"(?<![\w.+])\d(?:[ -]?\d){12,18}(?![\w.])")
# 8 to 15 digits, maybe with a +, spaces, dashes or parentheses: a phone number in any spelling.
# Dots are not separators here, so versions, addresses and decimals stay as they are.
_PHONE = re.compile(r"(?<![\w.])\+?\(?\d(?:[ ()-]{0,2}\d){7,14}(?![\w.])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def redact(text: str) -> str:
    """`text` with e-mail addresses, card numbers and phone numbers masked."""
    text = _EMAIL.sub("[e-mail]", text)
    text = _CARD.sub("[card]", text)
    return _PHONE.sub(_phone, text)


def _phone(match: re.Match[str]) -> str:
    # An ISO date followed by an hour ("2026-11-29 20") has as many digits as a phone.
    return match[0] if _DATE.match(match[0]) else "[phone]"


class Redact(logging.Filter):
    """Masks personal data in every record that reaches the handler, library records too."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in record.__dict__.items():
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
        if record.exc_info or record.exc_text:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD)
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()} {fields}".rstrip()
        if record.exc_info or record.exc_text:
            line += "\n" + (record.exc_text or self.formatException(record.exc_info))  # type: ignore[arg-type]
        return line


def configure(level: str, *, json_format: bool, stream: IO[str] | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_format else TextFormatter())
    handler.addFilter(Redact())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries' own request logs would carry URLs with bot tokens and phone numbers.
    for noisy in ("httpx", "httpcore", "aiohttp.access", "twilio", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # While a backlog is being fired the next wake-up finds the previous one still working and
    # is skipped, as intended; APScheduler reports each skip as a warning.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
