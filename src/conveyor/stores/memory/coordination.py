"""Scheduling and flow control in memory: the same primitives as Redis and SQLite (beat's
lease and schedule state, unique sends, the rate limiter, concurrency slots, deferral),
for one process. Mixed into :class:`~conveyor.stores.memory.transport.MemoryBroker`; everything
happens under the broker's one lock, so each step is atomic as a script would be.
"""

from __future__ import annotations

import heapq
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..transport import Delivery

if TYPE_CHECKING:
    from .transport import _State

__all__ = ["MemoryFlowControl"]

_HOLD_GRACE = 60.0


@dataclass
class _Flow:
    """What a memory:// URL holds for flow control (times are time.time())."""

    leases: dict[str, tuple[str, float]] = field(default_factory=dict)  # name -> owner, until
    schedule: dict[str, float] = field(default_factory=dict)
    unique: dict[str, tuple[str, float]] = field(default_factory=dict)  # key -> task id, until
    tat: dict[str, float] = field(default_factory=dict)
    holds: dict[str, float] = field(default_factory=dict)  # task id -> kept until
    overrides: dict[str, str] = field(default_factory=dict)
    slots: dict[str, set[tuple[str, str]]] = field(default_factory=dict)


_flows: weakref.WeakValueDictionary[str, _Flow] = weakref.WeakValueDictionary()
_flows_lock = threading.Lock()


def _flow_for(url: str) -> _Flow:
    with _flows_lock:
        flow = _flows.get(url)
        if flow is None:
            flow = _flows[url] = _Flow()
        return flow


class MemoryFlowControl:
    """The flow-control half of the memory broker (see the module docstring)."""

    if TYPE_CHECKING:
        url: str
        state: _State

        def publish(
            self,
            queue: str,
            bodies: Sequence[bytes],
            *,
            priority: int = 0,
            countdown: float | None = None,
            eta: float | None = None,
        ) -> None: ...

    _flow_state: _Flow | None = None

    @property
    def _flow(self) -> _Flow:
        # Held by the broker, so it lives as long as a broker on this URL does.
        if self._flow_state is None:
            self._flow_state = _flow_for(self.url)
        return self._flow_state

    # leases (beat's leader) -----------------------------------------------------------
    def hold_lease(self, name: str, owner: str, ttl: float) -> bool:
        now = time.time()
        with self.state.cond:
            leases = self._flow.leases
            holder = leases.get(name)
            if holder is None or holder[0] == owner or holder[1] <= now:
                leases[name] = (owner, now + ttl)
                return True
            return False

    def drop_lease(self, name: str, owner: str) -> None:
        with self.state.cond:
            leases = self._flow.leases
            if name in leases and leases[name][0] == owner:
                del leases[name]

    def lease_owner(self, name: str) -> str | None:
        with self.state.cond:
            holder = self._flow.leases.get(name)
        return holder[0] if holder is not None and holder[1] > time.time() else None

    # beat's schedule state --------------------------------------------------------------
    def schedule_state(self, names: Sequence[str]) -> dict[str, float]:
        with self.state.cond:
            schedule = self._flow.schedule
            return {n: schedule[n] for n in names if n in schedule}

    def record_schedule_state(self, ticks: dict[str, float]) -> None:
        with self.state.cond:
            self._flow.schedule.update(ticks)

    # unique sends -----------------------------------------------------------------------
    def publish_unique(
        self,
        queue: str,
        body: bytes,
        *,
        key: str,
        task_id: str,
        ttl: float,
        priority: int = 0,
        countdown: float | None = None,
        eta: float | None = None,
    ) -> str | None:
        now = time.time()
        with self.state.cond:  # reentrant: publish() takes it too
            unique = self._flow.unique
            first = unique.get(key)
            if first is not None and first[1] > now:
                return first[0]
            self.publish(queue, (body,), priority=priority, countdown=countdown, eta=eta)
            unique[key] = (task_id, now + ttl)
            for stale in [k for k, (_, until) in unique.items() if until <= now]:
                del unique[stale]
        return None

    # rate limits ------------------------------------------------------------------------
    def acquire_rate(self, name: str, per_second: float, reservation: str) -> float:
        now = time.time()
        with self.state.cond:
            flow = self._flow
            if flow.holds.pop(reservation, 0.0) > now:
                return 0.0
            tat = max(flow.tat.get(name, now), now)
            flow.tat[name] = tat + 1.0 / per_second
            wait = tat - now
            if wait < 0.001:
                return 0.0
            flow.holds[reservation] = tat + _HOLD_GRACE
            return wait

    def set_rate_limit(self, name: str, rate: str | None) -> None:
        with self.state.cond:
            if rate is None:
                self._flow.overrides.pop(name, None)
            else:
                self._flow.overrides[name] = rate

    def rate_limits(self) -> dict[str, str]:
        with self.state.cond:
            return dict(self._flow.overrides)

    # concurrency slots ------------------------------------------------------------------
    def acquire_slot(self, key: str, limit: int, consumer_id: str, tag: str) -> bool:
        holder = (consumer_id, tag)
        state = self.state
        with state.cond:
            holders = self._flow.slots.setdefault(key, set())
            if holder in holders:
                return True
            if len(holders) >= limit:
                holders -= {h for h in holders if not self._holds(*h)}
                if len(holders) >= limit:
                    return False
            holders.add(holder)
            return True

    def _holds(self, consumer_id: str, tag: str) -> bool:
        state = self.state
        if state.leases.get(consumer_id, 0.0) <= time.monotonic():
            return False
        return tag == "" or int(tag) in state.inflight.get(consumer_id, {})

    def release_slot(self, key: str, consumer_id: str, tag: str) -> None:
        with self.state.cond:
            self._flow.slots.get(key, set()).discard((consumer_id, tag))

    # deferral ---------------------------------------------------------------------------
    def defer(self, consumer_id: str, delivery: Delivery, delay: float) -> None:
        state = self.state
        with state.cond:
            held = state.inflight.get(consumer_id, {}).pop(int(delivery.tag), None)
            if held is None:
                return
            held.message.deliveries = max(held.message.deliveries - 1, 0)
            due = time.time() + max(0.0, delay)
            entry = (due, next(state.seq), held.queue, held.priority, held.message)
            heapq.heappush(state.scheduled, entry)
            state.cond.notify_all()
