"""A test app whose listener records every typed event (conveyor/events.py) in the
side Redis (TEST_SIDE_URL), as its dict form plus the process that emitted it."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis

from conveyor import Conveyor, Task

app = Conveyor("tests.apps.events")

_client: redis.Redis | None = None


def side() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            os.environ.get("TEST_SIDE_URL") or os.environ["CONVEYOR_BROKER_URL"]
        )
    return _client


class Recorder:
    """Listens to every event; the key ``events`` holds one JSON line per event."""

    def _record(self, event: Any) -> None:
        data = event.to_dict()
        data["emitted_by"] = os.getpid()
        side().rpush("events", json.dumps(data, default=str))

    on_task_sent = _record
    on_task_received = _record
    on_task_started = _record
    on_task_succeeded = _record
    on_task_failed = _record
    on_task_retried = _record
    on_task_revoked = _record
    on_task_rejected = _record
    on_worker_online = _record
    on_worker_heartbeat = _record
    on_worker_offline = _record


app.events.subscribe(Recorder())


@app.task
def add(x: int, y: int = 0) -> int:
    return x + y


@app.task
def breaks(message: str) -> None:
    raise KeyError(message)


@app.task(bind=True, max_retries=2)
def retry_once(self: Task[..., Any], key: str) -> str:
    if self.request.retries < 1:
        self.retry(countdown=0.1, exc=ValueError(f"first try of {key}"))
    return "done"


@app.task(time_limit=1)
def overstays(seconds: float) -> None:
    time.sleep(seconds)


@app.task
def naps(seconds: float) -> None:
    time.sleep(seconds)
