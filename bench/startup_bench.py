"""Start to first task, exactly: from spawning a worker on 5,000 queued tasks to its first
task's INCR, timed by the private redis-server's MONITOR clock (no polling), interleaved
with Huey's consumer (issue 17).

    .venv/bin/python bench/startup_bench.py --repeat 10 [--tree before=/path/to/old/src]

``--tree LABEL=SRC`` adds a conveyor worker run from another source tree (PYTHONPATH=SRC,
for example a ``git worktree`` of an older commit) beside the installed one, so a change
is measured against its base in the same run. Each tree is byte-compiled first, as an
installed package is (``procs.byte_compile``); ``--no-compile`` leaves the source as it
is; ``--raw-tree LABEL=SRC`` is a tree left uncompiled (what the benchmark measured
before it compiled conveyor, with PYTHONDONTWRITEBYTECODE set). Prints a markdown table
(median, min, first quartile, in ms) and the load average.
"""

from __future__ import annotations

import argparse
import compileall
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis

from counter import COUNTER_KEY
from procs import RedisServer, byte_compile

BENCH = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CONVEYOR = [str(BIN / "conveyor"), "-A", "peers.conveyor", "worker", "-P", "prefork", "-c", "2"]
HUEY = [str(BIN / "huey_consumer"), "peers.huey.huey", "-w", "2", "-k", "process", "-q"]


def first_incr(r: redis.Redis, peer: str, cmd: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning ``cmd`` to the first INCR of the counter, on Redis's clock."""
    r.flushall()
    fill = [sys.executable, "peer_client.py", peer, "fill", "5000"]
    subprocess.run(fill, cwd=BENCH, env=env, check=True, capture_output=True)
    monitor = r.connection_pool.make_connection()
    monitor.connect()
    monitor.send_command("MONITOR")
    monitor.read_response()
    started = time.time()  # MONITOR stamps each command with the server's time of day
    proc = subprocess.Popen(
        cmd,
        cwd=BENCH,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = monitor.read_response().decode()
            if COUNTER_KEY in line and "INCR" in line.upper():
                return float(line.split()[0]) - started
        raise RuntimeError(f"{peer}: no task ran within 60 s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        monitor.disconnect()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--tree", action="append", default=[], metavar="LABEL=SRC")
    p.add_argument("--raw-tree", action="append", default=[], metavar="LABEL=SRC")
    p.add_argument("--no-compile", action="store_true", help="leave the sources uncompiled")
    args = p.parse_args(argv)
    trees = dict(t.split("=", 1) for t in args.tree)
    raw = dict(t.split("=", 1) for t in args.raw_tree)
    if not args.no_compile:
        byte_compile()
        for src in trees.values():
            compileall.compile_dir(src, quiet=1)
    runs: dict[str, tuple[str, list[str], str]] = {
        **{f"conveyor {label}": ("conveyor", CONVEYOR, src) for label, src in raw.items()},
        **{f"conveyor {label}": ("conveyor", CONVEYOR, src) for label, src in trees.items()},
        "conveyor": ("conveyor", CONVEYOR, ""),
        "huey": ("huey", HUEY, ""),
    }
    times: dict[str, list[float]] = {label: [] for label in runs}
    loads: list[float] = []
    with RedisServer() as server:
        r = redis.Redis.from_url(server.url)
        for i in range(args.repeat):
            for label, (peer, cmd, src) in runs.items():
                path = os.pathsep.join(filter(None, [str(BENCH), src]))
                env = {**os.environ, "BENCH_REDIS_URL": server.url, "PYTHONPATH": path}
                loads.append(float(Path("/proc/loadavg").read_text().split()[0]))
                times[label].append(first_incr(r, peer, cmd, env))
                print(f"{label} #{i + 1}: {times[label][-1] * 1000:.0f} ms", file=sys.stderr)
        r.close()
    print(f"load average {min(loads):.1f} to {max(loads):.1f}")
    print("| worker | median ms | min ms | first quartile ms |\n|---|---:|---:|---:|")
    for label, values in times.items():
        ms = sorted(v * 1000 for v in values)
        print(f"| {label} | {statistics.median(ms):.0f} | {ms[0]:.0f} | {ms[len(ms) // 4]:.0f} |")


if __name__ == "__main__":
    main()
