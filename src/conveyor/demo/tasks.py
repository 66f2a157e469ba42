"""The demo's tasks: the kinds of work people put on a queue.

Each does real work of its kind, small enough that a few thousand run in seconds on two
cores: model scoring (CPU, pure Python), an image resize (CPU), an email send and a
webhook call (waiting on a network round trip, simulated by a sleep; the webhook fails
now and then and is retried), a report made from scores (the second step of a chain),
and a heartbeat that beat sends every half second.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
import zlib
from pathlib import Path
from string import Template
from typing import Any

from ..task import Task
from . import sentiment
from .app import CPU_QUEUE, IO_QUEUE, app

__all__ = [
    "HEARTBEAT_LOG",
    "Undeliverable",
    "batch_score",
    "call_webhook",
    "heartbeat_report",
    "make_thumbnail",
    "read_heartbeats",
    "retrain",
    "send_email",
    "summarize",
]


@app.task
def batch_score(texts: list[str]) -> list[dict[str, Any]]:
    """Score a batch of reviews with the sentiment model (one result per text)."""
    return sentiment.score(texts)


@app.task
def summarize(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """Turn a batch's scores into a small report: the chain ``batch_score.s(texts) |
    summarize.s()`` gets the scores of its first step as this step's argument."""
    values = [float(s["score"]) for s in scores]
    positive = sum(1 for s in scores if s["label"] == "positive")
    return {
        "reviews": len(scores),
        "positive": positive,
        "negative": len(scores) - positive,
        "mean_score": round(sum(values) / len(values), 3) if values else None,
        "lowest_score": min(values, default=None),
    }


@app.task
def retrain() -> dict[str, Any]:
    """Retrain the sentiment model in this worker process; report its accuracy."""
    return sentiment.retrain()


@app.task
def make_thumbnail(image_id: int, width: int, height: int, size: int = 48) -> dict[str, Any]:
    """Shrink a greyscale image to fit ``size`` x ``size``, averaging each block of pixels.

    The image is generated from its id (a real app would read the upload from storage).
    """
    pixels = random.Random(image_id).randbytes(width * height)
    factor = max(1, -(-max(width, height) // size))  # ceiling division
    area = factor * factor
    out = bytearray()
    for top in range(0, height - factor + 1, factor):
        band = [pixels[(top + dy) * width : (top + dy + 1) * width] for dy in range(factor)]
        columns = list(map(sum, zip(*band, strict=True)))
        out.extend(
            sum(columns[left : left + factor]) // area
            for left in range(0, width - factor + 1, factor)
        )
    return {
        "image_id": image_id,
        "width": width // factor,
        "height": height // factor,
        "bytes": len(out),
        "crc32": zlib.crc32(out),
    }


class Undeliverable(Exception):
    """The mail server refused the recipient (a permanent failure: no retry helps)."""


TEMPLATES = {
    "welcome": "Hi $name,\n\nWelcome aboard! Your account $account is ready.\n",
    "receipt": "Hi $name,\n\nThanks for order $order. It ships tomorrow.\n",
    "reset": "Hi $name,\n\nUse this link to reset your password: $link\n",
}


@app.task
def send_email(to: str, template: str, context: dict[str, str]) -> dict[str, Any]:
    """Render a template and hand the message to the mail server.

    The SMTP round trip is a 5-30 ms sleep; addresses at ``.invalid`` domains bounce.
    """
    body = Template(TEMPLATES[template]).substitute(context)
    time.sleep(random.uniform(0.005, 0.03))
    if to.endswith(".invalid"):
        raise Undeliverable(f"550 5.1.1 <{to}>: recipient address rejected")
    return {"to": to, "message_id": f"<{uuid.uuid4().hex}@demo.conveyor>", "bytes": len(body)}


FLAKY_RATE = 0.3  # of the attempts to call a webhook: the connection drops


def _connection_drops(url: str, attempt: int) -> bool:
    """Whether attempt ``attempt`` (0 = the first) to call ``url`` fails: a fixed 30% of
    (url, attempt) pairs, so a run can be repeated and a retry may get through."""
    return zlib.crc32(f"{url}#{attempt}".encode()) % 1000 < FLAKY_RATE * 1000


@app.task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=0.05, max_retries=5)
def call_webhook(self: Task[..., Any], url: str, event: dict[str, Any]) -> dict[str, Any]:
    """POST an event to a customer's webhook; ``autoretry_for`` retries a dropped
    connection, waiting twice as long each time from 50 ms (``retry_backoff=0.05``).

    The round trip is a 5-20 ms sleep; about 30% of the attempts drop the connection.
    The last attempt ``max_retries`` allows always gets through, so none fails.
    """
    attempt = self.request.retries
    body = json.dumps(event).encode()
    time.sleep(random.uniform(0.005, 0.02))
    if attempt < (self.max_retries or 0) and _connection_drops(url, attempt):
        raise ConnectionError(f"POST {url}: connection reset by peer")
    return {"url": url, "status": 200, "bytes": len(body), "attempts": attempt + 1}


HEARTBEAT_LOG = "CONVEYOR_DEMO_HEARTBEATS"  # where heartbeat_report appends, if set


@app.task
def heartbeat_report() -> dict[str, Any]:
    """What beat sends every half second (``beat_schedule`` in app.py): note the time
    and how many messages wait in the demo's queues, as a monitoring job would.

    The demo's worker is told where to append the record (a JSON line) in the
    ``CONVEYOR_DEMO_HEARTBEATS`` environment variable; the demo counts the lines.
    """
    waiting = {
        q.name: q.ready + q.scheduled
        for q in app.broker.queues()
        if q.name in (CPU_QUEUE, IO_QUEUE)
    }
    record = {"at": time.time(), "waiting": waiting}
    path = os.environ.get(HEARTBEAT_LOG)
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
    return record


def read_heartbeats(path: Path) -> list[dict[str, Any]]:
    """The records heartbeat_report appended to ``path`` (none if it never ran)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]
