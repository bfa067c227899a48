"""A small learned intent model: multinomial Naive Bayes over word and character n-grams.

Trained from the scripts' examples at start-up. Training is counting, so it stays fast for
large catalogues, and scoring touches only the classes a feature was seen in: with
`score_c = Σ_f log(N_fc + α) − m·log(N_c + αV)`, the `log α` part of every unseen pair is the
same for all classes and drops out, leaving a sparse sum plus one length term per class.
A catalogue of ordinary size is also scored from a dense `Table` of the same weights.
"""

from __future__ import annotations

import functools
import math
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, pairwise
from operator import itemgetter

import numpy as np
import numpy.typing as npt

_DIGITS = re.compile(r"\d+")
_CLASS = itemgetter(0)
CHAR_NGRAMS = (3, 5)
# A dense table up to 4 M weights (32 MB): the packaged scripts need 0.6 M, a catalogue of
# 100 intents about 4 M; bigger ones are scored from the postings.
MAX_TABLE_CELLS = 1 << 22


def features(text: str) -> tuple[str, ...]:
    """Word unigrams and bigrams (with text edges), length bucket, character 3- and 5-grams:
    each once, in the order the text gives them.

    Digits become "0": "a las 5" and "a las 11" should teach the same thing.

    The order is the text's, not a set's: the models add their features' weights in this
    order, and a set of strings iterates in the order of their hashes, which Python seeds
    anew in every process. In a set, the same message scored a probability 0.0827 in one
    process and 0.0828 in another (one text of 6 649), and two workers could have answered
    a message on a threshold differently.
    """
    words = _DIGITS.sub("0", text).split()
    # Edges and length: "no" alone is a refusal, "no tengo dinero" an objection.
    bounded = ["^", *words, "$"]
    found = [f"w {word}" for word in words]
    found += [f"b {a} {b}" for a, b in pairwise(bounded)]
    found.append(f"n {min(len(words), 5)}")
    for word in words:
        found += _char_ngrams(word)
    return tuple(dict.fromkeys(found))  # each once, first come first (a dict keeps that order)


@functools.lru_cache(maxsize=65536)
def _char_ngrams(word: str) -> tuple[str, ...]:
    """A word's character n-grams, in the order `features` adds them. A catalogue repeats its
    words: 82 000 words of 500 x 30 examples are 1 000 distinct ones, so training builds each
    word's n-grams once."""
    padded = f" {word} "
    size = len(padded)
    return tuple(padded[i : i + n] for n in CHAR_NGRAMS for i in range(size - n + 1))


@dataclass(frozen=True, slots=True)
class NaiveBayes:
    """Multinomial Naive Bayes with uniform class priors.

    Priors are uniform on purpose: how many examples an admin wrote for an intent says
    nothing about how often prospects mean it.

    Attributes:
        labels: class names, in index order.
        postings: feature -> ((class index, log(1 + count / alpha)), ...), in class order.
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
        by_class: list[list[Collection[str]]] = []
        totals: list[int] = []
        for label, found in samples:
            label_index = index.setdefault(label, len(index))
            if label_index == len(by_class):
                by_class.append([])
                totals.append(0)
            by_class[label_index].append(found)
            totals[label_index] += len(found)
        if not index:
            raise ValueError("no training samples")
        # Counted class by class (Counter counts in C), each count's weight computed once. A
        # posting lists its classes in index order; nothing depends on that order (a class's
        # score adds its features' weights in the order of the features scored).
        counted: dict[str, list[tuple[int, int]]] = {}
        for label_index, founds in enumerate(by_class):
            for feature, n in Counter(chain.from_iterable(founds)).items():
                per_class = counted.get(feature)
                if per_class is None:
                    counted[feature] = [(label_index, n)]
                else:
                    per_class.append((label_index, n))
        weights = {n: math.log1p(n / alpha) for n in {n for p in counted.values() for _, n in p}}
        vocabulary = len(counted)
        # Built feature by feature, so that each posting's pairs lie together in memory:
        # scoring walks them, and scattered pairs made it four times slower.
        postings = {
            feature: tuple([(c, weights[n]) for c, n in per_class])
            for feature, per_class in counted.items()
        }
        norms = tuple(math.log(totals[c] + alpha * vocabulary) for c in range(len(index)))
        return cls(labels=tuple(index), postings=postings, norms=norms, alpha=alpha)

    def table(self, order: Iterable[str] = ()) -> Table | None:
        """The weights as a dense `Table`, the features of `order` in its first rows (in that
        order), then the rest; None when it would exceed `MAX_TABLE_CELLS`."""
        classes = len(self.labels)
        if len(self.postings) * classes > MAX_TABLE_CELLS:
            return None
        index = {feature: row for row, feature in enumerate(order)}
        for feature in self.postings:
            index.setdefault(feature, len(index))
        weights = np.zeros((len(index), classes), dtype=np.float64)
        for feature, posting in self.postings.items():
            row = index[feature]
            for c, weight in posting:
                weights[row, c] = weight
        return Table(index, weights, np.asarray(self.norms, dtype=np.float64))

    def without(self, found: Iterable[str], label: int) -> list[float]:
        """How much one example with features `found` adds to its class's score of itself.

        Subtracting this from `scores(found)` gives the leave-one-out score (the small change
        of the class's length term is ignored).
        """
        own = 0.0
        for feature in found:
            posting = self.postings.get(feature)
            if posting is None:
                continue
            # Postings are in class order: find the label's pair without walking them all
            # (a common character n-gram is in hundreds of classes).
            at = bisect_left(posting, label, key=_CLASS)
            if at < len(posting) and posting[at][0] == label:
                weight = posting[at][1]
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


@dataclass(frozen=True, slots=True)
class Table:
    """Naive Bayes's weights as a (features x classes) matrix: one row per feature, zeros for
    the classes that never saw it.

    Scoring gathers one contiguous row per known feature instead of walking each feature's
    postings of (class, weight) pairs, and adds the rows in the order of the features, as
    `NaiveBayes.scores` does: the same floats. With the logistic regression reading the same
    rows, the two models' part of a scoring takes 24-27 µs instead of 44-52 when the caches are
    warm, and 71-80 instead of 117-129 when they are cold, as they are in a serving process
    after each message's database work.

    Attributes:
        index: feature -> row.
        weights: one row per feature, one column per class.
        norms: `NaiveBayes.norms`.
    """

    index: Mapping[str, int]
    weights: npt.NDArray[np.float64]
    norms: npt.NDArray[np.float64]

    def rows(self, found: Iterable[str]) -> list[int]:
        """The rows of the known features of `found`, in its order."""
        return [row for row in map(self.index.get, found) if row is not None]

    def scores(self, rows: list[int]) -> list[float]:
        """`NaiveBayes.scores` of the features in `rows` (their number is the known count)."""
        if not rows:
            return [0.0] * len(self.norms)
        sums = self.weights[rows].sum(axis=0)
        result: list[float] = (sums - len(rows) * self.norms).tolist()
        return result


def softmax(logits: Sequence[float]) -> list[float]:
    """Probabilities from logits, stable for large values."""
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps)
    return [x / total for x in exps]
