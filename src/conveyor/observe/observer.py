"""What observe adds to a running worker: the control responder and the task board.

The worker makes one :class:`WorkerObserver` when it starts; its pool attaches to it
(the supervisor for prefork, the in-process pool for threads and solo), and a prefork
child tells it which row of the board is its own.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .board import CountingListener, TaskBoard
from .responder import ControlResponder
from .views import InProcessView, PreforkView

if TYPE_CHECKING:
    from ..worker.loop import ConsumeLoop
    from ..worker.main import Worker
    from ..worker.revocations import RevocationCache
    from ..worker.supervisor import Supervisor

__all__ = ["POOL_CAPACITY", "WorkerObserver"]

# How far pool_grow may take a prefork pool: the shared slots are sized once, up front.
POOL_CAPACITY = 64


class WorkerObserver:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.capacity = max(POOL_CAPACITY, worker.concurrency * 4)
        self.board = TaskBoard(worker.app.tasks, self.capacity)
        worker.hooks.subscribe(CountingListener(self.board))
        self.responder: ControlResponder | None = None

    def prefork(self, supervisor: Supervisor) -> None:
        """The supervisor answers control commands (it runs no task)."""
        self.responder = ControlResponder(self.worker, PreforkView(supervisor), self.board)

    def in_child(self, index: int) -> None:
        """In a prefork child, after fork: count on its own row; never answer."""
        self.board.row = index - 1
        self.responder = None

    def in_process(
        self, loops: list[ConsumeLoop], revocations: RevocationCache, stop: threading.Event
    ) -> None:
        """threads and solo: a thread of its own answers control commands."""
        view = InProcessView(self.worker, loops, revocations)
        self.responder = ControlResponder(self.worker, view, self.board)
        self.responder.start_thread(stop)

    def poll(self) -> None:
        if self.responder is not None:
            self.responder.poll()
