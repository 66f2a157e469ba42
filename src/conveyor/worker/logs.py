"""Worker logging: Celery's line format, with the task id and name on task lines."""

from __future__ import annotations

import logging
import sys

from ..events import TaskFailed, TaskReceived, TaskRejected, TaskRetried, TaskSucceeded
from ..task import current_request

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

    def on_task_received(self, event: TaskReceived) -> None:
        self.logger.info("Task %s[%s] received", event.name, event.uuid)

    def on_task_succeeded(self, event: TaskSucceeded) -> None:
        self.logger.info(
            "Task %s[%s] succeeded in %.6fs: %.200r",
            event.name,
            event.uuid,
            event.runtime,
            event.result,
        )

    def on_task_failed(self, event: TaskFailed) -> None:
        exc = event.exception
        self.logger.error(
            "Task %s[%s] raised %s: %s\n%s",
            event.name,
            event.uuid,
            type(exc).__name__,
            exc,
            event.traceback,
        )

    def on_task_retried(self, event: TaskRetried) -> None:
        self.logger.info("Task %s[%s] retry: %s", event.name, event.uuid, event.reason)

    def on_task_rejected(self, event: TaskRejected) -> None:
        if event.uuid is not None:
            self.logger.error("Task %s[%s] dead-lettered: %s", event.name, event.uuid, event.reason)
        else:
            self.logger.error("Message dead-lettered: %s", event.reason)


def get_task_logger(name: str) -> logging.Logger:
    """A logger whose lines carry the running task's name and id."""
    return logging.getLogger(f"conveyor.task.{name}")
