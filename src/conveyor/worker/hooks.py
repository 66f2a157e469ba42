"""The worker's one emission point: every task's life and the worker's own, as typed
events (:mod:`conveyor.events`).

The executor and the worker call one method per event; each builds its event only when
someone listens, on the worker's own bus (``hooks.local``: its log lines) or the app's
(``app.events``: Celery's signals, the user's listeners). A listener that raises is
logged and the task goes on.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import __version__, states
from ..canvas.signature import CHORD_JOIN
from ..events import (
    Channel,
    EventBus,
    TaskFailed,
    TaskReceived,
    TaskRejected,
    TaskRetried,
    TaskRevoked,
    TaskStarted,
    TaskSucceeded,
    WorkerEvent,
    WorkerHeartbeat,
    WorkerOffline,
    WorkerOnline,
)

if TYPE_CHECKING:
    from ..task import Context

__all__ = ["EVENTS", "WorkerHooks"]

EVENTS = (
    "task_received",
    "task_started",
    "task_succeeded",
    "task_failed",
    "task_retried",
    "task_rejected",
    "task_revoked",
    "worker_online",
    "worker_heartbeat",
    "worker_offline",
)


class WorkerHooks:
    def __init__(self, app_events: EventBus, hostname: str, heartbeat_seconds: float = 0.0) -> None:
        self.local = EventBus()
        self.hostname = hostname
        self.heartbeat_seconds = heartbeat_seconds
        channels = {name: Channel(f"on_{name}", self.local, app_events) for name in EVENTS}
        self._received = channels["task_received"]
        self._started = channels["task_started"]
        self._succeeded = channels["task_succeeded"]
        self._failed = channels["task_failed"]
        self._retried = channels["task_retried"]
        self._rejected = channels["task_rejected"]
        self._revoked = channels["task_revoked"]
        self._online = channels["worker_online"]
        self._heartbeat = channels["worker_heartbeat"]
        self._offline = channels["worker_offline"]

    def subscribe(self, listener: object) -> object:
        """Listen to this worker only (``app.events.subscribe`` listens to every worker
        and every send of the app)."""
        return self.local.subscribe(listener)

    # task events ------------------------------------------------------------------------
    def task_received(self, request: Context) -> None:
        if self._received:
            self._received.send(
                TaskReceived(
                    timestamp=time.time(),
                    uuid=request.id or "",
                    name=request.task or "",
                    hostname=self.hostname,
                    request=request,
                    args=request.args,
                    kwargs=request.kwargs,
                    retries=request.retries,
                    eta=request.eta,
                    expires=request.expires,
                    queue=request.delivery_info.get("queue"),
                    root_id=request.root_id,
                    parent_id=request.parent_id,
                    group_id=request.group,
                    chord_id=_chord_id(request),
                )
            )

    # Counts each task that starts (the task board of inspect stats): a plain call, so
    # no TaskStarted is built per task when nobody else listens.
    count_started: Callable[[str], None] | None = None

    def task_started(self, request: Context) -> None:
        if self.count_started is not None:
            self.count_started(request.task or "")
        if self._started:
            self._started.send(
                TaskStarted(
                    timestamp=time.time(),
                    uuid=request.id or "",
                    name=request.task or "",
                    hostname=self.hostname,
                    request=request,
                    args=request.args,
                    kwargs=request.kwargs,
                    pid=os.getpid(),
                )
            )

    def task_succeeded(self, request: Context, result: Any, runtime: float) -> None:
        if self._succeeded:
            self._succeeded.send(
                TaskSucceeded(
                    timestamp=time.time(),
                    uuid=request.id or "",
                    name=request.task or "",
                    hostname=self.hostname,
                    request=request,
                    result=result,
                    runtime=runtime,
                )
            )

    def task_failed(
        self, request: Context, exc: BaseException, traceback: str | None, runtime: float | None
    ) -> None:
        if self._failed:
            self._failed.send(
                TaskFailed(
                    timestamp=time.time(),
                    uuid=request.id or "",
                    name=request.task or "",
                    hostname=self.hostname,
                    request=request,
                    exception=exc,
                    traceback=traceback,
                    runtime=runtime,
                )
            )

    def task_retried(
        self, request: Context, reason: str, exc: BaseException | None, traceback: str | None
    ) -> None:
        if self._retried:
            self._retried.send(
                TaskRetried(
                    timestamp=time.time(),
                    uuid=request.id or "",
                    name=request.task or "",
                    hostname=self.hostname,
                    request=request,
                    reason=reason,
                    exception=exc,
                    traceback=traceback,
                )
            )

    def task_revoked(
        self, request: Context, *, terminated: bool, expired: bool, signum: int | None = None
    ) -> None:
        if self._revoked:
            self._revoked.send(
                TaskRevoked(
                    timestamp=time.time(),
                    uuid=request.id or "",
                    name=request.task or "",
                    hostname=self.hostname,
                    request=request,
                    terminated=terminated,
                    expired=expired,
                    signum=signum,
                )
            )

    def task_rejected(self, request: Context | None, reason: str) -> None:
        """Dead-lettered; ``request`` is None when the message could not be decoded."""
        if self._rejected:
            self._rejected.send(
                TaskRejected(
                    timestamp=time.time(),
                    uuid=request.id if request is not None else None,
                    name=request.task if request is not None else None,
                    hostname=self.hostname,
                    reason=reason,
                    request=request,
                )
            )

    def task_ended(self, request: Context, status: str, exc: BaseException) -> None:
        """A task the worker ended from outside the executor: a hard time limit (failed)
        or a terminate (revoked)."""
        if status == states.REVOKED:
            self.task_revoked(request, terminated=True, expired=False)
        else:
            self.task_failed(request, exc, None, None)

    # worker events ------------------------------------------------------------------------
    def worker_online(self, info: dict[str, Any]) -> None:
        if self._online:
            self._online.send(self._worker_event(WorkerOnline, info))

    def worker_heartbeat(self, info: dict[str, Any]) -> None:
        if self._heartbeat:
            self._heartbeat.send(self._worker_event(WorkerHeartbeat, info))

    def worker_offline(self, info: dict[str, Any]) -> None:
        if self._offline:
            self._offline.send(self._worker_event(WorkerOffline, info))

    def _worker_event(self, kind: type[WorkerEvent], info: dict[str, Any]) -> WorkerEvent:
        return kind(
            timestamp=time.time(),
            hostname=self.hostname,
            pid=os.getpid(),
            freq=self.heartbeat_seconds,
            sw_ver=__version__,
            sw_sys=platform.system(),
            info=info,
        )


def _chord_id(request: Context) -> str | None:
    """The chord a header task counts in (its ``chord`` option, as sent), or the chord
    a join task joins (its one argument)."""
    if request.task == CHORD_JOIN:
        found = request.args[0] if len(request.args) == 1 else None
    else:
        found = request.chord.get("id") if isinstance(request.chord, dict) else None
    return found if isinstance(found, str) else None
