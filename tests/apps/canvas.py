"""The test app of the workflow tests (issue 5): it needs no particular broker.

Tasks record what they did in files (not in Redis), so the same tests run on Redis and
SQLite. Settings come from the environment, so each worker a test starts has its own:

    CONVEYOR_BROKER_URL      the broker (and, with no result backend set, the results)
    CANVAS_RECORD_DIR        where tasks write their log lines
    CANVAS_LEASE_SECONDS     worker_lease_seconds (the chaos test shortens it)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from conveyor import Conveyor, Task

app = Conveyor("tests.apps.canvas")
if "CANVAS_LEASE_SECONDS" in os.environ:
    app.conf.worker_lease_seconds = float(os.environ["CANVAS_LEASE_SECONDS"])


def _log(key: str, line: str) -> None:
    # One small O_APPEND write per line: whole lines, even from several processes.
    path = Path(os.environ["CANVAS_RECORD_DIR"]) / f"{key}.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_log(directory: Path, key: str) -> list[str]:
    """The lines the tasks wrote under ``key``."""
    path = directory / f"{key}.log"
    return path.read_text().splitlines() if path.exists() else []


class PaymentDeclined(Exception):
    pass


# The shop: payment -> receipt -> inventory -------------------------------------------
def _shop(task: Task[..., Any], step: str, order_id: int) -> None:
    """Log the step with the ids a dashboard draws the workflow from."""
    request = task.request
    _log("shop", f"{step} {order_id} {request.id} {request.root_id} {request.parent_id}")


@app.task(bind=True)
def process_payment(self: Task[..., Any], order_id: int, amount: int = 100) -> dict[str, Any]:
    if amount <= 0:
        raise PaymentDeclined(f"order {order_id}: amount {amount} declined")
    _shop(self, "payment", order_id)
    return {"order_id": order_id, "paid": amount}


@app.task(bind=True)
def send_receipt(self: Task[..., Any], payment: dict[str, Any]) -> dict[str, Any]:
    _shop(self, "receipt", payment["order_id"])
    return {**payment, "receipt": f"R-{payment['order_id']}"}


@app.task(bind=True)
def update_inventory(self: Task[..., Any], receipt: dict[str, Any]) -> dict[str, Any]:
    _shop(self, "inventory", receipt["order_id"])
    return {**receipt, "stock": "reserved"}


# arithmetic ------------------------------------------------------------------------------
@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def noop(i: int = 0) -> None:
    return None


@app.task
def tsum(values: list[int]) -> int:
    return sum(values)


@app.task
def slow_add(x: int, y: int, sleep: float) -> int:
    time.sleep(sleep)
    return x + y


@app.task(bind=True)
def counted_sum(self: Task[..., Any], values: list[int], key: str) -> int:
    """A chord body that logs each run, to prove it runs exactly once."""
    _log(key, f"body {self.request.id} {os.getpid()} {len(values)}")
    return sum(values)


@app.task(bind=True, max_retries=3)
def retry_once(self: Task[..., Any], x: int) -> int:
    """Fails its first attempt (a retry through the broker), then returns x."""
    if self.request.retries == 0:
        self.retry(countdown=0.05)
    return x


@app.task(bind=True, max_retries=2, default_retry_delay=0.05)
def fail_after_retries(self: Task[..., Any], key: str) -> None:
    """Retried twice, then fails for good: its errbacks must run once, not per try."""
    _log(key, f"attempt {self.request.retries}")
    self.retry(exc=ValueError(f"{key} gave up"))


@app.task
def header_step(i: int, sleep: float, key: str) -> int:
    """A chord header task for the chaos test: logs when it finishes."""
    time.sleep(sleep)
    _log(key, f"done {i}")
    return i


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task
def record(value: Any, key: str) -> Any:
    _log(key, f"ran {value!r}")
    return value


# errbacks: Celery's two kinds -----------------------------------------------------------
@app.task
def on_error_by_id(task_id: str, key: str) -> None:
    """Old style: sent as a task with the failed task's id."""
    _log(key, f"errback-id {task_id}")


@app.task
def on_error_with_request(request: Any, exc: BaseException, traceback: str, key: str) -> None:
    """New style: called in the worker with the request, the exception and traceback."""
    _log(key, f"errback-request {request.id} {type(exc).__name__}")


@app.task(time_limit=0.5)
def overruns(seconds: float) -> None:
    """Runs past its hard time limit: the prefork supervisor kills its child."""
    time.sleep(seconds)
