"""The conveyor app and its tasks: score review batches, retrain the model.

The model is the small naive-Bayes one that ``conveyor demo`` uses (pure Python,
trained on a built-in corpus when imported, no downloads). Swap in your own: the tasks
are the only place that knows it.

No broker is configured here, as in a fresh project: the worker and the API use
``$CONVEYOR_BROKER_URL`` when it is set, else the embedded SQLite file.
"""

from __future__ import annotations

from typing import Any

from conveyor import Celery
from conveyor.demo import sentiment

app = Celery("sentiment")


@app.task
def batch_score(texts: list[str]) -> list[dict[str, Any]]:
    """``{"label": "positive" | "negative", "score": P(positive)}`` for each text."""
    return sentiment.score(texts)


@app.task
def retrain() -> dict[str, Any]:
    """Retrain the model (in the worker process that runs this) and report its accuracy."""
    return sentiment.retrain()
