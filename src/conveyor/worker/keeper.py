"""The lease keeper: a thread that keeps this process's deliveries alive.

Every tick it renews the leases of the process's consumers (so a task may run for hours
and never be handed to another worker), reclaims the deliveries of consumers whose
lease expired anywhere in the cluster (a SIGKILLed worker's tasks come back within one
lease), and gives back the prefetched messages of a loop whose oldest attempt has run
longer than ``worker_prefetch_release_seconds``.

In the threads and solo pools it also enforces time limits and revoke-terminate: it
reads each loop's running attempts (their task id and deadlines) and asks the pool to
stop one by the pool's own means (:meth:`~conveyor.worker.pool.Pool.interrupt`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .. import states
from ..exceptions import SoftTimeLimitExceeded, TaskRevokedError, TimeLimitExceeded
from ..stores.transport import leases_of
from .loop import TRANSIENT, ConsumeLoop
from .revocations import RevocationCache
from .timelimits import GRACE_SECONDS, Deadlines
from .verdicts import record_ended

if TYPE_CHECKING:
    from ..app import Conveyor
    from .attempt import Attempt
    from .pool import Pool

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
        pool: Pool | None = None,
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
        # threads and solo: this thread enforces time limits and terminate through the
        # pool, so it wakes often (the checks are in memory; the broker is still asked
        # once per interval). prefork: the supervisor does, by killing the child.
        self.pool = pool
        self._wait = min(self.interval / 2, 0.05) if pool is not None else self.interval / 2
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
        leases = leases_of(self.app.broker)  # None: deliveries end with their connection
        coordinator = self.app.coordinator
        self.give_back_stalled(now)
        if self.pool is not None:
            self.enforce(self.pool, now)
        if now - self._last_renew >= self.interval:
            self._last_renew = now
            consumer_ids = [loop.consumer_id for loop in self.loops]
            if leases is not None:
                leases.renew(consumer_ids, self.lease)
            coordinator.renew_holders(consumer_ids, self.lease)
            if self.revocations is not None:
                self.revocations.refresh(coordinator)
            if self.reclaim and leases is not None:
                moved = leases.reclaim()
                if moved:
                    logger.warning("requeued %d tasks from workers that stopped renewing", moved)
            if self.on_tick is not None:
                self.on_tick()

    def give_back_stalled(self, now: float) -> None:
        for loop in self.loops:
            if not loop.buffer or not _runs_longer(loop, now - self.release_after):
                continue
            unstarted = loop.give_back()
            if unstarted:
                self.app.broker.release(loop.consumer_id, unstarted)
                logger.debug("gave back %d prefetched tasks behind a slow one", len(unstarted))

    # time limits and terminate (threads and solo) ---------------------------------------
    def enforce(self, pool: Pool, now: float) -> None:
        terminate = self.revocations.terminate if self.revocations is not None else {}
        for loop in self.loops:
            for attempt in list(loop.running.values()):
                if attempt.executing:
                    self._enforce_one(pool, attempt, terminate, now)

    def _enforce_one(
        self, pool: Pool, attempt: Attempt, terminate: dict[str, str], now: float
    ) -> None:
        task_id, deadlines = attempt.task_id, attempt.deadlines
        if task_id is None:
            return
        if task_id in terminate:
            self._interrupt(pool, attempt, task_id, TaskRevokedError)
        if deadlines is None:
            return
        if not pool.raises_time_limits:  # else the pool's own alarm raises them
            if deadlines.soft is not None and now >= deadlines.soft:
                self._interrupt(pool, attempt, task_id, SoftTimeLimitExceeded)
            if deadlines.hard is not None and now >= deadlines.hard:
                self._interrupt(pool, attempt, task_id, TimeLimitExceeded)
        if deadlines.hard is not None and now >= deadlines.hard + GRACE_SECONDS:
            self._abandon(pool, attempt, task_id, deadlines)

    def _interrupt(
        self, pool: Pool, attempt: Attempt, task_id: str, exc_type: type[BaseException]
    ) -> None:
        key = (task_id, exc_type.__name__)
        if key in self._interrupted:
            return
        self._interrupted.add(key)
        if len(self._interrupted) > 10_000:
            self._interrupted.clear()
        pool.interrupt(attempt, exc_type)

    def _abandon(self, pool: Pool, attempt: Attempt, task_id: str, deadlines: Deadlines) -> None:
        """The task outlived its hard limit and the grace period: record the failure and
        end its lease, whatever its thread does next (its late outcome is dropped)."""
        if attempt.settled:
            return
        attempt.settled = True
        logger.error(
            "task %s ignored its time limit (%ss); recording TimeLimitExceeded",
            task_id,
            deadlines.hard_limit,
        )
        delivery = attempt.delivery
        record_ended(
            self.app,
            consumer_id=attempt.executor.consumer_id,
            tag=delivery.tag,
            task_id=task_id,
            status=states.FAILURE,
            exc=TimeLimitExceeded(f"time limit ({deadlines.hard_limit:g}s) exceeded"),
            worker=attempt.executor.hostname,
            body=delivery.body,
            queue=delivery.queue,
            hooks=attempt.executor.hooks,
        )
        pool.abandoned(attempt)


def _runs_longer(loop: ConsumeLoop, since: float) -> bool:
    """Has an attempt of this loop been there since before ``since``?"""
    return any(attempt.received < since for attempt in list(loop.running.values()))
