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

from conveyor import Conveyor, Task, chain, chord, group

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


@app.task(soft_time_limit=5, time_limit=2)
def limits_upside_down() -> None:
    """soft_time_limit above time_limit: Celery refuses to send it (ValueError)."""


@app.task(ignore_result=True)
def quiet(key: str) -> None:
    log(key, "quiet ran")


@app.task(bind=True)
def failing(self: Task[..., Any], message: str) -> None:
    raise KeyError(message)


# class-based tasks (Celery's old style) and custom bases ---------------------------------
class Flaky(app.Task):
    """Fails with ConnectionError until its third attempt; autoretry with backoff."""

    name = "tests.apps.parity.Flaky"
    autoretry_for = (ConnectionError,)
    retry_kwargs = {"max_retries": 4}
    retry_backoff = 0.05
    retry_jitter = False

    def run(self, key: str) -> str:
        log(key, f"attempt {self.request.retries}")
        if self.request.retries < 2:
            raise ConnectionError("not yet")
        return f"ok after {self.request.retries}"


flaky = app.register_task(Flaky())


class Unnamed(app.Task):
    def run(self, x: int) -> int:
        return x * 3


unnamed = app.register_task(Unnamed)


class Audited(app.Task):
    """A custom base: every handler logs what Celery passes it."""

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        log(args[0], f"before_start {task_id} {self.request.id}")

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        log(args[0], f"on_success {retval!r} {task_id}")

    def on_failure(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        log(args[0], f"on_failure {type(exc).__name__} {task_id} {'Traceback' in str(einfo)}")

    def on_retry(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        log(args[0], f"on_retry {type(exc).__name__} {task_id}")

    def after_return(
        self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        log(args[0], f"after_return {status} {task_id}")


@app.task(base=Audited, bind=True, max_retries=1, default_retry_delay=0.05)
def audited(self: Task[..., Any], key: str, mode: str) -> str:
    if mode == "fail":
        raise ValueError("audited failure")
    if mode == "retry" and self.request.retries == 0:
        self.retry(exc=TimeoutError("first try"))
    return mode


@app.task
def paced(i: int) -> int:
    """No rate limit of its own: a worker's --rate-limit applies to it."""
    return i


@app.task(rate_limit="1000/s")
def own_pace(i: int) -> int:
    """A rate limit of its own: a worker's --rate-limit leaves it alone."""
    return i


# canvas ------------------------------------------------------------------------------------
class ExpectedException(Exception):
    pass


@app.task
def fail(*args: Any) -> None:
    raise ExpectedException("fail task", *args)


@app.task
def add_to_all(nums: list[Any], val: Any) -> list[Any]:
    return [n + val for n in nums]


@app.task
def record(key: str, line: str = "ran") -> None:
    log(key, line)


@app.task
def errback_old_style(task_id: str, key: str) -> None:
    log(key, f"old {task_id}")


@app.task
def errback_new_style(request: Any, exc: BaseException, traceback: str, key: str) -> None:
    log(key, f"new {request.id} {type(exc).__name__}")


# self.replace ------------------------------------------------------------------------------
@app.task(bind=True)
def add_replaced(self: Task[..., Any], x: int, y: int) -> Any:
    raise self.replace(add.s(x, y))


@app.task(bind=True)
def replace_with_chain(self: Task[..., Any], *args: Any) -> Any:
    return self.replace(chain(ident.s(*args), ident.s()))


@app.task(bind=True)
def replace_with_group(self: Task[..., Any], nums: list[int], val: int) -> Any:
    return self.replace(group(add.s(n, val) for n in nums))


@app.task(bind=True)
def replace_with_chord(self: Task[..., Any], nums: list[int]) -> Any:
    return self.replace(chord([ident.si(n) for n in nums], tsum.s()))


@app.task(bind=True)
def replace_with_failure(self: Task[..., Any]) -> Any:
    return self.replace(fail.si("replaced"))


# a Task subclass overriding __call__ (Celery's tracer calls it in the worker) -------------
class Transactional(app.Task):
    """Wraps every run, as a database-transaction base does: the worker must call it."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        log(args[0], f"begin {self.request.id}")
        try:
            return super().__call__(*args, **kwargs)
        finally:
            log(args[0], f"commit {self.request.id}")


@app.task(base=Transactional, bind=True)
def in_transaction(self: Task[..., Any], key: str, value: int) -> int:
    log(key, f"body {self.request.id}")
    return value * 2


# self.replace in a link= callback, and the lineage Celery stamps -------------------------
@app.task(bind=True)
def replacing_callback(self: Task[..., Any], value: Any, key: str) -> Any:
    return self.replace(record.si(key, f"replaced {value!r}"))


@app.task(bind=True)
def lineage(self: Task[..., Any], key: str) -> str:
    """Logs ``id parent_id root_id``, as the worker set them."""
    request = self.request
    log(key, f"{request.id} {request.parent_id} {request.root_id}")
    return str(request.id)


@app.task(bind=True)
def send_group(self: Task[..., Any], key: str) -> list[str]:
    """Sends a group from inside a task: its members' parent is this task."""
    log(key, f"{self.request.id} {self.request.parent_id} {self.request.root_id}")
    sent = group(lineage.si(key), lineage.si(key)).apply_async()
    return [r.id for r in sent.results]
