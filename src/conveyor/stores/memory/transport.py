"""The in-process broker: a real implementation for one process (tests, the threads and
solo pools, eager-like setups), keeping every promise of the interface in memory.

Brokers made from the same URL share their state while any of them lives, so an app and
a test that both open ``memory://`` see the same queues (``memory://name`` for another).
One lock guards everything; a condition wakes blocked fetches the moment a message
arrives (no polling), and their timers run to the earliest ETA.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..transport import (
    PRIORITY_LEVELS,
    Broker,
    BrokerConsumer,
    DeadLetter,
    Delivery,
    QueueStats,
    ResultWrite,
    Revocations,
    priority_level,
)
from .coordination import MemoryFlowControl

__all__ = ["MemoryBroker", "MemoryConsumer"]


@dataclass(slots=True)
class _Message:
    body: bytes
    deliveries: int = 0  # leases so far


@dataclass(slots=True)
class _Held:
    queue: str
    priority: int
    message: _Message


def _levels() -> list[deque[_Message]]:
    return [deque() for _ in range(PRIORITY_LEVELS)]


@dataclass
class _State:
    """Everything a memory:// URL holds."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    queues: dict[str, list[deque[_Message]]] = field(default_factory=dict)
    # (due, seq, queue, priority, message): the ETA messages, earliest first
    scheduled: list[tuple[float, int, str, int, _Message]] = field(default_factory=list)
    inflight: dict[str, dict[int, _Held]] = field(default_factory=dict)
    leases: dict[str, float] = field(default_factory=dict)  # consumer -> deadline (monotonic)
    dead: list[DeadLetter] = field(default_factory=list)
    workers: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)
    revoked: dict[str, tuple[float, str | None]] = field(
        default_factory=dict
    )  # id -> expiry, signal
    revoked_version: int = 0
    tags: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    seq: itertools.count[int] = field(default_factory=itertools.count)

    def levels(self, queue: str) -> list[deque[_Message]]:
        levels = self.queues.get(queue)
        if levels is None:
            levels = self.queues[queue] = _levels()
        return levels

    def promote(self, now: float) -> float | None:
        """Move due ETA messages to the front of their level (they are already late);
        returns the next due time."""
        scheduled = self.scheduled
        while scheduled and scheduled[0][0] <= now:
            _, _, queue, priority, message = heapq.heappop(scheduled)
            self.levels(queue)[priority].appendleft(message)
        return scheduled[0][0] if scheduled else None

    def give_back(self, held: _Held) -> None:
        self.levels(held.queue)[held.priority].appendleft(held.message)


_states: weakref.WeakValueDictionary[str, _State] = weakref.WeakValueDictionary()
_states_lock = threading.Lock()


def _state_for(url: str) -> _State:
    with _states_lock:
        state = _states.get(url)
        if state is None:
            state = _State()
            _states[url] = state
        return state


class MemoryBroker(MemoryFlowControl, Broker):
    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.state = _state_for(url)

    def publish(
        self,
        queue: str,
        bodies: Sequence[bytes],
        *,
        priority: int = 0,
        countdown: float | None = None,
        eta: float | None = None,
    ) -> None:
        level = priority_level(priority)
        now = time.time()
        due = now + max(0.0, countdown) if countdown is not None else eta
        state = self.state
        with state.cond:
            levels = state.levels(queue)
            if due is not None and due > now:
                for body in bodies:
                    entry = (due, next(state.seq), queue, level, _Message(body))
                    heapq.heappush(state.scheduled, entry)
            else:
                levels[level].extend(_Message(body) for body in bodies)
            state.cond.notify_all()

    def consumer(
        self,
        queues: Sequence[str],
        consumer_id: str,
        lease_seconds: float,
        results: Any = None,
    ) -> BrokerConsumer:
        backend = results if self.colocated_with(results) else None
        return MemoryConsumer(self, queues, consumer_id, lease_seconds, backend)

    def renew(self, consumer_ids: Sequence[str], lease_seconds: float) -> None:
        deadline = time.monotonic() + lease_seconds
        with self.state.cond:
            for consumer_id in consumer_ids:
                self.state.leases[consumer_id] = deadline

    def reclaim(self, consumer_id: str | None = None) -> int:
        state = self.state
        with state.cond:
            if consumer_id is not None:
                victims = [consumer_id]
            else:
                now = time.monotonic()
                victims = [c for c, deadline in state.leases.items() if deadline <= now]
            moved = 0
            for victim in victims:
                state.leases.pop(victim, None)
                held = state.inflight.pop(victim, {})
                for tag in sorted(held, reverse=True):  # so the first ends up in front
                    state.give_back(held[tag])
                moved += len(held)
            if moved:
                state.cond.notify_all()
            return moved

    def release(self, consumer_id: str, deliveries: Sequence[Delivery]) -> None:
        state = self.state
        with state.cond:
            held = state.inflight.get(consumer_id, {})
            for delivery in reversed(deliveries):
                entry = held.pop(int(delivery.tag), None)
                if entry is not None:
                    # It never started, so it was not tried: give the delivery back too.
                    entry.message.deliveries = max(entry.message.deliveries - 1, 0)
                    state.give_back(entry)
            state.cond.notify_all()

    def discard(self, consumer_id: str, tags: Sequence[str]) -> None:
        with self.state.cond:
            held = self.state.inflight.get(consumer_id, {})
            for tag in tags:
                held.pop(int(tag), None)

    def leased_body(self, consumer_id: str, tag: str) -> bytes | None:
        with self.state.cond:
            held = self.state.inflight.get(consumer_id, {}).get(int(tag))
            return held.message.body if held is not None else None

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

    def dead_letter(self, body: bytes, queue: str, reason: str) -> None:
        with self.state.cond:
            self.state.dead.append(DeadLetter(uuid.uuid4().hex, queue, reason, time.time(), body))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self.state.cond:
            return list(reversed(self.state.dead[-limit:])) if limit > 0 else []

    def queues(self) -> list[QueueStats]:
        state = self.state
        with state.cond:
            now = time.time()
            stats = {}
            for name, levels in state.queues.items():
                by_priority = {i: len(level) for i, level in enumerate(levels) if level}
                stats[name] = QueueStats(name, sum(by_priority.values()), 0, by_priority)
            for due, _, queue, priority, _ in state.scheduled:
                entry = stats[queue]
                if due > now:
                    entry.scheduled += 1
                else:
                    entry.ready += 1
                    entry.by_priority[priority] = entry.by_priority.get(priority, 0) + 1
            return [stats[name] for name in sorted(stats)]

    def purge(self, queues: Sequence[str]) -> int:
        state = self.state
        names = set(queues)
        with state.cond:
            count = 0
            for name in names:
                for level in state.queues.get(name, ()):
                    count += len(level)
                    level.clear()
            kept = [entry for entry in state.scheduled if entry[2] not in names]
            count += len(state.scheduled) - len(kept)
            heapq.heapify(kept)
            state.scheduled = kept
            return count

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

    def inflight_count(self) -> int:
        with self.state.cond:
            return sum(len(held) for held in self.state.inflight.values())

    def colocated_with(self, backend: object) -> bool:
        from .results import MemoryBackend

        return isinstance(backend, MemoryBackend)

    def close(self) -> None:
        """Nothing to close; the state lives while any broker on this URL does."""


class MemoryConsumer(BrokerConsumer):
    def __init__(
        self,
        broker: MemoryBroker,
        queues: Sequence[str],
        consumer_id: str,
        lease_seconds: float,
        results: Any,
    ) -> None:
        if not queues:
            raise ValueError("a consumer needs at least one queue")
        self.broker = broker
        self.state = broker.state
        self.consumer_id = consumer_id
        self.lease_seconds = lease_seconds
        self._queues = list(queues)
        self._turn = 0
        self._results = results
        self.carries_results = results is not None

    def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        state = self.state
        deadline = time.monotonic() + timeout
        with state.cond:
            while True:
                state.leases[self.consumer_id] = time.monotonic() + self.lease_seconds
                next_due = state.promote(time.time())
                got = self._take(limit)
                remaining = deadline - time.monotonic()
                if got or remaining <= 0:
                    return got
                if next_due is not None:
                    remaining = min(remaining, max(next_due - time.time(), 0.0))
                state.cond.wait(remaining)

    def _take(self, limit: int) -> list[Delivery]:
        state = self.state
        n = len(self._queues)
        order = [self._queues[(self._turn + i) % n] for i in range(n)]
        self._turn = (self._turn + 1) % n
        held = state.inflight.setdefault(self.consumer_id, {})
        got: list[Delivery] = []
        for queue in order:
            for priority, level in enumerate(state.queues.get(queue, ())):
                while level and len(got) < limit:
                    message = level.popleft()
                    message.deliveries += 1
                    tag = next(state.tags)
                    held[tag] = _Held(queue, priority, message)
                    delivery = Delivery(str(tag), message.body, queue, priority, message.deliveries)
                    got.append(delivery)
                if len(got) >= limit:
                    return got
        return got

    def ack(self, delivery: Delivery, result: ResultWrite | None = None) -> None:
        if result is not None and self._results is not None:
            self._results.store(result.task_id, result.payload, result.final)
        with self.state.cond:
            self.state.inflight.get(self.consumer_id, {}).pop(int(delivery.tag), None)

    def store(self, result: ResultWrite) -> bool:
        if self._results is None:
            return False
        self._results.store(result.task_id, result.payload, result.final)
        return True

    def release(self, deliveries: Sequence[Delivery]) -> None:
        self.broker.release(self.consumer_id, deliveries)

    def recover(self, known_tags: set[str]) -> int:
        with self.state.cond:
            tags = list(self.state.inflight.get(self.consumer_id, {}))
        lost = [Delivery(str(t), b"", "", 0) for t in sorted(tags) if str(t) not in known_tags]
        if lost:
            self.broker.release(self.consumer_id, lost)
        return len(lost)

    def flush(self) -> None:
        """Every ack is applied before it returns."""

    def close(self) -> None:
        """Nothing to close: leases stay until acked, released or reclaimed."""
