"""The engine and the policy never import a channel or the web framework (STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ["bot/engine.py", "bot/policy.py", "bot/effects.py", "bot/outbox.py", "bot/channel.py"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_does_not_import_channels_or_aiohttp(module: str) -> None:
    imports = imported_modules(ROOT / module)
    offending = {m for m in imports if m.split(".")[0] in {"handlers", "aiohttp"}}
    assert not offending, f"{module} imports {sorted(offending)}"


def test_only_the_app_imports_handlers() -> None:
    importers = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "bot").rglob("*.py")
        if any(m.split(".")[0] == "handlers" for m in imported_modules(path))
    }
    assert importers <= {"bot/app.py"}, importers
