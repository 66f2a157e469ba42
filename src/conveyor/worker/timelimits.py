"""Time limits: ``soft_time_limit`` raises inside the task, ``time_limit`` ends it.

How each pool enforces them (none ignores a limit):

- prefork: the child arms ``SIGALRM`` for the soft limit (the handler raises
  :class:`SoftTimeLimitExceeded` in the task, interrupting sleeps and I/O); the
  supervisor kills the child at the hard limit, records ``TimeLimitExceeded``, and
  starts a new child.
- solo: ``SIGALRM`` raises ``SoftTimeLimitExceeded`` at the soft limit and
  ``TimeLimitExceeded`` at the hard one. A task that swallows that too is recorded as
  failed by the keeper after a grace period and the worker process exits (code 3) so
  its process manager restarts it: the limit always wins.
- threads: a watchdog raises the exceptions asynchronously in the task's thread
  (``PyThreadState_SetAsyncExc``); they land at the next Python instruction, so a
  thread blocked inside C code is reached when that call returns. At the hard limit
  plus a grace period the task is recorded as failed and acked anyway; the thread's
  late outcome is dropped.
"""

from __future__ import annotations

import ctypes
import signal
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

if TYPE_CHECKING:
    from .attempt import Attempt

__all__ = ["GRACE_SECONDS", "Alarm", "Deadlines", "raise_in_thread"]

# How long a task may outlive its hard limit before the worker stops waiting for it.
GRACE_SECONDS = 2.0


@dataclass(slots=True)
class Deadlines:
    """Monotonic times at which a running task's limits fall (None: no limit)."""

    soft: float | None
    hard: float | None
    soft_limit: float | None = None
    hard_limit: float | None = None
    soft_sent: bool = False
    hard_sent: bool = False

    @classmethod
    def start(cls, soft_limit: float | None, hard_limit: float | None) -> Deadlines:
        now = time.monotonic()
        return cls(
            now + soft_limit if soft_limit else None,
            now + hard_limit if hard_limit else None,
            soft_limit or None,
            hard_limit or None,
        )


class Alarm:
    """Soft (and, for solo, hard) limits for tasks run on the main thread, via SIGALRM
    (an attempt watcher: armed when an attempt's task body starts, disarmed as it
    ends)."""

    def __init__(self, enforce_hard: bool) -> None:
        self.enforce_hard = enforce_hard
        self.deadlines: Deadlines | None = None
        self._soft_fired = False
        signal.signal(signal.SIGALRM, self._on_alarm)

    def arm(self, deadlines: Deadlines) -> None:
        self.deadlines = deadlines
        self._soft_fired = False
        self._schedule()

    def disarm(self) -> None:
        if self.deadlines is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.deadlines = None

    def started(self, attempt: Attempt) -> None:
        if attempt.deadlines is not None:
            self.arm(attempt.deadlines)

    def finished(self, attempt: Attempt) -> None:
        if self.deadlines is not None:
            self.disarm()

    def _next(self) -> float | None:
        d = self.deadlines
        if d is None:
            return None
        if d.soft is not None and not self._soft_fired:
            return d.soft
        return d.hard if self.enforce_hard else None

    def _schedule(self) -> None:
        due = self._next()
        if due is not None:
            signal.setitimer(signal.ITIMER_REAL, max(due - time.monotonic(), 0.001))

    def interrupt(self, exc_type: type[BaseException]) -> None:
        """Raise ``exc_type`` in the main thread now (from another thread), interrupting
        a sleep or a blocking call, as the alarm does."""
        self._pending = exc_type
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGALRM)

    _pending: type[BaseException] | None = None

    def _on_alarm(self, signum: int, frame: object) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            raise pending("task terminated by revoke")
        d = self.deadlines
        if d is None:
            return
        if d.soft is not None and not self._soft_fired:
            self._soft_fired = True
            self._schedule()
            raise SoftTimeLimitExceeded(f"soft time limit ({d.soft_limit:g}s) exceeded")
        if self.enforce_hard and d.hard is not None:
            self.deadlines = None
            raise TimeLimitExceeded(f"time limit ({d.hard_limit:g}s) exceeded")


def raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> bool:
    """Raise ``exc_type`` in another thread at its next Python instruction."""
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
    )
    return bool(done == 1)


def main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
