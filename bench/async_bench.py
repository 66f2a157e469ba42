"""Drain of async tasks: conveyor's asyncio pool against arq and taskiq, same Redis.

    .venv/bin/python bench/async_bench.py --repeat 3            # ~10 minutes

Each run: a private redis-server (free port, no persistence, stopped by its PID) is
flushed, ``--tasks`` (10,000) calls of one async task are queued with the system's own
async client (100 at a time: taskiq's client opens a connection per concurrent send
and cannot take 10,000 at once), then the system's workers start (2 processes,
``--concurrency`` 100 tasks at once each) and the harness polls a counter that every
task ``INCR``s. The drain rate is the tasks between the first and the last ``INCR``
over that time, so interpreter start and imports are not counted. Two tasks: a no-op
(only the ``INCR``) and 10 ms of I/O (``asyncio.sleep(0.01)`` first). Results are
stored by all three.

Peers run under their own interpreters: ``--arq-python`` and ``--taskiq-python`` (arq
pins redis-py < 6, so it cannot share conveyor's environment). Make them with e.g.
``python -m venv /tmp/arq && /tmp/arq/bin/pip install arq``, and ``taskiq taskiq-redis``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procs import RedisServer  # bench/ is not a package: found on sys.path

ROOT = Path(__file__).resolve().parent.parent
COUNTER_KEY = "bench:async:counter"
PROCESSES = 2

ENQUEUE = {
    "conveyor": """
        import asyncio, async_peers
        async def main():
            for _ in range(0, {n}, 100):
                await asyncio.gather(*(async_peers.work.adelay({io}) for _ in range(100)))
        asyncio.run(main())
    """,
    "arq": """
        import asyncio
        from arq import create_pool
        from arq.connections import RedisSettings
        async def main():
            pool = await create_pool(RedisSettings.from_dsn("{url}"))
            for _ in range(0, {n}, 100):
                await asyncio.gather(*(pool.enqueue_job("arq_work", {io}) for _ in range(100)))
            await pool.aclose()
        asyncio.run(main())
    """,
    "taskiq": """
        import asyncio, async_peers
        async def main():
            await async_peers.broker.startup()
            for _ in range(0, {n}, 100):
                await asyncio.gather(*(async_peers.taskiq_work.kiq({io}) for _ in range(100)))
            await async_peers.broker.shutdown()
        asyncio.run(main())
    """,
}


def worker_commands(system: str, python: str, concurrency: int) -> list[list[str]]:
    if system == "conveyor":
        return [[python, "-m", "conveyor", "-A", "async_peers", "worker", "-P", "asyncio",
                 "-c", str(concurrency), "--processes", str(PROCESSES), "-l", "warning"]]
    if system == "arq":  # arq has no process option: one worker process each
        return [[python, "-m", "arq", "async_peers.WorkerSettings"]] * PROCESSES
    return [[python, "-m", "taskiq", "worker", "async_peers:broker", "--workers",
             str(PROCESSES), "--max-async-tasks", str(concurrency)]]


def one_run(
    system: str, python: str, url: str, tasks: int, io: float, concurrency: int
) -> float:
    client = redis.Redis.from_url(url)
    client.flushall()
    env = dict(os.environ, BENCH_REDIS_URL=url, BENCH_ASYNC_SYSTEM=system,
               BENCH_ASYNC_CONCURRENCY=str(concurrency),
               PYTHONPATH=str(ROOT / "bench"))
    code = textwrap.dedent(ENQUEUE[system]).format(io=io, n=tasks, url=url)
    subprocess.run([python, "-c", code], env=env, cwd=ROOT / "bench", check=True)
    workers = [
        subprocess.Popen(cmd, env=env, cwd=ROOT / "bench", stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
        for cmd in worker_commands(system, python, concurrency)
    ]
    try:
        first = last = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done = int(client.get(COUNTER_KEY) or 0)
            now = time.perf_counter()
            if done and first is None:
                first = (now, done)
            if done >= tasks:
                last = now
                break
            time.sleep(0.002)
        if first is None or last is None:
            raise RuntimeError(f"{system}: drain did not finish")
        return (tasks - first[1]) / (last - first[0])
    finally:
        for worker in workers:
            os.killpg(worker.pid, 15)
        for worker in workers:
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, 9)
                worker.wait()
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--arq-python", default="/tmp/aiobench/arq/bin/python")
    parser.add_argument("--taskiq-python", default="/tmp/aiobench/taskiq/bin/python")
    parser.add_argument("--only", choices=["conveyor", "arq", "taskiq"], action="append")
    args = parser.parse_args()
    pythons = {"conveyor": sys.executable, "arq": args.arq_python, "taskiq": args.taskiq_python}
    systems = args.only or ["conveyor", "arq", "taskiq"]
    rates: dict[tuple[str, str], list[float]] = {}
    with RedisServer() as server:
        for _ in range(args.repeat):  # alternated: each repeat runs every system once
            for kind, io in (("no-op", 0.0), ("10 ms I/O", 0.01)):
                for system in systems:
                    rate = one_run(system, pythons[system], server.url, args.tasks, io,
                                   args.concurrency)
                    rates.setdefault((kind, system), []).append(rate)
                    print(f"{kind:10} {system:9} {rate:9,.0f} tasks/s", file=sys.stderr)
    print(f"\n| task | {' | '.join(systems)} |\n|---|{'---|' * len(systems)}")
    for kind in ("no-op", "10 ms I/O"):
        cells = [f"{statistics.median(rates[(kind, s)]):,.0f}/s" for s in systems]
        print(f"| {kind} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
