"""Where the tests' data lives (see tests/data/PROVENANCE.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

DATA: Final = Path(__file__).resolve().parent / "data"
TELEGRAM_SPEC: Final = DATA / "specs" / "telegram-bot-api.json"
TWILIO_SPEC: Final = DATA / "specs" / "twilio_api_v2010_messages_subset.json"
NLU_DEV: Final = DATA / "nlu"
