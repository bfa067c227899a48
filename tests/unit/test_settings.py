"""Config: every default in config.yaml, env overrides, errors that name the key and source."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.errors import ConfigError
from bot.settings import DEFAULTS_FILE, PROJECT_ROOT, env_names, load_settings


def test_defaults_load_and_run_embedded() -> None:
    settings = load_settings(environ={})
    assert settings.database.url.startswith("sqlite+aiosqlite:///")
    assert settings.server.port == 8080
    assert settings.server.host == "127.0.0.1"
    assert not settings.telegram.enabled
    assert settings.pipeline.stages[0] == "awareness"


def test_environment_overrides_the_file() -> None:
    settings = load_settings(
        environ={
            "SEGUIBOT_SERVER_PORT": "9090",
            "DATABASE_URL": "postgresql://u@db/seguibot",
            "SEGUIBOT_TELEGRAM_TOKEN": "123:abc",
            "TWILIO_AUTH_TOKEN": "secret",
            "SEGUIBOT_WHATSAPP_FROM": "whatsapp:+5215500000000",
            "SEGUIBOT_SCORING_POINTS": '{"buy.intent": 20}',
        }
    )
    assert settings.server.port == 9090
    # Plain URLs from hosting providers get the asyncio driver.
    assert settings.database.url == "postgresql+asyncpg://u@db/seguibot"
    assert settings.telegram.enabled
    assert settings.twilio.auth_token == "secret"
    assert settings.whatsapp.from_ == "whatsapp:+5215500000000"
    assert settings.scoring.points == {"buy.intent": 20}


def test_wrong_type_in_env_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"SEGUIBOT_OUTBOX_MAX_ATTEMPTS": "0"})
    message = str(caught.value)
    assert "environment variable SEGUIBOT_OUTBOX_MAX_ATTEMPTS" in message
    assert "outbox.max_attempts" in message
    assert "greater than or equal to 1" in message


def test_unknown_env_variable_is_refused_with_the_nearest_name() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"SEGUIBOT_SERVR_PORT": "1"})
    assert str(caught.value) == (
        "environment variable SEGUIBOT_SERVR_PORT: no such setting; "
        "did you mean SEGUIBOT_SERVER_PORT?"
    )


def test_unknown_env_variable_with_nothing_near_says_how_names_are_made() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"SEGUIBOT_XYZZY": "1"})
    message = str(caught.value)
    assert "SEGUIBOT_<SECTION>_<KEY>" in message
    assert len(message) < 200  # not a list of every setting


def test_old_test_variables_name_their_new_names() -> None:
    for old, new in (
        ("SEGUIBOT_TEST_POSTGRES", "TEST_POSTGRES_URL"),
        ("SEGUIBOT_BENCH_POSTGRES", "BENCH_POSTGRES_URL"),
    ):
        with pytest.raises(ConfigError, match=f"{old} is now called {new}"):
            load_settings(environ={old: "postgresql://x@h/db"})
    load_settings(environ={"TEST_POSTGRES_URL": "x", "BENCH_POSTGRES_URL": "x"})


def test_the_database_is_in_the_checkouts_data_dir_whatever_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.data_dir == str(PROJECT_ROOT / "data")
    assert settings.database.url == f"sqlite+aiosqlite:///{PROJECT_ROOT / 'data' / 'seguibot.db'}"
    # A relative SQLite path is taken inside data_dir, never in the working directory.
    relative = load_settings(environ={"DATABASE_URL": "sqlite+aiosqlite:///other.db"})
    assert relative.database.sqlite_path == PROJECT_ROOT / "data" / "other.db"
    assert not (tmp_path / "data").exists()  # loading settings creates nothing


def test_relative_paths_follow_the_file_or_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    overlay = etc / "prod.yaml"
    overlay.write_text("data_dir: var\nnlu:\n  scripts: mis_guiones.yaml\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    from_file = load_settings(environ={"SEGUIBOT_CONFIG": str(overlay)})
    assert from_file.data_dir == str(etc / "var")
    assert from_file.nlu.scripts_path == etc / "mis_guiones.yaml"
    assert from_file.database.sqlite_path == etc / "var" / "seguibot.db"
    from_env = load_settings(environ={"SEGUIBOT_DATA_DIR": "datos"})
    assert from_env.database.sqlite_path == tmp_path / "datos" / "seguibot.db"


def test_the_database_is_described_without_its_password() -> None:
    settings = load_settings(environ={"DATABASE_URL": "postgresql://ventas:s3cr3t@db:5433/crm"})
    assert settings.database.where() == "PostgreSQL at db:5433, database crm, user ventas"
    local = "postgresql+asyncpg://ventas:s3cr3t@/crm?host=/var/run/postgresql"
    settings = load_settings(environ={"DATABASE_URL": local})
    assert settings.database.where() == (
        "PostgreSQL at the socket in /var/run/postgresql, database crm, user ventas"
    )


def test_plans_fill_the_planes_placeholder() -> None:
    assert load_settings(environ={}).business.script_values()["planes"] == ""
    plans = '[{"name": "Básico", "price": "$499 al mes"}, {"name": "Pro", "price": "$999 al mes"}]'
    settings = load_settings(environ={"SEGUIBOT_BUSINESS_PLANS": plans})
    assert settings.business.script_values()["planes"] == "Básico ($499 al mes), Pro ($999 al mes)"


def test_unknown_key_in_file_names_file_and_key(tmp_path: Path) -> None:
    overlay = tmp_path / "prod.yaml"
    overlay.write_text("outbox:\n  max_atempts: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"SEGUIBOT_CONFIG": str(overlay)})
    assert f"{overlay}: outbox.max_atempts is not a known setting" in str(caught.value)


def test_bad_value_in_file_names_file_and_key(tmp_path: Path) -> None:
    overlay = tmp_path / "prod.yaml"
    overlay.write_text("business:\n  timezone: America/Monterey\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"SEGUIBOT_CONFIG": str(overlay)})
    assert f"{overlay}: business.timezone" in str(caught.value)
    assert "unknown time zone" in str(caught.value)


def test_missing_key_names_it(tmp_path: Path) -> None:
    defaults = tmp_path / "config.yaml"
    text = DEFAULTS_FILE.read_text(encoding="utf-8").replace("  max_attempts: 8", "")
    defaults.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"config.yaml: outbox.max_attempts is missing"):
        load_settings(environ={}, defaults_file=defaults)


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    overlay = tmp_path / "prod.yaml"
    overlay.write_text("server:\n  port: 8080\n   host: x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"prod.yaml:3: not valid YAML"):
        load_settings(environ={"SEGUIBOT_CONFIG": str(overlay)})


def test_database_url_needs_a_known_driver() -> None:
    with pytest.raises(ConfigError, match=r"environment variable DATABASE_URL: database\.url"):
        load_settings(environ={"DATABASE_URL": "mysql://x"})


def test_every_key_has_an_environment_name() -> None:
    names = env_names()
    assert names["SEGUIBOT_TELEGRAM_WEBHOOK_SECRET"] == ("telegram", "webhook_secret")
    assert names["SEGUIBOT_TELEGRAM_API_BASE_URL"] == ("telegram", "api_base_url")
    assert names["SEGUIBOT_TWILIO_API_BASE_URL"] == ("twilio", "api_base_url")
    assert names["SEGUIBOT_PUBLIC_URL"] == ("public_url",)
    assert names["TWILIO_ACCOUNT_SID"] == ("twilio", "account_sid")


def test_settings_are_frozen() -> None:
    settings = load_settings(environ={})
    with pytest.raises(ValueError, match="frozen"):
        settings.server.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "url",
    [
        "https://api.telegram.org/bot",
        "https://api.telegram.org/bot{token}/test",  # Telegram's test environment
        "http://127.0.0.1:8081/bot",  # a local Bot API server
        "http://telegram.internal/custom/{TOKEN}",
    ],
)
def test_telegram_base_urls_take_every_form_ptb_takes(url: str) -> None:
    settings = load_settings(environ={"SEGUIBOT_TELEGRAM_API_BASE_URL": url})
    assert settings.telegram.api_base_url == url


@pytest.mark.parametrize("url", ["api.telegram.org/bot", "https://x/bot{secret}"])
def test_telegram_base_urls_that_ptb_would_refuse_stop_start_up(url: str) -> None:
    with pytest.raises(ConfigError, match=r"telegram\.api_base_url"):
        load_settings(environ={"SEGUIBOT_TELEGRAM_API_BASE_URL": url})
