"""Profile one conveyor worker child while it drains a backlog on Redis (py-spy).

    .venv/bin/python bench/profile_drain.py [--tasks 60000] [--seconds 20] [--body incr|noop]

Starts a private redis-server, queues --tasks with ``delay_many``, starts ``conveyor
worker -P prefork -c 2`` and records one child with ``py-spy record --format raw``
(collapsed stacks, idle samples left out) for --seconds in the middle of the drain.
Prints the top self-time frames and the inclusive share of named parts of the hot
path, in percent of the child's non-idle samples. ``--body noop`` uses a task that
does nothing (``bench/profile_tasks.py``), so what remains is conveyor's own cost.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import redis

from counter import COUNTER_KEY
from procs import RedisServer, Worker, worker_env

BENCH = Path(__file__).resolve().parent

# Inclusive shares: a sample counts toward a part when any frame in its stack matches.
PARTS: list[tuple[str, str]] = [
    ("task body (the INCR, redis-py)", "counter.py"),
    ("fetch (fetch.lua round trip + deliveries)", "fetch (conveyor/stores/redis/transport.py"),
    ("ack + result write (send)", "ack (conveyor/stores/redis/transport.py"),
    ("decode the message", "decode"),
    ("encode the result", "encode"),
    ("socket send/recv", "sendall"),
]


def record(pid: int, seconds: float, rate: int, out: Path, gil: bool) -> None:
    exe = str(Path(sys.executable).parent / "py-spy")
    cmd = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(rate),
        "--duration",
        str(int(seconds)),
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
        *(["--gil"] if gil else []),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"py-spy failed: {done.stderr[-2000:]}")


def report(raw: Path, top: int) -> str:
    selfs: collections.Counter[str] = collections.Counter()
    files: collections.Counter[str] = collections.Counter()
    parts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():  # not a "frames count" line
            continue
        n = int(count_text)
        frames = stack.split(";")
        total += n
        selfs[frames[-1]] += n
        leaf = frames[-1]
        files[leaf[leaf.rfind("(") + 1 : leaf.rfind(":")] if "(" in leaf else leaf] += n
        for label, needle in PARTS:
            if any(needle in f for f in frames):
                parts[label] += n
    lines = [f"{total} samples", "", "| part (inclusive) | share |", "|---|---:|"]
    lines += [f"| {label} | {100 * parts[label] / total:.1f}% |" for label, _ in PARTS]
    lines += ["", "| file (self) | share |", "|---|---:|"]
    lines += [f"| `{f}` | {100 * n / total:.1f}% |" for f, n in files.most_common(top)]
    lines += ["", "| frame (self) | share |", "|---|---:|"]
    lines += [f"| `{f}` | {100 * n / total:.1f}% |" for f, n in selfs.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tasks", type=int, default=60_000)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rate", type=int, default=250)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--body", choices=["incr", "noop"], default="incr")
    p.add_argument(
        "--gil",
        action="store_true",
        help="sample only while the child holds the GIL: Python's own CPU, without the "
        "time blocked in socket calls (which release it)",
    )
    p.add_argument("--redis-server", default="/usr/bin/redis-server")
    p.add_argument("--keep", type=Path, help="also copy py-spy's raw stacks here")
    args = p.parse_args()
    module = "conveyor_tasks" if args.body == "incr" else "profile_tasks"
    with RedisServer(args.redis_server) as server, tempfile.TemporaryDirectory() as tmp:
        os.environ["BENCH_REDIS_URL"] = server.url
        env = worker_env()
        sys.path.insert(0, str(BENCH))
        tasks = __import__(module)
        for start in range(0, args.tasks, 10_000):
            tasks.noop.delay_many([(i,) for i in range(start, min(args.tasks, start + 10_000))])
        exe = str(Path(sys.executable).parent / "conveyor")
        w = Worker(
            [exe, "-A", module, "worker", "-P", "prefork", "-c", "2", "-l", "warning"], env, BENCH
        )
        r = redis.Redis.from_url(server.url)
        try:
            deadline = time.monotonic() + 60
            while int(r.get(COUNTER_KEY) or 0) < 1000:
                w.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError("the worker did not start draining:\n" + w.output())
                time.sleep(0.01)
            child = psutil.Process(w.proc.pid).children(recursive=True)[0].pid
            t0, c0 = time.perf_counter(), int(r.get(COUNTER_KEY) or 0)
            out = Path(tmp) / "raw.txt"
            record(child, args.seconds, args.rate, out, args.gil)
            rate = (int(r.get(COUNTER_KEY) or 0) - c0) / (time.perf_counter() - t0)
            left = args.tasks - int(r.get(COUNTER_KEY) or 0)
        finally:
            w.stop()
            r.close()
        print(
            f"drain rate while recording: {rate:,.0f} tasks/s (2 children); "
            f"{left} tasks left at the end; load {Path('/proc/loadavg').read_text().split()[0]}"
        )
        if left <= 0:
            print("WARNING: the backlog ran out while recording; raise --tasks")
        if args.keep is not None:
            args.keep.write_text(out.read_text())
        print(report(out, args.top))


if __name__ == "__main__":
    main()
