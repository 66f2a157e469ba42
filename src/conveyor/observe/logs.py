"""Worker log lines: Celery's text format (``worker_log_format`` and
``worker_task_log_format`` honoured), or one JSON object per line (``--log-format json``).

Every record gets the running task's id, name, queue, retries and worker (``-`` or
null outside a task), so ``get_task_logger(__name__)`` lines and JSON logs carry them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from ..task import current_request

__all__ = ["FORMAT", "TASK_FORMAT", "JsonFormatter", "TaskFilter", "setup_logging"]

FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
TASK_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s"
LOG_FORMATS = ("text", "json")


class TaskFilter(logging.Filter):
    """Adds the running task's ``task_id``, ``task_name``, ``queue``, ``retries`` and
    ``worker`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = current_request()
        if request is None:
            record.task_id = record.task_name = "-"
            record.queue = record.worker = None
            record.retries = None
            return True
        record.task_id = request.id or "-"
        record.task_name = request.task or "-"
        record.queue = request.delivery_info.get("queue")
        record.worker = request.hostname
        record.retries = request.retries
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process, message and the task's
    fields; a traceback, when there is one, under ``exc_info``."""

    def format(self, record: logging.LogRecord) -> str:
        task_id = getattr(record, "task_id", "-")
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "pid": record.process,
            "message": record.getMessage(),
            "task_id": None if task_id == "-" else task_id,
            "task_name": None if task_id == "-" else getattr(record, "task_name", None),
            "queue": getattr(record, "queue", None),
            "worker": getattr(record, "worker", None),
            "retries": getattr(record, "retries", None),
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=repr)


def setup_logging(
    level: str | int,
    *,
    log_format: str = "text",
    worker_log_format: str | None = None,
    worker_task_log_format: str | None = None,
    hijack_root_logger: bool = True,
) -> None:
    """Log to stderr at ``level``: Celery's lines (or the formats given, as Celery's
    ``worker_log_format``/``worker_task_log_format``), or JSON lines. With
    ``hijack_root_logger`` off, handlers the app put on the root logger stay."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(
            f"unknown log level {level!r}: expected debug, info, warning, error or critical"
        )
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}: expected text or json")
    root = logging.getLogger()
    for old in list(root.handlers):
        if hijack_root_logger or isinstance(old, _Handler):
            root.removeHandler(old)
    root.addHandler(_handler(log_format, worker_log_format or FORMAT))
    root.setLevel(numeric)
    task_logger = logging.getLogger("conveyor.task")
    task_logger.handlers[:] = [_handler(log_format, worker_task_log_format or TASK_FORMAT)]
    task_logger.propagate = False


class _Handler(logging.StreamHandler[TextIO]):
    """Ours: replaced when logging is set up again, whatever hijack_root_logger says."""


def _handler(log_format: str, line_format: str) -> logging.Handler:
    handler = _Handler(sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(line_format)
    handler.setFormatter(formatter)
    handler.addFilter(TaskFilter())
    return handler
