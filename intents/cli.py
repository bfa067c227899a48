"""Command line: `nlu parse`, `nlu eval` and `intents export`.

The service's `seguibot` command mounts these with `add_subcommands`; `python -m intents` runs
them on their own.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from intents.catalogue import DEFAULT_SCRIPTS, CatalogueError, load_catalogue
from intents.evaluate import (
    evaluate_intents,
    evaluate_times,
    format_intent_report,
    format_time_report,
    read_intent_rows,
    read_time_rows,
)
from intents.matcher import Matcher

DEFAULT_REGION = "MX"
DEFAULT_TZ = "America/Mexico_City"


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `nlu parse|eval` and `intents export`; each leaf sets `func(args) -> exit code`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--scripts", type=Path, default=DEFAULT_SCRIPTS, help="scripts YAML (default: packaged)"
    )
    common.add_argument(
        "--region", default=DEFAULT_REGION, help="phone region without country code (MX)"
    )
    common.add_argument("--tz", default=DEFAULT_TZ, help=f"lead time zone ({DEFAULT_TZ})")

    nlu = subparsers.add_parser("nlu", help="understand messages").add_subparsers(
        dest="nlu_command", required=True
    )
    parse = nlu.add_parser(
        "parse", parents=[common], help="JSON Lines {text, now?, tz?} on stdin -> results on stdout"
    )
    parse.set_defaults(func=run_parse)
    evaluate = nlu.add_parser("eval", parents=[common], help="score on labelled CSV files")
    evaluate.add_argument("--intents", type=Path, required=True, help="CSV text,intent")
    evaluate.add_argument("--datetime", type=Path, help="CSV text,now,tz,expected")
    evaluate.set_defaults(func=run_eval)

    intents = subparsers.add_parser("intents", help="the intent catalogue").add_subparsers(
        dest="intents_command", required=True
    )
    export = intents.add_parser("export", parents=[common], help="CSV text,intent of every example")
    export.set_defaults(func=run_export)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m intents`."""
    parser = argparse.ArgumentParser(prog="intents", description=__doc__)
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader left early (`| head`): stop quietly, as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def run_parse(args: argparse.Namespace) -> int:
    """One output line per input line, in order; a bad line gets an `error` field."""
    matcher = _matcher(args)
    if matcher is None:
        return 2
    try:
        default_zone = ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        print(f"error: unknown time zone {args.tz!r}", file=sys.stderr)
        return 2
    out: TextIO = sys.stdout
    for number, line in enumerate(sys.stdin, start=1):
        out.write(json.dumps(_parse_line(matcher, line, number, default_zone), ensure_ascii=False))
        out.write("\n")
    out.flush()
    return 0


def _parse_line(
    matcher: Matcher, line: str, number: int, default_zone: ZoneInfo
) -> dict[str, object]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        return {"line": number, "text": None, "error": f"invalid JSON: {exc.msg}"}
    if not isinstance(item, dict):
        return {"line": number, "text": None, "error": "expected a JSON object"}
    text = item.get("text")
    if not isinstance(text, str):
        return {"line": number, "text": None, "error": "'text' must be a string"}
    try:
        zone = ZoneInfo(item["tz"]) if item.get("tz") is not None else default_zone
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return {"line": number, "text": text, "error": f"unknown time zone {item.get('tz')!r}"}
    raw_now = item.get("now")
    if raw_now is None:
        now = datetime.now(zone)
    else:
        try:
            now = datetime.fromisoformat(raw_now)
        except (TypeError, ValueError):
            return {"line": number, "text": text, "error": f"'now' is not ISO 8601: {raw_now!r}"}
        if now.tzinfo is None:
            return {"line": number, "text": text, "error": "'now' needs a UTC offset"}
    result = matcher.match(text, now, zone)
    when = result.when
    return {
        "text": text,
        "intent": result.intent,
        "confidence": result.confidence,
        "datetime": when.isoformat(timespec="seconds") if when else None,
        "needs_clarification": result.needs_clarification,
    }


def run_export(args: argparse.Namespace) -> int:
    """Every training example as CSV `text,intent`, header first."""
    try:
        catalogue = load_catalogue(args.scripts)
    except CatalogueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["text", "intent"])
    for example in catalogue.all_examples():
        writer.writerow([example.text, example.intent])
    sys.stdout.flush()
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Print intent metrics and, with --datetime, time-resolution accuracy."""
    matcher = _matcher(args)
    if matcher is None:
        return 2
    try:
        intent_rows = read_intent_rows(args.intents)
        time_rows = read_time_rows(args.datetime) if args.datetime else []
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    now = datetime.now(ZoneInfo(args.tz))
    report = evaluate_intents(intent_rows, lambda text: matcher.match(text, now, args.tz).intent)
    print(format_intent_report(report))
    if args.datetime:
        print()
        print(format_time_report(evaluate_times(time_rows, matcher.match)))
    return 0


def _matcher(args: argparse.Namespace) -> Matcher | None:
    try:
        return Matcher.from_catalogue(load_catalogue(args.scripts), default_region=args.region)
    except CatalogueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
