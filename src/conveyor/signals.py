"""Signals for extensions, with Celery's names and arguments.

    from conveyor.signals import task_prerun

    @task_prerun.connect
    def on_prerun(sender, task_id, task, args, kwargs, **extra):
        ...

Receivers are called in the worker process that runs the task. A receiver that raises
is logged and the others still run. The worker feeds these from its hook point
(:mod:`conveyor.worker.hooks`); a worker with no receivers connected pays nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "Signal",
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

TASK_SIGNALS = (task_prerun, task_postrun, task_success, task_failure, task_retry, task_revoked)
