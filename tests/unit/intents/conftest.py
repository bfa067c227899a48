"""Shared fixtures: the default matcher is built once per test session (about half a second)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from intents import Matcher, load_catalogue
from intents.catalogue import Catalogue

MX = ZoneInfo("America/Mexico_City")
# A Wednesday, mid-morning, in the lead's time zone.
NOW = datetime(2026, 3, 4, 10, 0, tzinfo=MX)


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="session")
def matcher(catalogue: Catalogue) -> Matcher:
    return Matcher.from_catalogue(catalogue)
