"""A small sentiment model: naive Bayes on words, trained on a built-in corpus.

Pure Python and no downloads, so ``conveyor demo`` and ``examples/sentiment`` run on a
fresh machine. It is trained when this module is imported (a few milliseconds) and again
by :func:`retrain`. It is good enough to look real on short reviews (more than nine in
ten right on held-out sentences it never saw), and small enough to read in one sitting.

The method is binarized multinomial naive Bayes with Laplace smoothing (Wang & Manning,
"Baselines and Bigrams", 2012, found it a strong baseline for short text). A word after
"not", "never", "no" or an "n't" is counted as a different word until the next
punctuation mark ("not good" teaches ``not_good``, not ``good``).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .corpus import HOLDOUT, TRAIN

__all__ = ["Model", "current", "retrain", "score", "tokenize", "train"]

_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[.,!?;:]")
_NEGATIONS = frozenset({"not", "no", "never", "nothing", "nobody", "hardly", "without"})
_NEGATION_SPAN = 3  # words a negation colours; punctuation ends it sooner


def tokenize(text: str) -> list[str]:
    """Lower-case words, with ``not_`` before the words a negation governs."""
    tokens: list[str] = []
    negated = 0
    for token in _TOKEN.findall(text.lower()):
        if not token[0].isalpha():
            negated = 0
            continue
        if token in _NEGATIONS or token.endswith("n't"):
            tokens.append(token)
            negated = _NEGATION_SPAN
            continue
        tokens.append(f"not_{token}" if negated else token)
        negated = max(0, negated - 1)
    return tokens


@dataclass(frozen=True, slots=True)
class Model:
    """Log-odds of "positive" for the prior and for each word seen in training."""

    prior: float
    weights: dict[str, float]
    examples: int

    def log_odds(self, text: str) -> float:
        weights = self.weights
        return self.prior + sum(weights.get(token, 0.0) for token in set(tokenize(text)))

    def probability(self, text: str) -> float:
        """P(positive | text)."""
        odds = self.log_odds(text)
        # exp() of a large positive number overflows: use the symmetric form.
        if odds >= 0:
            return 1.0 / (1.0 + math.exp(-odds))
        z = math.exp(odds)
        return z / (1.0 + z)

    def score(self, text: str) -> dict[str, Any]:
        p = self.probability(text)
        return {"label": "positive" if p >= 0.5 else "negative", "score": round(p, 4)}

    def accuracy(self, labelled: Iterable[tuple[str, bool]]) -> float:
        pairs = list(labelled)
        right = sum((self.probability(text) >= 0.5) == positive for text, positive in pairs)
        return right / len(pairs) if pairs else 0.0


def train(labelled: Sequence[tuple[str, bool]], alpha: float = 1.0) -> Model:
    """Fit naive Bayes on ``(text, is_positive)`` pairs."""
    counts = {True: Counter[str](), False: Counter[str]()}
    documents = Counter[bool]()
    for text, positive in labelled:
        counts[positive].update(set(tokenize(text)))  # binarized: a word counts once
        documents[positive] += 1
    if not documents[True] or not documents[False]:
        raise ValueError("training needs at least one positive and one negative example")
    vocabulary = counts[True].keys() | counts[False].keys()
    totals = {label: sum(c.values()) + alpha * len(vocabulary) for label, c in counts.items()}
    weights = {
        word: math.log((counts[True][word] + alpha) / totals[True])
        - math.log((counts[False][word] + alpha) / totals[False])
        for word in vocabulary
    }
    prior = math.log(documents[True] / documents[False])
    return Model(prior=prior, weights=weights, examples=len(labelled))


_lock = threading.Lock()
_model = train(TRAIN)


def current() -> Model:
    return _model


def score(texts: Sequence[str]) -> list[dict[str, Any]]:
    """Score each text: ``{"label": "positive" | "negative", "score": P(positive)}``."""
    model = _model
    return [model.score(text) for text in texts]


def retrain() -> dict[str, Any]:
    """Train a fresh model on the corpus, swap it in, and report how good it is.

    In a real service the labelled data would come from a database and the model would
    be written where every worker process can load it; here each process retrains its
    own copy from the same corpus, so they all agree.
    """
    global _model
    started = time.perf_counter()
    model = train(TRAIN)
    seconds = time.perf_counter() - started
    with _lock:
        _model = model
    return {
        "examples": model.examples,
        "vocabulary": len(model.weights),
        "train_accuracy": round(model.accuracy(TRAIN), 4),
        "holdout_accuracy": round(model.accuracy(HOLDOUT), 4),
        "seconds": round(seconds, 4),
    }
