"""Workflows, conveyor vs Celery 5 on one private redis-server: the time for a group of
10,000 no-op tasks and for a chord of 1,000 (header of no-ops, body counting them).

Each is timed in a fresh client process from the first send to the last result in
hand (``group(...)().get()``, ``chord(...)(body).get()``), against a warm worker
(prefork, 2 processes) with results stored in the same Redis. Medians of --repeat runs.

    .venv/bin/python bench/canvas_bench.py [--repeat 3] [--only conveyor]
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from procs import RedisServer, Worker, worker_env

BENCH = Path(__file__).resolve().parent
FRAMEWORKS = ("celery", "conveyor")


# --- the client: one measurement per process ---------------------------------------------
def client(framework: str, op: str, n: int) -> dict[str, float]:
    tasks = importlib.import_module(f"canvas_{framework}")
    canvas = importlib.import_module(framework)  # group and chord, by the same names
    tasks.noop.delay(-1).get(timeout=60)  # waits for the worker; opens the connections
    t0 = time.perf_counter()
    if op == "group":
        result = canvas.group(tasks.noop.s(i) for i in range(n)).apply_async()
        sent = time.perf_counter()
        values = result.get(timeout=600)
        assert len(values) == n, len(values)
    else:
        result = canvas.chord(tasks.noop.s(i) for i in range(n))(tasks.count.s())
        sent = time.perf_counter()
        assert result.get(timeout=600) == n
    done = time.perf_counter()
    return {"seconds": done - t0, "send": sent - t0}


# --- the harness ---------------------------------------------------------------------------
def worker_cmd(framework: str) -> list[str]:
    exe = str(Path(sys.executable).parent / framework)
    return [exe, "-A", f"canvas_{framework}", "worker", "-P", "prefork", "-c", "2", "-l", "warning"]


def measure(env: dict[str, str], framework: str, op: str, n: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "client", framework, op, str(n)],
        env=env, cwd=BENCH, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{framework} {op} failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str]) -> None:
    if argv[:1] == ["client"]:
        print(json.dumps(client(argv[1], argv[2], int(argv[3]))), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=FRAMEWORKS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--group", type=int, default=10_000, help="tasks in the group")
    parser.add_argument("--chord", type=int, default=1_000, help="header tasks in the chord")
    parser.add_argument("--redis-server", default="/usr/bin/redis-server")
    args = parser.parse_args(argv)
    medians: dict[str, dict[str, float]] = {}
    with RedisServer(args.redis_server) as server:
        env = worker_env(BENCH_REDIS_URL=server.url)
        r = redis.Redis.from_url(server.url)
        for framework in [args.only] if args.only else FRAMEWORKS:
            r.flushall()
            worker = Worker(worker_cmd(framework), env, BENCH)
            try:
                for op, n in (("group", args.group), ("chord", args.chord)):
                    runs: list[dict[str, Any]] = []
                    for i in range(args.repeat):
                        runs.append(measure(env, framework, op, n))
                        worker.check_alive()
                        print(f"[{framework}] {op} of {n} #{i + 1}: {runs[-1]}", file=sys.stderr)
                    for key in runs[0]:
                        medians.setdefault(framework, {})[f"{op}_{key}"] = statistics.median(
                            run[key] for run in runs
                        )
            finally:
                worker.stop()
        r.close()
    rows = [
        ("group_seconds", f"group of {args.group:,} no-ops, send to all results (s)"),
        ("group_send", f"group of {args.group:,}: sending it (s)"),
        ("chord_seconds", f"chord of {args.chord:,}, send to body result (s)"),
        ("chord_send", f"chord of {args.chord:,}: sending it (s)"),
    ]
    print("| metric (lower is better) | celery | conveyor | celery / conveyor |")
    print("|---|---:|---:|---:|")
    for key, label in rows:
        a = medians.get("celery", {}).get(key)
        b = medians.get("conveyor", {}).get(key)
        cells = [f"{v:.3f}" if v is not None else "-" for v in (a, b)]
        ratio = f"{a / b:.1f}x" if a and b else "-"
        print(f"| {label} | {cells[0]} | {cells[1]} | {ratio} |")


if __name__ == "__main__":
    main(sys.argv[1:])
