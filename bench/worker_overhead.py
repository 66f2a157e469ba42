"""conveyor's own cost per task in a worker, without a network in the way.

Drains ``--tasks`` no-op tasks (results stored) through one solo loop on the memory
store, in this process, and reports the CPU time the process spent per task between the
first task's start and the last one's (``time.process_time``: the keeper thread
included), median of ``--repeat`` runs. CPU time rather than wall time, so a busy
machine moves the number less; compare two versions by running this script against
each (``PYTHONPATH=/path/to/other/src``).

    .venv/bin/python bench/worker_overhead.py --tasks 20000 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from conveyor import Conveyor
from conveyor.worker.main import Worker
from conveyor.worker.pools import run_in_process


def drain_once(tasks: int) -> tuple[float, float]:
    """(CPU microseconds per task, wall tasks per second) for one drain."""
    url = f"memory://{uuid.uuid4().hex}"
    app = Conveyor("overhead", broker=url, backend=url, set_as_current=False)
    marks: list[tuple[float, float]] = []
    done = 0
    worker = Worker(app, pool="solo", concurrency=1, hostname="overhead@bench")

    @app.task
    def add(x: int, y: int) -> int:
        nonlocal done
        done += 1
        if done == 1 or done == tasks:
            marks.append((time.process_time(), time.perf_counter()))
        if done == tasks:
            worker.stop.set()
        return x + y

    for i in range(tasks):
        add.delay(i, i)
    run_in_process(worker, 0)
    app.close()
    (cpu0, wall0), (cpu1, wall1) = marks
    return (cpu1 - cpu0) / (tasks - 1) * 1e6, (tasks - 1) / (wall1 - wall0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    drain_once(min(args.tasks, 2_000))  # warm up imports and caches
    runs = [drain_once(args.tasks) for _ in range(args.repeat)]
    for cpu, rate in runs:
        print(f"  run: {cpu:6.1f} us CPU/task, {rate:8,.0f} tasks/s wall")
    cpu = statistics.median(r[0] for r in runs)
    rate = statistics.median(r[1] for r in runs)
    print(f"median: {cpu:.1f} us CPU per task, {rate:,.0f} tasks/s (solo, memory://)")


if __name__ == "__main__":
    main()
