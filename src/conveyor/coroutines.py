"""Running ``async def`` task bodies: to completion on a loop of their own (the prefork,
threads and solo pools, eager calls), and interrupting one from outside.

An ``async def`` task's body returns a coroutine; a pool that runs tasks on a thread
runs that coroutine here, on one event loop per thread (made once, kept), so a
coroutine is never stored as a result (issue 14). The asyncio pool
(worker/asyncpool.py) awaits it on its shared loop instead.

Time limits and terminate reach a coroutine as exceptions *inside* it, at the ``await``
where it waits, as they reach a sync task at its current line: the task can catch
:class:`~conveyor.exceptions.SoftTimeLimitExceeded` and clean up. asyncio's one safe
way into a waiting coroutine is cancellation, so :class:`Interruptible` wraps the
coroutine and, when the task is cancelled *for* an interruption, throws that
interruption into the coroutine instead of the ``CancelledError``. Whatever the
coroutine awaited was cancelled first, so timers and sockets are cleaned up exactly as
for any cancellation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
from collections.abc import Awaitable, Generator
from types import CoroutineType
from typing import Any, TypeVar

from . import _early_patch
from .exceptions import PoolCannotRun

__all__ = ["Interruptible", "is_coroutine", "run_to_completion"]

T = TypeVar("T")

# While a coroutine runs on a thread's own loop, the loop wakes this often, so an
# exception raised asynchronously into the thread (the threads pool's time limits) lands
# within this long instead of when the coroutine next wakes up.
_WAKE_EVERY = 0.05


class Interruptible:
    """An awaitable around a coroutine: :meth:`interrupt` (on the loop's thread) throws
    an exception into the coroutine where it waits, by cancelling the asyncio task that
    awaits this wrapper."""

    __slots__ = ("_coro", "_pending", "_task")

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self._coro: Any = awaitable.__await__()
        self._pending: BaseException | None = None
        self._task: asyncio.Task[Any] | None = None

    def interrupt(self, exc: BaseException) -> bool:
        """Throw ``exc`` into the coroutine at its next suspension (call on the loop's
        thread); False when it is not running (not started yet, or done)."""
        task = self._task
        if task is None or task.done():
            return False
        self._pending = exc
        task.cancel()
        return True

    def __await__(self) -> Generator[Any, Any, Any]:
        self._task = asyncio.current_task()
        coro = self._coro
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            try:
                if to_throw is not None:
                    exc, to_throw = to_throw, None
                    yielded = coro.throw(exc)
                else:
                    yielded = coro.send(to_send)
            except StopIteration as stop:
                return stop.value
            try:
                to_send = yield yielded
            except asyncio.CancelledError as cancelled:
                pending, self._pending = self._pending, None
                if pending is not None and self._task is not None:
                    self._task.uncancel()  # ours, not the task's own: keep its count true
                    to_throw = pending
                else:
                    to_throw = cancelled
            except BaseException as exc:
                to_throw = exc


class _Holder:
    """A thread's own loop, closed when the thread ends (its locals are dropped)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    def __del__(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.close()


_local = threading.local()


def _thread_loop() -> asyncio.AbstractEventLoop:
    holder: _Holder | None = getattr(_local, "holder", None)
    if holder is None:
        holder = _local.holder = _Holder()
    if holder.loop is None or holder.loop.is_closed():
        holder.loop = asyncio.new_event_loop()
    return holder.loop


def run_to_completion(awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` to its end on this thread's own event loop and return its value.

    An interruption raised into this thread while it waits (the SIGALRM of a soft time
    limit, an exception set by the threads pool's keeper) is thrown into the coroutine
    (:class:`Interruptible`), which may catch it. Called on a thread whose loop is
    already running (an eager call inside ``async def``), it runs on a helper thread.

    Not in a process patched for gevent or eventlet: asyncio keeps one running loop per
    OS thread, and every greenlet shares that thread, so one greenlet's loop blocks the
    hub for all (seen: the hub watch ends the worker). The task is refused instead."""
    if _early_patch.patched is not None:
        close = getattr(awaitable, "close", None)
        if close is not None:
            close()  # never awaited, by design: no "was never awaited" warning
        raise PoolCannotRun(
            f"an async def task cannot run on the {_early_patch.patched} pool (asyncio and "
            f"greenlets do not share a thread); run it on a -P asyncio, prefork, threads "
            f"or solo worker"
        )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_here(awaitable, _thread_loop())
    with concurrent.futures.ThreadPoolExecutor(1, "conveyor-eager") as helper:
        return helper.submit(contextvars.copy_context().run, _run_aside, awaitable).result()


def _run_aside(awaitable: Awaitable[T]) -> T:
    """On a helper thread that ends after this: a loop of its own, closed after."""
    loop = asyncio.new_event_loop()
    try:
        return _run_here(awaitable, loop)
    finally:
        loop.close()


def _run_here(awaitable: Awaitable[T], loop: asyncio.AbstractEventLoop) -> T:
    wrapper = Interruptible(awaitable)

    async def main() -> T:
        value: T = await wrapper
        return value

    task = loop.create_task(main())

    def deliver(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # An interruption landed in one of the loop's own callbacks (not in the task's
        # code): hand it to the task rather than let the loop log and drop it.
        exc = context.get("exception")
        if isinstance(exc, Exception) and not task.done() and wrapper.interrupt(exc):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(deliver)
    waker = _Waker(loop)
    try:
        while True:
            try:
                return loop.run_until_complete(task)
            except BaseException as exc:
                if task.done():
                    raise
                if not isinstance(exc, Exception):
                    # KeyboardInterrupt, SystemExit: end the task, then leave with it.
                    task.cancel()
                    _finish(loop, task)
                    raise
                # Raised in the loop's machinery while it waited: into the task.
                wrapper.interrupt(exc)
    finally:
        waker.stop()
        loop.set_exception_handler(None)


def _finish(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    # The task's own end is not what the caller is leaving with.
    with contextlib.suppress(BaseException):
        loop.run_until_complete(task)


class _Waker:
    """Wakes the loop every ``_WAKE_EVERY`` seconds while a coroutine runs on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.handle: asyncio.TimerHandle | None = loop.call_later(_WAKE_EVERY, self.tick)

    def tick(self) -> None:
        self.handle = self.loop.call_later(_WAKE_EVERY, self.tick)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


def is_coroutine(value: object) -> bool:
    """True for what an ``async def`` body returns (checked on every task's value: one
    type comparison)."""
    return type(value) is CoroutineType
