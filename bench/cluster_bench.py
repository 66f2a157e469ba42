"""Drain on one worker node (``-c 2``) against a Redis Cluster of three shards, queues
spread across them, next to the same drain against one redis-server.

    .venv/bin/python bench/cluster_bench.py --tasks 20000 --queues 6 --repeat 3

It starts its own servers (a 3-master cluster with no replicas, one redis-server for
the single-server run and one for the counter the tasks INCR) on free ports in temp
dirs and stops them by PID. Prints a markdown table of medians; per-run numbers and
which shard serves each queue go to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from procs import RedisServer, Worker  # bench/ is on sys.path: this script's directory

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def cluster_nodes(directory: Path) -> Any:
    """The suite's cluster helper (tests/support_cluster.py): three masters, no replicas."""
    sys.path.insert(0, str(ROOT))
    support = importlib.import_module("tests.support_cluster")
    return support.RedisClusterNodes(directory, replicas=0)


def drain(broker: str, counter_url: str, args: argparse.Namespace) -> float:
    """Tasks per second, from starting the worker to the last INCR."""
    os.environ["CLUSTER_BENCH_BROKER"] = broker
    os.environ["CLUSTER_BENCH_COUNTER"] = counter_url
    import cluster_tasks  # its app reads the two variables above

    app = cluster_tasks.app
    app.close()
    app.conf.broker_url = broker
    queues = [f"q{i}" for i in range(args.queues)]
    per_queue = args.tasks // len(queues)
    for queue in queues:
        cluster_tasks.bump.delay_many([(n,) for n in range(per_queue)], queue=queue)
    app.close()
    total = per_queue * len(queues)
    counter = redis.Redis.from_url(counter_url)
    counter.delete("bench:counter")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH), str(ROOT / "src")])
    command = [
        str(Path(sys.executable).parent / "conveyor"), "-A", "cluster_tasks", "worker",
        "-c", "2", "-l", "warning", "-Q", ",".join(queues),
    ]  # fmt: skip
    started = time.perf_counter()
    worker = Worker(command, env, BENCH)
    try:
        while int(counter.get("bench:counter") or 0) < total:
            worker.check_alive()
            time.sleep(0.005)
        return total / (time.perf_counter() - started)
    finally:
        worker.stop()


def publish_costs(url: str, count: int) -> dict[str, float]:
    """Microseconds per single-message publish: through the raw SlotLink (what the
    transport uses) and through redis-py's RedisCluster client, the same script."""
    from conveyor.stores.redis.cluster import ENQUEUE, RedisClusterTransport

    transport = RedisClusterTransport(url)
    try:
        script = transport.client.register_script(ENQUEUE.source)
        where = list(transport.keys.enqueue_keys("publish-bench", 0))
        transport.publish("publish-bench", [b"warm"])
        started = time.perf_counter()
        for _ in range(count):
            transport.publish("publish-bench", [b"x"])
        raw = (time.perf_counter() - started) / count * 1e6
        started = time.perf_counter()
        for _ in range(count):
            script(keys=where, args=["", "0", -1, -1, b"x"])
        client = (time.perf_counter() - started) / count * 1e6
        return {"raw SlotLink": raw, "redis-py RedisCluster": client}
    finally:
        transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--queues", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    counter, single = RedisServer(), RedisServer()
    cluster = cluster_nodes(Path(tempfile.mkdtemp(prefix="bench-cluster-")))
    try:
        counter.start()
        single.start()
        cluster.start()
        for i in range(args.queues):
            port = cluster.master_of(f"conveyor:{{q:q{i}}}").port
            print(f"queue q{i} -> shard on port {port}", file=sys.stderr)
        results: dict[str, list[float]] = {"one redis-server": [], "cluster, 3 shards": []}
        for run in range(args.repeat):
            brokers = (("one redis-server", single.url), ("cluster, 3 shards", cluster.url()))
            for name, url in brokers:
                cluster.flush()
                redis.Redis.from_url(single.url).flushall()
                rate = drain(url, counter.url, args)
                results[name].append(rate)
                print(f"run {run + 1}: {name}: {rate:,.0f} tasks/s", file=sys.stderr)
        costs = [publish_costs(cluster.url(), 5000) for _ in range(args.repeat)]
        print("\nOne-message publish on the cluster, µs each (median):\n")
        print("| path | µs per publish |")
        print("|---|---|")
        for path in costs[0]:
            print(f"| {path} | {statistics.median(c[path] for c in costs):.0f} |")
        print(f"\n{args.tasks:,} tasks over {args.queues} queues, one worker `-c 2`:\n")
        print("| broker | drain, tasks/s (median) |")
        print("|---|---|")
        for name, rates in results.items():
            print(f"| {name} | {statistics.median(rates):,.0f} |")
    finally:
        cluster.stop()
        single.stop()
        counter.stop()


if __name__ == "__main__":
    main()
