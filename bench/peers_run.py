"""conveyor side by side with every peer (Celery, Dramatiq, Huey, RQ, arq, taskiq) in
one run, on one private redis-server this script starts on a free port.

    .venv/bin/python bench/peers_run.py --repeat 3 [--peers conveyor,huey] [--measure drain]
        [--python arq=.venv-arq/bin/python]

Every peer runs the same task body (one INCR on the private Redis; results stored)
with two worker processes (see each ``bench/peers/<name>.py`` for what that means
there). Each peer's client and worker run under its own interpreter (--python, by
default this one): arq pins redis-py below 6, so it needs a venv of its own. A peer
that cannot be imported there is skipped and said so. Runs are interleaved: repeat 1
of every peer, then repeat 2, ... so machine load drifts over all of them alike.
Prints a markdown table of medians on stdout; per-run numbers on stderr and, with
--json, in a file.
"""

from __future__ import annotations

import argparse
import json
import os
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

BENCH = Path(__file__).resolve().parent


@dataclass(frozen=True)
class PeerRun:
    """A peer as the harness sees it: its interpreter and, asked from that interpreter,
    its worker command and version."""

    name: str
    python: str
    worker: list[str]
    version: str
    concurrency: str


@dataclass
class Ctx:
    args: argparse.Namespace
    r: redis.Redis
    env: dict[str, str]

    def worker(self, peer: PeerRun) -> Worker:
        return Worker(peer.worker, self.env, BENCH)

    def client(self, peer: PeerRun, op: str, *params: float) -> dict[str, Any]:
        return self.run(
            [peer.python, str(BENCH / "peer_client.py"), peer.name, op, *map(str, params)]
        )

    def run(self, cmd: list[str]) -> dict[str, Any]:
        out = subprocess.run(
            cmd, env=self.env, cwd=BENCH, capture_output=True, text=True, timeout=900
        )
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[2:4])} failed:\n{out.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


def m_enqueue(ctx: Ctx, peer: PeerRun) -> dict[str, float]:
    ctx.r.flushall()
    n = ctx.args.calls
    return {"enqueue": n / ctx.client(peer, "enqueue", n)["seconds"]}


def m_bulk(ctx: Ctx, peer: PeerRun) -> dict[str, float]:
    ctx.r.flushall()
    n = ctx.args.tasks
    return {"bulk": n / ctx.client(peer, "bulk", n)["seconds"]}


def m_drain(ctx: Ctx, peer: PeerRun) -> dict[str, float]:
    ctx.r.flushall()
    n = ctx.args.tasks
    ctx.client(peer, "fill", n)
    w = ctx.worker(peer)
    first: float | None = None
    busy_first = 0.0
    deadline = time.monotonic() + max(300.0, n / 20)
    try:
        while True:
            count = int(ctx.r.get(COUNTER_KEY) or 0)
            now = time.perf_counter()
            if count >= 1 and first is None:
                first, first_count = now, count
                busy_first = machine_busy_seconds()
            if count >= n:
                busy_last = machine_busy_seconds()
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"drain stuck at {count}/{n}:\n{w.output()}")
            w.check_alive()
            time.sleep(0.002)
    finally:
        w.stop()
    assert first is not None
    if count != n:
        raise RuntimeError(f"counter overshot: {count} != {n}")
    cpu_us = (busy_last - busy_first) / max(1, n - first_count) * 1e6
    return {"drain": n / (now - first), "first_task": first - w.t0, "cpu_us": cpu_us}


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy since boot (/proc/stat): during a
    drain, the peer's worker, its broker and the task bodies, plus whatever else runs
    (this harness polls every 2 ms; on a shared machine, other jobs)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def m_roundtrip(ctx: Ctx, peer: PeerRun) -> dict[str, float]:
    ctx.r.flushall()
    w = ctx.worker(peer)
    a = ctx.args
    try:
        lat = ctx.client(peer, "roundtrip", a.roundtrips, a.warmup, a.rt_budget)["lat_ms"]
    finally:
        w.stop()
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"rt_p50": q[49], "rt_p99": q[98], "rt_n": float(len(lat))}


MEASURES: dict[str, Callable[[Ctx, PeerRun], dict[str, float]]] = {
    "drain": m_drain,
    "enqueue": m_enqueue,
    "bulk": m_bulk,
    "roundtrip": m_roundtrip,
}

# key, label, format, higher is better
ROWS: list[tuple[str, str, str, bool]] = [
    ("drain", "drain, first to last task (tasks/s)", "{:,.0f}", True),
    ("enqueue", "`.delay()` one by one (calls/s)", "{:,.0f}", True),
    ("bulk", "bulk send (tasks/s)", "{:,.0f}", True),
    ("rt_p50", "round trip p50 (ms)", "{:.2f}", False),
    ("rt_p99", "round trip p99 (ms)", "{:.2f}", False),
    ("rt_n", "round trips timed", "{:.0f}", True),
    ("first_task", "start to first task done (s)", "{:.2f}", False),
    ("cpu_us", "machine CPU per task while draining (us)", "{:,.0f}", False),
]


def table(names: list[str], medians: dict[str, dict[str, float]]) -> str:
    head = "| metric | " + " | ".join(names) + " | conveyor vs best peer |"
    lines = [head, "|---|" + "---:|" * (len(names) + 1)]
    for key, label, fmt, higher in ROWS:
        cells, others = [], []
        for name in names:
            v = medians.get(name, {}).get(key)
            cells.append("error" if v is None else fmt.format(v))
            if v is not None and name != "conveyor":
                others.append(v)
        mine = medians.get("conveyor", {}).get(key)
        ratio = "-"
        if mine and others and key != "rt_n":
            best = max(others) if higher else min(others)
            ratio = f"{mine / best:.2f}x" if higher else f"{best / mine:.2f}x faster"
            if not higher and mine > best:
                ratio = f"{mine / best:.2f}x slower"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from peers import NAMES

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--peers", default=",".join(NAMES), help="comma-separated (default: all)")
    p.add_argument(
        "--measure",
        action="append",
        choices=list(MEASURES),
        help="run only these measures (repeatable; default: all)",
    )
    p.add_argument("--repeat", type=int, default=3, help="runs per metric (default: 3)")
    p.add_argument(
        "--tasks",
        type=int,
        default=5_000,
        help="tasks for the drain and the bulk send (default: %(default)s)",
    )
    p.add_argument(
        "--calls",
        type=int,
        default=3_000,
        help="calls for the one-by-one .delay() rate (default: %(default)s)",
    )
    p.add_argument(
        "--roundtrips",
        type=int,
        default=500,
        help="timed sequential round trips at most (default: %(default)s)",
    )
    p.add_argument(
        "--rt-budget",
        type=float,
        default=20.0,
        help="seconds of timed round trips at most, for polling peers (default: %(default)s)",
    )
    p.add_argument("--warmup", type=int, default=20, help="untimed round trips first")
    p.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="PEER=PATH",
        help="the interpreter for one peer's client and worker (repeatable)",
    )
    p.add_argument("--processes", type=int, default=2, help="worker processes (default: 2)")
    p.add_argument("--redis-server", default="/usr/bin/redis-server")
    p.add_argument("--json", type=Path, help="also write every run's numbers here")
    return p.parse_args(argv)


def discover(ctx: Ctx, names: list[str]) -> tuple[list[PeerRun], dict[str, str]]:
    """Ask each peer's interpreter for its worker command; a peer that cannot be
    imported there is left out, with the reason."""
    pythons = dict(item.split("=", 1) for item in ctx.args.python)
    found, missing = [], {}
    for name in names:
        python = os.path.abspath(pythons.get(name, sys.executable))  # the venv, not its target
        try:
            info = ctx.run(
                [python, str(BENCH / "peer_client.py"), name, "info", str(ctx.args.processes)]
            )
        except Exception as exc:
            missing[name] = str(exc).strip().splitlines()[-1]
            print(f"[{name}] skipped: {missing[name]}", file=sys.stderr)
            continue
        found.append(PeerRun(name, python, info["worker"], info["version"], info["concurrency"]))
    return found, missing


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    byte_compile()  # as installed: no peer compiles its source at each start
    with RedisServer(args.redis_server) as server:
        env = worker_env(BENCH_REDIS_URL=server.url)
        ctx = Ctx(args, redis.Redis.from_url(server.url), env)
        print(
            f"redis-server pid {server.proc and server.proc.pid} on {server.url}; "
            f"loadavg {Path('/proc/loadavg').read_text().strip()}",
            file=sys.stderr,
        )
        peers, missing = discover(ctx, args.peers.split(","))
        raw: dict[str, dict[str, list[dict[str, float]]]] = {p.name: {} for p in peers}
        for title in args.measure or list(MEASURES):
            for i in range(args.repeat):
                for peer in peers:
                    try:
                        run = MEASURES[title](ctx, peer)
                    except Exception as exc:  # keep going: report the others
                        print(f"[{peer.name}] {title} #{i + 1} failed: {exc}", file=sys.stderr)
                        continue
                    raw[peer.name].setdefault(title, []).append(run)
                    shown = ", ".join(f"{k}={v:,.3f}" for k, v in run.items())
                    print(f"[{peer.name}] {title} #{i + 1}: {shown}", file=sys.stderr)
        ctx.r.close()
    medians: dict[str, dict[str, float]] = {}
    for name, by_measure in raw.items():
        medians[name] = {}
        for runs in by_measure.values():
            for k in runs[0]:
                medians[name][k] = statistics.median(r[k] for r in runs)
    print(
        f"total time {time.monotonic() - started:.0f} s; loadavg "
        f"{Path('/proc/loadavg').read_text().strip()}",
        file=sys.stderr,
    )
    about = {p.name: {"version": p.version, "worker": p.concurrency} for p in peers}
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "argv": sys.argv,
                    "peers": about,
                    "missing": missing,
                    "runs": raw,
                    "medians": medians,
                },
                indent=2,
            )
        )
    print("versions: " + ", ".join(f"{p.name} {p.version}" for p in peers))
    for name, why in missing.items():
        print(f"not run: {name} ({why})")
    print(table([p.name for p in peers], medians))


if __name__ == "__main__":
    main()
