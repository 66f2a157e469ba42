"""What each prefork child is running, in memory shared with its supervisor.

The child writes its current task (id, delivery tag, hard deadline) when it starts one
and clears it when it ends: a ``struct.pack_into`` each, no system call. The supervisor
reads the slots on every tick to kill a child past its hard time limit, to terminate a
revoked task, and to know which task a dead child was running.
"""

from __future__ import annotations

import mmap
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .timelimits import Deadlines

if TYPE_CHECKING:
    from .attempt import Attempt

__all__ = ["Slot", "SlotTracker", "Slots"]

# busy, hard deadline (monotonic, 0 = none), hard limit (s), started (epoch s; read by
# inspect active), task id, delivery tag, task name (its first 128 bytes: inspect active
# names the task even where the supervisor cannot read the message, on AMQP)
_FORMAT = struct.Struct("=Qddd64s32s128s")


@dataclass(frozen=True, slots=True)
class Slot:
    task_id: str
    tag: str
    hard_deadline: float | None
    hard_limit: float | None
    started: float = 0.0
    name: str = ""


class Slots:
    def __init__(self, count: int) -> None:
        self._memory = mmap.mmap(-1, _FORMAT.size * max(1, count))
        self.count = count

    def write(
        self, index: int, task_id: str, tag: str, deadlines: Deadlines | None, name: str = ""
    ) -> None:
        hard = deadlines.hard if deadlines is not None and deadlines.hard is not None else 0.0
        limit = deadlines.hard_limit if deadlines is not None and deadlines.hard_limit else 0.0
        _FORMAT.pack_into(
            self._memory,
            index * _FORMAT.size,
            1,
            hard,
            limit,
            time.time(),
            task_id.encode(),
            tag.encode(),
            name.encode()[:128],
        )

    def clear(self, index: int) -> None:
        _FORMAT.pack_into(self._memory, index * _FORMAT.size, 0, 0.0, 0.0, 0.0, b"", b"", b"")

    def read(self, index: int) -> Slot | None:
        busy, hard, limit, started, task_id, tag, name = _FORMAT.unpack_from(
            self._memory, index * _FORMAT.size
        )
        if not busy:
            return None
        return Slot(
            task_id.rstrip(b"\0").decode(),
            tag.rstrip(b"\0").decode(),
            hard or None,
            limit or None,
            started,
            name.rstrip(b"\0").decode(errors="replace"),
        )


class SlotTracker:
    """A child's view: its own slot, written as its attempt's task body starts and
    cleared as it ends (an attempt watcher of the child's loop)."""

    def __init__(self, slots: Slots, index: int) -> None:
        self.slots = slots
        self.index = index

    def started(self, attempt: Attempt) -> None:
        task_id = attempt.task_id
        assert task_id is not None
        name = attempt.envelope.task if attempt.envelope is not None else ""
        self.slots.write(self.index, task_id, attempt.tag, attempt.deadlines, name)

    def finished(self, attempt: Attempt) -> None:
        self.slots.clear(self.index)
