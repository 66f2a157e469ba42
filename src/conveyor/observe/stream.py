"""Sends the worker's events to the store's event stream (stores/eventlog.py).

On with ``-E`` or ``worker_send_task_events = True`` (off by default, as in Celery).
Events are buffered per process and written in batches by a flusher thread every
``FLUSH_SECONDS`` (one script call on Redis, one transaction on SQLite), never on the
task's path. A process that ends on its own (a prefork child recycled after
``max_tasks_per_child``, a warm shutdown) writes what it still holds first
(:meth:`EventStreamListener.close`); one killed with SIGKILL loses its last
``FLUSH_SECONDS`` of events.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING

import msgspec

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
# How long a process that ends waits for its flusher's last write.
CLOSE_SECONDS = 2.0

_encoder = msgspec.json.Encoder(enc_hook=repr)


def encode_event(event: Event) -> bytes:
    """``event.to_dict()`` as JSON (anything JSON cannot hold as its ``repr``)."""
    record = event.to_dict()
    try:
        return _encoder.encode(record)  # ~10x json.dumps: paid on every event
    except (TypeError, msgspec.EncodeError):  # e.g. a dict key that is not a string
        return json.dumps(record, default=repr).encode()


class EventStreamListener(Listener):
    """Buffers this process's task events and writes them in batches.

    The hot path (:meth:`_add`) is an encode and a ``deque.append``: no lock, no
    ``getpid`` (a system call: 2 µs, and it was called twice an event). The flusher
    thread starts with the first event of each process; a fork resets the buffer
    (``os.register_at_fork``), so a prefork child writes only its own events."""

    def __init__(self, app: Conveyor) -> None:
        self.app = app
        self.max_len = int(app.conf.event_stream_max_len)
        self._reset()
        me = weakref.ref(self)

        def forked() -> None:
            listener = me()
            if listener is not None:
                listener._reset()

        os.register_at_fork(after_in_child=forked)

    def _reset(self) -> None:
        self._buffer: deque[bytes] = deque()
        self._starting = threading.Lock()  # one flusher even when threads race to start it
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None

    # Set in the prefork supervisor, which must never start a thread (it forks): the
    # few task events it emits itself (a task it ended at its hard time limit) are
    # written at once there.
    at_once = False

    def _add(self, event: Event) -> None:
        """A task event: buffered, written by this process's flusher thread."""
        if self.at_once:
            self._now(event)
            return
        self._buffer.append(encode_event(event))
        if self._thread is None:  # the first event in this process
            self._start_flusher()
        elif self._closing:  # after close() no flusher runs: write it now
            self.flush()

    def _start_flusher(self) -> None:
        with self._starting:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._flush_forever, name="conveyor-events", daemon=True
                )
                thread.start()
                self._thread = thread

    def close(self) -> None:
        """This process is about to end: stop the flusher and write what is left, so a
        recycled child's last events are not lost with its buffer."""
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(CLOSE_SECONDS)
        self.flush()

    def _now(self, event: Event) -> None:
        """A worker event (a few per heartbeat), or any event in the prefork
        supervisor: written at once, on the caller's thread."""
        record = encode_event(event)
        try:
            event_log_for(self.app.broker, self.app.coordinator).append([record], self.max_len)
        except Exception as exc:
            logger.debug("could not store a worker event (%s)", exc)

    def _flush_forever(self) -> None:
        while not self._closing:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Write what is buffered. ``popleft`` and ``append`` are atomic, so the task's
        thread never waits for a lock held across a network write."""
        buffer = self._buffer
        batch = [buffer.popleft() for _ in range(len(buffer))]
        if not batch:
            return
        try:
            event_log_for(self.app.broker, self.app.coordinator).append(batch, self.max_len)
        except Exception as exc:  # the store is away: keep them for the next flush
            logger.debug("could not store %d events (%s)", len(batch), exc)
            buffer.extendleft(reversed(batch))
            while len(buffer) > self.max_len:  # the stream would not keep more either
                buffer.popleft()

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
        self.close()  # this process's task events first
        self._now(event)


