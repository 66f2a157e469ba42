"""What the control responder sees of a worker and can change in it, per pool.

The prefork view reads the supervisor's shared slots (what each child runs); the
in-process view (threads, solo) reads the consume loops directly. Both change the
worker through the pool's own small methods: grow/shrink (prefork and threads, through
the pool's autoscaler when it has one: worker/autoscale.py), a new queue list, and
picking up changed task limits.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..worker.loop import ConsumeLoop
    from ..worker.main import Worker
    from ..worker.pool import Pool
    from ..worker.revocations import RevocationCache
    from ..worker.supervisor import Supervisor

__all__ = [
    "InProcessView",
    "PreforkView",
    "RunningTask",
    "UnsupportedCommand",
    "WorkerView",
    "resize",
]


class UnsupportedCommand(Exception):
    """This pool cannot do what the command asks (answered as an error)."""


@dataclass(frozen=True, slots=True)
class RunningTask:
    task_id: str
    tag: str
    consumer_id: str
    started: float  # epoch seconds
    pid: int
    name: str = ""  # the task's name, for when its message cannot be read (AMQP)


class WorkerView(Protocol):
    revocations: RevocationCache

    def running(self) -> list[RunningTask]: ...

    def consumer_ids(self) -> list[str]: ...

    def pool_info(self) -> dict[str, Any]: ...

    def grow(self, n: int) -> None: ...

    def shrink(self, n: int) -> None: ...

    def consume(self, queues: list[str]) -> None: ...

    def reload(self) -> None: ...


class PreforkView:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.worker: Worker = supervisor.worker
        self.revocations: RevocationCache = supervisor.revocations

    def running(self) -> list[RunningTask]:
        supervisor = self.supervisor
        running = []
        for child in list(supervisor.children.values()):
            slot = supervisor.slots.read(child.index - 1)
            if slot is not None:
                running.append(
                    RunningTask(
                        slot.task_id, slot.tag, child.consumer_id, slot.started, child.pid,
                        slot.name,
                    )
                )
        return running

    def consumer_ids(self) -> list[str]:
        return [child.consumer_id for child in self.supervisor.children.values()]

    def pool_info(self) -> dict[str, Any]:
        supervisor = self.supervisor
        return {
            "implementation": "prefork",
            "max-concurrency": supervisor.processes,
            "processes": sorted(child.pid for child in supervisor.children.values()),
            "max-tasks-per-child": self.worker.max_tasks_per_child,
            "max-memory-per-child": self.worker.max_memory_per_child,
            "capacity": supervisor.slots.count,
            **autoscaler_info(supervisor),
        }

    def grow(self, n: int) -> None:
        resize(self.supervisor, n)

    def shrink(self, n: int) -> None:
        resize(self.supervisor, -n)

    def consume(self, queues: list[str]) -> None:
        # Children read the queue list when they start: replace them (each finishes its
        # running task first; unstarted ones go back to the queue).
        self.worker.queues[:] = queues
        self.supervisor.restart_children()

    def reload(self) -> None:
        self.supervisor.restart_children()


class InProcessView:
    def __init__(
        self,
        worker: Worker,
        loops: list[ConsumeLoop],
        revocations: RevocationCache,
        pool: Pool | None = None,
    ) -> None:
        self.worker = worker
        self.loops = loops
        self.revocations = revocations
        self.pool = pool

    def running(self) -> list[RunningTask]:
        running = []
        now, wall = time.monotonic(), time.time()
        for loop in self.loops:
            for attempt in list(loop.running.values()):
                task_id = attempt.task_id
                if task_id is not None and attempt.executing:
                    started = wall - (now - attempt.received)
                    running.append(
                        RunningTask(
                            task_id, attempt.tag, loop.consumer_id, started, os.getpid(),
                            attempt.envelope.task if attempt.envelope is not None else "",
                        )
                    )
        return running

    def consumer_ids(self) -> list[str]:
        return [loop.consumer_id for loop in self.loops]

    def pool_info(self) -> dict[str, Any]:
        return {
            "implementation": self.worker.pool,
            "max-concurrency": self.pool.concurrency if self.pool is not None else len(self.loops),
            "processes": [os.getpid()],
            "max-tasks-per-child": None,
            **autoscaler_info(self.pool),
        }

    def grow(self, n: int) -> None:
        resize(self._scalable("pool_grow"), n)

    def shrink(self, n: int) -> None:
        resize(self._scalable("pool_shrink"), -n)

    def _scalable(self, command: str) -> Pool:
        if self.pool is None or not self.pool.scalable:
            raise UnsupportedCommand(
                f"{command} needs the prefork or threads pool (this is {self.worker.pool})"
            )
        return self.pool

    def consume(self, queues: list[str]) -> None:
        self.worker.queues[:] = queues  # the list the loops' config holds
        for loop in self.loops:
            loop.reopen()

    def reload(self) -> None:
        """Task limits are read from the task objects at each start: nothing to do."""


def resize(pool: Any, n: int) -> None:
    """pool_grow (n > 0) / pool_shrink (n < 0): through the pool's autoscaler when it
    has one, so it moves its bounds rather than undo the change at its next tick."""
    autoscaler = getattr(pool, "autoscaler", None)
    if autoscaler is not None:
        autoscaler.force(n)
    elif n > 0:
        pool.grow(n)
    elif n < 0:
        pool.shrink(-n)


def autoscaler_info(pool: Any) -> dict[str, Any]:
    """Celery's ``stats()["autoscaler"]``: the bounds and the size now, when autoscaling."""
    autoscaler = getattr(pool, "autoscaler", None)
    if autoscaler is None:
        return {}
    return {"autoscaler": {"max": autoscaler.max, "min": autoscaler.min, "qty": pool.concurrency}}
