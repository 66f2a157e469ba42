"""The worker's one hook point: every task's life and the worker's own, as events.

Logging, metrics, events and the dashboard subscribe here instead of adding branches to
the executor. A listener is any object with ``on_<event>`` methods; a listener that
raises is logged and the others still run (dramatiq's middleware rule).

Task events get ``request`` (the task's :class:`~conveyor.task.Context`) and, by event:
``task_succeeded(result, runtime)``, ``task_failed(exc, traceback, runtime)``,
``task_retried(reason, exc)``, ``task_rejected(reason)`` (dead-lettered; ``request`` may
be None when the message could not be decoded), ``task_revoked(reason, terminated,
expired)``. Worker events get ``hostname`` and ``info``.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["EVENTS", "WorkerHooks"]

logger = logging.getLogger("conveyor.worker")

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
    def __init__(self) -> None:
        self._listeners: dict[str, list[Any]] = {event: [] for event in EVENTS}

    def subscribe(self, listener: object) -> None:
        for event in EVENTS:
            method = getattr(listener, f"on_{event}", None)
            if method is not None:
                self._listeners[event].append(method)

    def wants(self, event: str) -> bool:
        """Cheap check for the hot path: does anyone listen?"""
        return bool(self._listeners[event])

    def emit(self, event: str, **payload: Any) -> None:
        for method in self._listeners[event]:
            try:
                method(**payload)
            except Exception:
                logger.exception("hook %r failed on %s", method, event)
