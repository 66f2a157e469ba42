"""The in-process broker: a real implementation for one process (tests, the threads and
solo pools, eager-like setups), keeping every promise of the interface in memory.

Brokers made from the same URL share their state while any of them lives, so an app and
a test that both open ``memory://`` see the same queues (``memory://name`` for another).
One lock guards everything; a condition wakes blocked fetches the moment a message
arrives (no polling), and their timers run to the earliest ETA.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..coordination import CoordinatingStore, Coordinator
from ..eventlog import EventLog, EventLogStore
from ..mailbox import Mailbox, MailboxStore
from ..probe import Scheduled, ScheduledProbe, WaitingProbe, waiting_since
from ..transport import (
    Delivery,
    LeasedDeliveries,
    QueueStats,
    ResultWrite,
    Transport,
    TransportConsumer,
    priority_level,
)
from .coordination import MemoryCoordinator
from .state import Held, Message, state_for

if TYPE_CHECKING:
    from ..results import ResultBackend


__all__ = ["MemoryConsumer", "MemoryTransport"]


class MemoryTransport(
    Transport, LeasedDeliveries, CoordinatingStore, MailboxStore, EventLogStore, WaitingProbe,
    ScheduledProbe,
):
    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.location = url
        self.state = state_for(url)
        self._coordinator: MemoryCoordinator | None = None

    def coordination(self) -> Coordinator:
        if self._coordinator is None:
            self._coordinator = MemoryCoordinator(self.url, transport=self)
        return self._coordinator

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
                    entry = (due, next(state.seq), queue, level, Message(body))
                    heapq.heappush(state.scheduled, entry)
            else:
                levels[level].extend(Message(body) for body in bodies)
            state.cond.notify_all()

    def consumer(
        self,
        queues: Sequence[str],
        consumer_id: str,
        lease_seconds: float,
        results: ResultBackend | None = None,
    ) -> TransportConsumer:
        carried = results if results is not None and self.carries_results_of(results) else None
        return MemoryConsumer(self, queues, consumer_id, lease_seconds, carried)

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

    def inflight_count(self) -> int:
        with self.state.cond:
            return sum(len(held) for held in self.state.inflight.values())

    def close(self) -> None:
        """Nothing to close; the state lives while any broker on this URL does."""

    # capabilities beside the interface (stores/mailbox.py, eventlog.py, probe.py) ----
    def control_mailbox(self) -> Mailbox:
        from .mailbox import MemoryMailbox

        return MemoryMailbox(self)

    def event_log(self) -> EventLog:
        from .eventlog import MemoryEventLog

        return MemoryEventLog(self)

    def oldest_waiting(self, queues: Sequence[str]) -> dict[str, float]:
        oldest: dict[str, float] = {}
        with self.state.cond:
            for queue in queues:
                times = [
                    t
                    for level in self.state.queues.get(queue, ())
                    if level and (t := waiting_since(level[0].body)) is not None
                ]
                if times:
                    oldest[queue] = min(times)
        return oldest

    def scheduled(self, queues: Sequence[str], limit: int) -> list[Scheduled]:
        with self.state.cond:
            entries = sorted(
                (due, seq, queue, level, message.body)
                for due, seq, queue, level, message in self.state.scheduled
                if queue in queues
            )
        held: list[Scheduled] = []
        taken: dict[str, int] = {}
        for due, _, queue, level, body in entries:
            if taken.get(queue, 0) < limit:
                taken[queue] = taken.get(queue, 0) + 1
                held.append(Scheduled(queue, due, level, body))
        return held


class MemoryConsumer(TransportConsumer):
    def __init__(
        self,
        broker: MemoryTransport,
        queues: Sequence[str],
        consumer_id: str,
        lease_seconds: float,
        results: ResultBackend | None,
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
                    held[tag] = Held(queue, priority, message)
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
