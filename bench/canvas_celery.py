"""Celery side of bench/canvas_bench.py: `celery -A canvas_celery worker` (bench/ on sys.path)."""

from __future__ import annotations

from celery import Celery

from counter import redis_url

app = Celery("canvasbench", broker=redis_url(), backend=redis_url())
app.conf.broker_connection_retry_on_startup = True  # silences a startup warning only


@app.task
def noop(i: int) -> None:
    return None


@app.task
def count(results: list[object]) -> int:
    return len(results)
