"""``--autoscale=MAX,MIN``: a pool that grows while tasks wait and shrinks when idle.

As Celery's autoscaler does: the pool starts with MIN processes (prefork) or threads;
each tick, when every one of them is busy and messages wait in the worker's queues, it
grows by as many as wait, up to MAX; when some have been idle for
``worker_autoscale_keepalive`` seconds (Celery's ``AUTOSCALE_KEEPALIVE``, 30 s) since the
last change, it shrinks to what is busy, down to MIN. A process or thread that is let go
finishes its running task first.

The pool offers what the autoscaler reads and changes (:class:`Scalable`); the
``pool_grow`` / ``pool_shrink`` control commands go through :meth:`Autoscaler.force`,
which moves the bounds as Celery's do (growing past MAX raises MAX; shrinking below MIN
lowers MIN), so the autoscaler does not undo them at its next tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from ..exceptions import ConfigurationError

__all__ = ["Autoscaler", "Scalable", "parse_autoscale"]

logger = logging.getLogger("conveyor.worker")


class Scalable(Protocol):
    """A pool whose size changes while it runs."""

    @property
    def concurrency(self) -> int:
        """How many processes (or threads) it has now."""
        ...

    def busy(self) -> int:
        """How many of them run a task now."""
        ...

    def grow(self, n: int) -> None: ...

    def shrink(self, n: int) -> None: ...


def parse_autoscale(value: str) -> tuple[int, int]:
    """``"MAX,MIN"`` (or ``"MAX"``: MIN 0 as in Celery, kept at least 1 here) ->
    ``(max, min)``."""
    parts = [p.strip() for p in value.split(",")]
    try:
        numbers = [int(p) for p in parts if p]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or len(numbers) != len(parts):
        raise ConfigurationError(f"--autoscale expects MAX,MIN (two integers), got {value!r}")
    high = numbers[0]
    low = max(1, numbers[1] if len(numbers) == 2 else 1)
    if high < low:
        raise ConfigurationError(f"--autoscale MAX ({high}) is below MIN ({low})")
    return high, low


class Autoscaler:
    def __init__(
        self,
        pool: Scalable,
        bounds: tuple[int, int],
        waiting: Callable[[], int],
        keepalive: float,
    ) -> None:
        self.pool = pool
        self.max, self.min = bounds
        self.waiting = waiting  # messages ready in the worker's queues
        self.keepalive = keepalive
        self.last_change = time.monotonic()

    def tick(self, now: float | None = None) -> None:
        """Grow or shrink once, if the pool's load says so."""
        now = time.monotonic() if now is None else now
        size, busy = self.pool.concurrency, self.pool.busy()
        if busy >= size and size < self.max:
            waiting = self.waiting()
            if waiting > 0:
                self._resize(min(waiting, self.max - size), now)
                return
        if busy >= size:
            self.last_change = now  # fully used counts as activity
            return
        target = max(busy, self.min)
        if size > target and now - self.last_change >= self.keepalive:
            self._resize(target - size, now)

    def force(self, n: int) -> None:
        """``pool_grow`` (n > 0) / ``pool_shrink`` (n < 0), moving the bounds to allow it."""
        target = self.pool.concurrency + n
        self.max = max(self.max, target)
        self.min = max(1, min(self.min, target))
        self._resize(n, time.monotonic())

    def _resize(self, n: int, now: float) -> None:
        if n > 0:
            logger.info("autoscale: growing the pool by %d to %d", n, self.pool.concurrency + n)
            self.pool.grow(n)
        elif n < 0:
            logger.info("autoscale: shrinking the pool by %d to %d", -n, self.pool.concurrency + n)
            self.pool.shrink(-n)
        self.last_change = now
