"""The solo and threads pools: consume loops in this process.

``solo`` runs one loop in the main thread (debuggers, one-at-a-time work); ``threads``
runs N loops on N threads (I/O-bound work). Each loop has its own broker connection and
lease; one keeper thread renews them all and enforces time limits and terminate through
the pool's :meth:`interrupt`. A second signal (cold shutdown) requeues what is running
and exits: threads cannot be killed, but their leases can be given back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
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
    scalable: ClassVar[bool] = True

    def __init__(self, worker: Worker, threads: int | None = None) -> None:
        super().__init__(worker)
        self.threads = max(1, threads if threads is not None else worker.concurrency)
        self.loops: list[ConsumeLoop] = []
        self.runners: list[threading.Thread] = []
        self.autoscaler = worker.autoscaler(self) if self.scalable else None
        self._resizing = threading.RLock()  # the autoscaler and control commands
        self._numbered = 0  # loops made so far: each new one gets the next number

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
        self.config = self.loop_config(revocations)
        self.loops = [self._new_loop(ready.release) for _ in range(self.concurrency)]
        keeper = LeaseKeeper(
            worker.app,
            self.loops,
            worker.stop,
            on_tick=worker.heartbeat,
            revocations=revocations,
            pool=self,
        )
        keeper.start()
        worker.observer.in_process(self.loops, revocations, worker.stop, self)
        worker.on_cold = self.cold_stop
        self.run_loops(ready)
        worker.stop.set()
        keeper.join(2)
        worker.retire()
        return 0

    def _new_loop(self, on_ready: Callable[[], None] | None = None) -> ConsumeLoop:
        self._numbered += 1
        worker = self.worker
        cid = consumer_id(worker.hostname, f"{worker.pool}-{self._numbered}")
        return ConsumeLoop(worker.app, self.config, cid, on_ready=on_ready)

    def loop_config(self, revocations: RevocationCache) -> LoopConfig:
        """The configuration of this pool's loops (the worker's, with its watchers)."""
        return self.worker.loop_config(revocations, self.watchers())

    def watchers(self) -> tuple[AttemptWatcher, ...]:
        return ()

    def run_loops(self, ready: threading.Semaphore) -> None:
        worker = self.worker
        for loop in self.loops:
            self._start(loop)
        _announce_when_ready(worker, ready, len(self.loops))
        autoscaler = self.autoscaler
        while not worker.stop.wait(1.0):
            if autoscaler is not None:
                with self._resizing:
                    autoscaler.tick()
        deadline = time.monotonic() + worker.shutdown_timeout
        for runner in list(self.runners):
            runner.join(max(0.0, deadline - time.monotonic()))
        if any(r.is_alive() for r in self.runners):
            logger.warning(
                "tasks still running after %ss: requeueing them", worker.shutdown_timeout
            )
            self.cold_stop()

    def _start(self, loop: ConsumeLoop) -> None:
        runner = threading.Thread(target=self._run_loop, args=(loop,), name=loop.consumer_id)
        self.runners.append(runner)
        runner.start()

    def _run_loop(self, loop: ConsumeLoop) -> None:
        try:
            loop.run()
        finally:
            if loop.retired:  # let go by shrink: the keeper no longer renews it
                with contextlib.suppress(ValueError):
                    self.loops.remove(loop)
                with contextlib.suppress(ValueError):
                    self.runners.remove(threading.current_thread())

    # resizing (--autoscale, pool_grow, pool_shrink) -----------------------------------
    def busy(self) -> int:
        """How many of the pool's loops hold a task now (running or leased next)."""
        return sum(
            1 for loop in list(self.loops) if (loop.running or loop.buffer) and not loop.retired
        )

    def grow(self, n: int) -> None:
        """Start ``n`` more loops, each on a thread of its own."""
        with self._resizing:
            for _ in range(n):
                loop = self._new_loop()
                self.loops.append(loop)
                self._start(loop)
            self.threads += n

    def shrink(self, n: int) -> None:
        """Let ``n`` loops go after their running task, the idle ones first."""
        with self._resizing:
            if self.threads - n < 1:
                raise ValueError(f"the pool has {self.threads} threads; it keeps at least 1")
            serving = [loop for loop in self.loops if not loop.retired]
            serving.sort(key=lambda loop: bool(loop.running))  # idle first
            for loop in serving[:n]:
                loop.retire()
            self.threads -= n

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
    scalable: ClassVar[bool] = False

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
