"""Benchmark the embedded SQLite broker, with Huey's SqliteHuey as the peer.

    .venv/bin/python bench/sqlite_bench.py [--repeat 3] [--only conveyor|huey] [--writers 8]

Same method as bench/run.py, on a fresh SQLite file per run in a temp dir instead of a
Redis: drain of N no-op tasks queued beforehand (worker: ``conveyor -A sqlite_bench
worker -P prefork -c 2``; ``huey_consumer sqlite_bench.huey -w 2 -k process``), the
single-call ``.delay()`` rate with no worker running, and sequential round trips
``.delay(i).get()`` against an idle worker; then the same with --writers processes
writing at once: that many client processes calling ``.delay()`` together (the
aggregate rate, from the first start to the last finish), and a drain by a worker
with that many processes. Runs alternate between the frameworks. Each task appends one
byte to a counter file (one O_APPEND write, the stand-in for bench/run.py's INCR) and
returns its argument, so every framework stores a result; the drain is timed by polling
the file's size.

This file is also the task module both workers import (``bench/`` on PYTHONPATH); the
database path comes from SQLITE_BENCH_DB. Huey is measured as shipped: its consumer
polls (first every 0.1 s, backing off) and its result ``get`` polls too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
DB = os.environ.get("SQLITE_BENCH_DB")
_counter: tuple[int, int] | None = None  # (pid, fd)


def bump() -> None:
    """Count one task done: a byte appended to <db>.count (opened once per process)."""
    global _counter
    if _counter is None or _counter[0] != os.getpid():
        fd = os.open(f"{DB}.count", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _counter = (os.getpid(), fd)
    os.write(_counter[1], b".")


# --- the task modules (imported by the workers and the clients) ------------------------
if DB and __name__ != "__main__":  # as "sqlite_bench", so task names match the workers'
    from conveyor import Conveyor

    app = Conveyor("sqlite_bench", broker=f"sqlite:///{DB}")

    @app.task
    def noop(i: int) -> int:
        bump()
        return i

    try:
        from huey import SqliteHuey

        huey = SqliteHuey("bench", filename=DB + ".huey")

        @huey.task()
        def huey_noop(i: int) -> int:
            bump()
            return i

    except ImportError:  # pragma: no cover - huey is optional
        pass


# --- client side: one fresh process per measurement ------------------------------------
def writer(call: Any, n: int) -> dict[str, Any]:
    """One of several writers: says "ready", waits for "go" on stdin, so all start
    together; wall-clock times, so the harness can compare them across processes."""
    call(-1)  # warm-up: opens the file
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.time()
    for i in range(n):
        call(i)
    return {"start": t0, "end": time.time()}


def client(framework: str, op: str, n: int, warmup: int) -> dict[str, Any]:
    if framework == "conveyor":
        call = noop.delay

        def get(r: Any) -> Any:
            return r.get(timeout=10)
    else:
        call = huey_noop

        def get(r: Any) -> Any:
            return r.get(blocking=True, timeout=10)

    if op == "writer":
        return writer(call, n)
    if op == "enqueue":
        call(-1)  # warm-up: opens the file, creates the tables
        t0 = time.perf_counter()
        for i in range(n):
            call(i)
        return {"seconds": time.perf_counter() - t0}
    if op == "fill":
        for i in range(n):
            call(i)
        return {}
    if op == "roundtrip":
        get(call(-1))  # waits for the worker to come up
        for _ in range(warmup):
            get(call(0))
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            get(call(i))
            lat.append((time.perf_counter() - t0) * 1000.0)
        return {"lat_ms": lat}
    raise SystemExit(f"unknown op {op!r}")


# --- harness ---------------------------------------------------------------------------
class Run:
    """One measurement's fresh database and environment."""

    def __init__(self, framework: str) -> None:
        self.framework = framework
        self.tmp = tempfile.TemporaryDirectory(prefix="sqlite-bench-")
        self.db = str(Path(self.tmp.name) / "bench.db")
        from procs import worker_env  # here: this module is also the workers' task module

        self.env = worker_env(SQLITE_BENCH_DB=self.db)

    def client(self, op: str, n: int, warmup: int = 0) -> dict[str, Any]:
        cmd = [
            sys.executable,
            str(BENCH / "sqlite_bench.py"),
            "client",
            self.framework,
            op,
            str(n),
            str(warmup),
        ]
        out = subprocess.run(
            cmd, env=self.env, cwd=BENCH, capture_output=True, text=True, timeout=900
        )
        if out.returncode != 0:
            raise RuntimeError(f"client {op} failed:\n{out.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    def writers(self, k: int, n: int) -> dict[str, float]:
        """k client processes, n ``.delay()`` each, started together: calls/s overall
        (over the writers that finished) and how many writers failed, and why."""
        cmd = [
            sys.executable,
            str(BENCH / "sqlite_bench.py"),
            "client",
            self.framework,
            "writer",
            str(n),
            "0",
        ]
        procs = [
            subprocess.Popen(
                cmd,
                env=self.env,
                cwd=BENCH,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(k)
        ]
        for proc in procs:  # every writer imported and connected before any starts
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"writer failed to start:\n{proc.communicate()[1][-3000:]}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        spans, failed = [], 0
        for proc in procs:
            out, err = proc.communicate(timeout=900)
            if proc.returncode != 0:  # a result too: e.g. "database is locked"
                failed += 1
                print(
                    f"[{self.framework}] a writer failed: {err.strip().splitlines()[-1]}",
                    file=sys.stderr,
                )
                continue
            spans.append(json.loads(out.strip().splitlines()[-1]))
        out_: dict[str, float] = {"writers_failed": float(failed)}
        if spans:
            wall = max(s["end"] for s in spans) - min(s["start"] for s in spans)
            out_["enqueue_w"] = len(spans) * n / wall
        return out_

    def worker(self, processes: int = 2) -> Any:
        from procs import Worker

        c = str(processes)
        if self.framework == "conveyor":
            exe = str(Path(sys.executable).parent / "conveyor")
            cmd = [exe, "-A", "sqlite_bench", "worker", "-P", "prefork", "-c", c, "-l", "warning"]
        else:
            exe = str(Path(sys.executable).parent / "huey_consumer")
            cmd = [exe, "sqlite_bench.huey", "-w", c, "-k", "process", "-q"]
        return Worker(cmd, self.env, BENCH)

    def done(self) -> int:
        try:
            return os.path.getsize(self.db + ".count")
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        self.tmp.cleanup()


def m_enqueue(fw: str, args: argparse.Namespace) -> dict[str, float]:
    run = Run(fw)
    try:
        return {"enqueue": args.calls / run.client("enqueue", args.calls)["seconds"]}
    finally:
        run.close()


def m_writers(fw: str, args: argparse.Namespace) -> dict[str, float]:
    run = Run(fw)
    try:
        run.client("enqueue", 1)  # creates the tables before the writers race
        return run.writers(args.writers, args.calls // args.writers)
    finally:
        run.close()


def m_drain_w(fw: str, args: argparse.Namespace) -> dict[str, float]:
    return {f"{k}_w": v for k, v in m_drain(fw, args, args.writers).items()}


def m_drain(fw: str, args: argparse.Namespace, processes: int = 2) -> dict[str, float]:
    run = Run(fw)
    n = args.tasks
    try:
        run.client("fill", n)
        w = run.worker(processes)
        first: float | None = None
        deadline = time.monotonic() + max(120.0, n / 50)
        try:
            while True:
                count = run.done()
                now = time.perf_counter()
                if count >= 1 and first is None:
                    first = now
                if count >= n:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"drain stuck at {count}/{n}:\n{w.output()}")
                w.check_alive()
                time.sleep(args.poll_ms / 1000.0)
        finally:
            w.stop()
        assert first is not None
        if count != n:
            raise RuntimeError(f"counter overshot: {count} != {n}")
        return {"drain": n / (now - first), "drain_total": n / (now - w.t0)}
    finally:
        run.close()


def m_roundtrip(fw: str, args: argparse.Namespace) -> dict[str, float]:
    run = Run(fw)
    try:
        w = run.worker()
        try:
            lat = run.client("roundtrip", args.roundtrips, args.warmup)["lat_ms"]
        finally:
            w.stop()
        q = statistics.quantiles(lat, n=100, method="inclusive")
        return {"rt_p50": q[49], "rt_p99": q[98]}
    finally:
        run.close()


ROWS = [
    ("drain", "drain throughput, first to last task (tasks/s)", "{:,.0f}"),
    ("drain_total", "drain incl. worker startup (tasks/s)", "{:,.0f}"),
    ("enqueue", "single-call enqueue `.delay()` (calls/s)", "{:,.0f}"),
    ("rt_p50", "round trip p50 (ms)", "{:.2f}"),
    ("rt_p99", "round trip p99 (ms)", "{:.2f}"),
    ("enqueue_w", "`.delay()` from {w} processes at once (calls/s, all together)", "{:,.0f}"),
    ("writers_failed", "writers of the {w} that failed (median)", "{:.0f}"),
    ("drain_w", "drain with {w} worker processes (tasks/s)", "{:,.0f}"),
]


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", choices=["conveyor", "huey"])
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--calls", type=int, default=5_000)
    p.add_argument("--roundtrips", type=int, default=1_000)
    p.add_argument(
        "--huey-roundtrips",
        type=int,
        default=100,
        help="Huey's get() polls (0.1 s and up), so fewer (default: %(default)s)",
    )
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--poll-ms", type=float, default=2.0)
    p.add_argument(
        "--writers",
        type=int,
        default=8,
        help="processes writing at once in the last two rows (default: 8)",
    )
    args = p.parse_args()
    frameworks = [args.only] if args.only else ["conveyor", "huey"]
    medians: dict[str, dict[str, float]] = {fw: {} for fw in frameworks}
    print(f"load {Path('/proc/loadavg').read_text().strip()}", file=sys.stderr)
    for measure in (m_enqueue, m_drain, m_roundtrip, m_writers, m_drain_w):
        runs: dict[str, list[dict[str, float]]] = {fw: [] for fw in frameworks}
        for i in range(args.repeat):
            for fw in frameworks:  # alternate, so load drifts over both alike
                fw_args = argparse.Namespace(**vars(args))
                if fw == "huey":
                    fw_args.roundtrips, fw_args.warmup = args.huey_roundtrips, 5
                runs[fw].append(measure(fw, fw_args))
                shown = ", ".join(f"{k}={v:,.3f}" for k, v in runs[fw][-1].items())
                print(f"[{fw}] {measure.__name__} #{i + 1}: {shown}", file=sys.stderr)
        for fw in frameworks:
            for key in {k for r in runs[fw] for k in r}:  # a failed run may lack some
                medians[fw][key] = statistics.median(r[key] for r in runs[fw] if key in r)
    print(f"load {Path('/proc/loadavg').read_text().strip()}", file=sys.stderr)
    print("| metric | " + " | ".join(frameworks) + " |")
    print("|---|" + "---:|" * len(frameworks))
    for key, label, fmt in ROWS:
        cells = [fmt.format(medians[fw][key]) if key in medians[fw] else "-" for fw in frameworks]
        print(f"| {label.format(w=args.writers)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        import sqlite_bench

        framework, op, n, warmup = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(sqlite_bench.client(framework, op, n, warmup)), flush=True)
    else:
        main()
