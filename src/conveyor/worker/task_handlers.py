"""Calls the handlers a Task subclass overrides (Celery's ``on_success``,
``on_failure``, ``on_retry``, ``after_return``, ``before_start``), from the worker's
hooks, with Celery's arguments.

The listener is subscribed only when some registered task overrides one (checked once
the app's modules are imported), so plain tasks pay nothing. A handler that raises is
logged by the hooks and the task's outcome stands, as in Celery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import states
from ..events import Listener, TaskFailed, TaskRetried, TaskStarted, TaskSucceeded
from ..task import Task, pop_request, push_request

if TYPE_CHECKING:
    from ..app import Conveyor
    from ..task import Context

__all__ = ["ExceptionInfo", "TaskHandlers", "overrides_handlers"]

HANDLERS = ("before_start", "on_success", "on_failure", "on_retry", "after_return")


@dataclass(frozen=True, slots=True)
class ExceptionInfo:
    """The ``einfo`` handlers receive (the attributes of Celery's ExceptionInfo that
    survive a process boundary)."""

    exception: BaseException
    traceback: str

    @property
    def type(self) -> type[BaseException]:
        return type(self.exception)

    def __str__(self) -> str:
        return self.traceback


def overrides_handlers(task: Task[..., Any]) -> bool:
    """Does the task's class replace any of the base class's handlers?"""
    cls = type(task)
    return any(getattr(cls, name) is not getattr(Task, name) for name in HANDLERS)


class TaskHandlers(Listener):
    """Listens on the worker's own bus (``hooks.subscribe``) and calls the task's
    handlers with the request in place, as Celery's tracer does."""

    def __init__(self, app: Conveyor) -> None:
        self.app = app

    def _task(self, name: str) -> Task[..., Any] | None:
        task = self.app.tasks.get(name)
        return task if task is not None and overrides_handlers(task) else None

    def on_task_started(self, event: TaskStarted) -> None:
        task = self._task(event.name)
        if task is not None:
            with _as_current(event.request):
                task.before_start(event.uuid, event.args, event.kwargs)

    def on_task_succeeded(self, event: TaskSucceeded) -> None:
        task = self._task(event.name)
        if task is not None:
            request = event.request
            with _as_current(request):
                task.on_success(event.result, event.uuid, request.args, request.kwargs)
                task.after_return(
                    states.SUCCESS, event.result, event.uuid, request.args, request.kwargs, None
                )

    def on_task_failed(self, event: TaskFailed) -> None:
        task = self._task(event.name)
        if task is not None:
            request, exc = event.request, event.exception
            einfo = ExceptionInfo(exc, event.traceback or "")
            with _as_current(request):
                task.on_failure(exc, event.uuid, request.args, request.kwargs, einfo)
                task.after_return(
                    states.FAILURE, exc, event.uuid, request.args, request.kwargs, einfo
                )

    def on_task_retried(self, event: TaskRetried) -> None:
        task = self._task(event.name)
        if task is not None:
            request = event.request
            cause = event.exception if event.exception is not None else RuntimeError(event.reason)
            einfo = ExceptionInfo(cause, event.traceback or "")
            with _as_current(request):
                task.on_retry(cause, event.uuid, request.args, request.kwargs, einfo)


class _as_current:
    """``self.request`` inside a handler is the task's request (as in Celery)."""

    def __init__(self, request: Context) -> None:
        self.request = request

    def __enter__(self) -> None:
        push_request(self.request)

    def __exit__(self, *_: object) -> None:
        pop_request()
