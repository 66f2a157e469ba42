"""A test app: the broker comes from CONVEYOR_BROKER_URL (set by the spawn_worker fixture)."""

from __future__ import annotations

import os
import time

import redis

from conveyor import Conveyor

app = Conveyor("tests.apps.basic")

_client: redis.Redis | None = None


def side_channel() -> redis.Redis:
    """A Redis client for tasks to record what they did (same server as the broker)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["CONVEYOR_BROKER_URL"])
    return _client


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True)
def record(self, key: str, sleep: float = 0.0) -> str:  # type: ignore[no-untyped-def]
    """Count each run of this task id in a hash (to detect duplicates), then sleep."""
    r = side_channel()
    r.hincrby(f"runs:{key}", self.request.id, 1)
    r.rpush(f"started:{key}", f"{self.request.id}:{time.time()}")
    if sleep:
        time.sleep(sleep)
    r.rpush(f"done:{key}", self.request.id)
    return self.request.id


@app.task
def boom(message: str) -> None:
    raise ValueError(message)


@app.task
def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
