"""Celery side: `celery -A celery_tasks worker ...` (needs bench/ on sys.path)."""

from __future__ import annotations

from celery import Celery

from counter import broker_url, bump, redis_url

app = Celery("benchapp", broker=broker_url("celery"), backend=redis_url())
app.conf.broker_connection_retry_on_startup = True  # silences a startup warning only


@app.task
def noop(i: int) -> None:
    bump()
