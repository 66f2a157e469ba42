"""The worker's task log lines (received, succeeded in Ns, failed, retried) and
``get_task_logger``; handlers and formats are set up in observe/logs.py."""

from __future__ import annotations

import logging

from ..events import TaskFailed, TaskReceived, TaskRejected, TaskRetried, TaskSucceeded
from ..observe.logs import TaskFilter, setup_logging

__all__ = ["LoggingListener", "TaskFilter", "get_task_logger", "setup_logging"]


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
            "Task %s[%s] raised %s: %s%s",
            event.name,
            event.uuid,
            type(exc).__name__,
            exc,
            # None when the worker ended the task from outside (a hard time limit).
            f"\n{event.traceback}" if event.traceback else "",
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
