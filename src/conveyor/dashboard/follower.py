"""A thread of the dashboard's process that keeps the history up to date.

It reads the store's event stream from where the history stopped, folds each batch in,
and bumps :attr:`Follower.version`, which the live pages watch (server-sent events).
Every few seconds it also samples the queues' depths: the broker says how many wait
now, and two samples a minute apart give the rate in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from .history import History

if TYPE_CHECKING:
    from ..app import Conveyor
    from ..stores.transport import QueueStats

__all__ = ["Follower", "QueueSample"]

logger = logging.getLogger("conveyor.dashboard")

READ_BATCH = 2_000
IDLE_SECONDS = 0.2  # the stream's flushers write every 0.2 s: no point looking faster
SAMPLE_SECONDS = 5.0
SAMPLES_KEPT = 64  # about five minutes of queue depths


class QueueSample:
    def __init__(self, at: float, queues: list[QueueStats]) -> None:
        self.at = at
        self.depths = {q.name: q.ready + q.scheduled for q in queues}


class Follower:
    def __init__(self, app: Conveyor, history: History) -> None:
        self.app = app
        self.history = history
        self.version = 0
        self.error: str | None = None  # the store is away: shown on every page
        self.samples: deque[QueueSample] = deque(maxlen=SAMPLES_KEPT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="conveyor-dashboard", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        from ..stores.eventlog import event_log_for

        next_sample = 0.0
        while not self._stop.is_set():
            try:
                log = event_log_for(self.app.broker, self.app.coordinator)
                batch = log.read(self.history.cursor(), READ_BATCH)
                if batch:
                    self.history.fold(batch)
                    self.version += 1
                if time.monotonic() >= next_sample:
                    next_sample = time.monotonic() + SAMPLE_SECONDS
                    self.samples.append(QueueSample(time.time(), self.app.broker.queues()))
                    self.version += 1
                self.error = None
            except Exception as exc:  # the store is away: say so, and keep trying
                if self.error is None:
                    logger.warning("dashboard: cannot read the broker (%s)", exc)
                self.error = str(exc) or type(exc).__name__
                batch = []
            if len(batch) < READ_BATCH:
                self._stop.wait(IDLE_SECONDS)

    def catch_up(self, timeout: float) -> None:
        """Fold what the stream holds now (before serving the first page)."""
        from ..stores.eventlog import event_log_for

        log = event_log_for(self.app.broker, self.app.coordinator)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = log.read(self.history.cursor(), READ_BATCH)
            if not batch:
                return
            self.history.fold(batch)
