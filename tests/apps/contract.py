"""The test app of the worker-level contract tests: it needs no particular broker.

Tasks record what they did in files (not in Redis), so the same tests run on every
broker. Settings come from the environment, so each worker a test starts has its own:

    CONVEYOR_BROKER_URL      the broker (and, with no result backend set, the results)
    CONTRACT_RECORD_DIR      where ``record`` writes its log lines
    CONTRACT_LEASE_SECONDS   worker_lease_seconds
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from conveyor import Conveyor

app = Conveyor("tests.apps.contract")
if "CONTRACT_LEASE_SECONDS" in os.environ:
    app.conf.worker_lease_seconds = float(os.environ["CONTRACT_LEASE_SECONDS"])


def _log(key: str, line: str) -> None:
    # One small O_APPEND write per line: whole lines, even from several processes.
    path = Path(os.environ["CONTRACT_RECORD_DIR"]) / f"{key}.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_log(directory: Path, key: str) -> list[list[str]]:
    """The lines ``record`` wrote for ``key``, split into words."""
    path = directory / f"{key}.log"
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line]


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True)
def record(self: Any, key: str, sleep: float = 0.0) -> str:
    """Log ``start <id> <pid> <time>``, sleep, then log ``done <id>``."""
    task_id = str(self.request.id)
    _log(key, f"start {task_id} {os.getpid()} {time.time():.6f}")
    if sleep:
        time.sleep(sleep)
    _log(key, f"done {task_id}")
    return task_id


@app.task
def started_at() -> float:
    """The time this task started (to measure how late an ETA ran)."""
    return time.time()
