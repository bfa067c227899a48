"""The Dockerfile and docker-compose.yml: checked as files always, built and run when a Docker
daemon answers (`docker info`), skipped with the reason otherwise."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.settings import env_names
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def dockerfile(instruction: str) -> list[str]:
    """The arguments of every `instruction` line (continuations joined)."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    return [
        line.split(None, 1)[1]
        for line in text.splitlines()
        if line.split(None, 1)[:1] == [instruction]
    ]


def test_compose_starts_postgres_then_migrates_then_serves() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "migrate", "seguibot"}
    migrate, seguibot = services["migrate"], services["seguibot"]
    assert migrate["command"] == ["seguibot", "db", "upgrade"]
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert seguibot["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert "/readyz" in " ".join(seguibot["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_compose_sets_only_settings_the_service_knows() -> None:
    services = compose()["services"]
    postgres = services["postgres"]["environment"]
    environment = services["seguibot"]["environment"]
    assert isinstance(environment, dict) and isinstance(postgres, dict)
    assert environment == services["migrate"]["environment"]
    known = set(env_names()) | {"SEGUIBOT_CONFIG"}
    assert set(environment) - known == set()
    # The URL points at the postgres service, as the user and database it creates.
    url = environment["DATABASE_URL"]
    assert url.startswith(f"postgresql+asyncpg://{postgres['POSTGRES_USER']}:")
    assert url.endswith(f"@postgres:5432/{postgres['POSTGRES_DB']}")


def test_the_image_holds_everything_the_package_needs() -> None:
    copied = {
        source
        for line in dockerfile("COPY")
        for source in line.split()[:-1]  # the last word is the destination
    }
    for source in copied:
        assert (ROOT / source).exists(), source
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]["packages"]["find"]["include"]
    needed = {pattern.rstrip("*") for pattern in packages}
    assert needed | {"pyproject.toml", "README.md", "config.yaml"} <= copied
    [command] = dockerfile("CMD")
    assert json.loads(command)[:2] == ["seguibot", "serve"]
    assert "0.0.0.0" in json.loads(command)
    assert dockerfile("USER") == ["seguibot"]
    [healthcheck] = dockerfile("HEALTHCHECK")
    assert "/readyz" in healthcheck


def test_the_image_layout_runs(tmp_path: Path) -> None:
    """What the image copies, alone in a folder: the defaults are found beside the code and
    the database goes to its data/ (the image's /app/data)."""
    app = tmp_path / "app"
    app.mkdir()
    for line in dockerfile("COPY"):
        *sources, _ = line.split()
        for source in sources:
            if (ROOT / source).is_dir():
                shutil.copytree(
                    ROOT / source, app / source, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy(ROOT / source, app / source)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUIBOT_")}
    env.pop("DATABASE_URL", None)
    env["PYTHONPATH"] = str(app)  # this copy, not the checkout
    result = subprocess.run(
        [sys.executable, "-m", "bot", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"SQLite file {app / 'data' / 'seguibot.db'}" in result.stdout
    assert (app / "data" / "seguibot.db").exists()


def _docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "docker is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        lines = (info.stderr or info.stdout).strip().splitlines()
        return f"no Docker daemon (`docker info`: {lines[-1] if lines else info.returncode})"
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode != 0:
        return "the docker compose plugin is not installed"
    return None


@pytest.mark.skipif(bool(problem := _docker_problem()), reason=problem or "")
def test_compose_up_builds_migrates_and_serves() -> None:
    port = free_port()
    project = f"seguibot-test-{secrets.token_hex(3)}"
    env = {**os.environ, "POSTGRES_PASSWORD": secrets.token_hex(12), "HTTP_PORT": str(port)}
    base = ["docker", "compose", "-f", str(COMPOSE), "-p", project]
    try:
        up = subprocess.run(
            [*base, "up", "--build", "--detach", "--wait", "--wait-timeout", "300"],
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        assert up.returncode == 0, up.stderr[-3000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as ready:
            assert json.loads(ready.read()) == {"status": "ready"}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/webchat/messages",
            data=json.dumps({"session_id": "docker-compose-Kq7mZ2xW9pLr", "text": "hola"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answered:
            assert json.loads(answered.read())["replies"]
        migrated = subprocess.run(
            [*base, "ps", "--all", "--format", "json", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert re.search(r'"ExitCode":\s*0', migrated.stdout), migrated.stdout
    finally:
        subprocess.run(
            [*base, "down", "--volumes", "--remove-orphans"],
            env=env,
            capture_output=True,
            timeout=300,
            check=False,
        )
