"""A test app for inspect, control, events and metrics: CPU-bound and quick tasks."""

from __future__ import annotations

import os
import time

from conveyor import Conveyor, get_task_logger

app = Conveyor("tests.apps.observed")
# Tests of inspect reserved keep prefetched messages leased behind a slow task.
app.conf.worker_prefetch_release_seconds = float(os.environ.get("OBSERVED_RELEASE", "1.0"))
# Tests of worker_log_format / worker_task_log_format set them here.
if "OBSERVED_LOG_FORMAT" in os.environ:
    app.conf.worker_log_format = os.environ["OBSERVED_LOG_FORMAT"]
if "OBSERVED_TASK_LOG_FORMAT" in os.environ:
    app.conf.worker_task_log_format = os.environ["OBSERVED_TASK_LOG_FORMAT"]

logger = get_task_logger(__name__)


@app.task
def spin(seconds: float) -> int:
    """Busy for ``seconds`` of CPU (no sleep: holds the GIL and a core)."""
    deadline = time.monotonic() + seconds
    loops = 0
    while time.monotonic() < deadline:
        loops += 1
    return loops


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(bind=True, max_retries=2, default_retry_delay=0)
def flaky(self, attempts_to_fail: int) -> int:  # type: ignore[no-untyped-def]
    """Fails (and retries) until it ran ``attempts_to_fail`` times, then succeeds."""
    if self.request.retries < attempts_to_fail:
        raise self.retry(exc=RuntimeError("not yet"))
    return self.request.retries


@app.task
def chatty(word: str) -> str:
    """Logs one line through get_task_logger (the log tests read it)."""
    logger.warning("the word is %s", word)
    return word
