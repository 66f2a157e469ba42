"""How long ``inspect().active()`` takes while every prefork child runs a CPU-bound task.

    .venv/bin/python bench/inspect_reply.py [--broker redis|sqlite] [--samples 50]

Starts a private redis-server (or an SQLite file), a worker with ``-c 2``, keeps both
children busy in a pure-Python loop, and times N inspect round trips from a client.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.procs import RedisServer, Worker  # noqa: E402

from conveyor import Conveyor  # noqa: E402

APP = "tests.apps.observed"


def measure(url: str, samples: int) -> list[float]:
    env = dict(os.environ, CONVEYOR_BROKER_URL=url, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "conveyor", "-A", APP, "worker", "-c", "2",
               "-l", "info", "--prefetch-multiplier", "1", "-n", "bench@%h"]
    worker = Worker(command, env, ROOT)
    worker.wait_ready()
    client = Conveyor("client", broker=url)
    try:
        for _ in range(2):
            client.send_task(f"{APP}.spin", (samples * 0.2 + 10,))
        while len(next(iter((client.control.inspect().active() or {"": []}).values()))) < 2:
            time.sleep(0.05)
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            answer = client.control.inspect().active()
            times.append(time.perf_counter() - started)
            assert answer and len(next(iter(answer.values()))) == 2, answer
        return times
    finally:
        client.close()
        worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", choices=("redis", "sqlite"), default="redis")
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    if args.broker == "redis":
        with RedisServer() as server:
            times = measure(server.url, args.samples)
    else:
        with tempfile.TemporaryDirectory() as directory:
            times = measure(f"sqlite:///{directory}/broker.db", args.samples)
    ms = sorted(t * 1000 for t in times)
    print(
        f"{args.broker}: inspect active with 2/2 children busy, {len(ms)} samples: "
        f"p50 {statistics.median(ms):.1f} ms, p95 {ms[int(len(ms) * 0.95) - 1]:.1f} ms, "
        f"max {ms[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
