"""5-fold cross-validation of the matcher on its own examples, beside the TF-IDF + LR baseline.

    .venv/bin/python -m bench.nlu_crossval [--folds 5] [--scripts FILE] [--no-baseline]
                                           [--also-in OLD_SCRIPTS]

Every intent's examples are dealt round-robin into the folds after a fixed-seed shuffle, so each
fold holds about a fifth of every intent. The matcher is built from the other folds' examples
(a catalogue of its own, replies and scripts untouched) and scores the held-out fold; the
baseline of `bench.nlu_baseline` (scikit-learn's C=1 and C=10) learns from the same folds. It
measures how well the examples teach each other, the one yardstick that no held-out set's rows
can leak into: use it to choose, and the held-out sets to check. New examples change what is
held out, so `--also-in` scores, beside all examples, only those an older scripts file also has:
the figure to compare with that file's own cross-validation.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.nlu_baseline import baseline
from intents.catalogue import DEFAULT_SCRIPTS, Catalogue, Example, IntentScripts, load_catalogue
from intents.evaluate import IntentRow, evaluate_intents
from intents.matcher import Matcher
from intents.model import NONE

ZONE = ZoneInfo("America/Mexico_City")


def folds(catalogue: Catalogue, count: int, seed: int = 0) -> list[list[Example]]:
    """The examples dealt into `count` folds, stratified by intent."""
    rng = random.Random(seed)
    dealt: list[list[Example]] = [[] for _ in range(count)]
    for intent in catalogue.intents:
        examples = list(catalogue.entries[intent].examples)
        rng.shuffle(examples)
        for i, example in enumerate(examples):
            dealt[i % count].append(example)
    return dealt


def without(catalogue: Catalogue, held_out: list[Example]) -> Catalogue:
    """`catalogue` less the `held_out` examples."""
    out = {(e.intent, e.line, e.text) for e in held_out}
    entries = {
        intent: IntentScripts(
            label=scripts.label,
            examples=tuple(e for e in scripts.examples if (e.intent, e.line, e.text) not in out),
            replies=scripts.replies,
        )
        for intent, scripts in catalogue.entries.items()
    }
    return Catalogue(catalogue.path, catalogue.intents, entries, catalogue.scripts)


def _replay(answers: Iterator[str]) -> Callable[[str], str]:
    """A `predict` that hands out predictions made earlier, in row order."""
    return lambda _text: next(answers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--scripts", type=Path, default=DEFAULT_SCRIPTS)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--also-in", type=Path, help="also score only the examples of this file")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    catalogue = load_catalogue(args.scripts)
    dealt = folds(catalogue, args.folds)
    now = datetime.now(ZONE)
    gold: list[IntentRow] = []
    predicted: dict[str, list[str]] = defaultdict(list)
    started = time.perf_counter()
    for k, held_out in enumerate(dealt):
        train = without(catalogue, held_out)
        matcher = Matcher.from_catalogue(train)
        gold += [IntentRow(e.text, e.intent) for e in held_out]
        predicted["matcher"] += [matcher.match(e.text, now, ZONE).intent for e in held_out]
        if not args.no_baseline:
            texts = [e.text for e in train.all_examples()]
            labels = [e.intent for e in train.all_examples()]
            for c in (1.0, 10.0):
                model = baseline(c).fit(texts, labels)  # type: ignore[attr-defined]
                predicted[f"TF-IDF+LR C={c:g}"] += list(model.predict([e.text for e in held_out]))
        print(f"fold {k + 1}/{args.folds} done ({time.perf_counter() - started:.0f} s)")

    subsets = [("all", [True] * len(gold))]
    if args.also_in:
        older = {(e.intent, e.text) for e in load_catalogue(args.also_in).all_examples()}
        subsets.append((args.also_in.name, [(row.intent, row.text) in older for row in gold]))
    for subset, chosen in subsets:
        rows = [row for row, keep in zip(gold, chosen, strict=True) if keep]
        print(f"{subset}: {len(rows)} examples, {args.folds} folds")
        print(f"{'model':<20} {'accuracy':>8} {'macro-F1':>8} {'none P':>7} {'none R':>7}")
        for name, guesses in predicted.items():
            answers = iter(g for g, keep in zip(guesses, chosen, strict=True) if keep)
            report = evaluate_intents(rows, _replay(answers))
            none = report.per_intent[NONE]
            print(
                f"{name:<20} {report.accuracy:>8.4f} {report.macro_f1:>8.4f}"
                f" {none.precision:>7.3f} {none.recall:>7.3f}"
            )


if __name__ == "__main__":
    main()
