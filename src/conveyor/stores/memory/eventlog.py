"""The event stream in memory: a bounded deque beside the memory transport's state."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..eventlog import EventLog

if TYPE_CHECKING:
    from .transport import MemoryTransport

__all__ = ["MemoryEventLog"]

_LOGS: dict[int, tuple[threading.Lock, deque[tuple[int, bytes]], list[int]]] = {}


class MemoryEventLog(EventLog):
    def __init__(self, transport: MemoryTransport) -> None:
        key = id(transport.state)
        if key not in _LOGS:
            _LOGS[key] = (threading.Lock(), deque(), [0])
        self.lock, self.events, self.counter = _LOGS[key]

    def append(self, records: Sequence[bytes], max_len: int) -> None:
        with self.lock:
            for record in records:
                self.counter[0] += 1
                self.events.append((self.counter[0], record))
            while len(self.events) > max_len:
                self.events.popleft()

    def read(self, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        since = int(after) if after else 0
        with self.lock:
            picked = [(str(i), body) for i, body in self.events if i > since]
        return picked[:limit]
