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

from ..canvas import chain
from ..result import AsyncResult
from .corpus import HOLDOUT, NEGATIVE, POSITIVE
from .tasks import FLAKY_RATE, batch_score, call_webhook, make_thumbnail, send_email, summarize

__all__ = ["WORKLOADS", "Workload"]

Send = Callable[[random.Random, int], AsyncResult[Any]]


@dataclass(frozen=True, slots=True)
class Workload:
    kind: str  # its row in the summary
    what: str  # what it does, for the introduction
    weight: int  # its share of the tasks, relative to the others
    send: Send  # send unit number ``n``; return the result to wait for
    expected_failures: str | None = None  # why some of its tasks fail on purpose
    expected_retries: str | None = None  # why some of its tasks are retried


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


_EVENTS = ("order.paid", "order.shipped", "invoice.created", "customer.updated")


def _webhook(rng: random.Random, n: int) -> AsyncResult[Any]:
    url = f"https://hooks.example.com/customer/{rng.randint(1, 500)}"
    return call_webhook.delay(url, {"id": n, "type": rng.choice(_EVENTS)})


def _report(rng: random.Random, n: int) -> AsyncResult[Any]:
    # A chain's result is its last step's: the report, which is what the runner waits for.
    texts = rng.sample(REVIEWS, rng.randint(10, 40))
    return chain(batch_score.s(texts), summarize.s()).delay()


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
    Workload(
        "webhook",
        f"webhook calls of which {FLAKY_RATE:.0%} of attempts drop the connection "
        "and are retried (autoretry_for, retry_backoff)",
        weight=2,
        send=_webhook,
        expected_retries=(
            f"{FLAKY_RATE:.0%} of the webhook attempts raise ConnectionError; "
            "autoretry_for sends the task again after a backoff that doubles each time "
            "(retry_backoff=0.05: up to 50 ms, then 100 ms, ...), and max_retries=5 is "
            "enough for every one to get through"
        ),
    ),
    Workload(
        "chain",
        "chains that score a batch, then summarize it in a report "
        "(batch_score.s(texts) | summarize.s())",
        weight=1,
        send=_report,
    ),
)
