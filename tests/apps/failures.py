"""Test tasks that fail, retry, report progress and kill their worker (issue 4).

The broker comes from CONVEYOR_BROKER_URL; tasks record what they did in the same
Redis (the suite's private server). TEST_MAX_DELIVERIES sets task_max_deliveries.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import redis

from conveyor import Conveyor, Task
from conveyor.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    task_revoked,
    task_success,
    worker_ready,
    worker_shutdown,
)

app = Conveyor("tests.apps.failures")
if "TEST_MAX_DELIVERIES" in os.environ:
    app.conf.task_max_deliveries = int(os.environ["TEST_MAX_DELIVERIES"])

_client: redis.Redis | None = None


def side() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            os.environ.get("TEST_SIDE_URL") or os.environ["CONVEYOR_BROKER_URL"]
        )
    return _client


class Flaky(Exception):
    pass


@app.task(bind=True, autoretry_for=(Flaky,), retry_backoff=0.2, max_retries=4)
def flaky(self: Task[..., Any], key: str, failures: int) -> int:
    """Fails ``failures`` times, then succeeds; each attempt's time is recorded."""
    r = side()
    r.rpush(f"attempts:{key}", time.time())
    if self.request.retries < failures:
        raise Flaky(f"attempt {self.request.retries}")
    return self.request.retries


@app.task(bind=True, max_retries=2)
def retry_without_raise(self: Task[..., Any], key: str) -> str:
    side().incr(f"runs:{key}")
    if self.request.retries < 1:
        self.retry(countdown=0.1)  # no `raise`: retry() raises by itself
        side().incr(f"after-retry:{key}")  # never reached
    return "done"


@app.task(bind=True, max_retries=1, default_retry_delay=0.1)
def always_retries(self: Task[..., Any], with_exc: bool) -> None:
    if with_exc:
        self.retry(exc=KeyError("last"))
    self.retry()


@app.task(bind=True)
def progress(self: Task[..., Any], key: str) -> str:
    self.update_state(state="PROGRESS", meta={"done": 1, "total": 2})
    side().set(f"progress-set:{key}", 1)
    deadline = time.time() + 10
    while not side().exists(f"release:{key}") and time.time() < deadline:
        time.sleep(0.02)
    return "finished"


@app.task(bind=True)
def poison(self: Task[..., Any], key: str) -> None:
    side().incr(f"poison-runs:{key}")
    os.kill(os.getpid(), signal.SIGKILL)


@app.task
def quick(x: int) -> int:
    return x


@task_prerun.connect
def _prerun(sender: Any, task_id: str, task: Any, args: Any, kwargs: Any, **_: Any) -> None:
    side().rpush("signals", f"prerun:{task.name}:{task_id}")


@task_postrun.connect
def _postrun(sender: Any, task_id: str, state: str, retval: Any, **_: Any) -> None:
    side().rpush("signals", f"postrun:{state}:{task_id}:{retval}")


@task_success.connect
def _success(sender: Any, result: Any, **_: Any) -> None:
    side().rpush("signals", f"success:{sender.name}:{result}")


@task_failure.connect
def _failure(sender: Any, task_id: str, exception: BaseException, **_: Any) -> None:
    side().rpush("signals", f"failure:{task_id}:{type(exception).__name__}")


@task_retry.connect
def _retry(sender: Any, request: Any, reason: str, **_: Any) -> None:
    side().rpush("signals", f"retry:{request.id}")


@task_revoked.connect
def _revoked(sender: Any, request: Any, terminated: bool, expired: bool, **_: Any) -> None:
    side().rpush("signals", f"revoked:{request.id}:{terminated}:{expired}")


@worker_ready.connect
def _ready(sender: Any, **_: Any) -> None:
    side().rpush("signals", f"worker_ready:{sender}")


@worker_shutdown.connect
def _shutdown(sender: Any, **_: Any) -> None:
    side().rpush("signals", f"worker_shutdown:{sender}")


@app.task
def breaks(message: str) -> None:
    raise KeyError(message)
