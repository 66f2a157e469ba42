"""The producer alone: ``.delay()`` one by one and ``delay_many`` on a private Redis.

    .venv/bin/python bench/send_bench.py [--calls 30000] [--bulk 100000] [--repeat 3]
        [--profile py-spy|pyinstrument] [--out DIR] [--against SRC]

Starts a private redis-server on a free port, then times, in this process, a tight loop
of ``noop.delay(i)`` (each call waits for its reply: a ``.delay()`` that returned is in
the broker) and one ``noop.delay_many`` of --bulk calls, --repeat times each (the queue
is emptied between runs, so Redis's list growth is the same every time). With
``--profile py-spy`` the loop runs again under ``py-spy record --format raw`` (the
collapsed stacks land in --out) and the top self-time frames are printed; with
``--profile pyinstrument`` it prints pyinstrument's tree. No worker runs: this is what
the sending process costs, for ``docs/benchmarks.md`` (issue 17).

``--against SRC`` times another conveyor source tree (its ``src`` directory, e.g. from
``git archive <commit> src``) in the same run: each repeat runs this tree and that one
in turn, each in a fresh process on the same Redis, so load drifts over both alike.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


def _app(url: str) -> Any:
    from conveyor import Conveyor

    app = Conveyor("sendbench", broker=url, backend=url)

    @app.task
    def noop(i: int) -> None:
        return None

    return app, noop


def timed(url: str, calls: int, bulk: int, repeat: int) -> dict[str, list[float]]:
    import redis

    app, noop = _app(url)
    r = redis.Redis.from_url(url)
    noop.delay(-1)  # opens the connection, loads the script
    out: dict[str, list[float]] = {"delay": [], "bulk": []}
    for _ in range(repeat):
        r.flushall()
        t0 = time.perf_counter()
        for i in range(calls):
            noop.delay(i)
        out["delay"].append(calls / (time.perf_counter() - t0))
        r.flushall()
        args = [(i,) for i in range(bulk)]
        t0 = time.perf_counter()
        noop.delay_many(args)
        out["bulk"].append(bulk / (time.perf_counter() - t0))
    r.flushall()
    app.close()
    return out


def loop(url: str, what: str, n: int) -> None:
    """The loop a profiler watches (run in a child process for py-spy)."""
    _, noop = _app(url)
    noop.delay(-1)
    if what == "delay":
        for i in range(n):
            noop.delay(i)
    else:
        args = [(i,) for i in range(n)]
        for _ in range(5):
            noop.delay_many(args)


def top_self(raw: Path, limit: int = 25) -> list[tuple[float, str]]:
    """Self time by function, in percent of the samples taken inside the timed loop
    (start-up and imports left out), from py-spy's raw output."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or "loop (send_bench.py" not in stack:
            continue
        total += int(count)
        frame = stack.split(";")[-1]
        name, _, where = frame.partition(" (")
        counts[f"{name} ({where.rsplit(':', 1)[0]})"] += int(count)
    return [(100.0 * c / max(total, 1), f) for f, c in counts.most_common(limit)]


def compare(url: str, a: argparse.Namespace) -> None:
    """This tree and ``a.against`` in turn, ``a.repeat`` times; medians and loads."""
    import statistics

    trees = {"this": None, "against": str(Path(a.against).resolve())}
    runs: dict[str, dict[str, list[float]]] = {k: {"delay": [], "bulk": []} for k in trees}
    load = Path("/proc/loadavg").read_text().split()[:3]
    for _ in range(a.repeat):
        for name, src in trees.items():
            env = dict(os.environ)
            if src is not None:
                env["PYTHONPATH"] = src
            cmd = [sys.executable, __file__, "--timed", url, "--calls", str(a.calls)]
            cmd += ["--bulk", str(a.bulk)]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            for key in ("delay", "bulk"):
                runs[name][key] += got[key]
            print(name, {k: round(v[0]) for k, v in got.items()}, file=sys.stderr)
    load += Path("/proc/loadavg").read_text().split()[:3]
    medians = {
        name: {key: statistics.median(values) for key, values in per.items()}
        for name, per in runs.items()
    }
    print(json.dumps({"runs": runs, "medians": medians, "load": load}))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--calls", type=int, default=30_000)
    p.add_argument("--bulk", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--profile", choices=["py-spy", "pyinstrument"])
    p.add_argument("--out", default="/tmp", help="where py-spy's raw files go")
    p.add_argument("--against", help="another conveyor src directory, timed in turn")
    p.add_argument("--loop", nargs=3, help=argparse.SUPPRESS)  # URL WHAT N (child)
    p.add_argument("--timed", help=argparse.SUPPRESS)  # URL (child of --against)
    a = p.parse_args()
    if a.loop:
        loop(a.loop[0], a.loop[1], int(a.loop[2]))
        return
    if a.timed:  # a child of --against: one repeat of this tree, as JSON
        print(json.dumps(timed(a.timed, a.calls, a.bulk, 1)))
        return
    sys.path.insert(0, str(BENCH))
    from procs import RedisServer

    if a.against:
        with RedisServer() as server:
            compare(server.url, a)
        return
    with RedisServer() as server:
        load = Path("/proc/loadavg").read_text().split()[:3]
        result: dict[str, Any] = timed(server.url, a.calls, a.bulk, a.repeat)
        result["load"] = load + Path("/proc/loadavg").read_text().split()[:3]
        print(json.dumps(result))
        if a.profile == "pyinstrument":
            from pyinstrument import Profiler

            for what, n in (("delay", a.calls), ("bulk", a.bulk)):
                profiler = Profiler(interval=0.0002)
                profiler.start()
                loop(server.url, what, n)
                profiler.stop()
                print(profiler.output_text(unicode=False, color=False, show_all=False))
        elif a.profile == "py-spy":
            exe = str(Path(sys.executable).parent / "py-spy")
            for what, n in (("delay", a.calls), ("bulk", a.bulk)):
                raw = Path(a.out) / f"send_{what}_{os.getpid()}.txt"
                child = [sys.executable, __file__, "--loop", server.url, what, str(n)]
                cmd = [exe, "record", "--rate", "1000", "--format", "raw", "-o", str(raw)]
                subprocess.run([*cmd, "--", *child], check=True, capture_output=True)
                print(f"\n{what}: {raw}")
                for share, frame in top_self(raw):
                    print(f"{share:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
