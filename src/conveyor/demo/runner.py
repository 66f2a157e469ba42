"""The demo's load generator: send tasks as a busy app would, and account for every one.

It keeps a bounded number of tasks in flight (sent, result not yet seen), like a web
app whose requests each enqueue work: the workers stay busy, the queue stays short, so
the latency it measures is a task's (queue wait and run), not the length of a backlog.
Latency is from just before ``.delay()`` to the ``date_done`` the worker stored with
the result, so how often the runner looks does not change it. A task that was retried
has one result, its last attempt's, which says how many retries it took; a chain is one
unit too, watched through its last step's result.

A task whose result never comes is *lost*; the run ends when every task has a result,
or when none has come for ``stall_timeout`` seconds.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .. import states
from ..app import Conveyor
from ..stores.results import decode_meta
from .workloads import Workload

__all__ = ["KindStats", "PeriodicStats", "Report", "Runner", "plan"]


@dataclass(slots=True)
class KindStats:
    """What became of the tasks of one kind (or of all of them)."""

    kind: str
    planned: int
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0  # how many times its tasks were retried, in all
    latencies: list[float] = field(default_factory=list)
    first_sent: float | None = None
    last_done: float | None = None

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    def record(self, status: str, sent_at: float, done_at: float, retries: int = 0) -> None:
        self.retries += retries
        if status == states.SUCCESS:
            self.succeeded += 1
        else:
            self.failed += 1
        self.latencies.append(max(0.0, done_at - sent_at))
        self.last_done = done_at if self.last_done is None else max(self.last_done, done_at)

    def throughput(self) -> float:
        """Results per second, from this kind's first send to its last result."""
        if self.first_sent is None or self.last_done is None or not self.done:
            return 0.0
        return self.done / max(self.last_done - self.first_sent, 1e-6)

    def percentile(self, q: float) -> float | None:
        """The ``q`` quantile (0 < q <= 1) of the latencies, by nearest rank."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class PeriodicStats:
    """How often beat's periodic task ran while the workers were up."""

    task: str
    every: float  # its schedule, in seconds
    fired: int  # how many times it ran
    window: float  # seconds from starting the workers to stopping them

    @property
    def most(self) -> int:
        """The most it can have run: one tick per period after beat starts (and one
        more for a tick missed while no beat ran, sent when one starts)."""
        return int(self.window / self.every) + 1


@dataclass(slots=True)
class Report:
    kinds: list[KindStats]
    lost: list[str]  # ids of the tasks that never got a result
    interrupted: bool = False
    periodic: PeriodicStats | None = None  # filled in by the demo once its workers stop

    def total(self) -> KindStats:
        total = KindStats("all", sum(k.planned for k in self.kinds))
        for k in self.kinds:
            total.sent += k.sent
            total.succeeded += k.succeeded
            total.failed += k.failed
            total.retries += k.retries
            total.latencies.extend(k.latencies)
            if k.first_sent is not None:
                total.first_sent = min(total.first_sent or k.first_sent, k.first_sent)
            if k.last_done is not None:
                total.last_done = max(total.last_done or k.last_done, k.last_done)
        return total


def plan(workloads: Sequence[Workload], total: int, rng: random.Random) -> list[int]:
    """Which workload each of ``total`` tasks comes from: shares as close to the weights
    as whole numbers allow (largest remainder), in a shuffled order."""
    weights = sum(w.weight for w in workloads)
    exact = [total * w.weight / weights for w in workloads]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(workloads)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    order = [i for i, count in enumerate(counts) for _ in range(count)]
    rng.shuffle(order)
    return order


@dataclass(slots=True)
class _Pending:
    stats: KindStats
    sent_at: float


class Runner:
    def __init__(
        self,
        app: Conveyor,
        workloads: Sequence[Workload],
        total: int,
        *,
        in_flight: int,
        seed: int | None = None,
        stall_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.workloads = list(workloads)
        self.rng = random.Random(seed)
        self.order = plan(self.workloads, total, self.rng)
        self.kinds = [KindStats(w.kind, self.order.count(i)) for i, w in enumerate(workloads)]
        self.in_flight = max(1, in_flight)
        self.stall_timeout = stall_timeout
        self.pending: dict[str, _Pending] = {}
        self.next = 0

    @property
    def total(self) -> int:
        return len(self.order)

    def run(
        self,
        on_progress: Callable[[Runner], None] | None = None,
        check: Callable[[], None] | None = None,
    ) -> Report:
        """Send every planned task and wait for its result. ``check`` is called on each
        turn (raise from it to stop: a worker died); ``on_progress`` after each sweep."""
        last_result = time.monotonic()
        while self.next < self.total or self.pending:
            if check is not None:
                check()
            self._send_up_to_window()
            finished = self._sweep()
            if on_progress is not None:
                on_progress(self)
            now = time.monotonic()
            if finished:
                last_result = now
            elif now - last_result > self.stall_timeout:
                break
            else:
                time.sleep(0.002)
        return self.report()

    def report(self, interrupted: bool = False) -> Report:
        return Report(self.kinds, list(self.pending), interrupted)

    def _send_up_to_window(self) -> None:
        while self.next < self.total and len(self.pending) < self.in_flight:
            index = self.order[self.next]
            stats = self.kinds[index]
            sent_at = time.time()
            result = self.workloads[index].send(self.rng, self.next)
            self.next += 1
            stats.sent += 1
            if stats.first_sent is None:
                stats.first_sent = sent_at
            self.pending[result.id] = _Pending(stats, sent_at)

    def _sweep(self) -> int:
        """Read the result of every pending task; count those that are final."""
        ids = list(self.pending)
        finished = 0
        for task_id, raw in zip(ids, self.app.backend.get_many(ids), strict=True):
            if raw is None:
                continue
            meta = decode_meta(raw)
            if meta.status not in states.READY_STATES:
                continue
            entry = self.pending.pop(task_id)
            done_at = meta.date_done or time.time()
            entry.stats.record(meta.status, entry.sent_at, done_at, meta.retries)
            finished += 1
        return finished
