"""Feeds :mod:`conveyor.signals` from the worker's hooks, with Celery's arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import signals, states

if TYPE_CHECKING:
    from ..app import Conveyor
    from ..task import Context


class SignalBridge:
    def __init__(self, app: Conveyor) -> None:
        self.app = app

    def _task(self, request: Context) -> Any:
        return self.app.tasks.get(request.task or "")

    def on_task_started(self, request: Context, **_: Any) -> None:
        task = self._task(request)
        signals.task_prerun.send(
            sender=task, task_id=request.id, task=task, args=request.args, kwargs=request.kwargs
        )

    def _postrun(self, request: Context, retval: Any, state: str) -> None:
        task = self._task(request)
        signals.task_postrun.send(
            sender=task,
            task_id=request.id,
            task=task,
            args=request.args,
            kwargs=request.kwargs,
            retval=retval,
            state=state,
        )

    def on_task_succeeded(self, request: Context, result: Any, **_: Any) -> None:
        signals.task_success.send(sender=self._task(request), result=result)
        self._postrun(request, result, states.SUCCESS)

    def on_task_failed(
        self, request: Context, exc: BaseException, traceback: str, **_: Any
    ) -> None:
        signals.task_failure.send(
            sender=self._task(request),
            task_id=request.id,
            exception=exc,
            args=request.args,
            kwargs=request.kwargs,
            traceback=traceback,
            einfo=traceback,
        )
        self._postrun(request, exc, states.FAILURE)

    def on_task_retried(self, request: Context, reason: str, **extra: Any) -> None:
        signals.task_retry.send(
            sender=self._task(request), request=request, reason=reason, einfo=extra.get("exc")
        )
        self._postrun(request, None, states.RETRY)

    def on_task_revoked(self, request: Context, **extra: Any) -> None:
        signals.task_revoked.send(
            sender=self._task(request),
            request=request,
            terminated=extra.get("terminated", False),
            signum=extra.get("signum"),
            expired=extra.get("expired", False),
        )

    def on_worker_online(self, hostname: str, **_: Any) -> None:
        signals.worker_ready.send(sender=hostname)

    def on_worker_offline(self, hostname: str, **_: Any) -> None:
        signals.worker_shutdown.send(sender=hostname)
