"""The asyncio pool's child process: up to ``-c`` attempts at once on one event loop.

Three threads, each with one job:

- the **feeder** (a :class:`~conveyor.worker.loop.ConsumeLoop` subclass, on a thread of
  its own) owns the consumer, as every consume loop does: it fetches only what can start
  now (``concurrency`` minus what runs: prefetch stays bounded, promise 8), prepares
  each delivery (decode, check, admit) and hands the attempts to the loop; it settles
  each attempt the loop finished (ack and result in one write-behind step). A finished
  task's ack leaves within one short fetch (``BUSY_FETCH`` seconds) of its end, before
  any task fetched after that moment starts;
- the **event loop** (the process's main thread, uvloop when installed) runs one
  ``asyncio.Task`` per attempt: ``arm``, ``begin``, the body (awaited when it is
  ``async def``, else run on a thread pool so it never blocks the loop), then
  ``succeeded``/``raised`` and ``disarm`` (the steps of ``Attempt.execute``);
- the **keeper** (worker/keeper.py, as in the threads pool) renews the lease and
  enforces time limits and revoke-terminate through :meth:`EventLoopRunner.interrupt`.

A soft limit, a hard limit or a terminate is thrown into the coroutine where it waits
(coroutines.Interruptible: the task is cancelled and sees the exception itself); a sync
body on the thread pool gets it raised in its thread. A task still running past its hard
limit and the grace period is recorded as failed by the keeper; if the loop itself is
blocked (a coroutine that never awaits), the process exits so the parent reclaims what
it held and starts a new one: the limit always wins.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..coroutines import Interruptible, is_coroutine
from ..exceptions import SoftTimeLimitExceeded, TaskRevokedError, TimeLimitExceeded
from ..stores.transport import Delivery, ResultWrite, TransportConsumer
from .attempt import Attempt
from .executor import Executor
from .keeper import LeaseKeeper
from .loop import ConsumeLoop, LoopConfig
from .pool import RunningAttempt
from .timelimits import raise_in_thread

if TYPE_CHECKING:
    from ..app import Conveyor

__all__ = ["EventLoopRunner", "Feeder", "new_event_loop"]

logger = logging.getLogger("conveyor.worker")

# While tasks run, the feeder's fetch waits at most this long, so it settles finished
# attempts (their acks) at least this often even when the queue is empty.
BUSY_FETCH = 0.05
# Most messages one fetch leases (one round trip; Redis's Lua unpack limit is far above).
MAX_BATCH = 256
# The loop records that it is alive this often; silent for BLOCKED_AFTER, it is blocked.
BEAT_EVERY = 0.1
BLOCKED_AFTER = 1.0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (``pip install conveyor[asyncio]``), else the
    standard one."""
    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class SharedConsumer(TransportConsumer):
    """The feeder's consumer as the executor sees it. Consumers are not thread-safe: a
    call from the event loop's thread (an interim state stored by ``begin``) is queued
    for the feeder, which owns the connection, instead of touching it."""

    def __init__(self, inner: TransportConsumer, post: Callable[[Callable[[], Any]], None]):
        self.inner = inner
        self.consumer_id = inner.consumer_id
        self.carries_results = inner.carries_results
        self.owner = threading.get_ident()
        self.post = post

    def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        return self.inner.fetch(limit, timeout)

    def ack(self, delivery: Delivery, result: ResultWrite | None = None) -> None:
        if threading.get_ident() == self.owner:
            self.inner.ack(delivery, result)
        else:
            self.post(lambda: self.inner.ack(delivery, result))

    def store(self, result: ResultWrite) -> bool:
        if not self.carries_results:
            return False
        if threading.get_ident() == self.owner:
            return self.inner.store(result)
        self.post(lambda: self.inner.store(result))
        return True

    def release(self, deliveries: Sequence[Delivery]) -> None:
        self.inner.release(deliveries)

    def recover(self, known_tags: set[str]) -> int:
        return self.inner.recover(known_tags)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


class Feeder(ConsumeLoop):
    """The consume loop of an event-loop process (see the module docstring)."""

    def __init__(
        self,
        app: Conveyor,
        config: LoopConfig,
        consumer_id: str,
        capacity: int,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(app, config, consumer_id, on_ready=on_ready)
        self.capacity = max(1, capacity)
        # Work for the feeder's thread: attempts the loop finished, consumer calls.
        self.inbox: queue.SimpleQueue[Attempt | Callable[[], Any]] = queue.SimpleQueue()
        self.runner: EventLoopRunner | None = None

    def _make_executor(self, consumer: TransportConsumer) -> Executor:
        return super()._make_executor(SharedConsumer(consumer, self.inbox.put))

    def finished(self, attempt: Attempt) -> None:
        """The loop is done with ``attempt``: settle it (any thread)."""
        self.inbox.put(attempt)

    def _done(self) -> bool:
        # Stopping: nothing new is fetched, but what runs is still settled here.
        if self.running:
            return False
        if self.stop.is_set():
            return True
        return self.max_tasks is not None and self.tasks_run >= self.max_tasks

    def _settle(self, wait: float) -> None:
        """Settle what the loop finished, waiting up to ``wait`` seconds for the first."""
        inbox = self.inbox
        try:
            item = inbox.get(timeout=wait) if wait > 0 else inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            if isinstance(item, Attempt):
                try:
                    item.settle()
                finally:
                    self.running.pop(item.tag, None)
                    self.tasks_run += 1
            else:
                item()
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                return

    def _cycle(self) -> None:
        consumer = self._open()
        if self._recover:
            consumer.flush()
            recovered = consumer.recover(self._known_tags())
            self._recover = False
            logger.warning("broker connection restored; gave back %d leases", recovered)
        self._settle(0)
        free = self.capacity - len(self.running)
        if self.max_tasks is not None:
            free = min(free, self.max_tasks - self.tasks_run - len(self.running))
        if free <= 0 or self.stop.is_set():
            self._settle(BUSY_FETCH)
            return
        self.in_fetch = True
        try:
            deliveries = consumer.fetch(
                min(free, MAX_BATCH), timeout=BUSY_FETCH if self.running else 1.0
            )
        finally:
            self.in_fetch = False
        if not deliveries:
            return
        if self._track_received:
            for write in self._executor.received(deliveries):
                self._store(write)
        ready: list[Attempt] = []
        for delivery in deliveries:
            attempt = Attempt(delivery, self._executor)
            self.running[delivery.tag] = attempt
            if attempt.prepare():
                ready.append(attempt)
            else:
                self.finished(attempt)  # rejected or deferred: settled on the next turn
        if ready:
            assert self.runner is not None
            self.runner.start_soon(ready)


class EventLoopRunner:
    """Runs the attempts a :class:`Feeder` hands over, on this thread's event loop."""

    def __init__(self, app: Conveyor, feeder: Feeder, stop: threading.Event) -> None:
        self.app = app
        self.feeder = feeder
        feeder.runner = self
        self.stop = stop
        self.loop = new_event_loop()
        # Sync bodies run here: lazily grown, up to one thread per slot.
        self.threads = ThreadPoolExecutor(feeder.capacity, thread_name_prefix="conveyor-sync")
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.interruptible: dict[str, Interruptible] = {}
        self.in_thread: dict[str, int] = {}  # tag -> thread running its sync body
        self.beat = time.monotonic()

    # running ----------------------------------------------------------------------------
    def run(self, keeper: LeaseKeeper) -> int:
        """Run until the feeder ends (stopped, and every attempt settled)."""
        asyncio.set_event_loop(self.loop)
        feeder = threading.Thread(target=self.feeder.run, name="conveyor-feeder", daemon=True)
        keeper.start()
        feeder.start()
        try:
            self.loop.run_until_complete(self._watch(feeder))
        finally:
            self.threads.shutdown(wait=False, cancel_futures=True)
            self.loop.close()
        return 0

    async def _watch(self, feeder: threading.Thread) -> None:
        while feeder.is_alive():
            self.beat = time.monotonic()
            await asyncio.sleep(BEAT_EVERY)
        self.stop.set()

    def blocked(self) -> bool:
        """Has the loop been unable to run for a while (a coroutine that never awaits)?"""
        return time.monotonic() - self.beat > BLOCKED_AFTER

    def start_soon(self, attempts: list[Attempt]) -> None:
        """Start ``attempts`` on the loop (called from the feeder's thread)."""
        self.loop.call_soon_threadsafe(self._start, attempts)

    def _start(self, attempts: list[Attempt]) -> None:
        create = self.loop.create_task
        for attempt in attempts:
            self.tasks[attempt.tag] = create(self._run(attempt))

    async def _run(self, attempt: Attempt) -> None:
        try:
            await self._execute(attempt)
        finally:
            self.tasks.pop(attempt.tag, None)
            self.interruptible.pop(attempt.tag, None)
            self.feeder.finished(attempt)

    async def _execute(self, attempt: Attempt) -> None:
        task = attempt.task
        assert task is not None
        attempt.arm()
        try:
            if not attempt.begin():
                return
            started = time.perf_counter()
            try:
                if task.is_async:
                    value = await self._await(attempt, attempt.call())
                else:
                    run = contextvars.copy_context().run  # the request follows the body
                    value = await self.loop.run_in_executor(
                        self.threads, run, self._call_in_thread, attempt
                    )
                    if is_coroutine(value):
                        value = await self._await(attempt, value)
            except Exception as exc:
                attempt.raised(exc, time.perf_counter() - started)
                return
            except BaseException:
                # Cancelled: abandoned past its hard limit (the keeper recorded it), or
                # the process is leaving (the lease gives it back). No outcome here.
                attempt.abandoned()
                raise
            attempt.succeeded(value, time.perf_counter() - started)
        finally:
            attempt.disarm()

    async def _await(self, attempt: Attempt, coroutine: Any) -> Any:
        wrapper = self.interruptible[attempt.tag] = Interruptible(coroutine)
        return await wrapper

    def _call_in_thread(self, attempt: Attempt) -> Any:
        self.in_thread[attempt.tag] = threading.get_ident()
        try:
            return attempt.call()
        finally:
            del self.in_thread[attempt.tag]

    # stopping one attempt (from the keeper's thread) --------------------------------------
    def interrupt(self, attempt: RunningAttempt, exc_type: type[BaseException]) -> None:
        thread = self.in_thread.get(attempt.tag)
        if thread is not None:
            raise_in_thread(thread, exc_type)
            return
        exc = _interruption(attempt, exc_type)
        self.loop.call_soon_threadsafe(self._interrupt, attempt.tag, exc)

    def _interrupt(self, tag: str, exc: BaseException) -> None:
        wrapper = self.interruptible.get(tag)
        if wrapper is not None:
            wrapper.interrupt(exc)

    def abandoned(self, attempt: RunningAttempt) -> None:
        """Past its hard limit and the grace period, and recorded as failed: cancel what
        is left of it; if the loop cannot even do that, leave (the parent reclaims the
        other attempts of this process and starts a new one)."""
        if self.blocked():
            logger.error(
                "the event loop is blocked (task %s never awaits): this process exits "
                "and its other tasks go back to the queue",
                attempt.task_id,
            )
            logging.shutdown()
            os._exit(3)
        task = self.tasks.get(attempt.tag)
        if task is not None:
            self.loop.call_soon_threadsafe(task.cancel)


def _interruption(attempt: RunningAttempt, exc_type: type[BaseException]) -> BaseException:
    deadlines = getattr(attempt, "deadlines", None)
    if exc_type is SoftTimeLimitExceeded and deadlines is not None:
        return exc_type(f"soft time limit ({deadlines.soft_limit:g}s) exceeded")
    if exc_type is TimeLimitExceeded and deadlines is not None:
        return exc_type(f"time limit ({deadlines.hard_limit:g}s) exceeded")
    if exc_type is TaskRevokedError:
        return exc_type("task terminated by revoke")
    return exc_type()
