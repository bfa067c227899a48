"""TF-IDF + logistic regression baseline next to the matcher, on the same examples and dev set.

    .venv/bin/python -m bench.nlu_baseline [--intents FILE] [--scripts FILE]

The baseline learns from exactly what `intents export` prints (char 2-5 + word 1-2 TF-IDF,
scikit-learn's LogisticRegression). It is shown with scikit-learn's default C and with the best
C of a small grid scored on the evaluation file itself, which flatters the baseline, so the
comparison cannot favour the matcher. scikit-learn is a dev dependency: never used at runtime.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import logging
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline, make_union

from intents.catalogue import DEFAULT_SCRIPTS, load_catalogue
from intents.cli import main as intents_main
from intents.evaluate import read_intent_rows
from intents.matcher import Matcher
from tests.paths import NLU_DEV

DEV = NLU_DEV / "intents_dev.csv"


def exported_examples(scripts: Path) -> tuple[list[str], list[str]]:
    """Texts and intents as `intents export` prints them."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = intents_main(["intents", "export", "--scripts", str(scripts)])
    if code:
        raise SystemExit(code)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    return [row["text"] for row in rows], [row["intent"] for row in rows]


def baseline(c: float) -> object:
    features = make_union(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2)),
    )
    return make_pipeline(features, LogisticRegression(C=c, max_iter=5000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--intents", type=Path, default=DEV)
    parser.add_argument("--scripts", type=Path, default=DEFAULT_SCRIPTS)
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    texts, labels = exported_examples(args.scripts)
    rows = read_intent_rows(args.intents)
    gold = [row.intent for row in rows]
    print(f"training examples: {len(texts)}; evaluation rows: {len(rows)} ({args.intents})")

    results: list[tuple[str, float, float]] = []
    for c in (1.0, 10.0, 100.0):
        model = baseline(c).fit(texts, labels)  # type: ignore[attr-defined]
        predicted = model.predict([row.text for row in rows])
        results.append(
            (
                f"TF-IDF+LR C={c:g}",
                accuracy_score(gold, predicted),
                f1_score(gold, predicted, average="macro"),
            )
        )

    started = time.perf_counter()
    matcher = Matcher.from_catalogue(load_catalogue(args.scripts))
    now = datetime.now(ZoneInfo("America/Mexico_City"))
    predicted = [matcher.match(row.text, now, "America/Mexico_City").intent for row in rows]
    elapsed = time.perf_counter() - started
    ours = (
        "Seguibot matcher",
        accuracy_score(gold, predicted),
        f1_score(gold, predicted, average="macro"),
    )

    print(f"{'model':<22} {'accuracy':>8} {'macro-F1':>8}")
    for name, accuracy, macro_f1 in [*results, ours]:
        print(f"{name:<22} {accuracy:>8.4f} {macro_f1:>8.4f}")
    default_c = results[0][1]
    best = max(accuracy for _, accuracy, _ in results)
    print(f"matcher - baseline (default C): {100 * (ours[1] - default_c):+.1f} points")
    print(f"matcher - baseline (best C):    {100 * (ours[1] - best):+.1f} points")
    print(f"(matcher start-up + {len(rows)} messages: {elapsed:.2f} s)")


if __name__ == "__main__":
    main()
