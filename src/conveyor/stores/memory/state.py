"""What a memory:// URL holds: queues, leases, and the coordination records, shared by
every transport and coordinator made on that URL while any of them lives."""

from __future__ import annotations

import heapq
import itertools
import threading
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..coordination import DeadLetter
from ..transport import PRIORITY_LEVELS

__all__ = ["Held", "MemoryState", "Message", "state_for"]


@dataclass(slots=True)
class Message:
    body: bytes
    deliveries: int = 0  # leases so far


@dataclass(slots=True)
class Held:
    queue: str
    priority: int
    message: Message


def levels_of() -> list[deque[Message]]:
    return [deque() for _ in range(PRIORITY_LEVELS)]


@dataclass
class MemoryState:
    """Everything a memory:// URL holds."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    queues: dict[str, list[deque[Message]]] = field(default_factory=dict)
    # (due, seq, queue, priority, message): the ETA messages, earliest first
    scheduled: list[tuple[float, int, str, int, Message]] = field(default_factory=list)
    inflight: dict[str, dict[int, Held]] = field(default_factory=dict)
    leases: dict[str, float] = field(default_factory=dict)  # consumer -> deadline (monotonic)
    dead: list[DeadLetter] = field(default_factory=list)
    workers: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)
    revoked: dict[str, tuple[float, str | None]] = field(
        default_factory=dict
    )  # id -> expiry, signal
    revoked_version: int = 0
    tags: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    seq: itertools.count[int] = field(default_factory=itertools.count)

    def levels(self, queue: str) -> list[deque[Message]]:
        levels = self.queues.get(queue)
        if levels is None:
            levels = self.queues[queue] = levels_of()
        return levels

    def promote(self, now: float) -> float | None:
        """Move due ETA messages to the front of their level (they are already late);
        returns the next due time."""
        scheduled = self.scheduled
        while scheduled and scheduled[0][0] <= now:
            _, _, queue, priority, message = heapq.heappop(scheduled)
            self.levels(queue)[priority].appendleft(message)
        return scheduled[0][0] if scheduled else None

    def give_back(self, held: Held) -> None:
        self.levels(held.queue)[held.priority].appendleft(held.message)


_states: weakref.WeakValueDictionary[str, MemoryState] = weakref.WeakValueDictionary()
_states_lock = threading.Lock()


def state_for(url: str) -> MemoryState:
    with _states_lock:
        state = _states.get(url)
        if state is None:
            state = MemoryState()
            _states[url] = state
        return state
