"""The command-line formats, run in-process."""

from __future__ import annotations

import argparse
import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine

from intents import load_catalogue
from intents.cli import add_subcommands, main


def run(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: str = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_parse_one_line_out_per_line_in_in_order(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        {"text": "sí, mañana a las 5", "now": "2026-03-04T10:00:00-06:00"},
        "this is not json",
        {"text": 42},
        ["a", "list"],
        {"text": "el viernes a las 10", "now": "2026-03-04T10:00:00-05:00", "tz": "America/Bogota"},
        {"text": "llámame el viernes", "now": "2026-03-04T10:00:00-06:00"},
        {"text": "hola", "now": "ayer"},
        {"text": "hola", "now": "2026-03-04T10:00:00"},
        {"text": "hola", "tz": "Mars/Olympus"},
        {"text": ""},
    ]
    stdin = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    code, out, _ = run(["nlu", "parse"], capsys, monkeypatch, stdin)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == len(lines)

    assert rows[0] == {
        "text": "sí, mañana a las 5",
        "intent": "schedule.book",
        "confidence": rows[0]["confidence"],
        "datetime": "2026-03-05T17:00:00-06:00",
        "needs_clarification": False,
    }
    assert 0.0 <= rows[0]["confidence"] <= 1.0
    assert "error" in rows[1]
    assert "error" in rows[2]
    assert "error" in rows[3]
    assert rows[4]["datetime"] == "2026-03-06T10:00:00-05:00"
    assert rows[5]["intent"] == "schedule.book"
    assert rows[5]["datetime"] is None
    assert rows[5]["needs_clarification"] is True
    assert "ISO 8601" in rows[6]["error"]
    assert "offset" in rows[7]["error"]
    assert "time zone" in rows[8]["error"]
    assert rows[9]["intent"] == "none"
    assert rows[9]["needs_clarification"] is False


def test_parse_without_now_uses_the_current_time(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 16:00 UTC is 10:00 in Mexico City: "a las 5" is still ahead today.
    with time_machine.travel(datetime(2026, 3, 4, 16, 0, tzinfo=UTC), tick=False):
        code, out, _ = run(["nlu", "parse"], capsys, monkeypatch, '{"text": "márcame a las 5"}\n')
    assert code == 0
    assert json.loads(out)["datetime"] == "2026-03-04T17:00:00-06:00"


def test_export_is_csv_of_every_example(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(["intents", "export"], capsys, monkeypatch)
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["text", "intent"]
    catalogue = load_catalogue()
    assert rows[1:] == [[e.text, e.intent] for e in catalogue.all_examples()]


def test_eval_prints_the_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    intents_csv = tmp_path / "intents.csv"
    intents_csv.write_text(
        "text,intent\n"
        '"oye, ¿a cuánto sale la mensualidad?",info.pricing\n'
        "ya no me escriban por favor,optout\n"
        "cuál es la capital de francia,none\n"
        '"hola, buenas",greeting\n',
        encoding="utf-8",
    )
    times_csv = tmp_path / "times.csv"
    times_csv.write_text(
        "text,now,tz,expected\n"
        "mañana a las 5,2026-03-04T10:00:00-06:00,America/Mexico_City,2026-03-05T17:00:00-06:00\n"
        "el viernes,2026-03-04T10:00:00-06:00,America/Mexico_City,ASK\n"
        "a las 9,2026-03-04T10:00:00-06:00,America/Mexico_City,2026-03-04T09:00:00-06:00\n",
        encoding="utf-8",
    )
    argv = ["nlu", "eval", "--intents", str(intents_csv), "--datetime", str(times_csv)]
    code, out, _ = run(argv, capsys, monkeypatch)
    assert code == 0
    for heading in (
        "accuracy:",
        "macro-F1:",
        "none: precision",
        "top confusions",
        "time accuracy:",
    ):
        assert heading in out
    assert "info.pricing" in out  # per-intent table
    assert "time accuracy: 0.6667 (2/3)" in out
    assert "miss: 'a las 9' expected 2026-03-04T09:00-06:00 got 2026-03-05T09:00-06:00" in out


def test_broken_scripts_stop_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scripts = tmp_path / "bad.yaml"
    scripts.write_text("intents:\n  greeting: [\n", encoding="utf-8")
    code, _, err = run(["intents", "export", "--scripts", str(scripts)], capsys, monkeypatch)
    assert code == 2
    assert f"{scripts}:3:" in err


def test_subcommands_mount_on_another_parser() -> None:
    parser = argparse.ArgumentParser(prog="seguibot")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["nlu", "parse", "--region", "CO", "--tz", "America/Bogota"])
    assert callable(args.func)
    assert (args.region, args.tz) == ("CO", "America/Bogota")
    assert args.scripts.name == "es.yaml"
    assert callable(parser.parse_args(["intents", "export"]).func)
    assert callable(parser.parse_args(["nlu", "eval", "--intents", "x.csv"]).func)
