"""The prefork supervisor: the parent starts children and watches them; it runs no task.

Each child consumes from the broker itself, with its own connection (no IPC hop on the
hot path). The parent:

- starts ``concurrency`` children and starts a new one when one exits or dies; a dead
  child's deliveries go back to the queue at once (no waiting for its lease);
- renews its children's leases, so a child busy in C code holding the GIL for minutes
  still keeps its task (only the death of the process ends a lease);
- recycles children after ``max_tasks_per_child`` tasks or above ``max_memory_per_child``;
- turns SIGTERM/SIGINT into a warm shutdown (children finish their task within
  ``worker_shutdown_timeout`` and give the unstarted ones back); a second signal is cold:
  children are killed and their deliveries requeued.

The parent is single-threaded on purpose: forking a process that has threads can
deadlock the child.

It is the ``prefork`` :class:`~conveyor.worker.pool.Pool`: it sees the attempt each
child runs through the child's shared-memory slot (worker/slots.py) and stops one by
killing that child.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from .. import states
from ..exceptions import (
    SoftTimeLimitExceeded,
    TaskRevokedError,
    TimeLimitExceeded,
    WorkerLostError,
)
from ..stores.transport import leases_of
from .beat import EmbeddedBeat
from .identity import consumer_id
from .keeper import LeaseKeeper
from .loop import TRANSIENT, ConsumeLoop, FetchInterrupted
from .orphans import die_with_parent
from .pool import Pool, RunningAttempt
from .revocations import RevocationCache
from .slots import Slot, Slots, SlotTracker
from .timelimits import Alarm
from .verdicts import record_ended

if TYPE_CHECKING:
    from .main import Worker

__all__ = ["Supervisor"]

logger = logging.getLogger("conveyor.worker")



@dataclass(slots=True)
class Child:
    index: int
    pid: int
    consumer_id: str
    started: float
    stopping: bool = False
    # Why the supervisor ended it, and the task it was running: ("time limit", slot,
    # None) or ("terminated", slot, signal name).
    verdict: tuple[str, Slot, str | None] | None = None
    recorded: bool = False  # the verdict is stored already (before the kill, on AMQP)


class Supervisor(Pool):
    name: ClassVar[str] = "prefork"
    forks: ClassVar[bool] = True
    # Each child's SIGALRM raises its soft limit; the hard limit is this process's kill.
    raises_time_limits: ClassVar[bool] = True
    scalable: ClassVar[bool] = True

    def __init__(self, worker: Worker, concurrency: int | None = None) -> None:
        super().__init__(worker)
        self.app = worker.app
        self.processes = max(1, concurrency if concurrency is not None else worker.concurrency)
        self.children: dict[int, Child] = {}
        self.ready_r, self.ready_w = os.pipe()
        self.wake_r, self.wake_w = os.pipe()
        self._signals = 0
        self._ready_count = 0
        self._announced = False
        conf = self.app.conf
        self.lease = float(conf.worker_lease_seconds)
        self.tick_every = min(self.lease / 3, float(conf.worker_heartbeat_seconds), 1.0)
        self.max_memory_kib = worker.max_memory_per_child
        self.beat: EmbeddedBeat | None = None
        # task_reject_on_worker_lost (default True here): a task whose child died goes
        # back to the queue (bounded by task_max_deliveries); False records it as failed
        # with WorkerLostError, as Celery does by default.
        self.reject_on_worker_lost = bool(conf.task_reject_on_worker_lost)
        self.autoscaler = worker.autoscaler(self)  # --autoscale, ticked with the leases

    @property
    def concurrency(self) -> int:
        return self.processes

    # lifecycle ------------------------------------------------------------------------
    def run(self) -> int:
        for fd in (self.wake_r, self.wake_w, self.ready_r):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake select
        # The supervisor settles for children it lost: with leased deliveries it reads
        # and discards what they held; without (AMQP) their connection gave it back.
        self.leases = leases_of(self.app.broker)
        _ = self.app.coordinator  # connect in the parent before forking: children make their own
        observer = self.worker.observer
        self.slots = Slots(observer.capacity)  # room for pool_grow
        self.revocations: RevocationCache = RevocationCache()
        observer.prefork(self)
        with contextlib.suppress(*TRANSIENT):
            self.revocations.refresh(self.app.coordinator)
        for index in range(1, self.processes + 1):
            self._spawn(index)
        # -B: beat runs in a child process of its own (worker/beat.py says why).
        self.beat = EmbeddedBeat(self.app) if self.worker.beat else None
        if self.beat is not None:
            self.beat.start()
        last_tick = 0.0
        while self._signals == 0:
            self._wait(0.1)
            self._read_ready()
            self._reap(respawn=True)
            self._police(time.monotonic())
            observer.poll()  # inspect/control: answered here, while children are busy
            now = time.monotonic()
            if now - last_tick >= self.tick_every:
                last_tick = now
                self._tick()
        return self._shutdown()

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.warning(
                "%s received: warm shutdown (running tasks may take up to %ss; "
                "send it again to stop now)",
                signal.Signals(signum).name,
                self.worker.shutdown_timeout,
            )
        else:
            logger.warning("cold shutdown: stopping children now; their tasks are requeued")

    def _wait(self, timeout: float) -> None:
        try:
            readable, _, _ = select.select([self.wake_r, self.ready_r], [], [], timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for safety
            return
        if self.wake_r in readable:
            try:
                while os.read(self.wake_r, 512):
                    pass
            except BlockingIOError:
                pass

    # children -------------------------------------------------------------------------
    def _spawn(self, index: int) -> None:
        cid = consumer_id(self.worker.hostname, f"child-{index}")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child; covered by integration tests
            code = 1
            try:
                code = self._child_main(index, cid)
            except BaseException:
                logger.exception("worker child %d crashed", index)
            finally:
                try:
                    self.worker.observer.child_exiting()
                finally:
                    os._exit(code)
        self.children[pid] = Child(index, pid, cid, time.monotonic())

    def _child_main(self, index: int, cid: str) -> int:  # pragma: no cover - in the child
        die_with_parent()
        self.worker.observer.in_child(index)
        signal.set_wakeup_fd(-1)
        for fd in (self.wake_r, self.wake_w, self.ready_r):
            os.close(fd)
        import multiprocessing

        multiprocessing.current_process().name = f"ForkPoolWorker-{index}"
        stop = threading.Event()
        stopping = False
        loops: list[ConsumeLoop] = []

        def on_term(signum: int, frame: object) -> None:
            # Always warm: systemd and pkill signal every process of the worker, so a
            # child may see the same shutdown twice. A cold stop is the parent's SIGKILL.
            # Only the first signal sets the event: the second can land while the first
            # handler is inside stop.set(), whose lock is not reentrant (a deadlock).
            nonlocal stopping
            if not stopping:
                stopping = True
                stop.set()
                if loops and loops[0].in_fetch:
                    raise FetchInterrupted  # idle: no task to finish, leave now

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent coordinates Ctrl-C
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        ready_w = self.ready_w

        def on_ready() -> None:
            os.write(ready_w, b"r")

        return self._consume_in_child(index, cid, stop, on_ready, loops)

    def _consume_in_child(
        self,
        index: int,
        cid: str,
        stop: threading.Event,
        on_ready: Callable[[], None],
        loops: list[ConsumeLoop],
    ) -> int:  # pragma: no cover - runs in the child
        """The child's work once it is set up: one consume loop, one task at a time (the
        asyncio pool runs an event loop here instead). A loop in ``loops`` that is idle
        in a fetch is interrupted by the child's SIGTERM."""
        config = self.worker.loop_config(
            self.revocations,
            (
                SlotTracker(self.slots, index - 1),
                Alarm(enforce_hard=False),  # the hard limit is this supervisor's
            ),
            stop=stop,
            max_tasks=self.worker.max_tasks_per_child,
        )
        loop = ConsumeLoop(self.app, config, cid, on_ready=on_ready)
        loops.append(loop)
        keeper = LeaseKeeper(self.app, [loop], stop, reclaim=False, revocations=self.revocations)
        keeper.start()
        loop.run()
        stop.set()
        return 0

    def _read_ready(self) -> None:
        try:
            self._ready_count += len(os.read(self.ready_r, 512))
        except BlockingIOError:
            return
        if not self._announced and self._ready_count >= self.processes:
            self._announced = True
            self.worker.announce_ready()

    def _reap(self, respawn: bool) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                if self.beat is not None:
                    self.beat.reaped(pid, status, respawn and self._signals == 0)
                continue
            self._after_exit(child, status)
            if respawn and self._signals == 0 and child.index <= self.processes:
                self._spawn(child.index)

    def _after_exit(self, child: Child, status: int) -> None:
        if os.WIFSIGNALED(status):
            how = f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
        else:
            how = f"exited with code {os.waitstatus_to_exitcode(status)}"
        running = self.slots.read(child.index - 1)
        self.slots.clear(child.index - 1)
        self.worker.observer.child_exited(child.pid)
        died = os.WIFSIGNALED(status) or os.waitstatus_to_exitcode(status) != 0
        try:
            if child.verdict is not None:
                if not child.recorded:
                    self._record_verdict(child, *child.verdict)
            elif died and running is not None and not self.reject_on_worker_lost:
                self._record(child, running, states.FAILURE, WorkerLostError(f"worker child {how}"))
        except TRANSIENT as exc:
            logger.warning("could not record child %d's task (%s)", child.index, exc)
        try:
            moved = self.leases.reclaim(child.consumer_id) if self.leases is not None else 0
        except TRANSIENT as exc:
            moved = 0
            logger.warning(
                "could not requeue child %d's tasks now (%s); its lease will", child.index, exc
            )
        if os.WIFSIGNALED(status) or os.waitstatus_to_exitcode(status) != 0:
            logger.error(
                "worker child %d (pid %d) %s; %d of its tasks went back to the queue",
                child.index,
                child.pid,
                how,
                moved,
            )
        else:
            logger.info("worker child %d (pid %d) %s", child.index, child.pid, how)

    # run-time changes (app.control; observe/views.py) ---------------------------------
    def busy(self) -> int:
        """How many of the pool's children run a task now (autoscale)."""
        return sum(
            1
            for child in self.children.values()
            if not child.stopping and self.slots.read(child.index - 1) is not None
        )

    def grow(self, n: int) -> None:
        """pool_grow: start ``n`` more children."""
        target = self.processes + n
        if target > self.slots.count:
            raise ValueError(f"the pool can grow to {self.slots.count} processes at most")
        self.processes = target
        used = {child.index for child in self.children.values()}
        for index in range(1, target + 1):
            if index not in used:
                self._spawn(index)

    def shrink(self, n: int) -> None:
        """pool_shrink: stop ``n`` children after their current task (not replaced)."""
        target = self.processes - n
        if target < 1:
            raise ValueError(f"the pool has {self.processes} processes; it keeps at least 1")
        self.processes = target
        for child in self.children.values():
            if child.index > target and not child.stopping:
                child.stopping = True
                _signal(child.pid, signal.SIGTERM)

    def restart_children(self) -> None:
        """Replace every child after its current task, so new ones start with changed
        settings (queues, task limits); unstarted messages go back to the queue."""
        for child in self.children.values():
            if not child.stopping:
                child.stopping = True
                _signal(child.pid, signal.SIGTERM)

    # hard time limits and terminate ----------------------------------------------------
    def _police(self, now: float) -> None:
        """Stop attempts past their hard limit, or revoked with terminate; the outcome is
        recorded when the child has been reaped."""
        terminate = self.revocations.terminate
        for child in list(self.children.values()):
            if child.verdict is not None:
                continue
            slot = self.slots.read(child.index - 1)
            if slot is None:
                continue
            if slot.hard_deadline is not None and now >= slot.hard_deadline:
                self.interrupt(slot, TimeLimitExceeded)
            elif slot.task_id in terminate:
                self.interrupt(slot, TaskRevokedError)

    def interrupt(self, attempt: RunningAttempt, exc_type: type[BaseException]) -> None:
        """Kill the child running ``attempt`` (a soft limit is the child's own alarm)."""
        if exc_type is SoftTimeLimitExceeded:
            return
        for child in self.children.values():
            slot = self.slots.read(child.index - 1)
            # tag and task id together: a delivery tag is unique only within one connection
            # (AMQP), so two children can hold the same one and the wrong child would die
            if (
                child.verdict is None
                and slot is not None
                and slot.tag == attempt.tag
                and slot.task_id == attempt.task_id
            ):
                self._kill(child, slot, exc_type)
                return

    def _kill(self, child: Child, slot: Slot, exc_type: type[BaseException]) -> None:
        if exc_type is TimeLimitExceeded:
            child.verdict = ("time limit", slot, None)
            logger.error(
                "task %s exceeded its time limit (%ss): killing worker child %d",
                slot.task_id,
                slot.hard_limit,
                child.index,
            )
            self._record_before_kill(child)
            _signal(child.pid, signal.SIGKILL)
            return
        name = self.revocations.terminate.get(slot.task_id, "SIGTERM")
        child.verdict = ("terminated", slot, name)
        logger.warning("terminating task %s (%s)", slot.task_id, name)
        self._record_before_kill(child)
        # A child's SIGTERM means "finish your task", so terminate kills it.
        signum = signal.Signals[name]
        _signal(child.pid, signal.SIGKILL if signum == signal.SIGTERM else signum)

    def _record_before_kill(self, child: Child) -> None:
        """Without leases (AMQP) the killed child's message goes back to the queue the
        moment its connection closes, and another child may take it at once: its final
        state must be stored before, so that child acks it without running it
        (``Executor._ended_before``). With leases it is stored after the reap, when the
        lease is discarded with it."""
        if self.leases is not None or child.verdict is None:
            return
        try:
            self._record_verdict(child, *child.verdict)
            child.recorded = True
        except TRANSIENT as exc:  # recorded after the reap instead
            logger.warning("could not record child %d's task before ending it (%s)",
                           child.index, exc)

    def _record_verdict(self, child: Child, why: str, slot: Slot, signame: str | None) -> None:
        if why == "time limit":
            limit = f"{slot.hard_limit:g}s" if slot.hard_limit else "?"
            self._record(
                child, slot, states.FAILURE, TimeLimitExceeded(f"time limit ({limit}) exceeded")
            )
        else:
            error = TaskRevokedError(f"task {slot.task_id} was terminated ({signame})")
            self._record(child, slot, states.REVOKED, error)

    def _record(self, child: Child, slot: Slot, status: str, exc: Exception) -> None:
        """Store the task's outcome and end its lease, so it is not delivered again."""
        record_ended(
            self.app,
            consumer_id=child.consumer_id,
            tag=slot.tag,
            task_id=slot.task_id,
            status=status,
            exc=exc,
            worker=self.worker.hostname,
            body=(
                self.leases.leased_body(child.consumer_id, slot.tag)
                if self.leases is not None
                else None
            ),
            hooks=self.worker.hooks,
        )

    # periodic work --------------------------------------------------------------------
    def _tick(self) -> None:
        coordinator = self.app.coordinator
        try:
            consumer_ids = [c.consumer_id for c in self.children.values()]
            if self.leases is not None:
                self.leases.renew(consumer_ids, self.lease)
            coordinator.renew_holders(consumer_ids, self.lease)
            self.revocations.refresh(coordinator)
            moved = self.leases.reclaim() if self.leases is not None else 0
            if moved:
                logger.warning("requeued %d tasks from workers that stopped renewing", moved)
            self.worker.heartbeat()
            if self.autoscaler is not None:
                self.autoscaler.tick()
        except TRANSIENT as exc:
            logger.debug("supervisor: broker unreachable (%s)", exc)
        self._check_memory()

    def _check_memory(self) -> None:
        if not self.max_memory_kib:
            return
        for child in self.children.values():
            if child.stopping:
                continue
            rss = _rss_kib(child.pid)
            if rss is not None and rss > self.max_memory_kib:
                logger.warning(
                    "worker child %d uses %d KiB > max_memory_per_child %d KiB: replacing it "
                    "after its current task",
                    child.index,
                    rss,
                    self.max_memory_kib,
                )
                child.stopping = True
                _signal(child.pid, signal.SIGTERM)

    # shutdown -------------------------------------------------------------------------
    def _shutdown(self) -> int:
        if self.beat is not None:
            self.beat.terminate()
        for child in self.children.values():
            _signal(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.worker.shutdown_timeout
        while self.children and self._signals < 2 and time.monotonic() < deadline:
            self._wait(0.1)
            self._reap(respawn=False)
        if self.children:
            for child in self.children.values():
                _signal(child.pid, signal.SIGKILL)
            while self.children:
                self._wait(0.05)
                self._reap(respawn=False)
        if self.beat is not None:
            self.beat.stop()
        self.worker.retire()
        return 0


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise


def _rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024
