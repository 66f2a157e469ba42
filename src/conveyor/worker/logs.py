"""Worker logging: Celery's line format, with the task id and name on task lines."""

from __future__ import annotations

import logging
import sys
from typing import Any

from ..task import Context, current_request

__all__ = ["LoggingListener", "TaskFilter", "setup_logging"]

FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
TASK_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s"


class TaskFilter(logging.Filter):
    """Adds ``task_id`` and ``task_name`` to every record (``-`` outside a task), so
    ``get_task_logger`` lines and structured logs carry them."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = current_request()
        record.task_id = request.id if request and request.id else "-"
        record.task_name = request.task if request and request.task else "-"
        return True


def setup_logging(level: str | int) -> None:
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(
            f"unknown log level {level!r}: expected debug, info, warning, error or critical"
        )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(TaskFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    task_handler = logging.StreamHandler(sys.stderr)
    task_handler.setFormatter(logging.Formatter(TASK_FORMAT))
    task_handler.addFilter(TaskFilter())
    task_logger = logging.getLogger("conveyor.task")
    task_logger.handlers[:] = [task_handler]
    task_logger.propagate = False


class LoggingListener:
    """Logs each task's life as Celery does: received, succeeded in Ns, failed, retried."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("conveyor.worker")

    def on_task_received(self, request: Context, **_: Any) -> None:
        self.logger.info("Task %s[%s] received", request.task, request.id)

    def on_task_succeeded(self, request: Context, result: Any, runtime: float, **_: Any) -> None:
        self.logger.info(
            "Task %s[%s] succeeded in %.6fs: %.200r", request.task, request.id, runtime, result
        )

    def on_task_failed(
        self, request: Context, exc: BaseException, traceback: str, runtime: float, **_: Any
    ) -> None:
        self.logger.error(
            "Task %s[%s] raised %s: %s\n%s",
            request.task,
            request.id,
            type(exc).__name__,
            exc,
            traceback,
        )

    def on_task_retried(self, request: Context, reason: str, **_: Any) -> None:
        self.logger.info("Task %s[%s] retry: %s", request.task, request.id, reason)

    def on_task_rejected(self, request: Context | None, reason: str, **_: Any) -> None:
        if request is not None:
            self.logger.error("Task %s[%s] dead-lettered: %s", request.task, request.id, reason)
        else:
            self.logger.error("Message dead-lettered: %s", reason)


def get_task_logger(name: str) -> logging.Logger:
    """A logger whose lines carry the running task's name and id."""
    return logging.getLogger(f"conveyor.task.{name}")
