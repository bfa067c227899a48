"""The `seguibot` command: in the test's process (tests/command.py: arguments, environment,
standard input and folder in; output, errors and exit code out, as a user gets them), and as a
separate process where the process is what is tested (serving, signals, `make run`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from intents import editing
from intents.catalogue import DEFAULT_SCRIPTS
from storage import migrate
from tests.command import seguibot

ROOT = Path(__file__).resolve().parents[2]


def process(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`seguibot ARGS` as a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
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
    upgraded = seguibot("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"schema at {migrate.head_revision()}" in upgraded.stdout
    assert seguibot("db", "current", env=env).returncode == 0

    added = seguibot("agents", "add", "Ana Pérez", "--email", "ana@example.com", env=env)
    assert added.returncode == 0, added.stderr
    assert "token (shown once): sgb_" in added.stdout
    listed = seguibot("agents", "list", env=env).stdout
    assert "Ana Pérez" in listed and "asesor" in listed and "activo" in listed

    queue = seguibot("queue", env=env)
    assert queue.returncode == 0 and "No hay conversaciones en espera." in queue.stdout


def test_chat_in_the_terminal(env: dict[str, str]) -> None:
    chat = seguibot("chat", env=env, stdin="hola\nquiero hablar con un asesor\n")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.count("bot> ") == 2
    queue = seguibot("queue", env=env)
    assert "handoff.human" in queue.stdout


def test_bad_config_names_key_and_source(env: dict[str, str]) -> None:
    result = seguibot("db", "current", env={**env, "SEGUIBOT_SERVER_PORT": "ochenta"})
    assert result.returncode == 1
    assert "environment variable SEGUIBOT_SERVER_PORT: server.port" in result.stderr


def test_a_mistyped_variable_gets_the_nearest_name(env: dict[str, str]) -> None:
    result = seguibot("queue", env={**env, "SEGUIBOT_TELEGRAM_TOKN": "123:abc"})
    assert result.returncode == 1
    assert result.stderr == (
        "seguibot: environment variable SEGUIBOT_TELEGRAM_TOKN: no such setting; "
        "did you mean SEGUIBOT_TELEGRAM_TOKEN?\n"
    )


def test_test_only_variables_are_outside_the_product_namespace(env: dict[str, str]) -> None:
    # The suite's own variables (tests/conftest.py) do not stop the service.
    migrated = seguibot("db", "upgrade", env={**env, "TEST_POSTGRES_URL": "postgresql://x@h/db"})
    assert migrated.returncode == 0, migrated.stderr
    renamed = seguibot("queue", env={**env, "SEGUIBOT_TEST_POSTGRES": "postgresql://x@h/db"})
    assert renamed.returncode == 1
    assert "SEGUIBOT_TEST_POSTGRES is now called TEST_POSTGRES_URL" in renamed.stderr


READ_ONLY = [("queue",), ("jobs",), ("appointments",), ("agents", "list"), ("db", "current")]


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_read_only_commands_never_create_a_database(
    env: dict[str, str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    data = tmp_path / "data"
    env = {**env, "SEGUIBOT_DATA_DIR": str(data)}
    del env["DATABASE_URL"]
    result = seguibot(*command, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"there is no database at {data / 'seguibot.db'}" in result.stderr
    assert "`seguibot db upgrade`" in result.stderr and "`make run`" in result.stderr
    assert not data.exists() and not (tmp_path / "seguibot.db").exists()


def test_every_command_uses_one_database_whatever_the_folder(
    env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = {**env, "SEGUIBOT_DATA_DIR": str(data)}
    del env["DATABASE_URL"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    upgraded = seguibot("db", "upgrade", env=env, cwd=elsewhere)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"SQLite file {data / 'seguibot.db'}" in upgraded.stdout
    assert seguibot("agents", "add", "Luis", env=env, cwd=ROOT).returncode == 0
    assert "Luis" in seguibot("agents", "list", env=env, cwd=tmp_path).stdout
    assert list(elsewhere.iterdir()) == []


def _postgres_at(port: int, user: str = "seguibot") -> str:
    return f"postgresql+asyncpg://{user}:hunter2@127.0.0.1:{port}/seguibot"


@pytest.mark.parametrize("command", [("serve",), ("db", "upgrade"), ("queue",)], ids=" ".join)
def test_an_unreachable_database_is_one_line_and_exit_2(
    env: dict[str, str], command: tuple[str, ...]
) -> None:
    port = free_port()  # nothing listens there
    run = process if command == ("serve",) else seguibot
    result = run(*command, env={**env, "DATABASE_URL": _postgres_at(port)})
    assert result.returncode == 2
    assert result.stderr == (
        f"seguibot: cannot use the database (PostgreSQL at 127.0.0.1:{port}, database "
        "seguibot, user seguibot): connection refused (nothing listens on that host and port); "
        "check that the server is running there and the host and port in DATABASE_URL\n"
    )
    assert "hunter2" not in result.stdout + result.stderr
    assert "serving" not in result.stdout + result.stderr


@pytest.mark.postgres
def test_a_refused_login_says_what_to_check(env: dict[str, str], postgres_url: str) -> None:
    from sqlalchemy.engine import make_url

    server = make_url(postgres_url)
    url = server.set(username="no_such_role_here", password="hunter2").render_as_string(False)
    result = process("serve", env={**env, "DATABASE_URL": url})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"PostgreSQL at {server.host}:{server.port}" in result.stderr
    assert 'role "no_such_role_here" does not exist' in result.stderr
    assert "check the user and password in DATABASE_URL" in result.stderr
    assert "hunter2" not in result.stderr


@pytest.mark.postgres
def test_postgresql_on_the_same_machine_through_its_socket(
    env: dict[str, str], postgres_url: str
) -> None:
    """The README's URL for PostgreSQL on the same machine: the database's Unix socket."""
    from sqlalchemy.engine import make_url

    server = make_url(postgres_url)
    folder = Path("/var/run/postgresql")
    if not (folder / f".s.PGSQL.{server.port or 5432}").exists():
        pytest.skip(f"PostgreSQL has no socket in {folder} on this machine")
    url = server.set(host=None, port=None, query={"host": str(folder)})
    socket_env = {**env, "DATABASE_URL": url.render_as_string(hide_password=False)}
    current = seguibot("db", "current", env=socket_env)
    assert current.returncode == 0, current.stderr
    assert f"PostgreSQL at the socket in {folder}" in current.stdout
    assert f"schema at {migrate.head_revision()}" in current.stdout
    chat = seguibot("chat", env=socket_env, stdin="hola\n")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.count("bot> ") == 1


def test_agents_are_managed_from_the_command_line(env: dict[str, str]) -> None:
    assert seguibot("db", "upgrade", env=env).returncode == 0
    first = seguibot("agents", "add", "Ana", "--email", "ana@example.com", env=env)
    assert first.returncode == 0, first.stderr
    old_token = first.stdout.split("token (shown once): ")[1].strip()

    same_name = seguibot("agents", "add", "ANA", env=env)
    assert same_name.returncode == 1
    assert "an agent with the name 'ANA' already exists" in same_name.stderr
    same_email = seguibot("agents", "add", "Bea", "--email", "Ana@Example.com", env=env)
    assert same_email.returncode == 1 and "e-mail" not in same_email.stdout
    assert "email 'Ana@Example.com' already exists" in same_email.stderr

    renamed = seguibot("agents", "rename", "ana@example.com", "Ana Pérez", env=env)
    assert renamed.returncode == 0 and "Ana is now Ana Pérez" in renamed.stdout
    token = seguibot("agents", "token", "ana pérez", env=env)
    assert token.returncode == 0 and "the old token no longer works" in token.stdout
    assert old_token not in token.stdout and "token (shown once): sgb_" in token.stdout

    assert seguibot("agents", "deactivate", "1", env=env).returncode == 0
    assert "inactivo" in seguibot("agents", "list", env=env).stdout
    assert seguibot("agents", "activate", "Ana Pérez", env=env).returncode == 0
    assert " activo " in seguibot("agents", "list", env=env).stdout

    removed = seguibot("agents", "remove", "1", env=env)
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert "No hay asesores" in seguibot("agents", "list", env=env).stdout
    missing = seguibot("agents", "remove", "ana@example.com", env=env)
    assert missing.returncode == 1 and "no agent 'ana@example.com'" in missing.stderr


def test_help_says_what_admins_can_do(env: dict[str, str]) -> None:
    shown = seguibot("agents", "add", "--help", env=env).stdout
    assert "edit scripts" not in shown and "reports" not in shown
    assert "/api/outbox" in " ".join(shown.split())


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
        for _ in range(600):  # a minute at most: on a loaded machine training takes a while
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
        banner, stderr = server.communicate(timeout=20)
    finally:
        server.kill()
    assert server.returncode == 0, stderr
    # In plain words: where to chat, which channels are on and what turns the others on.
    assert f"web chat:  on: open http://127.0.0.1:{port}/chat" in banner
    assert "Telegram:  off; turn it on with SEGUIBOT_TELEGRAM_TOKEN" in banner
    assert "WhatsApp:  off; turn it on with TWILIO_ACCOUNT_SID" in banner
    assert f"database:  SQLite file {env['DATABASE_URL'].split(':///')[1]}" in banner
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    events = [entry["event"] for entry in logged]
    assert "serving" in events and "message_received" in events
    # Once ready, what the service holds for good is out of the collector's way (bot/heap.py).
    [settled] = [entry for entry in logged if entry["event"] == "heap_settled"]
    assert settled["objects"] > 100_000
    # Message text and names never reach the logs above DEBUG.
    assert "hola" not in stderr


def test_serve_settles_the_heap_again_when_the_scripts_change(
    env: dict[str, str], tmp_path: Path
) -> None:
    # A new live version brings a new matcher: the old one goes back to the collector and the
    # new one out of its way (bot/heap.py).
    log = tmp_path / "serve.log"

    def events() -> list[str]:
        lines = log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["event"] for line in lines if line.startswith("{")]

    with log.open("w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(free_port())],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            for _ in range(600):
                if "heap_settled" in events():
                    break
                time.sleep(0.1)
            changed = tmp_path / "guiones.yaml"
            scripts = editing.read(DEFAULT_SCRIPTS.read_text(encoding="utf-8"))
            scripts["intents"]["objection.price"]["replies"] = ["Otro precio, {nombre}."]
            changed.write_text(editing.write(scripts), encoding="utf-8")
            imported = seguibot("scripts", "import", str(changed), env=env)
            assert imported.returncode == 0, imported.stderr
            for _ in range(600):  # it looks for a new version every nlu.reload_seconds (2)
                if events().count("heap_settled") == 2:
                    break
                time.sleep(0.1)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=20)
    seen = events()
    settled = [n for n, event in enumerate(seen) if event == "heap_settled"]
    assert len(settled) == 2 and seen.index("nlu_replaced") < settled[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_takes_the_port(env: dict[str, str]) -> None:
    port = free_port()
    server = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # make and the service, stopped together below
    )
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/chat", timeout=1) as page:
                    assert page.status == 200
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"nothing answered on port {port}")
        os.killpg(server.pid, signal.SIGTERM)
        banner, _ = server.communicate(timeout=20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
    assert f"seguibot serve --port {port}" in banner
    assert f"open http://127.0.0.1:{port}/chat" in banner


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
    chat = seguibot("chat", env=env, stdin="llámame mañana a las 10\nsí\n")
    assert chat.returncode == 0, chat.stderr
    assert "mañana a las 10:00" in chat.stdout
    assert "today" not in seguibot("appointments", env=env).stdout
    week = seguibot("appointments", "--week", env=env)
    assert week.returncode == 0, week.stderr
    assert "mañana a las 10:00" in week.stdout
    assert "llamada" in week.stdout
    jobs = seguibot("jobs", env=env)
    assert jobs.returncode == 0, jobs.stderr
    assert "reminder.lead" in jobs.stdout
    assert "reminder.agent" in jobs.stdout
    # In the business's time zone, named: the lead's reminder an hour before 10:00.
    tomorrow = (datetime.now(ZoneInfo("America/Mexico_City")) + timedelta(days=1)).date()
    assert f"{tomorrow:%Y-%m-%d} 09:00 (America/Mexico_City)  reminder.lead" in jobs.stdout
    assert "UTC" not in jobs.stdout
    assert "mañana a las 10:00 (America/Mexico_City)" in week.stdout
