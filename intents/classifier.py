"""A small learned intent model: multinomial Naive Bayes over word and character n-grams.

Trained from the scripts' examples at start-up. Training is counting, so it stays fast for
large catalogues, and scoring touches only the classes a feature was seen in: with
`score_c = Σ_f log(N_fc + α) − m·log(N_c + αV)`, the `log α` part of every unseen pair is the
same for all classes and drops out, leaving a sparse sum plus one length term per class.
Runtime needs nothing beyond the standard library.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

_DIGITS = re.compile(r"\d+")
CHAR_NGRAMS = (3, 5)


def features(text: str) -> set[str]:
    """Word unigrams and bigrams (with text edges), length bucket, character 3- and 5-grams.

    Digits become "0": "a las 5" and "a las 11" should teach the same thing.
    """
    words = _DIGITS.sub("0", text).split()
    # Edges and length: "no" alone is a refusal, "no tengo dinero" an objection.
    bounded = ["^", *words, "$"]
    found = {f"w {word}" for word in words}
    found.update([f"b {a} {b}" for a, b in pairwise(bounded)])
    found.add(f"n {min(len(words), 5)}")
    for word in words:
        padded = f" {word} "
        size = len(padded)
        found.update([padded[i : i + n] for n in CHAR_NGRAMS for i in range(size - n + 1)])
    return found


@dataclass(frozen=True, slots=True)
class NaiveBayes:
    """Multinomial Naive Bayes with uniform class priors.

    Priors are uniform on purpose: how many examples an admin wrote for an intent says
    nothing about how often prospects mean it.

    Attributes:
        labels: class names, in index order.
        postings: feature -> ((class index, log(1 + count / alpha)), ...).
        norms: per class, log(total feature count + alpha * vocabulary size).
        alpha: additive smoothing.
    """

    labels: tuple[str, ...]
    postings: Mapping[str, tuple[tuple[int, float], ...]]
    norms: tuple[float, ...]
    alpha: float

    @classmethod
    def train(
        cls, samples: Iterable[tuple[str, Collection[str]]], *, alpha: float = 0.5
    ) -> NaiveBayes:
        """Count the features of `(label, features(normalised text))` pairs.

        Raises:
            ValueError: no samples, or alpha not positive.
        """
        if alpha <= 0:
            raise ValueError("alpha must be positive")
        index: dict[str, int] = {}
        counts: defaultdict[str, Counter[int]] = defaultdict(Counter)
        totals: Counter[int] = Counter()
        for label, found in samples:
            label_index = index.setdefault(label, len(index))
            totals[label_index] += len(found)
            for feature in found:
                counts[feature][label_index] += 1
        if not index:
            raise ValueError("no training samples")
        vocabulary = len(counts)
        postings = {
            feature: tuple((c, math.log1p(n / alpha)) for c, n in per_class.items())
            for feature, per_class in counts.items()
        }
        norms = tuple(math.log(totals[c] + alpha * vocabulary) for c in range(len(index)))
        return cls(labels=tuple(index), postings=postings, norms=norms, alpha=alpha)

    def without(self, found: Iterable[str], label: int) -> list[float]:
        """How much one example with features `found` adds to its class's score of itself.

        Subtracting this from `scores(found)` gives the leave-one-out score (the small change
        of the class's length term is ignored).
        """
        own = 0.0
        for feature in found:
            for c, weight in self.postings.get(feature, ()):
                if c == label:
                    count = math.expm1(weight) * self.alpha
                    own += weight - math.log1p((count - 1) / self.alpha)
        return [own if c == label else 0.0 for c in range(len(self.labels))]

    def scores(self, found: Iterable[str]) -> tuple[list[float], int]:
        """Per-class log-likelihood up to a shared constant, and how many features were known."""
        sums = [0.0] * len(self.labels)
        postings = [p for p in map(self.postings.get, found) if p is not None]
        for posting in postings:
            for c, weight in posting:
                sums[c] += weight
        known = len(postings)
        return [s - known * norm for s, norm in zip(sums, self.norms, strict=True)], known


def softmax(logits: Sequence[float]) -> list[float]:
    """Probabilities from logits, stable for large values."""
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps)
    return [x / total for x in exps]
