"""Coordination in one process's memory: beat's lease and schedule state, unique sends,
the rate limiter, concurrency slots, revocations, the worker registry and dead letters,
each under the lock of its memory:// URL's state (``state.py``)."""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..coordination import Coordinator, DeadLetter, Revocations
from .state import state_for

if TYPE_CHECKING:
    from ..transport import Transport

__all__ = ["MemoryCoordinator"]

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


class MemoryCoordinator(Coordinator):
    """Every coordination interface for one memory:// URL.

    ``transport`` is the memory transport on the same URL when this coordinator was made
    by it (the default): then unique sends queue under the same lock, and slots check
    that their delivery is still leased. Without it the coordinator stands apart and
    keeps its own consumer leases for slots (:meth:`renew_holders`)."""

    def __init__(self, url: str = "memory://", *, transport: Transport | None = None) -> None:
        self.url = url
        self.state = state_for(url)
        # Held here, so it lives as long as a coordinator on this URL does.
        self._flow = _flow_for(url)
        self._transport = transport

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
    def claim_unique(self, key: str, task_id: str, ttl: float) -> str | None:
        now = time.time()
        with self.state.cond:
            unique = self._flow.unique
            first = unique.get(key)
            if first is not None and first[1] > now:
                return first[0]
            unique[key] = (task_id, now + ttl)
            for stale in [k for k, (_, until) in unique.items() if until <= now]:
                del unique[stale]
        return None

    def drop_unique(self, key: str, task_id: str) -> None:
        with self.state.cond:
            held = self._flow.unique.get(key)
            if held is not None and held[0] == task_id:
                del self._flow.unique[key]

    def publish_unique(
        self,
        transport: Transport,
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
        if transport is not self._transport:
            return super().publish_unique(
                transport, queue, body, key=key, task_id=task_id, ttl=ttl,
                priority=priority, countdown=countdown, eta=eta,
            )  # fmt: skip
        with self.state.cond:  # reentrant: publish() takes it too, so claim and queue are one step
            first = self._flow.unique.get(key)
            if first is not None and first[1] > time.time():
                return first[0]
            transport.publish(queue, (body,), priority=priority, countdown=countdown, eta=eta)
            self.claim_unique(key, task_id, ttl)
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
        if tag == "" or self._transport is None:  # apart: the consumer's lease alone
            return True
        return int(tag) in state.inflight.get(consumer_id, {})

    def release_slot(self, key: str, consumer_id: str, tag: str) -> None:
        with self.state.cond:
            self._flow.slots.get(key, set()).discard((consumer_id, tag))

    def renew_holders(self, consumer_ids: Sequence[str], lease_seconds: float) -> None:
        if self._transport is not None:
            return  # same URL: the transport's leases are the holders' leases
        deadline = time.monotonic() + lease_seconds
        with self.state.cond:
            for consumer_id in consumer_ids:
                self.state.leases[consumer_id] = deadline

    # revocations ------------------------------------------------------------------------
    def revoke(self, task_ids: Sequence[str], ttl: float, terminate: str | None = None) -> None:
        state = self.state
        with state.cond:
            now = time.time()
            for task_id in task_ids:
                state.revoked[task_id] = (now + ttl, terminate)
            for task_id in [t for t, (expiry, _) in state.revoked.items() if expiry <= now]:
                del state.revoked[task_id]
            state.revoked_version += 1

    def revocations(self, known_version: int) -> Revocations | None:
        state = self.state
        with state.cond:
            if state.revoked_version == known_version:
                return None
            now = time.time()
            live = {t: sig for t, (expiry, sig) in state.revoked.items() if expiry > now}
            return Revocations(
                state.revoked_version,
                frozenset(live),
                {t: sig for t, sig in live.items() if sig},
            )

    # the worker registry --------------------------------------------------------------
    def announce_worker(self, name: str, info: dict[str, Any], ttl: float) -> None:
        with self.state.cond:
            self.state.workers[name] = (dict(info), time.monotonic() + ttl)

    def retire_worker(self, name: str) -> None:
        with self.state.cond:
            self.state.workers.pop(name, None)

    def workers(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self.state.cond:
            workers = self.state.workers
            for name in [n for n, (_, expires) in workers.items() if expires <= now]:
                del workers[name]
            return [dict(info) for _, (info, _) in sorted(workers.items())]

    # dead letters -----------------------------------------------------------------------
    def dead_letter(self, body: bytes, queue: str, reason: str) -> None:
        with self.state.cond:
            self.state.dead.append(DeadLetter(uuid.uuid4().hex, queue, reason, time.time(), body))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self.state.cond:
            return list(reversed(self.state.dead[-limit:])) if limit > 0 else []

    def dead_letter_by_id(self, letter_id: str) -> DeadLetter | None:
        with self.state.cond:
            return next((d for d in self.state.dead if d.id == letter_id), None)

    def remove_dead_letters(self, letter_ids: Sequence[str] | None = None) -> int:
        state = self.state
        with state.cond:
            before = len(state.dead)
            if letter_ids is None:
                state.dead.clear()
            else:
                doomed = set(letter_ids)
                state.dead[:] = [d for d in state.dead if d.id not in doomed]
            return before - len(state.dead)

    def close(self) -> None:
        """Nothing to close; the state lives while anything on this URL does."""
