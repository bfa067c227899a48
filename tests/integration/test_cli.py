"""The `seguibot` command, run as users run it: a separate process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from storage import migrate

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SEGUIBOT_")}
    clean["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    clean["SEGUIBOT_LOGGING_JSON"] = "true"
    return clean


def test_db_upgrade_agents_and_queue(env: dict[str, str]) -> None:
    upgraded = run("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"schema at {migrate.head_revision()}" in upgraded.stdout
    assert run("db", "current", env=env).returncode == 0

    added = run("agents", "add", "Ana Pérez", "--email", "ana@example.com", env=env)
    assert added.returncode == 0, added.stderr
    assert "token (shown once): sgb_" in added.stdout
    assert "Ana Pérez" in run("agents", "list", env=env).stdout

    queue = run("queue", env=env)
    assert queue.returncode == 0 and "No hay conversaciones en espera." in queue.stdout


def test_chat_in_the_terminal(env: dict[str, str]) -> None:
    chat = run("chat", env=env, stdin="hola\nquiero hablar con un asesor\n")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.count("bot> ") == 2
    queue = run("queue", env=env)
    assert "handoff.human" in queue.stdout


def test_bad_config_names_key_and_source(env: dict[str, str]) -> None:
    result = run("db", "current", env={**env, "SEGUIBOT_SERVER_PORT": "ochenta"})
    assert result.returncode == 1
    assert "environment variable SEGUIBOT_SERVER_PORT: server.port" in result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_and_stops_cleanly_on_sigterm(env: dict[str, str]) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        request = urllib.request.Request(
            f"{base}/webchat/messages",
            data=json.dumps({"session_id": "cli-session-1-Kq7mZ2xW9p", "text": "hola"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["replies"]
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=20)
    finally:
        server.kill()
    assert server.returncode == 0, stderr
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    events = [entry["event"] for entry in logged]
    assert "serving" in events and "message_received" in events
    # Message text and names never reach the logs above DEBUG.
    assert "hola" not in stderr


def test_appointments_and_jobs(env: dict[str, str]) -> None:
    # Open every day, no holidays: the test does not depend on the day it runs.
    every_day = {
        day: ["09:00", "19:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    }
    env = {
        **env,
        "SEGUIBOT_SCHEDULING_HOURS": json.dumps(every_day),
        "SEGUIBOT_SCHEDULING_HOLIDAYS": "[]",
    }
    chat = run("chat", env=env, stdin="llámame mañana a las 10\nsí\n")
    assert chat.returncode == 0, chat.stderr
    assert "mañana a las 10:00" in chat.stdout
    assert "today" not in run("appointments", env=env).stdout
    week = run("appointments", "--week", env=env)
    assert week.returncode == 0, week.stderr
    assert "mañana a las 10:00" in week.stdout
    assert "llamada" in week.stdout
    jobs = run("jobs", env=env)
    assert jobs.returncode == 0, jobs.stderr
    assert "reminder.lead" in jobs.stdout
    assert "reminder.agent" in jobs.stdout
