"""What events (-E) cost conveyor's drain: runs alternate without and with events on one
private redis-server, in one process, so load from other work on the machine falls on
both alike.

Usage: python events_cost.py [--rounds 5] [--tasks 10000] [--flag=-E]

For each run it reports the drain rate (first to last task, as run.py's ``drain``) and
the CPU time per task of the worker's processes and of redis-server between the first
and the last task (less sensitive to a busy machine than the rate). Prints the medians
and the cost of events as a share of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass

import psutil
import redis

from counter import COUNTER_KEY
from procs import RedisServer, worker_env
from run import Ctx, Framework


@dataclass
class Drain:
    rate: float  # tasks/s, first to last task
    cpu_us: float  # CPU µs per task: worker processes + redis-server
    redis_us: float  # of which redis-server


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants."""
    total = 0.0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def drain(ctx: Ctx, fw: Framework, n: int, redis_pid: int) -> Drain:
    ctx.flush()
    ctx.client(fw, "fill", n)
    w = ctx.worker(fw)
    server = psutil.Process(redis_pid)
    first: float | None = None
    cpu_first = 0.0
    deadline = time.monotonic() + max(120.0, n / 50)
    try:
        while True:
            count = int(ctx.r.get(COUNTER_KEY) or 0)
            now = time.perf_counter()
            if count >= 1 and first is None:
                first = now
                redis_cpu = server.cpu_times()
                redis_first = redis_cpu.user + redis_cpu.system
                cpu_first = tree_cpu(w.proc.pid) + redis_first
            if count >= n:
                redis_cpu = server.cpu_times()
                redis_last = redis_cpu.user + redis_cpu.system
                cpu_last = tree_cpu(w.proc.pid) + redis_last
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"drain stuck at {count}/{n}:\n{w.output()}")
            w.check_alive()
            time.sleep(ctx.args.poll_ms / 1000.0)
    finally:
        w.stop()
    assert first is not None
    return Drain(
        rate=n / (now - first),
        cpu_us=(cpu_last - cpu_first) / n * 1e6,
        redis_us=(redis_last - redis_first) / n * 1e6,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--flag", default="-E", help="the worker argument compared (default -E)")
    p.add_argument("--poll-ms", type=float, default=2.0)
    p.add_argument("--redis-server", default="/usr/bin/redis-server")
    args = p.parse_args()
    fw = Framework("conveyor")
    runs: dict[str, list[Drain]] = {"off": [], "on": []}
    with RedisServer(args.redis_server) as server:
        assert server.proc is not None
        env = worker_env(BENCH_REDIS_URL=server.url)
        for i in range(args.rounds):
            for mode in ("off", "on"):
                run_args = argparse.Namespace(
                    worker_arg=[args.flag] if mode == "on" else [], poll_ms=args.poll_ms
                )
                ctx = Ctx(run_args, server, redis.Redis.from_url(server.url), env)
                d = drain(ctx, fw, args.tasks, server.proc.pid)
                ctx.r.close()
                runs[mode].append(d)
                print(
                    f"round {i + 1} {mode:>3}: {d.rate:,.0f} tasks/s, {d.cpu_us:.0f} µs CPU/task"
                    f" ({d.redis_us:.0f} in redis-server)",
                    file=sys.stderr,
                )
    rate = {m: statistics.median(d.rate for d in runs[m]) for m in runs}
    cpu = {m: statistics.median(d.cpu_us for d in runs[m]) for m in runs}
    print(f"| `{args.flag}` | drain (median of {args.rounds}) | CPU per task (median) |")
    print("|---|---:|---:|")
    for mode in ("off", "on"):
        print(f"| {mode} | {rate[mode]:,.0f} tasks/s | {cpu[mode]:.0f} µs |")
    print(
        f"| cost | {1 - rate['on'] / rate['off']:.1%} of throughput | "
        f"{cpu['on'] / cpu['off'] - 1:.1%} more CPU |"
    )
    print("rates off:", ", ".join(f"{d.rate:,.0f}" for d in runs["off"]))
    print("rates on: ", ", ".join(f"{d.rate:,.0f}" for d in runs["on"]))


if __name__ == "__main__":
    main()
