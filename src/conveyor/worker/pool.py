"""Pools: how a worker runs its attempts, and how it stops one.

A pool is chosen by name (``-P``/``--pool``, ``worker_pool``) from a registry of
classes: ``prefork``, ``threads`` and ``solo`` are built in (worker/pools.py registers
them; ``register_pool`` there adds one). Every pool turns deliveries into
:class:`~conveyor.worker.attempt.Attempt` objects the same way (a
:class:`~conveyor.worker.loop.ConsumeLoop` per consumer, wired with one
:class:`~conveyor.worker.loop.LoopConfig`); a pool decides only

- where attempts run and how many at once (``run``): prefork forks children that each
  consume for themselves, threads runs N loops on N threads, solo one loop on the main
  thread;
- how one running attempt is stopped, for a time limit or a revoke with terminate
  (``interrupt``): prefork kills the child that runs it, threads raises an asynchronous
  exception in its thread, solo sends its own SIGALRM.

Adding a pool is writing one subclass and registering it::

    from conveyor.worker.pools import register_pool
    register_pool(MyPool)            # MyPool.name == "mypool"; -P mypool now works

How an asyncio pool plugs in (the next issue: up to 1,000 attempts at once on one event
loop), without touching the attempt:

- ``run`` starts one event loop and, per consumer, a feeder coroutine that fetches
  deliveries (``consumer.fetch`` in ``asyncio.to_thread``, or a native async client)
  and starts one ``asyncio.Task`` per delivery, bounded by a semaphore of
  ``concurrency`` permits. Each task drives its attempt through the steps ``execute``
  is made of: ``prepare()``, ``arm()``, ``begin()``, then ``value = attempt.call()``
  (awaited when it is awaitable), ``succeeded(value, runtime)`` or, in the ``except``
  block, ``raised(exc, runtime)``; then ``disarm()`` and ``settle()``. ``prepare`` and
  ``settle`` only queue write-behind commands on the consumer, so they may run on the
  event loop itself. The attempt sits in the feeder's ``running`` map while it lives,
  so the keeper thread sees it like any other.
- ``interrupt(attempt, exc)`` finds the attempt by its tag in the feeder's ``running``
  map and its asyncio.Task in ``attempt.runner`` (set when the task was created); from
  the keeper thread, ``loop.call_soon_threadsafe`` cancels it with ``exc`` (the coroutine
  sees ``exc`` at its next ``await``); ``raises_time_limits`` stays False, so the keeper
  raises the soft and hard limits through it too.
- The request context must follow the coroutine rather than the thread
  (``task.current_request`` is thread-local today): that change is in task.py.

A pool that forks (``forks = True``) needs a store that other processes can reach: the
worker refuses ``memory://`` with it at start.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from .main import Worker

__all__ = ["Pool", "RunningAttempt"]


class RunningAttempt(Protocol):
    """What a pool needs to find a running attempt: an
    :class:`~conveyor.worker.attempt.Attempt` in this process, or the shared-memory
    :class:`~conveyor.worker.slots.Slot` through which the prefork supervisor sees the
    attempt a child runs."""

    @property
    def task_id(self) -> str | None: ...

    @property
    def tag(self) -> str: ...


class Pool(ABC):
    """Runs the worker's attempts (see the module docstring)."""

    name: ClassVar[str]
    # Runs attempts in other processes: the store must be reachable from them.
    forks: ClassVar[bool] = False
    # The pool raises the soft and hard time limits itself (solo's SIGALRM); otherwise
    # the keeper raises them through interrupt().
    raises_time_limits: ClassVar[bool] = False
    # It can add and remove processes or threads while it runs (worker/autoscale.py:
    # --autoscale, pool_grow, pool_shrink); it then has busy(), grow(n) and shrink(n).
    scalable: ClassVar[bool] = False

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    @property
    def concurrency(self) -> int:
        """How many attempts may run at once."""
        return self.worker.concurrency

    @abstractmethod
    def run(self) -> int:
        """Run attempts until the worker stops; returns the process exit code."""

    @abstractmethod
    def interrupt(self, attempt: RunningAttempt, exc_type: type[BaseException]) -> None:
        """Stop one running attempt by this pool's own means: ``exc_type`` is
        :class:`~conveyor.exceptions.SoftTimeLimitExceeded`,
        :class:`~conveyor.exceptions.TimeLimitExceeded` or
        :class:`~conveyor.exceptions.TaskRevokedError` (terminate)."""

    def abandoned(self, attempt: RunningAttempt) -> None:
        """The attempt outlived its hard limit and grace period and was recorded as
        failed; a pool that cannot take its runner back may act (solo leaves)."""
        return
