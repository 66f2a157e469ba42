"""The demo's workloads: each is one kind of work, how often it comes, how to send one.

A workload sends one unit of work and returns the result to watch. That is all the
runner needs, so a task that retries, a chain (watch its last result) or a group is one
more entry in :data:`WORKLOADS`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..result import AsyncResult
from .corpus import HOLDOUT, NEGATIVE, POSITIVE
from .tasks import batch_score, make_thumbnail, send_email

__all__ = ["WORKLOADS", "Workload"]

Send = Callable[[random.Random, int], AsyncResult[Any]]


@dataclass(frozen=True, slots=True)
class Workload:
    kind: str  # its row in the summary
    what: str  # what it does, for the introduction
    weight: int  # its share of the tasks, relative to the others
    send: Send  # send unit number ``n``; return the result to wait for
    expected_failures: str | None = None  # why some of its tasks fail on purpose


# What a review site receives: the labelled sentences, and sentences the model never saw.
REVIEWS: tuple[str, ...] = (*POSITIVE, *NEGATIVE, *(text for text, _ in HOLDOUT))


def _score_reviews(rng: random.Random, n: int) -> AsyncResult[Any]:
    return batch_score.delay(rng.sample(REVIEWS, rng.randint(10, 40)))


_UPLOADS = ((160, 120), (200, 150), (240, 180), (256, 256))


def _thumbnail(rng: random.Random, n: int) -> AsyncResult[Any]:
    width, height = rng.choice(_UPLOADS)
    return make_thumbnail.delay(n, width, height)


BOUNCE_RATE = 0.02


def _email(rng: random.Random, n: int) -> AsyncResult[Any]:
    domain = "bounce.invalid" if rng.random() < BOUNCE_RATE else "example.com"
    template = rng.choice(("welcome", "receipt", "reset"))
    context = {
        "name": f"user {n}",
        "account": f"acct-{n}",
        "order": f"#{100000 + n}",
        "link": f"https://example.com/reset/{n}",
    }
    return send_email.delay(f"user{n}@{domain}", template, context)


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "sentiment",
        "review batches of 10-40 scored by a naive-Bayes model",
        weight=4,
        send=_score_reviews,
    ),
    Workload(
        "thumbnail",
        "image uploads shrunk to 48 px",
        weight=3,
        send=_thumbnail,
    ),
    Workload(
        "email",
        "emails rendered and sent (a 5-30 ms SMTP wait)",
        weight=3,
        send=_email,
        expected_failures=(
            f"{BOUNCE_RATE:.0%} of the emails go to an undeliverable address and fail, "
            "as real bounces do"
        ),
    ),
)
