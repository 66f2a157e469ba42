"""Tasks started, by name, counted in memory shared between a worker's processes.

A prefork child counts the tasks it starts in its own row; the supervisor sums the rows
for ``inspect stats`` (Celery's ``total``). Rows outlive the children that wrote them,
so totals survive a child being replaced. One ``struct.pack_into`` per task, no system
call; threads of one process share a row under a lock.
"""

from __future__ import annotations

import mmap
import struct
import threading
from collections.abc import Iterable

__all__ = ["TaskBoard"]

_COUNTER = struct.Struct("=Q")


class TaskBoard:
    def __init__(self, names: Iterable[str], rows: int) -> None:
        self.names = sorted(set(names))
        self.index = {name: i for i, name in enumerate(self.names)}
        self.rows = max(1, rows)
        width = max(1, len(self.names))
        self._width = width
        self._memory = mmap.mmap(-1, self.rows * width * _COUNTER.size)
        self._lock = threading.Lock()
        self.row = 0  # this process's row (a prefork child sets its own after fork)

    def count(self, name: str) -> None:
        column = self.index.get(name)
        if column is None:
            return
        offset = (self.row * self._width + column) * _COUNTER.size
        with self._lock:
            (value,) = _COUNTER.unpack_from(self._memory, offset)
            _COUNTER.pack_into(self._memory, offset, value + 1)

    def totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for column, name in enumerate(self.names):
            value = sum(
                _COUNTER.unpack_from(self._memory, (row * self._width + column) * _COUNTER.size)[0]
                for row in range(self.rows)
            )
            if value:
                totals[name] = value
        return totals
