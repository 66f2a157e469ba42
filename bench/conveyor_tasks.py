"""Conveyor side: `conveyor -A conveyor_tasks worker ...` (needs bench/ on sys.path)."""

from __future__ import annotations

from conveyor import Conveyor
from counter import broker_url, bump, redis_url

app = Conveyor("benchapp", broker=broker_url("conveyor"), backend=redis_url())


@app.task
def noop(i: int) -> None:
    bump()
