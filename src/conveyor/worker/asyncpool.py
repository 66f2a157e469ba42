"""The ``asyncio`` pool: ``-P asyncio -c 1000 --processes 2``.

Each of ``--processes`` child processes (1 by default) runs one event loop with up to
``-c`` attempts at once (worker/eventloop.py). The parent is the prefork supervisor,
unchanged: it starts the children and starts a new one when one exits or dies, gives a
dead child's deliveries back at once, renews their leases, and turns SIGTERM into a
warm shutdown. So ``kill -9`` of a child, or the exit of one whose loop was blocked past
a hard time limit, loses nothing: its tasks run again in the next child.

Why processes under a supervisor, not one loop in the worker process: a loop is one
core; ``--processes`` uses the others, and a blocked loop can be replaced without
losing the worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from .eventloop import EventLoopRunner, Feeder
from .keeper import LeaseKeeper
from .loop import ConsumeLoop
from .pool import RunningAttempt
from .supervisor import Supervisor

if TYPE_CHECKING:
    from .main import Worker

__all__ = ["AsyncioPool"]


class AsyncioPool(Supervisor):
    """Event-loop children under the prefork supervisor (see the module docstring)."""

    name: ClassVar[str] = "asyncio"
    # The children's keepers raise the soft and hard limits through interrupt().
    raises_time_limits: ClassVar[bool] = False
    # --autoscale sizes processes by busy slots, one task each: not this pool's shape
    # (pool_grow/pool_shrink still add and remove event-loop processes).
    scalable: ClassVar[bool] = False

    def __init__(self, worker: Worker, concurrency: int | None = None) -> None:
        super().__init__(worker, worker.processes)
        self.per_process = max(1, concurrency if concurrency is not None else worker.concurrency)
        self.runner: EventLoopRunner | None = None  # in a child: its event loop

    @property
    def concurrency(self) -> int:
        return self.processes * self.per_process

    def _consume_in_child(
        self,
        index: int,
        cid: str,
        stop: threading.Event,
        on_ready: Callable[[], None],
        loops: list[ConsumeLoop],
    ) -> int:  # pragma: no cover - runs in the child; covered by integration tests
        worker = self.worker
        config = worker.loop_config(
            self.revocations, stop=stop, max_tasks=worker.max_tasks_per_child
        )
        feeder = Feeder(self.app, config, cid, self.per_process, on_ready=on_ready)
        self.runner = EventLoopRunner(self.app, feeder, stop)
        keeper = LeaseKeeper(
            self.app, [feeder], stop, reclaim=False, revocations=self.revocations, pool=self
        )
        return self.runner.run(keeper)

    def interrupt(self, attempt: RunningAttempt, exc_type: type[BaseException]) -> None:
        if self.runner is not None:  # in a child; the parent has no slot to police
            self.runner.interrupt(attempt, exc_type)

    def abandoned(self, attempt: RunningAttempt) -> None:
        if self.runner is not None:
            self.runner.abandoned(attempt)
