"""Where a round trip's time goes: `.delay()` then `.get()` on an idle worker, in hops.

    .venv/bin/python bench/rt_hops.py [--n 2000] [--warmup 100]

Starts a private redis-server and ``conveyor worker -P prefork -c 2``, then times N
sequential round trips of a task that returns the time its body started (one clock:
client and worker share the machine). Each round trip splits into:

- send:   ``.delay()`` until it returns (one ``EVALSHA enqueue.lua`` round trip)
- start:  from then until the body starts (the idle child's ``BZPOPMIN`` wakes, one
          ``fetch.lua`` round trip, decode and admission)
- finish: from the body's start until ``.get()`` returns (the body, the ack with the
          result in one write, Redis answering the client's blocked ``BLMOVE``, decode)

and, for scale, the plain round trip of one command on this machine: ``PING`` through
redis-py and through conveyor's own link. Prints p50 and p99 of each in microseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import redis

from procs import RedisServer, Worker, worker_env

BENCH = Path(__file__).resolve().parent


def pct(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[98]


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--redis-server", default="/usr/bin/redis-server")
    args = p.parse_args()
    with RedisServer(args.redis_server) as server:
        os.environ["BENCH_REDIS_URL"] = server.url
        env = worker_env()
        sys.path.insert(0, str(BENCH))
        import hop_tasks
        from conveyor.stores.redis.connection import RedisLink, pool_from_url

        exe = str(Path(sys.executable).parent / "conveyor")
        cmd = [exe, "-A", "hop_tasks", "worker", "-P", "prefork", "-c", "2", "-l", "warning"]
        w = Worker(cmd, env, BENCH)
        try:
            hop_tasks.stamp.delay().get(timeout=60)  # the worker is up
            rows: dict[str, list[float]] = {"send": [], "start": [], "finish": [], "total": []}
            for i in range(args.warmup + args.n):
                t0 = time.time()
                handle = hop_tasks.stamp.delay()
                t1 = time.time()
                started = float(handle.get(timeout=10))
                t2 = time.time()
                if i >= args.warmup:
                    rows["send"].append(t1 - t0)
                    rows["start"].append(started - t1)
                    rows["finish"].append(t2 - started)
                    rows["total"].append(t2 - t0)
            pings: dict[str, list[float]] = {"PING, redis-py": [], "PING, conveyor's link": []}
            client = redis.Redis.from_url(server.url)
            link = RedisLink(pool_from_url(server.url))
            for _ in range(args.n):
                t0 = time.perf_counter()
                client.ping()
                t1 = time.perf_counter()
                link.call(("PING",))
                t2 = time.perf_counter()
                pings["PING, redis-py"].append(t1 - t0)
                pings["PING, conveyor's link"].append(t2 - t1)
        finally:
            w.stop()
    print(f"{args.n} round trips; load {Path('/proc/loadavg').read_text().split()[0]}")
    print("| hop | p50 (us) | p99 (us) |")
    print("|---|---:|---:|")
    for name, values in {**rows, **pings}.items():
        p50, p99 = pct(values)
        print(f"| {name} | {p50 * 1e6:.0f} | {p99 * 1e6:.0f} |")


if __name__ == "__main__":
    main()
