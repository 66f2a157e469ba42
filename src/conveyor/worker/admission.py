"""The admission gate: rate and concurrency limits, checked after a message is decoded and
before its task starts, across all workers together (promise 4).

A task that may not start now is not held: the broker defers its message (back to its
queue's ETA set, in one atomic step, not counted as a delivery) and the worker goes on
with the next one.

- Rate limits are a GCRA in the broker, keyed by task name, with a burst of one (as
  Celery's token bucket). Every check takes the next free start slot, now or later, so
  a message that must wait is deferred to exactly its slot and keeps it: when it comes
  back it runs, instead of queueing again (no churn however long the backlog).
- Concurrency limits are slots in the broker, held by a delivery. A slot lives only as
  long as its consumer's lease and the delivery's lease, so a SIGKILLed worker (its
  lease lapses, or its supervisor reclaims it) or a release that never arrived leaks
  nothing. A call that finds every slot taken is deferred with a short, growing delay.

Tasks with no limit pay one set lookup: which tasks are limited is known locally, and
run-time limits (``app.control.rate_limit``) are re-read from the broker once a second.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..exceptions import BrokerUnavailable
from ..limits import call_key, parse_rate
from ..stores.transport import require_deferrals

if TYPE_CHECKING:
    from ..app import Conveyor
    from ..message import Envelope
    from ..stores.transport import Delivery, Transport
    from ..task import Task

__all__ = ["Admission", "AdmissionGate"]

logger = logging.getLogger("conveyor.worker")

# The broker is unreachable for now (the loop's own handling takes over).
TRANSIENT = (BrokerUnavailable,)
REFRESH_SECONDS = 1.0
# A call that found its concurrency slots taken waits 50 ms, then twice as long each
# time it is turned away again, up to 1 s (with jitter, so waiters spread out).
FIRST_WAIT = 0.05
MAX_WAIT = 1.0


@dataclass(frozen=True, slots=True)
class Admission:
    """The gate's answer for one message: admitted or deferred, and the concurrency
    slot (key, tag) it holds while it runs."""

    admitted: bool
    slot: tuple[str, str] | None = None

    def __bool__(self) -> bool:
        return self.admitted


DEFERRED = Admission(False)
ADMITTED = Admission(True)  # no limit to hold


class AdmissionGate:
    """One consumer's gate, shared by the attempts it feeds (each holds its own slot in
    the :class:`Admission` it was given; the gate holds none)."""

    def __init__(self, app: Conveyor, broker: Transport, consumer_id: str) -> None:
        self.app = app
        self.leases = require_deferrals(broker, "deferring rate-limited tasks")
        self.coordinator = app.coordinator
        self.consumer_id = consumer_id
        conf = app.conf
        self.acks_late_default = bool(conf.task_acks_late)
        self.default_rate = parse_rate(conf.task_default_rate_limit)
        self._overrides: dict[str, float | None] = {}
        self._limited: frozenset[str] = frozenset()
        self._refresh_at = 0.0
        self._turned_away: dict[str, int] = {}

    def watches(self, name: str) -> bool:
        """Does this task have a limit? (The hot path: no round trip.)"""
        now = time.monotonic()
        if now >= self._refresh_at:
            self._refresh(now)
        return name in self._limited

    def _refresh(self, now: float) -> None:
        self._refresh_at = now + REFRESH_SECONDS
        try:
            self._overrides = {n: parse_rate(r) for n, r in self.coordinator.rate_limits().items()}
        except (*TRANSIENT, ValueError) as exc:
            logger.debug("could not read run-time rate limits: %s", exc)
        tasks = self.app.tasks
        self._limited = frozenset(
            name
            for name, task in tasks.items()
            if self.default_rate or task.rate_limit or task.concurrency_limit
        ) | frozenset(self._overrides)

    def rate_of(self, task: Task[..., Any]) -> float | None:
        """Tasks per second allowed now: the run-time limit, else the task's, else the
        default."""
        if task.name in self._overrides:
            return self._overrides[task.name]
        if task.rate_limit:
            return parse_rate(task.rate_limit)
        return self.default_rate

    def admit(self, task: Task[..., Any], envelope: Envelope, delivery: Delivery) -> Admission:
        """Truthy: run it now (holding the returned concurrency slot, if any, until
        :meth:`release`). Falsy: it was deferred in the broker. Raises
        ConfigurationError when its key cannot be read."""
        coordinator = self.coordinator
        slot: tuple[str, str] | None = None
        limit = task.concurrency_limit
        if limit:
            key = call_key(task, task.concurrency_key, envelope.args, envelope.kwargs)
            slot_key = task.name if key is None else f"{task.name}:{key}"
            acks_late = task.acks_late if task.acks_late is not None else self.acks_late_default
            # An early-acked message leaves the in-flight set before it runs: its slot is
            # then held by the consumer's lease alone.
            slot = (slot_key, delivery.tag if acks_late else "")
            if not coordinator.acquire_slot(slot_key, int(limit), self.consumer_id, slot[1]):
                self._defer(delivery, self._backoff(envelope.id), "concurrency limit")
                return DEFERRED
        rate = self.rate_of(task)
        if rate is not None:
            wait = coordinator.acquire_rate(task.name, rate, envelope.id)
            if wait > 0:
                if slot is not None:
                    coordinator.release_slot(slot[0], self.consumer_id, slot[1])
                self._defer(delivery, wait, "rate limit")
                return DEFERRED
        self._turned_away.pop(envelope.id, None)
        return ADMITTED if slot is None else Admission(True, slot)

    def release(self, admission: Admission) -> None:
        """The task ended: free its slot at once (its ack would free it anyway)."""
        slot = admission.slot
        if slot is not None:
            try:
                self.coordinator.release_slot(slot[0], self.consumer_id, slot[1])
            except TRANSIENT as exc:  # the slot lapses with the delivery or the lease
                logger.debug("could not release a concurrency slot: %s", exc)

    def _backoff(self, task_id: str) -> float:
        turned = self._turned_away
        if len(turned) > 10_000:
            turned.clear()
        n = turned[task_id] = turned.get(task_id, 0) + 1
        return min(MAX_WAIT, FIRST_WAIT * 2.0 ** min(n - 1, 10)) * random.uniform(0.5, 1.5)

    def _defer(self, delivery: Delivery, delay: float, why: str) -> None:
        logger.debug("deferred a message by %.3fs (%s)", delay, why)
        self.leases.defer(self.consumer_id, delivery, delay)
