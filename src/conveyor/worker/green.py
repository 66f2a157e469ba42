"""The gevent and eventlet pools: ``-c N`` consume loops on N greenlets of one process.

The threads pool's shape with greenlets for threads (the process is monkey-patched
before conveyor is imported: _early_patch.py), so every part of it holds: each loop owns
one consumer (a broker connection and its lease) and leases one message at a time, the
keeper (a greenlet, as ``threading`` is patched) renews the leases and reclaims dead
workers' deliveries, a first SIGTERM is a warm shutdown (running tasks finish and are
acked within ``worker_shutdown_timeout``, unstarted ones go back), a second is cold.

Why a loop per greenlet, not one fetcher feeding N greenlets: a consumer's acks are
write-behind on one pipelined connection, which two greenlets may not use at once, and a
fetcher that holds it in a blocking fetch would stall every ack behind it. The cost is
one broker connection per greenlet (``-c 100``: 100 connections).

Time limits (raises_time_limits): the soft limit is a ``gevent.Timeout`` /
``eventlet.Timeout`` raising :class:`SoftTimeLimitExceeded` in the task's greenlet at
its next yield; the hard limit another, raising :class:`TimeLimitExceeded`, which ends
the task (the greenlet goes on to its next message). Revoke with terminate raises
:class:`TaskRevokedError` in the greenlet the same way.

A greenlet that never yields (CPU-bound work, a blocking call the patch does not cover)
holds the hub, and with it the keeper: no lease is renewed, no timer fires. A real OS
thread watches the hub (:class:`HubWatch`) and ends the process (exit code 3, as the solo
pool does; the process manager starts a fresh one) when the hub has been blocked past a
running task's hard limit plus the grace period, or for 60% of the lease, before the
leases would lapse and another worker would start the same tasks (promise 2). What the
process held runs again elsewhere; a task that blocks the hub every time reaches
``task_max_deliveries`` and is dead-lettered.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar

from ..exceptions import ConfigurationError, SoftTimeLimitExceeded, TimeLimitExceeded
from .greenlib import EventletLib, GeventLib, GreenLib
from .inprocess import ThreadsPool, _announce_when_ready
from .timelimits import GRACE_SECONDS

if TYPE_CHECKING:
    from .attempt import Attempt
    from .executor import AttemptWatcher
    from .loop import LoopConfig
    from .main import Worker
    from .pool import RunningAttempt
    from .revocations import RevocationCache

__all__ = ["EventletPool", "GeventPool", "GreenPool", "GreenTimeouts", "HubWatch"]

logger = logging.getLogger("conveyor.worker")

# How often the hub's clock greenlet runs, and how long a blocked hub may stay blocked
# (a share of the lease) before the process gives up its work.
HUB_TURN_SECONDS = 0.1
HUB_BLOCKED_SHARE_OF_LEASE = 0.6


class GreenTimeouts:
    """Soft and hard limits as timers in the task's own greenlet (an attempt watcher:
    armed when the task body starts, cancelled when it ends)."""

    def __init__(self, lib: GreenLib) -> None:
        self.lib = lib
        self._timers: dict[str, list[Any]] = {}

    def started(self, attempt: Attempt) -> None:
        deadlines = attempt.deadlines
        if deadlines is None:
            return
        now = time.monotonic()
        timers = []
        if deadlines.soft is not None:
            soft = SoftTimeLimitExceeded(f"soft time limit ({deadlines.soft_limit:g}s) exceeded")
            timers.append(self.lib.timeout(max(deadlines.soft - now, 0.001), soft))
        if deadlines.hard is not None:
            hard = TimeLimitExceeded(f"time limit ({deadlines.hard_limit:g}s) exceeded")
            timers.append(self.lib.timeout(max(deadlines.hard - now, 0.001), hard))
        self._timers[attempt.tag] = timers

    def finished(self, attempt: Attempt) -> None:
        for timer in self._timers.pop(attempt.tag, ()):
            timer.cancel()


class GreenPool(ThreadsPool):
    """N consume loops on N greenlets (see the module docstring)."""

    name: ClassVar[str] = "green"
    raises_time_limits: ClassVar[bool] = True
    scalable: ClassVar[bool] = False  # its loops are greenlets started once (run_loops)
    lib_class: ClassVar[type[GreenLib]]

    def __init__(self, worker: Worker, threads: int | None = None) -> None:
        super().__init__(worker, threads)
        self.lib = self.lib_class()
        if not self.lib.patched():
            raise ConfigurationError(
                f"the {self.name} pool needs the standard library monkey-patched before "
                f"anything else is imported: start it as 'conveyor ... worker -P {self.name}' "
                "(worker_pool in the settings is read too late), or call "
                f"conveyor._early_patch.patch({self.name!r}) first thing in your program"
            )
        self.greenlets: dict[str, Any] = {}
        self.timeouts = GreenTimeouts(self.lib)
        tasks = worker.app.tasks.items()
        awaiting = sorted(name for name, task in tasks if inspect.iscoroutinefunction(task.body))
        if awaiting:
            logger.warning(
                "the %s pool cannot run async def tasks; they will be dead-lettered here: %s",
                self.name,
                ", ".join(awaiting),
            )

    def on_signal(self, signum: int, frame: Any) -> None:
        # The handler may run on the hub itself (eventlet's, inside its poll), where
        # nothing may block: the shutdown runs on a greenlet of its own.
        self.lib.spawn(lambda: self.worker.on_signal(signum, frame))

    def loop_config(self, revocations: RevocationCache) -> LoopConfig:
        # Each greenlet is one slot: it leases one message at a time, even under a
        # backlog, so -c 100 starts 100 at once and none waits behind another's task.
        config = super().loop_config(revocations)
        return dataclasses.replace(config, prefetch=1, backlog_factor=1)

    def watchers(self) -> tuple[AttemptWatcher, ...]:
        return (self.timeouts,)

    def run_loops(self, ready: threading.Semaphore) -> None:
        worker, lib = self.worker, self.lib
        self.greenlets = {loop.consumer_id: lib.spawn(loop.run) for loop in self.loops}
        watch = HubWatch(self)
        watch.start()
        try:
            _announce_when_ready(worker, ready, len(self.loops))
            worker.stop.wait()
            deadline = time.monotonic() + worker.shutdown_timeout
            stuck = [
                greenlet
                for greenlet in self.greenlets.values()
                if not lib.join(greenlet, max(0.0, deadline - time.monotonic()))
            ]
        finally:
            watch.done = True
        if stuck:
            logger.warning(
                "%d tasks still running after %ss: requeueing them",
                len(stuck),
                worker.shutdown_timeout,
            )
            self.cold_stop()

    def interrupt(self, attempt: RunningAttempt, exc_type: type[BaseException]) -> None:
        """Revoke with terminate (the time limits are this pool's own timers)."""
        for loop in self.loops:
            greenlet = self.greenlets.get(loop.consumer_id)
            if attempt.tag in loop.running and greenlet is not None:
                self.lib.kill(greenlet, exc_type(f"task {attempt.task_id} was terminated"))
                return


class HubWatch:
    """Notices a hub that stopped turning, from a real OS thread (see the module
    docstring): a greenlet stamps the time every ``HUB_TURN_SECONDS``, the thread reads
    the stamp."""

    def __init__(self, pool: GreenPool) -> None:
        self.pool = pool
        self.lib = pool.lib
        self.lease = float(pool.worker.app.conf.worker_lease_seconds)
        self.last_turn = time.monotonic()
        self.done = False

    def start(self) -> None:
        self.lib.spawn(self._stamp)
        self.lib.real_thread(self._watch)

    def _stamp(self) -> None:
        while not self.done:
            self.last_turn = time.monotonic()
            self.lib.sleep(HUB_TURN_SECONDS)

    def _watch(self) -> None:
        # An OS thread while the hub may be blocked: no logging (its locks are green).
        previous = None
        while not self.done:
            self.lib.real_sleep(0.25)
            stamp = self.last_turn
            reason = self.verdict(time.monotonic())
            # Only a stamp that stayed the same over a whole check of ours: a process the
            # machine did not schedule for a while stamps again as soon as it runs.
            if reason is not None and stamp == previous and not self.done:
                os.write(2, f"conveyor worker: {reason}\n".encode())
                os._exit(3)
            previous = stamp

    def verdict(self, now: float) -> str | None:
        """Why the process must end now, or None."""
        blocked = now - self.last_turn
        if blocked < max(4 * HUB_TURN_SECONDS, 0.5):
            return None
        hub = f"the {self.lib.name} hub has been blocked for {blocked:.1f}s"
        for loop in list(self.pool.loops):
            for attempt in list(loop.running.values()):
                deadlines = attempt.deadlines
                if (
                    attempt.executing
                    and deadlines is not None
                    and deadlines.hard is not None
                    and now >= deadlines.hard + GRACE_SECONDS
                ):
                    return (
                        f"{hub} by task {attempt.task_id}, past its time limit "
                        f"({deadlines.hard_limit:g}s): exiting so a fresh worker takes over"
                    )
        if blocked >= self.lease * HUB_BLOCKED_SHARE_OF_LEASE:
            return (
                f"{hub} (a task that does not yield: CPU-bound work, or a blocking call the "
                f"patch does not cover); its leases ({self.lease:g}s) would lapse and other "
                "workers start its tasks again, so it exits and they run again elsewhere"
            )
        return None


class GeventPool(GreenPool):
    name: ClassVar[str] = "gevent"
    lib_class: ClassVar[type[GreenLib]] = GeventLib


class EventletPool(GreenPool):
    name: ClassVar[str] = "eventlet"
    lib_class: ClassVar[type[GreenLib]] = EventletLib
