"""One attempt at one delivery: prepared, executed, settled.

An :class:`Attempt` is everything the worker knows about one leased message while it
holds it: the delivery (and so its lease), the decoded envelope and request, the task,
its time-limit deadlines, the concurrency slot the admission gate lent it, and its
outcome. Nothing else holds per-task state, so a pool may run many attempts at once and
the keeper (lease give-back, time limits, terminate) reads attempts, not loose fields.

Its life, the same on every pool::

    attempt = Attempt(delivery, executor)
    if attempt.prepare():   # decode, check, admit; early ack (acks_late off)
        attempt.execute()   # run the task on this thread (prefork, threads, solo)
    attempt.settle()        # ack and result in one write-behind step

``execute`` is ``arm``, ``begin``, ``call``, then ``succeeded``/``raised`` and ``disarm``;
a pool that runs tasks differently (an asyncio pool awaiting what ``call`` returns)
calls those steps itself and needs nothing else from this module.

The work itself is the :class:`~conveyor.worker.executor.Executor`'s, one per consumer,
shared by all the attempts it feeds.
"""

from __future__ import annotations

import time
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from ..coroutines import run_to_completion
from ..task import pop_request
from .timelimits import Deadlines

if TYPE_CHECKING:
    from ..message import Envelope
    from ..stores.transport import Delivery
    from ..task import Context, Task
    from .admission import Admission
    from .executor import Executor, Outcome

__all__ = ["Attempt"]


class Attempt:
    """One delivery on its way through the worker (see the module docstring)."""

    __slots__ = (
        "acks_late",
        "admission",
        "deadlines",
        "delivery",
        "envelope",
        "executing",
        "executor",
        "outcome",
        "received",
        "request",
        "runner",
        "settled",
        "stores",
        "task",
    )

    def __init__(self, delivery: Delivery, executor: Executor) -> None:
        self.delivery = delivery
        self.executor = executor
        self.received = time.monotonic()  # when this worker took it up
        self.envelope: Envelope | None = None
        self.request: Context | None = None
        self.task: Task[..., Any] | None = None
        # A message that will not run is acked (with its verdict) when it settles.
        self.acks_late = True
        self.admission: Admission | None = None  # its concurrency slot, while it runs
        self.deadlines: Deadlines | None = None  # its limits, while the body runs
        self.executing = False  # the body runs: time limits and terminate apply
        self.outcome: Outcome | None = None
        self.stores = True  # its outcome is stored (not ignore_result); set by begin()
        # Where the pool runs it (a thread id; an asyncio.Task), for stopping it.
        self.runner: object = None
        # True once its outcome is recorded and its lease ended (here or by the keeper,
        # at the hard limit): a late outcome of the task body is then dropped.
        self.settled = False

    # what the keeper and the pools read ------------------------------------------------
    @property
    def tag(self) -> str:
        return self.delivery.tag

    @property
    def task_id(self) -> str | None:
        """The task's id once the message is decoded."""
        return self.envelope.id if self.envelope is not None else None

    # the life of an attempt -----------------------------------------------------------
    def prepare(self) -> bool:
        """Decode, check and admit the message; False: it will not run (its outcome,
        rejected or deferred, is set and settles it)."""
        return self.executor.prepare(self)

    def execute(self) -> None:
        """Run the task on this thread and set the outcome (the sync pools)."""
        executor, envelope, task = self.executor, self.envelope, self.task
        assert envelope is not None and task is not None, "execute() before prepare()"
        self.arm()
        try:
            if not executor.begin(self):
                return
            started = time.perf_counter()
            try:
                value = task.body(*envelope.args, **envelope.kwargs)  # call(), inlined
                if type(value) is CoroutineType:  # async def: on this thread's own loop
                    value = run_to_completion(value)
            except Exception as exc:
                # While the request is still current: autoretry's task.retry reads it.
                try:
                    executor.raised(self, exc, time.perf_counter() - started)
                finally:
                    self._end()
                return
            except BaseException:  # shutdown: nothing to judge, only to give back
                self._end()
                raise
            self._end()
            executor.succeeded(self, value, time.perf_counter() - started)
        finally:
            self.disarm()

    def settle(self) -> None:
        """Ack the delivery and store the outcome (write-behind: no wait on the broker)."""
        if not self.settled:
            self.settled = True
            self.executor.settle(self)

    # the steps of execute, for pools that run tasks themselves -------------------------
    def arm(self) -> None:
        """Start the clock on the task's time limits and tell the pool's watchers."""
        envelope, task, executor = self.envelope, self.task, self.executor
        assert envelope is not None and task is not None
        # The message's limits, else the task's, else the configured defaults.
        soft = envelope.soft_time_limit or task.soft_time_limit or executor.soft_limit
        hard = envelope.time_limit or task.time_limit or executor.hard_limit
        self.deadlines = Deadlines.start(soft, hard) if (soft or hard) else None
        self.executing = True
        for watcher in executor.watchers:
            watcher.started(self)

    def begin(self) -> bool:
        """Check revocation and expiry, record STARTED, make the request current.
        False: the task will not run (its outcome is set)."""
        return self.executor.begin(self)

    def call(self) -> Any:
        """Call the task body: its value, or the awaitable an ``async def`` task returns.
        (A TypeError raised here, not inside the body, means the arguments do not fit.)"""
        envelope = self.envelope
        assert self.task is not None and envelope is not None
        return self.task.body(*envelope.args, **envelope.kwargs)

    def succeeded(self, value: Any, runtime: float) -> None:
        """The body returned ``value``."""
        self._end()
        self.executor.succeeded(self, value, runtime)

    def raised(self, exc: Exception, runtime: float) -> None:
        """The body raised ``exc``; call it while handling ``exc`` (its traceback is
        recorded)."""
        try:
            self.executor.raised(self, exc, runtime)
        finally:
            self._end()

    def abandoned(self) -> None:
        """The body was cancelled without an outcome (the keeper recorded one past its
        hard limit, or the process is leaving): give back what it held."""
        self._end()

    def disarm(self) -> None:
        """Stop the clock and tell the pool's watchers."""
        for watcher in self.executor.watchers:
            watcher.finished(self)
        self.executing = False
        self.deadlines = None

    def _end(self) -> None:
        pop_request()
        if self.admission is not None:
            self.executor.release(self)
