"""A discriminative intent model: multinomial logistic regression over word and character n-grams.

Naive Bayes counts how often a feature appears with an intent; it cannot learn that "caro" matters
more than "el" when both co-occur, and it over-trusts long texts. Logistic regression weighs
features against each other, which is what carries over to wordings nobody wrote in the scripts.

It reads the same features as Naive Bayes (`classifier.features`: words, edge-bounded word
bigrams, a length bucket, in-word character 3- and 5-grams), each weighted by inverse document
frequency, the vector scaled to unit length. Training minimises the class-balanced
cross-entropy with an L2 penalty by L-BFGS, starting from the class centroids, within a budget
of work so that a catalogue of hundreds of intents still builds in about a second. Training is
in float64 and single-threaded, so the same catalogue gives the same weights on every start.
Scoring a message gathers one (float32) weight row per known feature: no per-call overhead
beyond numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse

FloatArray = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]


def _dot(x: Float64Array, y: Float64Array) -> float:
    # Not BLAS: OpenBLAS's threads (numpy and scipy each ship one) stall when another
    # process holds a core, which made start-up jump from 1 s to 3 s on a busy machine.
    return float(np.einsum("i,i->", x, y))


def _axpy(x: Float64Array, y: Float64Array, a: float) -> None:
    """y += a * x, in place."""
    y += a * x


@dataclass(frozen=True, slots=True)
class LinearModel:
    """Weights of a trained multinomial logistic regression.

    Attributes:
        labels: class names, in column order.
        vocabulary: feature -> row of `weights`.
        idf: inverse document frequency per row.
        weights: (features, classes) matrix.
        bias: per class.
    """

    labels: tuple[str, ...]
    vocabulary: Mapping[str, int]
    idf: FloatArray
    weights: FloatArray
    bias: FloatArray

    @classmethod
    def train(
        cls,
        samples: Sequence[tuple[str, Collection[str]]],
        *,
        labels: Sequence[str] | None = None,
        l2: float = 3e-5,
        max_iterations: int = 60,
        min_iterations: int = 20,
        min_df: int = 1,
        budget: float = 6e8,
    ) -> LinearModel | None:
        """Fit on `(label, features of one example)` pairs.

        Args:
            samples: training pairs.
            labels: class order (default: order of first appearance).
            l2: penalty on the squared weights, against the mean (class-balanced) loss.
            max_iterations: L-BFGS iterations at most.
            min_iterations: fewer than this within `budget` is not worth training: None.
            min_df: features in fewer examples than this are left out.
            budget: work the optimiser may spend, in passes over one number: 6e8 is about
                1.5 s on the reference machine. One iteration costs intents x (features of
                all examples + 8 x distinct features), so the default catalogue gets all its
                iterations, 80 intents of 60 examples about 23, and a catalogue of 100 or more
                intents gets None: the matcher does without this expert.

        Raises:
            ValueError: no samples.
        """
        if not samples:
            raise ValueError("no training samples")
        order = list(labels) if labels is not None else list(dict.fromkeys(s[0] for s in samples))
        nnz = sum(len(found) for _, found in samples)
        # Work per iteration, measured: the two sparse products (examples' features x intents)
        # and L-BFGS's vector work (about 8 passes over features x intents). The products alone
        # tell early that a catalogue of hundreds of intents is out of reach.
        if budget < min_iterations * len(order) * nnz:
            return None
        index = {label: i for i, label in enumerate(order)}
        vocabulary: dict[str, int] = {}
        add = vocabulary.setdefault
        columns = [add(feature, len(vocabulary)) for _, found in samples for feature in found]
        n, c = len(samples), len(order)
        lengths = np.fromiter((len(found) for _, found in samples), dtype=np.int64, count=n)
        indices = np.asarray(columns, dtype=np.int64)
        df = np.bincount(indices, minlength=len(vocabulary))
        # A feature of one example only teaches that example; dropping them halves the weights.
        keep = df >= min_df
        remap = np.full(len(vocabulary), -1, dtype=np.int64)
        remap[keep] = np.arange(int(keep.sum()))
        mapped = remap[indices]
        kept = mapped >= 0
        indices = mapped[kept].astype(np.int32)
        lengths = np.bincount(np.repeat(np.arange(n), lengths)[kept], minlength=n)
        vocabulary = {feature: int(remap[i]) for feature, i in vocabulary.items() if keep[i]}
        df = df[keep].astype(np.float64)
        f = len(vocabulary)
        iterations = min(max_iterations, int(budget / (c * (int(indices.size) + 8 * f))))
        if iterations < min_iterations:
            return None
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
        values = idf[indices]
        # Unit length per row: a long message is not surer than a short one.
        squares = np.zeros(n, dtype=np.float64)
        np.add.at(squares, np.repeat(np.arange(n), lengths), values.astype(np.float64) ** 2)
        values /= np.repeat(np.sqrt(np.maximum(squares, 1e-12)).astype(np.float32), lengths)
        # Training runs in float64: in float32 the rounding of numpy's vectorised sums depends
        # on where an array happens to sit in memory, and L-BFGS amplifies it into weights that
        # differ from one start to the next.
        x = sparse.csr_matrix((values, indices, indptr), shape=(n, f), dtype=np.float64)
        y = np.fromiter((index[label] for label, _ in samples), dtype=np.int64, count=n)
        weights, bias = _fit(x, y, c, l2=l2, iterations=iterations)
        return cls(tuple(order), vocabulary, idf, weights, bias)

    def logits(self, found: Collection[str]) -> FloatArray:
        """Class scores of one text's features; the bias alone if none is known."""
        return self.logits_at([i for i in map(self.vocabulary.get, found) if i is not None])

    def logits_at(self, rows: list[int]) -> FloatArray:
        """`logits` of the known features whose rows (`vocabulary`'s values) are `rows`, in
        the order of the text's features."""
        if not rows:
            return self.bias.copy()
        values = self.idf[rows]
        values /= np.float32(math.sqrt(float(np.dot(values, values))))
        result: FloatArray = values @ self.weights[rows] + self.bias
        return result

    def log_probabilities(self, found: Collection[str]) -> FloatArray:
        """Log-softmax of `logits`."""
        return self.log_probabilities_at(
            [i for i in map(self.vocabulary.get, found) if i is not None]
        )

    def log_probabilities_at(self, rows: list[int]) -> FloatArray:
        """Log-softmax of `logits_at`."""
        z = self.logits_at(rows)
        z -= z.max()
        result: FloatArray = z - np.float32(math.log(float(np.exp(z).sum())))
        return result


def _fit(
    x: sparse.csr_matrix,
    y: npt.NDArray[np.int64],
    classes: int,
    *,
    l2: float,
    iterations: int,
) -> tuple[FloatArray, FloatArray]:
    n, f = x.shape
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    # Balanced: every intent weighs the same in total, whatever the number of its examples.
    sample_weight = (1.0 / (classes * counts[y]))[:, None]
    xt = x.T.tocsr()
    onehot = np.zeros((n, classes), dtype=np.float64)
    onehot[np.arange(n), y] = 1.0
    rows = np.arange(n)
    size = f * classes

    def loss_and_grad(theta: Float64Array) -> tuple[float, Float64Array]:
        w = theta[:size].reshape(f, classes)
        z = x @ w + theta[size:]
        z -= z.max(axis=1, keepdims=True)
        exp = np.exp(z)
        sums = exp.sum(axis=1, keepdims=True)
        loss = -float(np.sum(sample_weight[:, 0] * (z[rows, y] - np.log(sums[:, 0]))))
        g = (exp / sums - onehot) * sample_weight
        grad = np.empty_like(theta)
        grad[:size] = (xt @ g + l2 * w).ravel()
        grad[size:] = g.sum(axis=0)
        return loss + 0.5 * l2 * float(_dot(theta[:size], theta[:size])), grad

    # Start from the class centroids (Rocchio), already a fair classifier: fewer iterations.
    centroid = xt @ (onehot * sample_weight)
    start = np.zeros(size + classes, dtype=np.float64)
    start[:size] = (centroid - centroid.mean(axis=1, keepdims=True)).ravel()
    theta = lbfgs(loss_and_grad, start, iterations)
    weights = theta[:size].reshape(f, classes).astype(np.float32)
    return weights, theta[size:].astype(np.float32)


def lbfgs(
    objective: Callable[[Float64Array], tuple[float, Float64Array]],
    start: Float64Array,
    iterations: int,
    *,
    memory: int = 4,
    tolerance: float = 1e-5,
) -> Float64Array:
    """Minimise a smooth convex `objective` (value and gradient) by L-BFGS from `start`.

    scipy's L-BFGS-B spends more time in its bound bookkeeping than the model in its
    gradient at this size; unbounded L-BFGS with a backtracking line search is all it needs.
    Measured on the default catalogue (2026-11-29, same objective, memory and tolerance):
    the matcher builds in 1.3-1.4 s with this, 2.1-2.3 s with `scipy.optimize.minimize`.
    """
    theta = start.copy()
    value, grad = objective(theta)
    history: list[tuple[Float64Array, Float64Array, float]] = []
    for _ in range(iterations):
        direction = -grad
        alphas = []
        for s, t, rho in reversed(history):
            alpha = rho * float(_dot(s, direction))
            _axpy(t, direction, a=-alpha)
            alphas.append(alpha)
        if history:
            s, t, _ = history[-1]
            direction *= float(_dot(s, t)) / float(_dot(t, t))
        for (s, t, rho), alpha in zip(history, reversed(alphas), strict=True):
            beta = rho * float(_dot(t, direction))
            _axpy(s, direction, a=alpha - beta)
        slope = float(_dot(grad, direction))
        if slope >= 0:  # not a descent direction: forget the curvature and follow the gradient
            history.clear()
            direction, slope = -grad, -float(_dot(grad, grad))
        step = 1.0 if history else 1.0 / max(math.sqrt(-slope), 1e-12)
        for _ in range(20):
            candidate = theta.copy()
            _axpy(direction, candidate, a=step)
            new_value, new_grad = objective(candidate)
            if new_value <= value + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break
        s, t = candidate - theta, new_grad - grad
        curvature = float(_dot(s, t))
        if curvature > 1e-10:
            history.append((s, t, 1.0 / curvature))
            if len(history) > memory:
                history.pop(0)
        theta, grad = candidate, new_grad
        done = value - new_value <= tolerance * max(abs(value), 1.0)
        value = new_value
        if done:
            break
    return theta
