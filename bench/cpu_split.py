"""Where the CPU goes per task during a drain: the worker's children, its supervisor,
redis-server, and the machine as a whole (issue 17).

    .venv/bin/python bench/cpu_split.py [--tasks 100000] [--body incr|noop] [--pool prefork]
        [-c 2] [--extra ARG ...]

Starts a private redis-server, queues --tasks with ``delay_many``, starts ``conveyor
worker``, and between the 10% and the 90% mark of the drain reads each process's CPU
time (user + system, from psutil) and the machine's busy time (/proc/stat). Prints the
drain rate in that window and the CPU microseconds per task of each part.

CPU time per task is steadier than a rate on a shared machine: another job's load slows
the drain but does not change how much CPU a task costs. And it answers what a rate
cannot: when the cores are saturated, a faster drain needs less CPU per task; when they
are not, it needs more overlap (the processes wait on each other).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil
import redis

from counter import COUNTER_KEY
from procs import RedisServer, Worker, worker_env

BENCH = Path(__file__).resolve().parent


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def system_seconds(proc: psutil.Process) -> float:
    return float(proc.cpu_times().system)


def switches(proc: psutil.Process) -> int:
    """Context switches so far (voluntary: it blocked; involuntary: it was preempted)."""
    c = proc.num_ctx_switches()
    return int(c.voluntary + c.involuntary)


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return float(sum(fields) - idle), float(sum(fields))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tasks", type=int, default=100_000)
    p.add_argument("--body", choices=["incr", "noop"], default="incr")
    p.add_argument("--pool", default="prefork")
    p.add_argument("-c", "--concurrency", type=int, default=2)
    p.add_argument("--extra", action="append", default=[], help="more worker arguments")
    p.add_argument("--redis-server", default="/usr/bin/redis-server")
    p.add_argument(
        "--rabbitmq",
        action="store_true",
        help="messages on a private RabbitMQ node (results and the body's INCR stay on "
        "Redis); its CPU is counted as a part (incr body only)",
    )
    args = p.parse_args()
    module = "conveyor_tasks" if args.body == "incr" else "profile_tasks"
    with RedisServer(args.redis_server) as server, contextlib.ExitStack() as stack:
        os.environ["BENCH_REDIS_URL"] = server.url
        node_procs: list[psutil.Process] = []
        if args.rabbitmq:
            sys.path.insert(0, str(BENCH.parent))
            from tests.support_rabbitmq import RabbitNode

            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-rabbit-"))
            node = RabbitNode(Path(directory))
            node.start()
            stack.callback(node.close)
            os.environ["BENCH_BROKER_URL_CONVEYOR"] = node.vhost_url()
            assert node.process is not None
            root = psutil.Process(node.process.pid)
            node_procs = [root, *root.children(recursive=True)]
        env = worker_env()
        sys.path.insert(0, str(BENCH))
        tasks = __import__(module)
        for start in range(0, args.tasks, 10_000):
            tasks.noop.delay_many([(i,) for i in range(start, min(args.tasks, start + 10_000))])
        assert server.proc is not None
        redis_proc = psutil.Process(server.proc.pid)
        exe = str(Path(sys.executable).parent / "conveyor")
        cmd = [exe, "-A", module, "worker", "-P", args.pool, "-c", str(args.concurrency)]
        w = Worker([*cmd, "-l", "warning", *args.extra], env, BENCH)
        r = redis.Redis.from_url(server.url)
        low, high = args.tasks // 10, args.tasks * 9 // 10

        def wait_for(count: int) -> int:
            deadline = time.monotonic() + 600
            while True:
                done = int(r.get(COUNTER_KEY) or 0)
                if done >= count:
                    return done
                w.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"drain stuck at {done}:\n{w.output()}")
                time.sleep(0.005)

        try:
            wait_for(low)
            parent = psutil.Process(w.proc.pid)
            children = parent.children(recursive=True)
            procs = {"supervisor": [parent], "children": children, "redis-server": [redis_proc]}
            if node_procs:
                procs["rabbitmq-server"] = node_procs
            before = {k: sum(cpu_seconds(x) for x in v) for k, v in procs.items()}
            kernel0 = {k: sum(system_seconds(x) for x in v) for k, v in procs.items()}
            switch0 = {k: sum(switches(x) for x in v) for k, v in procs.items()}
            busy0, total0 = machine_busy()
            r.config_resetstat()
            t0, c0 = time.perf_counter(), int(r.get(COUNTER_KEY) or 0)
            c1 = wait_for(high)
            t1 = time.perf_counter()
            after = {k: sum(cpu_seconds(x) for x in v) for k, v in procs.items()}
            kernel1 = {k: sum(system_seconds(x) for x in v) for k, v in procs.items()}
            switch1 = {k: sum(switches(x) for x in v) for k, v in procs.items()}
            busy1, total1 = machine_busy()
            stats = r.info("commandstats")
        finally:
            w.stop()
            r.close()
    n = c1 - c0
    seconds = t1 - t0
    ticks = os.sysconf("SC_CLK_TCK")
    machine_us = (busy1 - busy0) / ticks / n * 1e6
    cores = os.cpu_count() or 1
    print(
        f"{n:,} tasks in {seconds:.2f} s = {n / seconds:,.0f} tasks/s; machine busy "
        f"{100 * (busy1 - busy0) / (total1 - total0):.0f}% of {cores} cores; "
        f"load {Path('/proc/loadavg').read_text().split()[0]}"
    )
    print("| part | CPU us per task | of which in the kernel | context switches per task |")
    print("|---|---:|---:|---:|")
    for key in procs:
        total = (after[key] - before[key]) / n * 1e6
        kernel = (kernel1[key] - kernel0[key]) / n * 1e6
        switched = (switch1[key] - switch0[key]) / n
        print(f"| {key} | {total:.1f} | {kernel:.1f} | {switched:.2f} |")
    print(f"| whole machine (every process) | {machine_us:.1f} | | |")
    print()
    print("Inside redis-server (INFO commandstats; the rest of its CPU is its event loop and")
    print("socket calls):")
    print()
    print("| command | calls per task | us per call | us per task |")
    print("|---|---:|---:|---:|")
    rows = sorted(stats.items(), key=lambda kv: -kv[1]["usec"])
    for name, row in rows:
        if row["calls"] >= n / 1000:
            per_task = row["calls"] / n
            print(
                f"| {name.removeprefix('cmdstat_')} | {per_task:.3f} | "
                f"{row['usec_per_call']:.2f} | {row['usec'] / n:.2f} |"
            )


if __name__ == "__main__":
    main()
