"""A test app for the dashboard: quick tasks, a failure that a file can cure, a sleeper
to revoke, and one beat entry. The broker comes from CONVEYOR_BROKER_URL."""

from __future__ import annotations

import os
import time

from conveyor import Conveyor

app = Conveyor("tests.apps.board")
app.conf.beat_schedule = {
    "tidy-every-minute": {"task": "tests.apps.board.add", "schedule": 60.0, "args": (1, 2)},
}
if os.environ.get("BOARD_MASK_ARGS"):
    app.conf.dashboard_mask_args = ["password"]


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task
def needs_file(path: str) -> str:
    """Fails until ``path`` exists (the test creates it, then retries from the UI)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no {path} yet")
    return "found it"


@app.task
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task
def login(user: str, password: str) -> str:
    return user


@app.task
def tsum(values: list[int]) -> int:
    return sum(values)
