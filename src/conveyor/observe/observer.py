"""What observe adds to a running worker: the control responder and the task board.

The worker makes one :class:`WorkerObserver` when it starts; its pool attaches to it
(the supervisor for prefork, the in-process pool for threads and solo), and a prefork
child tells it which row of the board is its own.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .board import TaskBoard
from .responder import ControlResponder
from .views import InProcessView, PreforkView

if TYPE_CHECKING:
    from ..worker.loop import ConsumeLoop
    from ..worker.main import Worker
    from ..worker.pool import Pool
    from ..worker.revocations import RevocationCache
    from ..worker.supervisor import Supervisor
    from .stream import EventStreamListener

__all__ = ["POOL_CAPACITY", "WorkerObserver"]

# How far pool_grow may take a prefork pool: the shared slots are sized once, up front.
POOL_CAPACITY = 64


class WorkerObserver:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        top = worker.autoscale[0] if worker.autoscale is not None else 0
        self.capacity = max(POOL_CAPACITY, worker.concurrency * 4, top)
        self.board = TaskBoard(worker.app.tasks, self.capacity)
        worker.hooks.count_started = self.board.count
        self.stream: EventStreamListener | None = None
        if worker.app.conf.worker_send_task_events:
            from .stream import EventStreamListener

            self.stream = EventStreamListener(worker.app)
            worker.hooks.subscribe(self.stream)
        self.responder: ControlResponder | None = None

    def prefork(self, supervisor: Supervisor) -> None:
        """The supervisor answers control commands (it runs no task)."""
        if self.stream is not None:
            self.stream.at_once = True  # the supervisor starts no thread: it forks
        self.responder = ControlResponder(self.worker, PreforkView(supervisor), self.board)

    def in_child(self, index: int) -> None:
        """In a prefork child, after fork: count on its own row; never answer."""
        self.board.row = index - 1
        self.responder = None
        if self.stream is not None:
            self.stream.at_once = False

    def child_exiting(self) -> None:
        """In a prefork child that is about to exit (recycled, or a warm shutdown):
        store the events it still buffers."""
        if self.stream is not None:
            self.stream.close()

    def in_process(
        self,
        loops: list[ConsumeLoop],
        revocations: RevocationCache,
        stop: threading.Event,
        pool: Pool | None = None,
    ) -> None:
        """threads and solo: a thread of its own answers control commands."""
        view = InProcessView(self.worker, loops, revocations, pool)
        self.responder = ControlResponder(self.worker, view, self.board)
        self.responder.start_thread(stop)

    def serve_metrics(self, port: int, multiprocess_dir: str | None) -> None:
        """``--metrics-port``: count tasks from the worker's events (in every process)
        and serve them, summed, with the broker's gauges, from a process of its own."""
        from .metrics import MetricsListener, bind_server, serve_in_child

        server = bind_server(self.worker.app, port, multiprocess_dir)
        self.worker.hooks.subscribe(MetricsListener())
        self.multiprocess_dir = multiprocess_dir
        self.metrics_pid = serve_in_child(server)

    multiprocess_dir: str | None = None
    metrics_pid: int | None = None

    def child_exited(self, pid: int) -> None:
        """A prefork child is gone: its running-now gauges no longer count."""
        if self.multiprocess_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def poll(self) -> None:
        if self.responder is not None:
            self.responder.poll()
