"""Benchmark conveyor side by side with Celery 5 on one private redis-server
(``--rabbitmq``: as brokers, two vhosts of one private RabbitMQ node; results and the
task's counter stay on the private Redis).

Prints a markdown table (medians of --repeat runs) with the ratio conveyor/celery.
Progress and per-run numbers go to stderr. See docs/benchmarks.md for the method.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from counter import COUNTER_KEY
from procs import RedisServer, Worker, byte_compile, worker_env
from rabbit import rabbit_brokers

BENCH = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Framework:
    name: str  # also the package to import, the CLI name and the "<name>_tasks" module

    def executable(self) -> str | None:
        local = Path(sys.executable).parent / self.name
        return str(local) if local.exists() else shutil.which(self.name)

    def missing(self) -> str | None:
        if importlib.util.find_spec(self.name) is None:
            return f"package {self.name!r} is not installed"
        if self.executable() is None:
            return f"no {self.name!r} command found"
        return None

    def worker_cmd(self, loglevel: str) -> list[str]:
        exe = self.executable()
        assert exe is not None
        return [
            exe,
            "-A",
            f"{self.name}_tasks",
            "worker",
            "-P",
            "prefork",
            "-c",
            "2",
            "-l",
            loglevel,
        ]


@dataclass
class Ctx:
    args: argparse.Namespace
    server: RedisServer
    r: redis.Redis
    env: dict[str, str]

    purge: Callable[[], None] | None = None

    def flush(self) -> None:
        self.r.flushall()
        if self.purge is not None:
            self.purge()

    def worker(self, fw: Framework, loglevel: str = "warning") -> Worker:
        extra = self.args.worker_arg if fw.name == "conveyor" else []
        return Worker([*fw.worker_cmd(loglevel), *extra], self.env, BENCH)

    def client(self, fw: Framework, op: str, *params: int) -> dict[str, Any]:
        cmd = [sys.executable, str(BENCH / "client.py"), fw.name, op, *map(str, params)]
        out = subprocess.run(
            cmd, env=self.env, cwd=BENCH, capture_output=True, text=True, timeout=600
        )
        if out.returncode != 0:
            raise RuntimeError(f"client {op} failed:\n{out.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


Measure = Callable[[Ctx, Framework], dict[str, float]]


def m_enqueue(ctx: Ctx, fw: Framework) -> dict[str, float]:
    ctx.flush()
    n = ctx.args.calls
    return {"enqueue": n / ctx.client(fw, "enqueue", n)["seconds"]}


def m_bulk(ctx: Ctx, fw: Framework) -> dict[str, float]:
    ctx.flush()
    n = ctx.args.tasks
    return {"bulk": n / ctx.client(fw, "bulk", n)["seconds"]}


def m_drain(ctx: Ctx, fw: Framework) -> dict[str, float]:
    ctx.flush()
    n = ctx.args.tasks
    ctx.client(fw, "fill", n)
    w = ctx.worker(fw)
    first: float | None = None
    deadline = time.monotonic() + max(120.0, n / 50)
    try:
        while True:
            count = int(ctx.r.get(COUNTER_KEY) or 0)
            now = time.perf_counter()
            if count >= 1 and first is None:
                first = now
            if count >= n:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"drain stuck at {count}/{n}:\n{w.output()}")
            w.check_alive()
            time.sleep(ctx.args.poll_ms / 1000.0)
    finally:
        w.stop()
    assert first is not None
    if count != n:
        raise RuntimeError(f"counter overshot: {count} != {n}")
    return {
        "drain": n / (now - first),
        "drain_total": n / (now - w.t0),
        "drain_startup": first - w.t0,
    }


def m_roundtrip(ctx: Ctx, fw: Framework) -> dict[str, float]:
    ctx.flush()
    w = ctx.worker(fw)
    try:
        lat = ctx.client(fw, "roundtrip", ctx.args.roundtrips, ctx.args.warmup)["lat_ms"]
    finally:
        w.stop()
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"rt_p50": q[49], "rt_p99": q[98]}


def m_ready_rss(ctx: Ctx, fw: Framework) -> dict[str, float]:
    ctx.flush()
    w = ctx.worker(fw, loglevel="info")
    try:
        ready = w.wait_ready()
        time.sleep(2.0)
        w.check_alive()
        mem = w.memory_mb()
    finally:
        w.stop()
    return {"ready": ready, **mem}


MEASURES: list[tuple[str, Measure]] = [
    ("enqueue .delay()", m_enqueue),
    ("bulk enqueue", m_bulk),
    ("drain", m_drain),
    ("round trip", m_roundtrip),
    ("start-to-ready + idle RSS", m_ready_rss),
]

# key, label, format; ratio is always conveyor / celery
ROWS: list[tuple[str, str, str]] = [
    ("drain", "drain throughput, first to last task (tasks/s, higher is better)", "{:,.0f}"),
    ("drain_total", "drain incl. worker startup (tasks/s, higher is better)", "{:,.0f}"),
    ("drain_startup", "drain: spawn to first task done (s, lower is better)", "{:.2f}"),
    ("enqueue", "single-call enqueue `.delay()` (calls/s, higher is better)", "{:,.0f}"),
    ("bulk", "bulk enqueue (tasks/s, higher is better)", "{:,.0f}"),
    ("rt_p50", "round trip p50 (ms, lower is better)", "{:.2f}"),
    ("rt_p99", "round trip p99 (ms, lower is better)", "{:.2f}"),
    ("ready", "worker start-to-ready (s, lower is better)", "{:.2f}"),
    ("rss_total", "idle RSS, whole worker tree (MB, lower is better)", "{:.1f}"),
    ("rss_parent", "idle RSS, parent process (MB, lower is better)", "{:.1f}"),
    ("rss_child_max", "idle RSS, largest child process (MB, lower is better)", "{:.1f}"),
    ("uss_total", "idle USS, whole worker tree (MB, lower is better)", "{:.1f}"),
    ("procs", "worker processes (count)", "{:.0f}"),
]


def table(medians: dict[str, dict[str, float]], notes: dict[str, str]) -> str:
    def cell(fw: str, key: str, fmt: str) -> str:
        if fw in notes:
            return notes[fw]
        v = medians.get(fw, {}).get(key)
        return "error" if v is None else fmt.format(v)

    lines = ["| metric | celery | conveyor | ratio |", "|---|---:|---:|---:|"]
    for key, label, fmt in ROWS:
        a, b = medians.get("celery", {}).get(key), medians.get("conveyor", {}).get(key)
        ratio = f"{b / a:.2f}x" if a and b is not None else "-"
        lines.append(
            f"| {label} | {cell('celery', key, fmt)} | {cell('conveyor', key, fmt)} | {ratio} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--only",
        choices=["celery", "conveyor"],
        help="benchmark only this framework (default: both)",
    )
    p.add_argument(
        "--tasks",
        type=int,
        default=10_000,
        help="tasks for the drain and bulk-enqueue runs (default: %(default)s)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per metric; the median is reported (default: %(default)s)",
    )
    p.add_argument(
        "--calls",
        type=int,
        default=5_000,
        help="calls for the single-call .delay() rate (default: %(default)s)",
    )
    p.add_argument(
        "--roundtrips",
        type=int,
        default=1_000,
        help="timed sequential round trips (default: %(default)s)",
    )
    p.add_argument(
        "--warmup", type=int, default=100, help="untimed round trips first (default: %(default)s)"
    )
    p.add_argument(
        "--poll-ms",
        type=float,
        default=2.0,
        help="counter polling interval during the drain (default: %(default)s)",
    )
    p.add_argument(
        "--redis-server",
        default="/usr/bin/redis-server",
        help="redis-server binary (default: %(default)s)",
    )
    p.add_argument(
        "--measure",
        action="append",
        help="run only these measures, by title (repeatable; default: all)",
    )
    p.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        help="extra argument for conveyor's worker, e.g. --worker-arg=-E (repeatable)",
    )
    p.add_argument(
        "--rabbitmq",
        action="store_true",
        help="use a private RabbitMQ node (started here) as both frameworks' broker",
    )
    p.add_argument("--json", type=Path, help="also write every run's raw numbers here")
    return p.parse_args(argv)


def alternated(
    ctx: Ctx, title: str, measure: Measure, frameworks: list[Framework], repeat: int
) -> dict[str, list[dict[str, float]]]:
    """``repeat`` runs of ``measure`` per framework, alternated (celery, conveyor,
    celery, ...): the machine is shared, and a load that comes and goes then falls on
    both frameworks alike. A framework that fails is not run again."""
    runs_of: dict[str, list[dict[str, float]]] = {fw.name: [] for fw in frameworks}
    failed: set[str] = set()
    for i in range(repeat):
        for fw in frameworks:
            if fw.name in failed:
                continue
            try:
                runs_of[fw.name].append(measure(ctx, fw))
            except Exception as exc:  # keep going: one framework may be unfinished
                print(f"[{fw.name}] {title} failed: {exc}", file=sys.stderr)
                failed.add(fw.name)
                continue
            shown = ", ".join(f"{k}={v:,.3f}" for k, v in runs_of[fw.name][-1].items())
            print(f"[{fw.name}] {title} #{i + 1}: {shown}", file=sys.stderr)
    return runs_of


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    byte_compile()  # as installed: neither side compiles its source at each start
    names = [args.only] if args.only else ["celery", "conveyor"]
    frameworks, notes = [], {}
    for name in names:
        fw = Framework(name)
        why = fw.missing()
        if why:
            print(f"skipping {name}: {why}", file=sys.stderr)
            notes[name] = "pending"
        else:
            frameworks.append(fw)
    for name in {"celery", "conveyor"} - set(names):
        notes[name] = "not run"
    raw: dict[str, dict[str, list[dict[str, float]]]] = {f.name: {} for f in frameworks}
    medians: dict[str, dict[str, float]] = {f.name: {} for f in frameworks}
    started = time.monotonic()
    with RedisServer(args.redis_server) as server, rabbit_brokers(args.rabbitmq) as brokers:
        env = worker_env(**brokers.env, BENCH_REDIS_URL=server.url)
        ctx = Ctx(args, server, redis.Redis.from_url(server.url), env, brokers.purge)
        print(
            f"redis-server pid {server.proc and server.proc.pid} on {server.url}", file=sys.stderr
        )
        for title, measure in MEASURES:
            if args.measure and title not in args.measure:
                continue
            runs_of = alternated(ctx, title, measure, frameworks, args.repeat)
            for fw in frameworks:
                runs = runs_of[fw.name]
                raw[fw.name][title] = runs
                if runs:
                    for key in runs[0]:
                        medians[fw.name][key] = statistics.median(r[key] for r in runs)
        ctx.r.close()
    print(f"total time {time.monotonic() - started:.0f} s", file=sys.stderr)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": str(args.json)}, "runs": raw, "medians": medians},
                indent=2,
            )
        )
    print(table(medians, notes))


if __name__ == "__main__":
    main()
