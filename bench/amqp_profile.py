"""Where a conveyor prefork child's time goes when it drains tasks from RabbitMQ.

``python amqp_profile.py [--tasks 3000]`` (from ``bench/``, with py-spy installed:
``pip install py-spy``) starts a private RabbitMQ node and redis-server, enqueues the
benchmark's ``noop`` tasks, runs ``conveyor worker -P prefork -c 2`` under
``py-spy record --subprocesses --idle`` until they are done, and prints the share of
the children's consuming loop spent in each step (docs/benchmarks.md, RabbitMQ).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis

from counter import COUNTER_KEY
from procs import RedisServer

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# Frames that mark a step of the consuming loop, in the order a stack is matched.
STEPS = [
    ("Task.run", "the task body (its INCR)"),
    ("RedisBackend.store", "storing the result (a round trip, waited for)"),
    ("RedisResultsLink", "writing the result behind the ack (no wait)"),
    ("AmqpConsumer._confirm_results", "fetch: reading the results' replies"),
    ("AmqpConsumer.fetch", "fetch (wait for and read deliveries)"),
    ("AmqpConsumer.ack", "basic.ack"),
]


def shares(raw: Path) -> tuple[int, Counter[str]]:
    """Samples inside ``ConsumeLoop._cycle``, by step, from py-spy's raw output."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if "ConsumeLoop._cycle" not in stack:
            continue
        total += int(samples)
        step = next((label for frame, label in STEPS if frame in stack), "everything else")
        counts[step] += int(samples)
    return total, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--keep", type=Path, help="also copy py-spy's raw output here")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    sys.path.insert(0, str(ROOT))
    from tests.support_rabbitmq import RabbitNode

    with tempfile.TemporaryDirectory(prefix="amqp-profile-") as directory, RedisServer() as server:
        node = RabbitNode(Path(directory))
        node.start()
        try:
            os.environ.update(
                BENCH_REDIS_URL=server.url, BENCH_BROKER_URL_CONVEYOR=node.vhost_url()
            )
            from conveyor import group
            from conveyor_tasks import noop

            signatures = [noop.s(i) for i in range(args.tasks)]
            for start in range(0, args.tasks, 500):
                group(signatures[start : start + 500]).apply_async()
            raw = Path(directory) / "profile.txt"
            worker = subprocess.Popen(
                [spy, "record", "--subprocesses", "--idle", "-r", "200", "-f", "raw",
                 "-o", str(raw), "--", str(Path(sys.executable).parent / "conveyor"),
                 "-A", "conveyor_tasks", "worker", "-P", "prefork", "-c", "2", "-l", "warning"],
                env={**os.environ, "PYTHONPATH": str(BENCH)},
                start_new_session=True,
            )
            counter = redis.Redis.from_url(server.url)
            started = time.monotonic()
            while int(counter.get(COUNTER_KEY) or 0) < args.tasks:
                time.sleep(0.01)
            print(f"drained {args.tasks} in {time.monotonic() - started:.2f}s (under py-spy)")
            os.killpg(worker.pid, signal.SIGINT)
            worker.wait(60)
            if args.keep:
                shutil.copy(raw, args.keep)
            total, counts = shares(raw)
            for step, samples in counts.most_common():
                print(f"{100 * samples / max(total, 1):5.1f}%  {step}")
        finally:
            node.close()


if __name__ == "__main__":
    main()
