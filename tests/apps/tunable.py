"""A test app whose settings come from environment variables, so each worker a test
starts can have its own: a short lease, task_track_started, a short result_expires.

    TEST_LEASE_SECONDS     worker_lease_seconds
    TEST_TRACK_STARTED     task_track_started ("1" to turn it on)
    TEST_RESULT_EXPIRES    result_expires (seconds)
    TEST_PREFETCH_RELEASE  worker_prefetch_release_seconds

The broker comes from CONVEYOR_BROKER_URL, as in tests/apps/basic.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import redis

from conveyor import Conveyor

app = Conveyor("tests.apps.tunable")

_SETTINGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "worker_lease_seconds": ("TEST_LEASE_SECONDS", float),
    "task_track_started": ("TEST_TRACK_STARTED", lambda value: value == "1"),
    "result_expires": ("TEST_RESULT_EXPIRES", float),
    "worker_prefetch_release_seconds": ("TEST_PREFETCH_RELEASE", float),
}
for _name, (_variable, _kind) in _SETTINGS.items():
    if _variable in os.environ:
        app.conf[_name] = _kind(os.environ[_variable])

_client: redis.Redis | None = None


def side_channel() -> redis.Redis:
    """A Redis client for tasks to record what they did (same server as the broker)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["CONVEYOR_BROKER_URL"])
    return _client


class CustomError(Exception):
    """An exception of the app's own, which get() must raise as this very type."""


@app.task(bind=True)
def record(self, key: str, sleep: float = 0.0) -> str:  # type: ignore[no-untyped-def]
    """Count each run per task id in ``runs:<key>``; ``started:<key>`` gets
    ``<id>:<pid>:<time>`` (which process ran it), ``done:<key>`` the id when it ends."""
    r = side_channel()
    r.hincrby(f"runs:{key}", self.request.id, 1)
    r.rpush(f"started:{key}", f"{self.request.id}:{os.getpid()}:{time.time()}")
    if sleep:
        time.sleep(sleep)
    r.rpush(f"done:{key}", self.request.id)
    return str(self.request.id)


@app.task
def gated(key: str, timeout: float = 30.0) -> str:
    """Wait until the test pushes onto ``gate:<key>``, so it can look at a running task."""
    opened = side_channel().blpop([f"gate:{key}"], timeout=timeout)
    return "opened" if opened else "timed out"


@app.task
def fails(message: str) -> None:
    raise CustomError(message)


@app.task
def finished_at(sleep: float) -> float:
    """Sleep, then return the time the task ended (to measure how soon get() wakes)."""
    time.sleep(sleep)
    return time.time()


@app.task
def raises_type_error() -> None:
    """A TypeError from inside the task: a failure, not a bad call to dead-letter."""
    raise TypeError("raised inside the task")
