"""One thread that waits for every pending ``await result`` on a backend without an async
client (SQLite, memory, RabbitMQ, Redis Cluster and Sentinel).

A thread per wait does not scale to a thousand waits started at once: the event loop
itself starts each pool thread (``Thread.start()`` blocks until the new thread runs, a
scheduler slice each on a loaded machine), and dozens of threads polling the store take
the GIL from the loop between them. Measured on 2 loaded cores: the loop stalled 70-300
ms while the 64 threads of the former pool started and polled.

So the loop only files a future per wait (a dict insert under a lock) and one thread per
backend serves them all: it reads every pending result in one ``get_many``, hands the
final ones to their loops in one callback per loop, then blocks on the oldest pending one
(``wait``: pushed where the store can push, the SQLite doorbell) for at most
:data:`SLICE`, so a result finished meanwhile is noticed within that. Timeouts are the
loop's (a timer per wait); the thread ends after :data:`IDLE_EXIT` with nothing to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import weakref
from collections.abc import Sequence

from .. import states
from .results import ResultBackend, decode_meta

__all__ = ["ResultWaiter", "waiter_for"]

# The longest the thread blocks on one pending result before reading all of them again.
SLICE = 0.05
# Reads of all pending results are at least this far apart, so results that trickle in
# one by one are collected by the batch, not by a read of a thousand rows each.
MIN_ROUND = 0.01
# The thread ends after this long with no pending wait (the next wait starts another).
IDLE_EXIT = 2.0
# Waits settled per turn of the loop when many results come in at once.
SETTLE_BATCH = 100

_Delivery = tuple["asyncio.Future[bytes | None]", bytes | BaseException]


class ResultWaiter:
    """The pending waits on one backend, and the one thread that serves them."""

    def __init__(self, backend: ResultBackend) -> None:
        self._backend = weakref.ref(backend)
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        # task id -> the futures waiting for it; insertion order is the order of waiting.
        self._pending: dict[str, list[asyncio.Future[bytes | None]]] = {}
        self._thread: threading.Thread | None = None

    async def wait(self, task_id: str, timeout: float | None) -> bytes | None:
        """The task's final record, None after ``timeout`` seconds (None: no limit).
        A timer, not ``asyncio.wait_for`` (a task and two futures more per wait): a
        thousand waits start in one turn of the loop, so each costs the loop little."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes | None] = loop.create_future()
        self._add(task_id, future)
        expiry = None if timeout is None else loop.call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            if expiry is not None:
                expiry.cancel()
            self._discard(task_id, future)

    def _add(self, task_id: str, future: asyncio.Future[bytes | None]) -> None:
        with self._lock:
            self._pending.setdefault(task_id, []).append(future)
            if self._thread is None:
                backend = self._backend()
                if backend is None:
                    raise RuntimeError("the result backend was closed while awaiting a result")
                self._thread = threading.Thread(
                    target=self._serve, args=(backend,), name="conveyor-await", daemon=True
                )
                self._thread.start()
            else:
                self._work.notify()

    def _discard(self, task_id: str, future: asyncio.Future[bytes | None]) -> None:
        with self._lock:
            futures = self._pending.get(task_id)
            if futures is None:
                return
            if future in futures:
                futures.remove(future)
            if not futures:
                del self._pending[task_id]

    def _serve(self, backend: ResultBackend) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._work.wait(IDLE_EXIT)
                    if not self._pending:
                        self._thread = None
                        return
                task_ids = list(self._pending)
            started = time.monotonic()
            try:
                self._round(backend, task_ids)
            except Exception as exc:  # the store failed: every wait raises it, as get() would
                self._deliver({task_id: exc for task_id in task_ids})
            pause = MIN_ROUND - (time.monotonic() - started)
            if pause > 0:
                time.sleep(pause)

    def _round(self, backend: ResultBackend, task_ids: Sequence[str]) -> None:
        found: dict[str, bytes | BaseException] = {}
        for task_id, raw in zip(task_ids, backend.get_many(task_ids), strict=True):
            if raw is not None and decode_meta(raw).status in states.READY_STATES:
                found[task_id] = raw
        if found:
            self._deliver(found)
        oldest = next((task_id for task_id in task_ids if task_id not in found), None)
        if oldest is not None:
            raw = backend.wait(oldest, SLICE)
            if raw is not None:
                self._deliver({oldest: raw})

    def _deliver(self, outcomes: dict[str, bytes | BaseException]) -> None:
        """Hand the outcomes to the futures waiting for them: one callback per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Delivery]] = {}
        with self._lock:
            for task_id, outcome in outcomes.items():
                for future in self._pending.pop(task_id, ()):
                    by_loop.setdefault(future.get_loop(), []).append((future, outcome))
        for loop, deliveries in by_loop.items():
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, deliveries)


def _expire(future: asyncio.Future[bytes | None]) -> None:
    if not future.done():
        future.set_result(None)


def _settle(deliveries: list[_Delivery]) -> None:
    """Settle a batch of futures, and the rest on the next turn of the loop: each
    settled future wakes its coroutine on the turn after, so a thousand results in
    at once wake a batch per turn, and the loop's other work runs in between."""
    batch, rest = deliveries[:SETTLE_BATCH], deliveries[SETTLE_BATCH:]
    for future, outcome in batch:
        if future.done():  # timed out or cancelled meanwhile
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    if rest:
        rest[0][0].get_loop().call_soon(_settle, rest)


_waiters: weakref.WeakKeyDictionary[ResultBackend, ResultWaiter] = weakref.WeakKeyDictionary()
_waiters_lock = threading.Lock()


def _forget_after_fork() -> None:
    """A forked child has none of its parent's threads: its waits need a waiter (and
    locks) of its own, not one whose thread stayed in the parent."""
    global _waiters_lock
    _waiters_lock = threading.Lock()
    _waiters.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def waiter_for(backend: ResultBackend) -> ResultWaiter:
    """The backend's waiter, made on first use."""
    with _waiters_lock:
        waiter = _waiters.get(backend)
        if waiter is None:
            waiter = _waiters[backend] = ResultWaiter(backend)
        return waiter
