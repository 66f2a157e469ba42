"""Sends the worker's events to the store's event stream (stores/eventlog.py).

On with ``-E`` or ``worker_send_task_events = True`` (off by default, as in Celery).
Events are buffered per process and written in batches by a flusher thread every
``FLUSH_SECONDS`` (one pipeline or one transaction per batch), never on the task's path.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import TYPE_CHECKING

from ..events import (
    Event,
    Listener,
    TaskFailed,
    TaskReceived,
    TaskRejected,
    TaskRetried,
    TaskRevoked,
    TaskStarted,
    TaskSucceeded,
    WorkerHeartbeat,
    WorkerOffline,
    WorkerOnline,
)
from ..stores.eventlog import event_log_for

if TYPE_CHECKING:
    from ..app import Conveyor

__all__ = ["EventStreamListener"]

logger = logging.getLogger("conveyor.worker")

FLUSH_SECONDS = 0.2


class EventStreamListener(Listener):
    def __init__(self, app: Conveyor) -> None:
        self.app = app
        self.max_len = int(app.conf.event_stream_max_len)
        self._lock = threading.Lock()
        self._buffer: list[bytes] = []
        self._pid = 0
        self._wake = threading.Event()

    def _add(self, event: Event) -> None:
        """A task event: buffered, written by this process's flusher thread."""
        if self._pid != os.getpid():  # the first in this process (a forked child)
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._buffer = []
            thread = threading.Thread(
                target=self._flush_forever, name="conveyor-events", daemon=True
            )
            thread.start()
        record = json.dumps(event.to_dict(), default=repr).encode()
        with self._lock:
            self._buffer.append(record)

    def _now(self, event: Event) -> None:
        """A worker event (a few per heartbeat): written at once, on the caller's
        thread, so the prefork supervisor never starts a thread (it forks)."""
        record = json.dumps(event.to_dict(), default=repr).encode()
        try:
            event_log_for(self.app.broker, self.app.coordinator).append([record], self.max_len)
        except Exception as exc:
            logger.debug("could not store a worker event (%s)", exc)

    def _flush_forever(self) -> None:
        while True:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._buffer = self._buffer, []
        if not batch:
            return
        try:
            event_log_for(self.app.broker, self.app.coordinator).append(batch, self.max_len)
        except Exception as exc:  # the store is away: keep them for the next flush
            logger.debug("could not store %d events (%s)", len(batch), exc)
            with self._lock:
                self._buffer[:0] = batch

    def on_task_received(self, event: TaskReceived) -> None:
        self._add(event)

    def on_task_started(self, event: TaskStarted) -> None:
        self._add(event)

    def on_task_succeeded(self, event: TaskSucceeded) -> None:
        self._add(event)

    def on_task_failed(self, event: TaskFailed) -> None:
        self._add(event)

    def on_task_retried(self, event: TaskRetried) -> None:
        self._add(event)

    def on_task_revoked(self, event: TaskRevoked) -> None:
        self._add(event)

    def on_task_rejected(self, event: TaskRejected) -> None:
        self._add(event)

    def on_worker_online(self, event: WorkerOnline) -> None:
        self._now(event)

    def on_worker_heartbeat(self, event: WorkerHeartbeat) -> None:
        self._now(event)

    def on_worker_offline(self, event: WorkerOffline) -> None:
        self.flush()  # this process's task events first
        self._now(event)


