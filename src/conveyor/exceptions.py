"""Every exception conveyor raises, in one tree.

    ConveyorError
    ├── ConfigurationError          a setting or URL that cannot work
    ├── AppNotFound                 ``-A`` names nothing that holds an app
    ├── NotRegistered (KeyError)    a task name the registry does not know
    ├── ContentDisallowed           a message in a content type not in accept_content
    ├── MessageError                a message that cannot be decoded or is invalid
    │   └── SecurityError           a signed message that does not verify (signing.py)
    ├── BrokerError                 the broker could not take or give a message
    │   └── BrokerUnavailable (builtins.ConnectionError)   the store cannot be reached
    ├── TimeoutError (builtins.TimeoutError)   ``AsyncResult.get`` waited too long
    ├── TaskError                   a task failed with an exception type we cannot import
    ├── ChordError                  a chord's header task failed, so its body did not run
    ├── Retry                       raised by ``Task.retry`` to ask for another attempt
    ├── MaxRetriesExceededError     retries ran out and there was no exception to re-raise
    ├── Reject                      a task refuses its message (dead-lettered)
    ├── Ignore                      a task ends with no state stored (``self.replace``)
    ├── WorkerLostError             the process running a task died
    ├── TimeLimitExceeded           the hard time limit ended a task
    ├── TaskRevokedError            the task was revoked (or terminated while running)
    └── SoftTimeLimitExceeded       raised inside a task at its soft time limit

The names users catch are Celery's, so ``except SoftTimeLimitExceeded`` keeps working
after the import changes.
"""

from __future__ import annotations

import builtins
from typing import Any

__all__ = [
    "AppNotFound",
    "BrokerError",
    "BrokerUnavailable",
    "ChordError",
    "ConfigurationError",
    "ContentDisallowed",
    "ConveyorError",
    "Ignore",
    "MaxRetriesExceededError",
    "MessageError",
    "NotRegistered",
    "Reject",
    "Retry",
    "SecurityError",
    "SoftTimeLimitExceeded",
    "TaskError",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
]


class ConveyorError(Exception):
    """Base of every conveyor exception."""


class ConfigurationError(ConveyorError):
    """A setting, URL or option that cannot work as given."""


class PoolCannotRun(ConfigurationError):
    """The worker's pool cannot run this task (an ``async def`` task on a green pool):
    the message is dead-lettered with this reason, to be replayed where it can run."""


class AppNotFound(ConveyorError):
    """The ``-A`` argument names no module or no app inside it."""


class NotRegistered(ConveyorError, KeyError):
    """No task of this name is registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "task not registered"


class ContentDisallowed(ConveyorError):
    """A message arrived in a content type that ``accept_content`` does not list."""


class MessageError(ConveyorError):
    """A message could not be decoded, or its envelope is invalid."""


class SecurityError(MessageError):
    """A signed message that does not verify: unsigned where signatures are required,
    signed by a certificate the store lacks, or altered after it was signed (Celery's
    name)."""


class BrokerError(ConveyorError):
    """The broker refused or failed an operation."""


class BrokerUnavailable(BrokerError, builtins.ConnectionError):
    """A store (broker, result backend or coordinator) cannot be reached.

    Every store maps its client library's connection errors to this one class, in one
    place, so nothing above the store sees redis-py's (or any other client's) classes.
    ``url`` is the store's URL with any password masked; ``role`` says which store it
    is ("the broker", "the result backend", ...), for messages that name it."""

    def __init__(self, message: str, url: str = "", role: str = "the broker") -> None:
        super().__init__(message)
        self.url = url
        self.role = role


class TimeoutError(ConveyorError, builtins.TimeoutError):
    """The result was not ready within the timeout."""


class TaskError(ConveyorError):
    """A task failed with an exception whose type cannot be imported here.

    ``exc_type`` holds the original type's dotted name.
    """

    def __init__(self, message: str, exc_type: str = "") -> None:
        super().__init__(message)
        self.exc_type = exc_type


class ChordError(ConveyorError):
    """A header task of a chord did not succeed, so the body did not run; the message
    names the task and its error. It is the body's result (and the chord's)."""


class Retry(ConveyorError):
    """Raised by ``Task.retry``: the task will run again later."""

    def __init__(
        self,
        message: str | None = None,
        exc: BaseException | None = None,
        when: float | None = None,
        eager_result: Any = None,
    ) -> None:
        self.message = message
        self.exc = exc
        self.when = when
        self.eager_result = eager_result  # the next attempt's result, in eager mode
        super().__init__(message or (repr(exc) if exc else "retry"), when)

    @property
    def reason(self) -> str:
        where = f" in {self.when:.3g}s" if isinstance(self.when, (int, float)) else ""
        cause = f": {self.exc!r}" if self.exc is not None else ""
        return f"Retry{where}{cause}"


class MaxRetriesExceededError(ConveyorError):
    """The task asked for a retry but has no retries left."""

    def __init__(self, *args: Any, task_args: Any = None, task_kwargs: Any = None) -> None:
        super().__init__(*args)
        self.task_args = task_args
        self.task_kwargs = task_kwargs


class Reject(ConveyorError):
    """Raised by a task to refuse its message; it goes to the dead-letter queue."""

    def __init__(self, reason: str = "", requeue: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.requeue = requeue


class Ignore(ConveyorError):
    """Raised by a task to end without a stored state (``self.replace(sig)`` raises it:
    the replacement stores the result under the same id)."""


class WorkerLostError(ConveyorError):
    """The process that ran the task ended before the task did."""


class TimeLimitExceeded(ConveyorError):
    """The task ran past its hard time limit and was ended."""


class TaskRevokedError(ConveyorError):
    """The task was revoked before it ran, or terminated while running."""


class SoftTimeLimitExceeded(ConveyorError):
    """Raised inside a task when it reaches its soft time limit, so it can clean up."""
