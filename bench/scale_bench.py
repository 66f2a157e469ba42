"""Scale measurements on Redis (issue 17), each on a private redis-server started here.

    .venv/bin/python bench/scale_bench.py memory   [--n 1000000]
    .venv/bin/python bench/scale_bench.py deciles  [--n 1000000]
    .venv/bin/python bench/scale_bench.py eta      [--n 1000000 --due 20000 --repeat 3]
    .venv/bin/python bench/scale_bench.py procs    [--due 20000 --repeat 3]
    .venv/bin/python bench/scale_bench.py busy-rt  [--backlog 100000]

memory:  Redis memory per queued task (INFO used_memory before and after), conveyor
         against Celery. conveyor queues N with ``delay_many``; Celery has no fast bulk
         path (a million ``.delay()`` take ~15 min here), so its N messages are copies of
         one real ``.delay()``'s message with fresh ids, LPUSHed in pipelines; a real
         ``.delay()`` loop of --celery-real messages is measured beside it as a check.
deciles: N tasks queued, one ``-c 2`` worker drains them; the rate over each tenth of
         the backlog, from the first tenth (deepest) to the last.
eta:     a drain of --due due tasks, alternately with and without N tasks held for a
         day on the same queue (the ETA zset is renamed away and back between runs).
procs:   the same drain with ``-c 2`` and ``-c 8``, alternately.
busy-rt: round trips on an idle queue ``urgent`` while the same ``-c 2`` worker drains
         a --backlog on queue ``bulk``; and the same round trips with no backlog.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from counter import COUNTER_KEY
from procs import RedisServer, Worker, worker_env

BENCH = Path(__file__).resolve().parent
CHUNK = 10_000


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


def conveyor_worker(env: dict[str, str], c: int, queues: str | None = None) -> Worker:
    exe = str(Path(sys.executable).parent / "conveyor")
    cmd = [exe, "-A", "conveyor_tasks", "worker", "-P", "prefork", "-c", str(c), "-l", "warning"]
    if queues:
        cmd += ["-Q", queues]
    return Worker(cmd, env, BENCH)


def wait_count(r: redis.Redis, w: Worker, n: int, marks: list[int]) -> list[float]:
    """Poll the counter until it reaches n; the time each mark in ``marks`` was reached."""
    times: list[float] = []
    deadline = time.monotonic() + max(600.0, n / 100)
    while len(times) < len(marks):
        count = int(r.get(COUNTER_KEY) or 0)
        now = time.perf_counter()
        while len(times) < len(marks) and count >= marks[len(times)]:
            times.append(now)
        if len(times) == len(marks):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"drain stuck at {count}/{n}:\n{w.output()}")
        w.check_alive()
        time.sleep(0.005)
    if count != n:
        raise RuntimeError(f"counter is {count}, expected {n}")
    return times


def used_memory(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def bulk_conveyor(n: int, queue: str | None = None) -> float:
    from conveyor_tasks import noop

    t0 = time.perf_counter()
    for start in range(0, n, CHUNK):
        noop.delay_many([(i,) for i in range(start, min(n, start + CHUNK))], queue=queue)
    return time.perf_counter() - t0


def hold_conveyor(n: int, seconds: float) -> float:
    """N tasks held ``seconds`` in the broker, sent in chunks: what ``delay_many`` does,
    with a countdown (the bulk API has none, so the producer's parts are used)."""
    from conveyor_tasks import app, noop

    producer = app.producer
    queue = producer.queue_for(noop)
    t0 = time.perf_counter()
    for start in range(0, n, CHUNK):
        bodies = [
            producer.encode(producer.envelope(noop, (i,), None), "json")
            for i in range(start, min(n, start + CHUNK))
        ]
        app.broker.publish(queue, bodies, countdown=seconds)
    return time.perf_counter() - t0


def cmd_memory(args: argparse.Namespace, r: redis.Redis, env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": args.n}
    r.config_set("maxmemory", "16gb")
    r.config_set("maxmemory-policy", "noeviction")
    # conveyor
    r.flushall()
    before = used_memory(r)
    secs = bulk_conveyor(args.n)
    after = used_memory(r)
    out["conveyor"] = {
        "bytes_per_task": (after - before) / args.n,
        "send_s": secs,
        "keys": r.dbsize(),
        "used_mb": after / 2**20,
    }
    from conveyor_tasks import app as capp

    q = capp.broker.keys.level("celery", 0)
    sample = r.lindex(q, 0) or b""
    out["conveyor"]["message_bytes"] = len(sample)
    print(f"conveyor: {out['conveyor']}", file=sys.stderr)
    # Celery: real .delay() loop, then clones
    from celery_tasks import noop as celery_noop

    r.flushall()
    before = used_memory(r)
    t0 = time.perf_counter()
    for i in range(args.celery_real):
        celery_noop.delay(i)
    real_s = time.perf_counter() - t0
    after = used_memory(r)
    real = {
        "bytes_per_task": (after - before) / args.celery_real,
        "n": args.celery_real,
        "send_s": real_s,
    }
    message = r.lindex("celery", 0) or b""
    r.flushall()
    meta = json.loads(message)
    ids = [meta["headers"]["id"], meta["properties"]["delivery_tag"]]
    before = used_memory(r)
    t0 = time.perf_counter()
    text = message.decode()
    for start in range(0, args.n, CHUNK):
        pipe = r.pipeline(transaction=False)
        for _ in range(start, min(args.n, start + CHUNK)):
            m = text
            for old in ids:
                m = m.replace(old, str(uuid.uuid4()))
            pipe.lpush("celery", m)
        pipe.execute()
    clone_s = time.perf_counter() - t0
    after = used_memory(r)
    out["celery"] = {
        "bytes_per_task": (after - before) / args.n,
        "send_s": clone_s,
        "keys": r.dbsize(),
        "used_mb": after / 2**20,
        "message_bytes": len(message),
        "real_delay": real,
    }
    print(f"celery: {out['celery']}", file=sys.stderr)
    return out


def cmd_deciles(args: argparse.Namespace, r: redis.Redis, env: dict[str, str]) -> dict[str, Any]:
    r.flushall()
    n = args.n
    send_s = bulk_conveyor(n)
    print(f"queued {n} in {send_s:.1f} s", file=sys.stderr)
    w = conveyor_worker(env, args.c)
    marks = [1] + [n * k // 10 for k in range(1, 11)]
    try:
        times = wait_count(r, w, n, marks)
    finally:
        w.stop()
    first = times[0]
    edges = [first, *times[1:]]
    rates = [(n // 10) / (edges[k + 1] - edges[k]) for k in range(10)]
    rates[0] = (n // 10 - 1) / (edges[1] - edges[0])
    return {
        "n": n,
        "c": args.c,
        "deciles": rates,
        "overall": (n - 1) / (times[-1] - first),
        "min_over_max": min(rates) / max(rates),
    }


def drain_once(r: redis.Redis, env: dict[str, str], due: int, c: int) -> float:
    r.delete(COUNTER_KEY)
    bulk_conveyor(due)
    w = conveyor_worker(env, c)
    try:
        first, last = wait_count(r, w, due, [1, due])
    finally:
        w.stop()
    return (due - 1) / (last - first)


def cmd_eta(args: argparse.Namespace, r: redis.Redis, env: dict[str, str]) -> dict[str, Any]:
    from conveyor_tasks import app, noop

    r.flushall()
    eta_key = app.broker.keys.eta(app.producer.queue_for(noop))
    parked = eta_key + ":parked"
    held_s = hold_conveyor(args.n, 86400.0)
    held = r.zcard(eta_key)
    print(f"held {held} in {held_s:.1f} s, {used_memory(r) / 2**20:.0f} MB", file=sys.stderr)
    runs: dict[str, list[float]] = {"with": [], "without": []}
    for i in range(args.repeat):
        for label in ("with", "without"):
            if label == "without":
                r.rename(eta_key, parked)
            try:
                rate = drain_once(r, env, args.due, args.c)
            finally:
                if label == "without":
                    r.rename(parked, eta_key)
            runs[label].append(rate)
            print(
                f"#{i + 1} {label} {args.n} held: {rate:,.0f} tasks/s (load {loadavg()})",
                file=sys.stderr,
            )
    still = r.zcard(eta_key)
    if still != held:
        raise RuntimeError(f"held tasks changed: {held} -> {still}")
    return {
        "held": held,
        "hold_send_s": held_s,
        "runs": runs,
        "median_with": statistics.median(runs["with"]),
        "median_without": statistics.median(runs["without"]),
    }


def cmd_procs(args: argparse.Namespace, r: redis.Redis, env: dict[str, str]) -> dict[str, Any]:
    runs: dict[str, list[float]] = {"2": [], "8": []}
    for i in range(args.repeat):
        for c in (2, 8):
            r.flushall()
            rate = drain_once(r, env, args.due, c)
            runs[str(c)].append(rate)
            print(f"#{i + 1} -c {c}: {rate:,.0f} tasks/s (load {loadavg()})", file=sys.stderr)
    return {
        "due": args.due,
        "runs": runs,
        **{f"median_c{c}": statistics.median(v) for c, v in runs.items()},
    }


def round_trips(n: int, until: Callable[[int], bool] | None = None) -> list[float]:
    """Sequential round trips on queue ``urgent``; ``until(count)`` says when to stop."""
    from conveyor_tasks import noop

    lat: list[float] = []
    while len(lat) < n and (until is None or not until(len(lat))):
        t0 = time.perf_counter()
        noop.apply_async((0,), queue="urgent").get(timeout=30)
        lat.append((time.perf_counter() - t0) * 1000.0)
    return lat


def pct(lat: list[float]) -> dict[str, float]:
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"n": len(lat), "p50": q[49], "p99": q[98], "max": max(lat)}


def cmd_busy_rt(args: argparse.Namespace, r: redis.Redis, env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"backlog": args.backlog}
    for i in range(args.repeat):
        r.flushall()
        w = conveyor_worker(env, args.c, "bulk,urgent")
        try:
            round_trips(20)  # worker up, connections warm
            idle = pct(round_trips(args.roundtrips))
            bulk_conveyor(args.backlog, queue="bulk")
            t0 = time.perf_counter()
            before = 20 + args.roundtrips  # urgent tasks counted so far
            target = args.backlog + before

            def drained(k: int, target: int = target) -> bool:
                return int(r.get(COUNTER_KEY) or 0) >= target + k

            busy = round_trips(10**9, drained)
            secs = time.perf_counter() - t0
            done = int(r.get(COUNTER_KEY) or 0) - before - len(busy)
        finally:
            w.stop()
        out[f"run{i + 1}"] = {
            "idle": idle,
            "busy": pct(busy),
            "busy_seconds": secs,
            "backlog_done_while_timing": done,
            "load": loadavg(),
        }
        print(f"#{i + 1}: {out[f'run{i + 1}']}", file=sys.stderr)
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("what", choices=["memory", "deciles", "eta", "procs", "busy-rt"])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--due", type=int, default=20_000)
    p.add_argument("--backlog", type=int, default=100_000)
    p.add_argument("--roundtrips", type=int, default=300)
    p.add_argument("--celery-real", type=int, default=20_000)
    p.add_argument("--c", type=int, default=2, help="worker processes (not for procs)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--redis-server", default="/usr/bin/redis-server")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    with RedisServer(args.redis_server) as server:
        os.environ["BENCH_REDIS_URL"] = server.url
        env = worker_env()
        r = redis.Redis.from_url(server.url)
        print(f"redis-server on {server.url}; load {loadavg()}", file=sys.stderr)
        t0 = time.monotonic()
        fn = {
            "memory": cmd_memory,
            "deciles": cmd_deciles,
            "eta": cmd_eta,
            "procs": cmd_procs,
            "busy-rt": cmd_busy_rt,
        }[args.what]
        out = fn(args, r, env)
        out["seconds"] = time.monotonic() - t0
        out["load_end"] = Path("/proc/loadavg").read_text().strip()
        r.close()
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
