"""Test tasks for time limits, revocation and acknowledgement policy (issue 4).

The broker comes from CONVEYOR_BROKER_URL; tasks record what they did in the same
Redis. TEST_REJECT_ON_WORKER_LOST=0 turns task_reject_on_worker_lost off.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import redis

from conveyor import Conveyor, SoftTimeLimitExceeded

app = Conveyor("tests.apps.limits")
if os.environ.get("TEST_REJECT_ON_WORKER_LOST") == "0":
    app.conf.task_reject_on_worker_lost = False
if os.environ.get("TEST_ACKS_ON_FAILURE") == "0":
    app.conf.task_acks_on_failure_or_timeout = False

_client: redis.Redis | None = None


def side() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            os.environ.get("TEST_SIDE_URL") or os.environ["CONVEYOR_BROKER_URL"]
        )
    return _client


@app.task(soft_time_limit=0.3, time_limit=5)
def cleans_up(key: str) -> str:
    # Short sleeps: on the threads pool the limit lands between Python instructions,
    # so a single long C-level sleep would only see it when it returns (documented).
    try:
        for _ in range(60):
            time.sleep(0.05)
    except SoftTimeLimitExceeded:
        side().set(f"cleaned:{key}", 1)
        return "cleaned up"
    return "slept"


@app.task(soft_time_limit=0.3, time_limit=1.0)
def ignores_soft_limit(key: str) -> str:
    """Swallows the soft limit and keeps going: only the hard limit can end it."""
    side().incr(f"runs:{key}")
    try:
        time.sleep(0.6)
    except SoftTimeLimitExceeded:
        side().set(f"soft:{key}", 1)
    deadline = time.time() + 30
    while time.time() < deadline:
        time.sleep(0.02)
    return "never"


@app.task
def long_running(key: str, seconds: float = 30) -> str:
    side().incr(f"runs:{key}")
    side().set(f"started:{key}", 1)
    deadline = time.time() + seconds
    while time.time() < deadline:
        time.sleep(0.02)
    return "finished"


@app.task
def quick(x: int) -> int:
    side().incr("quick-runs")
    return x


@app.task(acks_late=False)
def at_most_once(key: str) -> None:
    side().incr(f"runs:{key}")
    os.kill(os.getpid(), signal.SIGKILL)


@app.task
def dies(key: str) -> None:
    side().incr(f"runs:{key}")
    os.kill(os.getpid(), signal.SIGKILL)


def runs(key: str) -> int:
    value: Any = side().get(f"runs:{key}")
    return int(value or 0)


@app.task
def fails(message: str) -> None:
    raise ValueError(message)


@app.task(ignore_result=True)
def forgettable(key: str) -> str:
    side().incr(f"runs:{key}")
    return "not stored"
