"""conveyor: a distributed task queue with Celery's API, built on leased deliveries.

from conveyor import Celery          # or Conveyor: the same class
app = Celery("proj", broker="redis://localhost:6379/0")

@app.task
def add(x: int, y: int) -> int:
    return x + y

add.delay(2, 3).get(timeout=10)      # 5
"""

from __future__ import annotations

__version__ = "0.1.0"

# `conveyor worker -P gevent|eventlet`: monkey-patch before the imports below (see there).
from ._early_patch import patch_for_command_line

patch_for_command_line()


from . import states
from .app import Conveyor, current_app, shared_task
from .canvas import Signature, chain, chord, group, signature
from .exceptions import (
    MaxRetriesExceededError,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    TaskError,
    TimeLimitExceeded,
    TimeoutError,
)
from .result import AsyncResult, EagerResult, GroupResult, ResultSet
from .task import Context, Task
from .worker.logs import get_task_logger

Celery = Conveyor

__all__ = [
    "AsyncResult",
    "Celery",
    "Context",
    "Conveyor",
    "EagerResult",
    "GroupResult",
    "MaxRetriesExceededError",
    "Reject",
    "ResultSet",
    "Retry",
    "Signature",
    "SoftTimeLimitExceeded",
    "Task",
    "TaskError",
    "TimeLimitExceeded",
    "TimeoutError",
    "__version__",
    "chain",
    "chord",
    "current_app",
    "get_task_logger",
    "group",
    "shared_task",
    "signature",
    "states",
]
