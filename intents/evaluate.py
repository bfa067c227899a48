"""Measure a matcher on labelled CSV files.

Intents: `text,intent`. Times: `text,now,tz,expected`, expected an ISO moment or ASK.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from intents.model import NONE, NluResult

ASK = "ASK"


@dataclass(frozen=True, slots=True)
class IntentRow:
    text: str
    intent: str


@dataclass(frozen=True, slots=True)
class TimeRow:
    text: str
    now: datetime
    tz: str
    expected: datetime | None  # None: the bot should ask


@dataclass(frozen=True, slots=True)
class PerIntent:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, slots=True)
class Confusion:
    gold: str
    predicted: str
    count: int
    example: str


@dataclass(frozen=True, slots=True)
class IntentReport:
    total: int
    correct: int
    per_intent: dict[str, PerIntent]
    confusions: tuple[Confusion, ...]

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def macro_f1(self) -> float:
        scores = [p.f1 for p in self.per_intent.values()]
        return sum(scores) / len(scores) if scores else 0.0


@dataclass(frozen=True, slots=True)
class TimeReport:
    total: int
    correct: int
    misses: tuple[tuple[str, str, str], ...]  # (text, expected, got)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def read_intent_rows(path: Path) -> list[IntentRow]:
    """Rows of a `text,intent` CSV file with a header. Raises ValueError on a bad header."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"text", "intent"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: expected the columns text,intent")
        return [IntentRow(row["text"], row["intent"]) for row in reader]


def read_time_rows(path: Path) -> list[TimeRow]:
    """Rows of a `text,now,tz,expected` CSV file; `expected` is an ISO moment or ASK.

    Raises:
        ValueError: bad header or a value that is not ISO 8601.
    """
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"text", "now", "tz", "expected"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: expected the columns text,now,tz,expected")
        return [
            TimeRow(
                text=row["text"],
                now=datetime.fromisoformat(row["now"]),
                tz=row["tz"],
                expected=None
                if row["expected"] == ASK
                else datetime.fromisoformat(row["expected"]),
            )
            for row in reader
        ]


def evaluate_intents(
    rows: Sequence[IntentRow], predict: Callable[[str], str], *, top_confusions: int = 10
) -> IntentReport:
    """Score `predict` (text -> intent id) on labelled rows."""
    predictions = [predict(row.text) for row in rows]
    pairs = Counter((row.intent, p) for row, p in zip(rows, predictions, strict=True))
    labels = sorted({row.intent for row in rows} | set(predictions))
    per_intent = {}
    for label in labels:
        hits = pairs[(label, label)]
        predicted = sum(n for (_, p), n in pairs.items() if p == label)
        support = sum(n for (g, _), n in pairs.items() if g == label)
        precision = hits / predicted if predicted else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_intent[label] = PerIntent(precision, recall, f1, support)
    first_example: dict[tuple[str, str], str] = {}
    for row, p in zip(rows, predictions, strict=True):
        first_example.setdefault((row.intent, p), row.text)
    wrong = [(pair, n) for pair, n in pairs.most_common() if pair[0] != pair[1]]
    confusions = tuple(
        Confusion(gold, predicted, n, first_example[(gold, predicted)])
        for (gold, predicted), n in wrong[:top_confusions]
    )
    correct = sum(pairs[(label, label)] for label in labels)
    return IntentReport(len(rows), correct, per_intent, confusions)


def evaluate_times(
    rows: Iterable[TimeRow], understand: Callable[[str, datetime, str], NluResult]
) -> TimeReport:
    """Right when the resolved moment equals the expected one to the minute, or both ask."""
    total = correct = 0
    misses: list[tuple[str, str, str]] = []
    for row in rows:
        total += 1
        when = understand(row.text, row.now, row.tz).when
        expected = _minute(row.expected)
        got = _minute(when)
        if got == expected:
            correct += 1
        else:
            misses.append((row.text, _show(expected), _show(got)))
    return TimeReport(total, correct, tuple(misses))


def _minute(moment: datetime | None) -> datetime | None:
    return moment.replace(second=0, microsecond=0) if moment is not None else None


def _show(moment: datetime | None) -> str:
    return moment.isoformat(timespec="minutes") if moment is not None else ASK


def format_intent_report(report: IntentReport) -> str:
    """The intent report as plain text, one fact per line."""
    none = report.per_intent.get(NONE, PerIntent(0.0, 0.0, 0.0, 0))
    lines = [
        f"intents: {report.total} messages",
        f"accuracy: {report.accuracy:.4f}",
        f"macro-F1: {report.macro_f1:.4f}",
        f"none: precision {none.precision:.4f} recall {none.recall:.4f}",
        "",
        f"{'intent':<28} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>4}",
    ]
    for label, p in report.per_intent.items():
        lines.append(
            f"{label:<28} {p.precision:>9.3f} {p.recall:>7.3f} {p.f1:>6.3f} {p.support:>4}"
        )
    lines += ["", "top confusions (expected -> predicted, count, example):"]
    lines += [f"  {c.gold} -> {c.predicted}  x{c.count}  {c.example!r}" for c in report.confusions]
    return "\n".join(lines)


def format_time_report(report: TimeReport) -> str:
    """The time report as plain text, misses listed."""
    lines = [
        f"time: {report.total} messages",
        f"time accuracy: {report.accuracy:.4f} ({report.correct}/{report.total})",
    ]
    lines += [f"  miss: {text!r} expected {exp} got {got}" for text, exp, got in report.misses]
    return "\n".join(lines)
