"""The demo's tasks: the kinds of work people put on a queue.

Each does real work of its kind, small enough that a few thousand run in seconds on two
cores: model scoring (CPU, pure Python), an image resize (CPU), an email send (waiting
on a network round trip, simulated by a sleep).
"""

from __future__ import annotations

import random
import time
import uuid
import zlib
from string import Template
from typing import Any

from . import sentiment
from .app import app

__all__ = ["Undeliverable", "batch_score", "make_thumbnail", "retrain", "send_email"]


@app.task
def batch_score(texts: list[str]) -> list[dict[str, Any]]:
    """Score a batch of reviews with the sentiment model (one result per text)."""
    return sentiment.score(texts)


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
