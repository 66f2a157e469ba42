"""Signals for extensions, with Celery's names and arguments.

    from conveyor.signals import task_prerun

    @task_prerun.connect
    def on_prerun(sender, task_id, task, args, kwargs, **extra):
        ...

Task and worker signals are called in the worker process that runs the task; the
publish signals in the process that sends. A receiver that raises is logged and the
others still run.

Each signal is a listener of the typed events (:mod:`conveyor.events`): the first
receiver connected to one subscribes a bridge to every app's ``app.events``, so a
process with no receivers connected pays nothing. ``before_task_publish`` receivers may
add entries to ``headers``: they travel with the message, as with Celery.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import states
from .events import subscribe_everywhere

if TYPE_CHECKING:
    from .events import (
        BeforePublish,
        TaskFailed,
        TaskRetried,
        TaskRevoked,
        TaskSent,
        TaskStarted,
        TaskSucceeded,
        WorkerOffline,
        WorkerOnline,
    )
    from .message import Envelope

__all__ = [
    "Signal",
    "after_task_publish",
    "before_task_publish",
    "task_failure",
    "task_postrun",
    "task_prerun",
    "task_retry",
    "task_revoked",
    "task_success",
    "worker_ready",
    "worker_shutdown",
]

logger = logging.getLogger("conveyor.signals")

Receiver = Callable[..., Any]


class Signal:
    """A named event receivers connect to; ``send`` calls each of them."""

    def __init__(self, name: str, providing_args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.providing_args = providing_args
        self._receivers: list[tuple[Receiver, object | None, str | None]] = []
        self._lock = threading.Lock()
        # The listener of conveyor.events that feeds this signal, subscribed on every
        # app once a receiver connects (None: the signal is sent by hand).
        self.feed: Callable[[Any], object] | None = None

    def connect(
        self,
        receiver: Receiver | None = None,
        *,
        sender: object | None = None,
        dispatch_uid: str | None = None,
        weak: bool = False,  # accepted for Celery compatibility; references are strong
    ) -> Any:
        """Connect a receiver; usable as ``@signal.connect`` or ``@signal.connect(sender=x)``."""

        def register(fn: Receiver) -> Receiver:
            with self._lock:
                if dispatch_uid is not None and any(
                    uid == dispatch_uid for *_, uid in self._receivers
                ):
                    return fn
                if any(existing is fn and s is sender for existing, s, _ in self._receivers):
                    return fn
                self._receivers.append((fn, sender, dispatch_uid))
            if self.feed is not None:
                subscribe_everywhere(self.feed)
            return fn

        return register(receiver) if receiver is not None else register

    def disconnect(self, receiver: Receiver | None = None, dispatch_uid: str | None = None) -> None:
        with self._lock:
            self._receivers = [
                r
                for r in self._receivers
                if not (r[0] is receiver or (dispatch_uid is not None and r[2] == dispatch_uid))
            ]

    @property
    def receivers(self) -> list[Receiver]:
        return [r for r, _, _ in self._receivers]

    def send(self, sender: object = None, **named: Any) -> list[tuple[Receiver, Any]]:
        """Call every receiver (those connected for another sender are skipped)."""
        responses = []
        for receiver, wanted, _ in list(self._receivers):
            if (
                wanted is not None
                and wanted is not sender
                and wanted != getattr(sender, "name", None)
            ):
                continue
            try:
                responses.append((receiver, receiver(signal=self, sender=sender, **named)))
            except Exception as exc:
                logger.exception("signal %s receiver %r failed", self.name, receiver)
                responses.append((receiver, exc))
        return responses

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"


task_prerun = Signal("task_prerun", ("task_id", "task", "args", "kwargs"))
task_postrun = Signal("task_postrun", ("task_id", "task", "args", "kwargs", "retval", "state"))
task_success = Signal("task_success", ("result",))
task_failure = Signal(
    "task_failure", ("task_id", "exception", "args", "kwargs", "traceback", "einfo")
)
task_retry = Signal("task_retry", ("request", "reason", "einfo"))
task_revoked = Signal("task_revoked", ("request", "terminated", "signum", "expired"))
worker_ready = Signal("worker_ready")
worker_shutdown = Signal("worker_shutdown")

before_task_publish = Signal(
    "before_task_publish",
    ("body", "exchange", "routing_key", "headers", "properties", "declare", "retry_policy"),
)
after_task_publish = Signal("after_task_publish", ("body", "exchange", "routing_key", "headers"))

TASK_SIGNALS = (task_prerun, task_postrun, task_success, task_failure, task_retry, task_revoked)


class WorkerSignals:
    """Celery's task and worker signals, fed from the worker's events in Celery's order
    (``task_success`` or ``task_failure`` before ``task_postrun``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def _task(self, name: str) -> Any:
        return self.app.tasks.get(name)

    def on_task_started(self, event: TaskStarted) -> None:
        task = self._task(event.name)
        task_prerun.send(
            sender=task, task_id=event.uuid, task=task, args=event.args, kwargs=event.kwargs
        )

    def _postrun(self, task: Any, event: TaskSucceeded | TaskFailed | TaskRetried,
                 retval: Any, state: str) -> None:  # fmt: skip
        task_postrun.send(
            sender=task,
            task_id=event.uuid,
            task=task,
            args=event.request.args,
            kwargs=event.request.kwargs,
            retval=retval,
            state=state,
        )

    def on_task_succeeded(self, event: TaskSucceeded) -> None:
        task = self._task(event.name)
        task_success.send(sender=task, result=event.result)
        self._postrun(task, event, event.result, states.SUCCESS)

    def on_task_failed(self, event: TaskFailed) -> None:
        task = self._task(event.name)
        task_failure.send(
            sender=task,
            task_id=event.uuid,
            exception=event.exception,
            args=event.request.args,
            kwargs=event.request.kwargs,
            traceback=event.traceback,
            einfo=event.traceback,
        )
        self._postrun(task, event, event.exception, states.FAILURE)

    def on_task_retried(self, event: TaskRetried) -> None:
        task = self._task(event.name)
        task_retry.send(
            sender=task, request=event.request, reason=event.reason, einfo=event.exception
        )
        self._postrun(task, event, None, states.RETRY)

    def on_task_revoked(self, event: TaskRevoked) -> None:
        task_revoked.send(
            sender=self._task(event.name),
            request=event.request,
            terminated=event.terminated,
            signum=event.signum,
            expired=event.expired,
        )

    def on_worker_online(self, event: WorkerOnline) -> None:
        worker_ready.send(sender=event.hostname)

    def on_worker_offline(self, event: WorkerOffline) -> None:
        worker_shutdown.send(sender=event.hostname)


# Celery's message headers (protocol 2) that conveyor keeps in the envelope's own
# fields: receivers read them in ``headers``; only other keys are copied back.
_PROTOCOL_HEADERS = frozenset(
    {"id", "task", "lang", "root_id", "parent_id", "group", "retries", "eta", "expires"}
)


def _celery_headers(envelope: Envelope) -> dict[str, Any]:
    return {
        **envelope.headers,
        "lang": "py",
        "id": envelope.id,
        "task": envelope.task,
        "root_id": envelope.root_id,
        "parent_id": envelope.parent_id,
        "group": envelope.group_id,
        "retries": envelope.retries,
        "eta": envelope.eta,
        "expires": envelope.expires,
    }


def _celery_body(envelope: Envelope) -> tuple[Any, ...]:
    embed = {"callbacks": envelope.callbacks, "errbacks": envelope.errbacks,
             "chord": envelope.chord}  # fmt: skip
    return (envelope.args, envelope.kwargs, embed)


class PublishSignals:
    """``before_task_publish`` and ``after_task_publish``, fed from the producer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def on_before_publish(self, event: BeforePublish) -> None:
        envelope = event.envelope
        headers = _celery_headers(envelope)
        before_task_publish.send(
            sender=envelope.task,
            body=_celery_body(envelope),
            exchange="",
            routing_key=event.queue,
            headers=headers,
            properties={"correlation_id": envelope.id, "priority": envelope.priority},
            declare=[],
            retry_policy=None,
        )
        for key, value in headers.items():
            if key not in _PROTOCOL_HEADERS:
                envelope.headers[key] = value

    def on_task_sent(self, event: TaskSent) -> None:
        after_task_publish.send(
            sender=event.name,
            body=_celery_body(event.envelope),
            exchange="",
            routing_key=event.queue,
            headers=_celery_headers(event.envelope),
        )


for _signal in (*TASK_SIGNALS, worker_ready, worker_shutdown):
    _signal.feed = WorkerSignals
for _signal in (before_task_publish, after_task_publish):
    _signal.feed = PublishSignals
