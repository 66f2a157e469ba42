"""The solo and threads pools: consume loops in this process.

``solo`` runs one loop in the main thread (debuggers, one-at-a-time work); ``threads``
runs N loops on N threads (I/O-bound work). Each loop has its own broker connection and
lease; one keeper thread renews them all and enforces time limits and terminate through
the pool's :meth:`interrupt`. A second signal (cold shutdown) requeues what is running
and exits: threads cannot be killed, but their leases can be given back.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import TYPE_CHECKING, Any, ClassVar

from ..stores.transport import leases_of
from .identity import consumer_id
from .keeper import LeaseKeeper
from .loop import TRANSIENT, ConsumeLoop, LoopConfig
from .pool import Pool, RunningAttempt
from .revocations import RevocationCache
from .timelimits import Alarm, raise_in_thread

if TYPE_CHECKING:
    from ..app import Conveyor
    from .executor import AttemptWatcher
    from .main import Worker

__all__ = ["SoloPool", "ThreadsPool"]

logger = logging.getLogger("conveyor.worker")


class ThreadsPool(Pool):
    """N consume loops on N threads; an attempt is stopped by an exception raised
    asynchronously in its thread (``PyThreadState_SetAsyncExc``, timelimits.py)."""

    name: ClassVar[str] = "threads"

    def __init__(self, worker: Worker, threads: int | None = None) -> None:
        super().__init__(worker)
        self.threads = max(1, threads if threads is not None else worker.concurrency)
        self.loops: list[ConsumeLoop] = []

    @property
    def concurrency(self) -> int:
        return self.threads

    def run(self) -> int:
        """Run with the worker's signal handlers and its embedded beat (-B)."""
        worker = self.worker
        embedded = None
        if worker.beat:
            from .beat import EmbeddedBeat

            embedded = EmbeddedBeat(worker.app)
            embedded.start()  # before any thread of ours exists
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        try:
            return self.consume()
        finally:
            if embedded is not None:
                embedded.stop()

    def on_signal(self, signum: int, frame: Any) -> None:
        """SIGTERM/SIGINT: the worker's warm, then cold, shutdown."""
        self.worker.on_signal(signum, frame)

    def consume(self) -> int:
        """Run the loops until the worker stops (any thread may call this)."""
        worker = self.worker
        ready = threading.Semaphore(0)
        revocations = RevocationCache()
        _refresh(worker.app, revocations)  # a revoke issued before this worker started
        config = self.loop_config(revocations)
        self.loops = [
            ConsumeLoop(
                worker.app,
                config,
                consumer_id(worker.hostname, f"{worker.pool}-{i + 1}"),
                on_ready=ready.release,
            )
            for i in range(self.concurrency)
        ]
        keeper = LeaseKeeper(
            worker.app,
            self.loops,
            worker.stop,
            on_tick=worker.heartbeat,
            revocations=revocations,
            pool=self,
        )
        keeper.start()
        worker.observer.in_process(self.loops, revocations, worker.stop)
        worker.on_cold = self.cold_stop
        self.run_loops(ready)
        worker.stop.set()
        keeper.join(2)
        worker.retire()
        return 0

    def loop_config(self, revocations: RevocationCache) -> LoopConfig:
        """The configuration of this pool's loops (the worker's, with its watchers)."""
        return self.worker.loop_config(revocations, self.watchers())

    def watchers(self) -> tuple[AttemptWatcher, ...]:
        return ()

    def run_loops(self, ready: threading.Semaphore) -> None:
        worker = self.worker
        runners = [
            threading.Thread(target=loop.run, name=f"conveyor-{i + 1}")
            for i, loop in enumerate(self.loops)
        ]
        for runner in runners:
            runner.start()
        _announce_when_ready(worker, ready, len(runners))
        worker.stop.wait()
        for runner in runners:
            runner.join(worker.shutdown_timeout)
        if any(r.is_alive() for r in runners):
            logger.warning(
                "tasks still running after %ss: requeueing them", worker.shutdown_timeout
            )
            self.cold_stop()

    def interrupt(self, attempt: RunningAttempt, exc_type: type[BaseException]) -> None:
        for loop in self.loops:
            if attempt.tag in loop.running:
                raise_in_thread(loop.thread_id, exc_type)
                return

    def cold_stop(self) -> None:
        """Give every delivery these loops hold back to the queue, then leave at once."""
        worker = self.worker
        leases = leases_of(worker.app.broker)
        for loop in self.loops:
            if leases is None:
                break  # AMQP: the process's exit closes its connections, which gives back
            try:
                leases.reclaim(loop.consumer_id)
            except Exception as exc:  # pragma: no cover - broker gone; leases will lapse
                logger.warning("could not requeue on cold shutdown: %s", exc)
        worker.retire()
        logging.shutdown()
        os._exit(1)


class SoloPool(ThreadsPool):
    """One consume loop on the main thread; an attempt is stopped by SIGALRM, whose
    handler raises the limit (or the terminate) in the task."""

    name: ClassVar[str] = "solo"
    raises_time_limits: ClassVar[bool] = True

    def __init__(self, worker: Worker, threads: int | None = None) -> None:
        super().__init__(worker, 1)
        self.alarm: Alarm | None = None

    def watchers(self) -> tuple[Alarm, ...]:
        if self.alarm is None:
            self.alarm = Alarm(enforce_hard=True)
        return (self.alarm,)

    def run_loops(self, ready: threading.Semaphore) -> None:
        worker = self.worker
        worker.main_loop = self.loops[0]  # a shutdown may interrupt its idle fetch
        announcer = threading.Thread(
            target=_announce_when_ready, args=(worker, ready, 1), daemon=True
        )
        announcer.start()
        self.loops[0].run()

    def interrupt(self, attempt: RunningAttempt, exc_type: type[BaseException]) -> None:
        if self.alarm is not None:
            self.alarm.interrupt(exc_type)

    def abandoned(self, attempt: RunningAttempt) -> None:
        # The main thread cannot be taken back from the task; leave so the process
        # manager starts a fresh worker (documented in timelimits.py).
        logging.shutdown()
        os._exit(3)


def _refresh(app: Conveyor, revocations: RevocationCache) -> None:
    try:
        revocations.refresh(app.coordinator)
    except TRANSIENT as exc:
        logger.warning("could not read revocations yet (%s); the keeper will retry", exc)


def _announce_when_ready(worker: Worker, ready: threading.Semaphore, count: int) -> None:
    for _ in range(count):
        ready.acquire()
    worker.announce_ready()
