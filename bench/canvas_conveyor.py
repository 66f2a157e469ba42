"""Conveyor side of bench/canvas_bench.py: `conveyor -A canvas_conveyor worker` (bench/ on
sys.path)."""

from __future__ import annotations

from conveyor import Conveyor
from counter import redis_url

app = Conveyor("canvasbench", broker=redis_url(), backend=redis_url())


@app.task
def noop(i: int) -> None:
    return None


@app.task
def count(results: list[object]) -> int:
    return len(results)
