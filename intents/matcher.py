"""The intent matcher: what does this message want, how sure are we, and when?

Each clause of a message (split at punctuation and "pero") and the message as a whole are
scored by three experts trained from the scripts:

* a Naive Bayes model over word and character n-grams, which generalises to wordings the
  scripts never used;
* rapidfuzz: similarity of the text to the nearest example of each intent Naive Bayes finds
  plausible, which settles short and formulaic messages ("baja", "ok", "stop por favor");
* a logistic regression over the same n-grams (`intents.linear`), which weighs features against
  each other instead of counting them, and so carries over best to text nobody tuned for.

Naive Bayes and rapidfuzz log-scores are added and divided by a temperature fitted at start-up
on leave-one-out predictions of the examples themselves; the logistic regression's
log-probabilities are added to them with fixed weights (chosen by cross-validation on the
packaged scripts and our own held-out sets). Two counts of words then adjust the sum: words no
example uses add to `none`, and words that other intents' examples use but an intent's own never
do count against that intent, so that small talk borrowing an intent's words ("¿a cómo está el
euro?") leans to `none`. A softmax turns the sum into probabilities. The message's probabilities
are the mean of the whole message's and of its clauses' average.

When confident clauses want different things, the priority rule of `nlu/intents.md` picks the
one to act on first (optout > handoff > cancel > reschedule > book > buy > objections/info >
yes/no > thanks > greeting); between equals, the clause the message leads with, where "X, pero Y"
leads with Y. Below the `none` threshold the answer is `none`; two intents within the ambiguity
margin set `ambiguous`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from rapidfuzz import fuzz, process

from intents.catalogue import Catalogue
from intents.classifier import NaiveBayes, Table, features, softmax
from intents.entities import find_emails, find_phones, find_position, says_bought
from intents.linear import LinearModel
from intents.model import NONE, NluResult
from intents.names import find_name
from intents.normalize import Normalizer, default_normalizer
from intents.timeexpr import extract_time, to_zone

# Highest first; intents that are not listed (a business's own) rank with objections and info.
PRIORITY: tuple[tuple[str, ...], ...] = (
    ("optout",),
    ("handoff.",),
    ("schedule.cancel",),
    ("schedule.reschedule",),
    ("schedule.book",),
    ("buy.",),
    ("objection.", "info."),
    ("affirm", "deny"),
    ("thanks",),
    ("greeting",),
    (NONE,),
)
_MIDDLE_RANK = len(PRIORITY) - 1 - PRIORITY.index(("objection.", "info."))


def priority(intent: str) -> int:
    """Rank of `intent` under the priority rule: higher is acted on first."""
    for position, prefixes in enumerate(PRIORITY):
        if any(intent == p or (p.endswith(".") and intent.startswith(p)) for p in prefixes):
            return len(PRIORITY) - 1 - position
    return _MIDDLE_RANK


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Decision knobs.

    The ensemble's weights were chosen on 5-fold cross-validation of the packaged examples and
    our own held-out sets, checked once against the dev set; at 0.75 and 0.75 the confidence is
    calibrated on held-out examples (expected calibration error about 0.02).

    Attributes:
        none: below this confidence the message is `none`.
        ambiguity: two intents closer than this are `ambiguous` (the bot asks which).
        clause: a clause must be this sure to take part in the priority rule.
        fuzzy_weight: weight of rapidfuzz similarity (0-1) against Naive Bayes log-odds.
        fuzzy_max_chars: longer (normalised) texts get no rapidfuzz similarity.
        fuzzy_candidates: rapidfuzz compares with the examples of this many top intents.
        length_power: Naive Bayes scores are divided by (known features) ** length_power.
        unknown_weight: added to `none`'s final logit times the share of words never seen in
            the examples: off-topic messages are made of words the scripts never use.
        foreign_weight: taken from each intent's final logit (`none`'s excepted) times the
            share of words that other intents' examples use and its own never do: small talk
            that borrows an intent's words ("¿a cómo está el euro?") brings its topic's words.
        foreign_min_words: that share is taken of at least this many words, so that one odd
            word in a two-word answer does not outweigh the rest.
        none_bias: added to `none`'s final logit. Once the foreign-word share weighs against
            an intent, `none` needs no head start: 0 was chosen between -0.25 and 1 on
            cross-validation of the examples and the own held-out sets (every choice within
            a few rows of the others).
        smoothing: Naive Bayes additive smoothing; small, because examples are short.
        expert_weight: weight of the Naive Bayes + rapidfuzz logits (divided by their own
            temperature, fitted at start-up) in the ensemble.
        linear_weight: weight of the logistic regression's log-probabilities in the ensemble.
        linear_l2: the logistic regression's L2 penalty.
        linear_iterations: its L-BFGS iterations at most (fewer on big catalogues).
        linear_budget: work its training may spend (see `LinearModel.train`); a catalogue
            that would need more for its minimum of iterations (about 100 intents or more) is
            matched without it, by Naive Bayes and rapidfuzz alone, to keep start-up short.
    """

    none: float = 0.3
    ambiguity: float = 0.10
    clause: float = 0.95
    fuzzy_weight: float = 5.0
    length_power: float = 0.5
    unknown_weight: float = 1.0
    foreign_weight: float = 2.0
    foreign_min_words: int = 3
    none_bias: float = 0.0
    smoothing: float = 0.05
    fuzzy_max_chars: int = 60
    fuzzy_candidates: int = 6
    expert_weight: float = 0.75
    linear_weight: float = 0.75
    linear_l2: float = 3e-5
    linear_iterations: int = 60
    linear_budget: float = 6e8


@dataclass(frozen=True, slots=True)
class Scored:
    """Probabilities over the catalogue's intents for one piece of text."""

    labels: tuple[str, ...]
    probs: tuple[float, ...]

    def best(self) -> tuple[str, float]:
        i = max(range(len(self.probs)), key=self.probs.__getitem__)
        return self.labels[i], self.probs[i]

    def ranked(self) -> list[tuple[str, float]]:
        return sorted(zip(self.labels, self.probs, strict=True), key=lambda lp: -lp[1])


# The code whose output `Training` records: another version of any of them trains afresh.
_TRAINING_CODE = ("normalize.py", "classifier.py", "matcher.py", "linear.py")


@functools.cache
def _code_digest() -> str:
    digest = hashlib.sha256()
    for name in _TRAINING_CODE:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()


def training_fingerprint(normalizer: Normalizer, thresholds: Thresholds) -> str:
    """What a `Training` depends on besides the catalogue: this code, its knobs and the
    normaliser's tables."""
    digest = hashlib.sha256(_code_digest().encode())
    digest.update(repr(thresholds).encode())
    digest.update(repr(sorted(normalizer.words.items())).encode())
    digest.update(repr(sorted(normalizer.emojis.items())).encode())
    return digest.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Training:
    """The two results of training that another process can take instead of recomputing:
    the catalogue's examples normalised (in `all_examples()` order, empty ones included) and
    the fitted temperature, about half of a big catalogue's training. Everything else is
    computed from them as training would, so a matcher built with them answers exactly as the
    one that recorded them (JSON keeps a float exactly). Plain data, read with `json`: a
    version's record is never code.
    """

    fingerprint: str
    normalised: tuple[str, ...]
    temperature: float

    def to_json(self) -> str:
        return json.dumps(
            {
                "fingerprint": self.fingerprint,
                "normalised": self.normalised,
                "temperature": self.temperature,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | None) -> Training | None:
        """The record in `text`, or None when there is none or it is not one."""
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        fingerprint, normalised = data.get("fingerprint"), data.get("normalised")
        temperature = data.get("temperature")
        if (
            not isinstance(fingerprint, str)
            or not isinstance(normalised, list)
            or not all(isinstance(text, str) for text in normalised)
            or not isinstance(temperature, float)
            or not math.isfinite(temperature)
            or temperature <= 0
        ):
            return None
        return cls(fingerprint, tuple(normalised), temperature)


@dataclass(frozen=True, slots=True)
class Matcher:
    """Understands messages against one catalogue. Build with `Matcher.from_catalogue`."""

    catalogue: Catalogue
    normalizer: Normalizer
    model: NaiveBayes
    linear: LinearModel | None
    examples: tuple[str, ...]
    example_features: tuple[tuple[str, ...], ...]
    example_labels: tuple[int, ...]
    by_label: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...]  # (texts, example ids) per intent
    none_index: int | None
    temperature: float
    default_region: str = "MX"
    thresholds: Thresholds = field(default_factory=Thresholds)
    training: Training | None = None  # what another process may reuse (`from_catalogue`)
    # Naive Bayes's weights by feature row, the logistic regression's features in its own rows
    # first: one look-up per feature serves both (None for a catalogue too big to hold it).
    table: Table | None = None

    @classmethod
    def from_catalogue(
        cls,
        catalogue: Catalogue,
        *,
        default_region: str = "MX",
        thresholds: Thresholds | None = None,
        normalizer: Normalizer | None = None,
        training: Training | None = None,
    ) -> Matcher:
        """Train on the catalogue's examples and calibrate the confidence.

        Args:
            catalogue: intents and examples to learn from.
            default_region: ISO country for phone numbers written without a country code.
            thresholds: decision knobs; defaults suit the packaged Spanish scripts.
            normalizer: text normaliser; the packaged Spanish one by default.
            training: a `Training` recorded by this same code on this catalogue (another
                process's `matcher.training`): its normalised examples and temperature are
                taken instead of computed. One of other code, or of another catalogue, is
                ignored.
        """
        normalizer = normalizer or default_normalizer()
        thresholds = thresholds or Thresholds()
        examples = catalogue.all_examples()
        fingerprint = training_fingerprint(normalizer, thresholds)
        reuse = (
            training
            if training is not None
            and training.fingerprint == fingerprint
            and len(training.normalised) == len(examples)
            else None
        )
        normalised = reuse.normalised if reuse else tuple(normalizer(e.text) for e in examples)
        pairs = [(e.intent, text) for e, text in zip(examples, normalised, strict=True) if text]
        found = [features(text) for _, text in pairs]
        samples = [(intent, f) for (intent, _), f in zip(pairs, found, strict=True)]
        model = NaiveBayes.train(samples, alpha=thresholds.smoothing)
        linear = LinearModel.train(
            samples,
            labels=model.labels,
            l2=thresholds.linear_l2,
            max_iterations=thresholds.linear_iterations,
            budget=thresholds.linear_budget,
        )
        vocabulary = linear.vocabulary if linear is not None else {}
        table = model.table(sorted(vocabulary, key=vocabulary.__getitem__))
        index = {label: i for i, label in enumerate(model.labels)}
        labels = [index[intent] for intent, _ in pairs]
        grouped: list[tuple[list[str], list[int]]] = [([], []) for _ in model.labels]
        for i, ((_, text), label) in enumerate(zip(pairs, labels, strict=True)):
            grouped[label][0].append(text)
            grouped[label][1].append(i)
        by_label = tuple((tuple(texts), tuple(ids)) for texts, ids in grouped)
        uncalibrated = cls(
            catalogue=catalogue,
            normalizer=normalizer,
            model=model,
            linear=linear,
            examples=tuple(text for _, text in pairs),
            example_features=tuple(found),
            example_labels=tuple(labels),
            by_label=by_label,
            none_index=index.get(NONE),
            temperature=1.0,
            default_region=default_region,
            thresholds=thresholds,
            table=table,
        )
        temperature = reuse.temperature if reuse else uncalibrated._fit_temperature()
        return replace(
            uncalibrated,
            temperature=temperature,
            training=Training(fingerprint, normalised, temperature),
        )

    def match(self, text: str, now: datetime, tz: str | ZoneInfo) -> NluResult:
        """Understand one message received at `now` from a lead in time zone `tz`.

        Never raises on message content: empty, huge or binary text gives a `none` result.

        Raises:
            zoneinfo.ZoneInfoNotFoundError: `tz` is not an IANA time-zone name.
        """
        zone = to_zone(tz)
        text = text if isinstance(text, str) else str(text)
        clauses = self.normalizer.clauses(text)
        intent, confidence, candidates, ambiguous = self._decide(clauses)
        normalised = " ".join(clauses)
        return NluResult(
            intent=intent,
            confidence=round(confidence, 4),
            time=extract_time(normalised, now, zone),
            phones=find_phones(text, self.default_region),
            emails=find_emails(text),
            candidates=tuple((label, round(p, 4)) for label, p in candidates),
            ambiguous=ambiguous,
            position=find_position(normalised),
            name=find_name(text),
            bought=says_bought(normalised),
            normalised=normalised,
        )

    def score(self, normalised: str) -> Scored:
        """Intent probabilities for one normalised clause or message."""
        found = features(normalised)
        rows = self.table.rows(found) if self.table is not None else None
        experts = self._expert_logits(normalised, found, rows)
        if self.linear is None:
            logits = [x / self.temperature for x in experts]
        else:
            linear = (
                self.linear.log_probabilities(found)
                if rows is None
                else self.linear.log_probabilities_at(self._linear_rows(rows))
            )
            a = self.thresholds.expert_weight / self.temperature
            b = self.thresholds.linear_weight
            logits = [a * x + b * float(y) for x, y in zip(experts, linear, strict=True)]
        unseen, foreign = self._word_evidence(normalised)
        if self.thresholds.foreign_weight:
            for c, share in enumerate(foreign):
                if c != self.none_index:
                    logits[c] -= self.thresholds.foreign_weight * share
        if self.none_index is not None:
            logits[self.none_index] += (
                self.thresholds.none_bias + self.thresholds.unknown_weight * unseen
            )
        return Scored(self.model.labels, tuple(softmax(logits)))

    def _word_evidence(self, normalised: str) -> tuple[float, list[float]]:
        """Which words (longer than two letters, not numbers) the examples do not use.

        Returns the share of words that no example uses, and per intent the share of words (of
        at least `foreign_min_words`) that other intents' examples use but none of its own:
        "¿a cómo está el euro?" asks a price with a word no pricing example has, "el domingo
        a las 4 juega el Madrid" names a time with words no booking uses. An intent's words
        about something else read as small talk, which the second share lets the scores see.
        """
        words = [w for w in normalised.split() if len(w) > 2 and not w.isdigit()]
        if not words:
            return 0.0, [0.0] * len(self.model.labels)
        postings = [self.model.postings.get(f"w {w}") for w in words]
        known = [p for p in postings if p is not None]
        missing = [len(known)] * len(self.model.labels)
        for posting in known:
            for c, _ in posting:
                missing[c] -= 1
        # One odd word in a two-word answer ("ni en sueños") is not a topic of its own.
        counted = max(len(words), self.thresholds.foreign_min_words)
        return (len(words) - len(known)) / len(words), [n / counted for n in missing]

    def _linear_rows(self, rows: list[int]) -> list[int]:
        """Of the table's `rows`, the logistic regression's (the same numbers in its own)."""
        assert self.linear is not None and self.table is not None
        own = len(self.linear.vocabulary)
        return rows if len(self.table.index) == own else [row for row in rows if row < own]

    def _expert_logits(
        self,
        normalised: str,
        found: tuple[str, ...],
        rows: list[int] | None = None,
        *,
        leave_out: int | None = None,
    ) -> list[float]:
        """Naive Bayes log-likelihoods plus weighted nearest-example similarity per intent.

        `rows` are the table's rows of `found`, when the caller has them already.
        `leave_out` scores example number `leave_out` as if it were not in the catalogue.
        """
        if self.table is None:
            logits, known = self.model.scores(found)
        else:
            rows = self.table.rows(found) if rows is None else rows
            logits, known = self.table.scores(rows), len(rows)
        if leave_out is not None:
            own = self.model.without(found, self.example_labels[leave_out])
            logits = [x - o for x, o in zip(logits, own, strict=True)]
        # Naive Bayes grows surer with every feature it multiplies in; damp that by length.
        scale = max(known, 1) ** self.thresholds.length_power
        logits = [x / scale for x in logits]
        similarity = [0.0] * len(logits)
        # Whole-string similarity only means something between texts of similar length, and
        # examples are short: a long message is left to Naive Bayes (and saves the time).
        if len(normalised) <= self.thresholds.fuzzy_max_chars:
            # rapidfuzz re-ranks the intents Naive Bayes finds plausible; comparing with every
            # example of every intent would cost time and add nothing.
            shortlist = sorted(range(len(logits)), key=logits.__getitem__, reverse=True)
            for c in shortlist[: self.thresholds.fuzzy_candidates]:
                texts, ids = self.by_label[c]
                for _, score, i in process.extract(normalised, texts, scorer=fuzz.ratio, limit=2):
                    if ids[i] != leave_out:
                        similarity[c] = score / 100.0
                        break
        weight = self.thresholds.fuzzy_weight
        return [x + weight * s for x, s in zip(logits, similarity, strict=True)]

    def _decide(self, clauses: Sequence[str]) -> tuple[str, float, list[tuple[str, float]], bool]:
        if not clauses:
            return NONE, 1.0, [], False
        whole = self.score(" ".join(clauses))
        parts = [self.score(clause) for clause in clauses] if len(clauses) > 1 else []
        if parts:
            # The whole message sees context; its clauses are not drowned by a long neighbour.
            mean = [sum(p.probs[i] for p in parts) / len(parts) for i in range(len(whole.probs))]
            whole = Scored(
                whole.labels, tuple((w + m) / 2 for w, m in zip(whole.probs, mean, strict=True))
            )
        ranked = whole.ranked()
        intent, confidence = ranked[0]
        chosen = self._by_priority(clauses, parts, intent) if parts else None
        if chosen is not None:
            intent, confidence = chosen
        others = [(label, p) for label, p in ranked if label not in (intent, NONE)]
        if intent == NONE:
            return NONE, confidence, [(NONE, confidence), *others[:2]], False
        if confidence < self.thresholds.none:
            # No intent is likely enough: `none`, as sure as the best guess is unsure.
            return (
                NONE,
                1.0 - confidence,
                [(NONE, 1.0 - confidence), (intent, confidence), *others[:1]],
                False,
            )
        candidates = [(intent, confidence), *others[:2]]
        # Ask only between two readings of substance ("¿el precio o las formas de pago?"):
        # a yes, a no, thanks or a greeting next to one is not a question worth a turn.
        ambiguous = (
            chosen is None
            and len(candidates) > 1
            and confidence - candidates[1][1] < self.thresholds.ambiguity
            and priority(intent) >= _MIDDLE_RANK
            and priority(candidates[1][0]) >= _MIDDLE_RANK
        )
        return intent, confidence, candidates, ambiguous

    def _by_priority(
        self, clauses: Sequence[str], parts: Sequence[Scored], whole_intent: str
    ) -> tuple[str, float] | None:
        """The intent to act on first when confident clauses want different things.

        A clause whose intent outranks the whole message's wins; the highest rank first, then
        the clause the message leads with. Two confident clauses of the whole message's own
        rank ("es caro y no tengo tiempo") are settled the same way: the first one leads,
        except that "X, pero Y" leads with Y. A clause conceded before "pero" ("sí lo quiero,
        pero hasta marzo") takes no part: it is granted, not asked for. Nor do the social
        intents (yes/no, thanks, greeting): "ok, gracias" and "listo, gracias" close a
        conversation and "no, gracias" refuses, as the scripts teach the whole message; a
        clause's "ok" does not make them an answer.
        """
        conceded = {i for i, clause in enumerate(clauses) if i and clause.startswith("pero ")}
        confident = [
            (priority(label), clause.startswith("pero "), -position, label, p)
            for position, (clause, (label, p)) in enumerate(
                zip(clauses, (part.best() for part in parts), strict=True)
            )
            if priority(label) >= _MIDDLE_RANK
            and p >= self.thresholds.clause
            and position + 1 not in conceded
        ]
        if not confident:
            return None
        rank, _, _, label, p = max(confident)
        floor = priority(whole_intent)
        if rank > floor:
            return label, p
        peers = {other for r, _, _, other, _ in confident if r == floor}
        if rank == floor and len(peers) > 1:
            return label, p
        return None

    def _fit_temperature(self, sample_size: int = 400) -> float:
        """Temperature minimising the log-loss of leave-one-out predictions on the examples.

        At most `sample_size` examples take part, so start-up stays short for big catalogues.
        """
        indices = list(range(len(self.examples)))
        if len(indices) > sample_size:
            indices = random.Random(0).sample(indices, sample_size)  # noqa: S311 - sampling, not secrets
        held_out: list[tuple[list[float], float]] = []
        for i in indices:
            logits = self._expert_logits(self.examples[i], self.example_features[i], leave_out=i)
            top = max(logits)
            # Intents far below the best add nothing to the softmax: keep the 50 largest.
            gaps = sorted((x - top for x in logits), reverse=True)[:50]
            held_out.append((gaps, logits[self.example_labels[i]] - top))

        def log_loss(temperature: float) -> float:
            return sum(
                math.log(sum(math.exp(gap / temperature) for gap in gaps)) - gold / temperature
                for gaps, gold in held_out
            )

        return min((0.25 * 1.2**k for k in range(30)), key=log_loss)

    def leave_one_out(self) -> list[tuple[str, str, str]]:
        """Each example scored as if it were not in the catalogue, by Naive Bayes and rapidfuzz
        (the logistic regression is not retrained per example): (text, intent, predicted).

        How well the examples teach each other; what the script editor shows as accuracy.
        """
        labels = self.model.labels
        found: list[tuple[str, str, str]] = []
        for i, text in enumerate(self.examples):
            logits = self._expert_logits(text, self.example_features[i], leave_out=i)
            best = max(range(len(logits)), key=logits.__getitem__)
            found.append((text, labels[self.example_labels[i]], labels[best]))
        return found
