"""The lease keeper: a thread that keeps this process's deliveries alive.

Every tick it renews the leases of the process's consumers (so a task may run for hours
and never be handed to another worker), reclaims the deliveries of consumers whose
lease expired anywhere in the cluster (a SIGKILLed worker's tasks come back within one
lease), and gives back the prefetched messages of a loop whose current task has run
longer than ``worker_prefetch_release_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .loop import TRANSIENT, ConsumeLoop

if TYPE_CHECKING:
    from ..app import Conveyor

__all__ = ["LeaseKeeper"]

logger = logging.getLogger("conveyor.worker")


class LeaseKeeper(threading.Thread):
    def __init__(
        self,
        app: Conveyor,
        loops: Sequence[ConsumeLoop],
        stop: threading.Event,
        *,
        reclaim: bool = True,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name="conveyor-keeper", daemon=True)
        self.app = app
        self.loops = loops
        self.stop_event = stop
        self.reclaim = reclaim
        self.on_tick = on_tick
        conf = app.conf
        self.lease = float(conf.worker_lease_seconds)
        self.release_after = float(conf.worker_prefetch_release_seconds)
        # Renew three times per lease: two renewals may be lost before a lease lapses.
        self.interval = min(self.lease / 3, float(conf.worker_heartbeat_seconds), 1.0)

    def run(self) -> None:
        while not self.stop_event.wait(self.interval / 2):
            try:
                self.tick()
            except TRANSIENT as exc:
                logger.debug("keeper: broker unreachable (%s)", exc)
            except Exception:
                logger.exception("keeper tick failed")

    _last_renew = 0.0

    def tick(self) -> None:
        now = time.monotonic()
        broker = self.app.broker
        self.give_back_stalled(now)
        if now - self._last_renew >= self.interval:
            self._last_renew = now
            broker.renew([loop.consumer_id for loop in self.loops], self.lease)
            if self.reclaim:
                moved = broker.reclaim()
                if moved:
                    logger.warning("requeued %d tasks from workers that stopped renewing", moved)
            if self.on_tick is not None:
                self.on_tick()

    def give_back_stalled(self, now: float) -> None:
        for loop in self.loops:
            if loop.current is None or not loop.buffer:
                continue
            if now - loop.current_started < self.release_after:
                continue
            unstarted = loop.give_back()
            if unstarted:
                self.app.broker.release(loop.consumer_id, unstarted)
                logger.debug("gave back %d prefetched tasks behind a slow one", len(unstarted))
