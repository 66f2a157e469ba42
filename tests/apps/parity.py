"""The test app of the Celery-parity tests (issue 10): it needs no particular broker.

As in tests/apps/canvas.py, tasks write what they did to files, so the same tests run
on Redis and SQLite; settings come from the environment:

    CONVEYOR_BROKER_URL      the broker (and, with no result backend set, the results)
    PARITY_RECORD_DIR        where tasks write their log lines
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from conveyor import Conveyor, Task

app = Conveyor("tests.apps.parity")


def log(key: str, line: str) -> None:
    # One small O_APPEND write per line: whole lines, even from several processes.
    path = Path(os.environ["PARITY_RECORD_DIR"]) / f"{key}.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_log(directory: Path, key: str) -> list[str]:
    path = directory / f"{key}.log"
    return path.read_text().splitlines() if path.exists() else []


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def ident(value: Any) -> Any:
    return value


@app.task(bind=True)
def tsum(self: Task[..., Any], values: list[int], key: str | None = None) -> int:
    """Sums a list; with ``key``, logs each run (to prove a step runs once)."""
    if key is not None:
        log(key, f"tsum {self.request.id} {values!r}")
    return sum(values)


@app.task
def describe(*args: Any, **kwargs: Any) -> list[Any]:
    """What arrived, with each value's type name: the round trip made visible."""
    return [[type(a).__name__ for a in args], {k: type(v).__name__ for k, v in kwargs.items()}]


@app.task
def give(value: Any) -> Any:
    """Returns its argument (a result that must keep its type)."""
    return value
