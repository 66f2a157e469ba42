"""The lease keeper: a thread that keeps this process's deliveries alive.

Every tick it renews the leases of the process's consumers (so a task may run for hours
and never be handed to another worker), reclaims the deliveries of consumers whose
lease expired anywhere in the cluster (a SIGKILLed worker's tasks come back within one
lease), and gives back the prefetched messages of a loop whose current task has run
longer than ``worker_prefetch_release_seconds``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .. import states
from ..exceptions import SoftTimeLimitExceeded, TaskRevokedError, TimeLimitExceeded
from ..stores.transport import Delivery
from .loop import TRANSIENT, ConsumeLoop
from .revocations import RevocationCache
from .timelimits import GRACE_SECONDS, Deadlines, raise_in_thread
from .verdicts import record_ended

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
        revocations: RevocationCache | None = None,
        enforce_limits: bool = False,
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
        self.revocations = revocations
        # threads and solo: this thread enforces time limits and terminate, so it wakes
        # often (the checks are in memory; the broker is still asked once per interval).
        self.enforce_limits = enforce_limits
        self._wait = min(self.interval / 2, 0.05) if enforce_limits else self.interval / 2
        self._interrupted: set[tuple[str, str]] = set()

    def run(self) -> None:
        while not self.stop_event.wait(self._wait):
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
        if self.enforce_limits:
            self.enforce(now)
        if now - self._last_renew >= self.interval:
            self._last_renew = now
            broker.renew([loop.consumer_id for loop in self.loops], self.lease)
            if self.revocations is not None:
                self.revocations.refresh(broker)
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

    # time limits and terminate (threads and solo) ---------------------------------------
    def enforce(self, now: float) -> None:
        terminate = self.revocations.terminate if self.revocations is not None else {}
        for loop in self.loops:
            delivery, task_id, deadlines = loop.current, loop.request_id, loop.deadlines
            if delivery is None or task_id is None:
                continue
            if task_id in terminate:
                self._interrupt(loop, task_id, TaskRevokedError)
            if deadlines is None:
                continue
            if loop.alarm is None:  # the alarm does these on the main thread
                if deadlines.soft is not None and now >= deadlines.soft:
                    self._interrupt(loop, task_id, SoftTimeLimitExceeded)
                if deadlines.hard is not None and now >= deadlines.hard:
                    self._interrupt(loop, task_id, TimeLimitExceeded)
            if deadlines.hard is not None and now >= deadlines.hard + GRACE_SECONDS:
                self._abandon(loop, delivery, task_id, deadlines)

    def _interrupt(self, loop: ConsumeLoop, task_id: str, exc_type: type[BaseException]) -> None:
        key = (task_id, exc_type.__name__)
        if key in self._interrupted:
            return
        self._interrupted.add(key)
        if len(self._interrupted) > 10_000:
            self._interrupted.clear()
        if loop.alarm is not None:
            loop.alarm.interrupt(exc_type)
        else:
            raise_in_thread(loop.thread_id, exc_type)

    def _abandon(
        self, loop: ConsumeLoop, delivery: Delivery, task_id: str, deadlines: Deadlines
    ) -> None:
        """The task outlived its hard limit and the grace period: record the failure and
        end its lease, whatever its thread does next."""
        if loop.abandoned == delivery.tag:
            return
        loop.abandoned = delivery.tag
        logger.error(
            "task %s ignored its time limit (%ss); recording TimeLimitExceeded",
            task_id,
            deadlines.hard_limit,
        )
        record_ended(
            self.app,
            consumer_id=loop.consumer_id,
            tag=delivery.tag,
            task_id=task_id,
            status=states.FAILURE,
            exc=TimeLimitExceeded(f"time limit ({deadlines.hard_limit:g}s) exceeded"),
            worker=loop.hostname,
            body=delivery.body,
            queue=delivery.queue,
        )
        if loop.alarm is not None:
            # solo: the main thread cannot be taken back from the task; leave so the
            # process manager starts a fresh worker (documented in timelimits.py).
            logging.shutdown()
            os._exit(3)
